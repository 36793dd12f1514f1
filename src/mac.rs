//! The token and claim MACs of SPEC section 2: SipHash-2-4 over fixed big-endian layouts.
//!
//! Keys are 16 bytes, given as 32 hex digits, used the standard way (k0 = bytes 0..8
//! little-endian, k1 = bytes 8..16). The 64-bit result is written into packets big-endian;
//! here it is a plain `u64` and the wire layer does the byte order.

use std::hash::Hasher;
use std::path::Path;

use siphasher::sip::SipHasher24;

/// A 16-byte SipHash key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MacKey {
    bytes: [u8; 16],
    /// The key as SipHash's two words, computed once: the datapath hashes per packet.
    k0: u64,
    k1: u64,
    /// SipHash's initial state for this key after the first step of the first compression
    /// round, which reads only v0 and v1 (the message word goes into v3): computed once.
    v: [u64; 4],
}

/// Why a key could not be read. Each message names the file once and says everything
/// itself (no `source()` chain that would print the cause a second time), and never shows
/// what the file holds: a nearly right key is nearly the secret.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: cannot read: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: {problem}; a key is 32 hex digits (16 bytes)")]
    Format { path: String, problem: String },
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys never reach logs.
        f.write_str("MacKey(..)")
    }
}

impl MacKey {
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        let (a, b) = bytes.split_at(8);
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        let mut i = 0;
        while i < 8 {
            k0[i] = a[i];
            k1[i] = b[i];
            i += 1;
        }
        let (k0, k1) = (u64::from_le_bytes(k0), u64::from_le_bytes(k1));
        MacKey {
            bytes,
            k0,
            k1,
            v: Sip::first_step([
                k0 ^ 0x736f_6d65_7073_6575,
                k1 ^ 0x646f_7261_6e64_6f6d,
                k0 ^ 0x6c79_6765_6e65_7261,
                k1 ^ 0x7465_6462_7974_6573,
            ]),
        }
    }

    pub fn bytes(&self) -> &[u8; 16] {
        &self.bytes
    }

    /// Parses 32 hex digits; surrounding whitespace is ignored.
    pub fn from_hex(text: &str) -> Option<Self> {
        Self::parse_hex(text).ok()
    }

    /// [`from_hex`](Self::from_hex), saying what is wrong without repeating the text.
    fn parse_hex(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some((i, c)) = text
            .chars()
            .enumerate()
            .find(|(_, c)| !c.is_ascii_hexdigit())
        {
            let what = if c.is_whitespace() {
                "whitespace"
            } else {
                "a character that is not a hex digit"
            };
            return Err(format!("{what} at position {}", i + 1));
        }
        if text.len() != 32 {
            return Err(format!("{} hex digits", text.len()));
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(MacKey::from_bytes(out))
    }

    /// Formats the key as 32 lowercase hex digits, as key files hold it.
    pub fn to_hex(&self) -> String {
        self.bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads a key file: 32 hex digits, optionally followed by a newline.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|error| KeyError::Io {
            path: path.display().to_string(),
            error,
        })?;
        Self::parse_hex(&text).map_err(|problem| KeyError::Format {
            path: path.display().to_string(),
            problem,
        })
    }

    #[inline]
    fn hasher(&self) -> SipHasher24 {
        SipHasher24::new_with_keys(self.k0, self.k1)
    }

    /// SipHash-2-4 of an arbitrary message (the reference-vector form).
    pub fn sip(&self, message: &[u8]) -> u64 {
        let mut h = self.hasher();
        h.write(message);
        h.finish()
    }

    /// token = SipHash-2-4(token_key, user_id ‖ token_expiry), 12 bytes in.
    ///
    /// SipHash-2-4 written out for this one message length: SipHash reads its input as
    /// little-endian words, so the big-endian bytes of `x` are the word `x.swap_bytes()`, and
    /// the last word carries the 4 tail bytes and the length. Per packet this saves the
    /// buffering of a general hasher; the tests check it against `siphasher` (see
    /// [`sip`](Self::sip)) and the SPEC vectors.
    #[inline]
    pub fn token(&self, user_id: u64, token_expiry: u32) -> u64 {
        let mut s = Sip(self.v);
        s.first_block(user_id.swap_bytes());
        s.block(u64::from(token_expiry.swap_bytes()) | (12 << 56));
        s.finish()
    }

    /// claim_mac = SipHash-2-4(claim_key, packet_id ‖ user_id ‖ amount_cents ‖ sponsor_id),
    /// 24 bytes in: three whole words, then the length word. Written out like
    /// [`token`](Self::token).
    #[inline]
    pub fn claim(&self, packet_id: u64, user_id: u64, amount_cents: u32, sponsor_id: u32) -> u64 {
        let mut s = Sip(self.v);
        s.first_block(packet_id.swap_bytes());
        s.block(user_id.swap_bytes());
        s.block(u64::from(amount_cents.swap_bytes()) | u64::from(sponsor_id.swap_bytes()) << 32);
        s.block(24 << 56);
        s.finish()
    }
}

