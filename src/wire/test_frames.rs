//! Whole-frame tests across layers, and cross-checks against `etherparse` (an independent
//! implementation) for layout and checksums in both directions.

use super::checksum;
use super::ethernet::{ETHERTYPE_IPV4, ETHERTYPE_VLAN};
use super::ipv4::{PROTOCOL_ICMP, PROTOCOL_UDP};
use super::shake::PAYLOAD_LEN;
use super::*;
use etherparse::{
    Ipv4Header, LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TransportSlice, VlanSlice,
};
use proptest::prelude::*;

const NODE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const NODE_IP: [u8; 4] = [192, 0, 2, 1];
const CLIENT_IP: [u8; 4] = [198, 51, 100, 7];

/// A SHAKE/1 request as it arrives: 802.1Q VID 100, IPv4 with a Router Alert option
/// (IHL 6), 198.51.100.7:40000 -> 192.0.2.1:7000, the 64-byte request of `shake.rs`' tests.
/// Checksums computed independently (IPv4 0x9d06, UDP 0xb7ae).
static REQUEST_FRAME: [u8; 114] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x81, 0x00, 0x00, 0x64,
    0x08, 0x00, 0x46, 0x00, 0x00, 0x60, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x9d, 0x06, 0xc6, 0x33,
    0x64, 0x07, 0xc0, 0x00, 0x02, 0x01, 0x94, 0x04, 0x00, 0x00, 0x9c, 0x40, 0x1b, 0x58, 0x00, 0x48,
    0xb7, 0xae, 0x53, 0x4b, 0x01, 0x01, 0x00, 0x03, 0x00, 0x00, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
    0xcd, 0xef, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x05, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
    0x77, 0x88, 0x70, 0xdb, 0xd8, 0x80, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x1a, 0x5c, 0x49, 0xd5, 0x3e,
    0xf9, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00,
];

/// Offsets of each layer in a frame, as the datapath computes them.
#[derive(Debug)]
struct Layers {
    ip: usize,
    udp: usize,
    payload: usize,
}

/// Parse and validate down to the SHAKE payload, through the shared whole-frame reader.
fn parse_request_frame(frame: &[u8]) -> Result<(Layers, ShakeRequestRepr)> {
    let d = Datagram::parse_verified(frame)?;
    let req = ShakeRequest::new_checked(d.payload())?;
    let repr = ShakeRequestRepr::parse(&req)?;
    Ok((
        Layers {
            ip: d.ip_offset,
            udp: d.udp_offset,
            payload: d.payload_offset,
        },
        repr,
    ))
}

/// Rewrite a validated request frame into its answer in place, as the datapath does: swap
/// MACs, IPs and ports, write the whole answer payload, refill the UDP checksum. The IPv4
/// checksum is left alone: the swap does not change it and nothing else in the header changes.
fn rewrite_in_place(frame: &mut [u8], l: &Layers, answer: &ShakeAnswerRepr) {
    EthernetFrame::new_unchecked(&mut *frame).swap_addrs();
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[l.ip..]);
    ip.swap_addrs();
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    write_answer(&mut frame[l.payload..], answer);
    let mut udp = UdpPacket::new_unchecked(&mut frame[l.udp..l.payload + PAYLOAD_LEN]);
    udp.swap_ports();
    udp.fill_checksum(src, dst);
}

fn answer_for(req: &ShakeRequestRepr) -> ShakeAnswerRepr {
    ShakeAnswerRepr {
        outcome: Outcome::RedPacket,
        flags: shake::FLAG_CONFIG_STALE,
        resource_id: 9,
        user_id: req.user_id,
        seq: req.seq,
        retry_after_ms: 5000,
        client_ts: req.client_ts,
        packet_id: 42,
        amount_cents: 888,
        sponsor_id: 7,
        claim_mac: 0x4a2b_60f8_2bce_b928,
        config_version: 6,
        round_id: 3,
    }
}

