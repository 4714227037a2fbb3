//! The audit log on disk: append entries, sign tree heads, serve proofs.
//!
//! Owns the files under `<dir>/audit/`; must not be written by anything else:
//!
//! | file | content |
//! |---|---|
//! | `entries` | append-only records, one per entry (format below) |
//! | `checkpoints` | one [`SignedTreeHead`] JSON line per [`CHECKPOINT_INTERVAL`] entries |
//! | `sth.json` | the latest published [`SignedTreeHead`] ([`AuditLog::publish_head`]) |
//! | `signing.pk8` | the Ed25519 private key, PKCS#8 v2, mode 0600, made on first open |
//! | `public.key` | its public key, 64 hex digits |
//!
//! A record in `entries` is, integers little-endian:
//!
//! ```text
//! body_len  u32      length of body, at most MAX_ENTRY_BYTES
//! index     u64      the entry's position in the log, from 0
//! leaf_hash [u8; 32] SHA-256(0x00 ‖ body), the RFC 9162 leaf hash
//! body      body_len bytes: the entry as compact JSON, fields in declaration order
//! ```
//!
//! The Merkle leaf is exactly `body`, so verification never depends on re-encoding
//! JSON the same way. `index` and `leaf_hash` let the verifier name the first bad
//! record (see [`crate::verify`]).
//!
//! Durability: each [`AuditLog::append`] or [`AuditLog::append_batch`] call writes its
//! records and any due checkpoint, then fsyncs, before it returns. Callers with many
//! small appends should batch them, or go through [`crate::writer::AuditWriter`],
//! which group-commits for many concurrent callers.
//!
//! Reading: [`AuditLog::entry`] reads any entry back by index, and
//! [`AuditLog::entries_for_subject`] lists a citizen's entries. Both use indexes kept
//! in memory, built by the scan in [`AuditLog::open`] and kept up to date by appends:
//!
//! - the byte offset of every record: 8 bytes per entry (8 MB per million);
//! - the entries of each subject: 8 bytes per entry that names a subject, plus about
//!   100 bytes per distinct subject (its id, its list and the hash-table slot).
//!   A million entries about a million different citizens cost about 100 MB; about
//!   100,000 citizens, about 20 MB.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use polity_model::{Tenant, Timestamp};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

use crate::head::{SignedTreeHead, from_hex, signing_bytes, to_hex};
use crate::merkle::{Hash, MerkleTree, ProofError, leaf_hash};

/// Entries between two signed checkpoints. A power of two, so each checkpoint covers
/// whole subtrees.
pub const CHECKPOINT_INTERVAL: u64 = 1024;

/// The largest entry body accepted, in bytes. Larger lengths on disk mean corruption.
pub const MAX_ENTRY_BYTES: u32 = 1 << 20;

/// Bytes before each record's body: `body_len`, `index`, `leaf_hash`.
pub const RECORD_HEADER_BYTES: usize = 4 + 8 + 32;

/// One audited event: an access to personal data or a privileged action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// When it happened.
    pub at: Timestamp,
    /// Who did it: a user, service or device identity.
    pub actor: String,
    /// What was done, e.g. `read`, `export`, `grant-role`.
    pub action: String,
    /// The city whose data or configuration was touched, if any.
    pub tenant: Option<Tenant>,
    /// The pseudonymous id of the citizen whose data was touched, if any.
    pub subject: Option<String>,
    /// What was touched, e.g. an entity id or an API route.
    pub resource: String,
    /// The declared purpose of a personal-data access.
    pub purpose: Option<String>,
    /// How it ended, e.g. `allowed`, `denied`, `error`.
    pub outcome: String,
}

/// What went wrong opening or writing the audit log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file could not be read or written.
    #[error(
        "audit log file {path}: {source}; check the path exists, is writable and the disk is not full"
    )]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The signing key could not be loaded.
    #[error(
        "audit signing key {path}: {reason}; restore it from backup (a new key cannot vouch for old entries)"
    )]
    Key {
        /// The key file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The entries file does not have the expected shape.
    #[error(
        "audit log {path} is damaged at entry {index}: {reason}; run `polity audit verify` for a full report"
    )]
    Corrupt {
        /// The entries file.
        path: PathBuf,
        /// The first entry that is wrong.
        index: u64,
        /// What was wrong.
        reason: String,
    },
    /// An entry is too large to log.
    #[error(
        "audit entry is {bytes} bytes as JSON, above the {MAX_ENTRY_BYTES}-byte limit; shorten its fields"
    )]
    EntryTooLarge {
        /// Its encoded size.
        bytes: usize,
    },
    /// A proof was asked for sizes the log cannot serve.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// An entry was asked for by an index the log does not hold.
    #[error("there is no audit entry {index}: the log holds entries 0 to {len} (exclusive)")]
    NoSuchEntry {
        /// The index asked for.
        index: u64,
        /// Entries in the log.
        len: u64,
    },
}

