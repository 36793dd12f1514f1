//! A whole frame read down to its UDP payload, the one way everything outside the worker does
//! it: Ethernet (with at most one 802.1Q tag), IPv4 (options allowed, no fragments), UDP,
//! each layer through its view, with the addresses of every layer, then both checksums.
//!
//! Users: the generator reading answers (`bench/gen`), the tests and tools reading requests
//! and answers. Parsing and checksums are two steps so a caller can first ask whether a frame
//! is for it at all: the generator counts a frame of another flow as "not ours", never as a
//! bad checksum, and sums nothing for it.
//!
//! The worker (`crate::frame`) does not come through here, by design: its common frame is
//! read at fixed offsets (measured in instructions per request, bench/results/datapath.txt),
//! and its general path checks in the order that gives each bad frame its drop reason (not
//! for us, wrong port, bad source) before it sums anything, and answers ARP and ICMP too.
//!
//! The usual frame (a 20-byte IPv4 header, a SHAKE/1 payload) is summed as fixed-size arrays,
//! unrolled; any other through the views' general sums. Same verdict either way (tested).

use super::checksum;
use super::ethernet::{self, EthernetFrame};
use super::ipv4::{self, Ipv4Packet};
use super::ipv6::{self, Ipv6Packet};
use super::shake::PAYLOAD_LEN;
use super::udp::{self, UdpPacket};
use super::{Error, Result};

/// A UDP datagram in an Ethernet/IPv4 frame: its addresses and where each layer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    frame: &'a [u8],
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// The 802.1Q TCI, if the frame is tagged.
    pub vlan: Option<u16>,
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
    pub src_port: u16,
    pub dst_port: u16,
    /// Offset of the IPv4 header in the frame.
    pub ip_offset: usize,
    /// Offset of the UDP header.
    pub udp_offset: usize,
    /// Offset of the UDP payload.
    pub payload_offset: usize,
    /// End of the UDP datagram (its length field; Ethernet padding and anything past the
    /// UDP length are not payload).
    pub end: usize,
}

impl<'a> Datagram<'a> {
    /// Reads the layers of `frame` (lengths, versions, protocol; no checksums): an IPv4
    /// ethertype, an unfragmented IPv4 packet, UDP within the IPv4 total length.
    pub fn parse(frame: &'a [u8]) -> Result<Datagram<'a>> {
        let eth = EthernetFrame::new_checked(frame)?;
        if eth.ethertype() != ethernet::ETHERTYPE_IPV4 {
            return Err(Error::Unsupported("not IPv4"));
        }
        let l3 = eth.header_len();
        let ip = Ipv4Packet::new_checked(&frame[l3..])?;
        if ip.is_fragment() {
            return Err(Error::Unsupported("ipv4 fragment"));
        }
        if ip.protocol() != ipv4::PROTOCOL_UDP {
            return Err(Error::Unsupported("not UDP"));
        }
        let l4 = l3 + ip.header_len();
        let u = UdpPacket::new_checked(&frame[l4..l3 + usize::from(ip.total_len())])?;
        Ok(Datagram {
            frame,
            dst_mac: eth.dst_addr(),
            src_mac: eth.src_addr(),
            vlan: eth.vlan_tag(),
            src_ip: ip.src_addr(),
            dst_ip: ip.dst_addr(),
            src_port: u.src_port(),
            dst_port: u.dst_port(),
            ip_offset: l3,
            udp_offset: l4,
            payload_offset: l4 + udp::HEADER_LEN,
            end: l4 + usize::from(u.len()),
        })
    }

    /// [`parse`](Self::parse), then [`verify_checksums`](Self::verify_checksums).
    pub fn parse_verified(frame: &'a [u8]) -> Result<Datagram<'a>> {
        let d = Self::parse(frame)?;
        d.verify_checksums()?;
        Ok(d)
    }

    /// The UDP payload.
    pub fn payload(&self) -> &'a [u8] {
        &self.frame[self.payload_offset..self.end]
    }

    /// Checks the IPv4 header checksum, then the UDP checksum (zero means none, RFC 768).
    pub fn verify_checksums(&self) -> Result<()> {
        let header = &self.frame[self.ip_offset..self.udp_offset];
        let ip_ok = match <&[u8; ipv4::HEADER_LEN]>::try_from(header) {
            Ok(h) => checksum::fold(checksum::sum_array(h)) == 0xffff,
            Err(_) => Ipv4Packet::new_unchecked(header).verify_checksum(),
        };
        if !ip_ok {
            return Err(Error::Malformed("ipv4 checksum"));
        }
        let dgram = &self.frame[self.udp_offset..self.end];
        let u = UdpPacket::new_unchecked(dgram);
        let udp_ok = match <&[u8; udp::HEADER_LEN + PAYLOAD_LEN]>::try_from(dgram) {
            Ok(d) if u.checksum() != 0 => {
                let pseudo = checksum::pseudo_header_v4(
                    self.src_ip,
                    self.dst_ip,
                    ipv4::PROTOCOL_UDP,
                    u.len(),
                );
                checksum::fold(pseudo + checksum::sum_array(d)) == 0xffff
            }
            _ => u.verify_checksum(self.src_ip, self.dst_ip),
        };
        if !udp_ok {
            return Err(Error::Malformed("udp checksum"));
        }
        Ok(())
    }
}

/// A UDP datagram in an Ethernet/IPv6 frame, the [`Datagram`] of IPv6: extension headers
/// (hop-by-hop, destination options, routing) skipped, fragments refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram6<'a> {
    frame: &'a [u8],
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub src_ip: [u8; 16],
    pub dst_ip: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub ip_offset: usize,
    pub udp_offset: usize,
    pub payload_offset: usize,
    pub end: usize,
}

