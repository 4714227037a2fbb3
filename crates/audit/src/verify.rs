//! Full audit of a log directory: `polity audit verify`.
//!
//! Owns the checks; reads the files [`crate::log`] writes and never modifies them.
//!
//! One streaming pass over `entries`, in order, stopping at the first problem:
//!
//! 1. **Framing.** A record cut short, or with an impossible length, is named by its
//!    index ([`VerifyFailure::Torn`], [`VerifyFailure::Unparseable`]).
//! 2. **Position.** Each record stores its own index. A deleted record makes the next
//!    one sit one place early; a reordered one sits in another's place; either way
//!    the first record whose stored index differs from its position is named
//!    ([`VerifyFailure::OutOfPlace`]).
//! 3. **Content.** Each record stores the leaf hash of its body. An edited body no
//!    longer matches it ([`VerifyFailure::Edited`]); a body that is not an
//!    [`AuditEntry`] is [`VerifyFailure::Unparseable`].
//! 4. **Signatures.** The root of every prefix covered by a signed checkpoint (every
//!    [`CHECKPOINT_INTERVAL`] entries) or by `sth.json` is recomputed as the pass
//!    reaches it and compared with the signed root. An attacker who rewrites the
//!    stored indices and hashes to hide steps 2 and 3 still cannot sign, so the first
//!    mismatching checkpoint bounds the first bad entry to one interval
//!    ([`VerifyFailure::RootMismatch`]).
//! 5. **Truncation.** Fewer entries than a signed head covers is
//!    [`VerifyFailure::Truncated`].
//!
//! Entries after the newest signed head are checked by steps 1–3 only; the report
//! counts them as `unsigned_entries`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::head::{SignedTreeHead, from_hex, to_hex};
use crate::log::{AuditEntry, CHECKPOINT_INTERVAL, Paths, RawRecord, ReadProblem, RecordReader};
use crate::merkle::{Frontier, Hash, leaf_hash};

/// What a successful audit checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries in the log.
    pub entries: u64,
    /// Entries covered by the signed head in `sth.json`.
    pub signed_tree_size: u64,
    /// The Merkle root of all entries, hex.
    pub root_hash: String,
    /// Signed checkpoints whose roots were checked.
    pub checkpoints: u64,
    /// Entries after the newest signed head or checkpoint: checked for framing,
    /// position and hash, but not yet covered by a signature.
    pub unsigned_entries: u64,
}