type Result<T, E = LogError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One record as read back from `entries`.
pub(crate) struct RawRecord {
    pub(crate) index: u64,
    pub(crate) leaf_hash: Hash,
    pub(crate) body: Vec<u8>,
}

/// Why the next record could not be read.
pub(crate) enum ReadProblem {
    /// The file ends inside a record.
    Torn,
    /// The length field is larger than [`MAX_ENTRY_BYTES`].
    TooLarge(u32),
    /// The read failed.
    Io(io::Error),
}

/// Reads records from the start of `entries`, reusing one body buffer.
pub(crate) struct RecordReader<R> {
    inner: R,
    /// Bytes consumed by complete records so far.
    pub(crate) offset: u64,
}

impl<R: Read> RecordReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        RecordReader { inner, offset: 0 }
    }

    /// The next record into `rec`; `Ok(false)` at a clean end of file.
    pub(crate) fn next_into(&mut self, rec: &mut RawRecord) -> Result<bool, ReadProblem> {
        let mut header = [0u8; RECORD_HEADER_BYTES];
        let got = read_full(&mut self.inner, &mut header).map_err(ReadProblem::Io)?;
        if got == 0 {
            return Ok(false);
        }
        if got < header.len() {
            return Err(ReadProblem::Torn);
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if len > MAX_ENTRY_BYTES {
            return Err(ReadProblem::TooLarge(len));
        }
        let mut idx = [0u8; 8];
        idx.copy_from_slice(&header[4..12]);
        rec.index = u64::from_le_bytes(idx);
        rec.leaf_hash.copy_from_slice(&header[12..44]);
        rec.body.resize(len as usize, 0);
        let got = read_full(&mut self.inner, &mut rec.body).map_err(ReadProblem::Io)?;
        if got < rec.body.len() {
            return Err(ReadProblem::Torn);
        }
        self.offset += (RECORD_HEADER_BYTES + rec.body.len()) as u64;
        Ok(true)
    }
}

impl RawRecord {
    pub(crate) fn empty() -> Self {
        RawRecord {
            index: 0,
            leaf_hash: [0; 32],
            body: Vec::new(),
        }
    }
}

/// Reads until `buf` is full or end of file; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The paths of an audit directory's files.
pub(crate) struct Paths {
    pub(crate) entries: PathBuf,
    pub(crate) checkpoints: PathBuf,
    pub(crate) sth: PathBuf,
    pub(crate) signing_key: PathBuf,
    pub(crate) public_key: PathBuf,
}

impl Paths {
    /// The files under `<dir>/audit/`.
    pub(crate) fn new(dir: &Path) -> Self {
        let a = dir.join("audit");
        Paths {
            entries: a.join("entries"),
            checkpoints: a.join("checkpoints"),
            sth: a.join("sth.json"),
            signing_key: a.join("signing.pk8"),
            public_key: a.join("public.key"),
        }
    }
}

