//! Single-producer single-consumer rings of mbufs between lcores, and ring-backed ports.

use std::ffi::CString;
use std::os::raw::{c_char, c_int, c_uint, c_void};
use std::ptr::NonNull;
use std::sync::Arc;

use dpdk_sys::rte_ring;

use super::error::{check, non_null, DpdkError};
use super::mbuf::{Burst, Mbuf, BURST};

/// `RING_F_SP_ENQ` and `RING_F_SC_DEQ` from rte_ring.h (bindgen's allowlist does not reach
/// them): one producer, one consumer, no atomic read-modify-write on either side.
const RING_F_SP_ENQ: c_uint = 0x0001;
const RING_F_SC_DEQ: c_uint = 0x0002;

/// An `rte_ring` of mbuf pointers. Freed on drop; whatever mbufs it still holds are freed
/// first.
#[derive(Debug)]
pub struct Ring {
    raw: NonNull<rte_ring>,
    name: String,
    spsc: bool,
}

// SAFETY: an rte_ring is shared memory built for use from several lcores; which sides may
// be used concurrently is enforced by `Producer`/`Consumer` (one of each per SPSC ring).
unsafe impl Send for Ring {}
// SAFETY: `&Ring` only exposes the count, which is safe from any thread; enqueue and
// dequeue of an SPSC ring go through the unique Producer and Consumer.
unsafe impl Sync for Ring {}