impl<'a> Datagram6<'a> {
    /// Reads the layers of `frame` (no checksum): an IPv6 ethertype, extension headers, UDP
    /// within the IPv6 payload length.
    pub fn parse(frame: &'a [u8]) -> Result<Datagram6<'a>> {
        let eth = EthernetFrame::new_checked(frame)?;
        if eth.ethertype() != ethernet::ETHERTYPE_IPV6 {
            return Err(Error::Unsupported("not IPv6"));
        }
        let l3 = eth.header_len();
        let ip = Ipv6Packet::new_checked(&frame[l3..])?;
        let up = ip.upper_layer()?;
        if up.fragment {
            return Err(Error::Unsupported("ipv6 fragment"));
        }
        if up.protocol != ipv6::NEXT_UDP {
            return Err(Error::Unsupported("not UDP"));
        }
        let l4 = l3 + ipv6::HEADER_LEN + up.offset;
        let end = l3 + ipv6::HEADER_LEN + usize::from(ip.payload_len());
        let u = UdpPacket::new_checked(&frame[l4..end])?;
        Ok(Datagram6 {
            frame,
            dst_mac: eth.dst_addr(),
            src_mac: eth.src_addr(),
            vlan: eth.vlan_tag(),
            src_ip: ip.src_addr(),
            dst_ip: ip.dst_addr(),
            src_port: u.src_port(),
            dst_port: u.dst_port(),
            ip_offset: l3,
            udp_offset: l4,
            payload_offset: l4 + udp::HEADER_LEN,
            end: l4 + usize::from(u.len()),
        })
    }

    /// [`parse`](Self::parse), then [`verify_checksum`](Self::verify_checksum).
    pub fn parse_verified(frame: &'a [u8]) -> Result<Datagram6<'a>> {
        let d = Self::parse(frame)?;
        d.verify_checksum()?;
        Ok(d)
    }

    /// The UDP payload.
    pub fn payload(&self) -> &'a [u8] {
        &self.frame[self.payload_offset..self.end]
    }

    /// Checks the UDP checksum, mandatory over IPv6 (zero is wrong).
    pub fn verify_checksum(&self) -> Result<()> {
        let u = UdpPacket::new_unchecked(&self.frame[self.udp_offset..self.end]);
        if u.verify_checksum_v6(self.src_ip, self.dst_ip) {
            Ok(())
        } else {
            Err(Error::Malformed("udp checksum"))
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::testutil::bytes;
    use crate::wire::{EthernetRepr, Ipv4Repr, UdpRepr};
    use proptest::prelude::*;

    /// An Ethernet/[VLAN]/IPv4/UDP frame of `payload` with IPv4 options `options` (a multiple
    /// of 4 bytes), both checksums filled.
    fn frame(vlan: Option<u16>, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let eth = EthernetRepr {
            dst: [2, 0, 0, 0, 0, 1],
            src: [2, 0, 0, 0, 0, 2],
            vlan,
            ethertype: ethernet::ETHERTYPE_IPV4,
        };
        let udp = UdpRepr {
            src_port: 40_000,
            dst_port: 7000,
            payload_len: payload.len(),
        };
        let ip = Ipv4Repr {
            src: [198, 51, 100, 7],
            dst: [192, 0, 2, 1],
            protocol: ipv4::PROTOCOL_UDP,
            ttl: 64,
            payload_len: udp.buffer_len(),
            ident: 1,
            dont_frag: true,
        };
        let l3 = eth.buffer_len();
        let l4 = l3 + ipv4::HEADER_LEN + options.len();
        let mut f = vec![0u8; l4 + udp.buffer_len()];
        eth.emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut f[l3..]));
        let mut i = Ipv4Packet::new_unchecked(&mut f[l3..]);
        i.set_header_len(ipv4::HEADER_LEN + options.len());
        i.set_total_len((ipv4::HEADER_LEN + options.len() + udp.buffer_len()) as u16);
        f[l3 + ipv4::HEADER_LEN..l4].copy_from_slice(options);
        Ipv4Packet::new_unchecked(&mut f[l3..]).fill_checksum();
        udp.emit(
            &mut UdpPacket::new_unchecked(&mut f[l4..]),
            ip.src,
            ip.dst,
            |p| p.copy_from_slice(payload),
        );
        f
    }

    #[test]
    fn addresses_offsets_and_payload() {
        let f = frame(Some(100), &[1, 1, 1, 0], &[0x5a; PAYLOAD_LEN]);
        let d = Datagram::parse_verified(&f).unwrap();
        assert_eq!(
            (d.dst_mac, d.src_mac),
            ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        );
        assert_eq!(d.vlan, Some(100));
        assert_eq!((d.src_ip, d.dst_ip), ([198, 51, 100, 7], [192, 0, 2, 1]));
        assert_eq!((d.src_port, d.dst_port), (40_000, 7000));
        assert_eq!((d.ip_offset, d.udp_offset, d.payload_offset), (18, 42, 50));
        assert_eq!(d.payload(), &[0x5a; PAYLOAD_LEN]);
        // Ethernet padding is not payload.
        let mut padded = frame(None, &[], &[7]);
        padded.resize(60, 0);
        assert_eq!(Datagram::parse_verified(&padded).unwrap().payload(), &[7]);
    }

    #[test]
    fn what_is_not_an_unfragmented_udp_datagram_is_refused() {
        let f = frame(None, &[], &[0; PAYLOAD_LEN]);
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&ethernet::ETHERTYPE_ARP.to_be_bytes());
        assert_eq!(Datagram::parse(&arp), Err(Error::Unsupported("not IPv4")));
        let mut icmp = f.clone();
        icmp[14 + 9] = ipv4::PROTOCOL_ICMP;
        assert_eq!(Datagram::parse(&icmp), Err(Error::Unsupported("not UDP")));
        let mut frag = f.clone();
        frag[14 + 6] |= 0x20; // MF
        assert_eq!(
            Datagram::parse(&frag),
            Err(Error::Unsupported("ipv4 fragment"))
        );
        for n in 0..f.len() {
            assert!(Datagram::parse(&f[..n]).is_err(), "{n} bytes");
        }
    }

