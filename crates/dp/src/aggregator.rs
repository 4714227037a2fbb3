//! The release API: declared datasets, budget charged first, OpenDP noise, then
//! k-suppression of what is published.
//!
//! Owns the DP configuration (which datasets exist, their budget groups and
//! contribution bounds, k) and the order of operations. It must not see identities or
//! raw records beyond the counts and bounded values it is handed, and does no I/O
//! besides the ledger.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use crate::ledger::{BudgetLedger, Charge, window_end};
use crate::{DatasetGroup, DatasetId, DpError, Epsilon, Result, mechanism};

/// The smallest `k` allowed: counts below 10 are never published.
pub const MIN_K: u64 = 10;

/// The ledger's file name inside the aggregator's directory.
pub const LEDGER_FILE: &str = "budget.jsonl";

fn default_k() -> u64 {
    MIN_K
}

fn default_cap() -> f64 {
    Epsilon::ANCHOR_PER_CITIZEN_YEAR.as_f64()
}

/// What the aggregator may release, and from which budgets.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatorConfig {
    /// Smallest noisy count that is published; smaller cells are suppressed. At least
    /// 10 (issue #3); may be raised, never lowered.
    #[serde(default = "default_k")]
    pub k: u64,
    /// Budget groups: one per citizen population. Each has its own annual cap.
    #[serde(default)]
    pub groups: Vec<GroupPolicy>,
    /// Datasets that may be queried. Any other dataset is refused.
    #[serde(default)]
    pub datasets: Vec<DatasetPolicy>,
}

/// One budget group: the citizens that a set of datasets describes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupPolicy {
    /// The group's name, used by [`DatasetPolicy::group`] and in the ledger.
    pub id: DatasetGroup,
    /// ε each citizen of this group may lose per UTC calendar year, over all releases
    /// from all of the group's datasets. Default and maximum 4 (issue #3's anchor).
    #[serde(default = "default_cap")]
    pub per_citizen_annual_epsilon: f64,
    /// Allows a cap above 4 ε. Setting it **leaves the anchor of issue #3** (ε ≤ 4 per
    /// citizen per year): the deployment must then state its own cap and reasons in
    /// its privacy statement. Meant for tests and research deployments only.
    #[serde(default)]
    pub leave_anchor: bool,
}

impl GroupPolicy {
    /// A group with the anchor cap, 4 ε per citizen per year.
    pub fn new(id: DatasetGroup) -> Self {
        Self {
            id,
            per_citizen_annual_epsilon: default_cap(),
            leave_anchor: false,
        }
    }
}

/// One dataset that may be queried.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetPolicy {
    /// The dataset's name.
    pub id: DatasetId,
    /// The budget group of the citizens it describes. Datasets over the same people
    /// must name the same group, or each citizen's loss would be capped per dataset
    /// instead of in total.
    pub group: DatasetGroup,
    /// The most records (and so histogram cells) one citizen can add to this dataset,
    /// as enforced where the data is prepared. Queries must not claim fewer.
    pub max_contributions_per_citizen: u32,
}

/// A histogram query.
#[derive(Clone, Copy, Debug)]
pub struct CountSpec {
    /// ε spent by this release (charged to the dataset's group).
    pub epsilon: Epsilon,
    /// The most cells one citizen contributes to (at most one record each). At least
    /// the dataset's declared bound.
    pub max_contributions_per_citizen: u32,
}

/// A bounded-sum (and mean) query.
#[derive(Clone, Copy, Debug)]
pub struct SumSpec {
    /// ε spent by this release, split evenly between the noisy record count (which
    /// decides suppression and divides the mean) and the noisy sum.
    pub epsilon: Epsilon,
    /// The most records one citizen contributes.
    pub max_contributions_per_citizen: u32,
    /// Each record is clamped to `lo..=hi` before summing, in the caller's integer
    /// unit (e.g. Wh). Must be declared from public knowledge, never from the data.
    pub bounds: (i64, i64),
}

/// One released histogram cell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// The cell's label, as given.
    pub label: String,
    /// The noisy count, or `None` when suppressed (noisy count below k).
    pub value: Option<u64>,
}

/// A released sum, with the record count and mean derived from the same release.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SumRelease {
    /// Noisy number of records, `None` when below k.
    pub count: Option<u64>,
    /// Noisy clamped sum, `None` when the count is suppressed.
    pub sum: Option<i64>,
    /// Noisy sum over noisy count, clamped to the bounds; `None` when suppressed.
    pub mean: Option<f64>,
}

