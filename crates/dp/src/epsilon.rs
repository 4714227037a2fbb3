//! ε as an exact integer number of micro-ε, so that a year of charges adds up without
//! floating-point drift: 0.1 ε charged forty times is exactly 4 ε, never 3.9999999.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{DpError, Result};

/// Micro-ε in one ε.
pub const MICROS_PER_EPSILON: u64 = 1_000_000;

/// A privacy-loss parameter ε, stored as whole micro-ε (10⁻⁶ ε).
///
/// Serialized as the integer number of micro-ε.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Epsilon(u64);

impl Epsilon {
    /// Zero ε.
    pub const ZERO: Self = Self(0);

    /// The anchor of issue #3: at most 4 ε per citizen per year.
    pub const ANCHOR_PER_CITIZEN_YEAR: Self = Self(4 * MICROS_PER_EPSILON);

    /// ε from whole micro-ε.
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// ε from a decimal number, rounded to the nearest micro-ε.
    ///
    /// Rounding to nearest (not up) keeps decimal inputs exact: `0.1` is 100,000 µε.
    /// Noise is calibrated to the rounded value, so what is charged is what is spent.
    ///
    /// # Errors
    ///
    /// [`DpError::InvalidQuery`] when `value` is not finite, is negative, or is too
    /// large to represent.
    pub fn from_f64(value: f64) -> Result<Self> {
        if !value.is_finite() || value < 0.0 {
            return Err(DpError::InvalidQuery(format!(
                "ε must be a finite number ≥ 0, got {value}"
            )));
        }
        let micros = (value * MICROS_PER_EPSILON as f64).round();
        // 2^53: beyond it f64 no longer holds every integer.
        if micros > 9_007_199_254_740_992.0 {
            return Err(DpError::InvalidQuery(format!("ε {value} is too large")));
        }
        // In range and integral: the cast is exact.
        Ok(Self(micros as u64))
    }

    /// Whole micro-ε.
    pub const fn micros(self) -> u64 {
        self.0
    }

    /// The value as `f64` (exact below 2^53 micro-ε, i.e. about 9·10⁹ ε).
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / MICROS_PER_EPSILON as f64
    }

    /// `self + other`, or `None` on overflow.
    pub const fn checked_add(self, other: Self) -> Option<Self> {
        match self.0.checked_add(other.0) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// `self - other`, floored at zero.
    pub const fn saturating_sub(self, other: Self) -> Self {
        Self(self.0.saturating_sub(other.0))
    }

    /// Whether this is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Epsilon {
    /// Exact decimal form, e.g. `4`, `0.1`, `0.000001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / MICROS_PER_EPSILON;
        let frac = self.0 % MICROS_PER_EPSILON;
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let digits = format!("{frac:06}");
            write!(f, "{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decimal_inputs_are_exact_and_add_without_drift() {
        let tenth = Epsilon::from_f64(0.1).expect("valid");
        assert_eq!(tenth.micros(), 100_000);
        let mut total = Epsilon::ZERO;
        for _ in 0..40 {
            total = total.checked_add(tenth).expect("no overflow");
        }
        assert_eq!(total, Epsilon::ANCHOR_PER_CITIZEN_YEAR);
        // The float sum drifts; the integer sum does not.
        let float_total: f64 = (0..40).map(|_| 0.1).sum();
        assert_ne!(float_total, 4.0);
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [f64::NAN, f64::INFINITY, -0.5, 1e300] {
            assert!(Epsilon::from_f64(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn display_is_exact_decimal() {
        assert_eq!(Epsilon::from_micros(4_000_000).to_string(), "4");
        assert_eq!(Epsilon::from_micros(1).to_string(), "0.000001");
        assert_eq!(Epsilon::from_micros(2_500_000).to_string(), "2.5");
    }

    proptest! {
        #[test]
        fn micros_round_trip_through_f64_and_display(micros in 0u64..(1u64 << 45)) {
            let e = Epsilon::from_micros(micros);
            prop_assert_eq!(Epsilon::from_f64(e.as_f64()).expect("valid"), e);
            let parsed: f64 = e.to_string().parse().expect("decimal");
            prop_assert_eq!(Epsilon::from_f64(parsed).expect("valid"), e);
            let json = serde_json::to_string(&e).expect("serialize");
            prop_assert_eq!(serde_json::from_str::<Epsilon>(&json).expect("parse"), e);
        }
    }
}