/// Check every layer of an Ethernet/[VLAN]/IPv4/UDP frame with etherparse, including both
/// checksums recomputed by etherparse. Returns the UDP payload.
fn etherparse_check(
    frame: &[u8],
    vlan: Option<u16>,
    src_ip: [u8; 4],
    dst_ip: [u8; 4],
    ports: (u16, u16),
) -> Vec<u8> {
    let sliced = SlicedPacket::from_ethernet(frame).expect("etherparse accepts the frame");
    match sliced.link {
        Some(LinkSlice::Ethernet2(_)) => {}
        other => panic!("link {other:?}"),
    }
    match (vlan, &sliced.vlan) {
        (None, None) => {}
        (Some(tci), Some(VlanSlice::SingleVlan(v))) => {
            assert_eq!(v.vlan_identifier().value(), tci & 0x0fff);
            assert_eq!(v.ether_type().0, ETHERTYPE_IPV4);
        }
        other => panic!("vlan {other:?}"),
    }
    let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
        panic!("net {:?}", sliced.net)
    };
    let hdr = ip.header();
    assert_eq!(hdr.source(), src_ip);
    assert_eq!(hdr.destination(), dst_ip);
    assert_eq!(
        hdr.header_checksum(),
        hdr.to_header().calc_header_checksum(),
        "IPv4 checksum as etherparse computes it"
    );
    let Some(TransportSlice::Udp(udp)) = &sliced.transport else {
        panic!("transport {:?}", sliced.transport)
    };
    assert_eq!((udp.source_port(), udp.destination_port()), ports);
    let expected = udp
        .to_header()
        .calc_checksum_ipv4_raw(src_ip, dst_ip, udp.payload())
        .unwrap();
    assert_eq!(
        udp.checksum(),
        expected,
        "UDP checksum as etherparse computes it"
    );
    udp.payload().to_vec()
}

#[test]
fn request_frame_deconstruct() {
    let eth = EthernetFrame::new_checked(&REQUEST_FRAME[..]).unwrap();
    assert_eq!(eth.dst_addr(), NODE_MAC);
    assert_eq!(eth.src_addr(), CLIENT_MAC);
    assert_eq!(eth.vlan_tag(), Some(100));
    assert_eq!(eth.ethertype(), ETHERTYPE_IPV4);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.header_len(), 24);
    assert_eq!(ip.options(), &[0x94, 0x04, 0x00, 0x00]);
    assert_eq!(ip.checksum(), 0x9d06);
    assert!(ip.verify_checksum());
    assert_eq!(ip.src_addr(), CLIENT_IP);
    assert_eq!(ip.dst_addr(), NODE_IP);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(
        (udp.src_port(), udp.dst_port(), udp.len()),
        (40000, 7000, 72)
    );
    assert_eq!(udp.checksum(), 0xb7ae);
    assert!(udp.verify_checksum(ip.src_addr(), ip.dst_addr()));
    let req = ShakeRequest::new_checked(udp.payload()).unwrap();
    assert_eq!(req.user_id(), 0x0123_4567_89ab_cdef);
    assert_eq!(req.token(), 0x2c1a_5c49_d53e_f905);

    let (l, _) = parse_request_frame(&REQUEST_FRAME).unwrap();
    assert_eq!((l.ip, l.udp, l.payload), (18, 42, 50));
}

#[test]
fn request_frame_matches_etherparse() {
    let payload = etherparse_check(&REQUEST_FRAME, Some(100), CLIENT_IP, NODE_IP, (40000, 7000));
    assert_eq!(payload, &REQUEST_FRAME[50..]);
}

#[test]
fn request_frame_construct() {
    // Emit the same frame from reprs (plus the option bytes by hand).
    let mut frame = [0xa5u8; 114];
    EthernetRepr {
        dst: NODE_MAC,
        src: CLIENT_MAC,
        vlan: Some(100),
        ethertype: ETHERTYPE_IPV4,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[18..]);
    ip.set_header_len(24);
    ip.set_dscp_ecn(0);
    ip.set_total_len(96);
    ip.set_ident(0x1c46);
    ip.set_unfragmented(true);
    ip.set_ttl(64);
    ip.set_protocol(PROTOCOL_UDP);
    ip.set_src_addr(CLIENT_IP);
    ip.set_dst_addr(NODE_IP);
    frame[38..42].copy_from_slice(&[0x94, 0x04, 0x00, 0x00]);
    Ipv4Packet::new_unchecked(&mut frame[18..]).fill_checksum();
    let (_, req) = parse_request_frame(&REQUEST_FRAME).unwrap();
    UdpRepr {
        src_port: 40000,
        dst_port: 7000,
        payload_len: PAYLOAD_LEN,
    }
    .emit(
        &mut UdpPacket::new_unchecked(&mut frame[42..]),
        CLIENT_IP,
        NODE_IP,
        |p| req.emit(&mut ShakeRequest::new_unchecked(p)),
    );
    assert_eq!(frame, REQUEST_FRAME);
}

