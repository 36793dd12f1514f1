//! Large tables in anonymous memory maps with a transparent-huge-page hint.
//!
//! A node's user table is hundreds of megabytes to gigabytes, probed at random once per
//! shake. With 4 KiB pages nearly every probe also misses the TLB; with 2 MiB pages the page
//! walk mostly hits. Kernels configured `madvise`-only (Debian's default) give huge pages only
//! to mappings that ask, so tables are mapped here and advised `MADV_HUGEPAGE`. Anonymous maps
//! are zero-filled, which is why element types must be valid as all-zero bytes.
//!
//! Pages are faulted in ahead of use (`MADV_POPULATE_WRITE`), not on a worker's first touch
//! in the middle of the first wave of shakes: a huge-page fault zeroes 2 MiB and may compact
//! memory first, which held the demo's first second at a p99 of 46 ms (279 us with the
//! table populated). Up to [`POPULATE_INLINE`] bytes populate before the table is returned;
//! a larger table (a 100M-user node's 2.5 GB takes seconds) populates on a thread of its own
//! while the node starts and serves, so start-up does not wait for it. The advice writes
//! nothing, so it is safe while the worker already uses the table.
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use memmap2::{Advice, MmapMut};

/// Tables up to this size are populated before [`HugeArray::zeroed`] returns.
pub const POPULATE_INLINE: usize = 64 << 20;
/// Bytes per populate call on the background thread, between checks for cancellation.
const POPULATE_CHUNK: usize = 32 << 20;

/// Types whose all-zero byte pattern is a valid value: what a fresh anonymous mapping holds.
/// bytemuck's trait, derived (`#[derive(bytemuck::Zeroable)]`), so that no table type needs
/// an `unsafe impl` of its own: the derive checks every field.
pub use bytemuck::Zeroable;

/// A fixed-length array of `T` in its own anonymous mapping.
pub struct HugeArray<T: Zeroable + Copy> {
    map: MmapMut,
    len: usize,
    /// The background population of a large table, until it is joined.
    populating: Option<Populating>,
    _t: PhantomData<T>,
}

