//! UDP datagrams over IPv4 (RFC 768).

use super::checksum;
use super::ipv4::PROTOCOL_UDP;
use super::{Error, Field, Result};

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A view of a UDP datagram. The buffer is the IPv4 payload; [`payload`](Self::payload) ends
/// where the UDP length field says.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wrap a buffer without checks (for writing).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wrap a buffer, checking it holds the header and `8 <= length field <= buffer length`.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let field_len = usize::from(p.len());
        if field_len < HEADER_LEN {
            return Err(Error::Malformed("udp: length below 8"));
        }
        if field_len > len {
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

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// Length field: header plus payload.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    /// Checksum field (0: the sender computed none).
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// The payload, from the header to the length field's end.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// Whether the checksum is valid for this IPv4 source and destination. A zero checksum
    /// means "none computed" and is accepted.
    #[inline]
    pub fn verify_checksum(&self, src_ip: [u8; 4], dst_ip: [u8; 4]) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        self.verifies_with(checksum::pseudo_header_v4(
            src_ip,
            dst_ip,
            PROTOCOL_UDP,
            self.len(),
        ))
    }

    /// Whether the checksum is valid for this IPv6 source and destination. Over IPv6 the
    /// checksum is mandatory (RFC 8200 8.1): zero is wrong.
    #[inline]
    pub fn verify_checksum_v6(&self, src_ip: [u8; 16], dst_ip: [u8; 16]) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        self.verifies_with(checksum::pseudo_header_v6(
            src_ip,
            dst_ip,
            PROTOCOL_UDP,
            u32::from(self.len()),
        ))
    }

    /// Whether the datagram (up to its length field) sums to `0xffff` with this
    /// pseudo-header sum.
    #[inline]
    fn verifies_with(&self, pseudo: u32) -> bool {
        let len = usize::from(self.len());
        checksum::fold(pseudo + checksum::sum(&self.buffer.as_ref()[..len])) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline]
    fn set_u16_at(&mut self, f: Field, v: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }

    /// Set the source port.
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        self.set_u16_at(field::SRC_PORT, port)
    }

    /// Set the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        self.set_u16_at(field::DST_PORT, port)
    }

    /// Set the length field.
    #[inline]
    pub fn set_len(&mut self, len: u16) {
        self.set_u16_at(field::LENGTH, len)
    }

    /// Set the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        self.set_u16_at(field::CHECKSUM, checksum)
    }

    /// Swap source and destination ports. Like an address swap, this does not change the
    /// checksum.
    #[inline]
    pub fn swap_ports(&mut self) {
        let (src, dst) =
            self.buffer.as_mut()[field::SRC_PORT.start..field::DST_PORT.end].split_at_mut(2);
        src.swap_with_slice(dst);
    }

    /// The payload (up to the length field), mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Compute and write the checksum for this IPv4 source and destination. A computed zero is
    /// transmitted as `0xffff`, since zero on the wire means "no checksum".
    #[inline]
    pub fn fill_checksum(&mut self, src_ip: [u8; 4], dst_ip: [u8; 4]) {
        let len = self.len();
        self.fill_checksum_with(checksum::pseudo_header_v4(
            src_ip,
            dst_ip,
            PROTOCOL_UDP,
            len,
        ));
    }

    /// Compute and write the checksum for this IPv6 source and destination (a computed zero
    /// is transmitted as `0xffff`, RFC 8200 8.1).
    #[inline]
    pub fn fill_checksum_v6(&mut self, src_ip: [u8; 16], dst_ip: [u8; 16]) {
        let len = u32::from(self.len());
        self.fill_checksum_with(checksum::pseudo_header_v6(
            src_ip,
            dst_ip,
            PROTOCOL_UDP,
            len,
        ));
    }

    /// Compute and write the checksum over the datagram (up to its length field) with this
    /// pseudo-header sum; a computed zero is written as `0xffff`.
    #[inline]
    pub fn fill_checksum_with(&mut self, pseudo: u32) {
        self.set_checksum(0);
        let len = usize::from(self.len());
        let ck = !checksum::fold(pseudo + checksum::sum(&self.buffer.as_ref()[..len]));
        self.set_checksum(if ck == 0 { 0xffff } else { ck });
    }
}