#[test]
fn answer_in_place_validates_with_etherparse() {
    let mut frame = REQUEST_FRAME;
    let (l, req) = parse_request_frame(&frame).unwrap();
    let answer = answer_for(&req);
    rewrite_in_place(&mut frame, &l, &answer);

    let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
    assert_eq!((eth.dst_addr(), eth.src_addr()), (CLIENT_MAC, NODE_MAC));
    assert_eq!(eth.vlan_tag(), Some(100));
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.checksum(), 0x9d06, "untouched by the swap");
    assert!(ip.verify_checksum());

    let payload = etherparse_check(&frame, Some(100), NODE_IP, CLIENT_IP, (7000, 40000));
    let parsed = ShakeAnswerRepr::parse(&ShakeAnswer::new_checked(&payload[..]).unwrap());
    assert_eq!(parsed.unwrap(), answer);
}

#[test]
fn drops_are_errors() {
    let mut f = REQUEST_FRAME;
    f[28] ^= 0x01; // IPv4 checksum
    assert!(parse_request_frame(&f).is_err());
    let mut f = REQUEST_FRAME;
    f[49] ^= 0x01; // UDP checksum
    assert!(parse_request_frame(&f).is_err());
    let mut f = REQUEST_FRAME;
    f[48..50].copy_from_slice(&[0, 0]); // no UDP checksum: accepted
    assert!(parse_request_frame(&f).is_ok());
    let mut f = REQUEST_FRAME;
    f[24] |= 0x20; // MF
    Ipv4Packet::new_unchecked(&mut f[18..]).fill_checksum();
    assert!(parse_request_frame(&f).is_err());
    let mut f = REQUEST_FRAME;
    f[50] = b'X';
    f[48..50].copy_from_slice(&[0, 0]);
    assert_eq!(
        parse_request_frame(&f).unwrap_err(),
        Error::BadMagic(*b"XK")
    );
    // 63-byte payload (UDP length 71, IP total length 95, checksums refilled).
    let mut f = REQUEST_FRAME;
    f[20..22].copy_from_slice(&95u16.to_be_bytes());
    Ipv4Packet::new_unchecked(&mut f[18..]).fill_checksum();
    f[46..48].copy_from_slice(&71u16.to_be_bytes());
    UdpPacket::new_unchecked(&mut f[42..113]).fill_checksum(CLIENT_IP, NODE_IP);
    assert_eq!(
        parse_request_frame(&f[..113]).unwrap_err(),
        Error::Truncated
    );
    for n in 0..REQUEST_FRAME.len() {
        assert!(parse_request_frame(&REQUEST_FRAME[..n]).is_err());
    }
}

/// Build an Ethernet/[VLAN]/IPv4/UDP frame from reprs.
fn emit_udp_frame(
    vlan: Option<u16>,
    ip: &Ipv4Repr,
    udp: &UdpRepr,
    payload: &[u8],
    pad_to: usize,
) -> Vec<u8> {
    let eth = EthernetRepr {
        dst: NODE_MAC,
        src: CLIENT_MAC,
        vlan,
        ethertype: ETHERTYPE_IPV4,
    };
    let len = eth.buffer_len() + ip.buffer_len() + udp.buffer_len();
    let mut frame = vec![0u8; len.max(pad_to)];
    let mut e = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.emit(&mut e);
    let mut i = Ipv4Packet::new_unchecked(e.payload_mut());
    ip.emit(&mut i);
    let mut u = UdpPacket::new_unchecked(i.payload_mut());
    udp.emit(&mut u, ip.src, ip.dst, |p| p.copy_from_slice(payload));
    frame
}

