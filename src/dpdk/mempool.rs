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

/// Where a pool's objects lie ([`Mempool::layout`]): what an AF_XDP port checks before the
/// PMD registers the pool as its UMEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Memory chunks the pool was populated in.
    pub chunks: u32,
    /// Address of the first chunk.
    pub first_chunk: usize,
    /// One past the last byte of the object that ends last.
    pub end: usize,
    pub objects: u32,
    /// Bytes of each object: its header, the mbuf with its data room, its trailer.
    pub object_size: u32,
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
        Ok(Self::adopt(raw, size, name))
    }

    /// [`new`](Self::new), with the mbufs packed end to end, also across page boundaries
    /// (`RTE_MEMPOOL_F_NO_IOVA_CONTIG`): what DPDK 22.11's AF_XDP PMD needs. It registers
    /// the pool as its UMEM by the first chunk's address and `size * object size` bytes;
    /// laid out the default way, no mbuf straddles a page, so on 4 KiB pages (one 2.3 KiB
    /// mbuf per page) two fifths of them would lie beyond that length (on 2 MiB pages, a
    /// few), and the kernel throws away each such buffer it takes from the fill ring: the
    /// ring runs low and frames are dropped (measured on a veth: 90% of them). An mbuf may
    /// now straddle two pages, which only a device that DMAs into it could mind: AF_XDP
    /// zero-copy drivers check that the two pages are physically adjacent (on hugepages
    /// they mostly are) and lose the odd buffer where not; copy mode never minds.
    pub fn new_packed(
        _eal: &'eal Eal,
        name: &str,
        size: u32,
        cache: u32,
        socket: i32,
    ) -> Result<Mempool<'eal>, DpdkError> {
        let what = |step: &str| format!("mempool {name} ({size} packed mbufs): {step}");
        let c_name = CString::new(name).map_err(|_| DpdkError::Config(what("name")))?;
        let data_room = dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;
        let elt_size = std::mem::size_of::<dpdk_sys::rte_mbuf>() as u32 + u32::from(data_room);
        // The steps of rte_pktmbuf_pool_create_by_ops, with the one flag it cannot take.
        // SAFETY: c_name lives for the call, which copies it; the EAL is initialised.
        let raw = unsafe {
            dpdk_sys::rte_mempool_create_empty(
                c_name.as_ptr(),
                size,
                elt_size,
                cache,
                std::mem::size_of::<dpdk_sys::rte_pktmbuf_pool_private>() as u32,
                socket,
                dpdk_sys::RTE_MEMPOOL_F_NO_IOVA_CONTIG,
            )
        };
        let raw = non_null(raw, || what("rte_mempool_create_empty"))?;
        let fail = |step: &str, ret: i32| {
            // SAFETY: raw is the empty or partly populated pool made above, which nothing
            // else references; freeing it releases its memory.
            unsafe { dpdk_sys::rte_mempool_free(raw.as_ptr()) };
            Err(DpdkError::errno(what(step), ret))
        };
        // SAFETY: raw is a live pool with no objects yet; the ops name is DPDK's own static
        // string.
        let ret = unsafe {
            dpdk_sys::rte_mempool_set_ops_byname(
                raw.as_ptr(),
                dpdk_sys::rte_mbuf_best_mempool_ops(),
                std::ptr::null_mut(),
            )
        };
        if ret != 0 {
            return fail("rte_mempool_set_ops_byname", ret);
        }
        let mut private = dpdk_sys::rte_pktmbuf_pool_private {
            mbuf_data_room_size: data_room,
            mbuf_priv_size: 0,
            flags: 0,
        };
        // SAFETY: raw was created with room for an rte_pktmbuf_pool_private, which this
        // copies from `private` (live for the call).
        unsafe { dpdk_sys::rte_pktmbuf_pool_init(raw.as_ptr(), (&raw mut private).cast()) };
        // SAFETY: raw is a live, empty pool with its ops set.
        let ret = unsafe { dpdk_sys::rte_mempool_populate_default(raw.as_ptr()) };
        if ret < 0 {
            return fail("rte_mempool_populate_default", ret);
        }
        // SAFETY: raw is populated; rte_pktmbuf_init initialises each object as an mbuf of
        // this pool and takes no argument.
        unsafe {
            dpdk_sys::rte_mempool_obj_iter(
                raw.as_ptr(),
                Some(dpdk_sys::rte_pktmbuf_init),
                std::ptr::null_mut(),
            )
        };
        Ok(Self::adopt(raw, size, name))
    }

    /// A handle on a pool just made (counted live until it is freed).
    fn adopt(raw: NonNull<rte_mempool>, size: u32, name: &str) -> Mempool<'eal> {
        LIVE_POOLS.fetch_add(1, Ordering::SeqCst);
        Mempool {
            raw,
            size,
            name: name.to_owned(),
            _eal: PhantomData,
        }
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

    /// Where the pool's objects lie.
    pub fn layout(&self) -> Layout {
        /// Raises `*opaque` (a usize) to the end of object `obj` (its element's address).
        unsafe extern "C" fn end_of(
            mp: *mut rte_mempool,
            opaque: *mut std::os::raw::c_void,
            obj: *mut std::os::raw::c_void,
            _index: std::os::raw::c_uint,
        ) {
            // SAFETY: rte_mempool_obj_iter passes its live pool and the opaque pointer given
            // to it below, a usize that nothing else touches during the iteration.
            let (mp, end) = unsafe { (&*mp, &mut *opaque.cast::<usize>()) };
            *end = (*end).max(obj as usize + (mp.elt_size + mp.trailer_size) as usize);
        }
        let mut end = 0usize;
        // SAFETY: the pool is live and populated; the callback only reads the pool's sizes
        // and writes `end`, which lives for the call.
        unsafe {
            dpdk_sys::rte_mempool_obj_iter(self.raw.as_ptr(), Some(end_of), (&raw mut end).cast())
        };
        // SAFETY: as in `object_bytes`; the first chunk's header is the pool's, live with it.
        let mp = unsafe { &*self.raw.as_ptr() };
        let first = mp.mem_list.stqh_first;
        Layout {
            chunks: mp.nb_mem_chunks,
            // SAFETY: a populated pool has at least one chunk header, owned by the pool.
            first_chunk: if first.is_null() {
                0
            } else {
                unsafe { (*first).addr as usize }
            },
            end,
            objects: mp.populated_size,
            object_size: mp.header_size + mp.elt_size + mp.trailer_size,
        }
    }

    /// Bytes of the pool's objects (each mbuf with its header, data room and trailer): what
    /// an AF_XDP port registers with the kernel as its UMEM.
    pub fn object_bytes(&self) -> u64 {
        // SAFETY: the pool is live; these fields are set at creation and only read here.
        let mp = unsafe { &*self.raw.as_ptr() };
        u64::from(mp.populated_size) * u64::from(mp.header_size + mp.elt_size + mp.trailer_size)
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
