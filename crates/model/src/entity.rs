//! The state of one NGSI-LD entity: its latest attribute instances.
//!
//! Entity state is derived from observations: each observation replaces the instance of
//! its attribute (and `datasetId`) unless the stored instance was observed later. This
//! makes replaying a batch idempotent and keeps out-of-order delivery from rolling a
//! value back.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{id::EntityId, observation::Observation, time::Timestamp};

/// One entity's current state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityState {
    /// The entity id.
    pub id: EntityId,
    /// The entity type, as an expanded IRI.
    pub entity_type: Arc<str>,
    /// When the entity was first stored (NGSI-LD `createdAt`).
    pub created_at: Timestamp,
    /// When the entity last changed (NGSI-LD `modifiedAt`).
    pub modified_at: Timestamp,
    /// The latest instance of each attribute, one per (attribute, datasetId), sorted by
    /// attribute then datasetId.
    pub attrs: Vec<Observation>,
}

impl EntityState {
    /// A new, empty entity.
    pub fn new(id: EntityId, entity_type: Arc<str>, now: Timestamp) -> Self {
        EntityState {
            id,
            entity_type,
            created_at: now,
            modified_at: now,
            attrs: Vec::new(),
        }
    }

    /// Folds one observation of this entity into the state. Returns whether the state
    /// changed. An observation older than the stored instance is ignored.
    pub fn apply(&mut self, obs: &Observation, now: Timestamp) -> bool {
        let key = (&*obs.attr, obs.dataset_id.as_deref());
        let pos = self
            .attrs
            .binary_search_by(|a| (&*a.attr, a.dataset_id.as_deref()).cmp(&key));
        let changed = match pos {
            Ok(i) => {
                let cur = &mut self.attrs[i];
                if obs.observed_at < cur.observed_at || cur == obs {
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
            self.modified_at = self.modified_at.max(now);
        }
        changed
    }

    /// The instance of `attr` (expanded IRI) with the default datasetId, if any.
    pub fn attr(&self, attr: &str) -> Option<&Observation> {
        self.attrs
            .iter()
            .find(|a| &*a.attr == attr && a.dataset_id.is_none())
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
