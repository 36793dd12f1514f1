//! The client side of SHAKE/1: building requests as phones send them and checking answers as
//! a careful client would. Used by the bundled generator, the tests and the benchmarks, so
//! all of them exercise the same rules.

use crate::mac::MacKey;
use crate::wire::ethernet::{self, EthernetFrame, EthernetRepr};
use crate::wire::ipv4::{self, Ipv4Packet, Ipv4Repr};
use crate::wire::ipv6::{self, Ipv6Packet, Ipv6Repr};
use crate::wire::shake::{
    self, Outcome, ShakeAnswer, ShakeAnswerRepr, ShakeRequest, ShakeRequestRepr, PAYLOAD_LEN,
};
use crate::wire::udp::{self, UdpPacket, UdpRepr};

/// A request for `user_id` with a valid token for `token_expiry`.
pub fn request(
    token_key: &MacKey,
    user_id: u64,
    seq: u32,
    token_expiry: u32,
    client_ts: u64,
) -> ShakeRequestRepr {
    ShakeRequestRepr {
        shakes: 1,
        user_id,
        seq,
        config_version: 0,
        client_ts,
        token_expiry,
        token: token_key.token(user_id, token_expiry),
    }
}

/// The 64-byte payload of a request.
pub fn payload(r: &ShakeRequestRepr) -> [u8; PAYLOAD_LEN] {
    let mut b = [0u8; PAYLOAD_LEN];
    r.emit(&mut ShakeRequest::new_unchecked(&mut b[..]));
    b
}

/// Both ends of a UDP flow at the Ethernet level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
    pub src_port: u16,
    pub dst_port: u16,
}

impl Flow {
    /// Length of a frame carrying a SHAKE/1 payload on this flow.
    pub fn frame_len(&self) -> usize {
        let l2 = if self.vlan.is_some() {
            ethernet::VLAN_HEADER_LEN
        } else {
            ethernet::HEADER_LEN
        };
        l2 + ipv4::HEADER_LEN + udp::HEADER_LEN + PAYLOAD_LEN
    }

    /// Writes a whole Ethernet/IPv4/UDP frame carrying `payload` into `buf`, with valid
    /// checksums; returns its length.
    pub fn emit(&self, buf: &mut [u8], payload: &[u8], ip_ident: u16) -> usize {
        let eth = EthernetRepr {
            dst: self.dst_mac,
            src: self.src_mac,
            vlan: self.vlan,
            ethertype: ethernet::ETHERTYPE_IPV4,
        };
        let l3 = eth.buffer_len();
        let len = l3 + ipv4::HEADER_LEN + udp::HEADER_LEN + payload.len();
        eth.emit(&mut EthernetFrame::new_unchecked(&mut buf[..len]));
        let ip = Ipv4Repr {
            src: self.src_ip,
            dst: self.dst_ip,
            protocol: ipv4::PROTOCOL_UDP,
            ttl: 64,
            payload_len: udp::HEADER_LEN + payload.len(),
            ident: ip_ident,
            dont_frag: true,
        };
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[l3..len]));
        let l4 = l3 + ipv4::HEADER_LEN;
        UdpRepr {
            src_port: self.src_port,
            dst_port: self.dst_port,
            payload_len: payload.len(),
        }
        .emit(
            &mut UdpPacket::new_unchecked(&mut buf[l4..len]),
            self.src_ip,
            self.dst_ip,
            |p| p.copy_from_slice(payload),
        );
        len
    }
}

/// [`Flow`] over IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow6 {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub src_ip: [u8; 16],
    pub dst_ip: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
}

impl Flow6 {
    /// Length of a frame carrying a SHAKE/1 payload on this flow.
    pub fn frame_len(&self) -> usize {
        let l2 = if self.vlan.is_some() {
            ethernet::VLAN_HEADER_LEN
        } else {
            ethernet::HEADER_LEN
        };
        l2 + ipv6::HEADER_LEN + udp::HEADER_LEN + PAYLOAD_LEN
    }