/// An open, writable audit log. One process at a time may hold it.
pub struct AuditLog {
    paths: Paths,
    entries: File,
    /// Length of `entries` in bytes: where the next record goes.
    end: u64,
    /// Byte offset of each record in `entries`, by index.
    offsets: Vec<u64>,
    /// Indices of the entries naming each subject, ascending.
    subjects: HashMap<Box<str>, Vec<u64>>,
    /// The head last written to `sth.json`, if it matches this log.
    published: Option<SignedTreeHead>,
    checkpoints: File,
    key: Ed25519KeyPair,
    tree: MerkleTree,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.paths.entries.parent())
            .field("tree_size", &self.tree.len())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the log under `<dir>/audit/`, creating it, its key and an initial signed
    /// head on first use.
    ///
    /// Re-reads every record to rebuild the in-memory tree (about 64 bytes per entry)
    /// and the read indexes (see the module docs for their memory cost), checking
    /// each record's index and leaf hash; a record cut short by a crash
    /// during an append that never returned is removed. Signed checkpoints missed by
    /// such a crash are written. Signatures are not checked here: that is
    /// [`crate::verify::verify_dir`]'s job.
    pub fn open(dir: &Path) -> Result<AuditLog> {
        let paths = Paths::new(dir);
        let audit_dir = dir.join("audit");
        fs::create_dir_all(&audit_dir).map_err(io_err(&audit_dir))?;
        let (key, created) = load_or_create_key(&paths)?;

        let mut entries = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&paths.entries)
            .map_err(io_err(&paths.entries))?;
        let Scan {
            tree,
            offsets,
            subjects,
            end,
        } = read_tree(&paths.entries, &mut entries)?;

        let mut checkpoints = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&paths.checkpoints)
            .map_err(io_err(&paths.checkpoints))?;
        let written = count_checkpoints(&paths.checkpoints, &mut checkpoints)?;

        let mut log = AuditLog {
            paths,
            entries,
            end,
            offsets,
            subjects,
            published: None,
            checkpoints,
            key,
            tree,
        };
        log.published = log.read_published_head();
        let due = log.tree.len() / CHECKPOINT_INTERVAL;
        if written < due {
            tracing::warn!(
                message = "writing audit checkpoints missed by an interrupted append",
                missing = due - written
            );
            let mut text = String::new();
            for k in written + 1..=due {
                log.checkpoint_line(k * CHECKPOINT_INTERVAL, &mut text)?;
            }
            log.write_checkpoints(&text)?;
        }
        if created {
            log.publish_head()?;
        }
        Ok(log)
    }

    /// Number of entries in the log.
    pub fn len(&self) -> u64 {
        self.tree.len()
    }

    /// Whether the log has no entries.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Appends one entry durably and returns its index.
    pub fn append(&mut self, entry: &AuditEntry) -> Result<u64> {
        self.append_batch(std::slice::from_ref(entry))
            .map(|r| r.start)
    }

    /// Appends entries durably with one fsync and returns their indices.
    pub fn append_batch(&mut self, entries: &[AuditEntry]) -> Result<Range<u64>> {
        let start = self.tree.len();
        let mut buf = Vec::with_capacity(entries.len() * 320);
        let mut leaves = Vec::with_capacity(entries.len());
        let mut body_lens = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let body = serde_json::to_vec(e).map_err(|e| LogError::Corrupt {
                path: self.paths.entries.clone(),
                index: start + i as u64,
                reason: format!("entry cannot be encoded: {e}"),
            })?;
            let len = u32::try_from(body.len())
                .ok()
                .filter(|l| *l <= MAX_ENTRY_BYTES)
                .ok_or(LogError::EntryTooLarge { bytes: body.len() })?;
            let leaf = leaf_hash(&body);
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&(start + i as u64).to_le_bytes());
            buf.extend_from_slice(&leaf);
            buf.extend_from_slice(&body);
            leaves.push(leaf);
            body_lens.push(body.len());
        }
        let before = self.end;
        if let Err(e) = self
            .entries
            .write_all(&buf)
            .and_then(|()| self.entries.sync_data())
        {
            // Leave no partial or unsynced record behind for the next append to
            // follow: those indices will be written again.
            let _ = self.entries.set_len(before);
            return Err(io_err(&self.paths.entries)(e));
        }
        let mut offset = before;
        for ((l, e), i) in leaves.into_iter().zip(entries).zip(start..) {
            self.tree.push(l);
            self.offsets.push(offset);
            offset += (RECORD_HEADER_BYTES + body_lens[(i - start) as usize]) as u64;
            if let Some(s) = &e.subject {
                self.subjects.entry(s.as_str().into()).or_default().push(i);
            }
        }
        self.end = offset;
        let end = self.tree.len();
        let mut text = String::new();
        let mut k = start / CHECKPOINT_INTERVAL + 1;
        while k * CHECKPOINT_INTERVAL <= end {
            self.checkpoint_line(k * CHECKPOINT_INTERVAL, &mut text)?;
            k += 1;
        }
        if !text.is_empty() {
            self.write_checkpoints(&text)?;
        }
        Ok(start..end)
    }

    fn checkpoint_line(&self, size: u64, out: &mut String) -> Result<()> {
        let head = self.sign_head(size)?;
        // Serialising a struct of strings and integers cannot fail.
        out.push_str(&serde_json::to_string(&head).unwrap_or_default());
        out.push('\n');
        Ok(())
    }

    fn write_checkpoints(&mut self, text: &str) -> Result<()> {
        let path = &self.paths.checkpoints;
        self.checkpoints
            .write_all(text.as_bytes())
            .and_then(|()| self.checkpoints.sync_data())
            .map_err(io_err(path))
    }

    fn sign_head(&self, tree_size: u64) -> Result<SignedTreeHead> {
        Ok(self.sign_root(tree_size, self.tree.root(tree_size)?))
    }

    fn sign_root(&self, tree_size: u64, root: Hash) -> SignedTreeHead {
        let timestamp_ms = Timestamp::now().as_millis();
        let sig = self
            .key
            .sign(&signing_bytes(tree_size, timestamp_ms, &root));
        SignedTreeHead {
            tree_size,
            root_hash: to_hex(&root),
            timestamp_ms,
            signature: to_hex(sig.as_ref()),
        }
    }

    /// A freshly signed head over every entry in the log.
    pub fn tree_head(&self) -> SignedTreeHead {
        self.sign_root(self.tree.len(), self.tree.full_root())
    }

    /// Signs the current head and writes it to `sth.json` atomically, so that removing
    /// entries it covers is detected. Publish it elsewhere too (a witness, a
    /// transparency page) to detect an attacker who also replaces this file.
    pub fn publish_head(&mut self) -> Result<SignedTreeHead> {
        let head = self.tree_head();
        let tmp = self.paths.sth.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&head).unwrap_or_default();
        write_synced(&tmp, &text, false)?;
        fs::rename(&tmp, &self.paths.sth).map_err(io_err(&self.paths.sth))?;
        if let Some(parent) = self.paths.sth.parent() {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io_err(parent))?;
        }
        self.published = Some(head.clone());
        Ok(head)
    }

    /// The head last published to `sth.json`, if any (a head found there at open
    /// counts only if it is signed by this log's key and matches its entries).
    pub fn latest_head(&self) -> Option<&SignedTreeHead> {
        self.published.as_ref()
    }

    /// The latest published head if it covers every entry; otherwise publishes a
    /// fresh one ([`AuditLog::publish_head`]) and returns it.
    pub fn current_head(&mut self) -> Result<SignedTreeHead> {
        match &self.published {
            Some(h) if h.tree_size == self.len() => Ok(h.clone()),
            _ => self.publish_head(),
        }
    }

    fn read_published_head(&self) -> Option<SignedTreeHead> {
        let bytes = fs::read(&self.paths.sth).ok()?;
        let head: SignedTreeHead = serde_json::from_slice(&bytes).ok()?;
        let matches = head.verify(&self.public_key())
            && head.root().is_some()
            && self.tree.root(head.tree_size).ok() == head.root();
        if !matches {
            tracing::warn!(
                message = "sth.json does not match this audit log; a fresh head will be published when one is needed",
                tree_size = head.tree_size
            );
        }
        matches.then_some(head)
    }

    /// The entry at `index`, read back from disk.
    ///
    /// The record is checked against the leaf hash held in memory since open, so an
    /// entry edited on disk while the log is open is reported as
    /// [`LogError::Corrupt`], never returned.
    pub fn entry(&self, index: u64) -> Result<AuditEntry> {
        let body = self.entry_bytes(index)?;
        serde_json::from_slice(&body).map_err(|e| LogError::Corrupt {
            path: self.paths.entries.clone(),
            index,
            reason: format!("not an audit entry: {e}"),
        })
    }

    /// The exact bytes of entry `index`: the Merkle leaf data, checked against the
    /// leaf hash held in memory.
    pub fn entry_bytes(&self, index: u64) -> Result<Vec<u8>> {
        let (Some(&offset), Some(leaf)) = (
            usize::try_from(index)
                .ok()
                .and_then(|i| self.offsets.get(i)),
            self.tree.leaf(index),
        ) else {
            return Err(LogError::NoSuchEntry {
                index,
                len: self.len(),
            });
        };
        let path = &self.paths.entries;
        let corrupt = |reason: &str| LogError::Corrupt {
            path: path.clone(),
            index,
            reason: format!("{reason} (changed on disk since the log was opened)"),
        };
        let mut header = [0u8; RECORD_HEADER_BYTES];
        read_exact_at(&self.entries, &mut header, offset).map_err(io_err(path))?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if len > MAX_ENTRY_BYTES {
            return Err(corrupt("its length field is impossible"));
        }
        let mut stored_index = [0u8; 8];
        stored_index.copy_from_slice(&header[4..12]);
        if u64::from_le_bytes(stored_index) != index || header[12..44] != leaf {
            return Err(corrupt("its header is not the one written"));
        }
        let mut body = vec![0u8; len as usize];
        read_exact_at(
            &self.entries,
            &mut body,
            offset + RECORD_HEADER_BYTES as u64,
        )
        .map_err(io_err(path))?;
        if leaf_hash(&body) != leaf {
            return Err(corrupt("its content no longer matches its hash"));
        }
        Ok(body)
    }

    /// The indices of the entries about `subject` (a citizen's pseudonymous id),
    /// ascending. Empty if there are none.
    pub fn entries_for_subject(&self, subject: &str) -> Vec<u64> {
        self.subjects.get(subject).cloned().unwrap_or_default()
    }

    /// The `entries` file, for error messages.
    pub(crate) fn entries_path(&self) -> &Path {
        &self.paths.entries
    }

    /// Number of distinct subjects named by entries.
    pub fn subject_count(&self) -> usize {
        self.subjects.len()
    }

    /// The leaf hash of entry `index`.
    pub fn leaf_hash(&self, index: u64) -> Option<Hash> {
        self.tree.leaf(index)
    }

    /// The Merkle Tree Hash of the first `tree_size` entries.
    pub fn root(&self, tree_size: u64) -> Result<Hash> {
        Ok(self.tree.root(tree_size)?)
    }

    /// The audit path proving entry `index` is in the tree of the first `tree_size`
    /// entries (RFC 9162 §2.1.3.1). Check it with [`crate::merkle::verify_inclusion`].
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>> {
        Ok(self.tree.inclusion_proof(index, tree_size)?)
    }

    /// The proof that the tree of `old` entries is a prefix of the tree of `new`
    /// (RFC 9162 §2.1.4.1). Check it with [`crate::merkle::verify_consistency`].
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>> {
        Ok(self.tree.consistency_proof(old, new)?)
    }

    /// The log's Ed25519 public key, 32 raw bytes.
    pub fn public_key(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.key.public_key().as_ref());
        k
    }
}

