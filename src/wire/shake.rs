//! The SHAKE/1 payload (SPEC section 2): a 64-byte request and a 64-byte answer.
//!
//! The answer is written over the request's bytes in the same buffer. Three fields sit at the
//! same offsets in both and are echoed: `user_id` (8..16), `seq` (16..20) and `client_ts`
//! (24..32); `magic` and `version` (0..3) are the same too. Every other request byte lands in a
//! different answer field: the token (40..48) under `amount_cents`/`sponsor_id`, the token
//! expiry (32..36) under `packet_id`, the padding under `claim_mac`, `config_version` and
//! `round_id`. So an answer must set every byte explicitly or it leaks request bytes (the
//! token in particular); [`write_answer`] does that with fixed offsets and is the datapath's
//! way to write an answer.

use super::{Error, Field, Result};

/// Length of a request and of an answer: the whole UDP payload.
pub const PAYLOAD_LEN: usize = 64;
/// Magic bytes at offset 0 of both directions.
pub const MAGIC: [u8; 2] = *b"SK";
/// Protocol version.
pub const VERSION: u8 = 1;
/// Kind of a request.
pub const KIND_SHAKE: u8 = 0x01;
/// Kind of an answer.
pub const KIND_RESULT: u8 = 0x81;
/// Answer flag: the node's config version is newer than the request's.
pub const FLAG_CONFIG_STALE: u8 = 0x01;

/// Byte ranges of the request (public: the generator's frame template, in its own crate,
/// writes by them too).
pub mod req {
    use super::Field;
    pub const MAGIC: Field = 0..2;
    pub const VERSION: usize = 2;
    pub const KIND: usize = 3;
    pub const SHAKES: Field = 4..6;
    pub const RESERVED0: Field = 6..8;
    pub const USER_ID: Field = 8..16;
    pub const SEQ: Field = 16..20;
    pub const CONFIG_VERSION: Field = 20..24;
    pub const CLIENT_TS: Field = 24..32;
    pub const TOKEN_EXPIRY: Field = 32..36;
    pub const RESERVED1: Field = 36..40;
    pub const TOKEN: Field = 40..48;
    pub const PADDING: Field = 48..64;
}

/// Byte ranges of the answer.
mod ans {
    use super::Field;
    pub const MAGIC: Field = 0..2;
    pub const VERSION: usize = 2;
    pub const KIND: usize = 3;
    pub const OUTCOME: usize = 4;
    pub const FLAGS: usize = 5;
    pub const RESOURCE_ID: Field = 6..8;
    pub const USER_ID: Field = 8..16;
    pub const SEQ: Field = 16..20;
    pub const RETRY_AFTER_MS: Field = 20..24;
    pub const CLIENT_TS: Field = 24..32;
    pub const PACKET_ID: Field = 32..40;
    pub const AMOUNT_CENTS: Field = 40..44;
    pub const SPONSOR_ID: Field = 44..48;
    pub const CLAIM_MAC: Field = 48..56;
    pub const CONFIG_VERSION: Field = 56..60;
    pub const ROUND_ID: Field = 60..64;
}

/// The outcome of a shake, as carried in the answer.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Nothing = 0,
    Greeting = 1,
    RedPacket = 2,
    /// Too soon, or the node is shedding load.
    Throttled = 3,
    /// No round active; `retry_after_ms` is the time to the next round start.
    Closed = 4,
    /// Token wrong or expired.
    Denied = 5,
    /// The user belongs to another node, whose index is in `resource_id`.
    Redirect = 6,
}

impl Outcome {
    /// Every outcome, in wire-value order (`ALL[i] as u8 == i`).
    pub const ALL: [Outcome; 7] = [
        Outcome::Nothing,
        Outcome::Greeting,
        Outcome::RedPacket,
        Outcome::Throttled,
        Outcome::Closed,
        Outcome::Denied,
        Outcome::Redirect,
    ];

    /// The outcome with this wire value, if any.
    #[inline]
    pub const fn from_u8(v: u8) -> Option<Outcome> {
        if (v as usize) < Self::ALL.len() {
            Some(Self::ALL[v as usize])
        } else {
            None
        }
    }

    /// Lower snake case name, for counters and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Outcome::Nothing => "nothing",
            Outcome::Greeting => "greeting",
            Outcome::RedPacket => "red_packet",
            Outcome::Throttled => "throttled",
            Outcome::Closed => "closed",
            Outcome::Denied => "denied",
            Outcome::Redirect => "redirect",
        }
    }
}