#[test]
fn ethernet_padding_is_not_payload() {
    // A 1-byte UDP payload padded to the 60-byte Ethernet minimum.
    let ip = Ipv4Repr {
        src: CLIENT_IP,
        dst: NODE_IP,
        protocol: PROTOCOL_UDP,
        ttl: 64,
        payload_len: 9,
        ident: 1,
        dont_frag: false,
    };
    let udp = UdpRepr {
        src_port: 1,
        dst_port: 7000,
        payload_len: 1,
    };
    let frame = emit_udp_frame(None, &ip, &udp, &[0x42], 60);
    assert_eq!(frame.len(), 60);
    let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
    let i = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(i.payload().len(), 9);
    let u = UdpPacket::new_checked(i.payload()).unwrap();
    assert_eq!(u.payload(), &[0x42]);
    assert_eq!(
        etherparse_check(&frame, None, CLIENT_IP, NODE_IP, (1, 7000)),
        [0x42]
    );
}

#[test]
fn etherparse_built_frame_with_options_parses() {
    // Build with etherparse (IPv4 options, VLAN), parse and verify with our views.
    let mut ip_header =
        Ipv4Header::new(0, 64, etherparse::IpNumber::UDP, CLIENT_IP, NODE_IP).unwrap();
    ip_header.options = [0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00].into();
    let builder = PacketBuilder::ethernet2(CLIENT_MAC, NODE_MAC)
        .single_vlan(etherparse::VlanId::try_new(100).unwrap())
        .ip(etherparse::IpHeaders::Ipv4(ip_header, Default::default()))
        .udp(40000, 7000);
    let payload = [0x5au8; PAYLOAD_LEN];
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, &payload).unwrap();

    let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
    assert_eq!(eth.vlan_tag().map(|t| t & 0x0fff), Some(100));
    assert_eq!(eth.ethertype(), ETHERTYPE_IPV4);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.header_len(), 28);
    assert_eq!(ip.options().len(), 8);
    assert!(ip.verify_checksum());
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(udp.checksum() != 0);
    assert!(udp.verify_checksum(CLIENT_IP, NODE_IP));
    assert_eq!(udp.payload(), &payload);
}

