//! An owned packet buffer, and bursts of them in fixed stack arrays.

use std::ptr::{self, NonNull};

use dpdk_sys::rte_mbuf;

use crate::frame::RxChecked;

/// Frames per RX burst, TX burst and ring transfer.
pub const BURST: usize = 32;

/// One single-segment mbuf, owned: dropping it frees it; [`Mbuf::into_raw`] hands it to
/// something that takes ownership (TX, a ring).
#[derive(Debug)]
#[repr(transparent)]
pub struct Mbuf(NonNull<rte_mbuf>);

// SAFETY: an owned mbuf is referenced by nobody else, and freeing it from any thread is
// safe (it goes back to its pool, which is thread-safe). Ownership moving between lcores is
// exactly what the hand-off rings do.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `m` must be a valid mbuf that nobody else owns or references afterwards (just
    /// received, allocated or dequeued).
    pub unsafe fn from_raw(m: NonNull<rte_mbuf>) -> Mbuf {
        Mbuf(m)
    }

    /// Gives up ownership, e.g. to TX, without freeing.
    pub fn into_raw(self) -> NonNull<rte_mbuf> {
        let m = self.0;
        std::mem::forget(self);
        m
    }

    pub fn as_ptr(&self) -> *mut rte_mbuf {
        self.0.as_ptr()
    }

    // The accessors below read and write rte_mbuf's plain fields in Rust, as DPDK's own
    // static inline helpers do in C, instead of calling the shim for each: they run several
    // times per frame, and an FFI call cannot be inlined. bindgen generated the struct from
    // the installed headers and its layout tests check every offset.

    /// Bytes of data in this (first) segment.
    #[inline]
    pub fn data_len(&self) -> usize {
        // SAFETY: self owns a valid mbuf; a plain field read.
        usize::from(unsafe { (*self.as_ptr()).data_len })
    }

    /// Bytes of the whole packet, all segments.
    #[inline]
    pub fn pkt_len(&self) -> usize {
        // SAFETY: self owns a valid mbuf; a plain field read.
        unsafe { (*self.as_ptr()).pkt_len as usize }
    }

    /// Room after the data in this segment (rte_pktmbuf_tailroom).
    #[inline]
    pub fn tailroom(&self) -> usize {
        // SAFETY: self owns a valid mbuf; plain field reads.
        let m = unsafe { &*self.as_ptr() };
        usize::from(m.buf_len).saturating_sub(usize::from(m.data_off) + usize::from(m.data_len))
    }

    /// The pool the mbuf belongs to.
    #[inline]
    pub fn pool_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        // SAFETY: self owns a valid mbuf; a plain field read.
        unsafe { (*self.as_ptr()).pool }
    }

    /// The DPDK port the mbuf was received on.
    #[inline]
    pub fn port(&self) -> u16 {
        // SAFETY: self owns a valid mbuf; a plain field read.
        unsafe { (*self.as_ptr()).port }
    }

    /// Records the port a frame belongs to, for frames that travel between lcores (not every
    /// driver sets it on RX).
    #[inline]
    pub fn set_port(&mut self, port: u16) {
        // SAFETY: self owns a valid mbuf; a plain field store.
        unsafe { (*self.as_ptr()).port = port }
    }

    /// The first data byte (rte_pktmbuf_mtod).
    #[inline]
    fn mtod(&self) -> *mut u8 {
        // SAFETY: self owns a valid mbuf, whose data starts data_off bytes into its buffer.
        let data = unsafe {
            let m = &*self.as_ptr();
            m.buf_addr.cast::<u8>().add(usize::from(m.data_off))
        };
        if data.is_null() {
            // SAFETY: unreachable: a valid mbuf's buffer is memory of its pool (mempools
            // never hand out address 0) and data_off lies within it. Told so, the compiler
            // drops the null test an iterator over the burst's frames made of every frame
            // (an `Option<&[u8]>` is None when null; 2 instructions a frame in the stage).
            unsafe { std::hint::unreachable_unchecked() }
        }
        data
    }

    #[inline]
    pub fn data(&self) -> &[u8] {
        // SAFETY: mtod points at data_len initialised bytes of the mbuf's buffer, which self
        // owns and which outlives the borrow of self.
        unsafe { std::slice::from_raw_parts(self.mtod(), self.data_len()) }
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and the borrow of self is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.mtod(), self.data_len()) }
    }

    /// Sets the frame length of a single-segment mbuf (data_len and pkt_len). Growing past
    /// the buffer is refused (false); the new bytes are whatever the buffer held.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> bool {
        // An answer is never longer than its request: the room after the data is looked at
        // only past it.
        if len > self.data_len() && len > self.data_len() + self.tailroom() {
            return false;
        }
        // SAFETY: self owns a valid mbuf; len fits its buffer (checked above) and so u16.
        unsafe {
            let m = &mut *self.as_ptr();
            m.data_len = len as u16;
            m.pkt_len = len as u32;
        }
        true
    }

    /// TX offload flags (`RTE_MBUF_F_TX_*`), replacing the RX flags, and the header lengths
    /// they need; the other tx_offload fields (L4 length, TSO, outer headers) become zero.
    /// The two flags that say where the mbuf's buffer lives (external, indirect) are DPDK's,
    /// not offloads: they are kept as they are, whatever `ol_flags` says, or freeing the
    /// mbuf would hand its pool a buffer that belongs to someone else.
    #[inline]
    pub fn set_tx_offload(&mut self, ol_flags: u64, l2_len: u16, l3_len: u16) {
        const BUFFER: u64 = dpdk_sys::RTE_MBUF_F_EXTERNAL | dpdk_sys::RTE_MBUF_F_INDIRECT;
        let tx_offload = tx_offload_bits(l2_len, l3_len);
        // SAFETY: self owns a valid mbuf; plain field stores (tx_offload is the u64 view of
        // the union of bit fields), the buffer flags unchanged.
        unsafe {
            let m = &mut *self.as_ptr();
            m.ol_flags = (m.ol_flags & BUFFER) | (ol_flags & !BUFFER);
            m.__bindgen_anon_3.tx_offload = tx_offload;
        }
    }

    /// What the NIC verified of the received frame, from its receive flags.
    #[inline]
    pub fn rx_checked(&self) -> RxChecked {
        // SAFETY: self owns a valid mbuf; a plain field load.
        rx_checked_of(unsafe { (*self.as_ptr()).ol_flags })
    }

    /// Sets the receive checksum flags as a NIC that verified `checked` would (the others
    /// unknown), keeping the rest of `ol_flags`: for tests of what a worker does with the
    /// flags (virtual devices and rings set none).
    #[inline]
    pub fn set_rx_checked(&mut self, checked: RxChecked) {
        const MASK: u64 =
            dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_MASK | dpdk_sys::RTE_MBUF_F_RX_L4_CKSUM_MASK;
        // SAFETY: self owns a valid mbuf; a plain field store (the checksum bits only).
        unsafe {
            let m = &mut *self.as_ptr();
            m.ol_flags = (m.ol_flags & !MASK) | rx_flags_of(checked);
        }
    }

    /// Starts loading the frame's first cache line.
    #[inline]
    pub fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint that reads nothing architecturally and cannot fault;
        // this one is the mbuf's data. SSE is part of the x86_64 baseline.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(self.mtod().cast::<i8>());
        }
        #[cfg(not(target_arch = "x86_64"))]
        // SAFETY: as above, through DPDK's rte_prefetch0.
        unsafe {
            dpdk_sys::shake_prefetch0(self.mtod().cast())
        }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: self owns the mbuf; it is freed exactly once, here.
        unsafe { dpdk_sys::shake_pktmbuf_free(self.as_ptr()) }
    }
}