/// An owned UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    /// Payload length, at most 65527.
    pub payload_len: usize,
}

impl UdpRepr {
    /// Read a checked datagram, rejecting a present and wrong checksum.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &UdpPacket<T>,
        src_ip: [u8; 4],
        dst_ip: [u8; 4],
    ) -> Result<Self> {
        if !packet.verify_checksum(src_ip, dst_ip) {
            return Err(Error::Malformed("udp: bad checksum"));
        }
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: usize::from(packet.len()) - HEADER_LEN,
        })
    }

    /// [`parse`](Self::parse) over IPv6, where a zero checksum is wrong too.
    pub fn parse_v6<T: AsRef<[u8]>>(
        packet: &UdpPacket<T>,
        src_ip: [u8; 16],
        dst_ip: [u8; 16],
    ) -> Result<Self> {
        if !packet.verify_checksum_v6(src_ip, dst_ip) {
            return Err(Error::Malformed("udp: bad or missing checksum over IPv6"));
        }
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: usize::from(packet.len()) - HEADER_LEN,
        })
    }

    /// Length this repr emits: header plus payload.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Write the header, let `emit_payload` write the payload (exactly `payload_len` bytes),
    /// then fill the checksum for this IPv4 source and destination.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        src_ip: [u8; 4],
        dst_ip: [u8; 4],
        emit_payload: impl FnOnce(&mut [u8]),
    ) {
        debug_assert!(self.buffer_len() <= usize::from(u16::MAX));
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(self.buffer_len() as u16);
        emit_payload(packet.payload_mut());
        packet.fill_checksum(src_ip, dst_ip);
    }

    /// [`emit`](Self::emit) over IPv6.
    pub fn emit_v6<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        src_ip: [u8; 16],
        dst_ip: [u8; 16],
        emit_payload: impl FnOnce(&mut [u8]),
    ) {
        debug_assert!(self.buffer_len() <= usize::from(u16::MAX));
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(self.buffer_len() as u16);
        emit_payload(packet.payload_mut());
        packet.fill_checksum_v6(src_ip, dst_ip);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::testutil;
    use proptest::prelude::*;

    const SRC_IP: [u8; 4] = [10, 0, 0, 1];
    const DST_IP: [u8; 4] = [10, 0, 0, 2];

    /// 10.0.0.1:54321 -> 10.0.0.2:7000, payload "SK\x01\x01", then 2 bytes of padding.
    static PACKET_BYTES: [u8; 14] = [
        0xd4, 0x31, 0x1b, 0x58, 0x00, 0x0c, 0xa7, 0xfd, 0x53, 0x4b, 0x01, 0x01, 0x00, 0x00,
    ];
    static PAYLOAD: [u8; 4] = [0x53, 0x4b, 0x01, 0x01];

    #[test]
    fn deconstruct() {
        let p = UdpPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(p.src_port(), 54321);
        assert_eq!(p.dst_port(), 7000);
        assert_eq!(p.len(), 12);
        assert_eq!(p.checksum(), 0xa7fd);
        assert_eq!(p.payload(), &PAYLOAD);
        assert!(p.verify_checksum(SRC_IP, DST_IP));
        assert!(!p.verify_checksum(SRC_IP, [10, 0, 0, 3]));
        // The checksum covers both addresses in either order (the answer swaps them).
        assert!(p.verify_checksum(DST_IP, SRC_IP));
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 14];
        let mut p = UdpPacket::new_unchecked(&mut bytes[..]);
        p.set_src_port(54321);
        p.set_dst_port(7000);
        p.set_len(12);
        p.payload_mut().copy_from_slice(&PAYLOAD);
        p.fill_checksum(SRC_IP, DST_IP);
        bytes[12..].copy_from_slice(&[0, 0]);
        assert_eq!(bytes, PACKET_BYTES);
    }

    fn repr() -> UdpRepr {
        UdpRepr {
            src_port: 54321,
            dst_port: 7000,
            payload_len: 4,
        }
    }

    #[test]
    fn parse() {
        let p = UdpPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(UdpRepr::parse(&p, SRC_IP, DST_IP).unwrap(), repr());
        assert!(matches!(
            UdpRepr::parse(&p, SRC_IP, [1, 2, 3, 4]),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn emit() {
        let r = repr();
        let mut bytes = [0xa5u8; 12];
        r.emit(
            &mut UdpPacket::new_unchecked(&mut bytes[..]),
            SRC_IP,
            DST_IP,
            |p| p.copy_from_slice(&PAYLOAD),
        );
        assert_eq!(&bytes[..], &PACKET_BYTES[..12]);
    }

    /// Over IPv6, the checksum agrees with an independent implementation (etherparse), and
    /// zero is refused.
    #[test]
    fn ipv6_checksum() {
        let (src, dst) = (
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xfe; 16],
        );
        let r = repr();
        let mut bytes = [0u8; 12];
        r.emit_v6(
            &mut UdpPacket::new_unchecked(&mut bytes[..]),
            src,
            dst,
            |p| p.copy_from_slice(&PAYLOAD),
        );
        let h = etherparse::UdpHeader {
            source_port: 54321,
            destination_port: 7000,
            length: 12,
            checksum: 0,
        };
        let want = h.calc_checksum_ipv6_raw(src, dst, &PAYLOAD).unwrap();
        let p = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.checksum(), want);
        assert!(p.verify_checksum_v6(src, dst));
        assert!(p.verify_checksum_v6(dst, src));
        assert!(!p.verify_checksum_v6(src, [0xfd; 16]));
        assert_eq!(UdpRepr::parse_v6(&p, src, dst).unwrap(), r);
        bytes[6..8].copy_from_slice(&[0, 0]);
        let p = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert!(!p.verify_checksum_v6(src, dst));
        assert!(matches!(
            UdpRepr::parse_v6(&p, src, dst),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn zero_checksum_means_none() {
        let mut bytes = PACKET_BYTES;
        bytes[6..8].copy_from_slice(&[0, 0]);
        let p = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert!(p.verify_checksum([1, 1, 1, 1], [2, 2, 2, 2]));
    }

    #[test]
    fn computed_zero_sent_as_ffff() {
        // Choose a payload word so the checksum computes to 0: the sum must fold to 0xffff.
        let mut bytes = [0u8; 10];
        let mut p = UdpPacket::new_unchecked(&mut bytes[..]);
        p.set_len(10);
        let partial = checksum::fold(
            checksum::pseudo_header_v4(SRC_IP, DST_IP, PROTOCOL_UDP, 10) + checksum::sum(&[0, 10]),
        );
        p.payload_mut().copy_from_slice(&(!partial).to_be_bytes());
        p.fill_checksum(SRC_IP, DST_IP);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(SRC_IP, DST_IP));
    }

    #[test]
    fn swap_ports() {
        let mut bytes = PACKET_BYTES;
        let mut p = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        p.swap_ports();
        assert_eq!(p.src_port(), 7000);
        assert_eq!(p.dst_port(), 54321);
        assert!(p.verify_checksum(DST_IP, SRC_IP));
    }

    #[test]
    fn checked_rejects() {
        assert_eq!(
            UdpPacket::new_checked(&PACKET_BYTES[..7]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            UdpPacket::new_checked(&PACKET_BYTES[..11]).unwrap_err(),
            Error::Truncated
        );
        let mut bytes = PACKET_BYTES;
        bytes[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert!(matches!(
            UdpPacket::new_checked(&bytes[..]),
            Err(Error::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut data in testutil::bytes(40), a in any::<[u8; 4]>()) {
            if let Ok(p) = UdpPacket::new_checked(&data[..]) {
                let _ = (p.src_port(), p.dst_port(), p.checksum(), p.verify_checksum(a, a));
                prop_assert_eq!(p.payload().len() + HEADER_LEN, usize::from(p.len()));
                let _ = UdpRepr::parse(&p, a, a);
                let mut p = UdpPacket::new_checked(&mut data[..]).unwrap();
                p.swap_ports();
                p.fill_checksum(a, SRC_IP);
                prop_assert!(p.checksum() != 0);
                prop_assert!(p.verify_checksum(a, SRC_IP));
                let _ = p.payload_mut();
            }
        }
    }
}
