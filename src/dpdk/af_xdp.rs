//! AF_XDP ports (DPDK's `net_af_xdp`): the node on an interface the kernel keeps.
//!
//! An AF_XDP port is a kernel interface (`iface=`) whose queues `start_queue` ..
//! `start_queue + queue_count` are bound to AF_XDP sockets, one per worker; an XDP program on
//! the interface redirects frames of a bound queue to its socket. DPDK 22.11's default
//! program (libxdp's `xsk_def_prog`) redirects every frame of a bound queue, so the kernel
//! gets nothing from that queue; a program of one's own (`xdp_prog=`, e.g.
//! `nic-config/afxdp-filter.c`) redirects only the node's UDP port and passes the rest
//! (ARP, ping, SSH) to the kernel.
//!
//! The PMD reports every failure of a queue's setup (no privilege to create the socket or to
//! load the program, a UMEM above RLIMIT_MEMLOCK, a ring size the kernel refuses, an XDP
//! program already on the interface) as EINVAL from `rte_eth_rx_queue_setup`, with the cause
//! in a log line at best. So the port checks what it can before ([`preflight`]) and says what
//! to look at if the setup fails anyway ([`setup_hint`]).
//!
//! What the PMD fixes, and the checks follow from:
//! - its UMEM is the port's whole mbuf pool (zero copy between the UMEM and the mbufs, which
//!   is not zero copy on the wire: a driver without AF_XDP zero-copy support, veth among them,
//!   has the kernel copy each frame into the UMEM), registered with and pinned by the kernel:
//!   without CAP_IPC_LOCK, it counts against RLIMIT_MEMLOCK. It registers it as
//!   `objects * object size` bytes from the pool's first chunk, so the port's pool is made
//!   packed in one block ([`Mempool::new_packed`]) and checked to be before the setup;
//! - it does not give the fill ring's mbufs back when the port closes, so the pool is never
//!   whole again and the EAL's drop leaves its memory to the process exit (it says so);
//! - each queue's fill ring gets [`FILL_RING`] mbufs at setup and keeps about as many, and
//!   its completion ring may hold as many again: the pool must have room for both besides
//!   the descriptors ([`DEVICE_HELD`]);
//! - the kernel writes a frame [`XDP_PACKET_HEADROOM`] past the mbuf's own headroom, so a
//!   frame is at most [`max_frame`] bytes: larger ones are dropped by the kernel.

use std::ffi::CStr;

use super::error::DpdkError;
use super::mempool::{Layout, Mempool};
use crate::node_config::PortSection;

/// The driver's name, as `rte_eth_dev_info.driver_name` gives it.
pub const DRIVER: &str = crate::node_config::AF_XDP;

/// Mbufs the PMD puts on each queue's fill ring at setup (`XSK_RING_CONS__DEFAULT_NUM_DESCS`).
pub const FILL_RING: u32 = 2048;

/// Mbufs an AF_XDP queue may hold beyond its descriptors: a full fill ring and a full
/// completion ring (the PMD reaps it only when it is half full).
pub const DEVICE_HELD: u32 = 2 * FILL_RING;

/// The kernel's headroom before an XDP frame (`XDP_PACKET_HEADROOM`).
pub const XDP_PACKET_HEADROOM: u32 = 256;

/// An Ethernet header with one VLAN tag: what a frame carries besides its MTU.
const L2_OVERHEAD: u32 = 18;

/// The largest frame an AF_XDP socket delivers into this node's mbufs: their data room less
/// DPDK's headroom and the kernel's.
pub fn max_frame() -> u32 {
    dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE - dpdk_sys::RTE_PKTMBUF_HEADROOM - XDP_PACKET_HEADROOM
}

/// Capabilities by their bit in `CapEff` (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// The effective capabilities of this process (`CapEff` of /proc/self/status), if readable.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_cap_eff(&status)
}

/// `CapEff:\t000001ffffffffff` as its bits.
fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// The capabilities an AF_XDP port needs that `caps` lacks: CAP_NET_RAW for the socket,
/// CAP_NET_ADMIN to attach the XDP program, CAP_BPF (or, on kernels before 5.8, CAP_SYS_ADMIN)
/// to load it and its socket map.
fn missing_caps(caps: u64) -> Vec<&'static str> {
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_NET_RAW) {
        missing.push("CAP_NET_RAW");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    missing
}

