//! RFC 1071 internet checksum.
//!
//! The checksum is the ones-complement of the ones-complement sum of the data taken as 16-bit
//! big-endian words. [`sum`] returns a *partial* sum (not complemented) so that several regions
//! (pseudo header, header, payload) can be added as plain `u32`s; [`fold`] reduces such a total
//! to 16 bits and [`checksum`] is the complemented result for one region.
//!
//! A region verifies when `fold(sum(region_with_checksum_field)) == 0xffff`.

/// Partial ones-complement sum of `data` as 16-bit big-endian words; an odd trailing byte is
/// padded with a zero byte on the right.
///
/// The result is already reduced to at most `0xffff`, so callers can add a handful of partial
/// sums (and a [`pseudo_header_v4`]) in a `u32` without overflow before calling [`fold`]. It is
/// zero only if every word of `data` is zero.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    sum_native(data)
}

/// [`sum`] of a fixed-size region (a header, a SHAKE/1 payload): the same value, with the
/// loop fully unrolled into loads and add-with-carry.
#[inline]
pub fn sum_array<const N: usize>(data: &[u8; N]) -> u32 {
    sum_native(data)
}

/// A ones-complement sum kept in native byte order and unreduced, for a datapath that sums
/// several fixed regions and folds once.
///
/// By RFC 1071 section 2.B the sum of the data taken as native-endian words is the byte swap
/// of the big-endian sum; a checksum computed in native order is therefore written with
/// `to_ne_bytes` and needs no swap at all, and the "verifies" test (`0xffff`) reads the same
/// in either order.
///
/// Words are 64 bits wide and each carry goes into the next add (end-around carry, as
/// 2^64 is 1 modulo 0xffff), which compiles to one add-with-carry per 8 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NativeSum {
    acc: u64,
    carry: bool,
}

impl NativeSum {
    /// Adds one native-endian 64-bit word.
    #[inline(always)]
    pub fn add_word(self, word: u64) -> Self {
        let (s, c1) = self.acc.overflowing_add(word);
        let (s, c2) = s.overflowing_add(u64::from(self.carry));
        NativeSum {
            acc: s,
            carry: c1 | c2,
        }
    }

    /// Adds a region; `N` must be even for the words of regions added after it to line up.
    #[inline(always)]
    pub fn add_bytes<const N: usize>(self, data: &[u8; N]) -> Self {
        self.add_slice(data)
    }

    /// Adds a 16-bit word given in host order as it would appear big-endian on the wire
    /// (a pseudo-header protocol or length).
    #[inline(always)]
    pub fn add_be_word(self, word: u16) -> Self {
        self.add_word(u64::from(u16::from_ne_bytes(word.to_be_bytes())))
    }

    /// The folded sum, in native order: `0xffff` when the data verifies; `!folded` is the
    /// checksum, to be stored with `to_ne_bytes`. Zero only if every word added was zero.
    #[inline(always)]
    pub fn fold(self) -> u16 {
        // The last carry, end-around; adding it cannot carry again unless the sum wraps to 0.
        let (s, c) = self.acc.overflowing_add(u64::from(self.carry));
        fold64(s.wrapping_add(u64::from(c)))
    }

    /// Plain sum of `data` as native-endian 64-bit words (a short tail padded with zeros on
    /// the right).
    #[inline(always)]
    fn add_slice(mut self, data: &[u8]) -> Self {
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self = self.add_word(u64::from_ne_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // Zero padding on the right keeps an odd trailing byte in the high half of its word.
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self = self.add_word(u64::from_ne_bytes(w));
        }
        self
    }
}

/// Folds a 64-bit ones-complement sum to 16 bits. Adding a word to itself rotated by half its
/// width leaves the end-around sum of its two halves in the upper half, carry included.
#[inline(always)]
fn fold64(x: u64) -> u16 {
    let t = x.wrapping_add(x.rotate_left(32));
    fold32((t >> 32) as u32)
}

#[inline(always)]
fn sum_native(data: &[u8]) -> u32 {
    // The ones-complement sum is byte-order independent (RFC 1071 section 2.B): summing the
    // data as native-endian words and swapping the folded result gives the big-endian sum.
    // So the loop is a plain load and add-with-carry per 8 bytes, with no byte swaps.
    let native = NativeSum::default().add_slice(data).fold();
    u32::from(u16::from_be(native))
}