/// Where a dataset's budget stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetStatus {
    /// The group whose budget the dataset spends.
    pub group: DatasetGroup,
    /// The UTC year of the window.
    pub year: i32,
    /// Spent in this window.
    pub spent: Epsilon,
    /// The group's cap.
    pub cap: Epsilon,
    /// `cap - spent`.
    pub remaining: Epsilon,
    /// When the window resets.
    pub resets_at: DateTime<Utc>,
}

type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

struct Declared {
    group: DatasetGroup,
    cap: Epsilon,
    max_contributions: u32,
}

/// Releases differentially private, k-suppressed aggregates, charging a persistent
/// budget first. `Send + Sync`: share it in an `Arc`.
pub struct Aggregator {
    k: u64,
    datasets: HashMap<DatasetId, Declared>,
    ledger: BudgetLedger,
    clock: Clock,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("k", &self.k)
            .field("datasets", &self.datasets.len())
            .field("ledger", &self.ledger)
            .finish_non_exhaustive()
    }
}

impl Aggregator {
    /// Checks `config` and opens (creating if needed) the ledger in `dir`
    /// ([`LEDGER_FILE`]).
    ///
    /// # Errors
    ///
    /// [`DpError::InvalidConfig`], [`DpError::UnknownGroup`], and the ledger's errors
    /// ([`BudgetLedger::open`]).
    pub fn open(dir: impl AsRef<Path>, config: AggregatorConfig) -> Result<Self> {
        let dir = dir.as_ref();
        let datasets = check_config(&config)?;
        std::fs::create_dir_all(dir).map_err(|source| DpError::LedgerIo {
            path: dir.to_path_buf(),
            source,
        })?;
        let ledger = BudgetLedger::open(dir.join(LEDGER_FILE))?;
        Ok(Self {
            k: config.k,
            datasets,
            ledger,
            clock: Arc::new(Utc::now),
        })
    }

    /// Replaces the wall clock that picks the budget year (for tests and replays).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The suppression threshold in force.
    pub fn k(&self) -> u64 {
        self.k
    }

    /// The ledger.
    pub fn ledger(&self) -> &BudgetLedger {
        &self.ledger
    }

    /// Where `dataset`'s budget stands now.
    ///
    /// # Errors
    ///
    /// [`DpError::UnknownDataset`], or the ledger's.
    pub fn budget(&self, dataset: &DatasetId) -> Result<BudgetStatus> {
        let declared = self.declared(dataset)?;
        let year = (self.clock)().year();
        let spent = self.ledger.spent(&declared.group, year)?;
        Ok(BudgetStatus {
            group: declared.group.clone(),
            year,
            spent,
            cap: declared.cap,
            remaining: declared.cap.saturating_sub(spent),
            resets_at: window_end(year),
        })
    }

    /// Releases a histogram of disjoint cells: each citizen's records fall in at most
    /// `spec.max_contributions_per_citizen` cells, one record per cell.
    ///
    /// The labels must come from a public list (e.g. every district), including cells
    /// whose true count is 0: a label list built from the data leaks which cells are
    /// non-empty. Returns cells in input order; an empty list releases nothing and
    /// charges nothing.
    ///
    /// # Errors
    ///
    /// [`DpError::UnknownDataset`], [`DpError::InvalidQuery`] (zero ε, contribution
    /// bound below the dataset's, duplicate labels, a count above `i64::MAX`),
    /// [`DpError::BudgetExhausted`], and ledger errors. Nothing is released on error.
    pub fn release_counts(
        &self,
        dataset: &DatasetId,
        cells: &[(String, u64)],
        spec: CountSpec,
    ) -> Result<Vec<Cell>> {
        let declared = self.declared(dataset)?;
        check_bound(declared, spec.max_contributions_per_citizen)?;
        let mut seen = HashSet::with_capacity(cells.len());
        let mut counts = Vec::with_capacity(cells.len());
        for (label, count) in cells {
            if !seen.insert(label.as_str()) {
                return Err(DpError::InvalidQuery(format!(
                    "label `{label}` appears twice; cells must be disjoint, so merge them"
                )));
            }
            counts.push(i64::try_from(*count).map_err(|_| {
                DpError::InvalidQuery(format!("count {count} of `{label}` is too large"))
            })?);
        }
        if cells.is_empty() {
            return Ok(Vec::new());
        }
        self.charge(dataset, declared, spec.epsilon, "counts")?;
        let noisy =
            mechanism::noisy_counts(&counts, spec.max_contributions_per_citizen, spec.epsilon)?;
        Ok(cells
            .iter()
            .zip(noisy)
            .map(|((label, _), value)| Cell {
                label: label.clone(),
                value: self.publishable(value),
            })
            .collect())
    }

