//! Port setup in the order of DPDK's l2fwd: device info, offloads the device has, configure,
//! descriptor adjustment, queues on the port's socket, start, promiscuous mode, link check;
//! then, for a node with an IPv6 address, the multicast groups NDP needs
//! ([`Port::accept_multicast`], [`super::multicast`]).

use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dpdk_sys as sys;

use super::af_xdp;
use super::eal::Eal;
use super::error::{check, DpdkError};
use super::mbuf::{Burst, BURST};
use super::mempool::Mempool;
use super::multicast::{self, Multicast};
use crate::node_config::PortSection;

/// What workers and processors need to know about a started port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// Position in the config's `[[port]]` list.
    pub index: usize,
    /// DPDK port id.
    pub id: u16,
    /// How errors and logs name it.
    pub name: String,
    pub mac: [u8; 6],
    pub socket: i32,
    /// Queue pairs: one per worker.
    pub queues: u16,
    /// The device computes IPv4 header checksums on TX.
    pub tx_ipv4_cksum: bool,
    /// The device computes UDP checksums on TX (`RTE_MBUF_F_TX_UDP_CKSUM`).
    pub tx_udp_cksum: bool,
    /// The device checks IPv4 header and UDP checksums on RX, and says so in each mbuf's
    /// flags ([`RxChecked`](crate::frame::RxChecked)): the frame layer does not sum again
    /// what it calls good.
    pub rx_cksum: bool,
    /// RX spread by an RSS hash over IP/UDP.
    pub rss: bool,
    /// That hash covers IPv6 (else IPv6 frames all land on the first queue, and steering
    /// hands them to their owners from there).
    pub rss_ipv6: bool,
    /// How the port lets in the multicast groups NDP needs.
    pub multicast: Multicast,
}

/// A configured and started port with its mempool, which cannot outlive the EAL.
///
/// Its queues are polled through [`RxQueue`] and [`TxQueue`] handles, each handed out once
/// ([`Port::take_queues`]): a queue has one user at a time, as DPDK requires, and the port
/// is stopped and closed (then its pool retired) only when the `Port` and every queue handle
/// are gone, so nothing can poll a closed port. None of them is `Send`: the ethdev control
/// calls (open, stop, close) are not thread-safe, so they all stay on the thread that opened
/// the port; the appliance lends a worker lcore its queues while it runs and takes them back
/// before they drop.
///
/// A queue cannot be polled after the EAL is gone:
///
/// ```compile_fail,E0597
/// use shake::dpdk::{Burst, Eal, Port};
/// use shake::node_config::PortSection;
/// fn section() -> PortSection { unimplemented!() }
/// let mut queues = {
///     let eal = Eal::init(&["shake".to_owned(), "--no-pci".to_owned()]).unwrap();
///     let mut port = Port::open(&eal, 0, &section(), 1, 0).unwrap();
///     port.take_queues().unwrap()
/// };
/// queues[0].0.rx(&mut Burst::new());
/// ```
///
/// and a burst cannot poll a port by its id, bypassing the handles:
///
/// ```compile_fail,E0624
/// use shake::dpdk::Burst;
/// unsafe { Burst::new().rx(0, 0) };
/// ```
#[derive(Debug)]
pub struct Port<'eal> {
    shared: Arc<Shared<'eal>>,
    /// Queue pairs not handed out yet.
    queues_taken: bool,
    _not_send: PhantomData<*const ()>,
}

/// What the port and its queue handles share; the last of them to go closes the port.
#[derive(Debug)]
struct Shared<'eal> {
    info: PortInfo,
    /// TX frees mbufs straight into the pool of the first one (`MBUF_FAST_FREE`): the port
    /// may only transmit mbufs of its own pool.
    fast_free: bool,
    // Dropped after the port is closed (fields drop after `Drop::drop`).
    pool: Mempool<'eal>,
}

