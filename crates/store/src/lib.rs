//! Storage for Polity: entity state, temporal series, the device registry and dead
//! letters.
//!
//! This crate owns the storage traits and their backends. The traits are synchronous,
//! object-safe and `Send + Sync`: async callers run them on blocking threads
//! (`tokio::task::spawn_blocking`). Backends:
//!
//! - [`fjall::FjallStore`], the embedded default (an LSM tree in one data directory);
//! - later PostgreSQL, behind the same traits and the same [`conformance`] suite.
//!
//! The write path is [`Store::commit`]: one call appends a group of [`Batch`]es to the
//! temporal series, folds them into entity state and makes both durable together. The
//! ingest pipeline coalesces many senders' batches into one call (group commit) and
//! acknowledges the senders only after it returns `Ok`.
//!
//! This crate does no NGSI-LD term handling: attribute and type names arrive and leave
//! as expanded IRIs. It must not depend on any crate other than `polity-model`.

pub mod conformance;
pub mod fjall;

mod codec;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use serde::{Serialize, ser::SerializeStruct};

pub use polity_model::{Batch, EntityId, EntityState, Observation, Tenant, Timestamp};

/// A storage failure, written for the operator who has to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The data directory is locked by another process.
    #[error("another polity process is using {}; stop it or pass a different --data-dir", dir.display())]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// The data directory could not be created or opened.
    #[error("cannot open the data directory {}: {reason}; check that it exists, is a directory, and is writable by this user", dir.display())]
    Open {
        /// The data directory.
        dir: PathBuf,
        /// What the storage engine reported.
        reason: String,
    },
    /// The data directory was written by a newer, incompatible Polity.
    #[error("the data directory {} holds store format {found}, but this polity reads format {supported}; run the polity version that wrote it, or pass a different --data-dir", dir.display())]
    Format {
        /// The data directory.
        dir: PathBuf,
        /// The format found on disk.
        found: u32,
        /// The format this build reads and writes.
        supported: u32,
    },
    /// A read or write failed in the storage engine.
    #[error(
        "storage {op} failed: {reason}; check free disk space and the disk's health (after a failed write the store refuses further writes: restart polity)"
    )]
    Io {
        /// What was being done ("commit", "read series", …).
        op: &'static str,
        /// What the storage engine reported.
        reason: String,
    },
    /// A stored record could not be decoded.
    #[error(
        "corrupt record in {keyspace} at key {key}: {reason}; restore the data directory from a backup, or delete the record's entity and re-ingest it"
    )]
    Corrupt {
        /// The keyspace (table) holding the record.
        keyspace: &'static str,
        /// The record's key, escaped for printing.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The caller passed something the store cannot hold.
    #[error("{0}")]
    Invalid(String),
}

/// The result type of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------
// Entities

/// Which entities to list. Results come in entity id order (byte order of the id text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntityQuery {
    /// Only entities of this type (an expanded IRI).
    pub entity_type: Option<Arc<str>>,
    /// Only these entities (ids that do not exist are skipped).
    pub ids: Option<Vec<EntityId>>,
    /// Keyset pagination: only entities whose id sorts after this one. Pass the last id
    /// of the previous page.
    pub after: Option<EntityId>,
    /// At most this many entities.
    pub limit: usize,
}

impl EntityQuery {
    /// Every entity of the tenant, or of one type (`Some` expanded IRI).
    pub fn all(entity_type: Option<Arc<str>>) -> Self {
        EntityQuery {
            entity_type,
            ids: None,
            after: None,
            limit: usize::MAX,
        }
    }
}

/// Current entity state, per tenant.
pub trait EntityStore: Send + Sync {
    /// One entity's state, or `None` if the tenant has no such entity.
    fn entity(&self, tenant: &Tenant, id: &EntityId) -> Result<Option<EntityState>>;

    /// The entities matching `query`, in id order.
    fn entities(&self, tenant: &Tenant, query: &EntityQuery) -> Result<Vec<EntityState>>;

    /// How many entities the tenant has, of one type (expanded IRI) or of all.
    fn count_entities(&self, tenant: &Tenant, entity_type: Option<&str>) -> Result<u64>;

    /// Each entity type (expanded IRI) the tenant has, with its entity count, in type
    /// order.
    fn types(&self, tenant: &Tenant) -> Result<Vec<(Arc<str>, u64)>>;

    /// Every tenant holding any entity, series point, device or dead letter, in order.
    fn tenants(&self) -> Result<Vec<Tenant>>;

    /// Deletes an entity's state and its temporal series, durably. Returns whether the
    /// entity existed.
    fn delete_entity(&self, tenant: &Tenant, id: &EntityId) -> Result<bool>;
}

