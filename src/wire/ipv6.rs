//! IPv6 headers (RFC 8200) and the extension headers in front of the upper layer.
//!
//! The fixed header is a view like every other layer. Extension headers are walked by
//! [`upper_layer`]: hop-by-hop options, destination options and routing headers are skipped
//! (each says its own length, and the node is their final destination: a routing header with
//! segments left would make the node forward, which it never does, so it is skipped as RFC
//! 8200 4.4 allows only when segments left is 0, and otherwise refused); a fragment header
//! ends the walk as a fragment, which the node drops as it drops IPv4 fragments. The walk is
//! bounded by the payload length and by [`MAX_EXTENSION_HEADERS`], so a chain of tiny
//! headers cannot make a worker loop.
//!
//! Address helpers classify sources as the frame layer needs them: what never gets an answer
//! (unspecified, multicast, loopback, IPv4-mapped), and the link-local and solicited-node
//! addresses of NDP.

use super::{Error, Field, Result};

/// Next-header value of hop-by-hop options.
pub const NEXT_HOP_BY_HOP: u8 = 0;
/// Next-header value of a routing header.
pub const NEXT_ROUTING: u8 = 43;
/// Next-header value of a fragment header.
pub const NEXT_FRAGMENT: u8 = 44;
/// Next-header value of destination options.
pub const NEXT_DEST_OPTIONS: u8 = 60;
/// Next-header value of "no next header".
pub const NEXT_NONE: u8 = 59;
/// Next-header value of UDP.
pub const NEXT_UDP: u8 = 17;
/// Next-header value of ICMPv6.
pub const NEXT_ICMPV6: u8 = 58;

/// Extension headers walked before the upper layer; more is an attack, not a phone.
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// Hop limit of the node's answers other than NDP (which uses 255).
pub const ANSWER_HOP_LIMIT: u8 = 64;

