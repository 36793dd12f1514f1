//! ICMPv6 (RFC 4443): echo request and reply, and the Neighbor Solicitation and Advertisement
//! of NDP (RFC 4861) with their link-layer address options.
//!
//! One view covers every message: the first four bytes (type, code, checksum) are common,
//! echo reads identifier and sequence number from the next four, NS and NA read their flags
//! and target address from bytes 4..24 and walk the options after them. Unlike ICMPv4 the
//! checksum covers an IPv6 pseudo header, so checks take the addresses.
//!
//! The option walk is bounded by the message: each option says its own length in units of 8
//! bytes, and a length of 0 (which would loop forever) is malformed (RFC 4861 4.6).

use super::checksum;
use super::ipv6::NEXT_ICMPV6;
use super::{Error, Field, Result};

/// Echo request message type.
pub const ECHO_REQUEST: u8 = 128;
/// Echo reply message type.
pub const ECHO_REPLY: u8 = 129;
/// Router Solicitation.
pub const ROUTER_SOLICIT: u8 = 133;
/// Router Advertisement.
pub const ROUTER_ADVERT: u8 = 134;
/// Neighbor Solicitation.
pub const NEIGHBOR_SOLICIT: u8 = 135;
/// Neighbor Advertisement.
pub const NEIGHBOR_ADVERT: u8 = 136;

/// NDP option: source link-layer address.
pub const OPT_SOURCE_LL: u8 = 1;
/// NDP option: target link-layer address.
pub const OPT_TARGET_LL: u8 = 2;
/// Length of a link-layer address option for Ethernet (type, length, 6-byte address).
pub const LL_OPTION_LEN: usize = 8;

/// Neighbor Advertisement flags (byte 4).
pub mod flags {
    /// Router.
    pub const ROUTER: u8 = 0x80;
    /// Solicited: an answer to a solicitation from a unicast address.
    pub const SOLICITED: u8 = 0x40;
    /// Override: replace a cached link-layer address.
    pub const OVERRIDE: u8 = 0x20;
}

mod field {
    use super::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    pub const NDP_FLAGS: usize = 4;
    pub const NDP_RESERVED: Field = 4..8;
    pub const NDP_TARGET: Field = 8..24;
}

/// Length of the common header plus the echo identifier and sequence number.
pub const HEADER_LEN: usize = 8;
/// Length of a Neighbor Solicitation or Advertisement before its options.
pub const NEIGHBOR_LEN: usize = field::NDP_TARGET.end;

/// A view of an ICMPv6 message; the buffer is the whole message (the upper layer of an
/// IPv6 packet).
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wrap a buffer without checks (for writing).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Wrap a buffer, checking it holds 8 bytes, and 24 for a Neighbor Solicitation or
    /// Advertisement (RFC 4861 7.1.1: "ICMP length is 24 or more octets").
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if p.is_neighbor() && len < NEIGHBOR_LEN {
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

    #[inline]
    fn is_neighbor(&self) -> bool {
        matches!(self.msg_type(), NEIGHBOR_SOLICIT | NEIGHBOR_ADVERT)
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Code.
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
    pub fn echo_ident(&self) -> u16 {
        self.u16_at(field::ECHO_IDENT)
    }

    /// Echo sequence number.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        self.u16_at(field::ECHO_SEQNO)
    }

    /// Echo data: everything after the 8-byte header.
    #[inline]
    pub fn echo_data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// NA flags ([`flags`]); in an NS this byte is reserved.
    #[inline]
    pub fn neighbor_flags(&self) -> u8 {
        self.buffer.as_ref()[field::NDP_FLAGS]
    }

    /// NS or NA target address. Only for a message `new_checked` accepted as NS or NA.
    #[inline]
    pub fn target_addr(&self) -> [u8; 16] {
        self.buffer.as_ref()[field::NDP_TARGET]
            .try_into()
            .expect("fixed layout")
    }

    /// The options of an NS or NA, after the target.
    #[inline]
    pub fn ndp_options(&self) -> &[u8] {
        &self.buffer.as_ref()[NEIGHBOR_LEN..]
    }

    /// Whether the checksum is valid for this source and destination.
    #[inline]
    pub fn verify_checksum(&self, src: [u8; 16], dst: [u8; 16]) -> bool {
        let b = self.buffer.as_ref();
        let sum =
            checksum::pseudo_header_v6(src, dst, NEXT_ICMPV6, b.len() as u32) + checksum::sum(b);
        checksum::fold(sum) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    #[inline]
    fn set_u16_at(&mut self, f: Field, v: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }

    /// Set the type.
    #[inline]
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }

    /// Set the code.
    #[inline]
    pub fn set_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    /// Set the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16_at(field::CHECKSUM, v)
    }

    /// Set the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, v: u16) {
        self.set_u16_at(field::ECHO_IDENT, v)
    }

    /// Set the echo sequence number.
    #[inline]
    pub fn set_echo_seq_no(&mut self, v: u16) {
        self.set_u16_at(field::ECHO_SEQNO, v)
    }

    /// Echo data, mutable.
    #[inline]
    pub fn echo_data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Set the NA flags and clear the reserved bytes after them.
    #[inline]
    pub fn set_neighbor_flags(&mut self, f: u8) {
        self.buffer.as_mut()[field::NDP_RESERVED].copy_from_slice(&[f, 0, 0, 0]);
    }

    /// Set the NS or NA target address.
    #[inline]
    pub fn set_target_addr(&mut self, a: [u8; 16]) {
        self.buffer.as_mut()[field::NDP_TARGET].copy_from_slice(&a);
    }

    /// The options of an NS or NA, mutable.
    #[inline]
    pub fn ndp_options_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[NEIGHBOR_LEN..]
    }

    /// Compute and write the checksum over the whole message for this source and
    /// destination.
    #[inline]
    pub fn fill_checksum(&mut self, src: [u8; 16], dst: [u8; 16]) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let sum =
            checksum::pseudo_header_v6(src, dst, NEXT_ICMPV6, b.len() as u32) + checksum::sum(b);
        let ck = !checksum::fold(sum);
        self.set_checksum(ck);
    }

    /// Turn an echo request into its reply in place: type 129, the checksum updated
    /// incrementally (the addresses swap, which leaves the pseudo-header sum as it was). A
    /// computed `0x0000` is written as `0xffff`, as for ICMPv4 (see
    /// [`IcmpPacket::make_echo_reply`](super::icmp::IcmpPacket::make_echo_reply)).
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

