//! The generator's users: who they are, which node owns them, whether their token is good,
//! and when each may shake again.
//!
//! User `k` (0-based) has a user id that belongs to node `node_index` of `node_count`
//! (`id mod node_count == node_index`, SPEC section 2), except a chosen share of users that
//! belong to other nodes (to exercise REDIRECT). A chosen share has a bad token (the right
//! MAC with one bit flipped: DENIED). A chosen share of phones reaches the node over IPv6
//! (their carrier's network is IPv6), the others over IPv4: a phone keeps its family, as a
//! phone on one network does. The shares are picked by a hash of `k` and the seed, so
//! a population is the same on every run. Tokens are computed once, up front: the send path
//! only copies them.
//!
//! A fleet's population ([`Spec::fleet`]) is spread over every node instead: user `k` belongs
//! to node `(k + user_offset) mod node_count`, and each phone first shakes at its own node,
//! except the "foreign" share, which first shakes at another one and has to follow the
//! REDIRECT it gets there. Which answers are legal then depends on where a request went, not
//! only on who sent it: [`legal`] takes the node it was sent to.

use shake::mac::MacKey;
use shake::wire::shake::Outcome;

/// What a user is, which decides the outcomes that are legal for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Valid token, owned by the node under test.
    Own,
    /// Valid token, owned by another node: REDIRECT to it.
    Foreign,
    /// Wrong token: DENIED.
    BadToken,
}

/// How the population is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    pub users: u64,
    /// Users are numbered from here: generators with disjoint ranges shake as different
    /// people.
    pub user_offset: u64,
    pub node_count: u32,
    pub node_index: u32,
    /// Share of users with a bad token, 0..=1.
    pub bad_share: f64,
    /// Share of (good) users owned by another node, 0..=1; ignored with one node. In a
    /// fleet: the share of (good) users whose first shake goes to a node that is not theirs.
    pub foreign_share: f64,
    pub seed: u64,
    /// Unix seconds the tokens expire at.
    pub token_expiry: u32,
    /// A fleet: users belong to every node in turn and `node_index` is unused (see the
    /// module's documentation).
    pub fleet: bool,
    /// Share of phones that shake over IPv6, 0..=1 (1: all).
    pub ipv6_share: f64,
}

/// splitmix64: a cheap, well-mixed hash for picking shares.
#[inline]
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A uniform draw in [0, 1) from a hash.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

pub struct Population {
    spec: Spec,
    ids: Vec<u64>,
    tokens: Vec<u64>,
    classes: Vec<Class>,
    /// A fleet's users: the node each shakes at first (empty otherwise: `node_index`).
    first: Vec<u32>,
    /// Whether each user shakes over IPv6 (empty without an IPv6 share: none does).
    ipv6: Vec<bool>,
}