// ---------------------------------------------------------------------------------------
// Series

/// Which points of an entity's temporal series to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesQuery {
    /// Only these attributes (expanded IRIs); all if `None`.
    pub attrs: Option<Vec<Arc<str>>>,
    /// Only points observed at or after this instant.
    pub from: Option<Timestamp>,
    /// Only points observed before this instant (exclusive).
    pub to: Option<Timestamp>,
    /// Only the latest N points of each attribute instance (attribute and datasetId)
    /// within the time range (NGSI-LD `lastN`), still returned oldest first.
    pub last_n: Option<usize>,
    /// At most this many points in all.
    pub limit: usize,
}

/// A point of a series with when it was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedPoint {
    /// The observation.
    pub observation: Observation,
    /// When the node committed it (the instance's `createdAt`/`modifiedAt`).
    pub recorded_at: Timestamp,
}

/// The temporal series: every observation ever committed.
///
/// A series holds one point per (entity, attribute, datasetId, observedAt): a second
/// observation at the same instant replaces the first.
pub trait SeriesStore: Send + Sync {
    /// Points of one entity, ordered by attribute, then datasetId (the default instance
    /// first), then time ascending.
    fn series(
        &self,
        tenant: &Tenant,
        id: &EntityId,
        query: &SeriesQuery,
    ) -> Result<Vec<Observation>>;

    /// As [`SeriesStore::series`], with when each point was recorded (committed). A
    /// backend that does not keep it reports the point's own time.
    fn recorded_series(
        &self,
        tenant: &Tenant,
        id: &EntityId,
        query: &SeriesQuery,
    ) -> Result<Vec<RecordedPoint>> {
        Ok(self
            .series(tenant, id, query)?
            .into_iter()
            .map(|o| RecordedPoint {
                recorded_at: o.observed_at,
                observation: o,
            })
            .collect())
    }

    /// How many points the tenant holds. May be approximate: a backend may count an
    /// observation re-written at the same instant twice.
    fn count_points(&self, tenant: &Tenant) -> Result<u64>;
}

// ---------------------------------------------------------------------------------------
// Dead letters

/// Input that could not be parsed or mapped, to be kept with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeadLetter {
    /// When it was rejected.
    pub at: Timestamp,
    /// The tenant, if known when it was rejected.
    pub tenant: Option<Tenant>,
    /// The source component that received it (its configured name).
    pub source: String,
    /// Why it was rejected, for the operator.
    pub reason: String,
    /// The payload's media type, if known (`application/senml+cbor`, …).
    pub content_type: Option<String>,
    /// The payload exactly as received.
    pub payload: Vec<u8>,
}

/// A stored dead letter.
///
/// Serializes (for the operator API) with the payload as lossy UTF-8 text in `payload`,
/// and losslessly as standard base64 in `payload_base64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its id: ids grow with every dead letter stored.
    pub id: u64,
    /// When it was rejected.
    pub at: Timestamp,
    /// The tenant, if known.
    pub tenant: Option<Tenant>,
    /// The source component that received it.
    pub source: String,
    /// Why it was rejected.
    pub reason: String,
    /// The payload's media type, if known.
    pub content_type: Option<String>,
    /// The payload exactly as received.
    pub payload: Vec<u8>,
}

impl DeadLetter {
    /// The payload as text; bytes that are not UTF-8 show as U+FFFD.
    pub fn payload_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.payload)
    }

    /// The payload in standard base64 (RFC 4648, padded).
    pub fn payload_base64(&self) -> String {
        base64(&self.payload)
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let b = [
            c[0],
            c.get(1).copied().unwrap_or(0),
            c.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Serialize for DeadLetter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("DeadLetter", 8)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("at", &self.at)?;
        st.serialize_field("tenant", &self.tenant)?;
        st.serialize_field("source", &self.source)?;
        st.serialize_field("reason", &self.reason)?;
        st.serialize_field("contentType", &self.content_type)?;
        st.serialize_field("payload", &self.payload_text())?;
        st.serialize_field("payloadBase64", &self.payload_base64())?;
        st.end()
    }
}

/// Which dead letters to list. Results come in id order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterQuery {
    /// Only this tenant's; all tenants' (including those with no tenant) if `None`.
    pub tenant: Option<Tenant>,
    /// Only those from this source component.
    pub source: Option<String>,
    /// Keyset pagination: only ids greater than this.
    pub after: Option<u64>,
    /// At most this many.
    pub limit: usize,
}

