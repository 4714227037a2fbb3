//! Deterministic pseudo-randomness: SplitMix64, and stateless hashing of keys.
//!
//! The simulator must give the same nation, the same devices and the same readings for
//! the same seed, on every machine, without an external RNG crate. Two tools cover that:
//!
//! - [`SplitMix64`] (Steele, Lea and Flood, "Fast splittable pseudorandom number
//!   generators", OOPSLA 2014; the generator Java's `SplittableRandom` and the xoshiro
//!   authors use for seeding) for sequences, such as laying out a city's devices;
//! - [`hash()`] / [`unit()`], the SplitMix64 finalizer applied to a combination of keys, for
//!   values that must be a pure function of `(seed, device, time)` so that a reading can
//!   be recomputed at any instant without keeping state.
//!
//! Not for cryptography.

/// The SplitMix64 generator: a 64-bit counter advanced by the golden-ratio increment and
/// passed through a strong mixing function.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function (a variant of MurmurHash3's 64-bit finalizer).
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub const fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// A uniform float in `[0, 1)`, from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform float in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// An approximately standard-normal float (Irwin–Hall sum of four uniforms,
    /// rescaled): cheap, bounded to about ±3.5 σ, which is what a simulator wants.
    pub fn normal(&mut self) -> f64 {
        let s: f64 = (0..4).map(|_| self.next_f64()).sum();
        (s - 2.0) * 3f64.sqrt()
    }
}

/// A well-mixed hash of a list of keys: the same keys always give the same bits.
pub fn hash(keys: &[u64]) -> u64 {
    keys.iter().fold(0x243F_6A88_85A3_08D3, |h, &k| {
        mix64(h ^ mix64(k.wrapping_add(GOLDEN)))
    })
}

/// A uniform float in `[0, 1)` derived from `keys`.
pub fn unit(keys: &[u64]) -> f64 {
    (hash(keys) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A symmetric noise value in `[-1, 1)` derived from `keys`.
pub fn noise(keys: &[u64]) -> f64 {
    unit(keys) * 2.0 - 1.0
}

/// A stable 64-bit key for a string (FNV-1a), for mixing names into [`hash`].
pub fn key(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // Reference values for seed 1234567 from the public-domain C implementation
        // (Vigna, https://prng.di.unimi.it/splitmix64.c).
        let mut g = SplitMix64::new(1_234_567);
        assert_eq!(g.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(g.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(g.next_u64(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn same_seed_same_sequence_different_seed_different_sequence() {
        let a: Vec<u64> = (0..8)
            .scan(SplitMix64::new(42), |g, _| Some(g.next_u64()))
            .collect();
        let b: Vec<u64> = (0..8)
            .scan(SplitMix64::new(42), |g, _| Some(g.next_u64()))
            .collect();
        let c: Vec<u64> = (0..8)
            .scan(SplitMix64::new(43), |g, _| Some(g.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn floats_are_in_range_and_roughly_uniform() {
        let mut g = SplitMix64::new(7);
        let xs: Vec<f64> = (0..10_000).map(|_| g.next_f64()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        let n: Vec<f64> = (0..10_000).map(|_| g.normal()).collect();
        let m = n.iter().sum::<f64>() / n.len() as f64;
        let v = n.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n.len() as f64;
        assert!(m.abs() < 0.05 && (v - 1.0).abs() < 0.1, "mean {m} var {v}");
    }

    #[test]
    fn hashing_is_stable_and_key_sensitive() {
        assert_eq!(hash(&[1, 2, 3]), hash(&[1, 2, 3]));
        assert_ne!(hash(&[1, 2, 3]), hash(&[3, 2, 1]));
        assert_ne!(key("adelaide"), key("melbourne"));
        assert!((0.0..1.0).contains(&unit(&[9, 9])));
    }
}