impl Population {
    pub fn new(spec: Spec, token_key: &MacKey) -> Population {
        let n = spec.users as usize;
        let count = u64::from(spec.node_count.max(1));
        let index = u64::from(spec.node_index) % count;
        let (mut ids, mut tokens, mut classes) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut first = Vec::with_capacity(if spec.fleet { n } else { 0 });
        let mut ipv6 = Vec::with_capacity(if spec.ipv6_share > 0.0 { n } else { 0 });
        for k in 0..spec.users {
            let h = mix(k ^ spec.seed.rotate_left(17));
            if spec.ipv6_share > 0.0 {
                // Its own draw, so the other shares stay what they were without IPv6.
                ipv6.push(unit(mix(h ^ 6)) < spec.ipv6_share);
            }
            let bad = unit(h) < spec.bad_share;
            let foreign = !bad && count > 1 && unit(mix(h)) < spec.foreign_share;
            // Ids from `count` on, so no user is 0; the k-th own id is (k+1)*count + index.
            let base = (k + 1 + spec.user_offset) * count;
            let id = if spec.fleet {
                let owner = (k + spec.user_offset) % count;
                // The foreign share starts at another node: shift by 1..count-1.
                first.push(if foreign {
                    ((owner + 1 + mix(h ^ 1) % (count - 1)) % count) as u32
                } else {
                    owner as u32
                });
                base + owner
            } else if foreign {
                // Another node: shift by 1..count-1.
                base + (index + 1 + mix(h ^ 1) % (count - 1)) % count
            } else {
                base + index
            };
            let good = token_key.token(id, spec.token_expiry);
            ids.push(id);
            tokens.push(if bad { good ^ 1 } else { good });
            classes.push(if bad {
                Class::BadToken
            } else if foreign {
                Class::Foreign
            } else {
                Class::Own
            });
        }
        Population {
            spec,
            ids,
            tokens,
            classes,
            first,
            ipv6,
        }
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    #[inline]
    pub fn id(&self, k: usize) -> u64 {
        self.ids[k]
    }

    #[inline]
    pub fn token(&self, k: usize) -> u64 {
        self.tokens[k]
    }

    #[inline]
    pub fn class(&self, k: usize) -> Class {
        self.classes[k]
    }

    /// The node user `k` shakes at first: `node_index`, or in a fleet its own node (another
    /// one for the foreign share).
    #[inline]
    pub fn first_node(&self, k: usize) -> u32 {
        self.first.get(k).copied().unwrap_or(self.spec.node_index)
    }

    /// Whether user `k` shakes over IPv6.
    #[inline]
    pub fn ipv6(&self, k: usize) -> bool {
        self.ipv6.get(k).copied().unwrap_or(false)
    }

    /// How many users shake over IPv6.
    pub fn ipv6_users(&self) -> u64 {
        self.ipv6.iter().filter(|&&v6| v6).count() as u64
    }

    /// How many users of each class: (own, foreign, bad token).
    pub fn census(&self) -> (u64, u64, u64) {
        let mut c = (0, 0, 0);
        for cl in &self.classes {
            match cl {
                Class::Own => c.0 += 1,
                Class::Foreign => c.1 += 1,
                Class::BadToken => c.2 += 1,
            }
        }
        c
    }

    /// The index of a user id, if it is one of ours.
    #[inline]
    pub fn index_of(&self, id: u64) -> Option<usize> {
        let count = u64::from(self.spec.node_count.max(1));
        let k = (id / count).checked_sub(1 + self.spec.user_offset)? as usize;
        (self.ids.get(k) == Some(&id)).then_some(k)
    }
}

/// Whether `outcome` (with `resource_id`) is a legal answer from node `sent_to` of
/// `node_count` to a user of `class`; if not, what is wrong. A good token at a node that
/// does not own the user gets REDIRECT to its owner, and at its owner anything but DENIED or
/// REDIRECT. THROTTLED is always legal: a node sheds load before it looks at tokens.
pub fn legal(
    class: Class,
    user_id: u64,
    node_count: u32,
    sent_to: u32,
    outcome: Outcome,
    resource_id: u16,
) -> Result<(), &'static str> {
    let owner = user_id % u64::from(node_count.max(1));
    let at_owner = owner == u64::from(sent_to);
    match (class, outcome) {
        (_, Outcome::Throttled) => Ok(()),
        (Class::BadToken, Outcome::Denied) => Ok(()),
        (Class::BadToken, _) => Err("a bad token not DENIED"),
        (_, Outcome::Redirect) if !at_owner && u64::from(resource_id) == owner => Ok(()),
        _ if !at_owner => Err("a user of another node not redirected to its owner"),
        (_, Outcome::Denied | Outcome::Redirect) => {
            Err("DENIED or REDIRECT for a good user at its own node")
        }
        _ => Ok(()),
    }
}

/// When each user may shake next, for clients that obey retry_after_ms as phones do:
/// milliseconds since the run started, per user. A user waiting for an answer is held back
/// by the answer timeout.
pub struct Schedule {
    next_ms: Vec<u32>,
    cursor: usize,
}

