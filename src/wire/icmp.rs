//! ICMPv4 echo request and reply (RFC 792). Other ICMP messages share the first four bytes
//! (type, code, checksum), which is all the node reads of them before dropping them.

use super::checksum;
use super::{Error, Field, Result};

/// Echo request message type.
pub const ECHO_REQUEST: u8 = 8;
/// Echo reply message type.
pub const ECHO_REPLY: u8 = 0;

mod field {
    use super::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    pub const HEADER_END: usize = 8;
}

/// Length of the echo header (type, code, checksum, identifier, sequence number).
pub const HEADER_LEN: usize = field::HEADER_END;

/// A view of an ICMPv4 message; the buffer is the whole message (the IPv4 payload).
#[derive(Debug, Clone)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Wrap a buffer without checks (for writing).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        IcmpPacket { buffer }
    }

    /// Wrap a buffer, checking it holds the 8-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
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

    /// Message type ([`ECHO_REQUEST`], [`ECHO_REPLY`], ...).
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code (0 for echo).
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Echo identifier.
    #[inline]
    pub fn ident(&self) -> u16 {
        self.u16_at(field::ECHO_IDENT)
    }

    /// Echo sequence number.
    #[inline]
    pub fn seq_no(&self) -> u16 {
        self.u16_at(field::ECHO_SEQNO)
    }

    /// Echo data, after the 8-byte header.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::HEADER_END..]
    }

    /// Whether the checksum over the whole message is valid.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.buffer.as_ref())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    #[inline]
    fn set_u16_at(&mut self, f: Field, v: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }

    /// Set the message type.
    #[inline]
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[field::TYPE] = t;
    }

    /// Set the message code.
    #[inline]
    pub fn set_code(&mut self, code: u8) {
        self.buffer.as_mut()[field::CODE] = code;
    }

    /// Set the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16_at(field::CHECKSUM, v)
    }

    /// Set the echo identifier.
    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        self.set_u16_at(field::ECHO_IDENT, v)
    }

    /// Set the echo sequence number.
    #[inline]
    pub fn set_seq_no(&mut self, v: u16) {
        self.set_u16_at(field::ECHO_SEQNO, v)
    }

    /// Echo data, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::HEADER_END..]
    }

    /// Compute and write the checksum over the whole message.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let ck = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(ck);
    }

    /// Turn an echo request into its reply in place: type 0, code 0, checksum updated
    /// incrementally (RFC 1624), so the data is not summed again. Identifier, sequence number
    /// and data are echoed as they are.
    ///
    /// A computed `0x0000` is written as `0xffff`: the incremental formula cannot tell a reply
    /// whose other words are all zero (where only `0xffff` verifies) from one whose words sum to
    /// `0xffff` (where both verify), so it writes the value valid in both cases.
    #[inline]
    pub fn make_echo_reply(&mut self) {
        let old = u16::from_be_bytes([self.msg_type(), self.code()]);
        let new = u16::from_be_bytes([ECHO_REPLY, 0]);
        self.set_msg_type(ECHO_REPLY);
        self.set_code(0);
        let ck = checksum::update(self.checksum(), old, new);
        self.set_checksum(if ck == 0 { 0xffff } else { ck });
    }
}

/// An owned ICMP echo request or reply, borrowing its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpEchoRepr<'a> {
    /// [`ECHO_REQUEST`] or [`ECHO_REPLY`].
    pub msg_type: u8,
    pub ident: u16,
    pub seq_no: u16,
    pub data: &'a [u8],
}