/// How many token MACs a [`TokenBatch`] holds: a burst of the DPDK worker.
pub const TOKEN_BATCH: usize = 32;

/// The CPU's vector unit for [`TokenBatch::compute`], found once at start: AVX2 (x86-64-v3)
/// or none, in which case tokens are checked one at a time, as before batches.
#[derive(Clone, Copy, Debug)]
pub struct Lanes {
    #[cfg(target_arch = "x86_64")]
    v3: Option<pulp::x86::V3>,
}

impl Lanes {
    /// What this CPU has (CPUID, through pulp's cached detection).
    pub fn detect() -> Lanes {
        Lanes {
            #[cfg(target_arch = "x86_64")]
            v3: pulp::x86::V3::try_new(),
        }
    }

    /// No vector unit: every token one at a time (tests, and CPUs without AVX2).
    pub fn scalar() -> Lanes {
        Lanes {
            #[cfg(target_arch = "x86_64")]
            v3: None,
        }
    }

    /// Whether a batch is computed in vector lanes; without, batching saves nothing.
    pub fn is_vector(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return self.v3.is_some();
        #[cfg(not(target_arch = "x86_64"))]
        false
    }
}

/// A token MAC computed before its request's decision, with the inputs it is for.
///
/// It is used only for exactly those inputs ([`mac_for`](Self::mac_for)): whatever a frame
/// holds, a request is checked against the MAC of its own user id and expiry, so a batch
/// that read a frame at the wrong offsets costs a second SipHash, never a wrong verdict. A
/// `TokenMac` is only good for the key its batch was computed with: the frame layer makes and
/// uses a batch within one burst, and the key (live config) changes only between bursts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenMac {
    user_id: u64,
    expiry: u32,
    mac: u64,
}

impl TokenMac {
    /// The MAC, if it was computed for exactly these inputs.
    #[inline(always)]
    pub fn mac_for(&self, user_id: u64, expiry: u32) -> Option<u64> {
        (self.user_id == user_id && self.expiry == expiry).then_some(self.mac)
    }
}

/// The token MACs of up to [`TOKEN_BATCH`] requests, computed together: SipHash-2-4 in four
/// 64-bit lanes of AVX2 registers, the same rounds as [`MacKey::token`] on four messages at
/// once. A token alone is a chain of dependent additions, rotations and xors (about 120
/// instructions); in lanes it costs about 42. On the stack, 784 bytes; nothing is allocated.
pub struct TokenBatch {
    entries: [TokenMac; TOKEN_BATCH],
    len: usize,
    /// Entries whose MAC is computed for their inputs: `len` after [`compute`](Self::compute),
    /// 0 after any change of the inputs ([`fill`](Self::fill), [`refill`](Self::refill),
    /// [`clear`](Self::clear)), so a MAC of earlier inputs is never handed out.
    computed: usize,
}

/// A [`TokenBatch`] being filled ([`TokenBatch::refill`]).
pub struct Refill<'a> {
    entries: &'a mut [TokenMac; TOKEN_BATCH],
    len: &'a mut usize,
}

impl Refill<'_> {
    /// Sets the inputs of the `i`th request (none past [`TOKEN_BATCH`]).
    #[inline(always)]
    pub fn put(&mut self, i: usize, user_id: u64, expiry: u32) {
        if let Some(t) = self.entries.get_mut(i) {
            (t.user_id, t.expiry) = (user_id, expiry);
        }
    }

    /// The batch is the first `n` requests set (at most [`TOKEN_BATCH`]).
    #[inline(always)]
    pub fn finish(self, n: usize) {
        *self.len = n.min(TOKEN_BATCH);
    }
}

impl Default for TokenBatch {
    fn default() -> Self {
        const EMPTY: TokenMac = TokenMac {
            user_id: 0,
            expiry: 0,
            mac: 0,
        };
        TokenBatch {
            entries: [EMPTY; TOKEN_BATCH],
            len: 0,
            computed: 0,
        }
    }
}

