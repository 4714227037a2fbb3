//! The persistent privacy-budget ledger.
//!
//! Owns one append-only file of JSON lines, one line per charge. Nothing else may write
//! it, and it must never be deleted or edited: that would hand every citizen a fresh
//! budget. It decides nothing about noise; [`crate::Aggregator`] charges here *before*
//! it computes a release.
//!
//! # What is charged, and why the group's sum is the citizen's spend
//!
//! A charge is `ε` for one query on one dataset, in the budget group ([`DatasetGroup`])
//! the dataset belongs to, in the UTC calendar year of the query. The query's ε is
//! calibrated to the declared per-citizen contribution bound, so it is the privacy
//! loss of *every* citizen in the group's population, whether or not they appear in
//! the data (absence is exactly what DP protects). Under sequential composition the
//! losses of all releases add up, so the sum of the group's charges in a year is each
//! citizen's spend for that year, and capping that sum caps every citizen.
//!
//! Datasets over the same people must share one group; otherwise each gets its own
//! cap and a citizen in both would lose the sum of both caps. A citizen who belongs
//! to several *different* groups (e.g. a city's residents and the nation's energy
//! customers) spends up to the sum of those groups' caps: keep groups coarse, or give
//! overlapping groups caps whose sum respects the anchor.
//!
//! # Durability and failure
//!
//! - Each charge is one `write` of one line, then `fdatasync`, before the release is
//!   computed: a crash after the charge loses budget, and nothing is ever released
//!   uncharged.
//! - A torn last line (a crash mid-write) is cut off at open, with a warning. A charge
//!   whose line was cut was never acknowledged, so nothing was released against it.
//! - Any other unreadable line stops the ledger from opening ([`DpError::LedgerCorrupt`]).
//! - The file is locked (`flock`) while open, so two processes cannot spend the same
//!   budget twice.
//! - Spent ε is kept as whole micro-ε ([`Epsilon`]): the sum is exact.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::{DatasetGroup, DatasetId, DpError, Epsilon, Result};

/// One line of the ledger file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChargeRecord {
    group: DatasetGroup,
    dataset: DatasetId,
    /// The UTC calendar year charged.
    year: i32,
    /// Charged micro-ε.
    micro_epsilon: Epsilon,
    /// When the charge was made.
    at: DateTime<Utc>,
    /// What kind of release was charged (`counts`, `sum`), for auditors.
    query: String,
}

/// A request to spend budget.
#[derive(Clone, Copy, Debug)]
pub struct Charge<'a> {
    /// The dataset queried.
    pub dataset: &'a DatasetId,
    /// The budget group the dataset belongs to; its budget is what is spent.
    pub group: &'a DatasetGroup,
    /// The group's per-citizen annual cap.
    pub cap: Epsilon,
    /// ε of this query.
    pub epsilon: Epsilon,
    /// When the query is made; its UTC year picks the window.
    pub at: DateTime<Utc>,
    /// Kind of release, recorded for auditors (e.g. `counts`).
    pub query: &'a str,
}

/// What a successful charge leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChargeReceipt {
    /// The UTC year charged.
    pub year: i32,
    /// The group's spend in that year, including this charge.
    pub spent: Epsilon,
    /// What is left of the cap.
    pub remaining: Epsilon,
    /// When the window resets.
    pub resets_at: DateTime<Utc>,
}

struct Inner {
    file: File,
    spent: HashMap<(DatasetGroup, i32), Epsilon>,
    /// Set when a write or sync failed: the file may end in a partial line.
    failed: bool,
}