/// The receiving half of queue pair `queue` of a started port: the only handle that
/// receives on it.
#[derive(Debug)]
pub struct RxQueue<'eal> {
    port: Arc<Shared<'eal>>,
    queue: u16,
    _not_send: PhantomData<*const ()>,
}

/// The transmitting half of queue pair `queue`: the only handle that transmits on it.
#[derive(Debug)]
pub struct TxQueue<'eal> {
    port: Arc<Shared<'eal>>,
    queue: u16,
    _not_send: PhantomData<*const ()>,
}

/// The name of the driver behind `dev` ("net_af_xdp", "net_ice"), or "" if it has none.
fn driver_name(dev: &sys::rte_eth_dev_info) -> String {
    if dev.driver_name.is_null() {
        return String::new();
    }
    // SAFETY: a non-null driver_name from rte_eth_dev_info_get is the driver's static,
    // NUL-terminated name.
    unsafe { CStr::from_ptr(dev.driver_name) }
        .to_string_lossy()
        .into_owned()
}

/// Finds a port's DPDK id by its config name or id.
pub fn port_id(section: &PortSection) -> Result<u16, DpdkError> {
    let label = section.label();
    let id = match (&section.name, section.id) {
        (Some(name), _) => {
            let c_name = CString::new(name.as_str())
                .map_err(|_| DpdkError::Config(format!("port name {name:?} contains NUL")))?;
            let mut id = 0u16;
            // SAFETY: c_name is NUL-terminated; id is a valid out-pointer.
            let ret = unsafe { sys::rte_eth_dev_get_port_by_name(c_name.as_ptr(), &mut id) };
            check(ret, || {
                format!("port {label}: no such DPDK device (is it probed? check [dpdk] vdevs and allow)")
            })?;
            id
        }
        (None, Some(id)) => id,
        (None, None) => return Err(DpdkError::Config("port without name or id".into())),
    };
    // SAFETY: a plain lookup in the ethdev table.
    if unsafe { sys::rte_eth_dev_is_valid_port(id) } == 0 {
        return Err(DpdkError::Config(format!(
            "port {label}: DPDK has no port {id}"
        )));
    }
    Ok(id)
}

/// The RSS hash functions a port asks for, of those the device offers (`offered`, its
/// `flow_type_rss_offloads`): addresses and UDP ports, over IPv4 and IPv6, so that phones
/// spread over the queues on either family. The hash only spreads the load: which worker
/// decides a user's shake is steering's choice ([`super::worker`]), whatever queue it came
/// in on.
pub fn rss_hash_functions(offered: u64) -> u64 {
    const WANTED: u64 = sys::RTE_ETH_RSS_IP
        | sys::RTE_ETH_RSS_UDP
        | sys::RTE_ETH_RSS_IPV6
        | sys::RTE_ETH_RSS_NONFRAG_IPV6_UDP;
    WANTED & offered
}

/// The RSS hash functions that hash IPv6 frames.
const RSS_IPV6: u64 = sys::RTE_ETH_RSS_IPV6
    | sys::RTE_ETH_RSS_FRAG_IPV6
    | sys::RTE_ETH_RSS_NONFRAG_IPV6_UDP
    | sys::RTE_ETH_RSS_NONFRAG_IPV6_OTHER
    | sys::RTE_ETH_RSS_IPV6_EX
    | sys::RTE_ETH_RSS_IPV6_UDP_EX;

/// Mbufs a port's pool needs: every RX and TX descriptor, a burst in flight per queue, what
/// the device holds per queue beyond its descriptors (`device_held`: an AF_XDP queue's fill
/// and completion rings, [`af_xdp::DEVICE_HELD`]), the per-lcore caches, and the hand-off
/// rings (which may all hold this port's frames).
pub fn pool_size(section: &PortSection, queues: u16, handoff: u32, device_held: u32) -> u32 {
    let q = u32::from(queues);
    let need = q
        * (u32::from(section.rx_desc)
            + u32::from(section.tx_desc)
            + 2 * BURST as u32
            + device_held)
        + (q + 1) * section.mempool_cache
        + q * q.saturating_sub(1) * handoff;
    let auto = need
        .max(8191)
        .checked_next_power_of_two()
        .unwrap_or(u32::MAX)
        - 1;
    section.mbufs.unwrap_or(auto)
}