impl core::fmt::Display for Outcome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Check a SHAKE/1 payload's length: exactly [`PAYLOAD_LEN`].
#[inline]
fn check_len(len: usize) -> Result<()> {
    match len {
        PAYLOAD_LEN => Ok(()),
        n if n < PAYLOAD_LEN => Err(Error::Truncated),
        _ => Err(Error::Malformed("shake: payload longer than 64 bytes")),
    }
}

/// Check magic, version and kind, in that order.
#[inline]
fn check_header(buf: &[u8], kind: u8) -> Result<()> {
    let magic = [buf[0], buf[1]];
    if magic != MAGIC {
        return Err(Error::BadMagic(magic));
    }
    if buf[2] != VERSION {
        return Err(Error::BadVersion(buf[2]));
    }
    if buf[3] != kind {
        return Err(Error::BadKind(buf[3]));
    }
    Ok(())
}

macro_rules! getters {
    ($( $(#[$m:meta])* $name:ident : $ty:ty = $field:expr; )*) => {$(
        $(#[$m])*
        #[inline]
        pub fn $name(&self) -> $ty {
            let f = $field;
            let mut b = [0u8; core::mem::size_of::<$ty>()];
            b.copy_from_slice(&self.buffer.as_ref()[f]);
            <$ty>::from_be_bytes(b)
        }
    )*};
}

macro_rules! setters {
    ($( $(#[$m:meta])* $name:ident : $ty:ty = $field:expr; )*) => {$(
        $(#[$m])*
        #[inline]
        pub fn $name(&mut self, v: $ty) {
            self.buffer.as_mut()[$field].copy_from_slice(&v.to_be_bytes());
        }
    )*};
}

/// A view of a SHAKE/1 request.
#[derive(Debug, Clone)]
pub struct ShakeRequest<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ShakeRequest<T> {
    /// Wrap a buffer without checks (for writing).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        ShakeRequest { buffer }
    }

    /// Wrap a buffer, checking it is exactly 64 bytes. Magic, version and kind are checked
    /// separately by [`check_header`](Self::check_header), so each failure counts on its own.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        check_len(buffer.as_ref().len())?;
        Ok(Self::new_unchecked(buffer))
    }

    /// Check magic "SK", version 1 and kind SHAKE, reporting the first that is wrong.
    #[inline]
    pub fn check_header(&self) -> Result<()> {
        check_header(self.buffer.as_ref(), KIND_SHAKE)
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Magic bytes (should be "SK").
    #[inline]
    pub fn magic(&self) -> [u8; 2] {
        let b = self.buffer.as_ref();
        [b[req::MAGIC.start], b[req::MAGIC.start + 1]]
    }

    /// Protocol version (should be 1).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[req::VERSION]
    }

    /// Message kind (should be [`KIND_SHAKE`]).
    #[inline]
    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[req::KIND]
    }

    getters! {
        /// Shakes counted since the last request (at least 1).
        shakes: u16 = req::SHAKES;
        /// First reserved field (should be 0).
        reserved0: u16 = req::RESERVED0;
        /// User id.
        user_id: u64 = req::USER_ID;
        /// Client sequence number.
        seq: u32 = req::SEQ;
        /// Last config version the client has.
        config_version: u32 = req::CONFIG_VERSION;
        /// Opaque client timestamp.
        client_ts: u64 = req::CLIENT_TS;
        /// Token expiry, unix seconds.
        token_expiry: u32 = req::TOKEN_EXPIRY;
        /// Second reserved field (should be 0).
        reserved1: u32 = req::RESERVED1;
        /// Token MAC.
        token: u64 = req::TOKEN;
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ShakeRequest<T> {
    /// Write magic "SK", version 1 and kind SHAKE.
    #[inline]
    pub fn set_header(&mut self) {
        let b = self.buffer.as_mut();
        b[req::MAGIC].copy_from_slice(&MAGIC);
        b[req::VERSION] = VERSION;
        b[req::KIND] = KIND_SHAKE;
    }

    /// Set the magic bytes.
    #[inline]
    pub fn set_magic(&mut self, magic: [u8; 2]) {
        self.buffer.as_mut()[req::MAGIC].copy_from_slice(&magic);
    }

    /// Set the version.
    #[inline]
    pub fn set_version(&mut self, v: u8) {
        self.buffer.as_mut()[req::VERSION] = v;
    }

    /// Set the kind.
    #[inline]
    pub fn set_kind(&mut self, v: u8) {
        self.buffer.as_mut()[req::KIND] = v;
    }

    /// Zero both reserved fields and the padding.
    #[inline]
    pub fn clear_reserved(&mut self) {
        let b = self.buffer.as_mut();
        b[req::RESERVED0].fill(0);
        b[req::RESERVED1].fill(0);
        b[req::PADDING].fill(0);
    }

    setters! {
        /// Set the shake count.
        set_shakes: u16 = req::SHAKES;
        /// Set the user id.
        set_user_id: u64 = req::USER_ID;
        /// Set the sequence number.
        set_seq: u32 = req::SEQ;
        /// Set the client's config version.
        set_config_version: u32 = req::CONFIG_VERSION;
        /// Set the client timestamp.
        set_client_ts: u64 = req::CLIENT_TS;
        /// Set the token expiry.
        set_token_expiry: u32 = req::TOKEN_EXPIRY;
        /// Set the token.
        set_token: u64 = req::TOKEN;
    }
}

/// A view of a SHAKE/1 answer. `new_unchecked` over a request's 64 bytes is how the datapath
/// rewrites a request in place (see the module docs for which bytes survive).
#[derive(Debug, Clone)]
pub struct ShakeAnswer<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ShakeAnswer<T> {
    /// Wrap a buffer without checks: for writing an answer, possibly over a request.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        ShakeAnswer { buffer }
    }

    /// Wrap a buffer, checking it is exactly 64 bytes.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        check_len(buffer.as_ref().len())?;
        Ok(Self::new_unchecked(buffer))
    }

    /// Check magic "SK", version 1 and kind RESULT, reporting the first that is wrong.
    #[inline]
    pub fn check_header(&self) -> Result<()> {
        check_header(self.buffer.as_ref(), KIND_RESULT)
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Magic bytes (should be "SK").
    #[inline]
    pub fn magic(&self) -> [u8; 2] {
        let b = self.buffer.as_ref();
        [b[ans::MAGIC.start], b[ans::MAGIC.start + 1]]
    }

    /// Protocol version (should be 1).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[ans::VERSION]
    }

    /// Message kind (should be [`KIND_RESULT`]).
    #[inline]
    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[ans::KIND]
    }

    /// Raw outcome byte; see [`Outcome::from_u8`].
    #[inline]
    pub fn outcome(&self) -> u8 {
        self.buffer.as_ref()[ans::OUTCOME]
    }

    /// Flags ([`FLAG_CONFIG_STALE`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[ans::FLAGS]
    }

    getters! {
        /// Resource package to show; for REDIRECT the owner node index.
        resource_id: u16 = ans::RESOURCE_ID;
        /// Echoed user id.
        user_id: u64 = ans::USER_ID;
        /// Echoed sequence number.
        seq: u32 = ans::SEQ;
        /// Milliseconds the client must wait before sending again.
        retry_after_ms: u32 = ans::RETRY_AFTER_MS;
        /// Echoed client timestamp.
        client_ts: u64 = ans::CLIENT_TS;
        /// Red packet id (RED_PACKET only).
        packet_id: u64 = ans::PACKET_ID;
        /// Amount in cents (RED_PACKET only).
        amount_cents: u32 = ans::AMOUNT_CENTS;
        /// Sponsor (RED_PACKET and GREETING).
        sponsor_id: u32 = ans::SPONSOR_ID;
        /// Claim MAC (RED_PACKET only).
        claim_mac: u64 = ans::CLAIM_MAC;
        /// The node's config version.
        config_version: u32 = ans::CONFIG_VERSION;
        /// Active round, or the next one for CLOSED.
        round_id: u32 = ans::ROUND_ID;
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ShakeAnswer<T> {
    /// Write magic "SK", version 1 and kind RESULT.
    #[inline]
    pub fn set_header(&mut self) {
        let b = self.buffer.as_mut();
        b[ans::MAGIC].copy_from_slice(&MAGIC);
        b[ans::VERSION] = VERSION;
        b[ans::KIND] = KIND_RESULT;
    }

    /// Set the magic bytes.
    #[inline]
    pub fn set_magic(&mut self, magic: [u8; 2]) {
        self.buffer.as_mut()[ans::MAGIC].copy_from_slice(&magic);
    }

    /// Set the version.
    #[inline]
    pub fn set_version(&mut self, v: u8) {
        self.buffer.as_mut()[ans::VERSION] = v;
    }

    /// Set the kind.
    #[inline]
    pub fn set_kind(&mut self, v: u8) {
        self.buffer.as_mut()[ans::KIND] = v;
    }

    /// Set the outcome.
    #[inline]
    pub fn set_outcome(&mut self, outcome: Outcome) {
        self.buffer.as_mut()[ans::OUTCOME] = outcome as u8;
    }

    /// Set the flags.
    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[ans::FLAGS] = flags;
    }

    setters! {
        /// Set the resource id.
        set_resource_id: u16 = ans::RESOURCE_ID;
        /// Set the echoed user id.
        set_user_id: u64 = ans::USER_ID;
        /// Set the echoed sequence number.
        set_seq: u32 = ans::SEQ;
        /// Set the retry delay.
        set_retry_after_ms: u32 = ans::RETRY_AFTER_MS;
        /// Set the echoed client timestamp.
        set_client_ts: u64 = ans::CLIENT_TS;
        /// Set the red packet id.
        set_packet_id: u64 = ans::PACKET_ID;
        /// Set the amount.
        set_amount_cents: u32 = ans::AMOUNT_CENTS;
        /// Set the sponsor.
        set_sponsor_id: u32 = ans::SPONSOR_ID;
        /// Set the claim MAC.
        set_claim_mac: u64 = ans::CLAIM_MAC;
        /// Set the node's config version.
        set_config_version: u32 = ans::CONFIG_VERSION;
        /// Set the round id.
        set_round_id: u32 = ans::ROUND_ID;
    }
}

