//! The state of one NGSI-LD entity: its latest attribute instances.
//!
//! Entity state is derived from observations: each observation replaces the instance of
//! its attribute (and `datasetId`) unless the stored instance was observed later. This
//! makes replaying a batch idempotent and keeps out-of-order delivery from rolling a
//! value back. The NGSI-LD API's writes use [`EntityState::set`] instead (an update
//! replaces the instance whatever its `observedAt`) and [`EntityOp`]s for what is not an
//! observation: creation without attributes, types, scope and deletions.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{id::EntityId, observation::Observation, time::Timestamp};

/// When one attribute instance was created and last modified (NGSI-LD `createdAt` and
/// `modifiedAt` of an attribute, shown with `options=sysAttrs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrTimes {
    /// The attribute, as an expanded IRI.
    pub attr: Arc<str>,
    /// Its datasetId, `None` for the default instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<Arc<str>>,
    /// When the instance was first stored.
    pub created_at: Timestamp,
    /// When the instance last changed.
    pub modified_at: Timestamp,
}

/// Which instances of an attribute an operation addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Instances {
    /// The default instance (no datasetId).
    Default,
    /// The instance with this datasetId.
    Dataset(Arc<str>),
    /// Every instance.
    All,
}

impl Instances {
    /// Whether the instance with datasetId `ds` is addressed.
    pub fn covers(&self, ds: Option<&str>) -> bool {
        match self {
            Instances::Default => ds.is_none(),
            Instances::Dataset(d) => ds == Some(&**d),
            Instances::All => true,
        }
    }
}

/// One entity's current state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityState {
    /// The entity id.
    pub id: EntityId,
    /// The entity type (the first, for a multi-typed entity), as an expanded IRI.
    pub entity_type: Arc<str>,
    /// The further types of a multi-typed entity, expanded, in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_types: Vec<Arc<str>>,
    /// NGSI-LD `scope`: the entity's hierarchical scopes, such as `/Madrid/Gardens`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<Arc<str>>,
    /// When the entity was first stored (NGSI-LD `createdAt`).
    pub created_at: Timestamp,
    /// When the entity last changed (NGSI-LD `modifiedAt`).
    pub modified_at: Timestamp,
    /// The latest instance of each attribute, one per (attribute, datasetId), sorted by
    /// attribute then datasetId.
    pub attrs: Vec<Observation>,
    /// When each instance in `attrs` was created and modified, sorted the same way.
    /// Looked up by instance, so a copy with attributes removed (redaction) stays valid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attr_times: Vec<AttrTimes>,
}

fn key_of(o: &Observation) -> (&str, Option<&str>) {
    (&o.attr, o.dataset_id.as_deref())
}

impl EntityState {
    /// A new, empty entity.
    pub fn new(id: EntityId, entity_type: Arc<str>, now: Timestamp) -> Self {
        EntityState {
            id,
            entity_type,
            other_types: Vec::new(),
            scope: Vec::new(),
            created_at: now,
            modified_at: now,
            attrs: Vec::new(),
            attr_times: Vec::new(),
        }
    }

    /// Every type of the entity, the primary one first.
    pub fn types(&self) -> impl Iterator<Item = &Arc<str>> {
        std::iter::once(&self.entity_type).chain(self.other_types.iter())
    }

    /// Whether the entity has type `ty` (expanded IRI) among its types.
    pub fn has_type(&self, ty: &str) -> bool {
        self.types().any(|t| &**t == ty)
    }

    /// Adds the types in `types` the entity does not have yet, in order. Returns whether
    /// any was added.
    pub fn add_types(&mut self, types: &[Arc<str>]) -> bool {
        let mut changed = false;
        for t in types {
            if !self.has_type(t) {
                self.other_types.push(t.clone());
                changed = true;
            }
        }
        changed
    }