impl<'eal> Port<'eal> {
    /// Sets up and starts port number `index` of the config with `queues` queue pairs.
    pub fn open(
        eal: &'eal Eal,
        index: usize,
        section: &PortSection,
        queues: u16,
        handoff: u32,
    ) -> Result<Port<'eal>, DpdkError> {
        let id = port_id(section)?;
        let name = section.label();
        if queues == 0 {
            return Err(DpdkError::Config(format!(
                "port {name}: a port needs at least one queue pair"
            )));
        }
        let err = |what: &str, ret: i32| check(ret, || format!("port {name} (id {id}): {what}"));

        let mut dev = sys::rte_eth_dev_info::default();
        // SAFETY: id is a valid port; dev is a valid out-pointer.
        err("rte_eth_dev_info_get", unsafe {
            sys::rte_eth_dev_info_get(id, &mut dev)
        })?;
        let af_xdp = driver_name(&dev) == af_xdp::DRIVER;
        // Its kernel interface, by the index the PMD reports.
        let iface = af_xdp.then(|| af_xdp::iface_name(dev.if_index));
        if queues > dev.max_rx_queues || queues > dev.max_tx_queues {
            let hint = match &iface {
                Some(i) => format!(
                    ": give its vdev queue_count={queues} (and {i} that many channels: \
                     `ethtool -L {i} combined {queues}`)"
                ),
                None => String::new(),
            };
            return Err(DpdkError::Config(format!(
                "port {name}: {queues} workers need {queues} queue pairs, the device has {} RX and {} TX{hint}",
                dev.max_rx_queues, dev.max_tx_queues
            )));
        }
        // SAFETY: plain lookup; SOCKET_ID_ANY (-1) for virtual devices.
        let socket = match unsafe { sys::shake_eth_dev_socket_id(id) } {
            // SAFETY: the calling thread's socket.
            s if s < 0 => (unsafe { sys::rte_socket_id() }) as i32,
            s => s,
        };

        let mut conf = sys::rte_eth_conf::default();
        let mut tx_ipv4_cksum = false;
        let mut tx_udp_cksum = false;
        let mut rx_cksum = false;
        if section.offloads {
            let tx = dev.tx_offload_capa;
            // Every mbuf sent on this port comes from its own pool with refcount 1.
            conf.txmode.offloads |= tx & sys::RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
            conf.txmode.offloads |=
                tx & (sys::RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | sys::RTE_ETH_TX_OFFLOAD_UDP_CKSUM);
            tx_ipv4_cksum = tx & sys::RTE_ETH_TX_OFFLOAD_IPV4_CKSUM != 0;
            tx_udp_cksum = tx & sys::RTE_ETH_TX_OFFLOAD_UDP_CKSUM != 0;
            let rx = dev.rx_offload_capa
                & (sys::RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | sys::RTE_ETH_RX_OFFLOAD_UDP_CKSUM);
            conf.rxmode.offloads |= rx;
            rx_cksum = rx != 0;
        }
        let rss_hf = rss_hash_functions(dev.flow_type_rss_offloads);
        let rss = section.rss && queues > 1 && rss_hf != 0;
        if rss {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_key = std::ptr::null_mut();
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        }
        if dev.max_mtu != 0 && section.mtu > dev.max_mtu {
            return Err(DpdkError::Config(format!(
                "port {name}: mtu {} is above the device's maximum {}",
                section.mtu, dev.max_mtu
            )));
        }
        conf.rxmode.mtu = u32::from(section.mtu);