/// An owned SHAKE/1 request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShakeRequestRepr {
    pub shakes: u16,
    pub user_id: u64,
    pub seq: u32,
    pub config_version: u32,
    pub client_ts: u64,
    pub token_expiry: u32,
    pub token: u64,
}

impl ShakeRequestRepr {
    /// Read a checked request, validating magic, version and kind (reserved bytes and padding
    /// are not checked: a later protocol revision may use them).
    pub fn parse<T: AsRef<[u8]>>(packet: &ShakeRequest<T>) -> Result<Self> {
        check_len(packet.buffer.as_ref().len())?;
        packet.check_header()?;
        Ok(ShakeRequestRepr {
            shakes: packet.shakes(),
            user_id: packet.user_id(),
            seq: packet.seq(),
            config_version: packet.config_version(),
            client_ts: packet.client_ts(),
            token_expiry: packet.token_expiry(),
            token: packet.token(),
        })
    }

    /// Length this repr emits (64).
    pub const fn buffer_len(&self) -> usize {
        PAYLOAD_LEN
    }

    /// Write all 64 bytes, zeroing reserved fields and padding.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ShakeRequest<T>) {
        packet.set_header();
        packet.clear_reserved();
        packet.set_shakes(self.shakes);
        packet.set_user_id(self.user_id);
        packet.set_seq(self.seq);
        packet.set_config_version(self.config_version);
        packet.set_client_ts(self.client_ts);
        packet.set_token_expiry(self.token_expiry);
        packet.set_token(self.token);
    }
}

