//! The embedded backend: one fjall database (an LSM tree with a write-ahead journal) in
//! one data directory.
//!
//! Keyspaces and their keys (layouts in `codec`):
//!
//! | keyspace       | key                                              | value                 |
//! |----------------|--------------------------------------------------|-----------------------|
//! | `series`       | series id (u64, big-endian) ‖ observedAt         | type id ‖ value, unit, privacy, meta |
//! | `series_ids`   | series id (u64, big-endian)                      | tenant, entity, attr, datasetId |
//! | `entities`     | tenant ‖ entity                                  | the entity's state    |
//! | `dead_letters` | id (u64, big-endian)                             | the dead letter       |
//! | `devices`      | tenant ‖ device id                               | the device            |
//! | `documents`    | kind ‖ tenant ‖ id                               | a JSON document       |
//! | `meta`         | `v` / `t`‖type id / `p`‖tenant                   | format / type name / point count |
//!
//! Entity state is also held in memory, loaded at open and written through by every
//! commit, together with the per-tenant, per-type indexes and counts: entity reads,
//! type listings and counts never touch the disk, and a commit never re-reads it. (So
//! no type index is kept on disk: it is rebuilt from the entity records, which are read
//! at open anyway.)
//!
//! Series ids: each series — one attribute instance (tenant, entity, attribute,
//! datasetId) — is interned to a `u64` the first time a point of it is committed, and
//! its points are keyed by `id ‖ time`: 16 bytes, so the memtable compares short keys
//! and fjall keeps them inline, instead of ~90-byte keys with long common prefixes. The
//! `series_ids` record is written in the same write batch as the series' first point,
//! so no crash can leave a point without its id or an id without its point. The
//! mapping is held in memory, per tenant and entity (loaded at open), and answers
//! `series` queries and `delete_entity`; ids are never shared between tenants, so
//! tenant isolation is that of the in-memory index. Ids of deleted series are removed
//! with their points and may be handed out again after a reopen, which is harmless:
//! nothing refers to them any more.
//!
//! Commit and the in-memory state: a commit reads the current state under the read
//! lock and computes, per touched entity, only the attribute instances the batch
//! changes (the winning observation of each, by the same rule as
//! [`EntityState::apply`]), borrowed from the batch; it encodes the entity's new record
//! by merging those into the current one, without building the new state. Only once
//! the write batch is durable does it take the write lock and apply the changes in
//! place (the state is behind an `Arc` that no reader keeps, so this does not copy).
//! So readers never see state that is not durable, a failed commit leaves memory
//! untouched, and no entity state is cloned.
//!
//! Durability: every write is one fjall write batch, across keyspaces, whose journal
//! entry is synced with `fdatasync` ([`Durability::SyncData`]) before the write
//! returns. fjall pre-allocates each journal file, syncs it with `fsync` when it creates
//! it, and syncs the directory when it rotates journals; so the file's metadata needed
//! to read the data back is already durable, and `fdatasync` is enough. `fsync`
//! ([`Durability::SyncAll`]) also flushes the modification time, which nothing needs.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    ops::Bound,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use ::fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use polity_model::{Batch, EntityId, EntityState, Fold, Observation, Tenant, Timestamp};

use crate::{
    CommitStats, DeadLetter, DeadLetterQuery, DeadLetterStore, Device, DocumentStore, EntityQuery,
    EntityStore, NewDeadLetter, RecordedPoint, Registry, Result, SeriesQuery, SeriesStore, Store,
    StoreError, codec,
};

/// The store format this build reads and writes.
///
/// 1: series points keyed by tenant ‖ entity ‖ attr ‖ datasetId ‖ time.
/// 2: series points keyed by series id ‖ time, with the `series_ids` keyspace.
mod ops;

const FORMAT: u32 = 2;

/// How a write is made durable before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `fdatasync` the journal: durable against power loss (the default; see the module
    /// docs for why this is enough).
    #[default]
    SyncData,
    /// `fsync` the journal: also flushes file metadata such as the modification time.
    SyncAll,
    /// Hand the journal to the operating system only: survives a crash of the process,
    /// not of the machine. For tests and benchmarks only.
    ProcessCrashOnly,
}

impl Durability {
    fn mode(self) -> PersistMode {
        match self {
            Durability::SyncData => PersistMode::SyncData,
            Durability::SyncAll => PersistMode::SyncAll,
            Durability::ProcessCrashOnly => PersistMode::Buffer,
        }
    }
}

/// Settings for [`FjallStore::open`].
#[derive(Debug, Clone)]
pub struct FjallOptions {
    /// Block cache size in bytes. Default 64 MiB.
    pub cache_bytes: u64,
    /// How writes are made durable. Default [`Durability::SyncData`].
    pub durability: Durability,
    /// Background flush and compaction threads; fjall's default if `None`.
    pub worker_threads: Option<usize>,
    /// Delete the directory when the store is dropped (tests). Default `false`.
    pub temporary: bool,
}

impl Default for FjallOptions {
    fn default() -> Self {
        FjallOptions {
            cache_bytes: 64 * 1024 * 1024,
            durability: Durability::SyncData,
            worker_threads: None,
            temporary: false,
        }
    }
}