    /// Releases the sum of `values` (one per record) clamped to `spec.bounds`, with
    /// the noisy record count and the mean derived from them.
    ///
    /// Half of `spec.epsilon` buys the noisy count and half the noisy sum (sequential
    /// composition: the charge is the whole `spec.epsilon`). Everything is suppressed
    /// when the noisy count is below k.
    ///
    /// # Errors
    ///
    /// As [`Aggregator::release_counts`], plus [`DpError::InvalidQuery`] for bounds
    /// with `lo > hi` or `lo == i64::MIN`, and for ε under 2 µε (it cannot be split).
    pub fn release_sum(
        &self,
        dataset: &DatasetId,
        values: &[i64],
        spec: SumSpec,
    ) -> Result<SumRelease> {
        let declared = self.declared(dataset)?;
        check_bound(declared, spec.max_contributions_per_citizen)?;
        let (lo, hi) = spec.bounds;
        if lo > hi || lo == i64::MIN {
            return Err(DpError::InvalidQuery(format!(
                "bounds ({lo}, {hi}) must satisfy i64::MIN < lo ≤ hi"
            )));
        }
        let count_eps = Epsilon::from_micros(spec.epsilon.micros() / 2);
        let sum_eps = spec.epsilon.saturating_sub(count_eps);
        if count_eps.is_zero() {
            return Err(DpError::InvalidQuery(
                "ε must be at least 0.000002 to split between count and sum".into(),
            ));
        }
        self.charge(dataset, declared, spec.epsilon, "sum")?;
        let m = spec.max_contributions_per_citizen;
        let count = mechanism::noisy_record_count(values, m, count_eps)?;
        let sum = mechanism::noisy_sum(values, spec.bounds, m, sum_eps)?;
        let Some(count) = self.publishable(count) else {
            return Ok(SumRelease {
                count: None,
                sum: None,
                mean: None,
            });
        };
        // Post-processing of the two noisy values: no further privacy cost.
        let mean = (sum as f64 / count as f64).clamp(lo as f64, hi as f64);
        Ok(SumRelease {
            count: Some(count),
            sum: Some(sum),
            mean: Some(mean),
        })
    }

    /// [`Aggregator::release_sum`], keeping only the mean.
    ///
    /// # Errors
    ///
    /// As [`Aggregator::release_sum`].
    pub fn release_mean(
        &self,
        dataset: &DatasetId,
        values: &[i64],
        spec: SumSpec,
    ) -> Result<Option<f64>> {
        Ok(self.release_sum(dataset, values, spec)?.mean)
    }

    fn declared(&self, dataset: &DatasetId) -> Result<&Declared> {
        self.datasets
            .get(dataset)
            .ok_or_else(|| DpError::UnknownDataset(dataset.clone()))
    }

    fn charge(
        &self,
        dataset: &DatasetId,
        declared: &Declared,
        epsilon: Epsilon,
        query: &str,
    ) -> Result<()> {
        self.ledger.charge(&Charge {
            dataset,
            group: &declared.group,
            cap: declared.cap,
            epsilon,
            at: (self.clock)(),
            query,
        })?;
        Ok(())
    }

    /// Rounds a noisy count up to 0 and suppresses it below k. Deciding on the noisy
    /// value is post-processing, so suppression costs no privacy and leaks nothing
    /// beyond the DP release.
    fn publishable(&self, noisy: i64) -> Option<u64> {
        let value = u64::try_from(noisy).unwrap_or(0);
        (value >= self.k).then_some(value)
    }
}

fn check_bound(declared: &Declared, claimed: u32) -> Result<()> {
    if claimed == 0 || claimed < declared.max_contributions {
        return Err(DpError::InvalidQuery(format!(
            "max_contributions_per_citizen {claimed} is below the dataset's declared bound {}; \
             noise calibrated to fewer contributions would not protect citizens",
            declared.max_contributions
        )));
    }
    Ok(())
}