impl Schedule {
    pub fn new(users: usize) -> Schedule {
        Schedule {
            next_ms: vec![0; users],
            cursor: 0,
        }
    }

    /// The next user (round robin) free to shake at `now_ms`, looking at most `scan` users
    /// ahead; `None` if all of those are waiting.
    #[inline]
    pub fn next_ready(&mut self, now_ms: u32, scan: usize) -> Option<usize> {
        let n = self.next_ms.len();
        for _ in 0..scan.min(n) {
            let k = self.cursor;
            self.cursor += 1;
            if self.cursor == n {
                self.cursor = 0;
            }
            if self.next_ms[k] <= now_ms {
                return Some(k);
            }
        }
        None
    }

    /// User `k` may not shake again before `at_ms`.
    #[inline]
    pub fn hold(&mut self, k: usize, at_ms: u32) {
        self.next_ms[k] = at_ms;
    }

    /// User `k` got an answer at `now_ms` saying to wait `retry_after_ms`.
    #[inline]
    pub fn answered(&mut self, k: usize, now_ms: u32, retry_after_ms: u32) {
        self.next_ms[k] = now_ms.saturating_add(retry_after_ms);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const KEY: MacKey = MacKey::from_bytes([7; 16]);

    fn spec(users: u64) -> Spec {
        Spec {
            users,
            user_offset: 0,
            node_count: 4,
            node_index: 2,
            bad_share: 0.1,
            foreign_share: 0.2,
            seed: 5,
            token_expiry: 2_000_000_000,
            fleet: false,
            ipv6_share: 0.0,
        }
    }

    #[test]
    fn ids_tokens_and_classes() {
        let p = Population::new(spec(20_000), &KEY);
        assert_eq!(p.len(), 20_000);
        let (own, foreign, bad) = p.census();
        assert_eq!(own + foreign + bad, 20_000);
        // Shares within a few percent of what was asked.
        assert!((1_700..2_300).contains(&bad), "{bad}");
        assert!((3_200..4_000).contains(&foreign), "{foreign}");
        let mut seen = std::collections::HashSet::new();
        for k in 0..p.len() {
            let id = p.id(k);
            assert!(id != 0 && seen.insert(id), "ids are distinct and non-zero");
            assert_eq!(p.index_of(id), Some(k));
            let good = KEY.token(id, 2_000_000_000);
            match p.class(k) {
                Class::Own => assert_eq!((id % 4, p.token(k)), (2, good)),
                Class::Foreign => assert!(id % 4 != 2 && p.token(k) == good),
                Class::BadToken => assert_eq!((id % 4, p.token(k)), (2, good ^ 1)),
            }
        }
        assert_eq!(p.index_of(3), None);
        assert_eq!(p.index_of(u64::MAX), None);
    }

    #[test]
    fn deterministic_and_single_node() {
        let a = Population::new(spec(1000), &KEY);
        let b = Population::new(spec(1000), &KEY);
        assert!((0..1000).all(|k| a.id(k) == b.id(k) && a.token(k) == b.token(k)));
        let one = Population::new(
            Spec {
                node_count: 1,
                node_index: 0,
                bad_share: 0.0,
                ..spec(1000)
            },
            &KEY,
        );
        assert_eq!(one.census(), (1000, 0, 0));
        assert_eq!(one.id(0), 1);
        assert_eq!(one.index_of(1000), Some(999));
        let later = Population::new(
            Spec {
                user_offset: 1000,
                ..*one.spec()
            },
            &KEY,
        );
        assert_eq!(later.id(0), 1001);
        assert_eq!(later.index_of(1001), Some(0));
        assert_eq!(later.index_of(1000), None);
    }

    #[test]
    fn legal_outcomes() {
        use Outcome::*;
        // At node 2 of 4.
        let ok = |c, u, o, r| legal(c, u, 4, 2, o, r).is_ok();
        assert!(ok(Class::Own, 6, RedPacket, 0));
        assert!(ok(Class::Own, 6, Closed, 0));
        assert!(!ok(Class::Own, 6, Denied, 0));
        assert!(!ok(Class::Own, 6, Redirect, 2));
        assert!(ok(Class::BadToken, 6, Denied, 0));
        assert!(ok(Class::BadToken, 6, Throttled, 0));
        assert!(!ok(Class::BadToken, 6, Greeting, 0));
        assert!(ok(Class::Foreign, 7, Redirect, 3));
        assert!(!ok(Class::Foreign, 7, Redirect, 2));
        assert!(!ok(Class::Foreign, 7, Nothing, 0));
        // A phone that followed its REDIRECT to node 3 is at its own node there.
        assert!(legal(Class::Foreign, 7, 4, 3, Nothing, 0).is_ok());
        assert!(legal(Class::Foreign, 7, 4, 3, Redirect, 3).is_err());
        assert!(legal(Class::BadToken, 7, 4, 3, Denied, 0).is_ok());
    }

    #[test]
    fn a_share_of_phones_shake_over_ipv6_and_keep_the_other_shares() {
        let v4 = Population::new(spec(10_000), &KEY);
        assert_eq!(v4.ipv6_users(), 0);
        let with = |share| {
            Population::new(
                Spec {
                    ipv6_share: share,
                    ..spec(10_000)
                },
                &KEY,
            )
        };
        let mixed = with(0.3);
        let n = mixed.ipv6_users();
        assert!((2_700..3_300).contains(&n), "{n} of 10000 over IPv6");
        assert_eq!(n, (0..10_000).filter(|&k| mixed.ipv6(k)).count() as u64);
        // The same users, tokens and classes as without IPv6.
        for k in 0..10_000 {
            assert_eq!(
                (mixed.id(k), mixed.token(k), mixed.class(k)),
                (v4.id(k), v4.token(k), v4.class(k))
            );
        }
        assert_eq!(with(1.0).ipv6_users(), 10_000, "1: all");
        assert_eq!(with(0.0).ipv6_users(), 0);
    }

    #[test]
    fn a_fleet_population_spreads_over_every_node() {
        let p = Population::new(
            Spec {
                fleet: true,
                foreign_share: 0.3,
                ..spec(12_000)
            },
            &KEY,
        );
        let (own, foreign, bad) = p.census();
        assert!((3_000..4_200).contains(&foreign), "{foreign}");
        assert_eq!(own + foreign + bad, 12_000);
        let mut per_node = [0u32; 4];
        for k in 0..p.len() {
            let (id, owner) = (p.id(k), p.id(k) % 4);
            per_node[owner as usize] += 1;
            assert_eq!(p.index_of(id), Some(k));
            // The foreign share starts elsewhere, everyone else at home.
            assert_eq!(
                p.first_node(k) as u64 != owner,
                p.class(k) == Class::Foreign,
                "user {k}"
            );
            assert!(p.first_node(k) < 4);
        }
        assert_eq!(per_node, [3_000; 4], "users belong to every node in turn");
        // One node under test: everybody starts there.
        let single = Population::new(spec(100), &KEY);
        assert!((0..100).all(|k| single.first_node(k) == 2));
    }

    #[test]
    fn schedule_obeys_holds() {
        let mut s = Schedule::new(3);
        assert_eq!(s.next_ready(0, 8), Some(0));
        s.hold(0, 1_000);
        assert_eq!(s.next_ready(0, 8), Some(1));
        s.answered(1, 0, 5_000);
        assert_eq!(s.next_ready(0, 8), Some(2));
        s.hold(2, 1_000);
        assert_eq!(s.next_ready(10, 8), None, "all three wait");
        assert_eq!(s.next_ready(1_000, 8), Some(0));
        assert_eq!(s.next_ready(1_000, 8), Some(2));
        assert_eq!(s.next_ready(4_999, 8), Some(0));
        assert_eq!(s.next_ready(5_000, 1), Some(1));
    }
}
