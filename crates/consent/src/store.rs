//! The consent store: a durable, append-only JSON-lines file of grant and withdrawal
//! events, replayed at open into in-memory indexes that answer [`ConsentStore::permits`]
//! with a few hash lookups.
//!
//! Owns the files `consent-events.jsonl` and `consent.lock` in its directory (and, through
//! [`crate::receipt`], `receipt-signing.pk8`). It must not touch any other file there:
//! the directory may be shared with other Polity stores.
//!
//! # Files
//!
//! | file | content |
//! |---|---|
//! | `consent-events.jsonl` | one event per line: `{"event":"granted","consent":{…record…}}` or `{"event":"withdrawn","consentId":…,"tenant":…,"piiPrincipalId":…,"at":…}` |
//! | `consent.lock` | held with an OS file lock while a store is open, so two processes cannot interleave appends |
//! | `receipt-signing.pk8` | the receipt key, Ed25519 PKCS#8, mode 0600 |
//!
//! # Durability and crashes
//!
//! Each event is written with one `write` of the whole line and `fdatasync`ed before the
//! call returns, and only then applied to the indexes. A crash can therefore leave at
//! most one incomplete last line: a final line without its newline is dropped and the
//! file truncated at open, with a warning. Any complete line that does not parse, or
//! that contradicts earlier lines (a withdrawal of an unknown consent, a record that
//! breaks the 12-month rule), is corruption: [`ConsentStore::open`] refuses with the
//! line number rather than silently forget or invent consent.
//!
//! # Withdrawal
//!
//! A withdrawal is in force as soon as [`ConsentStore::withdraw`] returns: the event is
//! durable and the index no longer holds the consent, so the next `permits` (from any
//! thread) answers `None`, and so does every `permits` after a restart. Withdrawing an
//! already withdrawn consent is an idempotent no-op: nothing is written, the original
//! withdrawal time stands, and a fresh receipt of the withdrawn state is returned (an
//! HTTP retry of the withdrawal then succeeds, as a retried `DELETE` should).
//!
//! # Erasure
//!
//! Consent history is personal data too: it ties a citizen's pseudonym to recipients,
//! purposes and times. [`ConsentStore::erase_subject`] rewrites the event file without
//! any of that citizen's events (a temporary file, `fsync`, `rename`, `fsync` of the
//! directory), so no trace is left in the live file. It cannot reach copies made before
//! (backups, freed disk blocks): that is what crypto-shredding (issue #3, §5) is for.
//! After erasure the controller can no longer show that consent was given; the citizen
//! still holds the signed receipts.

use std::{
    collections::HashMap,
    fs::{self, File, OpenOptions, TryLockError},
    io::{self, BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError, RwLock},
};

use polity_model::{Tenant, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{
    receipt::{Jwk, KeyError, Receipt, ReceiptError, ReceiptJson, ReceiptSigner},
    record::{
        CategorySet, ConsentId, ConsentRecord, ConsentRequest, DataCategory, Purpose, RequestError,
    },
};

/// The event file's name inside the store directory.
pub const EVENTS_FILE: &str = "consent-events.jsonl";
/// The lock file's name inside the store directory.
pub const LOCK_FILE: &str = "consent.lock";

/// What went wrong in the consent store. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    /// The request is invalid; the inner error names the field.
    #[error(transparent)]
    Invalid(#[from] RequestError),
    /// No such consent for this citizen in this tenant. Another citizen's consent, or
    /// another tenant's, is reported the same way so that ids cannot be probed.
    #[error(
        "consent {id} was not found for this citizen in tenant {tenant}; list the citizen's consents to find the right id"
    )]
    NotFound {
        /// The tenant asked.
        tenant: Tenant,
        /// The id asked for.
        id: ConsentId,
    },
    /// A file operation failed.
    #[error(
        "consent store file {path}: {source}; check the disk and the permissions of the data directory"
    )]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The event file is damaged before its last line.
    #[error(
        "consent event file {path} is corrupt at line {line}: {reason}; restore the file from backup (Polity will not guess which consents it held)"
    )]
    Corrupt {
        /// The event file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong with the line.
        reason: String,
    },
    /// Another process has the store open.
    #[error(
        "consent store {path} is already open in another process; stop that process or point this one at another data directory"
    )]
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// The receipt signing key could not be loaded or created.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A receipt could not be signed.
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
    /// The random source produced an id already in use (should never happen).
    #[error("a fresh consent id collided with an existing one; retry the grant")]
    IdCollision,
}