    /// Writes a whole Ethernet/IPv6/UDP frame carrying `payload` into `buf` (no extension
    /// headers, hop limit 64, the mandatory UDP checksum); returns its length.
    pub fn emit(&self, buf: &mut [u8], payload: &[u8]) -> usize {
        let eth = EthernetRepr {
            dst: self.dst_mac,
            src: self.src_mac,
            vlan: self.vlan,
            ethertype: ethernet::ETHERTYPE_IPV6,
        };
        let l3 = eth.buffer_len();
        let len = l3 + ipv6::HEADER_LEN + udp::HEADER_LEN + payload.len();
        eth.emit(&mut EthernetFrame::new_unchecked(&mut buf[..len]));
        Ipv6Repr {
            src: self.src_ip,
            dst: self.dst_ip,
            next_header: ipv6::NEXT_UDP,
            hop_limit: 64,
            payload_len: udp::HEADER_LEN + payload.len(),
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut buf[l3..len]));
        let l4 = l3 + ipv6::HEADER_LEN;
        UdpRepr {
            src_port: self.src_port,
            dst_port: self.dst_port,
            payload_len: payload.len(),
        }
        .emit_v6(
            &mut UdpPacket::new_unchecked(&mut buf[l4..len]),
            self.src_ip,
            self.dst_ip,
            |p| p.copy_from_slice(payload),
        );
        len
    }
}

/// What is wrong with an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("answer is not a SHAKE/1 result: {0}")]
    Malformed(String),
    #[error("answer field {field} is {got}, expected {want}")]
    Echo {
        field: &'static str,
        got: u64,
        want: u64,
    },
    #[error("claim_mac does not verify")]
    ClaimMac,
    #[error("{0}")]
    Rule(&'static str),
}

/// Checks an answer payload against the request it answers: echoed fields, a legal outcome,
/// the fields each outcome must and must not carry, and the claim MAC of a red packet.
pub fn check_answer(
    request: &ShakeRequestRepr,
    answer: &[u8],
    claim_key: &MacKey,
) -> Result<ShakeAnswerRepr, AnswerError> {
    let view =
        ShakeAnswer::new_checked(answer).map_err(|e| AnswerError::Malformed(e.to_string()))?;
    let a = ShakeAnswerRepr::parse(&view).map_err(|e| AnswerError::Malformed(e.to_string()))?;
    let echo = |field, got: u64, want: u64| {
        if got == want {
            Ok(())
        } else {
            Err(AnswerError::Echo { field, got, want })
        }
    };
    echo("user_id", a.user_id, request.user_id)?;
    echo("seq", a.seq as u64, request.seq as u64)?;
    echo("client_ts", a.client_ts, request.client_ts)?;
    if a.flags & !shake::FLAG_CONFIG_STALE != 0 {
        return Err(AnswerError::Rule("unknown flag bits set"));
    }
    let stale = a.flags & shake::FLAG_CONFIG_STALE != 0;
    if stale != (a.config_version > request.config_version) {
        return Err(AnswerError::Rule(
            "CONFIG_STALE disagrees with the config versions",
        ));
    }
    let paid = a.packet_id != 0 || a.amount_cents != 0 || a.claim_mac != 0;
    match a.outcome {
        Outcome::RedPacket => {
            if a.packet_id == 0 || a.amount_cents == 0 || a.sponsor_id == 0 || a.round_id == 0 {
                return Err(AnswerError::Rule(
                    "RED_PACKET without packet, amount, sponsor or round",
                ));
            }
            let mac = claim_key.claim(a.packet_id, a.user_id, a.amount_cents, a.sponsor_id);
            if mac != a.claim_mac {
                return Err(AnswerError::ClaimMac);
            }
        }
        Outcome::Greeting => {
            if paid || a.sponsor_id == 0 {
                return Err(AnswerError::Rule(
                    "GREETING must carry a sponsor and no packet",
                ));
            }
        }
        _ => {
            if paid || a.sponsor_id != 0 {
                return Err(AnswerError::Rule(
                    "only RED_PACKET and GREETING carry packet or sponsor fields",
                ));
            }
        }
    }
    if a.outcome == Outcome::Closed && a.retry_after_ms == 0 && a.round_id != 0 {
        return Err(AnswerError::Rule(
            "CLOSED before a round must say when to come back",
        ));
    }
    Ok(a)
}