fn write_synced(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io_err(path))
}

fn load_or_create_key(paths: &Paths) -> Result<(Ed25519KeyPair, bool)> {
    let key_err = |reason: String| LogError::Key {
        path: paths.signing_key.clone(),
        reason,
    };
    let (key, created) = if paths.signing_key.exists() {
        let der = fs::read(&paths.signing_key).map_err(io_err(&paths.signing_key))?;
        let key = Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|e| key_err(format!("not an Ed25519 PKCS#8 key ({e})")))?;
        (key, false)
    } else {
        let rng = SystemRandom::new();
        let der = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| key_err("the system random source failed".into()))?;
        write_synced(&paths.signing_key, der.as_ref(), true)?;
        let key = Ed25519KeyPair::from_pkcs8(der.as_ref())
            .map_err(|e| key_err(format!("generated key does not load ({e})")))?;
        (key, true)
    };
    let public_hex = to_hex(key.public_key().as_ref());
    match fs::read_to_string(&paths.public_key) {
        Ok(s) if from_hex(s.trim()).as_deref() == Some(key.public_key().as_ref()) => {}
        Ok(_) => {
            return Err(LogError::Key {
                path: paths.public_key.clone(),
                reason: "does not match signing.pk8; one of the two was replaced".into(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            write_synced(
                &paths.public_key,
                format!("{public_hex}\n").as_bytes(),
                false,
            )?;
        }
        Err(e) => return Err(io_err(&paths.public_key)(e)),
    }
    Ok((key, created))
}

/// Reads exactly `buf.len()` bytes at `offset` without moving a shared cursor.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }
    #[cfg(not(unix))]
    {
        let mut f = file;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}

/// The subject of an entry, read without decoding the rest.
#[derive(Deserialize)]
struct SubjectOf<'a> {
    #[serde(borrow, default)]
    subject: Option<Cow<'a, str>>,
}

/// What [`read_tree`] rebuilds from `entries`.
struct Scan {
    tree: MerkleTree,
    offsets: Vec<u64>,
    subjects: HashMap<Box<str>, Vec<u64>>,
    end: u64,
}

fn read_tree(path: &Path, file: &mut File) -> Result<Scan> {
    file.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
    let mut reader = RecordReader::new(BufReader::with_capacity(1 << 20, &*file));
    let mut tree = MerkleTree::new();
    let mut offsets = Vec::new();
    let mut subjects: HashMap<Box<str>, Vec<u64>> = HashMap::new();
    let mut rec = RawRecord::empty();
    let corrupt = |index: u64, reason: String| LogError::Corrupt {
        path: path.to_owned(),
        index,
        reason,
    };
    loop {
        let index = tree.len();
        let offset = reader.offset;
        match reader.next_into(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(ReadProblem::Torn) => {
                tracing::warn!(
                    message = "removing an audit record cut short by an interrupted append",
                    index,
                    offset = reader.offset
                );
                let keep = reader.offset;
                file.set_len(keep).map_err(io_err(path))?;
                file.sync_data().map_err(io_err(path))?;
                break;
            }
            Err(ReadProblem::TooLarge(len)) => {
                return Err(corrupt(index, format!("record length {len} is impossible")));
            }
            Err(ReadProblem::Io(e)) => return Err(io_err(path)(e)),
        }
        if rec.index != index {
            return Err(corrupt(
                index,
                format!("the record there says it is entry {}", rec.index),
            ));
        }
        let leaf = leaf_hash(&rec.body);
        if leaf != rec.leaf_hash {
            return Err(corrupt(
                index,
                "its content no longer matches its hash".into(),
            ));
        }
        tree.push(leaf);
        offsets.push(offset);
        match serde_json::from_slice::<SubjectOf<'_>>(&rec.body) {
            Ok(SubjectOf { subject: Some(s) }) => match subjects.get_mut(s.as_ref()) {
                Some(list) => list.push(index),
                None => {
                    subjects.insert(s.as_ref().into(), vec![index]);
                }
            },
            Ok(_) => {}
            Err(error) => tracing::warn!(
                message = "audit entry is not valid JSON; it is left out of the subject index (run `polity audit verify`)",
                index,
                %error
            ),
        }
    }
    let end = reader.offset;
    Ok(Scan {
        tree,
        offsets,
        subjects,
        end,
    })
}

