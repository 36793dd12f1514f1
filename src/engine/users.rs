//! The per-worker user table: when each user may shake again.
//!
//! Sized for the worst case at start (100 million users per node in at most 2.5 GB) and never
//! grown: a user costs 16 bytes in a table kept at most 64% full, so 25 bytes per planned user.
//! Slots sit four to a 64-byte bucket and a user probes at most [`PROBE_BUCKETS`] buckets
//! from its home bucket, so a lookup touches one cache line in the common case and a bounded
//! number in the worst.
//!
//! An entry whose throttle time has passed carries no information (wins live in the
//! [`WinnerTable`](super::winners::WinnerTable)), so inserts reuse such slots: the table
//! never fills up with users who left. If a probe window holds neither the user, a free slot
//! nor an expired one, the shake is refused as overload instead of growing the table.

use crate::hugemem::{HugeArray, Zeroable};

/// Buckets probed from a user's home bucket.
pub const PROBE_BUCKETS: usize = 4;
const SLOTS: usize = 4;
/// Bytes of table per planned user.
pub const BYTES_PER_USER: usize = 25;

#[derive(Debug, Clone, Copy, Default, Zeroable)]
#[repr(C)]
pub(crate) struct Slot {
    user_id: u64,
    /// Milliseconds after `base_ms` before which the user is throttled.
    next_ok: u32,
    /// Bit 0: occupied.
    flags: u32,
}

// Zeroable, derived: all zeros is four empty slots (flags bit 0 clear), what a fresh huge-page
// mapping holds.
#[derive(Debug, Clone, Copy, Default, Zeroable)]
#[repr(C, align(64))]
pub(crate) struct Bucket([Slot; SLOTS]);

/// A time on the table's 32-bit millisecond clock, and when a user admitted then may come
/// back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableClock {
    now: u32,
    next: u32,
}

/// What the table says about a shake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Go ahead; the user is now throttled for the interval given.
    Ok,
    /// Too soon; this many milliseconds remain.
    Throttled(u32),
    /// No room in the user's probe window.
    Full,
}

/// A user's home bucket as [`UserTable::touch`] found it: a prefetch hint for a lookup to
/// come, never an input of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Home(usize);

impl Home {
    /// No bucket: touching it prefetches an address outside the table, a hint that reads
    /// nothing and cannot fault.
    pub const NONE: Home = Home(usize::MAX);
}

#[derive(Debug)]
pub struct UserTable {
    /// In a huge-page-advised mapping: probes are random over the whole table.
    buckets: HugeArray<Bucket>,
    base_ms: u64,
    len: usize,
}

/// The hash whose high bits pick a user's home bucket ([`UserTable::home`] scales them by
/// the bucket count). Users of one node share `user_id mod node_count`: mix before reducing.
///
/// The xor-shift folds the high word into the low one before the multiply, so ids that
/// differ only in their high bits land apart. No xor-shift after the multiply: it changed
/// only the low 32 bits, which move a bucket chosen by the high ones by at most one, for
/// fewer than n / 2^32 of the users; without it the same ids fill the same windows (a
/// simulation of random ids and of every progression of the test
/// `progressions_of_a_nodes_users_fill_no_window_of_any_worker`), in 3 instructions less a
/// hash, twice a request.
///
/// Not a bare multiply (Fibonacci hashing, 2 instructions less again):
/// [`owner_worker`](crate::engine::config::owner_worker) picks a user's worker from the high
/// bits of the same product, so each worker's users would all hash into one slice of its
/// table (50 000 sequential ids on 4 workers: 61% refused as Full), and even in one table it
/// refused 7702 of 40 000 ids at a stride of 36. Another multiplier alone refused 9% of the
/// ids `k << 32 | 18` on 18 nodes of 2 workers.
#[inline]
fn mix(user_id: u64) -> u64 {
    (user_id ^ (user_id >> 31)).wrapping_mul(0xd6e8_feb8_6659_fd93)
}

impl UserTable {
    /// A table for up to `users` users; `now_ms` anchors its 32-bit millisecond clock
    /// (49 days of uptime).
    ///
    /// Panics if the memory cannot be mapped; a node uses [`try_new`](Self::try_new).
    pub fn new(users: usize, now_ms: u64) -> Self {
        Self::try_new(users, now_ms).expect("mapping the user table")
    }

