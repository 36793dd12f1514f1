//! Stand-ins for the frame layer (`crate::frame`), which is being written alongside.
//!
//! TODO-merge: when `shake::frame` lands,
//! - [`Verdict`] becomes `pub use crate::frame::Verdict;` (same three variants);
//! - [`peek_user`] becomes `crate::frame::peek_user`;
//! - the node's processor implements [`BurstProcessor`] by calling
//!   `worker.begin_burst(now_ms)` in `begin` and
//!   `frame::process_burst(worker, &frame_cfgs[port], frames, verdicts)` in `process`.
//!
//! The DPDK layer only relies on the shapes below.

use std::sync::Arc;

use crate::counters::{Counters, DropReason};

/// What became of a frame (same shape as `frame::Verdict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit the first `len` bytes of the buffer.
    Answer { len: usize },
    /// Transmit `len` bytes with the UDP checksum left to the NIC
    /// (`RTE_MBUF_F_TX_UDP_CKSUM`; the field holds the pseudo-header sum).
    AnswerUdpOffload {
        len: usize,
        l2_len: u16,
        l3_len: u16,
    },
    /// Dropped and counted by the processor.
    Drop(DropReason),
}

/// One worker's datapath, as the poll loop drives it. Everything here runs on the worker's
/// own lcore: no locks, no allocation, no system calls.
pub trait BurstProcessor {
    /// The time for the frames that follow (unix ms, one clock read per burst).
    fn begin(&mut self, now_ms: u64);
    /// Decides a burst received on (or handed over for) port number `port` of the config:
    /// rewrites answers in place and sets one verdict per frame. Counts `rx` and drops.
    fn process(&mut self, port: usize, frames: &mut [&mut [u8]], verdicts: &mut [Verdict]);
    /// Periodic work off the per-packet path (about every 100 ms): config reload, journal
    /// sync.
    fn tick(&mut self, now_ms: u64);
    /// The worker's counters; the poll loop adds `tx` and `tx_full` to them.
    fn counters(&self) -> &Arc<Counters>;
}

/// The user id of a frame that looks like a SHAKE/1 request (Ethernet, at most one 802.1Q
/// tag, IPv4 without fragmentation, UDP with a 64-byte payload), without any checksum
/// checks: only to steer the frame to the worker owning its user. TODO-merge: replace with
/// `crate::frame::peek_user`.
pub fn peek_user(frame: &[u8]) -> Option<u64> {
    const ETHERTYPE_IPV4: u16 = 0x0800;
    const ETHERTYPE_VLAN: u16 = 0x8100;
    const PAYLOAD_LEN: usize = 64;
    let be16 = |at: usize| Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?));
    let mut l3 = 14;
    let mut ethertype = be16(12)?;
    if ethertype == ETHERTYPE_VLAN {
        ethertype = be16(16)?;
        l3 = 18;
    }
    if ethertype != ETHERTYPE_IPV4 {
        return None;
    }
    let vihl = *frame.get(l3)?;
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < 20 || *frame.get(l3 + 9)? != 17 {
        return None;
    }
    let l4 = l3 + ihl;
    if usize::from(be16(l4 + 4)?) != 8 + PAYLOAD_LEN {
        return None;
    }
    let payload = l4 + 8;
    if frame.len() < payload + PAYLOAD_LEN {
        return None;
    }
    Some(u64::from_be_bytes(
        frame.get(payload + 8..payload + 16)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod test {
    use super::*;

    /// Ethernet (optionally tagged) / IPv4 (`options` extra bytes) / UDP / 64-byte payload.
    pub fn shake_frame(user: u64, vlan: bool, options: usize) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        if vlan {
            f.extend([0x81, 0x00, 0x00, 0x05]);
        }
        f.extend([0x08, 0x00]);
        let ihl = (20 + options) / 4;
        f.push(0x40 | ihl as u8);
        f.extend([0; 8]);
        f.push(17);
        f.extend(vec![0; 10 + options]);
        f.extend([0x1b, 0x58, 0x1b, 0x58, 0, 72, 0, 0]);
        let mut payload = [0u8; 64];
        payload[..4].copy_from_slice(b"SK\x01\x01");
        payload[8..16].copy_from_slice(&user.to_be_bytes());
        f.extend(payload);
        f
    }

    #[test]
    fn peeks_users() {
        assert_eq!(peek_user(&shake_frame(42, false, 0)), Some(42));
        assert_eq!(peek_user(&shake_frame(7, true, 8)), Some(7));
        let mut short = shake_frame(1, false, 0);
        short.truncate(60);
        assert_eq!(peek_user(&short), None);
        let mut arp = shake_frame(1, false, 0);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(peek_user(&arp), None);
    }
}