    #[test]
    fn checksums_are_a_second_step() {
        let f = frame(None, &[], &[0; PAYLOAD_LEN]);
        let mut bad_ip = f.clone();
        bad_ip[14 + 8] ^= 1; // TTL
        let d = Datagram::parse(&bad_ip).expect("structure is fine");
        assert_eq!(d.verify_checksums(), Err(Error::Malformed("ipv4 checksum")));
        let mut bad_udp = f.clone();
        *bad_udp.last_mut().unwrap() ^= 1;
        assert_eq!(
            Datagram::parse_verified(&bad_udp),
            Err(Error::Malformed("udp checksum"))
        );
        // No UDP checksum (zero): accepted.
        bad_udp[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
        assert!(Datagram::parse_verified(&bad_udp).is_ok());
    }

    #[test]
    fn ipv6_datagrams() {
        let flow = crate::client::Flow6 {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            vlan: Some(7),
            src_ip: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
            dst_ip: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            src_port: 40_000,
            dst_port: 7000,
        };
        let mut f = vec![0u8; flow.frame_len()];
        assert_eq!(flow.emit(&mut f, &[0x5a; PAYLOAD_LEN]), f.len());
        let d = Datagram6::parse_verified(&f).unwrap();
        assert_eq!((d.src_ip, d.dst_ip), (flow.src_ip, flow.dst_ip));
        assert_eq!((d.src_port, d.dst_port, d.vlan), (40_000, 7000, Some(7)));
        assert_eq!((d.ip_offset, d.udp_offset, d.payload_offset), (18, 58, 66));
        assert_eq!(d.payload(), &[0x5a; PAYLOAD_LEN]);
        // etherparse reads the same datagram.
        let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        match p.transport {
            Some(etherparse::TransportSlice::Udp(u)) => {
                assert_eq!(u.payload(), &[0x5a; PAYLOAD_LEN]);
            }
            t => panic!("{t:?}"),
        }
        assert_eq!(Datagram::parse(&f), Err(Error::Unsupported("not IPv4")));
        let mut bad = f.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(
            Datagram6::parse_verified(&bad),
            Err(Error::Malformed("udp checksum"))
        );
        bad[58 + 6..58 + 8].copy_from_slice(&[0, 0]);
        assert_eq!(
            Datagram6::parse_verified(&bad),
            Err(Error::Malformed("udp checksum"))
        );
        for n in 0..f.len() {
            assert!(Datagram6::parse(&f[..n]).is_err(), "{n} bytes");
        }
    }

    proptest! {
        /// The fixed-size sums and the general ones agree, on any payload of any length,
        /// with and without options, with one bit anywhere flipped or not.
        #[test]
        fn fast_and_general_checksums_agree(
            // Half of them the usual SHAKE/1 length, which the fixed-size sums take.
            payload in prop_oneof![
                proptest::collection::vec(any::<u8>(), PAYLOAD_LEN),
                bytes(2 * PAYLOAD_LEN),
            ],
            options in any::<bool>(),
            flip in proptest::option::of((0usize..200, 0u8..8)),
        ) {
            let opts: &[u8] = if options { &[1, 1, 1, 0] } else { &[] };
            let mut f = frame(None, opts, &payload);
            if let Some((at, bit)) = flip {
                let at = 14 + at % (f.len() - 14);
                f[at] ^= 1 << bit;
            }
            if let Ok(d) = Datagram::parse(&f) {
                let ip = Ipv4Packet::new_checked(&f[d.ip_offset..]).unwrap();
                let u = UdpPacket::new_checked(&f[d.udp_offset..d.end]).unwrap();
                let general = if !ip.verify_checksum() {
                    Err(Error::Malformed("ipv4 checksum"))
                } else if !u.verify_checksum(d.src_ip, d.dst_ip) {
                    Err(Error::Malformed("udp checksum"))
                } else {
                    Ok(())
                };
                prop_assert_eq!(d.verify_checksums(), general);
                prop_assert_eq!(d.payload(), u.payload());
            }
        }
    }
}