/// An owned SHAKE/1 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShakeAnswerRepr {
    pub outcome: Outcome,
    pub flags: u8,
    pub resource_id: u16,
    pub user_id: u64,
    pub seq: u32,
    pub retry_after_ms: u32,
    pub client_ts: u64,
    pub packet_id: u64,
    pub amount_cents: u32,
    pub sponsor_id: u32,
    pub claim_mac: u64,
    pub config_version: u32,
    pub round_id: u32,
}

impl ShakeAnswerRepr {
    /// Read a checked answer, validating magic, version, kind and the outcome value.
    pub fn parse<T: AsRef<[u8]>>(packet: &ShakeAnswer<T>) -> Result<Self> {
        check_len(packet.buffer.as_ref().len())?;
        packet.check_header()?;
        let outcome =
            Outcome::from_u8(packet.outcome()).ok_or(Error::Malformed("shake: unknown outcome"))?;
        Ok(ShakeAnswerRepr {
            outcome,
            flags: packet.flags(),
            resource_id: packet.resource_id(),
            user_id: packet.user_id(),
            seq: packet.seq(),
            retry_after_ms: packet.retry_after_ms(),
            client_ts: packet.client_ts(),
            packet_id: packet.packet_id(),
            amount_cents: packet.amount_cents(),
            sponsor_id: packet.sponsor_id(),
            claim_mac: packet.claim_mac(),
            config_version: packet.config_version(),
            round_id: packet.round_id(),
        })
    }

    /// Length this repr emits (64).
    pub const fn buffer_len(&self) -> usize {
        PAYLOAD_LEN
    }

    /// Write all 64 bytes (see [`write_answer`]).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ShakeAnswer<T>) {
        write_answer(packet.buffer.as_mut(), self);
    }
}