        // SAFETY: id is valid and stopped; conf is a fully initialised rte_eth_conf.
        err("rte_eth_dev_configure", unsafe {
            sys::rte_eth_dev_configure(id, queues, queues, &conf)
        })?;
        let (mut rx_desc, mut tx_desc) = (section.rx_desc, section.tx_desc);
        // SAFETY: valid port and out-pointers.
        err("rte_eth_dev_adjust_nb_rx_tx_desc", unsafe {
            sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut rx_desc, &mut tx_desc)
        })?;

        let make_pool = if af_xdp {
            Mempool::new_packed
        } else {
            Mempool::new
        };
        let pool = make_pool(
            eal,
            &format!("shake_mp_p{id}"),
            pool_size(
                section,
                queues,
                handoff,
                if af_xdp { af_xdp::DEVICE_HELD } else { 0 },
            ),
            section.mempool_cache,
            socket,
        )
        .map_err(|e| match e {
            DpdkError::Call { what, errno, text } => DpdkError::Call {
                what: format!("port {name}: {what}"),
                errno,
                text,
            },
            e => e,
        })?;
        if let Some(iface) = &iface {
            af_xdp::preflight(&name, index, section, queues, &pool, iface)?;
        }
        let setup_hint = iface.as_deref().map(af_xdp::setup_hint).unwrap_or_default();
        let mut rxconf = dev.default_rxconf;
        rxconf.offloads = conf.rxmode.offloads;
        let mut txconf = dev.default_txconf;
        txconf.offloads = conf.txmode.offloads;
        for q in 0..queues {
            // SAFETY: valid configured port and queue index; rxconf and pool are live for
            // the call, and the pool outlives the port (Port owns it, drops it after close).
            err(
                &format!("rte_eth_rx_queue_setup queue {q}{setup_hint}"),
                unsafe {
                    sys::rte_eth_rx_queue_setup(
                        id,
                        q,
                        rx_desc,
                        socket as u32,
                        &rxconf,
                        pool.as_ptr(),
                    )
                },
            )?;
            // SAFETY: as above.
            err(&format!("rte_eth_tx_queue_setup queue {q}"), unsafe {
                sys::rte_eth_tx_queue_setup(id, q, tx_desc, socket as u32, &txconf)
            })?;
        }

        let mut mac = sys::rte_ether_addr::default();
        // SAFETY: valid port; mac is a valid out-pointer.
        err("rte_eth_macaddr_get", unsafe {
            sys::rte_eth_macaddr_get(id, &mut mac)
        })?;

        // SAFETY: the port is configured with all its queues set up.
        err("rte_eth_dev_start", unsafe { sys::rte_eth_dev_start(id) })?;
        let port = Shared {
            fast_free: conf.txmode.offloads & sys::RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE != 0,
            info: PortInfo {
                index,
                id,
                name: name.clone(),
                mac: mac.addr_bytes,
                socket,
                queues,
                tx_ipv4_cksum,
                tx_udp_cksum,
                rx_cksum,
                rss,
                rss_ipv6: rss && rss_hf & RSS_IPV6 != 0,
                multicast: Multicast::Unchanged,
            },
            pool,
        };
        if section.promiscuous {
            // SAFETY: started port.
            let ret = unsafe { sys::rte_eth_promiscuous_enable(id) };
            // Virtual devices often lack it and have nothing to filter anyway.
            if ret < 0 && ret != -libc::ENOTSUP {
                err("rte_eth_promiscuous_enable", ret)?;
            }
        }
        Ok(Port {
            shared: Arc::new(port),
            queues_taken: false,
            _not_send: PhantomData,
        })
    }

    pub fn info(&self) -> &PortInfo {
        &self.shared.info
    }

    /// Lets in the Ethernet multicast `groups` (the node's solicited-node groups,
    /// [`multicast::ndp_groups`]): on the device's multicast address list, or, where it has
    /// none, all multicast. A device with neither is not an error: the port records it
    /// ([`Multicast::Unset`]) and the start-up line says so. No groups: nothing changes.
    /// Only before [`take_queues`](Self::take_queues), while the port's info is its own.
    pub fn accept_multicast(&mut self, groups: &[[u8; 6]]) -> Result<&Multicast, DpdkError> {
        let name = self.shared.info.name.clone();
        let shared = Arc::get_mut(&mut self.shared).ok_or_else(|| {
            DpdkError::Config(format!(
                "port {name}: multicast groups are set before the queues are handed out"
            ))
        })?;
        let id = shared.info.id;
        let mut list: Vec<sys::rte_ether_addr> = groups
            .iter()
            .map(|&addr_bytes| sys::rte_ether_addr { addr_bytes })
            .collect();
        shared.info.multicast = multicast::choose(
            groups,
            || {
                // SAFETY: id is a started port; list holds list.len() addresses and lives
                // for the call (the driver copies them).
                unsafe {
                    sys::rte_eth_dev_set_mc_addr_list(id, list.as_mut_ptr(), list.len() as u32)
                }
            },
            // SAFETY: id is a started port.
            || unsafe { sys::rte_eth_allmulticast_enable(id) },
            super::error::strerror,
        );
        Ok(&shared.info.multicast)
    }

    pub fn pool(&self) -> &Mempool<'eal> {
        &self.shared.pool
    }

    /// The handles of every queue pair, in queue order; the first call only (each queue has
    /// one user).
    pub fn take_queues(&mut self) -> Option<Vec<(RxQueue<'eal>, TxQueue<'eal>)>> {
        if std::mem::replace(&mut self.queues_taken, true) {
            return None;
        }
        Some(
            (0..self.shared.info.queues)
                .map(|queue| {
                    (
                        RxQueue {
                            port: self.shared.clone(),
                            queue,
                            _not_send: PhantomData,
                        },
                        TxQueue {
                            port: self.shared.clone(),
                            queue,
                            _not_send: PhantomData,
                        },
                    )
                })
                .collect(),
        )
    }

    /// Waits up to `timeout` for the link to come up (as l2fwd does) and describes it,
    /// e.g. "Link up at 10 Gbps FDX Autoneg".
    pub fn wait_link(&self, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let mut link = sys::rte_eth_link::default();
            // SAFETY: started port; link is a valid out-pointer.
            let ret = unsafe { sys::rte_eth_link_get_nowait(self.info().id, &mut link) };
            if ret < 0 {
                return format!("link unknown ({})", super::error::strerror(-ret));
            }
            if link.link_status() == sys::RTE_ETH_LINK_UP as u16 || start.elapsed() >= timeout {
                let mut text = [0 as std::os::raw::c_char; sys::RTE_ETH_LINK_MAX_STR_LEN as usize];
                // SAFETY: text has RTE_ETH_LINK_MAX_STR_LEN bytes, as the call requires.
                unsafe { sys::rte_eth_link_to_str(text.as_mut_ptr(), text.len(), &link) };
                // SAFETY: rte_eth_link_to_str wrote a NUL-terminated string into text.
                return unsafe { CStr::from_ptr(text.as_ptr()) }
                    .to_string_lossy()
                    .into_owned();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl RxQueue<'_> {
    /// The DPDK port id.
    pub fn port_id(&self) -> u16 {
        self.port.info.id
    }

    /// Fills `burst` (emptied first) from this queue; returns how many came.
    #[inline]
    pub fn rx(&mut self, burst: &mut Burst) -> usize {
        // SAFETY: the port is started and stays open while this handle lives, and this
        // handle is the queue's only receiver (`&mut self`, handed out once, not Sync).
        unsafe { burst.rx(self.port.info.id, self.queue) }
    }
}

impl TxQueue<'_> {
    /// The DPDK port id.
    pub fn port_id(&self) -> u16 {
        self.port.info.id
    }

    /// Hands the burst's mbufs to this queue; those it did not take stay in the burst (at the
    /// front). Returns how many it took. A port that frees transmitted mbufs the fast way
    /// (`MBUF_FAST_FREE`) takes none if one of them is from another pool.
    #[inline]
    pub fn tx(&mut self, burst: &mut Burst) -> usize {
        let own = self.port.pool.as_ptr();
        if self.port.fast_free && burst.iter().any(|m| m.pool_ptr() != own) {
            return 0;
        }
        // SAFETY: as for RxQueue::rx, on the transmitting side; with fast free, every mbuf
        // is from the port's own pool (checked above).
        unsafe { burst.tx(self.port.info.id, self.queue) }
    }

    /// [`tx`](Self::tx) without the pool check, for the worker loop.
    ///
    /// # Safety
    /// Every mbuf in `burst` was received on this port (so it is from its pool).
    #[inline]
    pub(super) unsafe fn tx_received(&mut self, burst: &mut Burst) -> usize {
        // SAFETY: as for `tx`; the caller promises the mbufs are the port's own.
        unsafe { burst.tx(self.port.info.id, self.queue) }
    }

    /// Offers `mbufs` (owned mbuf pointers) to this queue; the driver takes ownership of the
    /// first `n` it returns.
    ///
    /// # Safety
    /// Every pointer in `mbufs` is an owned, valid mbuf received on this port; after the call
    /// the caller owns only `mbufs[n..]`.
    #[inline]
    pub(super) unsafe fn tx_raw(&mut self, mbufs: &mut [*mut sys::rte_mbuf]) -> usize {
        // SAFETY: as for `tx`; ownership of the mbufs is the caller's promise.
        usize::from(unsafe {
            sys::shake_eth_tx_burst(
                self.port.info.id,
                self.queue,
                mbufs.as_mut_ptr(),
                mbufs.len() as u16,
            )
        })
    }
}