mod field {
    use super::Field;
    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// The all-nodes multicast address ff02::1, where answers to duplicate address detection go.
pub const ALL_NODES: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// Whether `a` is multicast (ff00::/8).
#[inline(always)]
pub const fn is_multicast(a: [u8; 16]) -> bool {
    a[0] == 0xff
}

/// Whether `a` is link-local unicast (fe80::/10).
#[inline(always)]
pub const fn is_link_local(a: [u8; 16]) -> bool {
    a[0] == 0xfe && a[1] & 0xc0 == 0x80
}

/// Whether `a` is the unspecified address `::`.
#[inline(always)]
pub fn is_unspecified(a: [u8; 16]) -> bool {
    a == [0; 16]
}

/// Whether `a` is an IPv4-mapped address (`::ffff:0:0/96`), which never appears on a wire
/// (RFC 4291 2.5.5.2): the dual-stack socket API's way of writing an IPv4 peer.
#[inline(always)]
pub fn is_v4_mapped(a: [u8; 16]) -> bool {
    a[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
}

/// Whether a packet from `a` must never be answered, whoever it is for (SPEC 2): the
/// unspecified address (no answer can reach it), multicast (the answer would go to a group),
/// loopback `::1` (valid only inside a host, RFC 4291 2.5.3) and IPv4-mapped addresses.
/// The node's own address is the caller's to check.
#[inline]
pub fn never_a_source(a: [u8; 16]) -> bool {
    let w = u128::from_be_bytes(a);
    is_multicast(a) | (w <= 1) | (w >> 32 == 0xffff)
}

/// Why `a` cannot be a node's global address, if it cannot: for the config's `ipv6` key.
pub fn not_a_node_address(a: [u8; 16]) -> Option<&'static str> {
    if is_unspecified(a) {
        Some("the unspecified address")
    } else if u128::from_be_bytes(a) == 1 {
        Some("the loopback address")
    } else if is_multicast(a) {
        Some("a multicast address")
    } else if is_link_local(a) {
        Some("a link-local address (give it as node.link_local)")
    } else if is_v4_mapped(a) {
        Some("an IPv4-mapped address")
    } else {
        None
    }
}

/// The link-local address of an interface with this MAC: fe80::/64 with the modified EUI-64
/// interface identifier (RFC 4291 appendix A: the universal/local bit flipped, ff:fe in the
/// middle), as the kernel derives it.
pub const fn link_local_from_mac(mac: [u8; 6]) -> [u8; 16] {
    [
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]
}

/// The solicited-node multicast address of `a` (ff02::1:ffXX:XXXX, RFC 4291 2.7.1), where
/// Neighbor Solicitations for `a` are sent.
pub const fn solicited_node(a: [u8; 16]) -> [u8; 16] {
    [
        0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, a[13], a[14], a[15],
    ]
}

/// The Ethernet address an IPv6 multicast address maps to (33:33 and its low 32 bits, RFC
/// 2464 7).
pub const fn multicast_mac(a: [u8; 16]) -> [u8; 6] {
    [0x33, 0x33, a[12], a[13], a[14], a[15]]
}

/// A view of an IPv6 packet.
///
/// The buffer may be longer than the packet (Ethernet pads frames to 60 bytes);
/// [`payload`](Self::payload) ends at the payload length, not at the end of the buffer.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wrap a buffer without checks (for writing).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wrap a buffer, checking: at least 40 bytes, version 6, and the payload length fits the
    /// buffer. A zero payload length with a hop-by-hop header would be a jumbogram (RFC 2675),
    /// which no Ethernet frame can carry: it reads as an empty payload.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if p.version() != 6 {
            return Err(Error::Malformed("ipv6: version is not 6"));
        }
        if HEADER_LEN + usize::from(p.payload_len()) > len {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn word(&self) -> u32 {
        let d = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// IP version (6).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// Traffic class.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.word() >> 20) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.word() & 0x000f_ffff
    }

    /// Length of everything after the fixed header, extension headers included.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        let d = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// The header after the fixed one.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 16] {
        self.buffer.as_ref()[field::SRC_ADDR]
            .try_into()
            .expect("fixed layout")
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 16] {
        self.buffer.as_ref()[field::DST_ADDR]
            .try_into()
            .expect("fixed layout")
    }

    /// Everything after the fixed header, up to the payload length (padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// The upper layer of this packet, past its extension headers (see [`upper_layer`]).
    #[inline]
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        upper_layer(self.next_header(), self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Set version 6, traffic class and flow label.
    #[inline]
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let w = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&w.to_be_bytes());
    }

    /// Set the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }

    /// Set the next header.
    #[inline]
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = v;
    }

    /// Set the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    /// Set the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: [u8; 16]) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a);
    }

    /// Set the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: [u8; 16]) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a);
    }

    /// Swap source and destination addresses (IPv6 has no header checksum; the upper layer's
    /// pseudo-header sum is unchanged by a swap).
    #[inline]
    pub fn swap_addrs(&mut self) {
        let (src, dst) =
            self.buffer.as_mut()[field::SRC_ADDR.start..field::DST_ADDR.end].split_at_mut(16);
        src.swap_with_slice(dst);
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// Where the upper layer of an IPv6 packet starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// Its protocol (the last next-header value).
    pub protocol: u8,
    /// Its offset in the IPv6 payload (the total length of the extension headers).
    pub offset: usize,
    /// Whether a fragment header was met: the walk stops there (the node drops fragments).
    pub fragment: bool,
}

/// Walks the extension headers of an IPv6 payload whose first header is `next`.
///
/// Hop-by-hop options, destination options and routing headers with no segments left are
/// skipped by their length field (8 + 8 * n bytes); a fragment header stops the walk with
/// `fragment` set. Errors: a header that runs past the payload ([`Error::Truncated`]),
/// hop-by-hop anywhere but first (RFC 8200 4.3), a routing header with segments left (the
/// node would have to forward), more than [`MAX_EXTENSION_HEADERS`] headers
/// ([`Error::Malformed`]).
pub fn upper_layer(mut next: u8, payload: &[u8]) -> Result<UpperLayer> {
    let mut offset = 0;
    for i in 0..=MAX_EXTENSION_HEADERS {
        match next {
            NEXT_HOP_BY_HOP | NEXT_DEST_OPTIONS | NEXT_ROUTING => {
                if i == MAX_EXTENSION_HEADERS {
                    break;
                }
                if next == NEXT_HOP_BY_HOP && i != 0 {
                    return Err(Error::Malformed("ipv6: hop-by-hop options not first"));
                }
                let h = payload.get(offset..offset + 8).ok_or(Error::Truncated)?;
                let len = 8 + 8 * usize::from(h[1]);
                if next == NEXT_ROUTING && h[3] != 0 {
                    return Err(Error::Unsupported(
                        "ipv6: routing header with segments left",
                    ));
                }
                if offset + len > payload.len() {
                    return Err(Error::Truncated);
                }
                next = h[0];
                offset += len;
            }
            NEXT_FRAGMENT => {
                return Ok(UpperLayer {
                    protocol: NEXT_FRAGMENT,
                    offset,
                    fragment: true,
                })
            }
            protocol => {
                return Ok(UpperLayer {
                    protocol,
                    offset,
                    fragment: false,
                })
            }
        }
    }
    Err(Error::Malformed("ipv6: too many extension headers"))
}