/// The frame layer's [`RxChecked`] from an mbuf's receive flags: only GOOD counts. Each
/// checksum has a two-bit field: UNKNOWN (0), BAD, GOOD, and NONE (both bits: "the checksum
/// in the data is not right, but the data's integrity is verified", which virtual devices
/// report for frames the sending kernel left unsummed); NONE is summed here like UNKNOWN,
/// since a frame's checksum field is what SPEC 2 judges.
#[inline]
pub(crate) fn rx_checked_of(ol_flags: u64) -> RxChecked {
    use dpdk_sys::{
        RTE_MBUF_F_RX_IP_CKSUM_GOOD, RTE_MBUF_F_RX_IP_CKSUM_MASK, RTE_MBUF_F_RX_L4_CKSUM_GOOD,
        RTE_MBUF_F_RX_L4_CKSUM_MASK,
    };
    let mut c = RxChecked::empty();
    c.set(
        RxChecked::IPV4,
        ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK == RTE_MBUF_F_RX_IP_CKSUM_GOOD,
    );
    c.set(
        RxChecked::L4,
        ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK == RTE_MBUF_F_RX_L4_CKSUM_GOOD,
    );
    c
}

/// The receive flags that say `checked` (GOOD for what it holds, UNKNOWN otherwise): the
/// inverse of [`rx_checked_of`].
fn rx_flags_of(checked: RxChecked) -> u64 {
    use dpdk_sys::{
        RTE_MBUF_F_RX_IP_CKSUM_GOOD, RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN, RTE_MBUF_F_RX_L4_CKSUM_GOOD,
        RTE_MBUF_F_RX_L4_CKSUM_UNKNOWN,
    };
    let ip = if checked.contains(RxChecked::IPV4) {
        RTE_MBUF_F_RX_IP_CKSUM_GOOD
    } else {
        RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN
    };
    let l4 = if checked.contains(RxChecked::L4) {
        RTE_MBUF_F_RX_L4_CKSUM_GOOD
    } else {
        RTE_MBUF_F_RX_L4_CKSUM_UNKNOWN
    };
    ip | l4
}

