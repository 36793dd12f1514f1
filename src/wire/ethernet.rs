//! Ethernet II frames with at most one 802.1Q VLAN tag.

use super::{Error, Field, Result};

/// IPv4 ethertype.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// IPv6 ethertype.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// ARP ethertype.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// 802.1Q VLAN tag protocol identifier.
pub const ETHERTYPE_VLAN: u16 = 0x8100;

mod field {
    use super::Field;
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    /// The ethertype of an untagged frame, or the TPID (0x8100) of a tagged one.
    pub const OUTER_ETHERTYPE: Field = 12..14;
    pub const VLAN_TCI: Field = 14..16;
    pub const INNER_ETHERTYPE: Field = 16..18;
    pub const HEADER_LEN: usize = 14;
    pub const VLAN_HEADER_LEN: usize = 18;
}

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = field::HEADER_LEN;
/// Length of an Ethernet header with one 802.1Q tag.
pub const VLAN_HEADER_LEN: usize = field::VLAN_HEADER_LEN;

/// A view of an Ethernet II frame, optionally with one 802.1Q tag.
///
/// Only one tag is understood: in a QinQ frame (0x8100 then 0x8100/0x88a8) the second TPID is
/// what [`ethertype`](Self::ethertype) reports, so the frame is dropped as "not IPv4/ARP". An
/// outer 0x88a8 is likewise reported as the ethertype.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wrap a buffer without checks (for writing; accessors may panic on a short buffer).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wrap a buffer, checking it holds the whole header (18 bytes if tagged).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Check the buffer holds the whole header, tag included.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < field::HEADER_LEN || len < self.header_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn outer_ethertype(&self) -> u16 {
        let d = &self.buffer.as_ref()[field::OUTER_ETHERTYPE];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// Whether the frame carries an 802.1Q tag.
    #[inline]
    pub fn is_tagged(&self) -> bool {
        self.outer_ethertype() == ETHERTYPE_VLAN
    }

    /// Header length: 14, or 18 with a VLAN tag.
    #[inline]
    pub fn header_len(&self) -> usize {
        if self.is_tagged() {
            field::VLAN_HEADER_LEN
        } else {
            field::HEADER_LEN
        }
    }

    /// Destination MAC address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 6] {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        a
    }

    /// Source MAC address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 6] {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        a
    }

    /// The 802.1Q tag control information (PCP, DEI, VID) if the frame is tagged.
    #[inline]
    pub fn vlan_tag(&self) -> Option<u16> {
        if self.is_tagged() {
            let d = &self.buffer.as_ref()[field::VLAN_TCI];
            Some(u16::from_be_bytes([d[0], d[1]]))
        } else {
            None
        }
    }

    /// The ethertype of the payload (after the tag, if any).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        if self.is_tagged() {
            let d = &self.buffer.as_ref()[field::INNER_ETHERTYPE];
            u16::from_be_bytes([d[0], d[1]])
        } else {
            self.outer_ethertype()
        }
    }

    /// The payload, after the header (including any Ethernet padding).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Set the destination MAC address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: [u8; 6]) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr);
    }

    /// Set the source MAC address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: [u8; 6]) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr);
    }

    /// Set the ethertype of the payload: after the tag if the frame is tagged.
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: u16) {
        let f = if self.is_tagged() {
            field::INNER_ETHERTYPE
        } else {
            field::OUTER_ETHERTYPE
        };
        self.buffer.as_mut()[f].copy_from_slice(&ethertype.to_be_bytes());
    }

    /// Make the frame tagged with `tci` (writes TPID 0x8100 and the TCI), or untagged with
    /// `None` (writes nothing else; set the ethertype afterwards).
    #[inline]
    pub fn set_vlan_tag(&mut self, tci: Option<u16>) {
        let buf = self.buffer.as_mut();
        match tci {
            Some(tci) => {
                buf[field::OUTER_ETHERTYPE].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
                buf[field::VLAN_TCI].copy_from_slice(&tci.to_be_bytes());
            }
            None => {
                // Any non-VLAN value makes the frame untagged; the caller's set_ethertype
                // overwrites it.
                buf[field::OUTER_ETHERTYPE].copy_from_slice(&[0, 0]);
            }
        }
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }

    /// Swap source and destination MAC addresses (answer goes back where the request came from).
    #[inline]
    pub fn swap_addrs(&mut self) {
        let (dst, rest) = self.buffer.as_mut()[..field::SOURCE.end].split_at_mut(6);
        dst.swap_with_slice(rest);
    }
}

/// An owned Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// The 802.1Q TCI, if tagged.
    pub vlan: Option<u16>,
    /// The payload's ethertype.
    pub ethertype: u16,
}