/// The link-layer address options of an NS or NA, read by a bounded walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkLayerOptions {
    /// Source link-layer address (the last one, if several).
    pub source: Option<[u8; 6]>,
    /// Target link-layer address (the last one, if several).
    pub target: Option<[u8; 6]>,
}

/// Walks NDP options: every option must have a non-zero length and fit the message (RFC
/// 4861 4.6); options other than the Ethernet link-layer addresses are skipped.
pub fn link_layer_options(mut opts: &[u8]) -> Result<LinkLayerOptions> {
    let mut out = LinkLayerOptions::default();
    while !opts.is_empty() {
        if opts.len() < 2 {
            return Err(Error::Truncated);
        }
        let len = 8 * usize::from(opts[1]);
        if len == 0 {
            return Err(Error::Malformed("ndp: option of length 0"));
        }
        let o = opts.get(..len).ok_or(Error::Truncated)?;
        if len == LL_OPTION_LEN {
            let mac: [u8; 6] = o[2..8].try_into().expect("fixed layout");
            match o[0] {
                OPT_SOURCE_LL => out.source = Some(mac),
                OPT_TARGET_LL => out.target = Some(mac),
                _ => {}
            }
        }
        opts = &opts[len..];
    }
    Ok(out)
}

/// Writes a link-layer address option (8 bytes) at the start of `buf`.
#[inline]
pub fn emit_link_layer_option(buf: &mut [u8], kind: u8, mac: [u8; 6]) {
    buf[0] = kind;
    buf[1] = 1;
    buf[2..8].copy_from_slice(&mac);
}

/// An owned ICMPv6 echo request or reply, borrowing its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6EchoRepr<'a> {
    /// [`ECHO_REQUEST`] or [`ECHO_REPLY`].
    pub msg_type: u8,
    pub ident: u16,
    pub seq_no: u16,
    pub data: &'a [u8],
}

impl<'a> Icmpv6EchoRepr<'a> {
    /// Read a checked message: an echo request or reply, code 0, valid checksum.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Icmpv6Packet<&'a T>,
        src: [u8; 16],
        dst: [u8; 16],
    ) -> Result<Self> {
        if !matches!(packet.msg_type(), ECHO_REQUEST | ECHO_REPLY) || packet.code() != 0 {
            return Err(Error::Unsupported("icmpv6: not an echo request or reply"));
        }
        if !packet.verify_checksum(src, dst) {
            return Err(Error::Malformed("icmpv6: bad checksum"));
        }
        Ok(Icmpv6EchoRepr {
            msg_type: packet.msg_type(),
            ident: packet.echo_ident(),
            seq_no: packet.echo_seq_no(),
            data: &packet.buffer.as_ref()[HEADER_LEN..],
        })
    }

    /// Length this repr emits: header plus data.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data.len()
    }

    /// Write the message (exactly [`buffer_len`](Self::buffer_len) bytes) with its checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Icmpv6Packet<T>,
        src: [u8; 16],
        dst: [u8; 16],
    ) {
        packet.set_msg_type(self.msg_type);
        packet.set_code(0);
        packet.set_echo_ident(self.ident);
        packet.set_echo_seq_no(self.seq_no);
        packet.echo_data_mut()[..self.data.len()].copy_from_slice(self.data);
        packet.fill_checksum(src, dst);
    }
}