#[test]
fn icmp_echo_frame_matches_etherparse() {
    let builder = PacketBuilder::ethernet2(CLIENT_MAC, NODE_MAC)
        .ipv4(CLIENT_IP, NODE_IP, 64)
        .icmpv4_echo_request(0x1234, 7);
    let data = b"0123456789abcdefghij";
    let mut frame = Vec::new();
    builder.write(&mut frame, data).unwrap();

    let eth = EthernetFrame::new_checked(&mut frame[..]).unwrap();
    assert_eq!(eth.ethertype(), ETHERTYPE_IPV4);
    let mut eth = eth;
    let mut ip = Ipv4Packet::new_checked(eth.payload_mut()).unwrap();
    assert_eq!(ip.protocol(), PROTOCOL_ICMP);
    assert!(ip.verify_checksum());
    let mut icmp = IcmpPacket::new_checked(ip.payload_mut()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!((icmp.ident(), icmp.seq_no()), (0x1234, 7));
    assert_eq!(icmp.data(), data);
    icmp.make_echo_reply();
    ip.swap_addrs();
    eth.swap_addrs();

    let sliced = SlicedPacket::from_ethernet(&frame).unwrap();
    let Some(TransportSlice::Icmpv4(icmp)) = sliced.transport else {
        panic!("not icmp")
    };
    assert_eq!(icmp.type_u8(), icmp::ECHO_REPLY);
    assert_eq!(
        icmp.checksum(),
        icmp.icmp_type().calc_checksum(icmp.payload())
    );
}

#[test]
fn arp_frame_round_trip() {
    let arp = ArpRepr {
        operation: arp::ARP_REQUEST,
        sender_hw: CLIENT_MAC,
        sender_ip: CLIENT_IP,
        target_hw: [0; 6],
        target_ip: NODE_IP,
    };
    let eth = EthernetRepr {
        dst: [0xff; 6],
        src: CLIENT_MAC,
        vlan: Some(0x2064),
        ethertype: ethernet::ETHERTYPE_ARP,
    };
    let mut frame = [0u8; 64];
    let mut e = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.emit(&mut e);
    arp.emit(&mut ArpPacket::new_unchecked(e.payload_mut()));
    assert_eq!(&frame[12..14], &ETHERTYPE_VLAN.to_be_bytes());

    let e = EthernetFrame::new_checked(&frame[..]).unwrap();
    assert_eq!(EthernetRepr::parse(&e).unwrap(), eth);
    let a = ArpPacket::new_checked(e.payload()).unwrap();
    assert_eq!(ArpRepr::parse(&a).unwrap(), arp);
}

proptest! {
    #[test]
    fn emitted_udp_frames_match_etherparse(
        vlan in proptest::option::of(0u16..0x1000),
        src in any::<[u8; 4]>(),
        dst in any::<[u8; 4]>(),
        sport in any::<u16>(),
        dport in any::<u16>(),
        ident in any::<u16>(),
        ttl in 1u8..,
        dont_frag in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let udp = UdpRepr { src_port: sport, dst_port: dport, payload_len: payload.len() };
        let ip = Ipv4Repr {
            src, dst, protocol: PROTOCOL_UDP, ttl, payload_len: udp.buffer_len(), ident, dont_frag,
        };
        let frame = emit_udp_frame(vlan, &ip, &udp, &payload, 60);
        let got = etherparse_check(&frame, vlan, src, dst, (sport, dport));
        prop_assert_eq!(&got, &payload);

        // And our own parse agrees with what we emitted.
        let e = EthernetFrame::new_checked(&frame[..]).unwrap();
        let i = Ipv4Packet::new_checked(e.payload()).unwrap();
        prop_assert_eq!(Ipv4Repr::parse(&i).unwrap(), ip);
        let u = UdpPacket::new_checked(i.payload()).unwrap();
        prop_assert_eq!(UdpRepr::parse(&u, src, dst).unwrap(), udp);
    }

    #[test]
    fn rewritten_answers_match_etherparse(
        answer_seed in any::<(u64, u32, u64)>(),
        request_junk in any::<[u8; 48]>(),
        vlan in proptest::option::of(0u16..0x1000),
        with_options in any::<bool>(),
    ) {
        // A valid request with arbitrary body, rewritten in place; the answer must validate.
        let mut req_payload = [0u8; PAYLOAD_LEN];
        req_payload[16..].copy_from_slice(&request_junk[..48]);
        ShakeRequest::new_unchecked(&mut req_payload[..]).set_header();
        let udp = UdpRepr { src_port: 40000, dst_port: 7000, payload_len: PAYLOAD_LEN };
        let ip = Ipv4Repr {
            src: CLIENT_IP, dst: NODE_IP, protocol: PROTOCOL_UDP, ttl: 64,
            payload_len: udp.buffer_len(), ident: 9, dont_frag: true,
        };
        let mut frame = emit_udp_frame(vlan, &ip, &udp, &req_payload, 0);
        if with_options {
            // Re-emit the IP header with 4 option bytes by splicing them in.
            let at = EthernetFrame::new_unchecked(&frame[..]).header_len() + 20;
            frame.splice(at..at, [1u8, 1, 1, 0]);
            let ip_off = at - 20;
            let mut i = Ipv4Packet::new_unchecked(&mut frame[ip_off..]);
            i.set_header_len(24);
            i.set_total_len(24 + 72);
            i.fill_checksum();
        }
        let (l, req) = parse_request_frame(&frame).unwrap();
        let mut answer = answer_for(&req);
        (answer.packet_id, answer.round_id, answer.claim_mac) = answer_seed;
        rewrite_in_place(&mut frame, &l, &answer);
        let got = etherparse_check(&frame, vlan, NODE_IP, CLIENT_IP, (7000, 40000));
        let parsed = ShakeAnswerRepr::parse(&ShakeAnswer::new_checked(&got[..]).unwrap());
        prop_assert_eq!(parsed.unwrap(), answer);
        prop_assert_eq!(checksum::fold(checksum::sum(&frame[l.ip..l.udp])), 0xffff);
    }
}