impl EthernetRepr {
    /// Read the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self> {
        frame.check_len()?;
        Ok(EthernetRepr {
            dst: frame.dst_addr(),
            src: frame.src_addr(),
            vlan: frame.vlan_tag(),
            ethertype: frame.ethertype(),
        })
    }

    /// Header length this repr emits.
    pub const fn buffer_len(&self) -> usize {
        if self.vlan.is_some() {
            field::VLAN_HEADER_LEN
        } else {
            field::HEADER_LEN
        }
    }

    /// Write the header into the front of `frame` (at least [`buffer_len`](Self::buffer_len)).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_dst_addr(self.dst);
        frame.set_src_addr(self.src);
        frame.set_vlan_tag(self.vlan);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::testutil;
    use proptest::prelude::*;

    /// An untagged IPv4 frame: ff..ff <- 52:54:00:12:34:56, 0x0800, 4 payload bytes.
    static FRAME_BYTES: [u8; 18] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00, 0xaa,
        0xbb, 0xcc, 0xdd,
    ];

    /// A VLAN-tagged ARP frame: PCP 5, VID 100 (TCI 0xa064), then 0x0806 and 2 payload bytes.
    static VLAN_FRAME_BYTES: [u8; 20] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x81, 0x00, 0xa0,
        0x64, 0x08, 0x06, 0x12, 0x34,
    ];

    #[test]
    fn deconstruct() {
        let f = EthernetFrame::new_checked(&FRAME_BYTES[..]).unwrap();
        assert_eq!(f.dst_addr(), [0xff; 6]);
        assert_eq!(f.src_addr(), [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(f.vlan_tag(), None);
        assert_eq!(f.ethertype(), ETHERTYPE_IPV4);
        assert_eq!(f.header_len(), 14);
        assert_eq!(f.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn deconstruct_vlan() {
        let f = EthernetFrame::new_checked(&VLAN_FRAME_BYTES[..]).unwrap();
        assert_eq!(f.dst_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.src_addr(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(f.vlan_tag(), Some(0xa064));
        assert_eq!(f.vlan_tag().unwrap() & 0x0fff, 100);
        assert_eq!(f.ethertype(), ETHERTYPE_ARP);
        assert_eq!(f.header_len(), 18);
        assert_eq!(f.payload(), &[0x12, 0x34]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 18];
        let mut f = EthernetFrame::new_unchecked(&mut bytes[..]);
        f.set_dst_addr([0xff; 6]);
        f.set_src_addr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        f.set_ethertype(ETHERTYPE_IPV4);
        f.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(bytes, FRAME_BYTES);
    }

    #[test]
    fn construct_vlan() {
        let mut bytes = [0xa5u8; 20];
        let mut f = EthernetFrame::new_unchecked(&mut bytes[..]);
        f.set_dst_addr([2, 0, 0, 0, 0, 1]);
        f.set_src_addr([2, 0, 0, 0, 0, 2]);
        f.set_vlan_tag(Some(0xa064));
        f.set_ethertype(ETHERTYPE_ARP);
        f.payload_mut().copy_from_slice(&[0x12, 0x34]);
        assert_eq!(bytes, VLAN_FRAME_BYTES);
    }

    fn repr() -> EthernetRepr {
        EthernetRepr {
            dst: [0xff; 6],
            src: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
            vlan: None,
            ethertype: ETHERTYPE_IPV4,
        }
    }

    fn vlan_repr() -> EthernetRepr {
        EthernetRepr {
            dst: [2, 0, 0, 0, 0, 1],
            src: [2, 0, 0, 0, 0, 2],
            vlan: Some(0xa064),
            ethertype: ETHERTYPE_ARP,
        }
    }

    #[test]
    fn parse() {
        let f = EthernetFrame::new_checked(&FRAME_BYTES[..]).unwrap();
        assert_eq!(EthernetRepr::parse(&f).unwrap(), repr());
        let f = EthernetFrame::new_checked(&VLAN_FRAME_BYTES[..]).unwrap();
        assert_eq!(EthernetRepr::parse(&f).unwrap(), vlan_repr());
    }

    #[test]
    fn emit() {
        for (r, expected) in [
            (repr(), &FRAME_BYTES[..]),
            (vlan_repr(), &VLAN_FRAME_BYTES[..]),
        ] {
            let mut bytes = vec![0xa5u8; expected.len()];
            let mut f = EthernetFrame::new_unchecked(&mut bytes[..]);
            r.emit(&mut f);
            assert_eq!(f.header_len(), r.buffer_len());
            let hl = r.buffer_len();
            f.payload_mut().copy_from_slice(&expected[hl..]);
            assert_eq!(&bytes[..], expected);
        }
    }

    #[test]
    fn swap_addrs() {
        let mut bytes = VLAN_FRAME_BYTES;
        let mut f = EthernetFrame::new_unchecked(&mut bytes[..]);
        f.swap_addrs();
        assert_eq!(f.dst_addr(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(f.src_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.vlan_tag(), Some(0xa064));
        assert_eq!(&bytes[12..], &VLAN_FRAME_BYTES[12..]);
    }

    #[test]
    fn qinq_reports_inner_tpid() {
        let mut bytes = VLAN_FRAME_BYTES;
        bytes[16..18].copy_from_slice(&0x88a8u16.to_be_bytes());
        let f = EthernetFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(f.vlan_tag(), Some(0xa064));
        assert_eq!(f.ethertype(), 0x88a8);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&FRAME_BYTES[..13]).unwrap_err(),
            Error::Truncated
        );
        assert!(EthernetFrame::new_checked(&FRAME_BYTES[..14]).is_ok());
        // Tagged: 14..17 bytes are not enough.
        for n in 14..18 {
            assert_eq!(
                EthernetFrame::new_checked(&VLAN_FRAME_BYTES[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        let f = EthernetFrame::new_checked(&VLAN_FRAME_BYTES[..18]).unwrap();
        assert!(f.payload().is_empty());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut data in testutil::bytes(40)) {
            if let Ok(f) = EthernetFrame::new_checked(&data[..]) {
                let _ = (f.dst_addr(), f.src_addr(), f.vlan_tag(), f.ethertype());
                prop_assert!(f.header_len() + f.payload().len() == data.len());
                let _ = EthernetRepr::parse(&f).unwrap();
                let mut f = EthernetFrame::new_checked(&mut data[..]).unwrap();
                f.swap_addrs();
                f.set_ethertype(ETHERTYPE_IPV4);
                let _ = f.payload_mut();
            }
        }
    }
}