struct Populating {
    cancel: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Faults in (writable) the pages of `len` bytes at `addr`, `POPULATE_CHUNK` at a time,
/// until done or `cancel`. Best effort: a kernel without `MADV_POPULATE_WRITE` (before
/// Linux 5.14) or without free memory refuses, and pages then fault in on first touch.
fn populate(addr: usize, len: usize, cancel: &AtomicBool) {
    let mut off = 0;
    while off < len && !cancel.load(Ordering::Relaxed) {
        let n = POPULATE_CHUNK.min(len - off);
        // SAFETY: [addr + off, addr + off + n) lies inside a live anonymous mapping (the
        // owner joins this work before unmapping); `addr` is page-aligned and so is every
        // chunk start. MADV_POPULATE_WRITE only faults pages in and never changes their
        // contents, so it is sound while other threads read and write the memory.
        let r = unsafe {
            libc::madvise(
                (addr + off) as *mut libc::c_void,
                n,
                libc::MADV_POPULATE_WRITE,
            )
        };
        if r != 0 {
            return;
        }
        off += n;
    }
}

impl<T: Zeroable + Copy> HugeArray<T> {
    /// `len` zeroed elements, at least one (a `len` of 0 gives one: [`index_of_hash`]
    /// relies on it). The huge-page hint is best effort: a kernel that refuses it still gives
    /// working (small-page) memory.
    ///
    /// [`index_of_hash`]: Self::index_of_hash
    ///
    /// A `len` whose size in bytes does not fit a slice (over `isize::MAX`, or past
    /// `usize::MAX` where an unchecked product would wrap to a small mapping that `deref`
    /// then overruns) is an `InvalidInput` error.
    pub fn zeroed(len: usize) -> std::io::Result<Self> {
        let len = len.max(1);
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "a table of {len} elements of {} bytes is larger than the address space",
                        std::mem::size_of::<T>()
                    ),
                )
            })?
            .max(1);
        let mut map = MmapMut::map_anon(bytes)?;
        let _ = map.advise(Advice::HugePage);
        // A mapping is page-aligned; any T here is aligned to at most a cache line.
        assert!(std::mem::align_of::<T>() <= 4096);
        let (addr, len_bytes) = (map.as_mut_ptr() as usize, map.len());
        let populating = if len_bytes <= POPULATE_INLINE {
            populate(addr, len_bytes, &AtomicBool::new(false));
            None
        } else {
            let cancel = Arc::new(AtomicBool::new(false));
            let stop = cancel.clone();
            std::thread::Builder::new()
                .name("shake-populate".into())
                .spawn(move || populate(addr, len_bytes, &stop))
                .ok()
                .map(|thread| Populating { cancel, thread })
        };
        Ok(HugeArray {
            map,
            len,
            populating,
            _t: PhantomData,
        })
    }

    /// Waits until every page of the table is in (at once for a table populated inline).
    pub fn wait_populated(&mut self) {
        if let Some(p) = self.populating.take() {
            let _ = p.thread.join();
        }
    }

    pub fn bytes(&self) -> usize {
        self.len * std::mem::size_of::<T>()
    }

    /// The index a 64-bit hash picks: its value scaled to the length (the high half of
    /// `hash * len`, Lemire's multiply-shift), which is always below the length. The compiler
    /// is told so, so indexing with it needs no bounds check (2 instructions a lookup on the
    /// datapath).
    #[inline]
    pub fn index_of_hash(&self, hash: u64) -> usize {
        let i = ((u128::from(hash) * self.len as u128) >> 64) as usize;
        if i >= self.len {
            // SAFETY: unreachable: hash < 2^64, so hash * len / 2^64 < len, as len >= 1
            // (`zeroed`, the only constructor, makes at least one element).
            unsafe { std::hint::unreachable_unchecked() }
        }
        i
    }

    /// Asks the CPU to bring element `i` into the cache; a hint that never faults. Lookups
    /// into a table far larger than the caches issue these for a whole burst first, so the
    /// misses overlap instead of queueing one per packet.
    ///
    /// An `i` past the end is not checked: its address is computed with wrapping arithmetic
    /// (no pointer is formed past the mapping), and a prefetch of any address reads nothing
    /// architecturally and cannot fault. Callers hash into the table, so their `i` is in it,
    /// or pass `usize::MAX` for none (the user table's `Home::NONE`); the check cost 4
    /// instructions a request on the datapath (the stage and the second prefetch of a burst).
    #[inline]
    pub fn prefetch(&self, i: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            let at = self
                .map
                .as_ptr()
                .wrapping_add(i.wrapping_mul(std::mem::size_of::<T>()));
            // SAFETY: PREFETCHT0 is a hint: it reads nothing architecturally and cannot
            // fault, whatever the address. SSE is part of the x86_64 baseline.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch::<_MM_HINT_T0>(at.cast());
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }
}

impl<T: Zeroable + Copy> Deref for HugeArray<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the mapping is page-aligned (so aligned for T), at least `len * size_of::<T>()`
        // bytes long, zero-filled by the kernel (valid for T: Zeroable), and lives as long as
        // `self`; the returned borrow is tied to `&self`.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Zeroable + Copy> DerefMut for HugeArray<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Zeroable + Copy> Drop for HugeArray<T> {
    fn drop(&mut self) {
        // Before the mapping goes: stop and join a population still running.
        if let Some(p) = self.populating.take() {
            p.cancel.store(true, Ordering::Relaxed);
            let _ = p.thread.join();
        }
    }
}