fn check_config(config: &AggregatorConfig) -> Result<HashMap<DatasetId, Declared>> {
    if config.k < MIN_K {
        return Err(DpError::InvalidConfig(format!(
            "k = {} is below {MIN_K}; counts below {MIN_K} must always be suppressed",
            config.k
        )));
    }
    let mut caps = HashMap::new();
    for group in &config.groups {
        let cap = Epsilon::from_f64(group.per_citizen_annual_epsilon)
            .map_err(|e| DpError::InvalidConfig(format!("group `{}`: {e}", group.id)))?;
        if cap.is_zero() {
            return Err(DpError::InvalidConfig(format!(
                "group `{}` has a zero cap; remove the group instead",
                group.id
            )));
        }
        if cap > Epsilon::ANCHOR_PER_CITIZEN_YEAR {
            if !group.leave_anchor {
                return Err(DpError::InvalidConfig(format!(
                    "group `{}` asks for {cap} ε per citizen per year, above the anchor of 4; \
                     lower it, or set `leave_anchor = true` and justify it in the privacy statement",
                    group.id
                )));
            }
            tracing::warn!(
                message = "budget group leaves the anchor of 4 ε per citizen per year",
                group = %group.id,
                cap = %cap,
            );
        }
        if caps.insert(group.id.clone(), cap).is_some() {
            return Err(DpError::InvalidConfig(format!(
                "group `{}` is declared twice",
                group.id
            )));
        }
    }
    let mut datasets = HashMap::new();
    for dataset in &config.datasets {
        let cap = *caps
            .get(&dataset.group)
            .ok_or_else(|| DpError::UnknownGroup {
                dataset: dataset.id.clone(),
                group: dataset.group.clone(),
            })?;
        if dataset.max_contributions_per_citizen == 0 {
            return Err(DpError::InvalidConfig(format!(
                "dataset `{}` declares 0 contributions per citizen; use at least 1",
                dataset.id
            )));
        }
        let declared = Declared {
            group: dataset.group.clone(),
            cap,
            max_contributions: dataset.max_contributions_per_citizen,
        };
        if datasets.insert(dataset.id.clone(), declared).is_some() {
            return Err(DpError::InvalidConfig(format!(
                "dataset `{}` is declared twice",
                dataset.id
            )));
        }
    }
    Ok(datasets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(k: u64, cap: f64, leave_anchor: bool) -> AggregatorConfig {
        AggregatorConfig {
            k,
            groups: vec![GroupPolicy {
                id: DatasetGroup::new("g").expect("valid"),
                per_citizen_annual_epsilon: cap,
                leave_anchor,
            }],
            datasets: vec![DatasetPolicy {
                id: DatasetId::new("d").expect("valid"),
                group: DatasetGroup::new("g").expect("valid"),
                max_contributions_per_citizen: 1,
            }],
        }
    }

    #[test]
    fn k_below_ten_is_refused() {
        assert!(matches!(
            check_config(&config(9, 4.0, false)),
            Err(DpError::InvalidConfig(_))
        ));
        assert!(check_config(&config(10, 4.0, false)).is_ok());
    }

    #[test]
    fn caps_above_the_anchor_need_the_override() {
        assert!(matches!(
            check_config(&config(10, 4.000001, false)),
            Err(DpError::InvalidConfig(_))
        ));
        assert!(check_config(&config(10, 8.0, true)).is_ok());
    }

    #[test]
    fn config_toml_shape_defaults_to_the_anchor() {
        let parsed: AggregatorConfig = serde_json::from_str(
            r#"{"groups":[{"id":"g"}],"datasets":[{"id":"d","group":"g","max_contributions_per_citizen":2}]}"#,
        )
        .expect("parses");
        assert_eq!(parsed.k, 10);
        assert_eq!(parsed.groups[0].per_citizen_annual_epsilon, 4.0);
        assert!(!parsed.groups[0].leave_anchor);
        let unknown: std::result::Result<AggregatorConfig, _> = serde_json::from_str(r#"{"kk":3}"#);
        assert!(unknown.is_err());
    }

    #[test]
    fn dataset_in_undeclared_group_is_refused() {
        let mut c = config(10, 4.0, false);
        c.datasets[0].group = DatasetGroup::new("other").expect("valid");
        assert!(matches!(
            check_config(&c),
            Err(DpError::UnknownGroup { .. })
        ));
    }
}