/// The ones'-complement sum of the two 16-bit halves of `v`, end-around carry included: the
/// upper half of `v + v.rotate_left(16)`. Zero only for zero. In either byte order, as the
/// sums (RFC 1071 2.B).
#[inline(always)]
pub fn fold32(v: u32) -> u16 {
    (v.wrapping_add(v.rotate_left(16)) >> 16) as u16
}

/// The ones'-complement sum of two 16-bit words. Zero only if both are. One fold where
/// [`fold`] takes two: the sum of two words is at most 17 bits.
#[inline(always)]
pub fn add16(a: u16, b: u16) -> u16 {
    let s = u32::from(a) + u32::from(b);
    ((s & 0xffff) + (s >> 16)) as u16
}

/// Fold the carries of a 32-bit ones-complement accumulator into 16 bits (not complemented).
#[inline]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The internet checksum of `data`: the complement of its folded sum.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// Partial sum of the IPv4 pseudo header used by UDP (and TCP): source and destination
/// address, zero byte, protocol, and the transport length.
#[inline]
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, length: u16) -> u32 {
    u32::from(u16::from_be_bytes([src[0], src[1]]))
        + u32::from(u16::from_be_bytes([src[2], src[3]]))
        + u32::from(u16::from_be_bytes([dst[0], dst[1]]))
        + u32::from(u16::from_be_bytes([dst[2], dst[3]]))
        + u32::from(protocol)
        + u32::from(length)
}

/// Partial sum of the IPv6 pseudo header (RFC 8200 8.1) used by UDP and ICMPv6: source and
/// destination address, the upper-layer length, zeros and the next-header value. Reduced to
/// at most `0xffff`, like [`sum`], so it adds to other partial sums in a `u32`.
#[inline]
pub fn pseudo_header_v6(src: [u8; 16], dst: [u8; 16], next_header: u8, length: u32) -> u32 {
    let addrs = NativeSum::default().add_bytes(&src).add_bytes(&dst).fold();
    let s = u32::from(u16::from_be(addrs))
        + (length >> 16)
        + (length & 0xffff)
        + u32::from(next_header);
    u32::from(fold(s))
}

/// Incremental update (RFC 1624, eqn. 3) of a checksum when one 16-bit word of the covered
/// data changes from `old_word` to `new_word`: `HC' = ~(~HC + ~m + m')`.
///
/// Equals a full recompute whenever the covered data, after the change, has a non-zero word
/// other than the checksum (always true for an IPv4 header: the version nibble). In the one
/// degenerate case where all the other words become zero it returns `0x0000` where a full
/// recompute gives `0xffff`; callers that can meet that case (ICMP, see
/// `IcmpPacket::make_echo_reply`) transmit `0xffff` for a computed `0`, which always verifies.
#[inline]
pub fn update(old_checksum: u16, old_word: u16, new_word: u16) -> u16 {
    !fold(u32::from(!old_checksum) + u32::from(!old_word) + u32::from(new_word))
}

#[cfg(test)]
mod test {
    proptest::proptest! {
        /// fold32 and add16 give what the general sum gives, of any words.
        #[test]
        fn fold32_and_add16_equal_the_general_sum(v in proptest::prelude::any::<u32>(), w in proptest::prelude::any::<u16>()) {
            let general = |words: &[u16]| fold(words.iter().map(|&x| u32::from(x)).sum());
            proptest::prop_assert_eq!(super::fold32(v), general(&[v as u16, (v >> 16) as u16]));
            proptest::prop_assert_eq!(
                super::add16(super::fold32(v), w),
                general(&[v as u16, (v >> 16) as u16, w])
            );
        }
    }

    use super::*;
    use proptest::prelude::*;

    /// The pseudo-header sum is the sum of the header as RFC 8200 8.1 draws it.
    #[test]
    fn pseudo_header_v6_is_the_drawn_header() {
        let src = [
            0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe, 0x12, 0x34,
        ];
        let dst = [
            0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0, 0xff, 0xfe, 0x12, 0x34, 0x56,
        ];
        for length in [8u32, 72, 0x1_0004] {
            let mut drawn = Vec::new();
            drawn.extend_from_slice(&src);
            drawn.extend_from_slice(&dst);
            drawn.extend_from_slice(&length.to_be_bytes());
            drawn.extend_from_slice(&[0, 0, 0, 17]);
            assert_eq!(
                fold(pseudo_header_v6(src, dst, 17, length)),
                fold(sum(&drawn)),
                "{length}"
            );
        }
    }