/// An owned Neighbor Solicitation or Advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdpRepr {
    Solicit {
        target: [u8; 16],
        source_ll: Option<[u8; 6]>,
    },
    Advert {
        /// [`flags`] bits.
        flags: u8,
        target: [u8; 16],
        target_ll: Option<[u8; 6]>,
    },
}

impl NdpRepr {
    /// Read a checked NS or NA: code 0, valid checksum, well-formed options. (The checks that
    /// depend on the IPv6 header, such as hop limit 255, are the receiver's.)
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Icmpv6Packet<T>,
        src: [u8; 16],
        dst: [u8; 16],
    ) -> Result<Self> {
        if !packet.is_neighbor() || packet.code() != 0 {
            return Err(Error::Unsupported(
                "icmpv6: not a neighbor solicitation or advert",
            ));
        }
        if !packet.verify_checksum(src, dst) {
            return Err(Error::Malformed("icmpv6: bad checksum"));
        }
        let o = link_layer_options(packet.ndp_options())?;
        let target = packet.target_addr();
        Ok(if packet.msg_type() == NEIGHBOR_SOLICIT {
            NdpRepr::Solicit {
                target,
                source_ll: o.source,
            }
        } else {
            NdpRepr::Advert {
                flags: packet.neighbor_flags()
                    & (flags::ROUTER | flags::SOLICITED | flags::OVERRIDE),
                target,
                target_ll: o.target,
            }
        })
    }

    /// Length this repr emits.
    pub const fn buffer_len(&self) -> usize {
        let ll = match self {
            NdpRepr::Solicit { source_ll, .. } => source_ll.is_some(),
            NdpRepr::Advert { target_ll, .. } => target_ll.is_some(),
        };
        NEIGHBOR_LEN + if ll { LL_OPTION_LEN } else { 0 }
    }

    /// Write the message (exactly [`buffer_len`](Self::buffer_len) bytes) with its checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Icmpv6Packet<T>,
        src: [u8; 16],
        dst: [u8; 16],
    ) {
        let (t, f, target, ll) = match *self {
            NdpRepr::Solicit { target, source_ll } => (
                NEIGHBOR_SOLICIT,
                0,
                target,
                source_ll.map(|m| (OPT_SOURCE_LL, m)),
            ),
            NdpRepr::Advert {
                flags,
                target,
                target_ll,
            } => (
                NEIGHBOR_ADVERT,
                flags,
                target,
                target_ll.map(|m| (OPT_TARGET_LL, m)),
            ),
        };
        packet.set_msg_type(t);
        packet.set_code(0);
        packet.set_neighbor_flags(f);
        packet.set_target_addr(target);
        if let Some((kind, mac)) = ll {
            emit_link_layer_option(packet.ndp_options_mut(), kind, mac);
        }
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::testutil;
    use proptest::prelude::*;

    const SRC: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

    /// A Neighbor Solicitation for DST with a source link-layer option, as Linux sends it,
    /// checksum filled by etherparse (the independent implementation).
    fn ns_bytes() -> Vec<u8> {
        let mut b = vec![NEIGHBOR_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&DST);
        b.extend_from_slice(&[OPT_SOURCE_LL, 1, 2, 0, 0, 0, 0, 9]);
        // etherparse 0.16 has no NDP types: an NS is its "unknown" type with bytes 4..8 zero.
        let ck = etherparse::Icmpv6Type::Unknown {
            type_u8: NEIGHBOR_SOLICIT,
            code_u8: 0,
            bytes5to8: [0; 4],
        }
        .calc_checksum(SRC, DST, &b[8..])
        .unwrap();
        b[2..4].copy_from_slice(&ck.to_be_bytes());
        b
    }

    #[test]
    fn deconstruct() {
        let b = ns_bytes();
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), NEIGHBOR_SOLICIT);
        assert_eq!(p.code(), 0);
        assert_eq!(p.target_addr(), DST);
        assert_eq!(p.ndp_options().len(), 8);
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(SRC, SRC));
        assert_eq!(
            link_layer_options(p.ndp_options()).unwrap(),
            LinkLayerOptions {
                source: Some(MAC),
                target: None
            }
        );
    }

    #[test]
    fn construct() {
        let mut b = vec![0xa5u8; 32];
        let mut p = Icmpv6Packet::new_unchecked(&mut b[..]);
        p.set_msg_type(NEIGHBOR_SOLICIT);
        p.set_code(0);
        p.set_neighbor_flags(0);
        p.set_target_addr(DST);
        emit_link_layer_option(p.ndp_options_mut(), OPT_SOURCE_LL, MAC);
        p.fill_checksum(SRC, DST);
        assert_eq!(b, ns_bytes());
    }

    #[test]
    fn parse() {
        let b = ns_bytes();
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            NdpRepr::parse(&p, SRC, DST).unwrap(),
            NdpRepr::Solicit {
                target: DST,
                source_ll: Some(MAC)
            }
        );
        assert!(matches!(
            NdpRepr::parse(&p, DST, DST),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn emit() {
        let r = NdpRepr::Advert {
            flags: flags::SOLICITED | flags::OVERRIDE,
            target: DST,
            target_ll: Some(MAC),
        };
        let mut b = vec![0u8; r.buffer_len()];
        r.emit(&mut Icmpv6Packet::new_unchecked(&mut b[..]), DST, SRC);
        assert_eq!(b.len(), 32);
        // etherparse reads it as the same advertisement, checksum included.
        let (h, rest) = etherparse::Icmpv6Header::from_slice(&b).unwrap();
        assert_eq!(
            h.checksum,
            h.icmp_type.calc_checksum(DST, SRC, rest).unwrap()
        );
        match h.icmp_type {
            etherparse::Icmpv6Type::Unknown {
                type_u8: NEIGHBOR_ADVERT,
                code_u8: 0,
                bytes5to8,
            } => assert_eq!(bytes5to8, [0x60, 0, 0, 0]),
            t => panic!("{t:?}"),
        }
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(NdpRepr::parse(&p, DST, SRC).unwrap(), r);
    }

    #[test]
    fn echo_reply_in_place() {
        let r = Icmpv6EchoRepr {
            msg_type: ECHO_REQUEST,
            ident: 0x1234,
            seq_no: 7,
            data: b"shake!!",
        };
        let mut b = vec![0u8; r.buffer_len()];
        r.emit(&mut Icmpv6Packet::new_unchecked(&mut b[..]), SRC, DST);
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Icmpv6EchoRepr::parse(&p, SRC, DST).unwrap(), r);
        let mut p = Icmpv6Packet::new_checked(&mut b[..]).unwrap();
        p.make_echo_reply();
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        // The reply goes the other way; the pseudo-header sum is the same.
        let e = Icmpv6EchoRepr::parse(&p, DST, SRC).unwrap();
        assert_eq!(e.msg_type, ECHO_REPLY);
        assert_eq!((e.ident, e.seq_no, e.data), (0x1234, 7, &b"shake!!"[..]));
        let (h, rest) = etherparse::Icmpv6Header::from_slice(&b).unwrap();
        assert_eq!(
            h.checksum,
            h.icmp_type.calc_checksum(DST, SRC, rest).unwrap()
        );
    }

    #[test]
    fn options_walk_is_bounded() {
        assert_eq!(
            link_layer_options(&[OPT_SOURCE_LL, 0, 0, 0, 0, 0, 0, 0]),
            Err(Error::Malformed("ndp: option of length 0"))
        );
        assert_eq!(
            link_layer_options(&[OPT_SOURCE_LL, 2, 0, 0, 0, 0, 0, 0]),
            Err(Error::Truncated)
        );
        assert_eq!(link_layer_options(&[1]), Err(Error::Truncated));
        // A nonce option (RFC 7527, type 14) is skipped; the last source option wins.
        let mut o = vec![14, 1, 1, 2, 3, 4, 5, 6];
        o.extend_from_slice(&[OPT_SOURCE_LL, 1, 1, 2, 3, 4, 5, 6]);
        assert_eq!(
            link_layer_options(&o).unwrap().source,
            Some([1, 2, 3, 4, 5, 6])
        );
        // An NS shorter than 24 bytes is truncated.
        let b = ns_bytes();
        assert_eq!(
            Icmpv6Packet::new_checked(&b[..23]).unwrap_err(),
            Error::Truncated
        );
        assert!(Icmpv6Packet::new_checked(&[ECHO_REQUEST, 0, 0, 0, 0, 0, 0, 0][..]).is_ok());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut data in testutil::bytes(64)) {
            if let Ok(p) = Icmpv6Packet::new_checked(&data[..]) {
                let _ = (p.msg_type(), p.code(), p.checksum(), p.echo_ident(), p.echo_seq_no());
                let _ = (p.verify_checksum(SRC, DST), p.echo_data(), p.neighbor_flags());
                if matches!(p.msg_type(), NEIGHBOR_SOLICIT | NEIGHBOR_ADVERT) {
                    let _ = (p.target_addr(), link_layer_options(p.ndp_options()));
                }
                let _ = NdpRepr::parse(&p, SRC, DST);
                let _ = Icmpv6EchoRepr::parse(&p, SRC, DST);
                let mut p = Icmpv6Packet::new_checked(&mut data[..]).unwrap();
                p.make_echo_reply();
            }
        }
    }
}
