//! Request frames from a per-flow template, for the generator's DPDK mode.
//!
//! [`Flow::emit`] writes a frame field by field and then sums the bytes it just wrote for the
//! two checksums. Reading back, as 8-byte words, bytes that narrower stores have just written
//! defeats the CPU's store-to-load forwarding: a profile of the generator had almost half of
//! its send path on the two loads that start those sums. Here the constant part of the frame
//! (addresses, ports but the source port, lengths, the payload's fixed bytes) and its
//! partial checksums are computed once; a request then costs one copy of the template, the
//! stores of its variable fields, and checksums summed from the field values in registers.
//! The bytes are exactly [`Flow::emit`]'s (tests below).
//!
//! IPv6 requests ([`RequestTemplate::new6`]) are the same but simpler: IPv6 has no header
//! checksum and no identification, so only the UDP part varies; their bytes are exactly
//! [`Flow6::emit`]'s.

use shake::client::{payload, Flow, Flow6};
use shake::wire::shake::{req, ShakeRequestRepr, PAYLOAD_LEN};
use shake::wire::udp;
use shake::wire::{checksum, ipv4, ipv6};

/// The longest frame a template holds: Ethernet with a VLAN tag, IPv6, UDP, SHAKE/1.
const MAX_FRAME: usize = 18 + ipv6::HEADER_LEN + udp::HEADER_LEN + PAYLOAD_LEN;

/// One flow's request frames, but for the source port, the IPv4 ident and the payload.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    frame: [u8; MAX_FRAME],
    len: usize,
    /// Offset of the IPv4 header.
    l3: usize,
    /// Offset of the UDP header.
    l4: usize,
    /// Sum of the IPv4 header with ident and checksum zero; `None` over IPv6, which has
    /// neither.
    ip_sum: Option<u32>,
    /// Pseudo header plus the UDP datagram with source port, checksum and the payload's
    /// variable fields zero.
    udp_sum: u32,
}

/// A request with every variable field zero: what a template is built from.
const ZERO: ShakeRequestRepr = ShakeRequestRepr {
    shakes: 0,
    user_id: 0,
    seq: 0,
    config_version: 0,
    client_ts: 0,
    token_expiry: 0,
    token: 0,
};

/// Ones-complement partial sums of big-endian fields, from their values.
#[inline(always)]
fn sum64(v: u64) -> u32 {
    ((v >> 48) + ((v >> 32) & 0xffff) + ((v >> 16) & 0xffff) + (v & 0xffff)) as u32
}

#[inline(always)]
fn sum32(v: u32) -> u32 {
    (v >> 16) + (v & 0xffff)
}

impl RequestTemplate {
    /// Requests over IPv4 on `flow`.
    pub fn new(flow: &Flow) -> RequestTemplate {
        let mut frame = [0u8; MAX_FRAME];
        let flow = Flow {
            src_port: 0,
            ..*flow
        };
        let len = flow.emit(&mut frame, &payload(&ZERO), 0);
        let l3 = len - PAYLOAD_LEN - udp::HEADER_LEN - ipv4::HEADER_LEN;
        let l4 = l3 + ipv4::HEADER_LEN;
        frame[l3 + 10..l3 + 12].fill(0);
        frame[l4 + 6..l4 + 8].fill(0);
        let ip_sum = checksum::sum(&frame[l3..l4]);
        let udp_len = (len - l4) as u16;
        let udp_sum =
            checksum::pseudo_header_v4(flow.src_ip, flow.dst_ip, ipv4::PROTOCOL_UDP, udp_len)
                + checksum::sum(&frame[l4..len]);
        RequestTemplate {
            frame,
            len,
            l3,
            l4,
            ip_sum: Some(ip_sum),
            udp_sum,
        }
    }

