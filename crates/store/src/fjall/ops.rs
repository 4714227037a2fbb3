//! The commit path for batches with entity operations ([`EntityOp`]) or replace
//! semantics ([`Fold::Replace`]): the NGSI-LD API's creations, updates, replacements and
//! deletions.
//!
//! These are rare next to device observations, so this path favours simplicity over
//! speed: it works on copies of the touched entities, applies every batch in order
//! (operations first, then observations), and writes everything in one atomic, durable
//! write batch before installing the copies in memory. Readers never see a half-applied
//! group.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use polity_model::{
    Batch, EntityId, EntityOp, EntityState, Fold, Observation, Tenant, Timestamp, Value,
};

use super::{FjallStore, SeriesEntry, find_series, instance, io, points_key, type_key};
use crate::{CommitStats, Result, StoreError, codec};

/// One entity as the group leaves it.
struct Work {
    /// Its state; `None` when it does not exist (or no longer does).
    state: Option<EntityState>,
    /// Whether it existed before the group.
    existed: bool,
    /// Whether its state record must be written (or removed).
    dirty: bool,
    /// Its series, as the group leaves them, sorted by instance.
    series: Vec<SeriesEntry>,
}

/// Every write of the group, gathered before the write batch is built so that a later
/// deletion in the group can cancel an earlier write.
#[derive(Default)]
struct Writes {
    /// New points, by key.
    points: BTreeMap<[u8; 16], Vec<u8>>,
    /// Stored points to remove, by key.
    remove_points: Vec<[u8; 16]>,
    /// Series to remove with all their stored points.
    drop_series: Vec<u64>,
    /// New series identity records.
    new_series: BTreeMap<u64, Vec<u8>>,
}

