//! Planning an activity into packets and dealing them into shards.
//!
//! Pure and deterministic for a given random seed, so `seedgen`, the in-memory source and tests
//! all see the same packets.

use crate::activity::Activity;
use crate::rng::Rng;

use super::SeedRecord;

/// A packet and the shard it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedPacket {
    pub record: SeedRecord,
    /// Shard number: node * workers_per_node + worker.
    pub shard: u32,
}

/// packet_id = activity id in the top 24 bits, global packet number (from 1) below, so ids
/// of two activities never collide.
pub fn packet_id(activity_id: u32, number: u64) -> u64 {
    ((activity_id as u64 & 0xff_ffff) << 40) | (number & ((1 << 40) - 1))
}

/// Splits `budget` into `n` amounts within `min..=max` that add up to it exactly.
/// The caller has checked `n * min <= budget <= n * max`.
pub fn split_amounts(budget: u64, n: u32, min: u32, max: u32, rng: &mut Rng) -> Vec<u32> {
    let n_usize = n as usize;
    let mut amounts = vec![min; n_usize];
    let mut rest = budget - n as u64 * min as u64;
    let room = (max - min) as u64;
    if rest > 0 && room > 0 {
        // Random weights give uneven amounts; the sweep afterwards places what rounding and the
        // max cap left over, so the sum is always exact.
        let weights: Vec<u64> = (0..n_usize).map(|_| 1 + rng.below(1 << 20)).collect();
        let total: u128 = weights.iter().map(|&w| w as u128).sum();
        let mut given = 0u64;
        for (a, &w) in amounts.iter_mut().zip(&weights) {
            let extra = ((rest as u128 * w as u128) / total) as u64;
            let extra = extra.min(room);
            *a += extra as u32;
            given += extra;
        }
        rest -= given;
        let start = rng.below(n as u64) as usize;
        for k in 0..n_usize {
            if rest == 0 {
                break;
            }
            let a = &mut amounts[(start + k) % n_usize];
            let add = (max - *a) as u64;
            let add = add.min(rest);
            *a += add as u32;
            rest -= add;
        }
    }
    debug_assert_eq!(rest, 0);
    amounts
}

/// Plans every packet of an activity for `nodes` × `workers` shards.
///
/// Packets are dealt round-robin over shards in a shuffled order, so each shard gets a mix of
/// sponsors and rounds; within a shard, records are sorted by round and shuffled within it.
pub fn plan(activity: &Activity, nodes: u32, workers: u32, random_seed: u64) -> Vec<PlannedPacket> {
    let mut rng = Rng::new(random_seed ^ ((activity.header.id as u64) << 32));
    let shards = (nodes.max(1) * workers.max(1)) as u64;
    let mut out: Vec<PlannedPacket> = Vec::with_capacity(activity.totals().0 as usize);
    let mut number = 0u64;
    for (si, sponsor) in activity.sponsors.iter().enumerate() {
        let rounds: Vec<u16> = match &sponsor.rounds {
            Some(ids) => ids
                .iter()
                .filter_map(|id| activity.round_index(*id))
                .map(|i| i as u16)
                .collect(),
            None => (0..activity.rounds.len() as u16).collect(),
        };
        let amounts = split_amounts(
            sponsor.budget_cents,
            sponsor.packets,
            sponsor.min_cents,
            sponsor.max_cents(),
            &mut rng,
        );
        for (j, amount) in amounts.into_iter().enumerate() {
            number += 1;
            out.push(PlannedPacket {
                record: SeedRecord {
                    packet_id: packet_id(activity.header.id, number),
                    amount_cents: amount,
                    sponsor_index: si as u16,
                    round_index: rounds[j % rounds.len()],
                },
                shard: 0,
            });
        }
    }
    // Fisher-Yates, then deal.
    for i in (1..out.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        out.swap(i, j);
    }
    for (i, p) in out.iter_mut().enumerate() {
        p.shard = (i as u64 % shards) as u32;
    }
    // Stable sort keeps the shuffled order within (shard, round).
    out.sort_by_key(|p| (p.shard, p.record.round_index));
    out
}

/// The records of one shard, in issue order.
pub fn shard_records(planned: &[PlannedPacket], shard: u32) -> Vec<SeedRecord> {
    let start = planned.partition_point(|p| p.shard < shard);
    let end = planned.partition_point(|p| p.shard <= shard);
    planned[start..end].iter().map(|p| p.record).collect()
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::{prop_assert, prop_assert_eq, proptest};
    use std::collections::HashSet;
    use std::path::Path;

    proptest! {
        #[test]
        fn split_is_exact_and_bounded(n in 1u32..200, min in 1u32..50, spread in 0u32..500, frac in 0.0f64..=1.0, seed: u64) {
            let max = min + spread;
            let lo = n as u64 * min as u64;
            let hi = n as u64 * max as u64;
            let budget = lo + ((hi - lo) as f64 * frac) as u64;
            let a = split_amounts(budget, n, min, max, &mut Rng::new(seed));
            prop_assert_eq!(a.len(), n as usize);
            prop_assert_eq!(a.iter().map(|&x| x as u64).sum::<u64>(), budget);
            prop_assert!(a.iter().all(|&x| x >= min && x <= max));
        }
    }

    #[test]
    fn plan_is_unique_exact_and_deterministic() {
        let a = Activity::parse(
            Path::new("t.toml"),
            r#"
[activity]
id = 3
name = "t"
[[sponsor]]
id = 1
budget_cents = 100000
packets = 1000
[[sponsor]]
id = 2
budget_cents = 5000
packets = 50
min_cents = 100
max_cents = 100
rounds = [20]
[[round]]
id = 10
start_s = 0
duration_s = 10
win_probability = 0.1
[[round]]
id = 20
start_s = 10
duration_s = 10
win_probability = 0.1
"#,
        )
        .unwrap();
        let p = plan(&a, 2, 3, 9);
        assert_eq!(p.len(), 1050);
        assert_eq!(p, plan(&a, 2, 3, 9));
        assert_ne!(p, plan(&a, 2, 3, 10));
        let ids: HashSet<u64> = p.iter().map(|x| x.record.packet_id).collect();
        assert_eq!(ids.len(), 1050);
        for (si, s) in a.sponsors.iter().enumerate() {
            let sum: u64 = p
                .iter()
                .filter(|x| x.record.sponsor_index as usize == si)
                .map(|x| x.record.amount_cents as u64)
                .sum();
            assert_eq!(sum, s.budget_cents);
        }
        assert!(p
            .iter()
            .filter(|x| x.record.sponsor_index == 1)
            .all(|x| x.record.round_index == 1));
        let mut total = 0;
        for shard in 0..6 {
            let r = shard_records(&p, shard);
            assert!(r.windows(2).all(|w| w[0].round_index <= w[1].round_index));
            assert!((170..=180).contains(&r.len()), "{}", r.len());
            total += r.len();
        }
        assert_eq!(total, 1050);
    }
}