/// Write a whole answer into the first 64 bytes of `buf`, every byte from `a`: nothing of a
/// request previously in `buf` survives except where `a` carries the same value (the echoed
/// `user_id`, `seq`, `client_ts`).
///
/// The fast path for the datapath: one bounds check, then fixed-offset stores.
///
/// # Panics
///
/// If `buf` is shorter than [`PAYLOAD_LEN`] (the datapath only calls it on a payload that
/// passed [`ShakeRequest::new_checked`]).
#[inline]
pub fn write_answer(buf: &mut [u8], a: &ShakeAnswerRepr) {
    let b: &mut [u8; PAYLOAD_LEN] = (&mut buf[..PAYLOAD_LEN])
        .try_into()
        .expect("slice of PAYLOAD_LEN bytes");
    b[0] = MAGIC[0];
    b[1] = MAGIC[1];
    b[ans::VERSION] = VERSION;
    b[ans::USER_ID].copy_from_slice(&a.user_id.to_be_bytes());
    b[ans::SEQ].copy_from_slice(&a.seq.to_be_bytes());
    b[ans::CLIENT_TS].copy_from_slice(&a.client_ts.to_be_bytes());
    write_decided_fields(b, a);
}

/// Write an answer over the request it answers, in place: as [`write_answer`], except that
/// the bytes a request and its answer share are left as they are: magic and version (the
/// request passed [`ShakeRequest::check_header`]) and the echoed `user_id`, `seq` and
/// `client_ts`, which `a` must carry as read from this request.
///
/// The datapath's way to answer: fewer stores, and no byte swaps for the echoed fields.
#[inline]
pub fn write_answer_over_request(b: &mut [u8; PAYLOAD_LEN], a: &ShakeAnswerRepr) {
    debug_assert!(ShakeRequest::new_unchecked(&b[..]).check_header().is_ok());
    debug_assert_eq!(
        (
            ShakeAnswer::new_unchecked(&b[..]).user_id(),
            ShakeAnswer::new_unchecked(&b[..]).seq(),
            ShakeAnswer::new_unchecked(&b[..]).client_ts()
        ),
        (a.user_id, a.seq, a.client_ts)
    );
    write_decided_fields(b, a);
}