impl Ring {
    /// A ring of `size` slots (a power of two; one is kept empty by DPDK) on `socket`,
    /// single-producer single-consumer when `spsc`.
    pub fn new(name: &str, size: u32, socket: i32, spsc: bool) -> Result<Ring, DpdkError> {
        let what = || format!("ring {name}: rte_ring_create({size}, socket {socket})");
        let c_name = CString::new(name).map_err(|_| DpdkError::Config(what()))?;
        let flags = if spsc {
            RING_F_SP_ENQ | RING_F_SC_DEQ
        } else {
            0
        };
        // SAFETY: c_name is NUL-terminated and copied by the call; the EAL is initialised.
        let raw = unsafe { dpdk_sys::rte_ring_create(c_name.as_ptr(), size, socket, flags) };
        Ok(Ring {
            raw: non_null(raw, what)?,
            name: name.to_owned(),
            spsc,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn as_ptr(&self) -> *mut rte_ring {
        self.raw.as_ptr()
    }

    /// Entries in the ring now.
    pub fn count(&self) -> u32 {
        // SAFETY: the ring is live; counting reads its head and tail.
        unsafe { dpdk_sys::shake_ring_count(self.raw.as_ptr()) }
    }

    /// Splits an SPSC ring into its only producer and only consumer.
    pub fn split(self) -> (Producer, Consumer) {
        assert!(self.spsc, "only SPSC rings split");
        let ring = Arc::new(self);
        (Producer(ring.clone()), Consumer(ring))
    }

    /// Moves the burst's mbufs into the ring; what did not fit stays in the burst.
    ///
    /// # Safety
    /// No other thread may enqueue at the same time if the ring is single-producer.
    pub unsafe fn enqueue(&self, burst: &mut Burst) -> usize {
        let (mbufs, len) = burst.raw_parts();
        // SAFETY: mbufs[..len] are owned mbuf pointers; the ring takes ownership of the first
        // `n` it stores. Exclusivity of the producer side is the caller's promise.
        let n = unsafe {
            dpdk_sys::shake_ring_enqueue_burst(
                self.raw.as_ptr(),
                mbufs.as_ptr().cast::<*mut c_void>(),
                *len as c_uint,
                std::ptr::null_mut(),
            )
        } as usize;
        burst.forget_front(n);
        n
    }

    /// Fills an empty burst from the ring; returns how many came.
    ///
    /// # Safety
    /// No other thread may dequeue at the same time if the ring is single-consumer, and the
    /// ring holds only owned mbufs.
    pub unsafe fn dequeue(&self, burst: &mut Burst) -> usize {
        burst.clear();
        let (mbufs, len) = burst.raw_parts();
        // SAFETY: room for BURST pointers; the ring hands over ownership of `n` mbufs.
        let n = unsafe {
            dpdk_sys::shake_ring_dequeue_burst(
                self.raw.as_ptr(),
                mbufs.as_mut_ptr().cast::<*mut c_void>(),
                BURST as c_uint,
                std::ptr::null_mut(),
            )
        } as usize;
        *len = n;
        n
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let mut rest = Burst::new();
        // SAFETY: dropping means no Producer or Consumer is left (they hold the Arc), so
        // this is the only user; the ring holds owned mbufs only.
        while unsafe { self.dequeue(&mut rest) } > 0 {
            rest.clear();
        }
        // SAFETY: the ring is empty and nobody else references it.
        unsafe { dpdk_sys::rte_ring_free(self.raw.as_ptr()) }
    }
}

/// The one enqueuing side of an SPSC ring: `Send` to move to its lcore, not `Clone`.
#[derive(Debug)]
pub struct Producer(Arc<Ring>);

/// The one dequeuing side of an SPSC ring.
#[derive(Debug)]
pub struct Consumer(Arc<Ring>);

impl Producer {
    /// See [`Ring::enqueue`].
    #[inline]
    pub fn enqueue(&mut self, burst: &mut Burst) -> usize {
        // SAFETY: this is the ring's only producer and `&mut self` makes the call exclusive.
        unsafe { self.0.enqueue(burst) }
    }

    /// Enqueues one mbuf; gives it back when the ring is full.
    pub fn enqueue_one(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        let mut b = Burst::new();
        b.push(m)?;
        self.enqueue(&mut b);
        let left = b.take().next();
        left.map_or(Ok(()), Err)
    }

    pub fn ring(&self) -> &Ring {
        &self.0
    }
}

impl Consumer {
    /// Whether the ring's only producer is gone (dropped), so nothing more will come. Read
    /// it before the last dequeue, with an acquire fence between, to see what it enqueued.
    pub fn producer_gone(&self) -> bool {
        Arc::strong_count(&self.0) == 1
    }

    /// See [`Ring::dequeue`].
    #[inline]
    pub fn dequeue(&mut self, burst: &mut Burst) -> usize {
        // SAFETY: this is the ring's only consumer and `&mut self` makes the call exclusive.
        unsafe { self.0.dequeue(burst) }
    }

    pub fn ring(&self) -> &Ring {
        &self.0
    }
}

// Linked by the top-level build.rs (librte_net_ring, found through pkg-config).
unsafe extern "C" {
    // rte_eth_ring.h. net_ring is otherwise loaded as a plugin; linking it here is the same
    // shared object (Debian links /usr/lib/<arch>/librte_net_ring.so.23 into pmds-23.0), so
    // the EAL's plugin loader finds it already loaded.
    fn rte_eth_from_rings(
        name: *const c_char,
        rx_queues: *const *mut rte_ring,
        nb_rx_queues: c_uint,
        tx_queues: *const *mut rte_ring,
        nb_tx_queues: c_uint,
        numa_node: c_uint,
    ) -> c_int;
}

/// A port whose RX queue `i` reads `rx[i]` and whose TX queue `i` writes `tx[i]`
/// (`rte_eth_from_rings`), named `net_ring_<name>`. For an in-process generator or a test
/// driving the node: it enqueues frames on `rx` and collects answers from `tx`. Returns the
/// port id. The rings must outlive the port.
pub fn ring_port(name: &str, rx: &[&Ring], tx: &[&Ring]) -> Result<u16, DpdkError> {
    let what = || format!("net_ring_{name}: rte_eth_from_rings");
    let c_name = CString::new(name).map_err(|_| DpdkError::Config(what()))?;
    let rx: Vec<*mut rte_ring> = rx.iter().map(|r| r.as_ptr()).collect();
    let tx: Vec<*mut rte_ring> = tx.iter().map(|r| r.as_ptr()).collect();
    // SAFETY: the arrays hold live rings and outlive the call, which copies them; the EAL is
    // initialised. The caller keeps the rings alive as long as the port.
    let ret = unsafe {
        rte_eth_from_rings(
            c_name.as_ptr(),
            rx.as_ptr(),
            rx.len() as c_uint,
            tx.as_ptr(),
            tx.len() as c_uint,
            dpdk_sys::rte_socket_id(),
        )
    };
    check(ret, what).map(|id| id as u16)
}