    /// As [`new`](Self::new), with a failed mapping (not enough memory for the planned users)
    /// as an error.
    pub fn try_new(users: usize, now_ms: u64) -> std::io::Result<Self> {
        let bytes = users.max(1).checked_mul(BYTES_PER_USER).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{users} users need more bytes than the address space has"),
            )
        })?;
        let n = bytes
            .div_ceil(std::mem::size_of::<Bucket>())
            .max(PROBE_BUCKETS);
        Ok(UserTable {
            buckets: HugeArray::zeroed(n)?,
            base_ms: now_ms,
            len: 0,
        })
    }

    /// Waits until every page of the table is in memory (see [`crate::hugemem`]).
    pub fn wait_populated(&mut self) {
        self.buckets.wait_populated();
    }

    /// Bytes the table occupies.
    pub fn bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>()
    }

    /// Entries in use (including expired ones not yet reused).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn home(&self, user_id: u64) -> usize {
        self.buckets.index_of_hash(mix(user_id))
    }

    #[inline]
    fn rel(&self, now_ms: u64) -> u32 {
        now_ms.saturating_sub(self.base_ms).min(u32::MAX as u64) as u32
    }

    /// Touches the user's home bucket so a later [`admit`](Self::admit) finds it in cache.
    /// Issued for a whole burst first, so the core overlaps the cache misses. Returns the
    /// bucket, to touch it again later without hashing ([`touch_home`](Self::touch_home)).
    #[inline]
    pub fn touch(&self, user_id: u64) -> Home {
        let h = self.home(user_id);
        self.buckets.prefetch(h);
        Home(h)
    }

    /// Touches a bucket [`touch`](Self::touch) returned again. Only a hint: a `Home` of
    /// another table, or [`Home::NONE`], touches some other address (a prefetch never
    /// faults), and changes no lookup (lookups always hash the user id).
    #[inline]
    pub fn touch_home(&self, home: Home) {
        self.buckets.prefetch(home.0);
    }

    /// The table's view of a time and throttle interval, for [`admit_at`](Self::admit_at):
    /// computed once per burst instead of per shake.
    #[inline]
    pub fn clock(&self, now_ms: u64, interval_ms: u32) -> TableClock {
        let now = self.rel(now_ms);
        TableClock {
            now,
            next: now.saturating_add(interval_ms),
        }
    }

    /// Checks and updates the user's throttle: a user may shake again `interval_ms` after
    /// their last admitted shake.
    #[inline]
    pub fn admit(&mut self, user_id: u64, now_ms: u64, interval_ms: u32) -> Admit {
        self.admit_at(user_id, self.clock(now_ms, interval_ms))
    }

    /// [`admit`](Self::admit) at a time given by [`clock`](Self::clock).
    ///
    /// Always inlined: called once a request, from the decision. Left to the compiler, the
    /// node's worker (file seeds and journal) called it out of line, 15 instructions a
    /// request more than the datapath benchmark's worker, where it was inlined
    /// (bench/worker_ir.sh).
    #[inline(always)]
    pub fn admit_at(&mut self, user_id: u64, clock: TableClock) -> Admit {
        let TableClock { now, next } = clock;
        let n = self.buckets.len();
        let mut b = self.home(user_id);
        let mut reuse: Option<(usize, usize)> = None;
        for _ in 0..PROBE_BUCKETS {
            for (i, s) in self.buckets[b].0.iter_mut().enumerate() {
                if s.flags & 1 == 0 {
                    // Never used: the user is not further along this chain.
                    let (rb, ri) = reuse.unwrap_or((b, i));
                    if reuse.is_none() {
                        self.len += 1;
                    }
                    let slot = &mut self.buckets[rb].0[ri];
                    *slot = Slot {
                        user_id,
                        next_ok: next,
                        flags: 1,
                    };
                    return Admit::Ok;
                }
                if s.user_id == user_id {
                    if now < s.next_ok {
                        return Admit::Throttled(s.next_ok - now);
                    }
                    s.next_ok = next;
                    return Admit::Ok;
                }
                if reuse.is_none() && s.next_ok <= now {
                    reuse = Some((b, i));
                }
            }
            b += 1;
            if b == n {
                b = 0;
            }
        }
        match reuse {
            Some((rb, ri)) => {
                self.buckets[rb].0[ri] = Slot {
                    user_id,
                    next_ok: next,
                    flags: 1,
                };
                Admit::Ok
            }
            None => Admit::Full,
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn throttles_until_interval_passes() {
        let mut t = UserTable::new(100, 1_000);
        assert_eq!(t.admit(7, 1_000, 5_000), Admit::Ok);
        assert_eq!(t.admit(7, 2_000, 5_000), Admit::Throttled(4_000));
        assert_eq!(t.admit(8, 2_000, 5_000), Admit::Ok);
        assert_eq!(t.admit(7, 5_999, 5_000), Admit::Throttled(1));
        assert_eq!(t.admit(7, 6_000, 5_000), Admit::Ok);
        assert_eq!(t.len(), 2);
    }

    /// A user count whose table size overflows is an error. Before the check it panicked in
    /// a debug build and, in release, wrapped to a table far smaller than planned.
    #[test]
    fn a_user_count_past_the_address_space_is_an_error() {
        for users in [usize::MAX / BYTES_PER_USER + 1, usize::MAX] {
            let e = UserTable::try_new(users, 0).expect_err("no such table");
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{users}: {e}");
        }
    }

    #[test]
    fn size_is_25_bytes_per_user() {
        let t = UserTable::new(1_000_000, 0);
        assert!(t.bytes() <= 1_000_000 * BYTES_PER_USER + 64);
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
    }

    /// A node's users as its workers get them (`user_id mod node_count` picks the node,
    /// `owner_worker` the worker), with ids in arithmetic progressions as they are handed
    /// out, up to the planned count: no worker refuses any as Full. A bare multiply for the
    /// table's hash fails it: by `owner_worker`'s multiplier (Fibonacci hashing) already in
    /// one table (7702 of the ids at a stride of 36), by another one on the high-word ids of
    /// 18 nodes of 2 workers (7382).
    #[test]
    fn progressions_of_a_nodes_users_fill_no_window_of_any_worker() {
        use crate::engine::config::owner_worker;
        type Progression = (&'static str, fn(u64, u64) -> u64);
        let progressions: [Progression; 5] = [
            ("sequential", |k, _| k + 1),
            ("stride 36", |k, _| k * 36),
            ("stride of the workers", |k, nw| k * nw),
            ("stride of the workers, offset", |k, nw| k * nw + 1),
            ("high words", |k, _| (k << 32) | 18),
        ];
        for (nodes, workers) in [(1u32, 1u32), (1, 4), (2, 8), (3, 2), (18, 2), (18, 36)] {
            for (name, id) in progressions {
                let mine: Vec<u64> = (0..40_000 * u64::from(nodes))
                    .map(|k| id(k, u64::from(nodes * workers)))
                    .filter(|u| u % u64::from(nodes) == 0)
                    .collect();
                let planned = mine.len() / workers as usize;
                let mut tables: Vec<UserTable> =
                    (0..workers).map(|_| UserTable::new(planned, 0)).collect();
                let full = mine
                    .iter()
                    .filter(|&&u| {
                        let w = owner_worker(u, nodes, workers) as usize;
                        tables[w].admit(u, 1, 60_000) == Admit::Full
                    })
                    .count();
                assert_eq!(full, 0, "{name}, {nodes} nodes of {workers} workers");
            }
        }
    }

    #[test]
    fn holds_its_planned_users_and_refuses_beyond_without_panicking() {
        let planned = 10_000;
        let mut t = UserTable::new(planned, 0);
        for u in 0..planned as u64 {
            assert_eq!(t.admit(u * 7919, 0, 60_000), Admit::Ok, "user {u}");
        }
        // All still throttled: none lost.
        for u in 0..planned as u64 {
            assert!(matches!(t.admit(u * 7919, 1, 60_000), Admit::Throttled(_)));
        }
        // Far beyond planned, with nobody expired, some windows fill: refused, not grown.
        let full = (0..planned as u64 * 2)
            .filter(|u| t.admit(u64::MAX - u, 1, 60_000) == Admit::Full)
            .count();
        assert!(full > 0);
        // Once the throttle has passed, slots are reused.
        assert_eq!(t.admit(u64::MAX - 1, 120_000, 60_000), Admit::Ok);
        let bytes = t.bytes();
        assert_eq!(bytes, UserTable::new(planned, 0).bytes());
    }
}