/// Why an audit failed. [`VerifyFailure::first_bad_entry`] gives the index to inspect.
#[derive(Debug, thiserror::Error)]
pub enum VerifyFailure {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The public key file is missing or malformed.
    #[error(
        "{path} is not a 32-byte Ed25519 public key in hex; restore it from the copy you published"
    )]
    BadPublicKey {
        /// The key file.
        path: PathBuf,
    },
    /// A signed head or checkpoint is malformed or its signature does not verify.
    #[error(
        "{what} is not validly signed by the log's key: the signed heads were forged or replaced"
    )]
    BadSignature {
        /// Which head: `sth.json` or `checkpoint line N`.
        what: String,
    },
    /// Checkpoints are not one per interval, in order.
    #[error(
        "checkpoint line {line} covers {found} entries where {expected} was expected: checkpoints were deleted or reordered"
    )]
    CheckpointOutOfPlace {
        /// 1-based line in `checkpoints`.
        line: u64,
        /// The tree size it should cover.
        expected: u64,
        /// The tree size it covers.
        found: u64,
    },
    /// The file ends inside a record.
    #[error("entry {index} is cut short: the entries file was truncated mid-record")]
    Torn {
        /// The incomplete entry.
        index: u64,
    },
    /// A record's framing or JSON cannot be read.
    #[error("entry {index} cannot be read: {reason}")]
    Unparseable {
        /// The entry.
        index: u64,
        /// What was wrong.
        reason: String,
    },
    /// A record stores a different index from its position: entries were deleted,
    /// inserted or reordered.
    #[error(
        "entry {index} is missing or out of order: the record in its place says it is entry {found}"
    )]
    OutOfPlace {
        /// The position.
        index: u64,
        /// The index the record there claims.
        found: u64,
    },
    /// A record's body no longer matches its stored leaf hash.
    #[error("entry {index} was edited: its content no longer matches its recorded hash")]
    Edited {
        /// The entry.
        index: u64,
    },
    /// Stored hashes are self-consistent but disagree with a signed root: the log was
    /// rewritten by someone without the key.
    #[error(
        "entries {from}..{to} do not match the root signed in {what}: at least one of them was altered, removed or reordered and the stored hashes rewritten"
    )]
    RootMismatch {
        /// Which head: `sth.json` or `checkpoint line N`.
        what: String,
        /// First entry not covered by an earlier, matching signed root.
        from: u64,
        /// The signed tree size.
        to: u64,
    },
    /// Fewer entries than a signed head covers.
    #[error(
        "the log holds {entries} entries but {what} signed {signed} of them: entries {entries}..{signed} were removed from the end"
    )]
    Truncated {
        /// Entries found.
        entries: u64,
        /// Entries signed.
        signed: u64,
        /// Which head: `sth.json` or `checkpoint line N`.
        what: String,
    },
    /// No signed head has been published.
    #[error("{path} is missing: no signed tree head to check against (was it deleted?)")]
    NoSignedHead {
        /// Where it was expected.
        path: PathBuf,
    },
}