impl TokenBatch {
    /// Starts a new batch.
    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
        self.computed = 0;
    }

    /// Starts a new batch whose inputs the caller sets one request at a time, in a loop of
    /// its own ([`fill`](Self::fill) takes them from an iterator). The batch is empty until
    /// [`Refill::finish`]; while the `Refill` lives nothing else can touch the batch, so no
    /// MAC of earlier inputs is handed out for new ones.
    #[inline(always)]
    pub fn refill(&mut self) -> Refill<'_> {
        self.len = 0;
        self.computed = 0;
        Refill {
            entries: &mut self.entries,
            len: &mut self.len,
        }
    }

    /// Starts a new batch with the inputs of up to [`TOKEN_BATCH`] requests (any more are
    /// left out).
    #[inline(always)]
    pub fn fill(&mut self, inputs: impl IntoIterator<Item = (u64, u32)>) {
        let mut batch = self.refill();
        let mut n = 0;
        for (u, e) in inputs.into_iter().take(TOKEN_BATCH) {
            batch.put(n, u, e);
            n += 1;
        }
        batch.finish(n);
    }

    /// Computes the token MAC of every request in the batch under `key`.
    pub fn compute(&mut self, key: &MacKey, lanes: Lanes) {
        #[cfg(target_arch = "x86_64")]
        if let Some(v3) = lanes.v3 {
            let n = self.len.div_ceil(4) * 4;
            let job = lanes4::Job {
                v: key.v,
                entries: &mut self.entries[..n],
            };
            v3.vectorize(
                #[inline(always)]
                move || job.run(v3),
            );
            self.computed = self.len;
            return;
        }
        let _ = lanes;
        for t in &mut self.entries[..self.len] {
            t.mac = key.token(t.user_id, t.expiry);
        }
        self.computed = self.len;
    }

    /// The `i`th request's MAC with its inputs, once [`compute`](Self::compute) has run on
    /// the inputs as they are.
    #[inline(always)]
    pub fn get(&self, i: usize) -> Option<&TokenMac> {
        self.computed().get(i)
    }

    /// The MACs [`get`](Self::get) hands out, in order: for a loop over a burst, which then
    /// checks only the index.
    #[inline(always)]
    pub fn computed(&self) -> &[TokenMac] {
        &self.entries[..self.computed]
    }
}

/// SipHash-2-4 of four tokens in the lanes of AVX2 registers, through pulp's safe wrappers:
/// one register per state word, a rotation as two shifts and an or (AVX2 has no 64-bit
/// rotate; LLVM makes those by 16 and 32 one shuffle each, and writing the shuffles by hand
/// measured no fewer instructions). Checked against [`MacKey::token`] by the tests.
#[cfg(target_arch = "x86_64")]
mod lanes4 {
    use pulp::u64x4;
    use pulp::x86::V3;