    /// Replaces the entity's types (`types` must not be empty; the first is primary).
    pub fn set_types(&mut self, types: &[Arc<str>]) {
        if let Some((first, rest)) = types.split_first() {
            self.entity_type = first.clone();
            self.other_types = rest
                .iter()
                .filter(|t| *t != first)
                .fold(Vec::new(), |mut v, t| {
                    if !v.contains(t) {
                        v.push(t.clone());
                    }
                    v
                });
        }
    }

    /// When the instance `(attr, dataset_id)` was created and modified, if it is known.
    pub fn times(&self, attr: &str, dataset_id: Option<&str>) -> Option<&AttrTimes> {
        self.attr_times
            .binary_search_by(|t| (&*t.attr, t.dataset_id.as_deref()).cmp(&(attr, dataset_id)))
            .ok()
            .map(|i| &self.attr_times[i])
    }

    fn touch(&mut self, obs: &Observation, now: Timestamp) {
        let key = key_of(obs);
        match self
            .attr_times
            .binary_search_by(|t| (&*t.attr, t.dataset_id.as_deref()).cmp(&key))
        {
            Ok(i) => self.attr_times[i].modified_at = now,
            Err(i) => self.attr_times.insert(
                i,
                AttrTimes {
                    attr: obs.attr.clone(),
                    dataset_id: obs.dataset_id.clone(),
                    created_at: now,
                    modified_at: now,
                },
            ),
        }
    }

    /// Folds one observation of this entity into the state. Returns whether the state
    /// changed. An observation older than the stored instance is ignored.
    pub fn apply(&mut self, obs: &Observation, now: Timestamp) -> bool {
        self.fold(obs, now, false)
    }

    /// Sets an attribute instance to `obs` whatever the stored instance's `observedAt`
    /// (NGSI-LD update semantics). An update is a modification even when the value is
    /// the same, so the instance's `modifiedAt` always moves; returns true.
    pub fn set(&mut self, obs: &Observation, now: Timestamp) -> bool {
        self.fold(obs, now, true)
    }

    fn fold(&mut self, obs: &Observation, now: Timestamp, replace: bool) -> bool {
        let key = key_of(obs);
        let pos = self.attrs.binary_search_by(|a| key_of(a).cmp(&key));
        let changed = match pos {
            Ok(i) => {
                let cur = &mut self.attrs[i];
                if replace {
                    *cur = obs.clone();
                    true
                } else if obs.observed_at < cur.observed_at || cur == obs {
                    false
                } else {
                    *cur = obs.clone();
                    true
                }
            }
            Err(i) => {
                self.attrs.insert(i, obs.clone());
                true
            }
        };
        if changed {
            self.touch(obs, now);
            self.modified_at = self.modified_at.max(now);
        }
        changed
    }

    /// Removes the addressed instances of `attr`. Returns how many were removed.
    pub fn remove_attr(&mut self, attr: &str, which: &Instances, now: Timestamp) -> usize {
        let before = self.attrs.len();
        self.attrs
            .retain(|a| !(&*a.attr == attr && which.covers(a.dataset_id.as_deref())));
        self.attr_times
            .retain(|t| !(&*t.attr == attr && which.covers(t.dataset_id.as_deref())));
        let removed = before - self.attrs.len();
        if removed > 0 {
            self.modified_at = self.modified_at.max(now);
        }
        removed
    }

    /// Removes every attribute (the first step of replacing an entity).
    pub fn clear_attrs(&mut self, now: Timestamp) {
        if !self.attrs.is_empty() {
            self.modified_at = self.modified_at.max(now);
        }
        self.attrs.clear();
        self.attr_times.clear();
    }

    /// The instance of `attr` (expanded IRI) with the default datasetId, if any.
    pub fn attr(&self, attr: &str) -> Option<&Observation> {
        self.attrs
            .iter()
            .find(|a| &*a.attr == attr && a.dataset_id.is_none())
    }

