//! IPv4 headers (RFC 791), options included.

use super::checksum;
use super::{Error, Field, Result};

/// Protocol number of ICMP.
pub const PROTOCOL_ICMP: u8 = 1;
/// Protocol number of UDP.
pub const PROTOCOL_UDP: u8 = 17;

mod field {
    use super::Field;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// Whether an address with this first octet is never a source, inside a host or out:
/// 0.0.0.0/8 ("this network", RFC 1122 3.2.1.3 (a) and (b): only while a host boots, and no
/// answer can reach it), 224/4 multicast and 240/4 reserved, which holds the limited
/// broadcast 255.255.255.255 (3.2.1.3 (c) to (f), RFC 6890). Linux drops all of them as
/// martian sources. `|`, not `||`: no branch.
#[inline(always)]
pub const fn never_a_source(first_octet: u8) -> bool {
    // 0 wraps to 255; 224..=255 become 223..=254.
    first_octet.wrapping_sub(1) >= 223
}

/// Whether an address with this first octet is loopback (127/8): a valid source only inside
/// a host, never on a wire (RFC 1122 3.2.1.3 (g)).
#[inline(always)]
pub const fn is_loopback(first_octet: u8) -> bool {
    first_octet == 127
}

const FLAG_DF: u16 = 0x4000;
/// More-fragments flag in the flags-and-offset field.
pub const FLAG_MF: u16 = 0x2000;
/// Fragment offset bits of the flags-and-offset field.
pub const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
///
/// The buffer may be longer than the packet (Ethernet pads frames to 60 bytes);
/// [`payload`](Self::payload) ends at `total_len`, not at the end of the buffer.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wrap a buffer without checks (for writing).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wrap a buffer, checking: at least 20 bytes, version 4, IHL >= 5, the header (options
    /// included) fits the buffer, and `header_len <= total_len <= buffer length`. It does not
    /// check the header checksum (see [`verify_checksum`](Self::verify_checksum)).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if p.version() != 4 {
            return Err(Error::Malformed("ipv4: version is not 4"));
        }
        let header_len = p.header_len();
        if header_len < HEADER_LEN {
            return Err(Error::Malformed("ipv4: IHL below 5"));
        }
        if header_len > len {
            return Err(Error::Truncated);
        }
        let total_len = usize::from(p.total_len());
        if total_len < header_len {
            return Err(Error::Malformed("ipv4: total length below header length"));
        }
        if total_len > len {
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
    fn u16_at(&self, f: Field) -> u16 {
        let d = &self.buffer.as_ref()[f];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// IP version (4).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes, options included (IHL * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// DSCP and ECN byte (formerly TOS).
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length of header and payload.
    #[inline]
    pub fn total_len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }

    /// Don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.u16_at(field::FLG_OFF) & FLAG_DF != 0
    }

    /// More-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.u16_at(field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field's 8-byte units times 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.u16_at(field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// Whether this packet is a fragment (MF set or a non-zero offset). The node drops those.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.u16_at(field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload ([`PROTOCOL_UDP`], [`PROTOCOL_ICMP`], ...).
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 4] {
        let d = &self.buffer.as_ref()[field::SRC_ADDR];
        [d[0], d[1], d[2], d[3]]
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 4] {
        let d = &self.buffer.as_ref()[field::DST_ADDR];
        [d[0], d[1], d[2], d[3]]
    }

    /// The options bytes, between the fixed header and `header_len` (empty if IHL is 5).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// Whether the header checksum (over the header, options included) is valid.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(&self.buffer.as_ref()[..self.header_len()])) == 0xffff
    }

    /// The payload: from `header_len` to `total_len` (Ethernet padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline]
    fn set_u16_at(&mut self, f: Field, v: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }

    /// Set version 4 and the header length in bytes (a multiple of 4, 20..=60).
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        debug_assert!(len % 4 == 0 && (HEADER_LEN..=60).contains(&len));
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((len / 4) as u8 & 0x0f);
    }

    /// Set the DSCP/ECN byte.
    #[inline]
    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = v;
    }

    /// Set the total length.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        self.set_u16_at(field::LENGTH, len)
    }

    /// Set the identification.
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        self.set_u16_at(field::IDENT, ident)
    }

    /// Set the flags and fragment offset word: DF as given, MF clear, offset 0.
    #[inline]
    pub fn set_unfragmented(&mut self, dont_frag: bool) {
        self.set_u16_at(field::FLG_OFF, if dont_frag { FLAG_DF } else { 0 })
    }

    /// Set the time to live.
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Set the protocol.
    #[inline]
    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    /// Set the header checksum field.
    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        self.set_u16_at(field::CHECKSUM, checksum)
    }

    /// Set the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: [u8; 4]) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr);
    }

    /// Set the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: [u8; 4]) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr);
    }

    /// Compute and write the header checksum (options included).
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header_len = self.header_len();
        let ck = checksum::checksum(&self.buffer.as_ref()[..header_len]);
        self.set_checksum(ck);
    }

    /// Swap source and destination addresses.
    ///
    /// This leaves the header checksum valid: the ones-complement sum is commutative, so the
    /// same words in another order sum to the same value. The answer path relies on this and
    /// does not touch the checksum for the swap (only for fields whose values change, such as
    /// the TTL, via [`checksum::update`]).
    #[inline]
    pub fn swap_addrs(&mut self) {
        let (src, dst) =
            self.buffer.as_mut()[field::SRC_ADDR.start..field::DST_ADDR.end].split_at_mut(4);
        src.swap_with_slice(dst);
    }

    /// The payload (up to `total_len`), mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// An owned IPv4 header without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub protocol: u8,
    pub ttl: u8,
    /// Length of the payload (total length minus header length), at most 65515.
    pub payload_len: usize,
    pub ident: u16,
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Read a checked packet, rejecting a bad header checksum and fragments. Options and
    /// DSCP/ECN are skipped.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Self> {
        if !packet.verify_checksum() {
            return Err(Error::Malformed("ipv4: bad header checksum"));
        }
        if packet.is_fragment() {
            return Err(Error::Unsupported("ipv4: fragment"));
        }
        Ok(Ipv4Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            protocol: packet.protocol(),
            ttl: packet.ttl(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
        })
    }

    /// Header length this repr emits (20: no options).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write a 20-byte header (DSCP/ECN 0, not fragmented) with a valid checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        debug_assert!(self.payload_len <= usize::from(u16::MAX) - HEADER_LEN);
        packet.set_header_len(HEADER_LEN);
        packet.set_dscp_ecn(0);
        packet.set_total_len((HEADER_LEN + self.payload_len) as u16);
        packet.set_ident(self.ident);
        packet.set_unfragmented(self.dont_frag);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src);
        packet.set_dst_addr(self.dst);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn sources_by_first_octet() {
        for a in 0..=255u8 {
            let never = a == 0 || a >= 224;
            assert_eq!(never_a_source(a), never, "{a}");
            assert_eq!(is_loopback(a), a == 127, "{a}");
        }
    }
    use crate::wire::testutil;
    use proptest::prelude::*;

    /// IPv4 header with a 4-byte Router Alert option (94 04 00 00), UDP, 10.0.0.1 -> 10.0.0.2,
    /// ident 0x1c46, DF, TTL 64, 4 payload bytes, then 2 bytes of Ethernet padding.
    static PACKET_BYTES: [u8; 30] = [
        0x46, 0x00, 0x00, 0x1c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0x0a, 0x00, 0x00,
        0x01, 0x0a, 0x00, 0x00, 0x02, 0x94, 0x04, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x00,
    ];

    /// PACKET_BYTES with its checksum filled in.
    fn packet_bytes() -> [u8; 30] {
        let mut b = PACKET_BYTES;
        let ck = checksum::checksum(&b[..24]);
        b[10..12].copy_from_slice(&ck.to_be_bytes());
        b
    }

    /// The real header of the checksum known-value test (no options, 0x5f payload bytes).
    static REAL_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn deconstruct() {
        let bytes = packet_bytes();
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.dscp_ecn(), 0);
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.ident(), 0x1c46);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), PROTOCOL_UDP);
        assert_eq!(p.src_addr(), [10, 0, 0, 1]);
        assert_eq!(p.dst_addr(), [10, 0, 0, 2]);
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn deconstruct_real_header() {
        let p = Ipv4Packet::new_unchecked(&REAL_HEADER[..]);
        assert_eq!(p.checksum(), 0xb861);
        assert!(p.verify_checksum());
        assert!(p.options().is_empty());
        // total_len 0x73 exceeds this 20-byte buffer.
        assert_eq!(
            Ipv4Packet::new_checked(&REAL_HEADER[..]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 30];
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        p.set_header_len(24);
        p.set_dscp_ecn(0);
        p.set_total_len(28);
        p.set_ident(0x1c46);
        p.set_unfragmented(true);
        p.set_ttl(64);
        p.set_protocol(PROTOCOL_UDP);
        p.set_src_addr([10, 0, 0, 1]);
        p.set_dst_addr([10, 0, 0, 2]);
        p.buffer[20..24].copy_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        p.payload_mut().copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        p.fill_checksum();
        bytes[28..].copy_from_slice(&[0, 0]);
        assert_eq!(bytes, packet_bytes());
    }

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src: [10, 0, 0, 1],
            dst: [10, 0, 0, 2],
            protocol: PROTOCOL_UDP,
            ttl: 64,
            payload_len: 4,
            ident: 0x1c46,
            dont_frag: true,
        }
    }

    #[test]
    fn parse() {
        let bytes = packet_bytes();
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p).unwrap(), repr());
    }

    #[test]
    fn parse_rejects_bad_checksum_and_fragments() {
        let p = Ipv4Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert!(!p.verify_checksum());
        assert!(matches!(Ipv4Repr::parse(&p), Err(Error::Malformed(_))));

        for flg_off in [0x2000u16, 0x0001, 0x4001] {
            let mut bytes = PACKET_BYTES;
            bytes[6..8].copy_from_slice(&flg_off.to_be_bytes());
            let mut p = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
            p.fill_checksum();
            assert!(p.is_fragment());
            assert!(matches!(Ipv4Repr::parse(&p), Err(Error::Unsupported(_))));
        }
        let mut bytes = PACKET_BYTES;
        bytes[6..8].copy_from_slice(&0x2003u16.to_be_bytes());
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.more_frags());
        assert_eq!(p.frag_offset(), 24);
    }

    #[test]
    fn emit() {
        let r = repr();
        let mut bytes = [0xa5u8; 24];
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        r.emit(&mut p);
        p.payload_mut().copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(r.buffer_len(), 20);
        assert_eq!(&bytes[..4], &[0x45, 0x00, 0x00, 0x18]);
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p).unwrap(), r);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn emit_real_header() {
        let r = Ipv4Repr {
            src: [192, 168, 0, 1],
            dst: [192, 168, 0, 199],
            protocol: PROTOCOL_UDP,
            ttl: 64,
            payload_len: 0x73 - 20,
            ident: 0,
            dont_frag: true,
        };
        let mut bytes = [0u8; 0x73];
        r.emit(&mut Ipv4Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(&bytes[..20], &REAL_HEADER);
    }

    #[test]
    fn swap_addrs_keeps_checksum_valid() {
        let mut bytes = packet_bytes();
        let mut p = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        let ck = p.checksum();
        p.swap_addrs();
        assert_eq!(p.src_addr(), [10, 0, 0, 2]);
        assert_eq!(p.dst_addr(), [10, 0, 0, 1]);
        assert_eq!(p.checksum(), ck);
        assert!(p.verify_checksum());
    }

    #[test]
    fn ttl_incremental_update() {
        let mut bytes = packet_bytes();
        let mut p = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        let old_word = u16::from_be_bytes([p.ttl(), p.protocol()]);
        p.set_ttl(255);
        let new_word = u16::from_be_bytes([p.ttl(), p.protocol()]);
        let ck = checksum::update(p.checksum(), old_word, new_word);
        p.set_checksum(ck);
        assert!(p.verify_checksum());
        p.fill_checksum();
        assert_eq!(p.checksum(), ck);
    }

    #[test]
    fn checked_rejects() {
        let good = packet_bytes();
        assert_eq!(
            Ipv4Packet::new_checked(&good[..19]).unwrap_err(),
            Error::Truncated
        );
        // Header with options longer than the buffer.
        assert_eq!(
            Ipv4Packet::new_checked(&good[..22]).unwrap_err(),
            Error::Truncated
        );
        // total_len beyond the buffer.
        assert_eq!(
            Ipv4Packet::new_checked(&good[..27]).unwrap_err(),
            Error::Truncated
        );
        let mut b = good;
        b[0] = 0x66;
        assert!(matches!(
            Ipv4Packet::new_checked(&b[..]),
            Err(Error::Malformed(_))
        ));
        let mut b = good;
        b[0] = 0x44;
        assert!(matches!(
            Ipv4Packet::new_checked(&b[..]),
            Err(Error::Malformed(_))
        ));
        let mut b = good;
        b[2..4].copy_from_slice(&23u16.to_be_bytes());
        assert!(matches!(
            Ipv4Packet::new_checked(&b[..]),
            Err(Error::Malformed(_))
        ));
        // total_len == header_len: empty payload is fine.
        let mut b = good;
        b[2..4].copy_from_slice(&24u16.to_be_bytes());
        assert!(Ipv4Packet::new_checked(&b[..])
            .unwrap()
            .payload()
            .is_empty());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut data in testutil::bytes(80)) {
            if let Ok(p) = Ipv4Packet::new_checked(&data[..]) {
                let _ = (p.version(), p.dscp_ecn(), p.ident(), p.dont_frag(), p.more_frags());
                let _ = (p.frag_offset(), p.is_fragment(), p.ttl(), p.protocol(), p.checksum());
                let _ = (p.src_addr(), p.dst_addr(), p.options(), p.verify_checksum());
                prop_assert_eq!(p.header_len() + p.payload().len(), usize::from(p.total_len()));
                let _ = Ipv4Repr::parse(&p);
                let mut p = Ipv4Packet::new_checked(&mut data[..]).unwrap();
                p.swap_addrs();
                p.fill_checksum();
                prop_assert!(p.verify_checksum());
                let _ = p.payload_mut();
            }
        }

        #[test]
        fn valid_headers_with_options_accepted(
            opt_words in 0usize..=10,
            payload_len in 0usize..40,
            pad in 0usize..20,
            fill in any::<u8>(),
        ) {
            let header_len = 20 + 4 * opt_words;
            let total = header_len + payload_len;
            let mut data = vec![fill; total + pad];
            let mut p = Ipv4Packet::new_unchecked(&mut data[..]);
            p.set_header_len(header_len);
            p.set_total_len(total as u16);
            p.set_unfragmented(false);
            p.fill_checksum();
            let p = Ipv4Packet::new_checked(&data[..]).unwrap();
            prop_assert_eq!(p.options().len(), 4 * opt_words);
            prop_assert_eq!(p.payload().len(), payload_len);
            prop_assert_eq!(Ipv4Repr::parse(&p).unwrap().payload_len, payload_len);
        }
    }
}
