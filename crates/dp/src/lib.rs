//! Polity's aggregate releases for cross-city and national views (issue #3 §3):
//! k-suppression, differential privacy with OpenDP, and a persistent per-citizen
//! privacy-budget ledger.
//!
//! Owns the release path for aggregates and the ledger file under the directory it is
//! given (`budget.jsonl`). It must not touch stored series, identities or keys; it is
//! handed counts and bounded values by the caller. It is a heavy leaf (OpenDP pulls in
//! bignum and linear-algebra crates): the light crates (`model`, `store`, `ingest`,
//! `ngsild`) must not depend on it; the binary and routes do.
//!
//! # Order of operations
//!
//! [`Aggregator::release_counts`] and [`Aggregator::release_sum`]:
//!
//! 1. refuse undeclared datasets and contribution bounds below the declared one;
//! 2. **charge** ε to the dataset's budget group in the [`ledger`], fsynced, or refuse
//!    with [`DpError::BudgetExhausted`];
//! 3. add OpenDP discrete Laplace noise;
//! 4. round each noisy count up to 0 and **suppress** it when below k (default and
//!    minimum 10).
//!
//! A crash after 2 loses budget; nothing is ever released uncharged.
//!
//! # Noise, and why it is sound
//!
//! All noise is OpenDP's `make_laplace` on `i64` domains, which samples the *discrete*
//! Laplace distribution exactly (Canonne, Kamath and Steinke 2020) with rational
//! arithmetic. There is no floating-point noise, so none of the attacks on naive
//! float Laplace (Mironov 2012) apply. The ε of each measurement is read back from
//! OpenDP's privacy map and must not exceed the ε charged.
//!
//! - **Histograms**: the caller's counts form a vector; neighbouring datasets differ by
//!   one citizen (added or removed) who contributes at most `m` records, each to one
//!   cell. Since cells are disjoint, each record moves one count by 1, so the L1
//!   distance between neighbouring histograms is at most `m`: the sensitivity is `m`
//!   and the scale `m / ε`. If one record could fall in several cells (overlapping
//!   categories), `m` must count cell memberships, not records; the caller declares
//!   the bound accordingly.
//! - **Sums**: OpenDP clamps each record to the declared bounds, sums, and its
//!   stability map gives sensitivity `m · max(|lo|, |hi|)` under symmetric distance
//!   `m`. The record count uses OpenDP's count (sensitivity `m`). Half the ε goes to
//!   each; the mean is their ratio (post-processing).
//! - **Units**: ε is per citizen under add/remove-one-citizen neighbours. Replacing a
//!   citizen is two steps, so costs 2ε.
//!
//! # Suppression on the noisy count, not the true count
//!
//! A cell is suppressed when its *noisy* count is below k. Deciding on the true
//! count would make the suppression pattern an exact function of the data: a cell
//! that goes from 10 to 9 people when one citizen leaves would visibly vanish, with
//! no noise to hide it, which breaks DP. Deciding on the noisy count is
//! post-processing of a DP release, so it costs no budget and leaks nothing more. The
//! price: a cell whose true count is below k is published with small probability, and
//! then only as a noisy value ≥ k (true 3, ε = 1, m = 1: probability about 7·10⁻⁴).
//!
//! # Randomness (read this before deploying)
//!
//! OpenDP's own secure sampler uses OpenSSL (`use-openssl`, which vendors and builds
//! OpenSSL 3 from C). Polity has one crypto provider, ring, so this crate builds
//! OpenDP without it. OpenDP then draws its random bits from `rand` 0.7's
//! `thread_rng`: ChaCha20 seeded from the operating system (`getrandom`) and
//! reseeded every 64 KiB. That is a cryptographically secure generator, but OpenDP
//! documents the non-OpenSSL path as "non-secure" because it does not vouch for it.
//! The sampling code is not constant-time, so response timing may say something about
//! the noise; do not release on a path where an adversary times individual releases.
//!
//! # Budget
//!
//! See [`ledger`]: ε is charged per budget group ([`DatasetGroup`], a citizen
//! population) and UTC calendar year; each group's cap defaults to, and without
//! [`GroupPolicy::leave_anchor`] cannot exceed, 4 ε per citizen per year.
//!
//! # Not yet done
//!
//! - Nothing calls this crate yet: the national routes must hand it counts instead of
//!   series.
//! - The contribution bound is declared, not enforced: whoever builds the counts must
//!   cap each citizen's records (e.g. by pseudonym) before calling.
//! - Groups that overlap (a citizen in two populations) add up; see [`ledger`].

mod aggregator;
mod epsilon;
mod error;
mod ids;
pub mod ledger;
mod mechanism;

pub use aggregator::{
    Aggregator, AggregatorConfig, BudgetStatus, Cell, CountSpec, DatasetPolicy, GroupPolicy,
    LEDGER_FILE, MIN_K, SumRelease, SumSpec,
};
pub use epsilon::{Epsilon, MICROS_PER_EPSILON};
pub use error::{DpError, Result};
pub use ids::{DatasetGroup, DatasetId};
pub use ledger::{BudgetLedger, Charge, ChargeReceipt};
