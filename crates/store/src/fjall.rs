//! The embedded backend: one fjall database (an LSM tree with a write-ahead journal) in
//! one data directory.
//!
//! Keyspaces and their keys (layouts in `codec`):
//!
//! | keyspace       | key                                              | value                 |
//! |----------------|--------------------------------------------------|-----------------------|
//! | `series`       | tenant ‖ entity ‖ attr ‖ datasetId ‖ observedAt  | type id ‖ value, unit, privacy, meta |
//! | `entities`     | tenant ‖ entity                                  | the entity's state    |
//! | `dead_letters` | id (u64, big-endian)                             | the dead letter       |
//! | `devices`      | tenant ‖ device id                               | the device            |
//! | `meta`         | `v` / `t`‖type id / `p`‖tenant                   | format / type name / point count |
//!
//! Entity state is also held in memory, loaded at open and written through by every
//! commit, together with the per-tenant, per-type indexes and counts: entity reads,
//! type listings and counts never touch the disk, and a commit never re-reads it. (So
//! no type index is kept on disk: it is rebuilt from the entity records, which are read
//! at open anyway.)
//!
//! Durability: every write is one fjall write batch, across keyspaces, whose journal
//! entry is synced with `fdatasync` ([`Durability::SyncData`]) before the write
//! returns. fjall pre-allocates each journal file, syncs it with `fsync` when it creates
//! it, and syncs the directory when it rotates journals; so the file's metadata needed
//! to read the data back is already durable, and `fdatasync` is enough. `fsync`
//! ([`Durability::SyncAll`]) also flushes the modification time, which nothing needs.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ops::Bound,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use ::fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use polity_model::{Batch, EntityId, EntityState, Observation, Tenant, Timestamp};

use crate::{
    CommitStats, DeadLetter, DeadLetterQuery, DeadLetterStore, Device, EntityQuery, EntityStore,
    NewDeadLetter, Registry, Result, SeriesQuery, SeriesStore, Store, StoreError, codec,
};

/// The store format this build reads and writes.
const FORMAT: u32 = 1;

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

#[derive(Default)]
struct TenantMem {
    entities: BTreeMap<EntityId, Arc<EntityState>>,
    by_type: BTreeMap<Arc<str>, BTreeSet<EntityId>>,
    devices: u64,
    points: u64,
    dead_letters: u64,
}

impl TenantMem {
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
}