/// rte_mbuf's tx_offload with only l2_len and l3_len set, packed as
/// rte_mbuf_tx_offload() packs them: l2_len in bits 0-6, l3_len in bits 7-15.
#[inline]
fn tx_offload_bits(l2_len: u16, l3_len: u16) -> u64 {
    u64::from(l2_len & 0x7f) | (u64::from(l3_len & 0x1ff) << 7)
}

/// Up to [`BURST`] owned mbufs in a stack array: what RX filled, what goes to TX or a ring.
/// Dropping it frees what it still holds. No allocation, ever.
pub struct Burst {
    /// `mbufs[..len]` are owned; the rest are null.
    mbufs: [*mut rte_mbuf; BURST],
    len: usize,
}

impl Default for Burst {
    fn default() -> Self {
        Burst {
            mbufs: [ptr::null_mut(); BURST],
            len: 0,
        }
    }
}

impl std::fmt::Debug for Burst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Burst").field("len", &self.len).finish()
    }
}

// SAFETY: a Burst owns its mbufs exclusively, like a collection of `Mbuf`s (which are Send).
unsafe impl Send for Burst {}

impl Burst {
    pub fn new() -> Burst {
        Burst::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == BURST
    }

    /// Adds an mbuf; gives it back when the burst is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.is_full() {
            return Err(m);
        }
        self.mbufs[self.len] = m.into_raw().as_ptr();
        self.len += 1;
        Ok(())
    }

    /// Takes the mbufs out, in order, leaving the burst empty. The drain borrows the burst's
    /// array (no copy of it); what it does not hand out it frees in bulk.
    #[inline]
    pub fn take(&mut self) -> Drain<'_> {
        let len = std::mem::take(&mut self.len);
        Drain {
            mbufs: &self.mbufs,
            at: 0,
            len,
        }
    }

    /// The mbufs, borrowed.
    pub fn iter(&self) -> impl Iterator<Item = &Mbuf> {
        // SAFETY: Mbuf is a transparent NonNull and mbufs[..len] are non-null owned mbufs;
        // the borrow of self keeps them alive and owned.
        self.mbufs[..self.len]
            .iter()
            .map(|p| unsafe { &*(p as *const *mut rte_mbuf as *const Mbuf) })
    }

    /// The mbufs, mutably borrowed.
    pub fn as_mut_slice(&mut self) -> &mut [Mbuf] {
        // SAFETY: as in `iter`; Mbuf has the layout of a non-null pointer, and the exclusive
        // borrow of self makes the slice the only access.
        unsafe { std::slice::from_raw_parts_mut(self.mbufs.as_mut_ptr().cast::<Mbuf>(), self.len) }
    }

    /// Keeps the first `n` mbufs and frees the rest in one bulk call.
    #[inline]
    pub fn truncate(&mut self, n: usize) {
        if n < self.len {
            free_bulk(&self.mbufs[n..self.len]);
            self.len = n;
        }
    }

    /// Frees everything held, in one bulk call.
    #[inline]
    pub fn clear(&mut self) {
        let len = std::mem::take(&mut self.len);
        free_bulk(&self.mbufs[..len]);
    }

    /// Fills an empty burst from an RX queue; returns how many came. Safe callers use
    /// [`RxQueue::rx`](super::port::RxQueue::rx).
    ///
    /// # Safety
    /// `port` is started and stays open during the call, and no other thread receives on
    /// `queue` at the same time.
    #[inline]
    pub(super) unsafe fn rx(&mut self, port: u16, queue: u16) -> usize {
        self.clear();
        // SAFETY: the array has room for BURST pointers; the driver writes `n` owned mbufs
        // into it. The port and queue are the caller's promise.
        let n = unsafe {
            dpdk_sys::shake_eth_rx_burst(port, queue, self.mbufs.as_mut_ptr(), BURST as u16)
        };
        self.len = usize::from(n);
        self.len
    }

    /// Hands the mbufs to a TX queue; those it did not take stay in the burst (at the front).
    /// Returns how many it took. Safe callers use [`TxQueue::tx`](super::port::TxQueue::tx).
    ///
    /// # Safety
    /// As for [`Burst::rx`], on the transmitting side.
    #[inline]
    pub(super) unsafe fn tx(&mut self, port: u16, queue: u16) -> usize {
        if self.is_empty() {
            return 0;
        }
        // SAFETY: mbufs[..len] are owned mbufs; the driver takes ownership of the first
        // `sent`, the rest stay ours. The port and queue are the caller's promise.
        let sent = usize::from(unsafe {
            dpdk_sys::shake_eth_tx_burst(port, queue, self.mbufs.as_mut_ptr(), self.len as u16)
        });
        self.forget_front(sent);
        sent
    }

    /// Drops ownership of the first `n` (someone else took them) and moves the rest forward.
    pub(super) fn forget_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.mbufs.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// The raw array, for ring transfers.
    pub(super) fn raw_parts(&mut self) -> (&mut [*mut rte_mbuf; BURST], &mut usize) {
        (&mut self.mbufs, &mut self.len)
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Frees owned mbufs in one call (the mempool's bulk put, not one put each).
#[inline]
fn free_bulk(mbufs: &[*mut rte_mbuf]) {
    if mbufs.is_empty() {
        return;
    }
    // SAFETY: the caller gives up ownership of `mbufs`, owned non-null mbufs, each listed
    // once; rte_pktmbuf_free_bulk only reads the array.
    unsafe { dpdk_sys::rte_pktmbuf_free_bulk(mbufs.as_ptr().cast_mut(), mbufs.len() as u32) }
}

/// The mbufs taken out of a [`Burst`]; whatever is not consumed is freed on drop.
///
/// The burst's length is already zero while a drain lives, so a drain that is leaked
/// (`mem::forget`) leaks its mbufs and never lets the burst free them twice.
pub struct Drain<'a> {
    mbufs: &'a [*mut rte_mbuf; BURST],
    at: usize,
    len: usize,
}

impl Iterator for Drain<'_> {
    type Item = Mbuf;

    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        if self.at == self.len {
            return None;
        }
        let p = self.mbufs[self.at];
        self.at += 1;
        // SAFETY: mbufs[at..len] are owned, non-null mbufs; each is handed out once.
        Some(unsafe { Mbuf::from_raw(NonNull::new_unchecked(p)) })
    }
}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        free_bulk(&self.mbufs[self.at..self.len]);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn receive_flags_set_read_back() {
        for bits in 0..4 {
            let c = RxChecked::from_bits_truncate(bits);
            assert_eq!(rx_checked_of(rx_flags_of(c)), c, "{c:?}");
        }
    }

    #[test]
    fn only_a_good_receive_verdict_spares_a_sum() {
        use dpdk_sys::*;
        let ip = [
            (RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN, false),
            (RTE_MBUF_F_RX_IP_CKSUM_BAD, false),
            (RTE_MBUF_F_RX_IP_CKSUM_GOOD, true),
            (RTE_MBUF_F_RX_IP_CKSUM_NONE, false),
        ];
        let l4 = [
            (RTE_MBUF_F_RX_L4_CKSUM_UNKNOWN, false),
            (RTE_MBUF_F_RX_L4_CKSUM_BAD, false),
            (RTE_MBUF_F_RX_L4_CKSUM_GOOD, true),
            (RTE_MBUF_F_RX_L4_CKSUM_NONE, false),
        ];
        for (i, ip_good) in ip {
            for (l, l4_good) in l4 {
                // Other flags (VLAN stripped, RSS hash) change nothing.
                for other in [0, RTE_MBUF_F_RX_VLAN | RTE_MBUF_F_RX_RSS_HASH] {
                    let c = rx_checked_of(i | l | other);
                    assert_eq!(c.contains(RxChecked::IPV4), ip_good, "{i:#x} {l:#x}");
                    assert_eq!(c.contains(RxChecked::L4), l4_good, "{i:#x} {l:#x}");
                }
            }
        }
    }

    #[test]
    fn tx_offload_bits_match_the_headers_bit_fields() {
        for (l2, l3) in [(14, 20), (18, 60), (127, 511), (0, 0)] {
            let u = dpdk_sys::rte_mbuf__bindgen_ty_3 {
                tx_offload: tx_offload_bits(l2, l3),
            };
            // SAFETY: both views of the union are plain integers; every bit pattern is valid.
            let f = unsafe { u.__bindgen_anon_1 };
            assert_eq!((f.l2_len(), f.l3_len()), (u64::from(l2), u64::from(l3)));
            assert_eq!((f.l4_len(), f.tso_segsz(), f.outer_l3_len()), (0, 0, 0));
        }
    }
}