    pub(super) struct Job<'a> {
        /// The key's state after the first step of the first round, as [`super::MacKey`] keeps it.
        pub v: [u64; 4],
        pub entries: &'a mut [super::TokenMac],
    }

    #[inline(always)]
    fn rotl<const L: i32, const R: i32>(s: V3, x: u64x4) -> u64x4 {
        s.or_u64x4(s.shl_const_u64x4::<L>(x), s.shr_const_u64x4::<R>(x))
    }

    #[inline(always)]
    fn first_step(s: V3, v: &mut [u64x4; 4]) {
        v[0] = s.wrapping_add_u64x4(v[0], v[1]);
        v[1] = s.xor_u64x4(rotl::<13, 51>(s, v[1]), v[0]);
        v[0] = rotl::<32, 32>(s, v[0]);
    }

    #[inline(always)]
    fn rest_of_round(s: V3, v: &mut [u64x4; 4]) {
        let [mut v0, mut v1, mut v2, mut v3] = *v;
        v2 = s.wrapping_add_u64x4(v2, v3);
        v3 = s.xor_u64x4(rotl::<16, 48>(s, v3), v2);
        v0 = s.wrapping_add_u64x4(v0, v3);
        v3 = s.xor_u64x4(rotl::<21, 43>(s, v3), v0);
        v2 = s.wrapping_add_u64x4(v2, v1);
        v1 = s.xor_u64x4(rotl::<17, 47>(s, v1), v2);
        v2 = rotl::<32, 32>(s, v2);
        *v = [v0, v1, v2, v3];
    }

    #[inline(always)]
    fn round(s: V3, v: &mut [u64x4; 4]) {
        first_step(s, v);
        rest_of_round(s, v);
    }

    impl Job<'_> {
        #[inline(always)]
        pub(super) fn run(self, s: V3) {
            for t in self.entries.chunks_exact_mut(4) {
                // The words SipHash reads: the big-endian user id, then the big-endian expiry
                // with the message length (12) in the top byte, as in `MacKey::token`.
                let first = |t: &super::TokenMac| t.user_id.swap_bytes();
                let last = |t: &super::TokenMac| u64::from(t.expiry.swap_bytes()) | (12 << 56);
                let m0 = u64x4(first(&t[0]), first(&t[1]), first(&t[2]), first(&t[3]));
                let m1 = u64x4(last(&t[0]), last(&t[1]), last(&t[2]), last(&t[3]));
                let mut v = self.v.map(|w| s.splat_u64x4(w));
                // First block on the key's state, whose first step is done.
                v[3] = s.xor_u64x4(v[3], m0);
                rest_of_round(s, &mut v);
                round(s, &mut v);
                v[0] = s.xor_u64x4(v[0], m0);
                v[3] = s.xor_u64x4(v[3], m1);
                round(s, &mut v);
                round(s, &mut v);
                v[0] = s.xor_u64x4(v[0], m1);
                v[2] = s.xor_u64x4(v[2], s.splat_u64x4(0xff));
                for _ in 0..4 {
                    round(s, &mut v);
                }
                let x = s.xor_u64x4(s.xor_u64x4(v[0], v[1]), s.xor_u64x4(v[2], v[3]));
                for (t, mac) in t.iter_mut().zip([x.0, x.1, x.2, x.3]) {
                    t.mac = mac;
                }
            }
        }
    }
}

/// SipHash-2-4 state over whole 64-bit words (Aumasson and Bernstein, "SipHash: a fast
/// short-input PRF", 2012).
struct Sip([u64; 4]);

impl Sip {
    /// The start of a compression round: v0 and v1 only.
    #[inline(always)]
    const fn first_step(v: [u64; 4]) -> [u64; 4] {
        let [mut v0, mut v1, v2, v3] = v;
        v0 = v0.wrapping_add(v1);
        v1 = v1.rotate_left(13) ^ v0;
        v0 = v0.rotate_left(32);
        [v0, v1, v2, v3]
    }

    #[inline(always)]
    fn round(&mut self) {
        self.0 = Self::first_step(self.0);
        self.rest_of_round();
    }

    /// A compression round after [`first_step`](Self::first_step).
    #[inline(always)]
    fn rest_of_round(&mut self) {
        let [mut v0, mut v1, mut v2, mut v3] = self.0;
        v2 = v2.wrapping_add(v3);
        v3 = v3.rotate_left(16) ^ v2;
        v0 = v0.wrapping_add(v3);
        v3 = v3.rotate_left(21) ^ v0;
        v2 = v2.wrapping_add(v1);
        v1 = v1.rotate_left(17) ^ v2;
        v2 = v2.rotate_left(32);
        self.0 = [v0, v1, v2, v3];
    }

    /// One message word, two compression rounds.
    #[inline(always)]
    fn block(&mut self, m: u64) {
        self.0[3] ^= m;
        self.round();
        self.round();
        self.0[0] ^= m;
    }

    /// The first message word, on a state whose first step is already done (a key's `v`):
    /// the first step does not read v3, so xoring the word in afterwards gives the same state.
    #[inline(always)]
    fn first_block(&mut self, m: u64) {
        self.0[3] ^= m;
        self.rest_of_round();
        self.round();
        self.0[0] ^= m;
    }