/// The durable ledger of privacy budget spent per budget group and UTC year.
///
/// `Send + Sync`; charges are serialized by an internal lock held across the fsync.
pub struct BudgetLedger {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for BudgetLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetLedger")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The first instant of the year after `year`, UTC.
pub fn window_end(year: i32) -> DateTime<Utc> {
    year.checked_add(1)
        .and_then(|next| Utc.with_ymd_and_hms(next, 1, 1, 0, 0, 0).single())
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl BudgetLedger {
    /// Opens (or creates) the ledger file at `path`, locks it, and replays it.
    ///
    /// A torn last line is cut off (and the cut is fsynced) with a warning.
    ///
    /// # Errors
    ///
    /// - [`DpError::LedgerLocked`] when another process has it open;
    /// - [`DpError::LedgerCorrupt`] when a line other than a torn last one is unreadable;
    /// - [`DpError::LedgerIo`] on I/O failure.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |source| DpError::LedgerIo {
            path: path.clone(),
            source,
        };
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(DpError::LedgerLocked(path)),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        if !existed {
            sync_parent(&path).map_err(io)?;
        }

        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let (records, torn) = parse(&path, &bytes)?;
        if let Some(torn) = torn {
            tracing::warn!(
                message = "cutting a torn last line off the privacy-budget ledger",
                path = %path.display(),
                torn_bytes = torn.cut_bytes,
            );
            file.set_len(torn.keep_len).map_err(io)?;
            if torn.needs_newline {
                file.write_all(b"\n").map_err(io)?;
            }
            file.sync_data().map_err(io)?;
        }

        let mut spent: HashMap<(DatasetGroup, i32), Epsilon> = HashMap::new();
        for (index, record) in records.into_iter().enumerate() {
            let slot = spent.entry((record.group, record.year)).or_default();
            *slot =
                slot.checked_add(record.micro_epsilon)
                    .ok_or_else(|| DpError::LedgerCorrupt {
                        path: path.clone(),
                        line: index + 1,
                        reason: "the spent total overflows".into(),
                    })?;
        }
        tracing::debug!(message = "privacy-budget ledger open", path = %path.display(), windows = spent.len());
        Ok(Self {
            path,
            inner: Mutex::new(Inner {
                file,
                spent,
                failed: false,
            }),
        })
    }

    /// The ledger file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// ε spent by `group` in the UTC calendar year `year`.
    ///
    /// # Errors
    ///
    /// [`DpError::LedgerFailed`] if a charge panicked while holding the ledger.
    pub fn spent(&self, group: &DatasetGroup, year: i32) -> Result<Epsilon> {
        let inner = self
            .inner
            .lock()
            .map_err(|_| DpError::LedgerFailed(self.path.clone()))?;
        Ok(inner
            .spent
            .get(&(group.clone(), year))
            .copied()
            .unwrap_or_default())
    }

    /// Spends `charge.epsilon` from `charge.group`'s budget for the year of
    /// `charge.at`, durably, or refuses.
    ///
    /// Returns only after the charge is fsynced. Call it before computing the
    /// release it pays for.
    ///
    /// # Errors
    ///
    /// - [`DpError::BudgetExhausted`] when the spend would pass `charge.cap`
    ///   (nothing is written);
    /// - [`DpError::InvalidQuery`] for a zero ε;
    /// - [`DpError::LedgerIo`] when the write or sync fails (the ledger then refuses
    ///   further charges with [`DpError::LedgerFailed`] until reopened).
    pub fn charge(&self, charge: &Charge<'_>) -> Result<ChargeReceipt> {
        if charge.epsilon.is_zero() {
            return Err(DpError::InvalidQuery("ε must be greater than 0".into()));
        }
        let year = charge.at.year();
        let resets_at = window_end(year);
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| DpError::LedgerFailed(self.path.clone()))?;
        if inner.failed {
            return Err(DpError::LedgerFailed(self.path.clone()));
        }
        let key = (charge.group.clone(), year);
        let spent = inner.spent.get(&key).copied().unwrap_or_default();
        let after = spent
            .checked_add(charge.epsilon)
            .filter(|after| *after <= charge.cap);
        let Some(after) = after else {
            tracing::warn!(
                message = "privacy budget exhausted; query refused",
                dataset = %charge.dataset,
                group = %charge.group,
                spent = %spent,
                requested = %charge.epsilon,
                cap = %charge.cap,
            );
            return Err(DpError::BudgetExhausted {
                dataset: charge.dataset.clone(),
                group: charge.group.clone(),
                spent,
                requested: charge.epsilon,
                cap: charge.cap,
                resets_at,
            });
        };