impl VerifyFailure {
    /// The index of the first entry known or suspected bad, if the failure is about
    /// entries (for a [`VerifyFailure::RootMismatch`], the start of the bad range;
    /// for truncation, the first missing index).
    pub fn first_bad_entry(&self) -> Option<u64> {
        match self {
            VerifyFailure::Torn { index }
            | VerifyFailure::Unparseable { index, .. }
            | VerifyFailure::OutOfPlace { index, .. }
            | VerifyFailure::Edited { index } => Some(*index),
            VerifyFailure::RootMismatch { from, .. } => Some(*from),
            VerifyFailure::Truncated { entries, .. } => Some(*entries),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, VerifyFailure>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> VerifyFailure + '_ {
    move |source| VerifyFailure::Io {
        path: path.to_owned(),
        source,
    }
}

/// Audits the log under `<dir>/audit/` against the public key stored beside it.
///
/// This catches tampering with the entries by anyone who cannot also replace
/// `public.key` and every signed head; use [`verify_dir_with_key`] with a key pinned
/// elsewhere to rule that out.
pub fn verify_dir(dir: &Path) -> Result<VerifyReport> {
    let path = Paths::new(dir).public_key;
    let text = fs::read_to_string(&path).map_err(io_err(&path))?;
    let key: [u8; 32] = from_hex(text.trim())
        .and_then(|v| v.try_into().ok())
        .ok_or(VerifyFailure::BadPublicKey { path })?;
    verify_dir_with_key(dir, &key)
}

/// Audits the log under `<dir>/audit/` against a trusted Ed25519 public key.
pub fn verify_dir_with_key(dir: &Path, public_key: &[u8; 32]) -> Result<VerifyReport> {
    let paths = Paths::new(dir);
    let sth = read_sth(&paths.sth)?;
    if !sth.verify(public_key) {
        return Err(VerifyFailure::BadSignature {
            what: "sth.json".into(),
        });
    }
    let checkpoints = read_checkpoints(&paths.checkpoints, public_key)?;

    // Every signed root, by the tree size it covers.
    let mut expected: BTreeMap<u64, Vec<(Hash, String)>> = BTreeMap::new();
    let mut newest_signed = 0;
    for (what, head) in checkpoints
        .iter()
        .cloned()
        .chain(std::iter::once(("sth.json".to_string(), sth.clone())))
    {
        // Signature verification above guarantees the root parses.
        let Some(root) = head.root() else {
            return Err(VerifyFailure::BadSignature { what });
        };
        newest_signed = newest_signed.max(head.tree_size);
        expected
            .entry(head.tree_size)
            .or_default()
            .push((root, what));
    }

    let file = File::open(&paths.entries).map_err(io_err(&paths.entries))?;
    let mut reader = RecordReader::new(BufReader::with_capacity(4 << 20, file));
    let mut frontier = Frontier::default();
    let mut rec = RawRecord::empty();
    let mut last_good = 0u64;
    let mut pending = expected.iter().peekable();
    loop {
        if let Some((size, heads)) = pending.peek()
            && **size == frontier.size()
        {
            check_roots(heads, &frontier, &mut last_good)?;
            pending.next();
        }
        let index = frontier.size();
        match reader.next_into(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(ReadProblem::Torn) => return Err(VerifyFailure::Torn { index }),
            Err(ReadProblem::TooLarge(len)) => {
                return Err(VerifyFailure::Unparseable {
                    index,
                    reason: format!("its length field says {len} bytes, beyond any entry"),
                });
            }
            Err(ReadProblem::Io(e)) => return Err(io_err(&paths.entries)(e)),
        }
        if rec.index != index {
            return Err(VerifyFailure::OutOfPlace {
                index,
                found: rec.index,
            });
        }
        let leaf = leaf_hash(&rec.body);
        if leaf != rec.leaf_hash {
            return Err(VerifyFailure::Edited { index });
        }
        if let Err(e) = serde_json::from_slice::<AuditEntry>(&rec.body) {
            return Err(VerifyFailure::Unparseable {
                index,
                reason: format!("not an audit entry: {e}"),
            });
        }
        frontier.push(leaf);
    }
    if let Some((&signed, heads)) = pending.next() {
        return Err(VerifyFailure::Truncated {
            entries: frontier.size(),
            signed,
            what: heads.first().map(|(_, w)| w.clone()).unwrap_or_default(),
        });
    }
    let entries = frontier.size();
    Ok(VerifyReport {
        entries,
        signed_tree_size: sth.tree_size,
        root_hash: to_hex(&frontier.root()),
        checkpoints: checkpoints.len() as u64,
        unsigned_entries: entries - newest_signed,
    })
}

fn check_roots(heads: &[(Hash, String)], frontier: &Frontier, last_good: &mut u64) -> Result<()> {
    let root = frontier.root();
    for (signed, what) in heads {
        if *signed != root {
            return Err(VerifyFailure::RootMismatch {
                what: what.clone(),
                from: *last_good,
                to: frontier.size(),
            });
        }
    }
    *last_good = frontier.size();
    Ok(())
}

fn read_sth(path: &Path) -> Result<SignedTreeHead> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(VerifyFailure::NoSignedHead {
                path: path.to_owned(),
            });
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    serde_json::from_slice(&bytes).map_err(|_| VerifyFailure::BadSignature {
        what: "sth.json".into(),
    })
}

/// Reads and signature-checks every checkpoint, in order.
fn read_checkpoints(path: &Path, key: &[u8; 32]) -> Result<Vec<(String, SignedTreeHead)>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        let n = i as u64 + 1;
        let what = format!("checkpoint line {n}");
        let head: SignedTreeHead = serde_json::from_str(&line)
            .ok()
            .filter(|h: &SignedTreeHead| h.verify(key))
            .ok_or_else(|| VerifyFailure::BadSignature { what: what.clone() })?;
        if head.tree_size != n * CHECKPOINT_INTERVAL {
            return Err(VerifyFailure::CheckpointOutOfPlace {
                line: n,
                expected: n * CHECKPOINT_INTERVAL,
                found: head.tree_size,
            });
        }
        out.push((what, head));
    }
    Ok(out)
}