/// Dead letters: rejected input kept with its reason.
pub trait DeadLetterStore: Send + Sync {
    /// Stores a dead letter durably and returns its id.
    fn put_dead_letter(&self, letter: NewDeadLetter) -> Result<u64>;

    /// The dead letters matching `query`, in id order.
    fn dead_letters(&self, query: &DeadLetterQuery) -> Result<Vec<DeadLetter>>;

    /// How many dead letters are stored, across all tenants.
    fn dead_letter_count(&self) -> Result<u64>;
}

// ---------------------------------------------------------------------------------------
// Device registry

/// A device known to a tenant: which entity it reports as, and when it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// The tenant that owns the device.
    pub tenant: Tenant,
    /// The device's id in its source (a DevEUI, an MQTT client id, …).
    pub device_id: String,
    /// The entity its observations are about.
    pub entity: EntityId,
    /// That entity's type (an expanded IRI).
    pub entity_type: Arc<str>,
    /// The source component that reported it.
    pub source: String,
    /// When it was first seen.
    pub first_seen: Timestamp,
    /// When it was last seen.
    pub last_seen: Timestamp,
    /// Free-form labels (site, model, firmware, …).
    pub labels: BTreeMap<String, String>,
}

/// The device registry.
pub trait Registry: Send + Sync {
    /// Inserts or updates devices, durably. An existing device keeps its `first_seen`;
    /// its `last_seen` only moves forward; every other field takes the new value.
    fn upsert_devices(&self, devices: &[Device]) -> Result<()>;

    /// One device.
    fn device(&self, tenant: &Tenant, device_id: &str) -> Result<Option<Device>>;

    /// The tenant's devices in device id order, after the `after` id (keyset
    /// pagination), at most `limit`.
    fn devices(&self, tenant: &Tenant, after: Option<&str>, limit: usize) -> Result<Vec<Device>>;

    /// How many devices the tenant has.
    fn count_devices(&self, tenant: &Tenant) -> Result<u64>;
}

// ---------------------------------------------------------------------------------------
// Documents

/// Small JSON documents the API keeps per tenant, by kind: subscriptions today;
/// context source registrations and user `@context`s later. Each write is durable
/// before it returns. Documents are few (thousands) and read whole.
pub trait DocumentStore: Send + Sync {
    /// Creates or replaces a document.
    fn put_document(&self, kind: &str, tenant: &Tenant, id: &str, doc: &[u8]) -> Result<()>;

    /// One document.
    fn document(&self, kind: &str, tenant: &Tenant, id: &str) -> Result<Option<Vec<u8>>>;

    /// Every document of `kind`, in tenant then id order.
    fn documents(&self, kind: &str) -> Result<Vec<(Tenant, String, Vec<u8>)>>;

    /// Deletes a document; false if there was none.
    fn delete_document(&self, kind: &str, tenant: &Tenant, id: &str) -> Result<bool>;
}

// ---------------------------------------------------------------------------------------
// The whole store

/// What one [`Store::commit`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Observations appended to the series.
    pub observations: u64,
    /// Distinct entities the observations were about.
    pub entities_touched: u64,
    /// Bytes of keys and values written (before the engine's own overhead).
    pub bytes: u64,
}

/// A complete storage backend.
pub trait Store: EntityStore + SeriesStore + DeadLetterStore + Registry + DocumentStore {
    /// Appends every observation of every batch to the temporal series and folds it
    /// into entity state ([`EntityState::apply`]: the latest observation wins, older
    /// ones leave the state unchanged, and an entity is created, with the observation's
    /// type, on first sight). Everything is written atomically and made durable before
    /// this returns `Ok`: after a crash, either all of it is there or none of it is.
    ///
    /// This is the group-commit primitive: pass many senders' batches at once.
    fn commit(&self, batches: &[Batch]) -> Result<CommitStats>;

    /// Makes every write so far durable. [`Store::commit`] already does this; this is
    /// for shutdown paths that want to be explicit.
    fn sync(&self) -> Result<()>;

    /// Bytes the store occupies on disk (approximate).
    fn disk_usage(&self) -> Result<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn dead_letters_serialize_readably_and_losslessly() {
        let d = DeadLetter {
            id: 3,
            at: Timestamp::from_millis(0),
            tenant: None,
            source: "mqtt".into(),
            reason: "bad".into(),
            content_type: None,
            payload: vec![b'h', b'i', 0xff],
        };
        let j = serde_json::to_value(&d).unwrap();
        assert_eq!(j["payload"], "hi\u{FFFD}");
        assert_eq!(j["payloadBase64"], "aGn/");
        assert_eq!(j["at"], "1970-01-01T00:00:00Z");
    }
}
