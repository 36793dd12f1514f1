//! Large tables in anonymous memory maps with a transparent-huge-page hint.
//!
//! A node's user table is hundreds of megabytes to gigabytes, probed at random once per
//! shake. With 4 KiB pages nearly every probe also misses the TLB; with 2 MiB pages the page
//! walk mostly hits. Kernels configured `madvise`-only (Debian's default) give huge pages only
//! to mappings that ask, so tables are mapped here and advised `MADV_HUGEPAGE`. Anonymous maps
//! are zero-filled, which is why element types must be valid as all-zero bytes.
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use memmap2::{Advice, MmapMut};

/// Types for which every bit pattern of zeros is a valid value and which hold no pointers.
///
/// # Safety
/// Implement only for plain-old-data types (integers and arrays or `repr(C)` structs of them)
/// whose all-zero byte pattern is a valid value.
pub unsafe trait Zeroable: Copy {}

// SAFETY: a user-table bucket is four slots of integers (u64, u32, u32); all zeros is four
// empty slots. Kept here so every unsafe line of the engine's memory lives in this module.
unsafe impl Zeroable for crate::engine::users::Bucket {}

/// A fixed-length array of `T` in its own anonymous mapping.
pub struct HugeArray<T: Zeroable> {
    map: MmapMut,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Zeroable> HugeArray<T> {
    /// `len` zeroed elements. The huge-page hint is best effort: a kernel that refuses it
    /// still gives working (small-page) memory.
    pub fn zeroed(len: usize) -> std::io::Result<Self> {
        let bytes = (len * std::mem::size_of::<T>()).max(1);
        let map = MmapMut::map_anon(bytes)?;
        let _ = map.advise(Advice::HugePage);
        // A mapping is page-aligned; any T here is aligned to at most a cache line.
        assert!(std::mem::align_of::<T>() <= 4096);
        Ok(HugeArray {
            map,
            len,
            _t: PhantomData,
        })
    }

    pub fn bytes(&self) -> usize {
        self.len * std::mem::size_of::<T>()
    }

    /// Asks the CPU to bring element `i` into the cache; a hint that never faults. Lookups
    /// into a table far larger than the caches issue these for a whole burst first, so the
    /// misses overlap instead of queueing one per packet.
    #[inline]
    pub fn prefetch(&self, i: usize) {
        if i >= self.len {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `i < len`, so the address is inside this live mapping; prefetch is a hint that
        // reads nothing architecturally and cannot fault. SSE is part of the x86_64 baseline.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(self.map.as_ptr().add(i * std::mem::size_of::<T>()).cast());
        }
    }
}

impl<T: Zeroable> Deref for HugeArray<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the mapping is page-aligned (so aligned for T), at least `len * size_of::<T>()`
        // bytes long, zero-filled by the kernel (valid for T: Zeroable), and lives as long as
        // `self`; the returned borrow is tied to `&self`.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Zeroable> DerefMut for HugeArray<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Zeroable + std::fmt::Debug> std::fmt::Debug for HugeArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HugeArray[{}; {} bytes]", self.len, self.bytes())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    #[repr(C, align(64))]
    struct Line([u64; 8]);
    // SAFETY: an array of integers; all zeros is a valid value.
    unsafe impl Zeroable for Line {}

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
}
