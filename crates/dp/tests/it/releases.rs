//! What a national view receives: noisy, k-suppressed counts and sums.

use polity_dp::{Aggregator, CountSpec, DpError, SumSpec};

use crate::{config, ds, eps};

/// A cap high enough for statistical tests (this leaves the anchor on purpose).
const TEST_CAP: f64 = 1_000_000.0;

fn open() -> (tempfile::TempDir, Aggregator) {
    let dir = tempfile::tempdir().expect("tempdir");
    let aggregator = Aggregator::open(dir.path(), config(TEST_CAP)).expect("open");
    (dir, aggregator)
}

fn one_cell(aggregator: &Aggregator, count: u64, epsilon: f64) -> Option<u64> {
    let spec = CountSpec {
        epsilon: eps(epsilon),
        max_contributions_per_citizen: 1,
    };
    let cells = aggregator
        .release_counts(&ds("energy"), &[("district-1".to_owned(), count)], spec)
        .expect("release");
    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0].label, "district-1");
    cells[0].value
}

#[test]
fn small_cells_are_suppressed_and_large_ones_never() {
    let (_dir, aggregator) = open();
    // True count 3, ε = 1, m = 1 (scale 1): published only if the noise is ≥ 7, with
    // probability e^-7/(1+e^-1) ≈ 6.7e-4 per release. Requiring ≥ 190 of 200
    // suppressed fails only if ≥ 11 escape: probability below 1e-20.
    let suppressed = (0..200)
        .filter(|_| one_cell(&aggregator, 3, 1.0).is_none())
        .count();
    assert!(suppressed >= 190, "only {suppressed} of 200 suppressed");
    // True count 1000: suppressed only if the noise is ≤ -991, probability ~e^-991.
    for _ in 0..200 {
        let value = one_cell(&aggregator, 1_000, 1.0).expect("never suppressed");
        assert!(value >= 10);
    }
}

#[test]
fn published_values_are_never_below_k() {
    let (_dir, aggregator) = open();
    // Counts around k with heavy noise (ε = 0.1, scale 10): values just under k appear
    // often before suppression; none may be published.
    let cells: Vec<(String, u64)> = (0..500).map(|i| (format!("c{i}"), i % 20)).collect();
    let spec = CountSpec {
        epsilon: eps(0.1),
        max_contributions_per_citizen: 1,
    };
    let released = aggregator
        .release_counts(&ds("energy"), &cells, spec)
        .expect("release");
    assert!(
        released.iter().any(|c| c.value.is_none()),
        "nothing suppressed"
    );
    assert!(
        released.iter().any(|c| c.value.is_some()),
        "everything suppressed"
    );
    for cell in released.iter().filter_map(|c| c.value) {
        assert!(cell >= aggregator.k(), "{cell} published below k");
    }
}

#[test]
fn noise_varies_between_releases_and_is_integer() {
    let (_dir, aggregator) = open();
    let cells: Vec<(String, u64)> = (0..1_000).map(|i| (format!("cell-{i}"), 500)).collect();
    let spec = CountSpec {
        epsilon: eps(1.0),
        max_contributions_per_citizen: 1,
    };
    let first = aggregator
        .release_counts(&ds("energy"), &cells, spec)
        .expect("release");
    let second = aggregator
        .release_counts(&ds("energy"), &cells, spec)
        .expect("release");
    // Labels and order kept.
    assert!(
        first
            .iter()
            .zip(&cells)
            .all(|(out, (label, _))| &out.label == label)
    );
    let values = |r: &[polity_dp::Cell]| {
        r.iter()
            .map(|c| c.value.expect("500 is never suppressed"))
            .collect::<Vec<u64>>()
    };
    let (a, b) = (values(&first), values(&second));
    // P(noise = 0) = (1-e^-1)/(1+e^-1) ≈ 0.46 per cell; all 1,000 unchanged: ~1e-337.
    assert!(a.iter().any(|v| *v != 500), "no noise added");
    assert_ne!(a, b, "two releases gave identical noise");
}

