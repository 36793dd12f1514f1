//! Single-producer single-consumer rings of mbufs between lcores, and ring-backed ports.

use std::ffi::CString;
use std::marker::PhantomData;
use std::os::raw::{c_char, c_int, c_uint, c_void};
use std::ptr::NonNull;
use std::sync::Arc;

use dpdk_sys::rte_ring;

use super::eal::Eal;
use super::error::{check, non_null, DpdkError};
use super::mbuf::{Burst, Mbuf, BURST};

/// `RING_F_SP_ENQ` and `RING_F_SC_DEQ` from rte_ring.h (bindgen's allowlist does not reach
/// them): one producer, one consumer, no atomic read-modify-write on either side.
const RING_F_SP_ENQ: c_uint = 0x0001;
const RING_F_SC_DEQ: c_uint = 0x0002;

/// An `rte_ring` of mbuf pointers, which cannot outlive the EAL. Freed on drop; whatever
/// mbufs it still holds are freed first. Used through its two ends, [`Producer`] and
/// [`Consumer`] ([`Ring::split`]), never through a shared `&Ring`:
///
/// ```compile_fail,E0624
/// use shake::dpdk::{Burst, Eal, Ring};
/// let eal = Eal::init(&["shake".to_owned(), "--no-pci".to_owned()]).unwrap();
/// let ring = Ring::new(&eal, "r", 64, 0, true).unwrap();
/// let (a, b) = (&ring, &ring);
/// unsafe { a.enqueue(&mut Burst::new()) };
/// ```
///
/// and its ends cannot outlive the EAL either:
///
/// ```compile_fail,E0505
/// use shake::dpdk::{Burst, Eal, Ring};
/// let eal = Eal::init(&["shake".to_owned(), "--no-pci".to_owned()]).unwrap();
/// let (mut producer, _consumer) = Ring::new(&eal, "r", 64, 0, true).unwrap().split();
/// drop(eal);
/// producer.enqueue(&mut Burst::new());
/// ```
#[derive(Debug)]
pub struct Ring<'eal> {
    raw: NonNull<rte_ring>,
    name: String,
    _eal: PhantomData<&'eal Eal>,
}

// SAFETY: an rte_ring is shared memory built for use from several lcores, and dropping it
// from any thread is fine.
unsafe impl Send for Ring<'_> {}
// SAFETY: the methods on `&Ring` are `name`, `count` (reads head and tail, safe from any
// thread) and the module-private `enqueue`/`dequeue`, whose callers (the unique `Producer`
// and `Consumer` of a ring, through `&mut self`) make each side exclusive.
unsafe impl Sync for Ring<'_> {}

