//! A fast PRNG for the workers' win and greeting draws and for seed planning.
//!
//! A shared piece below both of its users, the engine and the seeds, so neither reaches
//! into the other for it.
//!
//! wyrand: one multiply per draw, 64-bit state, passes BigCrush/PractRand. Draws need to be
//! fair and cheap, not secret: what a user wins is bounded by pacing and limits, not by the
//! unpredictability of this generator.

/// The wyrand generator.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.state as u128).wrapping_mul((self.state ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Uniform in `0..n` (n > 0), by the multiply-shift method (bias below 2^-32 for n < 2^32).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// A probability as a threshold for `next_u64() < threshold` draws, so the hot path compares
/// integers instead of converting to floating point.
pub fn threshold(p: f64) -> u64 {
    if p <= 0.0 {
        0
    } else if p >= 1.0 {
        u64::MAX
    } else {
        (p * 18_446_744_073_709_551_616.0) as u64
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn deterministic_for_a_seed_and_different_across_seeds() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(1);
                move |_| r.next_u64()
            })
            .collect();
        let mut r = Rng::new(1);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        let mut r2 = Rng::new(2);
        assert_ne!(a[0], r2.next_u64());
    }

    #[test]
    fn draws_match_their_probability() {
        let mut r = Rng::new(42);
        let t = threshold(0.25);
        let n = 200_000;
        let hits = (0..n).filter(|_| r.next_u64() < t).count();
        let share = hits as f64 / n as f64;
        assert!((share - 0.25).abs() < 0.01, "{share}");
        let below: Vec<u64> = (0..10_000).map(|_| r.below(7)).collect();
        assert!(below.iter().all(|&x| x < 7));
        for k in 0..7 {
            let c = below.iter().filter(|&&x| x == k).count();
            assert!((1_200..1_650).contains(&c), "{k}: {c}");
        }
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(1.0), u64::MAX);
    }
}