    /// Every instance of `attr` (expanded IRI).
    pub fn instances<'a>(&'a self, attr: &'a str) -> impl Iterator<Item = &'a Observation> + 'a {
        self.attrs.iter().filter(move |a| &*a.attr == attr)
    }
}

/// A change to entities that is not an observation: creation without attributes, type
/// and scope changes, deletions. A [`crate::Batch`] applies its operations, in order,
/// before its observations, in the same durable commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EntityOp {
    /// Creates the entity if it does not exist (without attributes) and adds `types` to
    /// its types; `scope`, when given, replaces its scope.
    Ensure {
        /// The entity.
        entity: EntityId,
        /// Its types, expanded; the first is primary for a new entity.
        types: Vec<Arc<str>>,
        /// Its scopes (empty removes them); `None` leaves them.
        scope: Option<Vec<Arc<str>>>,
    },
    /// Replaces an existing entity's types (`types` not empty).
    SetTypes {
        /// The entity.
        entity: EntityId,
        /// The new types, expanded.
        types: Vec<Arc<str>>,
    },
    /// Removes the addressed instances of an attribute from the entity's current state
    /// (its temporal history stays).
    DeleteAttr {
        /// The entity.
        entity: EntityId,
        /// The attribute, expanded.
        attr: Arc<str>,
        /// Which instances.
        instances: Instances,
    },
    /// Removes every attribute from the entity's current state (replace).
    ClearAttrs {
        /// The entity.
        entity: EntityId,
    },
    /// Deletes the entity: its state and its temporal history.
    DeleteEntity {
        /// The entity.
        entity: EntityId,
    },
    /// Deletes temporal history: of an attribute's addressed instances, either every
    /// point or only the one observed at `at`. The current state is left alone.
    DeleteHistory {
        /// The entity.
        entity: EntityId,
        /// The attribute, expanded.
        attr: Arc<str>,
        /// Which instances (datasetIds).
        instances: Instances,
        /// Only the point at this instant; `None` for every point.
        at: Option<Timestamp>,
    },
}

impl EntityOp {
    /// The entity the operation changes.
    pub fn entity(&self) -> &EntityId {
        match self {
            EntityOp::Ensure { entity, .. }
            | EntityOp::SetTypes { entity, .. }
            | EntityOp::DeleteAttr { entity, .. }
            | EntityOp::ClearAttrs { entity }
            | EntityOp::DeleteEntity { entity }
            | EntityOp::DeleteHistory { entity, .. } => entity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PrivacyClass, Value};

    fn obs(attr: &str, v: f64, t: i64) -> Observation {
        Observation {
            entity: EntityId::new("urn:ngsi-ld:X:1").unwrap(),
            entity_type: Arc::from("https://uri.etsi.org/ngsi-ld/default-context/X"),
            attr: Arc::from(attr),
            dataset_id: None,
            value: Value::Number(v),
            unit: None,
            observed_at: Timestamp::from_millis(t),
            observed: true,
            privacy: PrivacyClass::Public,
            meta: None,
        }
    }

    #[test]
    fn latest_wins_and_old_is_ignored() {
        let o = obs("a", 1.0, 10);
        let mut e = EntityState::new(
            o.entity.clone(),
            o.entity_type.clone(),
            Timestamp::from_millis(100),
        );
        assert!(e.apply(&o, Timestamp::from_millis(100)));
        assert!(e.apply(&obs("a", 2.0, 20), Timestamp::from_millis(101)));
        assert!(!e.apply(&obs("a", 3.0, 15), Timestamp::from_millis(102)));
        assert!(
            !e.apply(&obs("a", 2.0, 20), Timestamp::from_millis(103)),
            "replay is idempotent"
        );
        assert!(e.apply(&obs("b", 5.0, 1), Timestamp::from_millis(104)));
        assert_eq!(e.attr("a").unwrap().value, Value::Number(2.0));
        assert_eq!(e.attrs.len(), 2);
        assert_eq!(e.modified_at, Timestamp::from_millis(104));
    }
}