        let record = ChargeRecord {
            group: charge.group.clone(),
            dataset: charge.dataset.clone(),
            year,
            micro_epsilon: charge.epsilon,
            at: charge.at,
            query: charge.query.to_owned(),
        };
        let mut line = serde_json::to_vec(&record).map_err(|e| DpError::LedgerIo {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        let written = inner
            .file
            .write_all(&line)
            .and_then(|()| inner.file.sync_data());
        if let Err(source) = written {
            inner.failed = true;
            tracing::error!(message = "privacy-budget ledger write failed", path = %self.path.display(), error = %source);
            return Err(DpError::LedgerIo {
                path: self.path.clone(),
                source,
            });
        }
        inner.spent.insert(key, after);
        tracing::info!(
            message = "privacy budget charged",
            dataset = %charge.dataset,
            group = %charge.group,
            epsilon = %charge.epsilon,
            spent = %after,
            cap = %charge.cap,
            year,
        );
        Ok(ChargeReceipt {
            year,
            spent: after,
            remaining: charge.cap.saturating_sub(after),
            resets_at,
        })
    }
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

/// How to repair a torn tail.
#[derive(Debug, PartialEq, Eq)]
struct Torn {
    keep_len: u64,
    cut_bytes: usize,
    needs_newline: bool,
}

/// Parses the ledger bytes. The last segment, if not ended by `\n`, is torn: it is
/// kept (and given its newline) when it parses, and cut otherwise.
fn parse(path: &Path, bytes: &[u8]) -> Result<(Vec<ChargeRecord>, Option<Torn>)> {
    let mut records = Vec::new();
    let mut offset = 0usize;
    let mut line_no = 0usize;
    let corrupt = |line: usize, reason: String| DpError::LedgerCorrupt {
        path: path.to_path_buf(),
        line,
        reason,
    };
    while offset < bytes.len() {
        line_no += 1;
        let rest = &bytes[offset..];
        match rest.iter().position(|b| *b == b'\n') {
            Some(end) => {
                let line = &rest[..end];
                if !line.is_empty() {
                    let record = serde_json::from_slice::<ChargeRecord>(line)
                        .map_err(|e| corrupt(line_no, e.to_string()))?;
                    records.push(record);
                }
                offset += end + 1;
            }
            None => {
                return Ok(match serde_json::from_slice::<ChargeRecord>(rest) {
                    Ok(record) => {
                        records.push(record);
                        let torn = Torn {
                            keep_len: bytes.len() as u64,
                            cut_bytes: 0,
                            needs_newline: true,
                        };
                        (records, Some(torn))
                    }
                    Err(_) => {
                        let torn = Torn {
                            keep_len: offset as u64,
                            cut_bytes: rest.len(),
                            needs_newline: false,
                        };
                        (records, Some(torn))
                    }
                });
            }
        }
    }
    Ok((records, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(micros: u64) -> ChargeRecord {
        ChargeRecord {
            group: DatasetGroup::new("g").expect("valid"),
            dataset: DatasetId::new("d").expect("valid"),
            year: 2026,
            micro_epsilon: Epsilon::from_micros(micros),
            at: Utc
                .with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
                .single()
                .expect("valid date"),
            query: "counts".into(),
        }
    }

    fn encode(records: &[ChargeRecord]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            out.extend(serde_json::to_vec(r).expect("serialize"));
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn window_end_is_next_new_year() {
        let end = window_end(2026);
        assert_eq!(
            end,
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
                .single()
                .expect("valid")
        );
        assert_eq!(window_end(i32::MAX), DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn middle_corruption_is_refused_with_its_line() {
        let mut bytes = encode(&[record(1)]);
        bytes.extend(b"{garbage}\n");
        bytes.extend(encode(&[record(2)]));
        let err = parse(Path::new("x"), &bytes).expect_err("corrupt");
        assert!(
            matches!(err, DpError::LedgerCorrupt { line: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn complete_last_record_without_newline_is_kept() {
        let mut bytes = encode(&[record(1), record(2)]);
        bytes.pop();
        let (records, torn) = parse(Path::new("x"), &bytes).expect("parses");
        assert_eq!(records.len(), 2);
        assert_eq!(
            torn,
            Some(Torn {
                keep_len: bytes.len() as u64,
                cut_bytes: 0,
                needs_newline: true
            })
        );
    }

    proptest! {
        #[test]
        fn records_round_trip_and_any_torn_tail_is_cut(
            micros in proptest::collection::vec(1u64..10_000_000, 0..8),
            cut in 1usize..60,
        ) {
            let records: Vec<_> = micros.iter().map(|m| record(*m)).collect();
            let bytes = encode(&records);
            let (parsed, torn) = parse(Path::new("x"), &bytes).expect("parses");
            prop_assert_eq!(&parsed, &records);
            prop_assert_eq!(torn, None);

            // Append a prefix of one more line: whatever prefix, the complete lines survive.
            let extra = encode(&[record(7)]);
            let cut = cut.min(extra.len() - 2);
            let mut torn_bytes = bytes.clone();
            torn_bytes.extend(&extra[..cut]);
            let (parsed, torn) = parse(Path::new("x"), &torn_bytes).expect("torn tail tolerated");
            prop_assert_eq!(&parsed, &records);
            prop_assert_eq!(torn, Some(Torn { keep_len: bytes.len() as u64, cut_bytes: cut, needs_newline: false }));
        }
    }
}
