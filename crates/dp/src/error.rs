//! The crate's one error type. Messages are written for the operator or caller who
//! hits them and say what to do next.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::{DatasetGroup, DatasetId, Epsilon};

/// Everything that can go wrong when releasing aggregates or charging the budget.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DpError {
    /// The query would take the group's per-citizen spend for the year past its cap.
    #[error(
        "privacy budget exhausted for dataset `{dataset}` (budget group `{group}`): {spent} of \
         {cap} ε already spent this year, and this query asks for {requested} ε; nothing was \
         released. Ask for a smaller ε, or wait until the budget resets at {resets_at}"
    )]
    BudgetExhausted {
        /// The dataset the query was for.
        dataset: DatasetId,
        /// The budget group (citizen population) whose budget is spent.
        group: DatasetGroup,
        /// ε already spent in this year's window.
        spent: Epsilon,
        /// ε this query asked for.
        requested: Epsilon,
        /// The group's per-citizen annual cap.
        cap: Epsilon,
        /// When the window ends (the next 1 January, 00:00 UTC).
        resets_at: DateTime<Utc>,
    },

    /// The dataset is not declared in the aggregator's configuration.
    #[error(
        "dataset `{0}` is not declared; add it under `datasets` in the DP configuration with \
         its budget group and contribution bound before querying it"
    )]
    UnknownDataset(DatasetId),

    /// A dataset names a budget group that is not declared.
    #[error(
        "dataset `{dataset}` names budget group `{group}`, which is not declared; add it under \
         `groups` in the DP configuration"
    )]
    UnknownGroup {
        /// The dataset whose declaration is wrong.
        dataset: DatasetId,
        /// The missing group.
        group: DatasetGroup,
    },

    /// The configuration is inconsistent or unsafe.
    #[error("invalid DP configuration: {0}")]
    InvalidConfig(String),

    /// The query itself is malformed (bad ε, bounds, labels, contribution bound).
    #[error("invalid query: {0}")]
    InvalidQuery(String),

    /// An identifier (dataset or group) is malformed.
    #[error(
        "invalid {kind} `{value}`: use 1 to 128 characters from letters, digits, `-`, `_`, \
         `.`, `:` and `/`"
    )]
    InvalidId {
        /// Which kind of identifier.
        kind: &'static str,
        /// The rejected text (cut to 64 characters).
        value: String,
    },

    /// OpenDP refused to build or run the mechanism.
    #[error("the OpenDP mechanism failed ({0}); nothing was released, but the ε was charged")]
    Mechanism(String),

    /// The ledger file could not be read or written.
    #[error("privacy-budget ledger {path}: {source}; check the path and its permissions")]
    LedgerIo {
        /// The ledger file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Another process holds the ledger.
    #[error(
        "privacy-budget ledger {0} is in use by another process; two writers would each spend \
         the same budget, so stop the other node first"
    )]
    LedgerLocked(PathBuf),

    /// A ledger line other than the last is unreadable: the spend can no longer be known.
    #[error(
        "privacy-budget ledger {path} is corrupt at line {line} ({reason}); the spent budget \
         cannot be known, so no query is answered. Restore the file from a backup; never \
         delete it, which would reset every citizen's budget"
    )]
    LedgerCorrupt {
        /// The ledger file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: String,
    },

    /// An earlier write failed; the ledger refuses charges until it is reopened.
    #[error(
        "privacy-budget ledger {0} failed an earlier write and refuses further charges; restart \
         the node so the ledger is reopened and its last line checked"
    )]
    LedgerFailed(PathBuf),
}

/// The crate's result type.
pub type Result<T, E = DpError> = std::result::Result<T, E>;