/// The embedded store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct FjallStore {
    dir: PathBuf,
    durability: Durability,
    db: Database,
    series: Keyspace,
    entities: Keyspace,
    dead_letters: Keyspace,
    devices: Keyspace,
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
        let store = FjallStore {
            series: ks("series")?,
            entities: ks("entities")?,
            dead_letters: ks("dead_letters")?,
            devices: ks("devices")?,
            meta: ks("meta")?,
            dir: dir.to_owned(),
            durability: opts.durability,
            db,
            mem: RwLock::new(Mem::default()),
            writer: Mutex::new(()),
        };
        store.check_format()?;
        let mem = store.load()?;
        *store.mem_write() = mem;
        tracing::debug!(dir = %dir.display(), "store opened");
        Ok(store)
    }

    fn check_format(&self) -> Result<()> {
        match self.meta.get(META_VERSION).map_err(io("open"))? {
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
                        dir: self.dir.clone(),
                        found,
                        supported: FORMAT,
                    });
                }
            }
            None => {
                let mut b = self.db.batch().durability(Some(self.durability.mode()));
                b.insert(&self.meta, META_VERSION, FORMAT.to_be_bytes().to_vec());
                b.commit().map_err(io("open"))?;
            }
        }
        Ok(())
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
            t.by_type
                .entry(state.entity_type.clone())
                .or_default()
                .insert(id.clone());
            t.entities.insert(id, Arc::new(state));
        }
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

    /// Reads the points of one (attribute, datasetId) group whose key prefix is `group`.
    fn read_group(
        &self,
        group: &[u8],
        sk: &codec::SeriesKey,
        q: &SeriesQuery,
        names: &TypeNames,
        out: &mut Vec<Observation>,
    ) -> Result<()> {
        let budget = q.limit.saturating_sub(out.len());
        let attr: Arc<str> = Arc::from(sk.attr.as_str());
        let dataset_id: Option<Arc<str>> = sk.dataset_id.as_deref().map(Arc::from);
        let entity = &sk.entity;
        let mut lo = group.to_vec();
        if let Some(from) = q.from {
            lo.extend_from_slice(&codec::key_time_bytes(from));
        }
        let mut hi = group.to_vec();
        match q.to {
            Some(to) => hi.extend_from_slice(&codec::key_time_bytes(to)),
            None => hi.extend_from_slice(&[0xFF; 9]),
        }
        if lo >= hi {
            return Ok(());
        }
        let decode = |kv: ::fjall::Guard| -> Result<Observation> {
            let (k, v) = kv.into_inner().map_err(io("read series"))?;
            let time = codec::Reader::new(k.get(group.len()..).unwrap_or_default())
                .key_time()
                .map_err(corrupt("series", &k))?;
            let (ty, p) = codec::decode_series_value(&v).map_err(corrupt("series", &k))?;
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
            Ok(Observation {
                entity: entity.clone(),
                entity_type,
                attr: attr.clone(),
                dataset_id: dataset_id.clone(),
                value: p.value,
                unit: p.unit,
                observed_at: time,
                privacy: p.privacy,
                meta: p.meta,
            })
        };
        let range = self.series.range(lo..hi);
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
        let of_type =
            |e: &EntityState| q.entity_type.as_ref().is_none_or(|ty| e.entity_type == *ty);
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
        let existed = self
            .mem()
            .tenants
            .get(tenant)
            .is_some_and(|t| t.entities.contains_key(id));
        let mut b = self.batch();
        b.remove(&self.entities, key.clone());
        let mut removed = 0u64;
        for kv in self.series.prefix(&key) {
            let k = kv.key().map_err(io("delete entity"))?;
            b.remove(&self.series, k);
            removed += 1;
        }
        let points = self
            .mem()
            .tenants
            .get(tenant)
            .map_or(0, |t| t.points)
            .saturating_sub(removed);
        if removed > 0 {
            b.insert(
                &self.meta,
                points_key(tenant),
                points.to_le_bytes().to_vec(),
            );
        }
        if !existed && removed == 0 {
            return Ok(false);
        }
        b.commit().map_err(io("delete entity"))?;
        let mut mem = self.mem_write();
        if let Some(t) = mem.tenants.get_mut(tenant) {
            t.points = points;
            if let Some(e) = t.entities.remove(id)
                && let Some(set) = t.by_type.get_mut(&e.entity_type)
            {
                set.remove(id);
                if set.is_empty() {
                    t.by_type.remove(&e.entity_type);
                }
            }
        }
        Ok(existed)
    }
}