/// Entity type names, interned to small ids for the series values.
#[derive(Default)]
struct TypeNames {
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

/// One series of an entity: an attribute instance and the id its points are keyed by.
#[derive(Debug, Clone)]
struct SeriesEntry {
    attr: Arc<str>,
    dataset_id: Option<Arc<str>>,
    id: u64,
}

/// The (attribute, datasetId) of an attribute instance, ordered as series and entity
/// attributes are: by attribute, then the default instance, then datasetId.
fn instance(o: &Observation) -> (&str, Option<&str>) {
    (&o.attr, o.dataset_id.as_deref())
}

/// Where the instance `key` is, or would go, in a list sorted by instance.
fn find_series(list: &[SeriesEntry], key: (&str, Option<&str>)) -> Result<usize, usize> {
    list.binary_search_by(|e| (&*e.attr, e.dataset_id.as_deref()).cmp(&key))
}

fn find_attr(attrs: &[Observation], key: (&str, Option<&str>)) -> Result<usize, usize> {
    attrs.binary_search_by(|a| instance(a).cmp(&key))
}

#[derive(Default)]
struct TenantMem {
    entities: BTreeMap<EntityId, Arc<EntityState>>,
    by_type: BTreeMap<Arc<str>, BTreeSet<EntityId>>,
    /// Each entity's series, sorted by instance.
    series: HashMap<EntityId, Vec<SeriesEntry>>,
    devices: u64,
    points: u64,
    dead_letters: u64,
}

impl TenantMem {
    /// Adds `e` under each of its types in the type index.
    fn index(&mut self, e: &EntityState) {
        for ty in e.types() {
            self.by_type
                .entry(ty.clone())
                .or_default()
                .insert(e.id.clone());
        }
    }