/// The answer's own fields (everything but magic, version and the echoed user_id, seq and
/// client_ts), shared by [`write_answer`] and [`write_answer_over_request`].
#[inline(always)]
fn write_decided_fields(b: &mut [u8; PAYLOAD_LEN], a: &ShakeAnswerRepr) {
    b[ans::KIND] = KIND_RESULT;
    b[ans::OUTCOME] = a.outcome as u8;
    b[ans::FLAGS] = a.flags;
    b[ans::RESOURCE_ID].copy_from_slice(&a.resource_id.to_be_bytes());
    b[ans::RETRY_AFTER_MS].copy_from_slice(&a.retry_after_ms.to_be_bytes());
    b[ans::PACKET_ID].copy_from_slice(&a.packet_id.to_be_bytes());
    b[ans::AMOUNT_CENTS].copy_from_slice(&a.amount_cents.to_be_bytes());
    b[ans::SPONSOR_ID].copy_from_slice(&a.sponsor_id.to_be_bytes());
    b[ans::CLAIM_MAC].copy_from_slice(&a.claim_mac.to_be_bytes());
    b[ans::CONFIG_VERSION].copy_from_slice(&a.config_version.to_be_bytes());
    b[ans::ROUND_ID].copy_from_slice(&a.round_id.to_be_bytes());
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::testutil;
    use proptest::prelude::*;

    /// A request: 3 shakes, user 0x0123456789abcdef, seq 7, config 5, client_ts
    /// 0x1122334455667788, expiry 1893456000 (0x70dbd880), token 0x2c1a5c49d53ef905 (the SPEC
    /// test vector for this user and expiry under key 000102..0f).
    static REQUEST_BYTES: [u8; 64] = [
        0x53, 0x4b, 0x01, 0x01, 0x00, 0x03, 0x00, 0x00, // magic, version, kind, shakes, rsvd
        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, // user_id
        0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x05, // seq, config_version
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, // client_ts
        0x70, 0xdb, 0xd8, 0x80, 0x00, 0x00, 0x00, 0x00, // token_expiry, reserved
        0x2c, 0x1a, 0x5c, 0x49, 0xd5, 0x3e, 0xf9, 0x05, // token
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // padding
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    /// The RED_PACKET answer to it: stale config flag, resource 9, retry 5000 ms, packet 42,
    /// 888 cents, sponsor 7, claim MAC 0x4a2b60f82bceb928, config 6, round 3.
    static ANSWER_BYTES: [u8; 64] = [
        0x53, 0x4b, 0x01, 0x81, 0x02, 0x01, 0x00,
        0x09, // magic, version, kind, outcome, flags, res
        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, // user_id
        0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x13, 0x88, // seq, retry_after_ms
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, // client_ts
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, // packet_id
        0x00, 0x00, 0x03, 0x78, 0x00, 0x00, 0x00, 0x07, // amount_cents, sponsor_id
        0x4a, 0x2b, 0x60, 0xf8, 0x2b, 0xce, 0xb9, 0x28, // claim_mac
        0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x03, // config_version, round_id
    ];

    fn request_repr() -> ShakeRequestRepr {
        ShakeRequestRepr {
            shakes: 3,
            user_id: 0x0123_4567_89ab_cdef,
            seq: 7,
            config_version: 5,
            client_ts: 0x1122_3344_5566_7788,
            token_expiry: 1_893_456_000,
            token: 0x2c1a_5c49_d53e_f905,
        }
    }

    fn answer_repr() -> ShakeAnswerRepr {
        ShakeAnswerRepr {
            outcome: Outcome::RedPacket,
            flags: FLAG_CONFIG_STALE,
            resource_id: 9,
            user_id: 0x0123_4567_89ab_cdef,
            seq: 7,
            retry_after_ms: 5000,
            client_ts: 0x1122_3344_5566_7788,
            packet_id: 42,
            amount_cents: 888,
            sponsor_id: 7,
            claim_mac: 0x4a2b_60f8_2bce_b928,
            config_version: 6,
            round_id: 3,
        }
    }

    #[test]
    fn request_deconstruct() {
        let p = ShakeRequest::new_checked(&REQUEST_BYTES[..]).unwrap();
        p.check_header().unwrap();
        assert_eq!(p.magic(), MAGIC);
        assert_eq!(p.version(), VERSION);
        assert_eq!(p.kind(), KIND_SHAKE);
        assert_eq!(p.shakes(), 3);
        assert_eq!(p.reserved0(), 0);
        assert_eq!(p.user_id(), 0x0123_4567_89ab_cdef);
        assert_eq!(p.seq(), 7);
        assert_eq!(p.config_version(), 5);
        assert_eq!(p.client_ts(), 0x1122_3344_5566_7788);
        assert_eq!(p.token_expiry(), 1_893_456_000);
        assert_eq!(p.reserved1(), 0);
        assert_eq!(p.token(), 0x2c1a_5c49_d53e_f905);
    }

    #[test]
    fn request_construct() {
        let mut bytes = [0xa5u8; 64];
        let mut p = ShakeRequest::new_unchecked(&mut bytes[..]);
        p.set_magic(MAGIC);
        p.set_version(VERSION);
        p.set_kind(KIND_SHAKE);
        p.clear_reserved();
        p.set_shakes(3);
        p.set_user_id(0x0123_4567_89ab_cdef);
        p.set_seq(7);
        p.set_config_version(5);
        p.set_client_ts(0x1122_3344_5566_7788);
        p.set_token_expiry(1_893_456_000);
        p.set_token(0x2c1a_5c49_d53e_f905);
        assert_eq!(bytes, REQUEST_BYTES);
    }

    #[test]
    fn request_parse() {
        let p = ShakeRequest::new_checked(&REQUEST_BYTES[..]).unwrap();
        assert_eq!(ShakeRequestRepr::parse(&p).unwrap(), request_repr());
    }

    #[test]
    fn request_emit() {
        let mut bytes = [0xa5u8; 64];
        let r = request_repr();
        assert_eq!(r.buffer_len(), 64);
        r.emit(&mut ShakeRequest::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, REQUEST_BYTES);
    }

    #[test]
    fn request_parse_errors_say_which() {
        let mut b = REQUEST_BYTES;
        b[1] = b'X';
        let e = ShakeRequestRepr::parse(&ShakeRequest::new_checked(&b[..]).unwrap());
        assert_eq!(e, Err(Error::BadMagic(*b"SX")));
        let mut b = REQUEST_BYTES;
        b[2] = 2;
        let e = ShakeRequestRepr::parse(&ShakeRequest::new_checked(&b[..]).unwrap());
        assert_eq!(e, Err(Error::BadVersion(2)));
        let e = ShakeRequestRepr::parse(&ShakeRequest::new_checked(&ANSWER_BYTES[..]).unwrap());
        assert_eq!(e, Err(Error::BadKind(KIND_RESULT)));
        assert_eq!(
            ShakeRequest::new_checked(&REQUEST_BYTES[..63]).unwrap_err(),
            Error::Truncated
        );
        let long = [0u8; 65];
        assert!(matches!(
            ShakeRequest::new_checked(&long[..]),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn answer_deconstruct() {
        let p = ShakeAnswer::new_checked(&ANSWER_BYTES[..]).unwrap();
        p.check_header().unwrap();
        assert_eq!(p.magic(), MAGIC);
        assert_eq!(p.version(), VERSION);
        assert_eq!(p.kind(), KIND_RESULT);
        assert_eq!(p.outcome(), Outcome::RedPacket as u8);
        assert_eq!(p.flags(), FLAG_CONFIG_STALE);
        assert_eq!(p.resource_id(), 9);
        assert_eq!(p.user_id(), 0x0123_4567_89ab_cdef);
        assert_eq!(p.seq(), 7);
        assert_eq!(p.retry_after_ms(), 5000);
        assert_eq!(p.client_ts(), 0x1122_3344_5566_7788);
        assert_eq!(p.packet_id(), 42);
        assert_eq!(p.amount_cents(), 888);
        assert_eq!(p.sponsor_id(), 7);
        assert_eq!(p.claim_mac(), 0x4a2b_60f8_2bce_b928);
        assert_eq!(p.config_version(), 6);
        assert_eq!(p.round_id(), 3);
    }

    #[test]
    fn answer_construct_over_request() {
        let mut bytes = REQUEST_BYTES;
        let mut p = ShakeAnswer::new_unchecked(&mut bytes[..]);
        p.set_header();
        p.set_outcome(Outcome::RedPacket);
        p.set_flags(FLAG_CONFIG_STALE);
        p.set_resource_id(9);
        p.set_retry_after_ms(5000);
        p.set_packet_id(42);
        p.set_amount_cents(888);
        p.set_sponsor_id(7);
        p.set_claim_mac(0x4a2b_60f8_2bce_b928);
        p.set_config_version(6);
        p.set_round_id(3);
        // user_id, seq and client_ts were not set: they are the request's, at the same offsets.
        assert_eq!(bytes, ANSWER_BYTES);
    }

    #[test]
    fn answer_construct() {
        let mut bytes = [0xa5u8; 64];
        let mut p = ShakeAnswer::new_unchecked(&mut bytes[..]);
        p.set_magic(MAGIC);
        p.set_version(VERSION);
        p.set_kind(KIND_RESULT);
        p.set_outcome(Outcome::RedPacket);
        p.set_flags(FLAG_CONFIG_STALE);
        p.set_resource_id(9);
        p.set_user_id(0x0123_4567_89ab_cdef);
        p.set_seq(7);
        p.set_retry_after_ms(5000);
        p.set_client_ts(0x1122_3344_5566_7788);
        p.set_packet_id(42);
        p.set_amount_cents(888);
        p.set_sponsor_id(7);
        p.set_claim_mac(0x4a2b_60f8_2bce_b928);
        p.set_config_version(6);
        p.set_round_id(3);
        assert_eq!(bytes, ANSWER_BYTES);
    }

    #[test]
    fn answer_parse() {
        let p = ShakeAnswer::new_checked(&ANSWER_BYTES[..]).unwrap();
        assert_eq!(ShakeAnswerRepr::parse(&p).unwrap(), answer_repr());
        let mut b = ANSWER_BYTES;
        b[4] = 7;
        assert!(matches!(
            ShakeAnswerRepr::parse(&ShakeAnswer::new_checked(&b[..]).unwrap()),
            Err(Error::Malformed(_))
        ));
        let e = ShakeAnswerRepr::parse(&ShakeAnswer::new_checked(&REQUEST_BYTES[..]).unwrap());
        assert_eq!(e, Err(Error::BadKind(KIND_SHAKE)));
    }

    #[test]
    fn answer_emit() {
        let mut bytes = [0xa5u8; 64];
        answer_repr().emit(&mut ShakeAnswer::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, ANSWER_BYTES);
    }

    #[test]
    fn write_answer_over_request_leaks_nothing() {
        // A THROTTLED answer: almost everything zero. With a request of all-0xff bytes under
        // it, any byte write_answer skipped would show as 0xff.
        let mut bytes = [0xffu8; 64];
        let a = ShakeAnswerRepr {
            outcome: Outcome::Throttled,
            flags: 0,
            resource_id: 0,
            user_id: 0,
            seq: 0,
            retry_after_ms: 0,
            client_ts: 0,
            packet_id: 0,
            amount_cents: 0,
            sponsor_id: 0,
            claim_mac: 0,
            config_version: 0,
            round_id: 0,
        };
        write_answer(&mut bytes, &a);
        let mut expected = [0u8; 64];
        expected[..5].copy_from_slice(&[0x53, 0x4b, 0x01, 0x81, 0x03]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn outcomes() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as u8 as usize, i);
            assert_eq!(Outcome::from_u8(i as u8), Some(*o));
        }
        assert_eq!(Outcome::from_u8(7), None);
        assert_eq!(Outcome::from_u8(255), None);
        let names: Vec<_> = Outcome::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(
            names,
            [
                "nothing",
                "greeting",
                "red_packet",
                "throttled",
                "closed",
                "denied",
                "redirect"
            ]
        );
        assert_eq!(Outcome::RedPacket.to_string(), "red_packet");
    }

    fn arb_answer() -> impl Strategy<Value = ShakeAnswerRepr> {
        (
            (
                0usize..7,
                any::<u8>(),
                any::<u16>(),
                any::<u64>(),
                any::<u32>(),
            ),
            (any::<u32>(), any::<u64>(), any::<u64>(), any::<u32>()),
            (any::<u32>(), any::<u64>(), any::<u32>(), any::<u32>()),
        )
            .prop_map(
                |((o, flags, res, uid, seq), (retry, ts, pid, amt), (sp, mac, cv, rid))| {
                    ShakeAnswerRepr {
                        outcome: Outcome::ALL[o],
                        flags,
                        resource_id: res,
                        user_id: uid,
                        seq,
                        retry_after_ms: retry,
                        client_ts: ts,
                        packet_id: pid,
                        amount_cents: amt,
                        sponsor_id: sp,
                        claim_mac: mac,
                        config_version: cv,
                        round_id: rid,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in testutil::bytes(80)) {
            if let Ok(p) = ShakeRequest::new_checked(&data[..]) {
                let _ = (p.magic(), p.version(), p.kind(), p.shakes(), p.reserved0());
                let _ = (p.user_id(), p.seq(), p.config_version(), p.client_ts());
                let _ = (p.token_expiry(), p.reserved1(), p.token(), p.check_header());
                let _ = ShakeRequestRepr::parse(&p);
            }
            if let Ok(p) = ShakeAnswer::new_checked(&data[..]) {
                let _ = (p.magic(), p.version(), p.kind(), p.outcome(), p.flags());
                let _ = (p.resource_id(), p.user_id(), p.seq(), p.retry_after_ms());
                let _ = (p.client_ts(), p.packet_id(), p.amount_cents(), p.sponsor_id());
                let _ = (p.claim_mac(), p.config_version(), p.round_id(), p.check_header());
                let _ = ShakeAnswerRepr::parse(&p);
            }
        }

        #[test]
        fn arbitrary_64_bytes_never_panic(data in any::<[u8; 64]>()) {
            let p = ShakeRequest::new_checked(&data[..]).unwrap();
            let _ = ShakeRequestRepr::parse(&p);
            let p = ShakeAnswer::new_checked(&data[..]).unwrap();
            let _ = ShakeAnswerRepr::parse(&p);
        }

        #[test]
        fn write_answer_round_trips_over_any_request(
            request in any::<[u8; 64]>(),
            a in arb_answer(),
        ) {
            let mut bytes = request;
            write_answer(&mut bytes, &a);
            let p = ShakeAnswer::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(ShakeAnswerRepr::parse(&p).unwrap(), a);
            // Writing the same answer over a different request gives the same bytes: no
            // request byte survives.
            let mut other = [0u8; 64];
            write_answer(&mut other, &a);
            prop_assert_eq!(bytes, other);
        }

        #[test]
        fn answer_over_its_request_equals_a_whole_answer(
            junk in any::<[u8; 64]>(),
            a in arb_answer(),
        ) {
            // Any request with a valid header whose echoed fields are the answer's.
            let mut request = junk;
            let mut r = ShakeRequest::new_unchecked(&mut request[..]);
            r.set_header();
            r.set_user_id(a.user_id);
            r.set_seq(a.seq);
            r.set_client_ts(a.client_ts);
            let mut in_place = request;
            write_answer_over_request(&mut in_place, &a);
            let mut whole = request;
            write_answer(&mut whole, &a);
            prop_assert_eq!(in_place, whole);
        }

        #[test]
        fn request_round_trips(
            shakes in any::<u16>(), user_id in any::<u64>(), seq in any::<u32>(),
            config_version in any::<u32>(), client_ts in any::<u64>(),
            token_expiry in any::<u32>(), token in any::<u64>(), junk in any::<[u8; 64]>(),
        ) {
            let r = ShakeRequestRepr {
                shakes, user_id, seq, config_version, client_ts, token_expiry, token,
            };
            let mut bytes = junk;
            r.emit(&mut ShakeRequest::new_unchecked(&mut bytes[..]));
            prop_assert!(bytes[48..].iter().all(|&b| b == 0));
            let p = ShakeRequest::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(p.reserved0(), 0);
            prop_assert_eq!(p.reserved1(), 0);
            prop_assert_eq!(ShakeRequestRepr::parse(&p).unwrap(), r);
        }
    }
}