/// What RLIMIT_MEMLOCK means for a UMEM of `need` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Memlock {
    /// CAP_IPC_LOCK, or a soft limit that already covers it.
    Enough,
    /// The hard limit covers it: raise the soft one to it.
    Raise { to: u64 },
    /// Neither limit covers it and the process lacks CAP_IPC_LOCK.
    Short,
}

fn memlock_plan(need: u64, soft: u64, hard: u64, ipc_lock: bool) -> Memlock {
    if ipc_lock || soft >= need {
        Memlock::Enough
    } else if hard >= need {
        Memlock::Raise { to: hard }
    } else {
        Memlock::Short
    }
}

/// A limit for a message: "8 MiB", "unlimited".
fn show_limit(bytes: u64) -> String {
    if bytes == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

/// Checks, before the queues of AF_XDP port `name` (config `[[port]]` number `index`) are set
/// up on interface `iface`, what the PMD would report only as EINVAL: ring size, MTU against
/// the frame size, the pool against what the queues hold, the process's capabilities and its
/// RLIMIT_MEMLOCK (raising the soft limit to the hard one where that is enough).
pub fn preflight(
    name: &str,
    index: usize,
    section: &PortSection,
    queues: u16,
    pool: &Mempool,
    iface: &str,
) -> Result<(), DpdkError> {
    let fail = |m: String| {
        Err(DpdkError::Config(format!(
            "port {name} (AF_XDP on {iface}): {m}"
        )))
    };
    if !section.rx_desc.is_power_of_two() {
        return fail(format!(
            "port[{index}].rx_desc {} must be a power of two: it sizes the socket's RX and TX \
             rings, which the kernel takes only in powers of two",
            section.rx_desc
        ));
    }
    if u32::from(section.mtu) + L2_OVERHEAD > max_frame() {
        return fail(format!(
            "port[{index}].mtu {} is above the {} an AF_XDP frame can carry into this node's \
             mbufs ({} bytes less {L2_OVERHEAD} of Ethernet and VLAN header); the kernel would \
             drop larger frames",
            section.mtu,
            max_frame() - L2_OVERHEAD,
            max_frame()
        ));
    }
    let held = u32::from(queues) * (FILL_RING + u32::from(section.rx_desc));
    if pool.size() < held {
        return fail(format!(
            "port[{index}].mbufs {} is below the {held} its {queues} AF_XDP queue(s) hold \
             ({FILL_RING} on each fill ring and rx_desc on each RX ring); leave mbufs out to \
             size the pool for them",
            pool.size()
        ));
    }
    if let Some(problem) = umem_problem(&pool.layout()) {
        return fail(problem);
    }
    let Some(caps) = effective_caps() else {
        // Not Linux's procfs: let the PMD try and say what it says.
        return Ok(());
    };
    let missing = missing_caps(caps);
    if !missing.is_empty() {
        return fail(format!(
            "the process lacks {}: AF_XDP needs CAP_NET_RAW (its sockets), CAP_NET_ADMIN and \
             CAP_BPF (to load and attach the XDP program); run as root, or give the service \
             AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN CAP_BPF CAP_IPC_LOCK",
            missing.join(", ")
        ));
    }
    let need = pool.object_bytes();
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid, exclusively borrowed `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Ok(());
    }
    match memlock_plan(
        need,
        limit.rlim_cur,
        limit.rlim_max,
        caps & (1 << CAP_IPC_LOCK) != 0,
    ) {
        Memlock::Enough => Ok(()),
        Memlock::Raise { to } => {
            let raised = libc::rlimit {
                rlim_cur: to,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: setrlimit reads one valid rlimit; raising the soft limit up to the hard
            // one needs no privilege.
            if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) } != 0 {
                return fail(format!(
                    "cannot raise RLIMIT_MEMLOCK to {}: {}",
                    show_limit(to),
                    std::io::Error::last_os_error()
                ));
            }
            Ok(())
        }
        Memlock::Short => fail(format!(
            "its UMEM (the port's {} mbufs, {} KiB, which the kernel pins) is above \
             RLIMIT_MEMLOCK ({} soft, {} hard) and the process lacks CAP_IPC_LOCK: give it \
             CAP_IPC_LOCK or raise the limit (LimitMEMLOCK=infinity in the systemd unit, \
             ulimit -l); the kernel counts every process of the user against it",
            pool.size(),
            need.div_ceil(1024),
            show_limit(limit.rlim_cur),
            show_limit(limit.rlim_max)
        )),
    }
}

/// What keeps the PMD's UMEM from holding every mbuf of a pool laid out as `l`, if anything.
/// DPDK 22.11 registers `objects * object_size` bytes from the first chunk (its page, and the
/// offset into it): the pool must be that one block, packed ([`Mempool::new_packed`]). A
/// buffer beyond it, handed to the kernel on the fill ring, would be thrown away.
fn umem_problem(l: &Layout) -> Option<String> {
    if l.chunks != 1 {
        return Some(format!(
            "its mbuf pool lies in {} pieces of memory and the PMD registers one as its UMEM: \
             give the EAL more room (dpdk.memory_mb) or fewer mbufs",
            l.chunks
        ));
    }
    let umem_end = l.first_chunk + l.objects as usize * l.object_size as usize;
    (l.end > umem_end).then(|| {
        format!(
            "its mbufs end {} bytes past the {} the PMD registers as its UMEM; the kernel would \
             throw those buffers away",
            l.end - umem_end,
            umem_end - l.first_chunk
        )
    })
}

/// The interface with kernel index `if_index`, or its number if it has no name.
pub fn iface_name(if_index: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname requires; on success it holds a
    // NUL-terminated name, read at once.
    let p = unsafe { libc::if_indextoname(if_index, buf.as_mut_ptr()) };
    if p.is_null() {
        return format!("ifindex {if_index}");
    }
    // SAFETY: as above, a NUL-terminated string in buf.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// What to look at when the setup of an AF_XDP queue failed all the same.
pub fn setup_hint(iface: &str) -> String {
    format!(
        " (AF_XDP: DPDK's log above says which step failed; the usual causes are an XDP program \
         already on {iface}, e.g. left by a node that was killed (`ip link show dev {iface}`; \
         `ip link set dev {iface} xdp off` removes it), a queue outside {iface}'s channels \
         (`ethtool -l {iface}`), or an xdp_prog without a map named xsks_map)"
    )
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn cap_eff_is_read_from_proc_status() {
        let status = "Name:\tshake\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff("Name:\tshake\n"), None);
    }

    #[test]
    fn root_needs_nothing_and_each_missing_capability_is_named() {
        assert!(missing_caps(0x1ff_ffff_ffff).is_empty());
        assert_eq!(missing_caps(0), ["CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_BPF"]);
        // CAP_SYS_ADMIN stands in for CAP_BPF (kernels before 5.8 have no CAP_BPF).
        let admin = 1 << CAP_NET_RAW | 1 << CAP_NET_ADMIN | 1 << CAP_SYS_ADMIN;
        assert!(missing_caps(admin).is_empty());
        assert_eq!(missing_caps(admin & !(1 << CAP_NET_RAW)), ["CAP_NET_RAW"]);
    }

    #[test]
    fn memlock_is_raised_to_the_hard_limit_only_when_that_suffices() {
        let mib = 1 << 20;
        assert_eq!(
            memlock_plan(20 * mib, 8 * mib, 8 * mib, true),
            Memlock::Enough
        );
        assert_eq!(
            memlock_plan(20 * mib, 32 * mib, 32 * mib, false),
            Memlock::Enough
        );
        assert_eq!(
            memlock_plan(20 * mib, 8 * mib, libc::RLIM_INFINITY, false),
            Memlock::Raise {
                to: libc::RLIM_INFINITY
            }
        );
        assert_eq!(
            memlock_plan(20 * mib, 8 * mib, 8 * mib, false),
            Memlock::Short
        );
    }

    #[test]
    fn the_umem_must_hold_every_mbuf_of_one_packed_block() {
        let packed = Layout {
            chunks: 1,
            first_chunk: 0x10_0040,
            end: 0x10_0040 + 8191 * 2368,
            objects: 8191,
            object_size: 2368,
        };
        assert_eq!(umem_problem(&packed), None);
        // One 2368-byte mbuf per 4 KiB page: the last ones lie far beyond the UMEM.
        let paged = Layout {
            end: 0x10_0000 + 8191 * 4096,
            ..packed
        };
        let e = umem_problem(&paged).unwrap();
        assert!(e.contains("past the 19396288 the PMD registers"), "{e}");
        let split = Layout {
            chunks: 2,
            ..packed
        };
        assert!(umem_problem(&split).unwrap().contains("2 pieces"));
    }

    #[test]
    fn a_full_frame_fits_the_mbufs() {
        // 2176 of data room less 128 and 256 of headroom: 1792, room for a 1500 MTU frame
        // with a VLAN tag, not for a 2000 one.
        assert_eq!(max_frame(), 1792);
        assert!(1500 + L2_OVERHEAD <= max_frame());
    }
}
