//! ARP for IPv4 over Ethernet (RFC 826). Other hardware or protocol types are rejected.

use super::{Error, Field, Result};

/// ARP request operation.
pub const ARP_REQUEST: u16 = 1;
/// ARP reply operation.
pub const ARP_REPLY: u16 = 2;

/// Hardware type Ethernet.
const HTYPE_ETHERNET: u16 = 1;
/// Protocol type IPv4.
const PTYPE_IPV4: u16 = 0x0800;

mod field {
    use super::Field;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

macro_rules! addr_getter {
    ($name:ident, $field:expr, $n:expr, $doc:expr) => {
        #[doc = $doc]
        #[inline]
        pub fn $name(&self) -> [u8; $n] {
            let mut a = [0; $n];
            a.copy_from_slice(&self.buffer.as_ref()[$field]);
            a
        }
    };
}

macro_rules! addr_setter {
    ($name:ident, $field:expr, $n:expr, $doc:expr) => {
        #[doc = $doc]
        #[inline]
        pub fn $name(&mut self, addr: [u8; $n]) {
            self.buffer.as_mut()[$field].copy_from_slice(&addr);
        }
    };
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wrap a buffer without checks (for writing).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wrap a buffer, checking it is long enough and is Ethernet/IPv4 ARP. Trailing bytes
    /// (Ethernet padding) are allowed and ignored.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        if p.buffer.as_ref().len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        if p.hardware_type() != HTYPE_ETHERNET
            || p.protocol_type() != PTYPE_IPV4
            || p.hardware_len() != 6
            || p.protocol_len() != 4
        {
            return Err(Error::Unsupported("arp: not Ethernet/IPv4"));
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

    /// Hardware type (1 for Ethernet).
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        self.u16_at(field::HTYPE)
    }

    /// Protocol type (0x0800 for IPv4).
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        self.u16_at(field::PTYPE)
    }

    /// Hardware address length (6).
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length (4).
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation: [`ARP_REQUEST`] or [`ARP_REPLY`].
    #[inline]
    pub fn operation(&self) -> u16 {
        self.u16_at(field::OPER)
    }

    addr_getter!(sender_hw, field::SHA, 6, "Sender hardware (MAC) address.");
    addr_getter!(sender_ip, field::SPA, 4, "Sender IPv4 address.");
    addr_getter!(target_hw, field::THA, 6, "Target hardware (MAC) address.");
    addr_getter!(target_ip, field::TPA, 4, "Target IPv4 address.");
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Write the fixed Ethernet/IPv4 fields: htype 1, ptype 0x0800, hlen 6, plen 4.
    #[inline]
    pub fn set_ethernet_ipv4(&mut self) {
        let buf = self.buffer.as_mut();
        buf[field::HTYPE].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        buf[field::PTYPE].copy_from_slice(&PTYPE_IPV4.to_be_bytes());
        buf[field::HLEN] = 6;
        buf[field::PLEN] = 4;
    }

    /// Set the operation.
    #[inline]
    pub fn set_operation(&mut self, op: u16) {
        self.buffer.as_mut()[field::OPER].copy_from_slice(&op.to_be_bytes());
    }

    addr_setter!(
        set_sender_hw,
        field::SHA,
        6,
        "Set the sender hardware address."
    );
    addr_setter!(set_sender_ip, field::SPA, 4, "Set the sender IPv4 address.");
    addr_setter!(
        set_target_hw,
        field::THA,
        6,
        "Set the target hardware address."
    );
    addr_setter!(set_target_ip, field::TPA, 4, "Set the target IPv4 address.");
}

/// An owned Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    /// [`ARP_REQUEST`] or [`ARP_REPLY`] (other values are carried as they are).
    pub operation: u16,
    pub sender_hw: [u8; 6],
    pub sender_ip: [u8; 4],
    pub target_hw: [u8; 6],
    pub target_ip: [u8; 4],
}

impl ArpRepr {
    /// Read a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<Self> {
        Ok(ArpRepr {
            operation: packet.operation(),
            sender_hw: packet.sender_hw(),
            sender_ip: packet.sender_ip(),
            target_hw: packet.target_hw(),
            target_ip: packet.target_ip(),
        })
    }

    /// Length this repr emits (28).
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Write all 28 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_ethernet_ipv4();
        packet.set_operation(self.operation);
        packet.set_sender_hw(self.sender_hw);
        packet.set_sender_ip(self.sender_ip);
        packet.set_target_hw(self.target_hw);
        packet.set_target_ip(self.target_ip);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::testutil;
    use proptest::prelude::*;

    /// A real ARP request, "who has 192.168.1.1? tell 192.168.1.100", from 52:54:00:12:34:56,
    /// followed by 4 bytes of Ethernet padding.
    static PACKET_BYTES: [u8; 32] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xc0,
        0xa8, 0x01, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x01, 0x01, 0x00, 0x00,
        0x00, 0x00,
    ];

    fn repr() -> ArpRepr {
        ArpRepr {
            operation: ARP_REQUEST,
            sender_hw: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
            sender_ip: [192, 168, 1, 100],
            target_hw: [0; 6],
            target_ip: [192, 168, 1, 1],
        }
    }

    #[test]
    fn deconstruct() {
        let p = ArpPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), 0x0800);
        assert_eq!(p.hardware_len(), 6);
        assert_eq!(p.protocol_len(), 4);
        assert_eq!(p.operation(), ARP_REQUEST);
        assert_eq!(p.sender_hw(), [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(p.sender_ip(), [192, 168, 1, 100]);
        assert_eq!(p.target_hw(), [0; 6]);
        assert_eq!(p.target_ip(), [192, 168, 1, 1]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 28];
        let mut p = ArpPacket::new_unchecked(&mut bytes[..]);
        p.set_ethernet_ipv4();
        p.set_operation(ARP_REQUEST);
        p.set_sender_hw([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        p.set_sender_ip([192, 168, 1, 100]);
        p.set_target_hw([0; 6]);
        p.set_target_ip([192, 168, 1, 1]);
        assert_eq!(&bytes[..], &PACKET_BYTES[..28]);
    }

    #[test]
    fn parse() {
        let p = ArpPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(ArpRepr::parse(&p).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let mut bytes = [0xa5u8; 28];
        let r = repr();
        assert_eq!(r.buffer_len(), 28);
        r.emit(&mut ArpPacket::new_unchecked(&mut bytes[..]));
        assert_eq!(&bytes[..], &PACKET_BYTES[..28]);
    }

    #[test]
    fn rejects_truncated_and_foreign() {
        assert_eq!(
            ArpPacket::new_checked(&PACKET_BYTES[..27]).unwrap_err(),
            Error::Truncated
        );
        for (i, v) in [(1, 6u8), (3, 0xdd), (4, 8), (5, 16)] {
            let mut bytes = PACKET_BYTES;
            bytes[i] = v;
            assert!(matches!(
                ArpPacket::new_checked(&bytes[..]),
                Err(Error::Unsupported(_))
            ));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in testutil::bytes(40)) {
            if let Ok(p) = ArpPacket::new_checked(&data[..]) {
                let _ = (p.operation(), p.sender_hw(), p.sender_ip(), p.target_hw(), p.target_ip());
                let _ = ArpRepr::parse(&p).unwrap();
            }
        }

        #[test]
        fn checked_accepts_every_ethernet_ipv4_body(
            mut data in proptest::collection::vec(any::<u8>(), 28..40)
        ) {
            data[..6].copy_from_slice(&PACKET_BYTES[..6]);
            prop_assert!(ArpPacket::new_checked(&data[..]).is_ok());
        }
    }
}
