//! Zero-copy views over frame bytes.
//!
//! Every layer the node speaks (Ethernet with at most one 802.1Q tag, ARP, IPv4, ICMP echo,
//! IPv6 with its extension headers, ICMPv6 echo and Neighbor Discovery, UDP and the SHAKE/1
//! payload of SPEC section 2) is a *view*: a thin wrapper around a byte
//! buffer (`T: AsRef<[u8]>`) whose getters decode a field on demand with
//! `u16::from_be_bytes` and friends, and whose setters (available when `T: AsMut<[u8]>`) encode
//! one field in place. This is the smoltcp design, chosen over `#[repr(packed)]` structs
//! because:
//!
//! - no `unsafe` and no alignment hazards: an IPv4 header behind a 14- or 18-byte Ethernet
//!   header is never aligned, and references to packed fields are undefined behaviour;
//! - no copies: the datapath rewrites a request into its answer in the same mbuf, touching only
//!   the fields that change, and the compiler turns each accessor into one load or store;
//! - variable layouts (an optional VLAN tag, IPv4 options, a UDP length shorter than the
//!   buffer because of Ethernet padding) are handled by computed offsets, not by types.
//!
//! Each view validates its buffer once in `new_checked` (lengths and the fields that decide the
//! layout); after that no accessor can panic. `new_unchecked` skips the checks and is meant for
//! buffers being written, whose header fields are still garbage.
//!
//! Each layer also has a `*Repr`: an owned struct of plain values with `parse` (from a view,
//! with full validation), `buffer_len` and `emit` (into a view). Generators and tests use the
//! reprs; the hot path uses the views' setters.
//!
//! [`datagram`] reads a whole Ethernet/IPv4/UDP frame ([`Datagram`]) or Ethernet/IPv6/UDP
//! frame ([`Datagram6`]) down to its payload through these views, for everything that reads
//! frames from outside the worker (the generator, tests).
//!
//! All multi-byte fields are big-endian (network order); addresses are plain byte arrays
//! (`[u8; 6]` MAC, `[u8; 4]` IPv4, `[u8; 16]` IPv6) in wire order.

pub mod arp;
pub mod checksum;
pub mod datagram;
pub mod ethernet;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod shake;
pub mod udp;

#[cfg(test)]
mod test_frames;

pub use arp::{ArpPacket, ArpRepr};
pub use datagram::{Datagram, Datagram6};
pub use ethernet::{EthernetFrame, EthernetRepr};
pub use icmp::{IcmpEchoRepr, IcmpPacket};
pub use icmpv6::{Icmpv6EchoRepr, Icmpv6Packet, NdpRepr};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr};
pub use shake::{
    write_answer, Outcome, ShakeAnswer, ShakeAnswerRepr, ShakeRequest, ShakeRequestRepr,
};
pub use udp::{UdpPacket, UdpRepr};

/// A byte range of a fixed-layout header.
type Field = core::ops::Range<usize>;

/// Why a buffer was rejected. One type for every layer so the datapath can map a parse failure
/// to a drop-reason counter with one `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header, or than a length field inside it says.
    #[error("truncated packet")]
    Truncated,
    /// A field holds a value the protocol does not allow (bad checksum, impossible length).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// Well-formed, but a variant this node does not speak (not Ethernet/IPv4 ARP, a fragment).
    #[error("unsupported packet: {0}")]
    Unsupported(&'static str),
    /// SHAKE/1 payload whose magic is not "SK".
    #[error("bad SHAKE magic {0:02x?}")]
    BadMagic([u8; 2]),
    /// SHAKE/1 payload with a version other than 1.
    #[error("bad SHAKE version {0}")]
    BadVersion(u8),
    /// SHAKE/1 payload with a kind not expected here (a request must be SHAKE, an answer RESULT).
    #[error("bad SHAKE kind {0:#04x}")]
    BadKind(u8),
}

/// Result of parsing wire data.
pub type Result<T> = core::result::Result<T, Error>;

/// Property-test helper shared by the per-layer tests: arbitrary byte vectors.
#[cfg(test)]
pub(crate) mod testutil {
    use proptest::prelude::*;

    pub fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }
}
