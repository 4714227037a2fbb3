//! Integration tests for polity-dp: releases through the public API against a real
//! ledger file in a temporary directory.

mod budget;
mod releases;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use polity_dp::{
    Aggregator, AggregatorConfig, DatasetGroup, DatasetId, DatasetPolicy, Epsilon, GroupPolicy,
};

/// `name` as a dataset id.
pub fn ds(name: &str) -> DatasetId {
    DatasetId::new(name).expect("valid dataset id")
}

/// `value` ε.
pub fn eps(value: f64) -> Epsilon {
    Epsilon::from_f64(value).expect("valid ε")
}

/// A config with group `residents` (cap `cap`, leaving the anchor when above 4)
/// holding datasets `energy` and `mobility` (both bound 1), and group `visitors`
/// (anchor cap) holding `footfall`.
pub fn config(cap: f64) -> AggregatorConfig {
    let group = |id: &str| DatasetGroup::new(id).expect("valid group");
    let dataset = |id: &str, g: &str| DatasetPolicy {
        id: ds(id),
        group: group(g),
        max_contributions_per_citizen: 1,
    };
    AggregatorConfig {
        k: 10,
        groups: vec![
            GroupPolicy {
                id: group("residents"),
                per_citizen_annual_epsilon: cap,
                leave_anchor: cap > 4.0,
            },
            GroupPolicy::new(group("visitors")),
        ],
        datasets: vec![
            dataset("energy", "residents"),
            dataset("mobility", "residents"),
            dataset("footfall", "visitors"),
        ],
    }
}

/// A settable clock, in Unix milliseconds.
#[derive(Clone)]
pub struct TestClock(Arc<AtomicI64>);

impl TestClock {
    /// A clock at `at`.
    pub fn at(at: DateTime<Utc>) -> Self {
        Self(Arc::new(AtomicI64::new(at.timestamp_millis())))
    }

    /// Moves the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        self.0.store(at.timestamp_millis(), Ordering::SeqCst);
    }

    /// Opens an aggregator in `dir` reading this clock.
    pub fn open(&self, dir: &Path, config: AggregatorConfig) -> Aggregator {
        let millis = self.0.clone();
        Aggregator::open(dir, config)
            .expect("open aggregator")
            .with_clock(move || {
                Utc.timestamp_millis_opt(millis.load(Ordering::SeqCst))
                    .single()
                    .expect("test clock in range")
            })
    }
}

/// `year-month-day 12:00 UTC`.
pub fn day(year: i32, month: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, d, 12, 0, 0)
        .single()
        .expect("valid date")
}
