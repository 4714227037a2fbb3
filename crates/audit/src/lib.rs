//! Polity's tamper-evident audit log (issue #3, first milestone).
//!
//! Every access to personal data and every privileged action is meant to be appended
//! here as an [`AuditEntry`]. The log is a Merkle tree in the style of RFC 9162:
//! leaves are `SHA-256(0x00 ‖ entry JSON)`, nodes `SHA-256(0x01 ‖ left ‖ right)`, and
//! the log's Ed25519 key (ring) signs tree heads ([`SignedTreeHead`]). Anyone holding
//! the public key can check that an entry is in the log ([`merkle::verify_inclusion`])
//! and that a later log extends an earlier one ([`merkle::verify_consistency`]).
//!
//! # Modules
//!
//! - [`merkle`]: pure tree hashing and proofs (RFC 9162 §2.1).
//! - [`head`]: the signed tree head and the exact bytes its signature covers.
//! - [`log`]: the files, appends (fsynced), checkpoints, proofs, and reads by index
//!   and by subject ([`AuditLog`]).
//! - [`bundle`]: a citizen's access report with inclusion proofs against one signed
//!   head ([`ProofBundle`]), and the pure check a citizen runs on it
//!   ([`verify_bundle`]).
//! - [`writer`]: the group-committing writer thread that async handlers record
//!   through ([`AuditWriter`]).
//! - [`verify`]: the full audit behind `polity audit verify` ([`verify_dir`]).
//!
//! Owns the files under `<data dir>/audit/`; nothing else may write them. Does not
//! decide *what* is audited (the routes and policies do) and holds no HTTP code.
//!
//! # What tampering is detected, and how
//!
//! Each record on disk carries its own index and leaf hash, and a signed checkpoint
//! is written every [`log::CHECKPOINT_INTERVAL`] entries, besides the head published
//! in `sth.json`. [`verify_dir`] streams the log once and names the first bad entry:
//!
//! - **edit** of an entry's bytes: its body no longer matches its stored leaf hash;
//! - **delete** or **reorder**: the first record whose stored index differs from its
//!   position;
//! - **truncate**: fewer entries than a signed head covers (or a record cut short);
//! - **rewrite** by someone who also fixes the stored indices and hashes: the first
//!   signed checkpoint whose root no longer matches, which bounds the first bad entry
//!   to one interval of 1,024 entries;
//! - **forged heads**: a head or checkpoint not signed by the log's key.
//!
//! # Done
//!
//! - Group commit for concurrent callers: [`AuditWriter`] owns the log on one thread,
//!   drains its bounded queue into one fsynced batch, answers each caller only once
//!   its entry is durable, and publishes a signed head every 16,384 entries or 1 s.
//! - A citizen's access log with proofs: [`AuditLog::entries_for_subject`],
//!   [`AuditLog::entry`], [`AuditLog::access_report`] / [`AuditWriter::access_report`]
//!   and [`verify_bundle`].
//!
//! # Not yet done
//!
//! - Wiring into the HTTP routes (the binary and `polity-ngsild` hold an
//!   [`AuditWriter`] and await [`AuditWriter::record`] before answering), and a
//!   citizen-facing route and CLI command serving [`ProofBundle`]s.
//! - A bundle proves each listed entry is in the log, not that none was left out.
//! - The key lives beside the log. Someone who can read `signing.pk8` can rewrite the
//!   log and re-sign it; publish heads to a witness and verify with a pinned key
//!   ([`verify::verify_dir_with_key`], [`verify_bundle`] with an expected key) to
//!   catch that. Key rotation is not designed.
//! - Entries after the newest signed head are protected by their stored hashes only
//!   (at most about one second of entries when written through [`AuditWriter`]).
//! - No index by tenant: listing a city's entries means a scan.

pub mod bundle;
pub mod head;
pub mod log;
pub mod merkle;
pub mod verify;
pub mod writer;

pub use bundle::{BundleError, ProofBundle, ProvenEntry, verify_bundle};
pub use head::SignedTreeHead;
pub use log::{AuditEntry, AuditLog, LogError};
pub use merkle::Hash;
pub use verify::{VerifyFailure, VerifyReport, verify_dir};
pub use writer::{AuditWriter, WriteError, WriterConfig, WriterHandle};