/// Counts complete checkpoint lines, dropping a trailing line cut short by a crash.
fn count_checkpoints(path: &Path, file: &mut File) -> Result<u64> {
    file.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
    let mut reader = BufReader::new(&*file);
    let (mut count, mut good_len, mut line) = (0u64, 0u64, Vec::new());
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            file.set_len(good_len).map_err(io_err(path))?;
            break;
        }
        good_len += n as u64;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_subject(subject: &str) -> AuditEntry {
        AuditEntry {
            at: Timestamp::from_millis(0),
            actor: "user:a".into(),
            action: "read".into(),
            tenant: None,
            subject: Some(subject.into()),
            resource: "r".into(),
            purpose: None,
            outcome: "allowed".into(),
        }
    }

    #[test]
    fn subjects_needing_json_escapes_are_indexed_the_same_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let odd = "citizen:\"quoted\"\\back\u{1}é";
        let mut log = AuditLog::open(dir.path()).unwrap();
        log.append(&with_subject(odd)).unwrap();
        log.append(&with_subject("citizen:plain")).unwrap();
        assert_eq!(log.entries_for_subject(odd), vec![0]);
        drop(log);
        let log = AuditLog::open(dir.path()).unwrap();
        assert_eq!(log.entries_for_subject(odd), vec![0]);
        assert_eq!(log.entries_for_subject("citizen:plain"), vec![1]);
        assert_eq!(log.entry(0).unwrap(), with_subject(odd));
    }

    #[test]
    fn offsets_track_records_of_different_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(dir.path()).unwrap();
        let entries: Vec<_> = (0..5)
            .map(|i| with_subject(&"x".repeat(1 + i * 37)))
            .collect();
        log.append_batch(&entries[..2]).unwrap();
        log.append_batch(&entries[2..]).unwrap();
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(&log.entry(i as u64).unwrap(), e);
        }
        let on_disk = fs::metadata(dir.path().join("audit/entries"))
            .unwrap()
            .len();
        assert_eq!(log.end, on_disk);
    }
}