impl<'a> IcmpEchoRepr<'a> {
    /// Read a checked message: an echo request or reply with code 0 and a valid checksum.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &IcmpPacket<&'a T>) -> Result<Self> {
        if !matches!(packet.msg_type(), ECHO_REQUEST | ECHO_REPLY) || packet.code() != 0 {
            return Err(Error::Unsupported("icmp: not an echo request or reply"));
        }
        if !packet.verify_checksum() {
            return Err(Error::Malformed("icmp: bad checksum"));
        }
        let data = &packet.buffer.as_ref()[field::HEADER_END..];
        Ok(IcmpEchoRepr {
            msg_type: packet.msg_type(),
            ident: packet.ident(),
            seq_no: packet.seq_no(),
            data,
        })
    }

    /// Length this repr emits: header plus data.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data.len()
    }

    /// Write the message (exactly [`buffer_len`](Self::buffer_len) bytes) with its checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut IcmpPacket<T>) {
        packet.set_msg_type(self.msg_type);
        packet.set_code(0);
        packet.set_ident(self.ident);
        packet.set_seq_no(self.seq_no);
        packet.data_mut()[..self.data.len()].copy_from_slice(self.data);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::testutil;
    use proptest::prelude::*;

    /// An echo request, ident 0x1234, seq 1, data "shake!!!".
    static PACKET_BYTES: [u8; 16] = [
        0x08, 0x00, 0x8a, 0xb4, 0x12, 0x34, 0x00, 0x01, 0x73, 0x68, 0x61, 0x6b, 0x65, 0x21, 0x21,
        0x21,
    ];
    static DATA: &[u8] = b"shake!!!";

    #[test]
    fn deconstruct() {
        let p = IcmpPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(p.msg_type(), ECHO_REQUEST);
        assert_eq!(p.code(), 0);
        assert_eq!(p.checksum(), 0x8ab4);
        assert_eq!(p.ident(), 0x1234);
        assert_eq!(p.seq_no(), 1);
        assert_eq!(p.data(), DATA);
        assert!(p.verify_checksum());
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 16];
        let mut p = IcmpPacket::new_unchecked(&mut bytes[..]);
        p.set_msg_type(ECHO_REQUEST);
        p.set_code(0);
        p.set_ident(0x1234);
        p.set_seq_no(1);
        p.data_mut().copy_from_slice(DATA);
        p.fill_checksum();
        assert_eq!(bytes, PACKET_BYTES);
    }

    fn repr() -> IcmpEchoRepr<'static> {
        IcmpEchoRepr {
            msg_type: ECHO_REQUEST,
            ident: 0x1234,
            seq_no: 1,
            data: DATA,
        }
    }

    #[test]
    fn parse() {
        let p = IcmpPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(IcmpEchoRepr::parse(&p).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let r = repr();
        let mut bytes = vec![0xa5u8; r.buffer_len()];
        r.emit(&mut IcmpPacket::new_unchecked(&mut bytes[..]));
        assert_eq!(&bytes[..], &PACKET_BYTES[..]);
    }

    #[test]
    fn parse_rejects() {
        let mut bytes = PACKET_BYTES;
        bytes[15] ^= 1;
        let p = IcmpPacket::new_checked(&bytes[..]).unwrap();
        assert!(matches!(IcmpEchoRepr::parse(&p), Err(Error::Malformed(_))));
        let mut bytes = PACKET_BYTES;
        bytes[0] = 3;
        let p = IcmpPacket::new_checked(&bytes[..]).unwrap();
        assert!(matches!(
            IcmpEchoRepr::parse(&p),
            Err(Error::Unsupported(_))
        ));
        assert_eq!(
            IcmpPacket::new_checked(&PACKET_BYTES[..7]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn echo_reply_in_place() {
        let mut bytes = PACKET_BYTES;
        let mut p = IcmpPacket::new_checked(&mut bytes[..]).unwrap();
        p.make_echo_reply();
        assert_eq!(p.msg_type(), ECHO_REPLY);
        assert!(p.verify_checksum());
        let ck = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), ck);
        assert_eq!(ck, 0x92b4);
    }

    #[test]
    fn echo_reply_all_zero_message() {
        // ident 0, seq 0, no data: only 0xffff verifies once the type becomes 0.
        let mut bytes = [ECHO_REQUEST, 0, 0, 0, 0, 0, 0, 0];
        let mut p = IcmpPacket::new_unchecked(&mut bytes[..]);
        p.fill_checksum();
        p.make_echo_reply();
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in testutil::bytes(40)) {
            if let Ok(p) = IcmpPacket::new_checked(&data[..]) {
                let _ = (p.msg_type(), p.code(), p.checksum(), p.ident(), p.seq_no());
                let _ = (p.data(), p.verify_checksum());
                let _ = IcmpEchoRepr::parse(&p);
            }
        }

        #[test]
        fn echo_reply_matches_full_recompute(
            ident in any::<u16>(), seq_no in any::<u16>(),
            data in testutil::bytes(64),
        ) {
            let r = IcmpEchoRepr { msg_type: ECHO_REQUEST, ident, seq_no, data: &data };
            let mut bytes = vec![0u8; r.buffer_len()];
            let mut p = IcmpPacket::new_unchecked(&mut bytes[..]);
            r.emit(&mut p);
            p.make_echo_reply();
            prop_assert!(p.verify_checksum());
            let ck = p.checksum();
            p.fill_checksum();
            // Equal, except that 0x0000 may be sent as the equivalent 0xffff.
            prop_assert!(ck == p.checksum() || (ck == 0xffff && p.checksum() == 0));
        }
    }
}