impl SeriesStore for FjallStore {
    fn series(&self, tenant: &Tenant, id: &EntityId, q: &SeriesQuery) -> Result<Vec<Observation>> {
        let mem = self.mem();
        let names = &mem.types;
        let mut out = Vec::new();
        let prefixes: Vec<Vec<u8>> = match &q.attrs {
            None => vec![codec::entity_key(tenant, id)],
            Some(attrs) => {
                let mut a: Vec<&str> = attrs.iter().map(|a| &**a).collect();
                a.sort_unstable();
                a.dedup();
                a.into_iter()
                    .map(|a| codec::series_attr_prefix(tenant, id, a))
                    .collect()
            }
        };
        for prefix in prefixes {
            // Skip-scan: find the first key of each (attribute, datasetId) group, read
            // the group's time range, then seek past the group.
            let mut cursor = prefix.clone();
            while out.len() < q.limit {
                let Some(kv) = self.series.range(cursor.as_slice()..).next() else {
                    break;
                };
                let k = kv.key().map_err(io("read series"))?;
                if !k.starts_with(&prefix) {
                    break;
                }
                let sk = codec::decode_series_key(&k).map_err(corrupt("series", &k))?;
                let group = k.get(..sk.group_len).unwrap_or_default();
                self.read_group(group, &sk, q, names, &mut out)?;
                cursor = group.to_vec();
                cursor.extend_from_slice(&[0xFF; 9]);
            }
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

impl Store for FjallStore {
    fn commit(&self, batches: &[Batch]) -> Result<CommitStats> {
        let n: usize = batches.iter().map(|b| b.observations.len()).sum();
        if n == 0 {
            return Ok(CommitStats::default());
        }
        let _w = self.lock_writer();
        let now = Timestamp::now();
        let mut stats = CommitStats::default();
        let mut b = ::fjall::OwnedWriteBatch::with_capacity(self.db.clone(), n + 16)
            .durability(Some(self.durability.mode()));
        // Entities touched, in first-touch order, with whether they changed.
        let mut touched: HashMap<(Tenant, EntityId), (EntityState, bool, bool)> = HashMap::new();
        let mut new_types: Vec<Arc<str>> = Vec::new();
        let mut added_points: BTreeMap<Tenant, u64> = BTreeMap::new();
        {
            let mem = self.mem();
            let mut type_id = |ty: &Arc<str>| -> u32 {
                if let Some(&id) = mem.types.ids.get(ty) {
                    return id;
                }
                let base = mem.types.names.len();
                match new_types.iter().position(|t| t == ty) {
                    Some(i) => (base + i) as u32,
                    None => {
                        new_types.push(ty.clone());
                        (base + new_types.len() - 1) as u32
                    }
                }
            };
            for batch in batches {
                let tm = mem.tenants.get(&batch.tenant);
                for o in &batch.observations {
                    let key = codec::series_key(&batch.tenant, o);
                    let value = codec::series_value(type_id(&o.entity_type), o);
                    stats.bytes += (key.len() + value.len()) as u64;
                    b.insert(&self.series, key, value);
                    let slot = touched
                        .entry((batch.tenant.clone(), o.entity.clone()))
                        .or_insert_with(|| match tm.and_then(|t| t.entities.get(&o.entity)) {
                            Some(e) => (EntityState::clone(e), false, false),
                            None => (
                                EntityState::new(o.entity.clone(), o.entity_type.clone(), now),
                                false,
                                true,
                            ),
                        });
                    slot.1 |= slot.0.apply(o, now);
                }
                *added_points.entry(batch.tenant.clone()).or_default() +=
                    batch.observations.len() as u64;
            }
            if mem.types.names.len() + new_types.len() > u32::MAX as usize {
                return Err(StoreError::Invalid(
                    "more than 4 billion distinct entity types".into(),
                ));
            }
            for (i, ty) in new_types.iter().enumerate() {
                b.insert(
                    &self.meta,
                    type_key((mem.types.names.len() + i) as u32),
                    ty.as_bytes().to_vec(),
                );
            }
            for (t, n) in &mut added_points {
                *n += mem.tenants.get(t).map_or(0, |t| t.points);
                b.insert(&self.meta, points_key(t), n.to_le_bytes().to_vec());
            }
        }
        stats.observations = n as u64;
        stats.entities_touched = touched.len() as u64;
        for ((t, id), (state, changed, _)) in &touched {
            if *changed {
                let k = codec::entity_key(t, id);
                let v = codec::entity_value(state);
                stats.bytes += (k.len() + v.len()) as u64;
                b.insert(&self.entities, k, v);
            }
        }
        b.commit().map_err(io("commit"))?;

        let mut mem = self.mem_write();
        for ty in new_types {
            let id = mem.types.names.len() as u32;
            mem.types.ids.insert(ty.clone(), id);
            mem.types.names.push(ty);
        }
        for (t, total) in added_points {
            mem.tenants.entry(t).or_default().points = total;
        }
        for ((t, id), (state, changed, is_new)) in touched {
            if !changed {
                continue;
            }
            let tm = mem.tenants.entry(t).or_default();
            if is_new {
                tm.by_type
                    .entry(state.entity_type.clone())
                    .or_default()
                    .insert(id.clone());
            }
            tm.entities.insert(id, Arc::new(state));
        }
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
