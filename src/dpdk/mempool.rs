//! A pool of packet buffers on one NUMA socket.

use std::ffi::CString;
use std::ptr::NonNull;

use dpdk_sys::rte_mempool;

use super::error::{non_null, DpdkError};
use super::mbuf::{Burst, Mbuf, BURST};

/// An `rte_pktmbuf` pool. Freed on drop only when every mbuf has come back; otherwise it is
/// left to `rte_eal_cleanup`, as a device may still hold buffers from it.
#[derive(Debug)]
pub struct Mempool {
    raw: NonNull<rte_mempool>,
    size: u32,
    name: String,
}

// SAFETY: an rte_mempool is built for use from many threads (lock-free ring plus per-lcore
// caches); this handle only allocates, counts and frees it.
unsafe impl Send for Mempool {}
// SAFETY: as above; every operation through `&Mempool` is thread-safe in DPDK.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// `rte_pktmbuf_pool_create` with DPDK's default buffer size (2048 bytes of data after
    /// the headroom). `size` is best one less than a power of two.
    pub fn new(name: &str, size: u32, cache: u32, socket: i32) -> Result<Mempool, DpdkError> {
        let what = || {
            format!(
                "mempool {name}: rte_pktmbuf_pool_create({size}, cache {cache}, socket {socket})"
            )
        };
        let c_name = CString::new(name).map_err(|_| DpdkError::Config(what()))?;
        // SAFETY: c_name is a valid NUL-terminated string for the duration of the call, which
        // copies it; the EAL is initialised (a Mempool is only built after Eal::init).
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
        Ok(Mempool {
            raw: non_null(raw, what)?,
            size,
            name: name.to_owned(),
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

impl Mempool {
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

impl Drop for Mempool {
    fn drop(&mut self) {
        if self.available() == self.size {
            // SAFETY: every mbuf is back in the pool, so nothing references its memory.
            unsafe { dpdk_sys::rte_mempool_free(self.raw.as_ptr()) }
        }
    }
}