    /// Four finalization rounds.
    #[inline(always)]
    fn finish(mut self) -> u64 {
        self.0[2] ^= 0xff;
        self.round();
        self.round();
        self.round();
        self.round();
        let [v0, v1, v2, v3] = self.0;
        v0 ^ v1 ^ v2 ^ v3
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn key(first: u8) -> MacKey {
        let mut k = [0u8; 16];
        for (i, b) in k.iter_mut().enumerate() {
            *b = first + i as u8;
        }
        MacKey::from_bytes(k)
    }

    #[test]
    fn siphash_paper_vector() {
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(key(0).sip(&msg), 0xa129ca6149be45e5);
    }

    #[test]
    fn siphash_reference_vectors_first_and_last() {
        // From the reference implementation's vectors.h: empty input and 63 bytes.
        assert_eq!(
            key(0).sip(&[]),
            u64::from_le_bytes([0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72])
        );
        let msg: Vec<u8> = (0u8..63).collect();
        assert_eq!(
            key(0).sip(&msg),
            u64::from_le_bytes([0x72, 0x45, 0x06, 0xeb, 0x4c, 0x32, 0x8a, 0x95])
        );
    }

    #[test]
    fn spec_token_vectors() {
        assert_eq!(key(0).token(1, 0x7000_0000), 0xfde4d5f5c2fb608a);
        assert_eq!(
            key(0).token(0x0123456789abcdef, 1_893_456_000),
            0x2c1a5c49d53ef905
        );
    }

    #[test]
    fn spec_claim_vector() {
        assert_eq!(
            key(0x10).claim(42, 0x0123456789abcdef, 888, 7),
            0x4a2b60f82bceb928
        );
    }

    #[test]
    fn integer_writes_equal_the_byte_layout() {
        let k = key(3);
        let mut m = [0u8; 24];
        m[..8].copy_from_slice(&9u64.to_be_bytes());
        m[8..16].copy_from_slice(&0xdead_beef_u64.to_be_bytes());
        m[16..20].copy_from_slice(&5u32.to_be_bytes());
        m[20..].copy_from_slice(&6u32.to_be_bytes());
        assert_eq!(k.claim(9, 0xdead_beef, 5, 6), k.sip(&m));
        assert_eq!(k.token(0xdead_beef, 5), k.sip(&m[8..20]));
    }

    proptest::proptest! {
        /// The written-out SipHash against the `siphasher` crate, on random keys and inputs.
        #[test]
        fn token_and_claim_equal_siphasher(
            k in proptest::prelude::any::<[u8; 16]>(),
            user in proptest::prelude::any::<u64>(),
            packet in proptest::prelude::any::<u64>(),
            expiry in proptest::prelude::any::<u32>(),
            amount in proptest::prelude::any::<u32>(),
            sponsor in proptest::prelude::any::<u32>(),
        ) {
            let key = MacKey::from_bytes(k);
            let mut m = [0u8; 24];
            m[..8].copy_from_slice(&user.to_be_bytes());
            m[8..12].copy_from_slice(&expiry.to_be_bytes());
            proptest::prop_assert_eq!(key.token(user, expiry), key.sip(&m[..12]));
            m[..8].copy_from_slice(&packet.to_be_bytes());
            m[8..16].copy_from_slice(&user.to_be_bytes());
            m[16..20].copy_from_slice(&amount.to_be_bytes());
            m[20..].copy_from_slice(&sponsor.to_be_bytes());
            proptest::prop_assert_eq!(key.claim(packet, user, amount, sponsor), key.sip(&m));
        }
    }

    #[test]
    fn avx2_lanes_are_used_where_the_cpu_has_them() {
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            Lanes::detect().is_vector(),
            std::arch::is_x86_feature_detected!("avx2")
        );
        assert!(!Lanes::scalar().is_vector());
    }

    #[test]
    fn a_batch_holds_a_burst_and_leaves_out_the_rest() {
        let k = key(0);
        let mut b = TokenBatch::default();
        b.fill((0..TOKEN_BATCH as u64 + 5).map(|u| (u, 2)));
        b.compute(&k, Lanes::detect());
        let last = TOKEN_BATCH as u64 - 1;
        assert_eq!(
            b.get(TOKEN_BATCH - 1).and_then(|m| m.mac_for(last, 2)),
            Some(k.token(last, 2))
        );
        assert_eq!(b.get(TOKEN_BATCH), None);
        b.fill((0..3).map(|u| (u, 2)));
        b.compute(&k, Lanes::detect());
        assert!(b.get(2).is_some());
        assert_eq!(b.get(3), None);
        b.clear();
        assert_eq!(b.get(0), None);
    }

    #[test]
    fn a_batch_mac_serves_only_its_own_inputs() {
        let (k, other) = (key(0), key(1));
        let mut b = TokenBatch::default();
        b.fill([(1, 0x7000_0000)]);
        b.compute(&k, Lanes::detect());
        let m = b.get(0).unwrap();
        assert_eq!(m.mac_for(1, 0x7000_0000), Some(0xfde4d5f5c2fb608a));
        // Other inputs are not answered from the batch.
        assert_eq!(m.mac_for(2, 0x7000_0000), None);
        assert_eq!(m.mac_for(1, 0x7000_0001), None);
        assert_ne!(other.token(1, 0x7000_0000), 0xfde4d5f5c2fb608a);
    }