type Result<T, E = ConsentError> = std::result::Result<T, E>;

/// One line of the event file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase", deny_unknown_fields)]
enum Event {
    Granted {
        consent: Box<ConsentRecord>,
    },
    Withdrawn {
        #[serde(rename = "consentId")]
        consent_id: ConsentId,
        tenant: Tenant,
        #[serde(rename = "piiPrincipalId")]
        subject: String,
        at: Timestamp,
    },
}

impl Event {
    fn belongs_to(&self, tenant: &Tenant, subject: &str) -> bool {
        match self {
            Event::Granted { consent } => {
                consent.request.tenant == *tenant && consent.request.subject == subject
            }
            Event::Withdrawn {
                tenant: t,
                subject: s,
                ..
            } => t == tenant && s == subject,
        }
    }

    fn to_line(&self) -> Result<Vec<u8>, ReceiptError> {
        let mut line = serde_json::to_vec(self).map_err(|e| ReceiptError::Encode(e.to_string()))?;
        line.push(b'\n');
        Ok(line)
    }
}

/// A consent that may still permit access: what the hot path scans.
#[derive(Debug, Clone, Copy)]
struct Live {
    id: ConsentId,
    purpose: Purpose,
    categories: CategorySet,
    expires_at: Timestamp,
}

#[derive(Debug, Default)]
struct Subject {
    /// Every consent of this citizen, in grant order.
    consents: Vec<ConsentId>,
    /// Not withdrawn, by recipient. Expired entries are pruned on the next grant.
    live: HashMap<String, Vec<Live>>,
}

#[derive(Debug, Default)]
struct Index {
    records: HashMap<ConsentId, ConsentRecord>,
    tenants: HashMap<Tenant, HashMap<String, Subject>>,
}

impl Index {
    fn apply(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::Granted { consent } => self.grant(*consent),
            Event::Withdrawn {
                consent_id,
                tenant,
                subject,
                at,
            } => self.withdraw(consent_id, &tenant, &subject, at),
        }
    }

    fn grant(&mut self, record: ConsentRecord) -> Result<(), String> {
        if self.records.contains_key(&record.consent_id) {
            return Err(format!("consent {} is granted twice", record.consent_id));
        }
        let req = &record.request;
        let subject = self
            .tenants
            .entry(req.tenant.clone())
            .or_default()
            .entry(req.subject.clone())
            .or_default();
        subject.consents.push(record.consent_id);
        if record.withdrawn_at.is_none() {
            let live = subject.live.entry(req.recipient.clone()).or_default();
            live.retain(|l| l.expires_at > record.granted_at);
            live.push(Live {
                id: record.consent_id,
                purpose: req.purpose,
                categories: CategorySet::of(&req.data_categories),
                expires_at: record.expires_at,
            });
        }
        self.records.insert(record.consent_id, record);
        Ok(())
    }

    fn withdraw(
        &mut self,
        id: ConsentId,
        tenant: &Tenant,
        subject: &str,
        at: Timestamp,
    ) -> Result<(), String> {
        let Some(record) = self.records.get_mut(&id) else {
            return Err(format!(
                "withdrawal of consent {id}, which was never granted"
            ));
        };
        if record.request.tenant != *tenant || record.request.subject != subject {
            return Err(format!(
                "withdrawal of consent {id} names another tenant or citizen than its grant"
            ));
        }
        if record.withdrawn_at.is_some() {
            return Err(format!("consent {id} is withdrawn twice"));
        }
        record.withdrawn_at = Some(at);
        let recipient = record.request.recipient.as_str();
        if let Some(s) = self
            .tenants
            .get_mut(tenant)
            .and_then(|subjects| subjects.get_mut(subject))
            && let Some(live) = s.live.get_mut(recipient)
        {
            live.retain(|l| l.id != id);
            if live.is_empty() {
                s.live.remove(recipient);
            }
        }
        Ok(())
    }

    fn remove_subject(&mut self, tenant: &Tenant, subject: &str) -> usize {
        let Some(subjects) = self.tenants.get_mut(tenant) else {
            return 0;
        };
        let Some(s) = subjects.remove(subject) else {
            return 0;
        };
        if subjects.is_empty() {
            self.tenants.remove(tenant);
        }
        for id in &s.consents {
            self.records.remove(id);
        }
        s.consents.len()
    }

    fn owned(&self, tenant: &Tenant, subject: &str, id: ConsentId) -> Option<&ConsentRecord> {
        self.records
            .get(&id)
            .filter(|r| r.request.tenant == *tenant && r.request.subject == subject)
    }
}