    /// Reference: the obvious 16-bit-word loop.
    fn sum_ref(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            acc += u32::from(w);
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn ipv4_header_known_value() {
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(
            fold(sum(&hdr)),
            0xffff,
            "verifies with its checksum in place"
        );
        hdr[10] = 0;
        hdr[11] = 0;
        assert_eq!(checksum(&hdr), 0xb861);
    }

    #[test]
    fn odd_length_pads_right() {
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0xab]), 0x1234 + 0xab00);
    }

    #[test]
    fn empty_and_all_ones() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(checksum(&[]), 0xffff);
        assert_eq!(fold(sum(&[0xff; 64])), 0xffff);
    }

    #[test]
    fn pseudo_header_known_value() {
        // 192.168.0.1 -> 192.168.0.199, UDP, length 0x5f.
        let p = pseudo_header_v4([192, 168, 0, 1], [192, 168, 0, 199], 17, 0x5f);
        assert_eq!(p, 0xc0a8 + 0x0001 + 0xc0a8 + 0x00c7 + 17 + 0x5f);
    }

    #[test]
    fn update_rfc1624_example() {
        // RFC 1624 section 4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285, HC' = 0x0000.
        assert_eq!(update(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    proptest! {
        #[test]
        fn sum_matches_reference(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(fold(sum(&data)), sum_ref(&data));
            prop_assert!(sum(&data) <= 0xffff);
        }

        #[test]
        fn sum_array_equals_sum(a in any::<[u8; 20]>(), b in any::<[u8; 32]>(), c in any::<[u8; 13]>()) {
            prop_assert_eq!(sum_array(&a), sum(&a));
            prop_assert_eq!(sum_array(&b), sum(&b));
            prop_assert_eq!(sum_array(&c), sum(&c));
            let big = [0xffu8; 64];
            prop_assert_eq!(fold(sum_array(&big)), sum_ref(&big));
        }

        #[test]
        fn native_sum_matches_big_endian_sum(
            a in any::<[u8; 8]>(),
            b in any::<[u8; 64]>(),
            w in any::<u16>(),
        ) {
            let mut both = a.to_vec();
            both.extend_from_slice(&b);
            both.extend_from_slice(&w.to_be_bytes());
            let n = NativeSum::default().add_bytes(&a).add_bytes(&b).add_be_word(w).fold();
            prop_assert_eq!(u16::from_be_bytes(n.to_ne_bytes()), fold(sum(&both)));
        }

        #[test]
        fn native_sum_carries_at_the_extremes(
            words in proptest::collection::vec(
                prop_oneof![Just(u64::MAX), Just(u64::MAX - 1), Just(1u64), Just(0u64), any::<u64>()],
                0..12,
            ),
        ) {
            // Long runs of all-ones words carry on every add, and can leave the sum at
            // all-ones with a carry still pending.
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
            let n = words.iter().fold(NativeSum::default(), |s, &w| s.add_word(w)).fold();
            prop_assert_eq!(u16::from_be_bytes(n.to_ne_bytes()), sum_ref(&bytes));
        }

        #[test]
        fn sum_is_additive_over_even_splits(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            split in 0usize..100,
        ) {
            let split = (split * 2).min(data.len() & !1);
            let (a, b) = data.split_at(split);
            prop_assert_eq!(fold(sum(a) + sum(b)), fold(sum(&data)));
        }

        #[test]
        fn incremental_update_equals_full_recompute(
            words in proptest::collection::vec(any::<u16>(), 1..30),
            index in any::<prop::sample::Index>(),
            new_word in any::<u16>(),
        ) {
            // Word 0 is a fixed non-zero word (like an IPv4 version/IHL byte), word 1 the
            // checksum field, the rest arbitrary.
            let mut data: Vec<u8> = [0x4500u16, 0].iter().chain(&words)
                .flat_map(|w| w.to_be_bytes()).collect();
            let ck = checksum(&data);
            data[2..4].copy_from_slice(&ck.to_be_bytes());

            let i = 2 + index.index(words.len());
            let old_word = u16::from_be_bytes([data[2 * i], data[2 * i + 1]]);
            data[2 * i..2 * i + 2].copy_from_slice(&new_word.to_be_bytes());
            let incremental = update(ck, old_word, new_word);

            data[2..4].copy_from_slice(&[0, 0]);
            let full = checksum(&data);
            prop_assert_eq!(incremental, full);
            data[2..4].copy_from_slice(&incremental.to_be_bytes());
            prop_assert_eq!(fold(sum(&data)), 0xffff);
        }
    }
}