impl<T: Zeroable + Copy + std::fmt::Debug> std::fmt::Debug for HugeArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HugeArray[{}; {} bytes]", self.len, self.bytes())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Zeroable)]
    #[repr(C, align(64))]
    struct Line([u64; 8]);

    /// Every hash picks an index in the array, the extremes included, and in proportion:
    /// the high half of `hash * len`. A zero length gives one element, so there always is one.
    #[test]
    fn a_hash_picks_an_index_in_bounds() {
        let one = HugeArray::<Line>::zeroed(0).unwrap();
        assert_eq!(one.len(), 1);
        for len in [1usize, 2, 3, 1000, 4097] {
            let a = HugeArray::<Line>::zeroed(len).unwrap();
            for h in [0, 1, u64::MAX / 2, u64::MAX / 2 + 1, u64::MAX - 1, u64::MAX] {
                let i = a.index_of_hash(h);
                assert!(i < len, "{h} in {len}: {i}");
                assert_eq!(i as u128, (u128::from(h) * len as u128) >> 64);
            }
            assert_eq!(a.index_of_hash(u64::MAX), len - 1);
            assert_eq!(a.index_of_hash(0), 0);
        }
    }

    /// A prefetch past the end, even of an index whose address wraps around, neither faults
    /// nor changes anything.
    #[test]
    fn a_prefetch_past_the_end_is_only_a_hint() {
        let mut a = HugeArray::<Line>::zeroed(4).unwrap();
        a[3].0[7] = 9;
        for i in [
            4,
            5,
            1 << 40,
            usize::MAX / 64,
            usize::MAX / 64 + 1,
            usize::MAX,
        ] {
            a.prefetch(i);
        }
        assert_eq!(a.len(), 4);
        assert_eq!(a[3].0[7], 9);
        assert!(a[..3].iter().all(|l| l.0 == [0; 8]));
    }

    /// A length whose byte size overflows is refused. Before the check, `len * 64` panicked
    /// here (debug assertions) and wrapped in release: `usize::MAX / 64 + 2` elements made a
    /// 64-byte mapping under a slice of 2^58 elements.
    #[test]
    fn a_size_past_the_address_space_is_an_error_not_a_short_mapping() {
        for len in [
            usize::MAX / 64 + 2,
            usize::MAX,
            isize::MAX as usize / 64 + 1,
        ] {
            let e = HugeArray::<Line>::zeroed(len).expect_err("no such table");
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{len}: {e}");
            assert!(e.to_string().contains(&len.to_string()), "{e}");
        }
        // The largest length that fits still gets as far as asking the kernel.
        let fits = isize::MAX as usize / 64;
        if let Err(e) = HugeArray::<Line>::zeroed(fits) {
            assert_ne!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
        }
    }

    #[test]
    fn zeroed_aligned_and_writable() {
        let mut a = HugeArray::<Line>::zeroed(100_000).unwrap();
        assert_eq!(a.len(), 100_000);
        assert!(a.iter().all(|l| *l == Line([0; 8])));
        assert_eq!(a.as_ptr() as usize % 64, 0);
        a[99_999].0[7] = 5;
        assert_eq!(a[99_999].0[7], 5);
        assert_eq!(a.bytes(), 6_400_000);
    }

    /// Resident bytes of the mapping at `addr..addr + len`, from /proc/self/smaps.
    fn resident(addr: usize, len: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            // A mapping's header line starts with its address range, "lo-hi".
            let range = line.split(' ').next().and_then(|r| r.split_once('-'));
            let bounds = range.and_then(|(lo, hi)| {
                Some((
                    usize::from_str_radix(lo, 16).ok()?,
                    usize::from_str_radix(hi, 16).ok()?,
                ))
            });
            if let Some((lo, hi)) = bounds {
                inside = lo <= addr && addr + len <= hi;
            } else if let (true, Some(kb)) = (inside, line.strip_prefix("Rss:")) {
                return kb
                    .trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap()
                    * 1024;
            }
        }
        panic!("mapping at {addr:#x} not in /proc/self/smaps");
    }

    #[test]
    fn pages_are_in_before_first_use() {
        // Inline (under POPULATE_INLINE) and on the background thread (over it).
        for lines in [100_000usize, (POPULATE_INLINE + (8 << 20)) / 64] {
            let mut a = HugeArray::<Line>::zeroed(lines).unwrap();
            a.wait_populated();
            let rss = resident(a.as_ptr() as usize, a.bytes());
            assert!(
                rss >= a.bytes() as u64,
                "{} of {} bytes resident before any use",
                rss,
                a.bytes()
            );
            assert!(
                a.iter().all(|l| *l == Line([0; 8])),
                "population wrote nothing"
            );
        }
    }
}