/// The consent store. All methods take `&self`; it is `Send + Sync` and meant to be
/// shared in an `Arc`. Writes are serialized by one mutex; `permits` takes only a read
/// lock.
pub struct ConsentStore {
    dir: PathBuf,
    events_path: PathBuf,
    /// The event file, opened for appending. Held while writing an event and applying it.
    writer: Mutex<File>,
    index: RwLock<Index>,
    signer: ReceiptSigner,
    /// Holds the OS lock for the store's lifetime.
    _lock: File,
}

impl std::fmt::Debug for ConsentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ConsentStore {
    /// Opens the store in `dir` (created, mode 0700, if missing): takes the directory
    /// lock, loads or creates the receipt key, and replays the event file.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        create_private_dir(&dir).map_err(io_at(&dir))?;

        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io_at(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(ConsentError::Locked { path: dir }),
            Err(TryLockError::Error(e)) => return Err(io_at(&lock_path)(e)),
        }

        let signer = ReceiptSigner::load_or_create(&dir)?;

        // Left by a crash during `erase_subject`, before the rename: the erasure did not
        // happen (the caller got no answer) and the file holds nothing the live one lacks.
        let stale = dir.join(format!("{EVENTS_FILE}.tmp"));
        match fs::remove_file(&stale) {
            Ok(()) => {
                tracing::warn!(message = "removed an unfinished erasure's temporary file", path = %stale.display())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&stale)(e)),
        }

        let events_path = dir.join(EVENTS_FILE);
        let existed = events_path.exists();
        let file = open_events(&events_path)?;
        if !existed {
            sync_dir(&dir).map_err(io_at(&dir))?;
        }
        let index = replay(&events_path, &file)?;
        tracing::info!(
            message = "consent store open",
            dir = %dir.display(),
            consents = index.records.len()
        );
        Ok(ConsentStore {
            dir,
            events_path,
            writer: Mutex::new(file),
            index: RwLock::new(index),
            signer,
            _lock: lock,
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records a consent granted at `now` and returns it with the citizen's signed
    /// receipt. The grant is durable when this returns.
    pub fn grant(
        &self,
        request: ConsentRequest,
        now: Timestamp,
    ) -> Result<(ConsentRecord, Receipt)> {
        let id = ConsentId::from_bytes(self.signer.random16()?);
        let record = ConsentRecord::grant(id, request, now)?;
        let receipt = self.sign(&record, now)?;
        let line = Event::Granted {
            consent: Box::new(record.clone()),
        }
        .to_line()?;

        let mut file = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if self.read().records.contains_key(&id) {
            return Err(ConsentError::IdCollision);
        }
        self.append(&mut file, &line)?;
        self.write()
            .grant(record.clone())
            .map_err(|reason| self.corrupt_now(reason))?;
        drop(file);
        tracing::debug!(
            message = "consent granted",
            tenant = %record.request.tenant,
            consent = %id,
            purpose = %record.request.purpose
        );
        Ok((record, receipt))
    }

    /// Withdraws the citizen's own consent `id` at `now`. Once this returns, no
    /// [`ConsentStore::permits`] call answers with this consent, now or after a restart.
    ///
    /// A consent of another citizen or tenant is [`ConsentError::NotFound`]. Withdrawing
    /// twice is a no-op that keeps the first withdrawal time and returns a fresh receipt.
    pub fn withdraw(
        &self,
        tenant: &Tenant,
        subject: &str,
        id: ConsentId,
        now: Timestamp,
    ) -> Result<(ConsentRecord, Receipt)> {
        let mut file = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(mut record) = self.read().owned(tenant, subject, id).cloned() else {
            return Err(ConsentError::NotFound {
                tenant: tenant.clone(),
                id,
            });
        };
        if record.withdrawn_at.is_some() {
            drop(file);
            let receipt = self.sign(&record, now)?;
            return Ok((record, receipt));
        }
        // Never before the grant, even if the caller's clock is behind.
        let at = now.max(record.granted_at);
        let line = Event::Withdrawn {
            consent_id: id,
            tenant: tenant.clone(),
            subject: subject.to_owned(),
            at,
        }
        .to_line()?;
        self.append(&mut file, &line)?;
        self.write()
            .withdraw(id, tenant, subject, at)
            .map_err(|reason| self.corrupt_now(reason))?;
        drop(file);
        record.withdrawn_at = Some(at);
        tracing::debug!(message = "consent withdrawn", tenant = %tenant, consent = %id);
        let receipt = self.sign(&record, now)?;
        Ok((record, receipt))
    }

    /// The consent `id`, if it belongs to `tenant`.
    pub fn get(&self, tenant: &Tenant, id: ConsentId) -> Option<ConsentRecord> {
        self.read()
            .records
            .get(&id)
            .filter(|r| r.request.tenant == *tenant)
            .cloned()
    }

    /// Every consent the citizen ever gave in `tenant`, oldest first, with withdrawn and
    /// expired ones (use [`ConsentRecord::state`]).
    pub fn list_for_subject(&self, tenant: &Tenant, subject: &str) -> Vec<ConsentRecord> {
        let ix = self.read();
        let Some(s) = ix.tenants.get(tenant).and_then(|t| t.get(subject)) else {
            return Vec::new();
        };
        s.consents
            .iter()
            .filter_map(|id| ix.records.get(id).cloned())
            .collect()
    }

    /// The hot-path check: the consent under which `recipient` may process `category`
    /// data of the citizen `subject` in `tenant` for `purpose` at `now`, or `None`.
    ///
    /// A consent permits when tenant, subject, recipient and purpose match exactly, its
    /// categories include `category`, it is not withdrawn, and `now < expires_at`. When
    /// several do, the one lasting longest is returned. Cost: three hash lookups and a
    /// scan of that citizen's live consents for that recipient; no allocation.
    pub fn permits(
        &self,
        tenant: &Tenant,
        subject: &str,
        recipient: &str,
        purpose: Purpose,
        category: DataCategory,
        now: Timestamp,
    ) -> Option<ConsentId> {
        let ix = self.read();
        ix.tenants
            .get(tenant)?
            .get(subject)?
            .live
            .get(recipient)?
            .iter()
            .filter(|l| {
                l.purpose == purpose && l.categories.contains(category) && now < l.expires_at
            })
            .max_by_key(|l| l.expires_at)
            .map(|l| l.id)
    }

    /// A fresh signed receipt of the citizen's consent `id` as it stands at `now` (for a
    /// citizen who lost theirs).
    pub fn receipt_for(
        &self,
        tenant: &Tenant,
        subject: &str,
        id: ConsentId,
        now: Timestamp,
    ) -> Result<Receipt> {
        let record = self
            .read()
            .owned(tenant, subject, id)
            .cloned()
            .ok_or_else(|| ConsentError::NotFound {
                tenant: tenant.clone(),
                id,
            })?;
        self.sign(&record, now)
    }

    /// Erases every consent event of the citizen `subject` in `tenant` from the index and
    /// from the event file (rewritten atomically), and returns how many consents were
    /// erased. See the module docs for what erasure does not reach.
    pub fn erase_subject(&self, tenant: &Tenant, subject: &str) -> Result<usize> {
        let mut file = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let known = self
            .read()
            .tenants
            .get(tenant)
            .is_some_and(|t| t.contains_key(subject));
        if !known {
            return Ok(0);
        }
        let tmp = self.dir.join(format!("{EVENTS_FILE}.tmp"));
        let kept = rewrite_without(&self.events_path, &tmp, tenant, subject)?;
        fs::rename(&tmp, &self.events_path).map_err(io_at(&self.events_path))?;
        sync_dir(&self.dir).map_err(io_at(&self.dir))?;
        *file = open_events(&self.events_path)?;
        let erased = self.write().remove_subject(tenant, subject);
        drop(file);
        tracing::info!(
            message = "erased a citizen's consent history",
            tenant = %tenant,
            consents = erased,
            events_kept = kept
        );
        Ok(erased)
    }

    /// The receipt verification key as a JWK (RFC 8037), to publish for citizens.
    pub fn receipt_public_jwk(&self) -> Jwk {
        self.signer.public_jwk()
    }

    /// The receipt verification key, 32 raw bytes, for [`crate::verify_receipt`].
    pub fn receipt_public_key(&self) -> [u8; 32] {
        self.signer.public_key()
    }

    fn sign(&self, record: &ConsentRecord, now: Timestamp) -> Result<Receipt> {
        let json = ReceiptJson::for_record(record, self.signer.receipt_id()?, now);
        Ok(self.signer.sign(json)?)
    }

    fn append(&self, file: &mut File, line: &[u8]) -> Result<()> {
        file.write_all(line)
            .and_then(|()| file.sync_data())
            .map_err(io_at(&self.events_path))
    }

    fn corrupt_now(&self, reason: String) -> ConsentError {
        tracing::error!(message = "consent index rejected a written event", %reason);
        ConsentError::Corrupt {
            path: self.events_path.clone(),
            line: 0,
            reason,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> ConsentError + '_ {
    move |source| ConsentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn open_events(path: &Path) -> Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path).map_err(io_at(path))
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// `fsync` on a directory, so that a new or renamed entry survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Replays the event file into an index, truncating a torn last line.
fn replay(path: &Path, file: &File) -> Result<Index> {
    let mut index = Index::default();
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    let mut offset = 0u64;
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io_at(path))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let Some(line) = buf.strip_suffix(b"\n") else {
            tracing::warn!(
                message = "dropping an incomplete last consent event (a write cut short by a crash)",
                path = %path.display(),
                line = line_no,
                bytes = n
            );
            file.set_len(offset)
                .and_then(|()| file.sync_all())
                .map_err(io_at(path))?;
            break;
        };
        let corrupt = |reason: String| ConsentError::Corrupt {
            path: path.to_path_buf(),
            line: line_no,
            reason,
        };
        let event = parse_event(line).map_err(corrupt)?;
        index.apply(event).map_err(corrupt)?;
        offset += n as u64;
    }
    Ok(index)
}

fn parse_event(line: &[u8]) -> Result<Event, String> {
    let event: Event =
        serde_json::from_slice(line).map_err(|e| format!("not a consent event: {e}"))?;
    if let Event::Granted { consent } = &event {
        let expires_at = consent
            .request
            .validate(consent.granted_at)
            .map_err(|e| format!("invalid grant: {e}"))?;
        if expires_at != consent.expires_at {
            return Err(format!(
                "consent {} expires at {} but its duration ends at {expires_at}",
                consent.consent_id, consent.expires_at
            ));
        }
        if consent.withdrawn_at.is_some() {
            return Err("a grant event carries a withdrawal time".into());
        }
    }
    Ok(event)
}

/// Copies the events not belonging to (tenant, subject) from `src` to `tmp` byte for
/// byte and syncs `tmp`. Returns how many lines were kept.
fn rewrite_without(src: &Path, tmp: &Path, tenant: &Tenant, subject: &str) -> Result<u64> {
    let input = File::open(src).map_err(io_at(src))?;
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let out = opts.open(tmp).map_err(io_at(tmp))?;
    let mut out = BufWriter::new(out);
    let mut reader = BufReader::new(input);
    let mut buf = Vec::new();
    let (mut line_no, mut kept) = (0u64, 0u64);
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(io_at(src))? == 0 {
            break;
        }
        line_no += 1;
        let event = parse_event(buf.strip_suffix(b"\n").unwrap_or(&buf)).map_err(|reason| {
            ConsentError::Corrupt {
                path: src.to_path_buf(),
                line: line_no,
                reason,
            }
        })?;
        if !event.belongs_to(tenant, subject) {
            out.write_all(&buf).map_err(io_at(tmp))?;
            kept += 1;
        }
    }
    let out = out.into_inner().map_err(|e| io_at(tmp)(e.into_error()))?;
    out.sync_all().map_err(io_at(tmp))?;
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::request;
    use proptest::prelude::*;

    #[test]
    fn store_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<ConsentStore>();
    }

    #[test]
    fn second_open_of_the_same_dir_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let _a = ConsentStore::open(d.path()).unwrap();
        let e = ConsentStore::open(d.path()).unwrap_err();
        assert!(matches!(e, ConsentError::Locked { .. }), "{e}");
    }

    #[test]
    fn withdraw_of_another_citizens_consent_is_not_found() {
        let d = tempfile::tempdir().unwrap();
        let s = ConsentStore::open(d.path()).unwrap();
        let now = Timestamp::parse("2026-03-01T00:00:00Z").unwrap();
        let (rec, _) = s.grant(request(30), now).unwrap();
        let t = rec.request.tenant.clone();
        let e = s
            .withdraw(&t, "someone-else", rec.consent_id, now)
            .unwrap_err();
        assert!(matches!(e, ConsentError::NotFound { .. }), "{e}");
        assert!(s.get(&t, rec.consent_id).unwrap().withdrawn_at.is_none());
    }

    #[test]
    fn contradicting_events_are_corruption() {
        let mut ix = Index::default();
        let e = ix
            .apply(Event::Withdrawn {
                consent_id: ConsentId::from_bytes([1; 16]),
                tenant: Tenant::new("adelaide").unwrap(),
                subject: "x".into(),
                at: Timestamp::from_millis(0),
            })
            .unwrap_err();
        assert!(e.contains("never granted"), "{e}");
    }

    proptest! {
        #[test]
        fn event_line_round_trip(
            bytes in any::<[u8; 16]>(),
            ms in 0i64..4_102_444_800_000,
            withdraw in any::<bool>(),
        ) {
            let t = Timestamp::from_millis(ms);
            let event = if withdraw {
                Event::Withdrawn {
                    consent_id: ConsentId::from_bytes(bytes),
                    tenant: Tenant::new("adelaide").unwrap(),
                    subject: "citizen-1".into(),
                    at: t,
                }
            } else {
                Event::Granted {
                    consent: Box::new(
                        ConsentRecord::grant(ConsentId::from_bytes(bytes), request(30), t).unwrap(),
                    ),
                }
            };
            let line = event.to_line().unwrap();
            prop_assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            prop_assert_eq!(parse_event(&line[..line.len() - 1]).unwrap(), event);
        }
    }
}
