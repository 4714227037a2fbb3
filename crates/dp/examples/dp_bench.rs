//! Releases per second for a 1,000-cell histogram through the whole path: ledger
//! charge (one fsynced line), OpenDP discrete Laplace noise on every cell, and
//! suppression. Prints the median of 5 runs.
//!
//! `cargo run --release -p polity-dp --example dp_bench`

use std::time::Instant;

use polity_dp::{
    Aggregator, AggregatorConfig, CountSpec, DatasetGroup, DatasetId, DatasetPolicy, DpError,
    Epsilon, GroupPolicy,
};

const CELLS: usize = 1_000;
const RELEASES_PER_RUN: usize = 50;
const RUNS: usize = 5;

fn main() -> Result<(), DpError> {
    let dir = std::env::temp_dir().join(format!("polity-dp-bench-{}", std::process::id()));
    let group = DatasetGroup::new("bench-population")?;
    let dataset = DatasetId::new("bench/histogram")?;
    let config = AggregatorConfig {
        k: 10,
        groups: vec![GroupPolicy {
            id: group.clone(),
            // A benchmark spends far more than any citizen may: it leaves the anchor.
            per_citizen_annual_epsilon: 1_000_000.0,
            leave_anchor: true,
        }],
        datasets: vec![DatasetPolicy {
            id: dataset.clone(),
            group,
            max_contributions_per_citizen: 1,
        }],
    };
    let aggregator = Aggregator::open(&dir, config)?;
    // A city-sized spread of counts, including small cells that get suppressed.
    let cells: Vec<(String, u64)> = (0..CELLS)
        .map(|i| (format!("cell-{i}"), (i as u64 * 37) % 5_000))
        .collect();
    let spec = CountSpec {
        epsilon: Epsilon::from_f64(1.0)?,
        max_contributions_per_citizen: 1,
    };

    let mut rates = Vec::with_capacity(RUNS);
    let mut suppressed = 0;
    for run in 1..=RUNS {
        let start = Instant::now();
        for _ in 0..RELEASES_PER_RUN {
            let released = aggregator.release_counts(&dataset, &cells, spec)?;
            suppressed = released.iter().filter(|c| c.value.is_none()).count();
        }
        let rate = RELEASES_PER_RUN as f64 / start.elapsed().as_secs_f64();
        println!(
            "run {run}: {rate:.1} releases/s ({:.0} noisy cells/s)",
            rate * CELLS as f64
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[RUNS / 2];
    println!(
        "median of {RUNS}: {median:.1} releases/s of a {CELLS}-cell histogram \
         ({:.0} cells/s; {suppressed} cells suppressed in the last release)",
        median * CELLS as f64
    );
    drop(aggregator);
    if let Err(error) = std::fs::remove_dir_all(&dir) {
        eprintln!("could not remove {}: {error}", dir.display());
    }
    Ok(())
}