impl<'eal> Ring<'eal> {
    /// A ring of `size` slots (a power of two; one is kept empty by DPDK) on `socket`,
    /// single-producer single-consumer when `spsc`.
    pub fn new(
        _eal: &'eal Eal,
        name: &str,
        size: u32,
        socket: i32,
        spsc: bool,
    ) -> Result<Ring<'eal>, DpdkError> {
        let what = || format!("ring {name}: rte_ring_create({size}, socket {socket})");
        let c_name = CString::new(name).map_err(|_| DpdkError::Config(what()))?;
        let flags = if spsc {
            RING_F_SP_ENQ | RING_F_SC_DEQ
        } else {
            0
        };
        // SAFETY: c_name is NUL-terminated and copied by the call; the EAL is initialised
        // (`_eal` proves it and outlives the ring).
        let raw = unsafe { dpdk_sys::rte_ring_create(c_name.as_ptr(), size, socket, flags) };
        Ok(Ring {
            raw: non_null(raw, what)?,
            name: name.to_owned(),
            _eal: PhantomData,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Entries in the ring now.
    pub fn count(&self) -> u32 {
        // SAFETY: the ring is live; counting reads its head and tail.
        unsafe { dpdk_sys::shake_ring_count(self.raw.as_ptr()) }
    }

    /// Splits the ring into its only producer and only consumer (the flags of a ring that
    /// is not SPSC only cost speed).
    pub fn split(self) -> (Producer<'eal>, Consumer<'eal>) {
        let ring = Arc::new(self);
        (Producer(ring.clone()), Consumer(ring))
    }

    /// Moves the burst's mbufs into the ring; what did not fit stays in the burst.
    ///
    /// # Safety
    /// No other thread may enqueue at the same time if the ring is single-producer.
    unsafe fn enqueue(&self, burst: &mut Burst) -> usize {
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
    unsafe fn dequeue(&self, burst: &mut Burst) -> usize {
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

impl Drop for Ring<'_> {
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
pub struct Producer<'eal>(Arc<Ring<'eal>>);

/// The one dequeuing side of an SPSC ring.
#[derive(Debug)]
pub struct Consumer<'eal>(Arc<Ring<'eal>>);

impl<'eal> Producer<'eal> {
    /// Moves the burst's mbufs into the ring; what did not fit stays in the burst. Returns
    /// how many went.
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

    pub fn ring(&self) -> &Ring<'eal> {
        &self.0
    }
}

impl<'eal> Consumer<'eal> {
    /// Whether the ring's only producer is gone (dropped), so nothing more will come. Read
    /// it before the last dequeue, with an acquire fence between, to see what it enqueued.
    pub fn producer_gone(&self) -> bool {
        Arc::strong_count(&self.0) == 1
    }

    /// Fills `burst` (emptied first) from the ring; returns how many came.
    #[inline]
    pub fn dequeue(&mut self, burst: &mut Burst) -> usize {
        // SAFETY: this is the ring's only consumer and `&mut self` makes the call exclusive.
        unsafe { self.0.dequeue(burst) }
    }

    pub fn ring(&self) -> &Ring<'eal> {
        &self.0
    }
}

/// `rte_eth_from_rings` (rte_eth_ring.h), looked up at run time in the net_ring driver
/// that the EAL loads from its plugin directory: the appliance does not link a driver that
/// only tests and in-process generators use.
type FromRings = unsafe extern "C" fn(
    name: *const c_char,
    rx_queues: *const *mut rte_ring,
    nb_rx_queues: c_uint,
    tx_queues: *const *mut rte_ring,
    nb_tx_queues: c_uint,
    numa_node: c_uint,
) -> c_int;

fn from_rings() -> Result<FromRings, DpdkError> {
    const LIB: &std::ffi::CStr = c"librte_net_ring.so.23";
    // SAFETY: dlopen with a NUL-terminated name. RTLD_NOLOAD first: the EAL has normally
    // loaded the plugin already (the same shared object), and then nothing new runs.
    let mut lib = unsafe { libc::dlopen(LIB.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
    if lib.is_null() {
        // SAFETY: as above; loading it registers the net_ring driver, as the EAL would.
        lib = unsafe { libc::dlopen(LIB.as_ptr(), libc::RTLD_NOW) };
    }
    if lib.is_null() {
        return Err(DpdkError::Config(
            "net_ring: librte_net_ring.so.23 is not installed (Debian's dpdk package has it)"
                .into(),
        ));
    }
    // SAFETY: a symbol lookup in a handle dlopen returned; the handle is never closed.
    let sym = unsafe { libc::dlsym(lib, c"rte_eth_from_rings".as_ptr()) };
    if sym.is_null() {
        return Err(DpdkError::Config(
            "net_ring: rte_eth_from_rings not found in librte_net_ring.so.23".into(),
        ));
    }
    // SAFETY: the symbol is DPDK's rte_eth_from_rings, whose C signature FromRings spells.
    Ok(unsafe { std::mem::transmute::<*mut c_void, FromRings>(sym) })
}

/// An in-process port (DPDK's net_ring driver) whose RX queue `i` reads ring `rx[i]` and
/// whose TX queue `i` writes ring `tx[i]`: for a test or an in-process generator driving a
/// node. The caller is the only producer of the RX rings and the only consumer of the TX
/// rings. Open it as a node port by its name, `net_ring_<name>`.
///
/// The driver keeps raw pointers to the rings until the EAL goes, and a closed ring port
/// may still be referenced by the driver, so these rings are never freed before the EAL
/// is: they belong to the port, not to the handles.
#[derive(Debug)]
pub struct RingPort<'eal> {
    /// DPDK port id.
    pub id: u16,
    /// Where frames for the port's RX queue `i` go.
    pub rx: Vec<Producer<'eal>>,
    /// Where the port's TX queue `i` put its frames.
    pub tx: Vec<Consumer<'eal>>,
}

impl<'eal> RingPort<'eal> {
    /// Creates the rings (`rx_sizes[i]` and `tx_sizes[i]` slots, on the caller's socket)
    /// and the port `net_ring_<name>` over them.
    pub fn new(
        eal: &'eal Eal,
        name: &str,
        rx_sizes: &[u32],
        tx_sizes: &[u32],
    ) -> Result<RingPort<'eal>, DpdkError> {
        let what = || format!("net_ring_{name}: rte_eth_from_rings");
        let c_name = CString::new(name).map_err(|_| DpdkError::Config(what()))?;
        let from_rings = from_rings()?;
        // SAFETY: the calling thread's socket, a plain lookup.
        let socket = unsafe { dpdk_sys::rte_socket_id() };
        let make = |dir: &str, sizes: &[u32]| -> Result<Vec<Arc<Ring<'eal>>>, DpdkError> {
            sizes
                .iter()
                .enumerate()
                .map(|(i, &size)| {
                    Ring::new(eal, &format!("{name}_{dir}{i}"), size, socket as i32, false)
                        .map(Arc::new)
                })
                .collect()
        };
        let (rx, tx) = (make("rx", rx_sizes)?, make("tx", tx_sizes)?);
        let rx_raw: Vec<*mut rte_ring> = rx.iter().map(|r| r.raw.as_ptr()).collect();
        let tx_raw: Vec<*mut rte_ring> = tx.iter().map(|r| r.raw.as_ptr()).collect();
        // SAFETY: the arrays hold live rings and outlive the call, which copies them; the EAL
        // is initialised. The rings are leaked below, so they outlive the port.
        let ret = unsafe {
            from_rings(
                c_name.as_ptr(),
                rx_raw.as_ptr(),
                rx_raw.len() as c_uint,
                tx_raw.as_ptr(),
                tx_raw.len() as c_uint,
                socket,
            )
        };
        let id = check(ret, what)? as u16;
        // One reference of each ring is the driver's, never dropped: the ring is never freed
        // (rte_eal_cleanup releases its memory), and frames left in it are never freed
        // either (their pool then stays, see `Eal`'s drop).
        let end = |r: &Arc<Ring<'eal>>| std::mem::forget(r.clone());
        rx.iter().chain(&tx).for_each(end);
        Ok(RingPort {
            id,
            rx: rx.into_iter().map(Producer).collect(),
            tx: tx.into_iter().map(Consumer).collect(),
        })
    }
}