impl Drop for Shared<'_> {
    fn drop(&mut self) {
        let id = self.info.id;
        // SAFETY: the port was started by Port::open, and this is the last owner: the Port
        // and every queue handle are gone, so nothing polls it any more; they are not Send,
        // so this runs on the thread that opened it.
        let stop = unsafe { sys::rte_eth_dev_stop(id) };
        // SAFETY: as above; close releases the queues and their mbufs back to the pool.
        let close = unsafe { sys::rte_eth_dev_close(id) };
        for (what, ret) in [("stop", stop), ("close", close)] {
            if ret < 0 {
                eprintln!(
                    "shake: port {}: {what}: {}",
                    self.info.name,
                    super::error::strerror(-ret)
                );
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn rss_hashes_ipv6_udp_as_well_as_ipv4_udp() {
        let all = u64::MAX;
        let hf = rss_hash_functions(all);
        for (name, bit) in [
            ("IPV4", sys::RTE_ETH_RSS_IPV4),
            ("NONFRAG_IPV4_UDP", sys::RTE_ETH_RSS_NONFRAG_IPV4_UDP),
            ("IPV6", sys::RTE_ETH_RSS_IPV6),
            ("NONFRAG_IPV6_UDP", sys::RTE_ETH_RSS_NONFRAG_IPV6_UDP),
        ] {
            assert_ne!(hf & bit, 0, "RSS_{name} asked for");
        }
        assert_ne!(hf & RSS_IPV6, 0);
        // Never more than IP and UDP: no TCP, SCTP, L2 or tunnel hashing.
        assert_eq!(
            hf & (sys::RTE_ETH_RSS_TCP | sys::RTE_ETH_RSS_SCTP | sys::RTE_ETH_RSS_L2_PAYLOAD),
            0
        );
    }

    #[test]
    fn rss_asks_only_for_what_the_device_offers() {
        assert_eq!(rss_hash_functions(0), 0);
        // A device that hashes IPv4 UDP only gets exactly that, and no IPv6.
        let v4 = sys::RTE_ETH_RSS_NONFRAG_IPV4_UDP;
        assert_eq!(rss_hash_functions(v4), v4);
        assert_eq!(rss_hash_functions(v4) & RSS_IPV6, 0);
        let v6 = sys::RTE_ETH_RSS_NONFRAG_IPV6_UDP | sys::RTE_ETH_RSS_IPV6;
        assert_eq!(rss_hash_functions(v6), v6);
    }
}