impl FjallStore {
    /// Commits `batches` in order, with their operations. The caller holds the writer
    /// lock.
    pub(super) fn commit_ops(&self, batches: &[Batch]) -> Result<CommitStats> {
        let now = Timestamp::now();
        let mem = self.mem();
        let mut work: BTreeMap<(Tenant, EntityId), Work> = BTreeMap::new();
        let mut writes = Writes::default();
        let mut next_series = mem.next_series;
        let mut new_types: Vec<Arc<str>> = Vec::new();
        let mut stats = CommitStats::default();

        let load = |tenant: &Tenant, id: &EntityId| -> Work {
            let t = mem.tenants.get(tenant);
            let state = t.and_then(|t| t.entities.get(id)).map(|e| (**e).clone());
            Work {
                existed: state.is_some(),
                state,
                dirty: false,
                series: t
                    .and_then(|t| t.series.get(id))
                    .cloned()
                    .unwrap_or_default(),
            }
        };
        for batch in batches {
            let mut tombstones: Vec<Observation> = Vec::new();
            for op in &batch.ops {
                let key = (batch.tenant.clone(), op.entity().clone());
                let w = work
                    .entry(key)
                    .or_insert_with(|| load(&batch.tenant, op.entity()));
                apply_op(w, op, now, &mut writes, &mut tombstones);
            }
            // Deletions leave a tombstone in the history (NGSI-LD `deletedAt`); they do
            // not change the current state.
            let points = tombstones
                .iter()
                .map(|o| (o, false))
                .chain(batch.observations.iter().map(|o| (o, true)));
            for (o, into_state) in points {
                let w = work
                    .entry((batch.tenant.clone(), o.entity.clone()))
                    .or_insert_with(|| load(&batch.tenant, &o.entity));
                if into_state {
                    let state = w.state.get_or_insert_with(|| {
                        EntityState::new(o.entity.clone(), o.entity_type.clone(), now)
                    });
                    let changed = match batch.fold {
                        Fold::Latest => state.apply(o, now),
                        Fold::Replace => state.set(o, now),
                    };
                    w.dirty |= changed;
                }
                let series_id = match find_series(&w.series, instance(o)) {
                    Ok(i) => w.series[i].id,
                    Err(i) => {
                        let id = next_series;
                        next_series = id.checked_add(1).ok_or_else(|| {
                            StoreError::Invalid("the store ran out of series ids".into())
                        })?;
                        let mut ident = Vec::new();
                        codec::put_series_identity(
                            &mut ident,
                            &batch.tenant,
                            &o.entity,
                            &o.attr,
                            o.dataset_id.as_deref(),
                        );
                        writes.new_series.insert(id, ident);
                        w.series.insert(
                            i,
                            SeriesEntry {
                                attr: o.attr.clone(),
                                dataset_id: o.dataset_id.clone(),
                                id,
                            },
                        );
                        id
                    }
                };
                let type_id = match mem.types.ids.get(&o.entity_type) {
                    Some(&id) => id,
                    None => {
                        let base = mem.types.names.len();
                        let i = match new_types.iter().position(|t| *t == o.entity_type) {
                            Some(i) => i,
                            None => {
                                if base + new_types.len() >= u32::MAX as usize {
                                    return Err(StoreError::Invalid(
                                        "more than 4 billion distinct entity types".into(),
                                    ));
                                }
                                new_types.push(o.entity_type.clone());
                                new_types.len() - 1
                            }
                        };
                        (base + i) as u32
                    }
                };
                let mut v = Vec::with_capacity(32);
                codec::put_series_value(&mut v, type_id, o, now);
                let k = codec::point_key(series_id, o.observed_at);
                // A point deleted earlier in this group and written again stays.
                writes.remove_points.retain(|r| *r != k);
                writes.points.insert(k, v);
                if into_state {
                    stats.observations += 1;
                }
            }
        }

        // Build the write batch.
        let mut b = self.batch();
        let mut removed_per_tenant: HashMap<Tenant, u64> = HashMap::new();
        let mut added_per_tenant: HashMap<Tenant, u64> = HashMap::new();
        let series_tenant: HashMap<u64, &Tenant> = work
            .iter()
            .flat_map(|((t, _), w)| w.series.iter().map(move |s| (s.id, t)))
            .collect();
        let mut dropped_tenant: HashMap<u64, Tenant> = HashMap::new();
        for ((t, id), _) in work.iter() {
            if let Some(list) = mem.tenants.get(t).and_then(|tm| tm.series.get(id)) {
                for s in list {
                    dropped_tenant.insert(s.id, t.clone());
                }
            }
        }
        for sid in &writes.drop_series {
            let prefix = sid.to_be_bytes();
            let mut n = 0u64;
            for kv in self.series.prefix(prefix) {
                let k = kv.key().map_err(io("delete series"))?;
                b.remove(&self.series, k);
                n += 1;
            }
            b.remove(&self.series_ids, prefix);
            if let Some(t) = dropped_tenant.get(sid) {
                *removed_per_tenant.entry(t.clone()).or_default() += n;
            }
        }
        for k in &writes.remove_points {
            let sid = u64::from_be_bytes(k[..8].try_into().unwrap_or_default());
            if self.series.get(k).map_err(io("delete a point"))?.is_some() {
                b.remove(&self.series, k.to_vec());
                if let Some(t) = dropped_tenant.get(&sid) {
                    *removed_per_tenant.entry(t.clone()).or_default() += 1;
                }
            }
        }
        for (id, ident) in &writes.new_series {
            stats.bytes += (8 + ident.len()) as u64;
            b.insert(&self.series_ids, id.to_be_bytes(), ident.as_slice());
        }
        for (k, v) in &writes.points {
            let sid = u64::from_be_bytes(k[..8].try_into().unwrap_or_default());
            stats.bytes += (16 + v.len()) as u64;
            b.insert(&self.series, k.to_vec(), v.as_slice());
            // Counted like the ingest path counts: a point written again at the same
            // instant is counted again (reading before every write would cost a disk
            // read per point).
            if let Some(t) = series_tenant.get(&sid) {
                *added_per_tenant.entry((*t).clone()).or_default() += 1;
            }
        }
        for (i, ty) in new_types.iter().enumerate() {
            b.insert(
                &self.meta,
                type_key((mem.types.names.len() + i) as u32),
                ty.as_bytes(),
            );
        }
        let mut points: Vec<(Tenant, u64)> = Vec::new();
        let tenants: std::collections::BTreeSet<&Tenant> = added_per_tenant
            .keys()
            .chain(removed_per_tenant.keys())
            .collect();
        for t in tenants {
            let before = mem.tenants.get(t).map_or(0, |tm| tm.points);
            let after = (before + added_per_tenant.get(t).copied().unwrap_or(0))
                .saturating_sub(removed_per_tenant.get(t).copied().unwrap_or(0));
            b.insert(&self.meta, points_key(t), after.to_le_bytes());
            points.push((t.clone(), after));
        }
        let mut buf = Vec::with_capacity(256);
        for ((t, id), w) in &work {
            if !w.dirty {
                continue;
            }
            let key = codec::entity_key(t, id);
            match &w.state {
                Some(e) => {
                    buf.clear();
                    codec::put_entity_value(
                        &mut buf,
                        &codec::EntityHead::of(e),
                        e.attrs.len(),
                        codec::timed_attrs(e),
                    );
                    stats.bytes += (key.len() + buf.len()) as u64;
                    b.insert(&self.entities, key, buf.as_slice());
                }
                None if w.existed => b.remove(&self.entities, key),
                None => {}
            }
        }
        stats.entities_touched = work.len() as u64;
        drop(mem);
        b.commit().map_err(io("commit"))?;

        // Durable: install.
        let mut mem = self.mem_write();
        for ty in new_types {
            let id = mem.types.names.len() as u32;
            mem.types.ids.insert(ty.clone(), id);
            mem.types.names.push(ty);
        }
        mem.next_series = next_series;
        for (t, n) in points {
            mem.tenants.entry(t).or_default().points = n;
        }
        for ((t, id), w) in work {
            let tm = mem.tenants.entry(t).or_default();
            if w.series.is_empty() {
                tm.series.remove(&id);
            } else {
                tm.series.insert(id.clone(), w.series);
            }
            if !w.dirty {
                continue;
            }
            if let Some(old) = tm.entities.remove(&id) {
                tm.unindex(&old);
            }
            if let Some(e) = w.state {
                tm.index(&e);
                tm.entities.insert(id, Arc::new(e));
            }
        }
        Ok(stats)
    }
}