/// An owned IPv6 header, without extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// The upper layer's protocol.
    pub next_header: u8,
    pub hop_limit: u8,
    /// Length of the upper layer, at most 65535.
    pub payload_len: usize,
}

impl Ipv6Repr {
    /// Read a checked packet down to its upper layer: extension headers are skipped (their
    /// length is not part of `payload_len`), fragments refused ([`Error::Unsupported`]).
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Self> {
        let up = packet.upper_layer()?;
        if up.fragment {
            return Err(Error::Unsupported("ipv6: fragment"));
        }
        Ok(Ipv6Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            next_header: up.protocol,
            hop_limit: packet.hop_limit(),
            payload_len: usize::from(packet.payload_len()) - up.offset,
        })
    }

    /// Header length this repr emits (40: no extension headers).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write a 40-byte header (traffic class and flow label 0).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        debug_assert!(self.payload_len <= usize::from(u16::MAX));
        packet.set_version_tc_flow(0, 0);
        packet.set_payload_len(self.payload_len as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src);
        packet.set_dst_addr(self.dst);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::testutil;
    use proptest::prelude::*;

    const SRC: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// 2001:db8::1 -> 2001:db8::2, traffic class 0x12, flow 0x34567, hop limit 64, a
    /// hop-by-hop header (8 bytes: next UDP, length 0, PadN), 4 payload bytes, then 2 bytes of
    /// Ethernet padding.
    fn packet_bytes() -> Vec<u8> {
        let mut b = vec![0x61, 0x23, 0x45, 0x67, 0x00, 0x0c, 0x00, 0x40];
        b.extend_from_slice(&SRC);
        b.extend_from_slice(&DST);
        b.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        b.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0]);
        b
    }

    #[test]
    fn deconstruct() {
        let bytes = packet_bytes();
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0x12);
        assert_eq!(p.flow_label(), 0x34567);
        assert_eq!(p.payload_len(), 12);
        assert_eq!(p.next_header(), NEXT_HOP_BY_HOP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), SRC);
        assert_eq!(p.dst_addr(), DST);
        assert_eq!(p.payload().len(), 12);
        assert_eq!(
            p.upper_layer().unwrap(),
            UpperLayer {
                protocol: NEXT_UDP,
                offset: 8,
                fragment: false
            }
        );
    }

    #[test]
    fn construct() {
        let mut bytes = vec![0xa5u8; 54];
        let mut p = Ipv6Packet::new_unchecked(&mut bytes[..]);
        p.set_version_tc_flow(0x12, 0x34567);
        p.set_payload_len(12);
        p.set_next_header(NEXT_HOP_BY_HOP);
        p.set_hop_limit(64);
        p.set_src_addr(SRC);
        p.set_dst_addr(DST);
        p.payload_mut()
            .copy_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]);
        bytes[52..].copy_from_slice(&[0, 0]);
        assert_eq!(bytes, packet_bytes());
    }

    fn repr() -> Ipv6Repr {
        Ipv6Repr {
            src: SRC,
            dst: DST,
            next_header: NEXT_UDP,
            hop_limit: 64,
            payload_len: 4,
        }
    }

    #[test]
    fn parse() {
        let bytes = packet_bytes();
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&p).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let r = repr();
        let mut bytes = [0xa5u8; 44];
        r.emit(&mut Ipv6Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(r.buffer_len(), 40);
        assert_eq!(&bytes[..8], &[0x60, 0, 0, 0, 0, 4, 17, 64]);
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&p).unwrap(), r);
    }

    #[test]
    fn checked_rejects() {
        let good = packet_bytes();
        assert_eq!(
            Ipv6Packet::new_checked(&good[..39]).unwrap_err(),
            Error::Truncated
        );
        // Payload length past the buffer.
        assert_eq!(
            Ipv6Packet::new_checked(&good[..51]).unwrap_err(),
            Error::Truncated
        );
        let mut b = good.clone();
        b[0] = 0x41;
        assert!(matches!(
            Ipv6Packet::new_checked(&b[..]),
            Err(Error::Malformed(_))
        ));
    }

    /// A payload of the given extension headers (next-header values), each 8 bytes, then 4
    /// bytes of upper layer.
    fn chain(headers: &[u8], last: u8) -> (u8, Vec<u8>) {
        let mut p = Vec::new();
        for (i, _) in headers.iter().enumerate() {
            let next = headers.get(i + 1).copied().unwrap_or(last);
            p.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]);
        }
        p.extend_from_slice(&[1, 2, 3, 4]);
        (headers.first().copied().unwrap_or(last), p)
    }

    #[test]
    fn extension_headers_are_skipped_or_refused() {
        let (first, p) = chain(
            &[NEXT_HOP_BY_HOP, NEXT_DEST_OPTIONS, NEXT_ROUTING],
            NEXT_UDP,
        );
        assert_eq!(
            upper_layer(first, &p).unwrap(),
            UpperLayer {
                protocol: NEXT_UDP,
                offset: 24,
                fragment: false
            }
        );
        // A fragment header stops the walk.
        let (first, p) = chain(&[NEXT_DEST_OPTIONS, NEXT_FRAGMENT], NEXT_UDP);
        let up = upper_layer(first, &p).unwrap();
        assert!(up.fragment);
        assert_eq!(up.offset, 8);
        // Hop-by-hop only first.
        let (first, p) = chain(&[NEXT_DEST_OPTIONS, NEXT_HOP_BY_HOP], NEXT_UDP);
        assert!(matches!(upper_layer(first, &p), Err(Error::Malformed(_))));
        // Routing with segments left.
        let (first, mut p) = chain(&[NEXT_ROUTING], NEXT_UDP);
        p[3] = 1;
        assert!(matches!(upper_layer(first, &p), Err(Error::Unsupported(_))));
        // A length running past the payload.
        let (first, mut p) = chain(&[NEXT_DEST_OPTIONS], NEXT_UDP);
        p[1] = 1;
        assert_eq!(upper_layer(first, &p).unwrap_err(), Error::Truncated);
        assert_eq!(
            upper_layer(NEXT_HOP_BY_HOP, &[17, 0]).unwrap_err(),
            Error::Truncated
        );
        // The bound on the chain.
        let (first, p) = chain(&[NEXT_DEST_OPTIONS; MAX_EXTENSION_HEADERS], NEXT_UDP);
        assert_eq!(upper_layer(first, &p).unwrap().offset, 64);
        let (first, p) = chain(&[NEXT_DEST_OPTIONS; MAX_EXTENSION_HEADERS + 1], NEXT_UDP);
        assert!(matches!(upper_layer(first, &p), Err(Error::Malformed(_))));
    }

    #[test]
    fn parse_refuses_fragments() {
        let (first, p) = chain(&[NEXT_FRAGMENT], NEXT_UDP);
        let mut b = vec![0x60, 0, 0, 0, 0, p.len() as u8, first, 64];
        b.extend_from_slice(&SRC);
        b.extend_from_slice(&DST);
        b.extend_from_slice(&p);
        let pk = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert!(matches!(Ipv6Repr::parse(&pk), Err(Error::Unsupported(_))));
    }

    #[test]
    fn addresses() {
        let mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
        let ll = link_local_from_mac(mac);
        assert_eq!(
            std::net::Ipv6Addr::from(ll),
            "fe80::5054:ff:fe12:3456"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
        );
        assert!(is_link_local(ll));
        assert_eq!(
            std::net::Ipv6Addr::from(solicited_node(DST)),
            "ff02::1:ff00:2".parse::<std::net::Ipv6Addr>().unwrap()
        );
        assert_eq!(
            multicast_mac(solicited_node(ll)),
            [0x33, 0x33, 0xff, 0x12, 0x34, 0x56]
        );
        let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
        for never in ["::", "::1", "ff02::1", "ff05::2", "::ffff:10.0.0.1"] {
            assert!(never_a_source(v6(never)), "{never}");
        }
        for fine in ["::2", "2001:db8::1", "fe80::1", "fd00::1", "64:ff9b::a00:1"] {
            assert!(!never_a_source(v6(fine)), "{fine}");
        }
        assert!(not_a_node_address(v6("fe80::1")).is_some());
        assert!(not_a_node_address(v6("2001:db8::2")).is_none());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut data in testutil::bytes(120)) {
            if let Ok(p) = Ipv6Packet::new_checked(&data[..]) {
                let _ = (p.traffic_class(), p.flow_label(), p.hop_limit(), p.src_addr());
                prop_assert!(HEADER_LEN + p.payload().len() <= data.len());
                if let Ok(up) = p.upper_layer() {
                    prop_assert!(up.offset <= p.payload().len());
                }
                let _ = Ipv6Repr::parse(&p);
                let mut p = Ipv6Packet::new_checked(&mut data[..]).unwrap();
                p.swap_addrs();
                let _ = p.payload_mut();
            }
        }
    }
}