#[test]
fn noisy_counts_are_unbiased() {
    let (_dir, aggregator) = open();
    // 2,000 releases of a true count of 500 at ε = 0.5 (scale s = 2). The discrete
    // Laplace variance is 2a/(1-a)^2 with a = e^(-1/s) ≈ 7.83, so the mean of 2,000
    // has standard deviation ≈ 0.063. The tolerance is 6 of those (≈ 0.38): with
    // exponential tails the normal approximation holds, and a false failure has
    // probability about 2e-9.
    let n = 2_000;
    let sum: u64 = (0..n)
        .map(|_| one_cell(&aggregator, 500, 0.5).expect("not suppressed"))
        .sum();
    let mean = sum as f64 / f64::from(n);
    let a = (-0.5f64).exp();
    let variance = 2.0 * a / (1.0 - a).powi(2);
    let tolerance = 6.0 * (variance / f64::from(n)).sqrt();
    assert!(
        (mean - 500.0).abs() < tolerance,
        "mean {mean}, tolerance {tolerance}"
    );
}

#[test]
fn sums_are_clamped_noisy_and_suppressed_when_few() {
    let (_dir, aggregator) = open();
    let spec = SumSpec {
        epsilon: eps(1.0),
        max_contributions_per_citizen: 1,
        bounds: (0, 10_000),
    };
    // 1,000 households at 5,000 Wh and one outlier clamped to 10,000.
    let mut values = vec![5_000i64; 1_000];
    values.push(50_000_000);
    let release = aggregator
        .release_sum(&ds("energy"), &values, spec)
        .expect("release");
    let count = release.count.expect("1,001 records are published");
    let sum = release.sum.expect("published");
    let mean = release.mean.expect("published");
    // Count scale 2, sum scale 10,000/0.5 = 20,000: tolerances are 25 scales (~e^-25).
    assert!(count.abs_diff(1_001) < 50, "count {count}");
    assert!(
        (sum - 5_010_000).abs() < 500_000,
        "sum {sum} (the outlier was not clamped?)"
    );
    assert!((mean - 5_005.0).abs() < 600.0, "mean {mean}");
    assert!((0.0..=10_000.0).contains(&mean));

    // Three households: the noisy count is below k, so nothing is published.
    let few = aggregator
        .release_sum(&ds("energy"), &[4_000, 6_000, 5_000], spec)
        .expect("release");
    assert_eq!((few.count, few.sum, few.mean), (None, None, None));
    let mean = aggregator
        .release_mean(&ds("energy"), &values, spec)
        .expect("release");
    assert!(mean.is_some());
}

#[test]
fn malformed_queries_are_refused_without_charging() {
    let (_dir, aggregator) = open();
    let spec = CountSpec {
        epsilon: eps(1.0),
        max_contributions_per_citizen: 1,
    };
    let duplicate = [("a".to_owned(), 1), ("a".to_owned(), 2)];
    assert!(matches!(
        aggregator.release_counts(&ds("energy"), &duplicate, spec),
        Err(DpError::InvalidQuery(_))
    ));
    let zero_bound = CountSpec {
        max_contributions_per_citizen: 0,
        ..spec
    };
    assert!(matches!(
        aggregator.release_counts(&ds("energy"), &[("a".to_owned(), 1)], zero_bound),
        Err(DpError::InvalidQuery(_))
    ));
    assert!(matches!(
        aggregator.release_counts(&ds("unknown"), &[("a".to_owned(), 1)], spec),
        Err(DpError::UnknownDataset(_))
    ));
    let bad_bounds = SumSpec {
        epsilon: eps(1.0),
        max_contributions_per_citizen: 1,
        bounds: (10, 0),
    };
    assert!(matches!(
        aggregator.release_sum(&ds("energy"), &[1], bad_bounds),
        Err(DpError::InvalidQuery(_))
    ));
    assert!(
        aggregator
            .release_counts(&ds("energy"), &[], spec)
            .expect("empty")
            .is_empty()
    );
    assert_eq!(
        aggregator.budget(&ds("energy")).expect("budget").spent,
        polity_dp::Epsilon::ZERO
    );
}

#[test]
fn aggregator_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Aggregator>();
    let (_dir, aggregator) = open();
    let aggregator = std::sync::Arc::new(aggregator);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let aggregator = aggregator.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    one_cell(&aggregator, 100, 0.25);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("thread");
    }
    // 100 charges of exactly 0.25 ε.
    assert_eq!(
        aggregator.budget(&ds("energy")).expect("budget").spent,
        eps(25.0)
    );
}