    #[test]
    fn new_inputs_hand_out_no_mac_until_computed() {
        let k = key(0);
        let mut b = TokenBatch::default();
        b.fill([(1, 0x7000_0000)]);
        assert_eq!(b.get(0), None);
        b.compute(&k, Lanes::detect());
        let m = b.get(0).and_then(|m| m.mac_for(1, 0x7000_0000));
        assert_eq!(m, Some(0xfde4d5f5c2fb608a));
        // Other inputs in the same slot, not computed: the old MAC must not serve them.
        b.fill([(2, 0x7000_0000)]);
        assert_eq!(b.get(0), None);
        b.compute(&k, Lanes::scalar());
        assert!(b.get(0).is_some());
        b.clear();
        assert_eq!(b.get(0), None);
        // Filled a request at a time: likewise, and only the requests set count.
        b.fill([(1, 0x7000_0000), (3, 0x7000_0000)]);
        b.compute(&k, Lanes::detect());
        let mut r = b.refill();
        r.put(0, 2, 0x7000_0000);
        r.put(TOKEN_BATCH, 9, 9);
        r.finish(1);
        assert_eq!(b.get(0), None);
        b.compute(&k, Lanes::detect());
        assert_eq!(b.computed().len(), 1);
        let m = b.get(0).and_then(|m| m.mac_for(2, 0x7000_0000));
        assert_eq!(m, Some(k.token(2, 0x7000_0000)));
        // A refill never finished leaves the batch empty.
        let _ = b.refill();
        b.compute(&k, Lanes::detect());
        assert_eq!(b.get(0), None);
    }

    proptest::proptest! {
        /// A batch of any length, in lanes and without, equals `token` one at a time.
        #[test]
        fn batch_equals_one_at_a_time(
            k in proptest::prelude::any::<[u8; 16]>(),
            inputs in proptest::collection::vec(
                proptest::prelude::any::<(u64, u32)>(), 0..=TOKEN_BATCH),
        ) {
            let key = MacKey::from_bytes(k);
            for lanes in [Lanes::detect(), Lanes::scalar()] {
                let mut b = TokenBatch::default();
                b.fill(inputs.iter().copied());
                b.compute(&key, lanes);
                for (i, &(u, e)) in inputs.iter().enumerate() {
                    let m = b.get(i).unwrap();
                    proptest::prop_assert_eq!(m, &TokenMac { user_id: u, expiry: e, mac: key.token(u, e) });
                }
                proptest::prop_assert_eq!(b.get(inputs.len()), None);
            }
        }
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let k = key(0x10);
        assert_eq!(MacKey::from_hex(&k.to_hex()), Some(k));
        assert_eq!(
            MacKey::from_hex(" 101112131415161718191a1b1c1d1e1f\n"),
            Some(k)
        );
        assert_eq!(MacKey::from_hex("1011"), None);
        assert_eq!(MacKey::from_hex("zz1112131415161718191a1b1c1d1e1f"), None);
        assert_eq!(format!("{k:?}"), "MacKey(..)");
    }

    #[test]
    fn key_file_errors_say_what_is_wrong_once_and_not_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let message = |text: &str| {
            std::fs::write(&path, text).unwrap();
            let e = MacKey::load(&path).unwrap_err();
            assert!(std::error::Error::source(&e).is_none(), "{e}");
            let m = e.to_string();
            assert_eq!(m.matches("k.key").count(), 1, "{m}");
            m
        };
        assert!(
            message("0011\n").ends_with("k.key: 4 hex digits; a key is 32 hex digits (16 bytes)")
        );
        let m = message("101112131415161718191a1b1c1d1e1g");
        assert!(m.contains("not a hex digit at position 32"), "{m}");
        assert!(!m.contains("1011121314"), "{m} shows the key");
        assert!(message("1011 1213").contains("whitespace at position 5"));
        assert!(message("").contains("0 hex digits"));
        std::fs::remove_file(&path).unwrap();
        let e = MacKey::load(&path).unwrap_err().to_string();
        assert!(
            e.ends_with("k.key: cannot read: No such file or directory (os error 2)"),
            "{e}"
        );
    }
}
