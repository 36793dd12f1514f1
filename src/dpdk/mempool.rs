//! A pool of packet buffers on one NUMA socket.

use std::ffi::CString;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use dpdk_sys::rte_mempool;

use super::eal::Eal;
use super::error::{non_null, DpdkError};
use super::mbuf::{Burst, Mbuf, BURST};

/// Pools created and not freed. [`Eal`]'s drop frees the EAL's memory only when this is 0:
/// an [`Mbuf`] has no lifetime, so one may still point into a pool that was not freed.
static LIVE_POOLS: AtomicUsize = AtomicUsize::new(0);

/// Pools whose [`Mempool`] was dropped: (pool, size). They are freed by [`Eal`]'s drop,
/// after every worker lcore has returned, not by the handle's drop: "every mbuf is back"
/// read on one thread does not order a free still in progress on an lcore (DPDK counts a
/// per-lcore cache before it fills it), so a pool is freed only when no lcore runs.
static RETIRED: Mutex<Vec<(usize, u32)>> = Mutex::new(Vec::new());

/// Frees the retired pools whose mbufs are all back; returns how many pools are left. Called
/// by the Eal's drop once no worker lcore runs.
pub(super) fn free_retired() -> usize {
    let mut retired = RETIRED.lock().unwrap_or_else(|e| e.into_inner());
    retired.retain(|&(pool, size)| {
        let pool = pool as *mut rte_mempool;
        // SAFETY: a pool created by Mempool::new and not freed yet; no lcore runs (the
        // caller waited for them), so the count is settled.
        if unsafe { dpdk_sys::rte_mempool_avail_count(pool) } != size {
            return true;
        }
        // SAFETY: every mbuf is back in the pool and nothing else references it.
        unsafe { dpdk_sys::rte_mempool_free(pool) };
        LIVE_POOLS.fetch_sub(1, Ordering::SeqCst);
        false
    });
    LIVE_POOLS.load(Ordering::SeqCst)
}

/// An `rte_pktmbuf` pool, which cannot outlive the EAL. Retired on drop and freed with the
/// EAL when every mbuf has come back; otherwise it stays (a device or a stray [`Mbuf`] may
/// still hold buffers from it) and the EAL is then not cleaned up either.
///
/// The EAL cannot go (`rte_eal_cleanup`) while a pool is in use:
///
/// ```compile_fail,E0505
/// use shake::dpdk::{Eal, Mempool};
/// let eal = Eal::init(&["shake".to_owned(), "--no-pci".to_owned()]).unwrap();
/// let pool = Mempool::new(&eal, "pool", 63, 0, 0).unwrap();
/// drop(eal);
/// let _ = pool.alloc();
/// ```
#[derive(Debug)]
pub struct Mempool<'eal> {
    raw: NonNull<rte_mempool>,
    size: u32,
    name: String,
    _eal: PhantomData<&'eal Eal>,
}

// SAFETY: an rte_mempool is built for use from many threads (lock-free ring plus per-lcore
// caches); this handle only allocates, counts and frees it.
unsafe impl Send for Mempool<'_> {}
// SAFETY: as above; every operation through `&Mempool` is thread-safe in DPDK.
unsafe impl Sync for Mempool<'_> {}

impl<'eal> Mempool<'eal> {
    /// `rte_pktmbuf_pool_create` with DPDK's default buffer size (2048 bytes of data after
    /// the headroom). `size` is best one less than a power of two.
    pub fn new(
        _eal: &'eal Eal,
        name: &str,
        size: u32,
        cache: u32,
        socket: i32,
    ) -> Result<Mempool<'eal>, DpdkError> {
        let what = || {
            format!(
                "mempool {name}: rte_pktmbuf_pool_create({size}, cache {cache}, socket {socket})"
            )
        };
        let c_name = CString::new(name).map_err(|_| DpdkError::Config(what()))?;
        // SAFETY: c_name is a valid NUL-terminated string for the duration of the call, which
        // copies it; the EAL is initialised (`_eal` proves it and outlives the pool).
        let raw = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(
                c_name.as_ptr(),
                size,
                cache,
                0,
                dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
                socket,
            )
        };
        let raw = non_null(raw, what)?;
        LIVE_POOLS.fetch_add(1, Ordering::SeqCst);
        Ok(Mempool {
            raw,
            size,
            name: name.to_owned(),
            _eal: PhantomData,
        })
    }

    pub fn as_ptr(&self) -> *mut rte_mempool {
        self.raw.as_ptr()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Mbufs in the pool (including the per-lcore caches), not in use.
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is live; the count only reads it.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// One mbuf, reset, with no data; `None` when the pool is empty.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is live and a pktmbuf pool; the returned mbuf (if any) is ours.
        let m = unsafe { dpdk_sys::shake_pktmbuf_alloc(self.raw.as_ptr()) };
        // SAFETY: a non-null result is a freshly allocated mbuf nobody else references.
        NonNull::new(m).map(|m| unsafe { Mbuf::from_raw(m) })
    }
}

impl Mempool<'_> {
    /// Fills an empty `burst` with `n` (at most [`BURST`]) fresh mbufs in one bulk get, or
    /// leaves it empty and returns false when the pool has fewer than `n` left.
    #[inline]
    pub fn alloc_bulk(&self, burst: &mut Burst, n: usize) -> bool {
        burst.clear();
        let n = n.min(BURST);
        let (mbufs, len) = burst.raw_parts();
        // SAFETY: the pool is live and a pktmbuf pool; the array has room for BURST >= n
        // pointers, which on success are n fresh mbufs that now belong to the burst.
        let rc = unsafe {
            dpdk_sys::shake_pktmbuf_alloc_bulk(self.raw.as_ptr(), mbufs.as_mut_ptr(), n as u32)
        };
        if rc == 0 {
            *len = n;
        }
        rc == 0
    }
}

impl Drop for Mempool<'_> {
    fn drop(&mut self) {
        RETIRED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((self.raw.as_ptr() as usize, self.size));
    }
}
