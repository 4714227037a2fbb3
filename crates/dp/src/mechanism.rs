//! The noise: thin wrappers over OpenDP measurements on integer domains.
//!
//! Owns the calibration (scale from ε and sensitivity) and the check that OpenDP's own
//! privacy map agrees. Does not charge budget, suppress, or round: callers do that,
//! and these functions are private to the crate so nothing releases uncharged.
//!
//! Every mechanism here is OpenDP's `make_laplace` on an integer domain, which samples
//! the discrete Laplace distribution exactly (Canonne–Kamath–Steinke 2020) with
//! rational arithmetic: no floating-point noise and no Mironov-style holes.
//! Sensitivities are not computed by hand: the measurement's privacy map (OpenDP's
//! stability maps for clamp, sum and count, chained with the Laplace map) turns the
//! contribution bound into ε, and the release is refused if that exceeds the ε paid.

use opendp::combinators::{make_chain_mt, make_chain_tt};
use opendp::core::Measurement;
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::error::Error as OpenDpError;
use opendp::measurements::make_laplace;
use opendp::measures::MaxDivergence;
use opendp::metrics::{AbsoluteDistance, L1Distance, SymmetricDistance};
use opendp::transformations::{make_clamp, make_count, make_sum};

use crate::{DpError, Epsilon, Result};

/// How many times the scale is nudged up to absorb float rounding in the map.
const CALIBRATION_STEPS: usize = 16;

fn odp(e: OpenDpError) -> DpError {
    match e.message {
        Some(message) => DpError::Mechanism(format!("{}: {message}", e.variant)),
        None => DpError::Mechanism(e.variant.to_string()),
    }
}

/// Builds `build(scale)` with `scale = sensitivity / ε` and checks, with the
/// measurement's own privacy map at `d_in`, that it spends at most `ε`. If float
/// rounding makes the map report a hair more, the scale is nudged up (more noise).
fn calibrate<DI, MI, TO>(
    epsilon: Epsilon,
    sensitivity: f64,
    d_in: &MI::Distance,
    build: impl Fn(f64) -> Result<Measurement<DI, MI, MaxDivergence, TO>>,
) -> Result<Measurement<DI, MI, MaxDivergence, TO>>
where
    DI: opendp::core::Domain,
    MI: opendp::core::Metric,
    (DI, MI): opendp::core::MetricSpace,
{
    let target = epsilon.as_f64();
    if target <= 0.0 || !sensitivity.is_finite() || sensitivity <= 0.0 {
        return Err(DpError::InvalidQuery(
            "ε and the sensitivity must both be greater than 0".into(),
        ));
    }
    let mut scale = sensitivity / target;
    for _ in 0..CALIBRATION_STEPS {
        let measurement = build(scale)?;
        let spent = measurement.map(d_in).map_err(odp)?;
        if spent <= target {
            return Ok(measurement);
        }
        scale = scale.next_up();
    }
    Err(DpError::Mechanism(format!(
        "could not calibrate noise to ε = {epsilon} for sensitivity {sensitivity}"
    )))
}

/// Adds discrete Laplace noise to each count of a histogram whose cells are disjoint
/// and where each citizen adds at most `max_contributions` records (so the L1
/// distance between neighbouring histograms is at most `max_contributions`).
pub(crate) fn noisy_counts(
    counts: &[i64],
    max_contributions: u32,
    epsilon: Epsilon,
) -> Result<Vec<i64>> {
    let d_in = i64::from(max_contributions);
    let measurement = calibrate(epsilon, d_in as f64, &d_in, |scale| {
        make_laplace::<_, _, MaxDivergence>(
            VectorDomain::new(AtomDomain::<i64>::default()),
            L1Distance::<i64>::default(),
            scale,
            None,
        )
        .map_err(odp)
    })?;
    measurement.invoke(&counts.to_vec()).map_err(odp)
}

/// Clamps each record to `bounds`, sums, and adds discrete Laplace noise; each citizen
/// adds at most `max_contributions` records (symmetric distance).
pub(crate) fn noisy_sum(
    values: &[i64],
    bounds: (i64, i64),
    max_contributions: u32,
    epsilon: Epsilon,
) -> Result<i64> {
    let (lo, hi) = bounds;
    let per_record = lo.unsigned_abs().max(hi.unsigned_abs()) as f64;
    let input = VectorDomain::new(AtomDomain::<i64>::default());
    let clamp = make_clamp(input, SymmetricDistance, bounds).map_err(odp)?;
    let sum = make_sum(clamp.output_domain.clone(), SymmetricDistance).map_err(odp)?;
    let clamp_sum = make_chain_tt(&sum, &clamp).map_err(odp)?;
    let measurement = calibrate(
        epsilon,
        f64::from(max_contributions) * per_record,
        &max_contributions,
        |scale| {
            let laplace = make_laplace::<_, _, MaxDivergence>(
                AtomDomain::<i64>::default(),
                AbsoluteDistance::<i64>::default(),
                scale,
                None,
            )
            .map_err(odp)?;
            make_chain_mt(&laplace, &clamp_sum).map_err(odp)
        },
    )?;
    measurement.invoke(&values.to_vec()).map_err(odp)
}

/// Counts the records and adds discrete Laplace noise; each citizen adds at most
/// `max_contributions` records.
pub(crate) fn noisy_record_count(
    values: &[i64],
    max_contributions: u32,
    epsilon: Epsilon,
) -> Result<i64> {
    let count = make_count::<i64, i64>(
        VectorDomain::new(AtomDomain::<i64>::default()),
        SymmetricDistance,
    )
    .map_err(odp)?;
    let measurement = calibrate(
        epsilon,
        f64::from(max_contributions),
        &max_contributions,
        |scale| {
            let laplace = make_laplace::<_, _, MaxDivergence>(
                AtomDomain::<i64>::default(),
                AbsoluteDistance::<i64>::default(),
                scale,
                None,
            )
            .map_err(odp)?;
            make_chain_mt(&laplace, &count).map_err(odp)
        },
    )?;
    measurement.invoke(&values.to_vec()).map_err(odp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_noisy_integers_near_the_truth() {
        let eps = Epsilon::from_f64(1.0).expect("valid");
        let truth = vec![1_000i64; 200];
        let noisy = noisy_counts(&truth, 1, eps).expect("release");
        assert_eq!(noisy.len(), truth.len());
        assert!(noisy.iter().any(|v| *v != 1_000), "no noise was added");
        // scale 1: |noise| > 40 has probability ~e^-40 per cell.
        assert!(noisy.iter().all(|v| (v - 1_000).abs() < 40), "{noisy:?}");
    }

    #[test]
    fn sum_clamps_to_bounds() {
        // 100 records of 1,000,000 clamped to 10 each: the sum is near 1,000, not 10^8.
        let eps = Epsilon::from_f64(1.0).expect("valid");
        let values = vec![1_000_000i64; 100];
        let noisy = noisy_sum(&values, (0, 10), 1, eps).expect("release");
        assert!((noisy - 1_000).abs() < 400, "{noisy}");
    }

    #[test]
    fn record_count_is_noisy_count() {
        let eps = Epsilon::from_f64(2.0).expect("valid");
        let noisy = noisy_record_count(&vec![5i64; 500], 1, eps).expect("release");
        assert!((noisy - 500).abs() < 40, "{noisy}");
    }

    #[test]
    fn zero_epsilon_is_refused() {
        assert!(noisy_counts(&[1], 1, Epsilon::ZERO).is_err());
    }
}