/// The history record of a deletion: the instance with the NGSI-LD Null value of its
/// kind, placed at the time of deletion.
fn tombstone(of: &Observation, now: Timestamp) -> Observation {
    let null = || Arc::new(serde_json::json!(polity_model::ngsild::NGSI_NULL));
    let value = match &of.value {
        Value::Relationship(_) => EntityId::new(polity_model::ngsild::NGSI_NULL)
            .map(Value::Relationship)
            .unwrap_or_else(|_| Value::Text(Arc::from(polity_model::ngsild::NGSI_NULL))),
        Value::LanguageMap(_) => Value::LanguageMap(Arc::new(
            serde_json::json!({"@none": polity_model::ngsild::NGSI_NULL}),
        )),
        Value::Vocab(_) => Value::Vocab(null()),
        Value::JsonValue(_) => Value::JsonValue(null()),
        Value::ListRelationship(_) => Value::ListRelationship(Arc::new(serde_json::json!([]))),
        Value::List(_) => Value::List(Arc::new(serde_json::json!([]))),
        _ => Value::Text(Arc::from(polity_model::ngsild::NGSI_NULL)),
    };
    Observation {
        value,
        unit: None,
        observed_at: now,
        observed: false,
        meta: None,
        ..of.clone()
    }
}

fn apply_op(
    w: &mut Work,
    op: &EntityOp,
    now: Timestamp,
    writes: &mut Writes,
    tombstones: &mut Vec<Observation>,
) {
    match op {
        EntityOp::Ensure {
            entity,
            types,
            scope,
        } => {
            let state = match &mut w.state {
                Some(s) => s,
                None => {
                    let Some(first) = types.first() else {
                        return;
                    };
                    w.dirty = true;
                    w.state
                        .insert(EntityState::new(entity.clone(), first.clone(), now))
                }
            };
            if state.add_types(types) {
                state.modified_at = state.modified_at.max(now);
                w.dirty = true;
            }
            if let Some(scope) = scope
                && state.scope != *scope
            {
                if scope.is_empty() {
                    // The scope's deletion, in the history of the `scope` member.
                    tombstones.push(Observation {
                        entity: state.id.clone(),
                        entity_type: state.entity_type.clone(),
                        attr: Arc::from(polity_model::ngsild::SCOPE_IRI),
                        dataset_id: None,
                        value: Value::Json(Arc::new(serde_json::json!([]))),
                        unit: None,
                        observed_at: now,
                        observed: false,
                        privacy: polity_model::PrivacyClass::Public,
                        meta: None,
                    });
                }
                state.scope = scope.clone();
                state.modified_at = state.modified_at.max(now);
                w.dirty = true;
            }
        }
        EntityOp::SetTypes { types, .. } => {
            if let Some(state) = &mut w.state
                && !types.is_empty()
            {
                state.set_types(types);
                state.modified_at = state.modified_at.max(now);
                w.dirty = true;
            }
        }
        EntityOp::DeleteAttr {
            attr, instances, ..
        } => {
            if let Some(state) = &mut w.state {
                tombstones.extend(
                    state
                        .attrs
                        .iter()
                        .filter(|a| *a.attr == **attr && instances.covers(a.dataset_id.as_deref()))
                        .map(|a| tombstone(a, now)),
                );
                if state.remove_attr(attr, instances, now) > 0 {
                    w.dirty = true;
                }
            }
        }
        EntityOp::ClearAttrs { .. } => {
            if let Some(state) = &mut w.state {
                state.clear_attrs(now);
                w.dirty = true;
            }
        }
        EntityOp::DeleteEntity { .. } => {
            if w.state.take().is_some() {
                w.dirty = true;
            }
            for s in w.series.drain(..) {
                drop_series(writes, s.id);
            }
        }
        EntityOp::DeleteHistory {
            attr,
            instances,
            at,
            ..
        } => {
            let hit =
                |s: &SeriesEntry| *s.attr == **attr && instances.covers(s.dataset_id.as_deref());
            match at {
                None => {
                    let mut kept = Vec::with_capacity(w.series.len());
                    for s in w.series.drain(..) {
                        if hit(&s) {
                            drop_series(writes, s.id);
                        } else {
                            kept.push(s);
                        }
                    }
                    w.series = kept;
                }
                Some(t) => {
                    for s in w.series.iter().filter(|s| hit(s)) {
                        let k = codec::point_key(s.id, *t);
                        writes.points.remove(&k);
                        writes.remove_points.push(k);
                    }
                }
            }
        }
    }
}

/// Drops a series: its stored points, its identity record, and any point or identity
/// written earlier in the group.
fn drop_series(writes: &mut Writes, id: u64) {
    let lo = codec::point_key(id, Timestamp::from_millis(polity_model::time::MIN_MS));
    let hi = codec::point_key(id, Timestamp::from_millis(polity_model::time::MAX_MS));
    let pending: Vec<[u8; 16]> = writes.points.range(lo..=hi).map(|(k, _)| *k).collect();
    for k in pending {
        writes.points.remove(&k);
    }
    if writes.new_series.remove(&id).is_none() {
        writes.drop_series.push(id);
    }
}