    /// Removes `e` from the type index.
    fn unindex(&mut self, e: &EntityState) {
        for ty in e.types() {
            if let Some(set) = self.by_type.get_mut(ty) {
                set.remove(&e.id);
                if set.is_empty() {
                    self.by_type.remove(ty);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.entities.is_empty() && self.devices == 0 && self.points == 0 && self.dead_letters == 0
    }
}

#[derive(Default)]
struct Mem {
    tenants: BTreeMap<Tenant, TenantMem>,
    types: TypeNames,
    dead_letters: u64,
    next_dead_letter: u64,
    /// The id the next new series gets.
    next_series: u64,
}

/// The embedded store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct FjallStore {
    dir: PathBuf,
    durability: Durability,
    db: Database,
    series: Keyspace,
    series_ids: Keyspace,
    entities: Keyspace,
    dead_letters: Keyspace,
    devices: Keyspace,
    documents: Keyspace,
    meta: Keyspace,
    mem: RwLock<Mem>,
    /// Serializes writers, so the in-memory state is computed from, and installed
    /// after, exactly the writes before it.
    writer: Mutex<()>,
}

impl std::fmt::Debug for FjallStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io(op: &'static str) -> impl FnOnce(::fjall::Error) -> StoreError {
    move |e| StoreError::Io {
        op,
        reason: describe(&e),
    }
}

fn describe(e: &::fjall::Error) -> String {
    match e {
        ::fjall::Error::Io(e) => e.to_string(),
        ::fjall::Error::Poisoned => {
            "an earlier write failed to reach the disk, so the store refuses writes".into()
        }
        other => format!("{other:?}"),
    }
}

fn corrupt(keyspace: &'static str, key: &[u8]) -> impl FnOnce(codec::DecodeError) -> StoreError {
    move |e| StoreError::Corrupt {
        keyspace,
        key: codec::show_key(key),
        reason: e.0,
    }
}

const T_META_TYPE: u8 = b't';
const T_META_POINTS: u8 = b'p';
const META_VERSION: &[u8] = b"v";

fn type_key(id: u32) -> Vec<u8> {
    let mut k = vec![T_META_TYPE];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn points_key(t: &Tenant) -> Vec<u8> {
    let mut k = vec![T_META_POINTS];
    k.extend_from_slice(t.as_str().as_bytes());
    k
}

fn check_format(db: &Database, meta: &Keyspace, dir: &Path, durability: Durability) -> Result<()> {
    match meta.get(META_VERSION).map_err(io("open"))? {
        Some(v) => {
            let found = <[u8; 4]>::try_from(&*v)
                .map(u32::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    keyspace: "meta",
                    key: "v".into(),
                    reason: "the format marker is not 4 bytes".into(),
                })?;
            if found != FORMAT {
                return Err(StoreError::Format {
                    dir: dir.to_owned(),
                    found,
                    supported: FORMAT,
                });
            }
        }
        None => {
            let mut b = db.batch().durability(Some(durability.mode()));
            b.insert(meta, META_VERSION, FORMAT.to_be_bytes().to_vec());
            b.commit().map_err(io("open"))?;
        }
    }
    Ok(())
}

impl FjallStore {
    /// Opens (creating if needed) the store in `dir`, and loads entity state, indexes
    /// and counts into memory.
    ///
    /// Fails with [`StoreError::Locked`] if another process has it open.
    pub fn open(dir: &Path, opts: FjallOptions) -> Result<FjallStore> {
        let mut b = Database::builder(dir)
            .cache_size(opts.cache_bytes)
            .temporary(opts.temporary);
        if let Some(n) = opts.worker_threads {
            b = b.worker_threads(n.clamp(1, 64));
        }
        let db = b.open().map_err(|e| match e {
            ::fjall::Error::Locked => StoreError::Locked {
                dir: dir.to_owned(),
            },
            e => StoreError::Open {
                dir: dir.to_owned(),
                reason: describe(&e),
            },
        })?;
        let ks = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(|e| StoreError::Open {
                    dir: dir.to_owned(),
                    reason: describe(&e),
                })
        };
        // The format is checked before any other keyspace is created, so a directory of
        // another format is refused as it is.
        let meta = ks("meta")?;
        check_format(&db, &meta, dir, opts.durability)?;
        let store = FjallStore {
            series: ks("series")?,
            series_ids: ks("series_ids")?,
            entities: ks("entities")?,
            dead_letters: ks("dead_letters")?,
            devices: ks("devices")?,
            documents: ks("documents")?,
            meta,
            dir: dir.to_owned(),
            durability: opts.durability,
            db,
            mem: RwLock::new(Mem::default()),
            writer: Mutex::new(()),
        };
        let mem = store.load()?;
        *store.mem_write() = mem;
        tracing::debug!(dir = %dir.display(), "store opened");
        Ok(store)
    }

    fn load(&self) -> Result<Mem> {
        let mut mem = Mem::default();
        for kv in self.meta.prefix([T_META_TYPE]) {
            let (k, v) = kv.into_inner().map_err(io("open"))?;
            let id = <[u8; 4]>::try_from(k.get(1..).unwrap_or_default()).map(u32::from_be_bytes);
            let name = std::str::from_utf8(&v);
            match (id, name) {
                (Ok(id), Ok(name)) if id as usize == mem.types.names.len() => {
                    let name: Arc<str> = Arc::from(name);
                    mem.types.ids.insert(name.clone(), id);
                    mem.types.names.push(name);
                }
                _ => {
                    return Err(StoreError::Corrupt {
                        keyspace: "meta",
                        key: codec::show_key(&k),
                        reason: "entity type names are not numbered 0, 1, 2, … with UTF-8 text"
                            .into(),
                    });
                }
            }
        }
        for kv in self.meta.prefix([T_META_POINTS]) {
            let (k, v) = kv.into_inner().map_err(io("open"))?;
            let bad = |reason: &str| StoreError::Corrupt {
                keyspace: "meta",
                key: codec::show_key(&k),
                reason: reason.into(),
            };
            let tenant = std::str::from_utf8(k.get(1..).unwrap_or_default())
                .ok()
                .and_then(|t| Tenant::new(t).ok())
                .ok_or_else(|| bad("not a tenant name"))?;
            let n = <[u8; 8]>::try_from(&*v)
                .map(u64::from_le_bytes)
                .map_err(|_| bad("the count is not 8 bytes"))?;
            mem.tenants.entry(tenant).or_default().points = n;
        }
        for kv in self.entities.iter() {
            let (k, v) = kv.into_inner().map_err(io("open"))?;
            let (tenant, id) = codec::decode_entity_key(&k).map_err(corrupt("entities", &k))?;
            let state =
                codec::decode_entity_value(id.clone(), &v).map_err(corrupt("entities", &k))?;
            let t = mem.tenants.entry(tenant).or_default();
            t.index(&state);
            t.entities.insert(id, Arc::new(state));
        }
        self.load_series_ids(&mut mem)?;
        for kv in self.devices.iter() {
            let k = kv.key().map_err(io("open"))?;
            let (tenant, _) = codec::decode_device_key(&k).map_err(corrupt("devices", &k))?;
            mem.tenants.entry(tenant).or_default().devices += 1;
        }
        for kv in self.dead_letters.iter() {
            let (k, v) = kv.into_inner().map_err(io("open"))?;
            let id = codec::Reader::new(&k)
                .key_u64()
                .map_err(corrupt("dead_letters", &k))?;
            let d = codec::decode_dead_letter(id, &v).map_err(corrupt("dead_letters", &k))?;
            mem.dead_letters += 1;
            mem.next_dead_letter = id.saturating_add(1);
            if let Some(t) = d.tenant {
                mem.tenants.entry(t).or_default().dead_letters += 1;
            }
        }
        Ok(mem)
    }

    /// Loads the series id of every series into the per-tenant, per-entity index.
    fn load_series_ids(&self, mem: &mut Mem) -> Result<()> {
        // Attribute names repeat across entities: share one allocation per name.
        let mut names: HashSet<Arc<str>> = HashSet::new();
        let mut intern = |s: String| -> Arc<str> {
            if let Some(a) = names.get(s.as_str()) {
                return a.clone();
            }
            let a: Arc<str> = Arc::from(s);
            names.insert(a.clone());
            a
        };
        for kv in self.series_ids.iter() {
            let (k, v) = kv.into_inner().map_err(io("open"))?;
            let id = <[u8; 8]>::try_from(&*k)
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    keyspace: "series_ids",
                    key: codec::show_key(&k),
                    reason: "a series id is not 8 bytes".into(),
                })?;
            let s = codec::decode_series_identity(&v).map_err(corrupt("series_ids", &k))?;
            let entry = SeriesEntry {
                attr: intern(s.attr),
                dataset_id: s.dataset_id.map(Arc::from),
                id,
            };
            mem.tenants
                .entry(s.tenant)
                .or_default()
                .series
                .entry(s.entity)
                .or_default()
                .push(entry);
            // Keys come in ascending order, so this ends at the largest id plus one.
            mem.next_series = id.saturating_add(1);
        }
        for t in mem.tenants.values_mut() {
            for list in t.series.values_mut() {
                list.sort_by(|a, b| (&a.attr, &a.dataset_id).cmp(&(&b.attr, &b.dataset_id)));
                if let Some(w) = list
                    .windows(2)
                    .find(|w| (&w[0].attr, &w[0].dataset_id) == (&w[1].attr, &w[1].dataset_id))
                {
                    return Err(StoreError::Corrupt {
                        keyspace: "series_ids",
                        key: codec::show_key(&w[1].id.to_be_bytes()),
                        reason: format!(
                            "series {} and {} are the same attribute instance",
                            w[0].id, w[1].id
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    fn mem(&self) -> RwLockReadGuard<'_, Mem> {
        // A panic while holding the lock cannot leave `Mem` half-updated: installs are
        // plain inserts. So a poisoned lock is still sound to use.
        self.mem.read().unwrap_or_else(|e| e.into_inner())
    }

    fn mem_write(&self) -> RwLockWriteGuard<'_, Mem> {
        self.mem.write().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn batch(&self) -> ::fjall::OwnedWriteBatch {
        self.db.batch().durability(Some(self.durability.mode()))
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the points of one series (attribute instance) of `entity` within the
    /// query's time range, at most the query's remaining budget.
    fn read_series(
        &self,
        entity: &EntityId,
        series: &SeriesEntry,
        q: &SeriesQuery,
        names: &TypeNames,
        out: &mut Vec<RecordedPoint>,
    ) -> Result<()> {
        let budget = q.limit.saturating_sub(out.len());
        let id = series.id.to_be_bytes();
        let key = |time: [u8; 8]| {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&id);
            k[8..].copy_from_slice(&time);
            k
        };
        let lo = key(q.from.map_or([0; 8], codec::key_time_bytes));
        let hi = match q.to {
            Some(to) => Bound::Excluded(key(codec::key_time_bytes(to))),
            None => Bound::Included(key([0xFF; 8])),
        };
        if let Some(to) = q.to
            && q.from.is_some_and(|from| from >= to)
        {
            return Ok(());
        }
        let decode = |kv: ::fjall::Guard| -> Result<RecordedPoint> {
            let (k, v) = kv.into_inner().map_err(io("read series"))?;
            let (_, time) = codec::decode_point_key(&k).map_err(corrupt("series", &k))?;
            let (ty, p, recorded) =
                codec::decode_series_value(&v).map_err(corrupt("series", &k))?;
            let entity_type =
                names
                    .names
                    .get(ty as usize)
                    .cloned()
                    .ok_or_else(|| StoreError::Corrupt {
                        keyspace: "series",
                        key: codec::show_key(&k),
                        reason: format!("entity type id {ty} is not in the type table"),
                    })?;
            Ok(RecordedPoint {
                observation: Observation {
                    entity: entity.clone(),
                    entity_type,
                    attr: series.attr.clone(),
                    dataset_id: series.dataset_id.clone(),
                    value: p.value,
                    unit: p.unit,
                    observed_at: time,
                    observed: p.observed,
                    privacy: p.privacy,
                    meta: p.meta,
                },
                recorded_at: recorded.unwrap_or(time),
            })
        };
        let range = self.series.range((Bound::Included(lo), hi));
        match q.last_n {
            Some(n) => {
                let start = out.len();
                for kv in range.rev().take(n.min(budget)) {
                    out.push(decode(kv)?);
                }
                out[start..].reverse();
            }
            None => {
                for kv in range.take(budget) {
                    out.push(decode(kv)?);
                }
            }
        }
        Ok(())
    }
}

impl EntityStore for FjallStore {
    fn entity(&self, tenant: &Tenant, id: &EntityId) -> Result<Option<EntityState>> {
        Ok(self
            .mem()
            .tenants
            .get(tenant)
            .and_then(|t| t.entities.get(id))
            .map(|e| EntityState::clone(e)))
    }

    fn entities(&self, tenant: &Tenant, q: &EntityQuery) -> Result<Vec<EntityState>> {
        let mem = self.mem();
        let Some(t) = mem.tenants.get(tenant) else {
            return Ok(Vec::new());
        };
        let after = |id: &EntityId| q.after.as_ref().is_none_or(|a| id > a);
        let of_type = |e: &EntityState| q.entity_type.as_ref().is_none_or(|ty| e.has_type(ty));
        let mut out = Vec::new();
        if q.limit == 0 {
            return Ok(out);
        }
        if let Some(ids) = &q.ids {
            let mut ids: Vec<&EntityId> = ids.iter().filter(|id| after(id)).collect();
            ids.sort();
            ids.dedup();
            for id in ids {
                if let Some(e) = t.entities.get(id).filter(|e| of_type(e)) {
                    out.push(EntityState::clone(e));
                    if out.len() == q.limit {
                        break;
                    }
                }
            }
            return Ok(out);
        }
        let lower = match &q.after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        match &q.entity_type {
            Some(ty) => {
                if let Some(set) = t.by_type.get(ty) {
                    for id in set.range((lower, Bound::Unbounded)).take(q.limit) {
                        if let Some(e) = t.entities.get(id) {
                            out.push(EntityState::clone(e));
                        }
                    }
                }
            }
            None => {
                for (_, e) in t.entities.range((lower, Bound::Unbounded)).take(q.limit) {
                    out.push(EntityState::clone(e));
                }
            }
        }
        Ok(out)
    }

    fn count_entities(&self, tenant: &Tenant, entity_type: Option<&str>) -> Result<u64> {
        let mem = self.mem();
        let Some(t) = mem.tenants.get(tenant) else {
            return Ok(0);
        };
        Ok(match entity_type {
            None => t.entities.len() as u64,
            Some(ty) => t.by_type.get(ty).map_or(0, |s| s.len() as u64),
        })
    }

    fn types(&self, tenant: &Tenant) -> Result<Vec<(Arc<str>, u64)>> {
        let mem = self.mem();
        let Some(t) = mem.tenants.get(tenant) else {
            return Ok(Vec::new());
        };
        Ok(t.by_type
            .iter()
            .map(|(ty, s)| (ty.clone(), s.len() as u64))
            .collect())
    }

    fn tenants(&self) -> Result<Vec<Tenant>> {
        Ok(self
            .mem()
            .tenants
            .iter()
            .filter(|(_, t)| !t.is_empty())
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn delete_entity(&self, tenant: &Tenant, id: &EntityId) -> Result<bool> {
        let _w = self.lock_writer();
        let key = codec::entity_key(tenant, id);
        let (existed, series, points) = {
            let mem = self.mem();
            let t = mem.tenants.get(tenant);
            (
                t.is_some_and(|t| t.entities.contains_key(id)),
                t.and_then(|t| t.series.get(id))
                    .cloned()
                    .unwrap_or_default(),
                t.map_or(0, |t| t.points),
            )
        };
        if !existed && series.is_empty() {
            return Ok(false);
        }
        let mut b = self.batch();
        b.remove(&self.entities, key);
        let mut removed = 0u64;
        for s in &series {
            let prefix = s.id.to_be_bytes();
            for kv in self.series.prefix(prefix) {
                let k = kv.key().map_err(io("delete entity"))?;
                b.remove(&self.series, k);
                removed += 1;
            }
            b.remove(&self.series_ids, prefix);
        }
        let points = points.saturating_sub(removed);
        if removed > 0 {
            b.insert(
                &self.meta,
                points_key(tenant),
                points.to_le_bytes().to_vec(),
            );
        }
        b.commit().map_err(io("delete entity"))?;
        let mut mem = self.mem_write();
        if let Some(t) = mem.tenants.get_mut(tenant) {
            t.points = points;
            t.series.remove(id);
            if let Some(e) = t.entities.remove(id) {
                t.unindex(&e);
            }
        }
        Ok(existed)
    }
}

impl SeriesStore for FjallStore {
    fn series(&self, tenant: &Tenant, id: &EntityId, q: &SeriesQuery) -> Result<Vec<Observation>> {
        Ok(self
            .recorded_series(tenant, id, q)?
            .into_iter()
            .map(|p| p.observation)
            .collect())
    }

    fn recorded_series(
        &self,
        tenant: &Tenant,
        id: &EntityId,
        q: &SeriesQuery,
    ) -> Result<Vec<RecordedPoint>> {
        let mem = self.mem();
        let mut out = Vec::new();
        let Some(list) = mem.tenants.get(tenant).and_then(|t| t.series.get(id)) else {
            return Ok(out);
        };
        // The list is in instance order: attribute, then the default instance, then
        // datasetId, which is the order the points are returned in.
        for series in list {
            if out.len() >= q.limit {
                break;
            }
            if let Some(attrs) = &q.attrs
                && !attrs.iter().any(|a| **a == *series.attr)
            {
                continue;
            }
            self.read_series(id, series, q, &mem.types, &mut out)?;
        }
        Ok(out)
    }

    fn count_points(&self, tenant: &Tenant) -> Result<u64> {
        Ok(self.mem().tenants.get(tenant).map_or(0, |t| t.points))
    }
}

impl DeadLetterStore for FjallStore {
    fn put_dead_letter(&self, d: NewDeadLetter) -> Result<u64> {
        let _w = self.lock_writer();
        let id = self.mem().next_dead_letter;
        let letter = DeadLetter {
            id,
            at: d.at,
            tenant: d.tenant,
            source: d.source,
            reason: d.reason,
            content_type: d.content_type,
            payload: d.payload,
        };
        let mut b = self.batch();
        b.insert(
            &self.dead_letters,
            id.to_be_bytes().to_vec(),
            codec::dead_letter_value(&letter),
        );
        b.commit().map_err(io("store dead letter"))?;
        let mut mem = self.mem_write();
        mem.next_dead_letter = id + 1;
        mem.dead_letters += 1;
        if let Some(t) = letter.tenant {
            mem.tenants.entry(t).or_default().dead_letters += 1;
        }
        Ok(id)
    }

    fn dead_letters(&self, q: &DeadLetterQuery) -> Result<Vec<DeadLetter>> {
        let mut out = Vec::new();
        if q.limit == 0 {
            return Ok(out);
        }
        let start = match q.after {
            Some(a) => match a.checked_add(1) {
                Some(s) => s,
                None => return Ok(out),
            },
            None => 0,
        };
        for kv in self.dead_letters.range(start.to_be_bytes()..) {
            let (k, v) = kv.into_inner().map_err(io("read dead letters"))?;
            let id = codec::Reader::new(&k)
                .key_u64()
                .map_err(corrupt("dead_letters", &k))?;
            let d = codec::decode_dead_letter(id, &v).map_err(corrupt("dead_letters", &k))?;
            if q.tenant
                .as_ref()
                .is_some_and(|t| d.tenant.as_ref() != Some(t))
            {
                continue;
            }
            if q.source.as_ref().is_some_and(|s| *s != d.source) {
                continue;
            }
            out.push(d);
            if out.len() == q.limit {
                break;
            }
        }
        Ok(out)
    }

    fn dead_letter_count(&self) -> Result<u64> {
        Ok(self.mem().dead_letters)
    }
}

impl Registry for FjallStore {
    fn upsert_devices(&self, devices: &[Device]) -> Result<()> {
        if devices.is_empty() {
            return Ok(());
        }
        let _w = self.lock_writer();
        let mut merged: BTreeMap<Vec<u8>, (Device, bool)> = BTreeMap::new();
        for d in devices {
            let key = codec::device_key(&d.tenant, &d.device_id);
            let existing = match merged.remove(&key) {
                Some(prev) => Some(prev),
                None => match self.devices.get(&key).map_err(io("read devices"))? {
                    Some(v) => Some((
                        codec::decode_device(d.tenant.clone(), d.device_id.clone(), &v)
                            .map_err(corrupt("devices", &key))?,
                        false,
                    )),
                    None => None,
                },
            };
            let next = match existing {
                Some((old, is_new)) => {
                    let mut n = d.clone();
                    n.first_seen = old.first_seen;
                    n.last_seen = old.last_seen.max(d.last_seen);
                    (n, is_new)
                }
                None => (d.clone(), true),
            };
            merged.insert(key, next);
        }
        let mut b = self.batch();
        let mut added: BTreeMap<Tenant, u64> = BTreeMap::new();
        for (k, (d, is_new)) in &merged {
            b.insert(&self.devices, k.clone(), codec::device_value(d));
            if *is_new {
                *added.entry(d.tenant.clone()).or_default() += 1;
            }
        }
        b.commit().map_err(io("store devices"))?;
        let mut mem = self.mem_write();
        for (t, n) in added {
            mem.tenants.entry(t).or_default().devices += n;
        }
        Ok(())
    }

    fn device(&self, tenant: &Tenant, device_id: &str) -> Result<Option<Device>> {
        let key = codec::device_key(tenant, device_id);
        match self.devices.get(&key).map_err(io("read devices"))? {
            None => Ok(None),
            Some(v) => codec::decode_device(tenant.clone(), device_id.to_owned(), &v)
                .map(Some)
                .map_err(corrupt("devices", &key)),
        }
    }

    fn devices(&self, tenant: &Tenant, after: Option<&str>, limit: usize) -> Result<Vec<Device>> {
        let prefix = codec::tenant_prefix(tenant);
        let lo = match after {
            Some(a) => Bound::Excluded(codec::device_key(tenant, a)),
            None => Bound::Included(prefix.clone()),
        };
        let mut out = Vec::new();
        for kv in self.devices.range((lo, Bound::Unbounded)).take(limit) {
            let (k, v) = kv.into_inner().map_err(io("read devices"))?;
            if !k.starts_with(&prefix) {
                break;
            }
            let (t, id) = codec::decode_device_key(&k).map_err(corrupt("devices", &k))?;
            out.push(codec::decode_device(t, id, &v).map_err(corrupt("devices", &k))?);
        }
        Ok(out)
    }

    fn count_devices(&self, tenant: &Tenant) -> Result<u64> {
        Ok(self.mem().tenants.get(tenant).map_or(0, |t| t.devices))
    }
}

impl DocumentStore for FjallStore {
    fn put_document(&self, kind: &str, tenant: &Tenant, id: &str, doc: &[u8]) -> Result<()> {
        let _w = self.lock_writer();
        let mut b = self.batch();
        b.insert(
            &self.documents,
            codec::document_key(kind, tenant, id),
            doc.to_vec(),
        );
        b.commit().map_err(io("store a document"))
    }

    fn document(&self, kind: &str, tenant: &Tenant, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .documents
            .get(codec::document_key(kind, tenant, id))
            .map_err(io("read documents"))?
            .map(|v| v.to_vec()))
    }

    fn documents(&self, kind: &str) -> Result<Vec<(Tenant, String, Vec<u8>)>> {
        let mut out = Vec::new();
        for kv in self.documents.prefix(codec::document_prefix(kind)) {
            let (k, v) = kv.into_inner().map_err(io("read documents"))?;
            let (_, t, id) = codec::decode_document_key(&k).map_err(corrupt("documents", &k))?;
            out.push((t, id, v.to_vec()));
        }
        Ok(out)
    }

    fn delete_document(&self, kind: &str, tenant: &Tenant, id: &str) -> Result<bool> {
        let _w = self.lock_writer();
        let key = codec::document_key(kind, tenant, id);
        if self
            .documents
            .get(&key)
            .map_err(io("read documents"))?
            .is_none()
        {
            return Ok(false);
        }
        let mut b = self.batch();
        b.remove(&self.documents, key);
        b.commit().map_err(io("delete a document"))?;
        Ok(true)
    }
}

/// One entity touched by a commit: what the commit changes in it, borrowed from the
/// batches, to be installed once the write is durable.
struct Touched<'b> {
    tenant: &'b Tenant,
    entity: &'b EntityId,
    /// The type of an entity the commit creates (its first observation's); `None` if
    /// the entity exists.
    new_type: Option<&'b Arc<str>>,
    /// The winning observation of each attribute instance the commit changes, sorted by
    /// instance.
    changes: Vec<&'b Observation>,
    /// How many of `changes` are instances the stored state does not have.
    added: usize,
    /// Series the commit creates, sorted by instance, with their new ids.
    new_series: Vec<(&'b Observation, u64)>,
}

impl<'b> Touched<'b> {
    /// Folds `o` in, by the rule of [`EntityState::apply`] applied to the stored state
    /// `base` and then to every observation before `o`. Returns whether it changed
    /// anything.
    fn fold(&mut self, base: Option<&EntityState>, o: &'b Observation) -> bool {
        let key = instance(o);
        let ignored = |cur: &Observation| o.observed_at < cur.observed_at || cur == o;
        match self.changes.binary_search_by(|c| instance(c).cmp(&key)) {
            Ok(i) => {
                if ignored(self.changes[i]) {
                    return false;
                }
                self.changes[i] = o;
            }
            Err(i) => {
                let cur = base.and_then(|e| find_attr(&e.attrs, key).ok().map(|j| &e.attrs[j]));
                match cur {
                    Some(cur) if ignored(cur) => return false,
                    Some(_) => {}
                    None => self.added += 1,
                }
                self.changes.insert(i, o);
            }
        }
        true
    }

    /// Applies the changes to the entity's state (the stored one, or a new one).
    fn apply_to(&self, e: &mut EntityState, now: Timestamp) {
        e.modified_at = e.modified_at.max(now);
        for &o in &self.changes {
            // `fold` already chose the winners: set them unconditionally.
            e.set(o, now);
        }
    }

    /// Appends the entity's record after the commit to `buf`: the stored state
    /// (`base`) with `changes` merged in.
    fn encode(&self, base: Option<&EntityState>, now: Timestamp, buf: &mut Vec<u8>) {
        match base {
            None => {
                let ty = self.new_type.map_or("", |t| &**t);
                let head = codec::EntityHead {
                    entity_type: ty,
                    other_types: &[],
                    scope: &[],
                    created_at: now,
                    modified_at: now,
                };
                codec::put_entity_value(
                    buf,
                    &head,
                    self.changes.len(),
                    self.changes.iter().map(|&o| (o, now, now)),
                );
            }
            Some(e) => {
                let (mut old, mut new) = (
                    codec::timed_attrs(e).peekable(),
                    self.changes.iter().peekable(),
                );
                let merged = std::iter::from_fn(|| match (old.peek(), new.peek()) {
                    (Some(a), Some(b)) => match instance(a.0).cmp(&instance(b)) {
                        std::cmp::Ordering::Less => old.next(),
                        std::cmp::Ordering::Greater => new.next().map(|&o| (o, now, now)),
                        std::cmp::Ordering::Equal => {
                            let created = old.next().map_or(now, |(_, c, _)| c);
                            new.next().map(|&o| (o, created, now))
                        }
                    },
                    (Some(_), None) => old.next(),
                    (None, _) => new.next().map(|&o| (o, now, now)),
                });
                let head = codec::EntityHead {
                    modified_at: e.modified_at.max(now),
                    ..codec::EntityHead::of(e)
                };
                codec::put_entity_value(buf, &head, e.attrs.len() + self.added, merged);
            }
        }
    }
}

/// What a commit changes in memory, installed only after its write is durable.
struct Plan<'b> {
    touched: Vec<Touched<'b>>,
    new_types: Vec<Arc<str>>,
    /// Each tenant's point count after the commit.
    points: Vec<(&'b Tenant, u64)>,
    next_series: u64,
}

impl FjallStore {
    /// Adds every write of a commit to `b` and returns what to change in memory once
    /// they are durable. Reads `mem` only.
    fn plan<'b>(
        &self,
        mem: &Mem,
        batches: &'b [Batch],
        now: Timestamp,
        b: &mut ::fjall::OwnedWriteBatch,
        stats: &mut CommitStats,
    ) -> Result<Plan<'b>> {
        let mut touched: Vec<Touched<'b>> = Vec::new();
        // Parallel to `touched`: the entity's stored state and series, if any.
        let mut stored: Vec<(Option<&EntityState>, &[SeriesEntry])> = Vec::new();
        let mut slots: HashMap<(&str, &str), usize> = HashMap::new();
        let mut new_types: Vec<Arc<str>> = Vec::new();
        let mut points: Vec<(&'b Tenant, u64)> = Vec::new();
        let mut next_series = mem.next_series;
        // One buffer for every value: fjall copies each (inline when short).
        let mut buf: Vec<u8> = Vec::with_capacity(256);
        let mut last_type: Option<(&Arc<str>, u32)> = None;
        for batch in batches {
            let tm = mem.tenants.get(&batch.tenant);
            let mut last: Option<(&EntityId, usize)> = None;
            for o in &batch.observations {
                // The entity's slot: observations of one entity often come together.
                let slot = match last {
                    Some((e, slot)) if *e == o.entity => slot,
                    _ => {
                        let slot = *slots
                            .entry((batch.tenant.as_str(), o.entity.as_str()))
                            .or_insert_with(|| {
                                let base = tm.and_then(|t| t.entities.get(&o.entity));
                                let series = tm.and_then(|t| t.series.get(&o.entity));
                                stored.push((base.map(|e| &**e), series.map_or(&[], |s| &s[..])));
                                touched.push(Touched {
                                    tenant: &batch.tenant,
                                    entity: &o.entity,
                                    new_type: base.is_none().then_some(&o.entity_type),
                                    changes: Vec::new(),
                                    added: 0,
                                    new_series: Vec::new(),
                                });
                                touched.len() - 1
                            });
                        last = Some((&o.entity, slot));
                        slot
                    }
                };
                let (base, series) = stored[slot];
                let t = &mut touched[slot];
                let key = instance(o);
                let series_id = match find_series(series, key) {
                    Ok(i) => series[i].id,
                    Err(_) => match t
                        .new_series
                        .binary_search_by(|(s, _)| instance(s).cmp(&key))
                    {
                        Ok(i) => t.new_series[i].1,
                        Err(i) => {
                            // A new series: its id record goes in the same write batch as
                            // its first point.
                            let id = next_series;
                            next_series = id.checked_add(1).ok_or_else(|| {
                                StoreError::Invalid("the store ran out of series ids".into())
                            })?;
                            t.new_series.insert(i, (o, id));
                            buf.clear();
                            codec::put_series_identity(
                                &mut buf,
                                &batch.tenant,
                                &o.entity,
                                &o.attr,
                                o.dataset_id.as_deref(),
                            );
                            stats.bytes += (8 + buf.len()) as u64;
                            b.insert(&self.series_ids, id.to_be_bytes(), buf.as_slice());
                            id
                        }
                    },
                };
                let type_id = match last_type {
                    Some((ty, id)) if Arc::ptr_eq(ty, &o.entity_type) || *ty == o.entity_type => id,
                    _ => {
                        let id = match mem.types.ids.get(&o.entity_type) {
                            Some(&id) => id,
                            None => {
                                let base = mem.types.names.len();
                                match new_types.iter().position(|t| *t == o.entity_type) {
                                    Some(i) => (base + i) as u32,
                                    None => {
                                        if base + new_types.len() >= u32::MAX as usize {
                                            return Err(StoreError::Invalid(
                                                "more than 4 billion distinct entity types".into(),
                                            ));
                                        }
                                        new_types.push(o.entity_type.clone());
                                        (base + new_types.len() - 1) as u32
                                    }
                                }
                            }
                        };
                        last_type = Some((&o.entity_type, id));
                        id
                    }
                };
                buf.clear();
                codec::put_series_value(&mut buf, type_id, o, now);
                stats.bytes += (16 + buf.len()) as u64;
                b.insert(
                    &self.series,
                    codec::point_key(series_id, o.observed_at),
                    buf.as_slice(),
                );
                t.fold(base, o);
            }
            let n = batch.observations.len() as u64;
            match points.iter_mut().find(|(t, _)| **t == batch.tenant) {
                Some((_, total)) => *total += n,
                None => points.push((&batch.tenant, tm.map_or(0, |t| t.points) + n)),
            }
        }
        for (i, ty) in new_types.iter().enumerate() {
            b.insert(
                &self.meta,
                type_key((mem.types.names.len() + i) as u32),
                ty.as_bytes(),
            );
        }
        for (t, n) in &points {
            b.insert(&self.meta, points_key(t), n.to_le_bytes());
        }
        let mut key = Vec::with_capacity(128);
        for (t, &(base, _)) in touched.iter().zip(&stored) {
            if t.changes.is_empty() {
                continue;
            }
            key.clear();
            codec::put_entity_key(&mut key, t.tenant, t.entity);
            buf.clear();
            t.encode(base, now, &mut buf);
            stats.bytes += (key.len() + buf.len()) as u64;
            b.insert(&self.entities, key.as_slice(), buf.as_slice());
        }
        stats.entities_touched = touched.len() as u64;
        Ok(Plan {
            touched,
            new_types,
            points,
            next_series,
        })
    }

    /// Installs a durable commit's changes in memory.
    fn install(&self, plan: Plan<'_>, now: Timestamp) {
        let mut mem = self.mem_write();
        for ty in plan.new_types {
            let id = mem.types.names.len() as u32;
            mem.types.ids.insert(ty.clone(), id);
            mem.types.names.push(ty);
        }
        mem.next_series = plan.next_series;
        for (t, total) in plan.points {
            mem.tenants.entry(t.clone()).or_default().points = total;
        }
        // Consecutive entities are mostly of the same tenant.
        let mut tenant: Option<(&Tenant, &mut TenantMem)> = None;
        for t in plan.touched {
            let tm = match tenant.take() {
                Some((name, tm)) if name == t.tenant => tm,
                _ => mem.tenants.entry(t.tenant.clone()).or_default(),
            };
            if !t.new_series.is_empty() {
                let list = tm.series.entry(t.entity.clone()).or_default();
                for (o, id) in &t.new_series {
                    let entry = SeriesEntry {
                        attr: o.attr.clone(),
                        dataset_id: o.dataset_id.clone(),
                        id: *id,
                    };
                    match find_series(list, instance(o)) {
                        Ok(i) => list[i] = entry,
                        Err(i) => list.insert(i, entry),
                    }
                }
            }
            if !t.changes.is_empty() {
                match tm.entities.get_mut(t.entity) {
                    // No reader keeps the `Arc` (they clone the state out), so this does
                    // not copy.
                    Some(e) => t.apply_to(Arc::make_mut(e), now),
                    None => {
                        let ty = t.new_type.unwrap_or(&t.changes[0].entity_type).clone();
                        let mut e = EntityState::new(t.entity.clone(), ty, now);
                        t.apply_to(&mut e, now);
                        tm.index(&e);
                        tm.entities.insert(t.entity.clone(), Arc::new(e));
                    }
                }
            }
            tenant = Some((t.tenant, tm));
        }
    }
}

impl Store for FjallStore {
    fn commit(&self, batches: &[Batch]) -> Result<CommitStats> {
        let n: usize = batches.iter().map(|b| b.observations.len()).sum();
        if batches
            .iter()
            .any(|b| !b.ops.is_empty() || b.fold != Fold::Latest)
        {
            let _w = self.lock_writer();
            return self.commit_ops(batches);
        }
        if n == 0 {
            return Ok(CommitStats::default());
        }
        let _w = self.lock_writer();
        let now = Timestamp::now();
        let mut stats = CommitStats {
            observations: n as u64,
            ..CommitStats::default()
        };
        let mut b = ::fjall::OwnedWriteBatch::with_capacity(self.db.clone(), n + 16)
            .durability(Some(self.durability.mode()));
        let plan = self.plan(&self.mem(), batches, now, &mut b, &mut stats)?;
        b.commit().map_err(io("commit"))?;
        // Only writers change `mem`, and `_w` excludes them: it is still what the plan
        // was computed from.
        self.install(plan, now);
        Ok(stats)
    }

    fn sync(&self) -> Result<()> {
        let mode = match self.durability {
            Durability::ProcessCrashOnly => PersistMode::SyncData,
            d => d.mode(),
        };
        self.db.persist(mode).map_err(io("sync"))
    }

    fn disk_usage(&self) -> Result<u64> {
        self.db.disk_space().map_err(io("measure disk usage"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polity_model::{PrivacyClass, Value};
    use proptest::prelude::*;

    fn entity() -> EntityId {
        EntityId::new("urn:ngsi-ld:X:1").unwrap()
    }

    prop_compose! {
        fn arb_obs()(
            attr in 0usize..3,
            dataset in proptest::option::of(0usize..2),
            ty in 0usize..2,
            value in 0u8..3,
            ms in 0i64..5,
        ) -> Observation {
            Observation {
                entity: entity(),
                entity_type: Arc::from(["T", "U"][ty]),
                attr: Arc::from(["a", "b", "c"][attr]),
                dataset_id: dataset.map(|d| Arc::from(["x", "y"][d])),
                value: Value::Number(f64::from(value)),
                unit: None,
                observed_at: Timestamp::from_millis(ms),
                observed: true,
                privacy: PrivacyClass::Public,
                meta: None,
            }
        }
    }

    proptest! {
        /// Folding a commit's observations into changes, encoding the merged record and
        /// applying the changes in place give exactly what applying each observation in
        /// turn to a copy of the state gives.
        #[test]
        fn folded_changes_equal_applying_in_turn(
            stored in proptest::option::of(prop::collection::vec(arb_obs(), 0..8)),
            fresh in prop::collection::vec(arb_obs(), 0..12),
            repeats in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
            now in 0i64..30,
        ) {
            // Observations the state already holds, as well as new ones.
            let mut commit: Vec<Observation> = match &stored {
                Some(s) if !s.is_empty() => repeats.iter().map(|i| i.get(s).clone()).collect(),
                _ => Vec::new(),
            };
            commit.extend(fresh);
            prop_assume!(!commit.is_empty());
            let id = entity();
            let now = Timestamp::from_millis(now);
            let base = stored.map(|obs| {
                let mut e = EntityState::new(id.clone(), Arc::from("T"), Timestamp::from_millis(10));
                for (i, o) in obs.iter().enumerate() {
                    e.apply(o, Timestamp::from_millis(10 + i as i64));
                }
                e
            });
            let mut want = base.clone().unwrap_or_else(|| {
                EntityState::new(id.clone(), commit[0].entity_type.clone(), now)
            });
            let mut changed = base.is_none();
            for o in &commit {
                changed |= want.apply(o, now);
            }

            let tenant = Tenant::new("t").unwrap();
            let mut t = Touched {
                tenant: &tenant,
                entity: &id,
                new_type: base.is_none().then_some(&commit[0].entity_type),
                changes: Vec::new(),
                added: 0,
                new_series: Vec::new(),
            };
            let mut folded = false;
            for o in &commit {
                folded |= t.fold(base.as_ref(), o);
            }
            prop_assert_eq!(folded, changed);
            prop_assert_eq!(!t.changes.is_empty(), changed);
            if changed {
                let mut buf = Vec::new();
                t.encode(base.as_ref(), now, &mut buf);
                prop_assert_eq!(&buf, &codec::entity_value(&want));
                let mut got = base.clone().unwrap_or_else(|| {
                    EntityState::new(id.clone(), t.new_type.unwrap().clone(), now)
                });
                t.apply_to(&mut got, now);
                prop_assert_eq!(got, want);
            } else {
                prop_assert_eq!(Some(want), base);
            }
        }
    }
}