    /// Requests over IPv6 on `flow`.
    pub fn new6(flow: &Flow6) -> RequestTemplate {
        let mut frame = [0u8; MAX_FRAME];
        let flow = Flow6 {
            src_port: 0,
            ..*flow
        };
        let len = flow.emit(&mut frame, &payload(&ZERO));
        let l4 = len - PAYLOAD_LEN - udp::HEADER_LEN;
        let l3 = l4 - ipv6::HEADER_LEN;
        frame[l4 + 6..l4 + 8].fill(0);
        let udp_len = (len - l4) as u32;
        let udp_sum = checksum::pseudo_header_v6(flow.src_ip, flow.dst_ip, ipv6::NEXT_UDP, udp_len)
            + checksum::sum(&frame[l4..len]);
        RequestTemplate {
            frame,
            len,
            l3,
            l4,
            ip_sum: None,
            udp_sum,
        }
    }

    /// Frame length.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes the request frame into `buf` (at least [`len`](Self::len) bytes) and returns
    /// its length: the bytes of `Flow { src_port, ..flow }.emit(buf, &payload(r), ident)`
    /// (over IPv6, of `Flow6 { src_port, ..flow }.emit(buf, &payload(r))`: no ident).
    #[inline]
    pub fn write(&self, buf: &mut [u8], src_port: u16, r: &ShakeRequestRepr, ident: u16) -> usize {
        let buf = &mut buf[..self.len];
        buf.copy_from_slice(&self.frame[..self.len]);
        let (l3, l4) = (self.l3, self.l4);
        let p = l4 + udp::HEADER_LEN;

        if let Some(ip_sum) = self.ip_sum {
            buf[l3 + 4..l3 + 6].copy_from_slice(&ident.to_be_bytes());
            let ip = !checksum::fold(ip_sum + u32::from(ident));
            buf[l3 + 10..l3 + 12].copy_from_slice(&ip.to_be_bytes());
        }

        buf[l4..l4 + 2].copy_from_slice(&src_port.to_be_bytes());
        let put = |buf: &mut [u8], at: std::ops::Range<usize>, bytes: &[u8]| {
            buf[p + at.start..p + at.end].copy_from_slice(bytes)
        };
        put(buf, req::SHAKES, &r.shakes.to_be_bytes());
        put(buf, req::USER_ID, &r.user_id.to_be_bytes());
        put(buf, req::SEQ, &r.seq.to_be_bytes());
        put(buf, req::CONFIG_VERSION, &r.config_version.to_be_bytes());
        put(buf, req::CLIENT_TS, &r.client_ts.to_be_bytes());
        put(buf, req::TOKEN_EXPIRY, &r.token_expiry.to_be_bytes());
        put(buf, req::TOKEN, &r.token.to_be_bytes());
        // Every field starts at an even offset, so its 16-bit words are words of the sum.
        let sum = self.udp_sum
            + u32::from(src_port)
            + u32::from(r.shakes)
            + sum64(r.user_id)
            + sum32(r.seq)
            + sum32(r.config_version)
            + sum64(r.client_ts)
            + sum32(r.token_expiry)
            + sum64(r.token);
        let ck = !checksum::fold(sum);
        // A computed zero is sent as 0xffff (RFC 768: zero means "no checksum"; RFC 8200
        // 8.1: over IPv6 zero is wrong).
        let ck = if ck == 0 { 0xffff } else { ck };
        buf[l4 + 6..l4 + 8].copy_from_slice(&ck.to_be_bytes());
        self.len
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;

    fn flow(vlan: Option<u16>) -> Flow {
        Flow {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            vlan,
            src_ip: [10, 99, 0, 2],
            dst_ip: [10, 99, 0, 1],
            src_port: 40_000,
            dst_port: 7000,
        }
    }

    fn repr(v: [u64; 7]) -> ShakeRequestRepr {
        ShakeRequestRepr {
            shakes: v[0] as u16,
            user_id: v[1],
            seq: v[2] as u32,
            config_version: v[3] as u32,
            client_ts: v[4],
            token_expiry: v[5] as u32,
            token: v[6],
        }
    }

    fn flow6(vlan: Option<u16>) -> Flow6 {
        Flow6 {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            vlan,
            src_ip: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            dst_ip: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            src_port: 40_000,
            dst_port: 7000,
        }
    }

    fn same_as_emit6(f: &Flow6, src_port: u16, r: &ShakeRequestRepr, ident: u16) {
        let t = RequestTemplate::new6(f);
        let mut fast = [0xa5u8; MAX_FRAME];
        let mut slow = [0x5au8; MAX_FRAME];
        let n = t.write(&mut fast, src_port, r, ident);
        let m = Flow6 { src_port, ..*f }.emit(&mut slow, &payload(r));
        assert_eq!(n, m);
        assert_eq!(fast[..n], slow[..m], "{r:?} port {src_port}");
        // And an independent reader finds its checksum valid.
        shake::wire::Datagram6::parse_verified(&fast[..n]).unwrap();
    }

    fn same_as_emit(f: &Flow, src_port: u16, r: &ShakeRequestRepr, ident: u16) {
        let t = RequestTemplate::new(f);
        let mut fast = [0xa5u8; MAX_FRAME];
        let mut slow = [0x5au8; MAX_FRAME];
        let n = t.write(&mut fast, src_port, r, ident);
        let m = Flow { src_port, ..*f }.emit(&mut slow, &payload(r), ident);
        assert_eq!(n, m);
        assert_eq!(fast[..n], slow[..m], "{r:?} port {src_port} ident {ident}");
    }

    #[test]
    fn extremes_and_a_zero_checksum() {
        for vlan in [None, Some(7)] {
            let f = flow(vlan);
            same_as_emit(&f, 0, &repr([0; 7]), 0);
            same_as_emit(&f, u16::MAX, &repr([u64::MAX; 7]), u16::MAX);
        }
        // A payload whose UDP checksum comes out 0 must be sent as 0xffff: find one by
        // varying the token's low word.
        let f = flow(None);
        let t = RequestTemplate::new(&f);
        let mut buf = [0u8; MAX_FRAME];
        let mut r = repr([1, 2, 3, 4, 5, 6, 0]);
        let hit = (0..=u16::MAX).find(|&w| {
            r.token = u64::from(w);
            t.write(&mut buf, 1234, &r, 9);
            buf[t.len() - PAYLOAD_LEN - 2..t.len() - PAYLOAD_LEN] == [0xff, 0xff]
        });
        assert!(hit.is_some());
        same_as_emit(&f, 1234, &r, 9);
        // The same over IPv6.
        for vlan in [None, Some(7)] {
            let f = flow6(vlan);
            same_as_emit6(&f, 0, &repr([0; 7]), 0);
            same_as_emit6(&f, u16::MAX, &repr([u64::MAX; 7]), u16::MAX);
        }
        let f = flow6(None);
        let t = RequestTemplate::new6(&f);
        let hit = (0..=u16::MAX).find(|&w| {
            r.token = u64::from(w);
            t.write(&mut buf, 1234, &r, 9);
            buf[t.len() - PAYLOAD_LEN - 2..t.len() - PAYLOAD_LEN] == [0xff, 0xff]
        });
        assert!(hit.is_some());
        same_as_emit6(&f, 1234, &r, 9);
    }

    proptest! {
        #[test]
        fn bytes_are_those_of_flow_emit(
            v in proptest::array::uniform7(any::<u64>()),
            src_port in any::<u16>(),
            ident in any::<u16>(),
            vlan in proptest::option::of(0u16..4096),
        ) {
            same_as_emit(&flow(vlan), src_port, &repr(v), ident);
        }

        #[test]
        fn ipv6_bytes_are_those_of_flow6_emit(
            v in proptest::array::uniform7(any::<u64>()),
            src_port in any::<u16>(),
            ident in any::<u16>(),
            vlan in proptest::option::of(0u16..4096),
        ) {
            same_as_emit6(&flow6(vlan), src_port, &repr(v), ident);
        }
    }
}
