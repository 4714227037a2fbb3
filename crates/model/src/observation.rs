//! The hot-path form of data: one observed attribute value, and batches of them.
//!
//! Every source (SenML over CoAP, JSON over MQTT, NGSI-LD over HTTP) normalizes into
//! [`Observation`]s. Names are held as expanded IRIs in shared strings handed out by an
//! [`Interner`], so a batch of a million observations of a few hundred attributes holds a
//! few hundred strings, not a million. Values are small enums, not JSON trees; only
//! structured values that need one carry JSON.

use std::{collections::HashMap, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::{id::EntityId, id::Tenant, time::Timestamp, units::UnitCode};

/// How personal a value is. Mappings give each attribute a class; the trust layer acts on it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum PrivacyClass {
    /// Infrastructure data with no link to a person (air quality, traffic counts).
    #[default]
    Public,
    /// Linked to a person or household (a water meter, a parking session).
    Personal,
    /// Special categories or precise personal location.
    Sensitive,
}

impl PrivacyClass {
    /// Stable one-byte code for storage.
    pub fn code(self) -> u8 {
        match self {
            PrivacyClass::Public => 0,
            PrivacyClass::Personal => 1,
            PrivacyClass::Sensitive => 2,
        }
    }

    /// Inverse of [`PrivacyClass::code`]; unknown codes are treated as the strictest class.
    pub fn from_code(c: u8) -> Self {
        match c {
            0 => PrivacyClass::Public,
            1 => PrivacyClass::Personal,
            _ => PrivacyClass::Sensitive,
        }
    }
}

/// The NGSI-LD attribute kind a value is delivered as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", content = "v")]
pub enum Value {
    /// A numeric Property.
    Number(f64),
    /// A boolean Property.
    Bool(bool),
    /// A string Property.
    Text(Arc<str>),
    /// A Relationship to another entity.
    Relationship(EntityId),
    /// A GeoProperty: a GeoJSON geometry object.
    Geo(Arc<serde_json::Value>),
    /// A Property with a structured (object or array) value.
    Json(Arc<serde_json::Value>),
    /// A LanguageProperty: its `languageMap` (language tag → string or strings).
    LanguageMap(Arc<serde_json::Value>),
    /// A VocabProperty: its `vocab`, one expanded IRI (a string) or an array of them.
    Vocab(Arc<serde_json::Value>),
    /// A JsonProperty: its `json` value, kept verbatim and never read as JSON-LD.
    JsonValue(Arc<serde_json::Value>),
    /// A ListProperty: its `valueList` (an ordered array of values).
    List(Arc<serde_json::Value>),
    /// A ListRelationship: its `objectList`, an ordered array of entity ids.
    ListRelationship(Arc<serde_json::Value>),
}

impl Value {
    /// The numeric value, if this is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// One observed attribute value of one entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The entity observed.
    pub entity: EntityId,
    /// The entity's type, as an expanded IRI.
    pub entity_type: Arc<str>,
    /// The attribute, as an expanded IRI.
    pub attr: Arc<str>,
    /// NGSI-LD `datasetId`, for multi-instance attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<Arc<str>>,
    /// The value.
    pub value: Value,
    /// UN/CEFACT common code of the value's unit, after normalization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<UnitCode>,
    /// When the value was observed (NGSI-LD `observedAt`), or, when `observed` is
    /// false, when the node received it. It places the instance in the temporal series.
    pub observed_at: Timestamp,
    /// Whether `observed_at` came from the source, so that it is rendered as
    /// `observedAt`. False for NGSI-LD attributes sent without one.
    #[serde(default = "observed_default", skip_serializing_if = "is_true")]
    pub observed: bool,
    /// How personal the value is.
    #[serde(default)]
    pub privacy: PrivacyClass,
    /// Further sub-attributes of the attribute instance, expanded, as NGSI-LD JSON
    /// (rare: most sources have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
}

fn observed_default() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// A batch of observations for one tenant, from one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The city the data belongs to.
    pub tenant: Tenant,
    /// The source component that produced the batch (its configured name).
    pub source: Arc<str>,
    /// The observations, in arrival order.
    pub observations: Vec<Observation>,
    /// Changes that are not observations, applied in order before the observations.
    /// Empty for every device source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<crate::entity::EntityOp>,
    /// How observations fold into entity state: device data keeps the latest observed
    /// value ([`Fold::Latest`]); NGSI-LD updates replace it ([`Fold::Replace`]).
    #[serde(default, skip_serializing_if = "Fold::is_latest")]
    pub fold: Fold,
}

/// How a batch's observations change entity state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Fold {
    /// An observation replaces the stored instance unless that was observed later.
    #[default]
    Latest,
    /// An observation replaces the stored instance (NGSI-LD update semantics).
    Replace,
}

impl Fold {
    fn is_latest(&self) -> bool {
        *self == Fold::Latest
    }
}

impl Batch {
    /// A batch of device observations (latest observed value wins, no operations).
    pub fn of(tenant: Tenant, source: Arc<str>, observations: Vec<Observation>) -> Self {
        Batch {
            tenant,
            source,
            observations,
            ops: Vec::new(),
            fold: Fold::Latest,
        }
    }

    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.observations.is_empty() && self.ops.is_empty()
    }
}

/// Hands out one shared string per distinct name, so hot-path data shares names.
#[derive(Debug, Default)]
pub struct Interner {
    map: HashMap<Arc<str>, ()>,
}

impl Interner {
    /// An empty interner.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared copy of `s`.
    pub fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some((k, _)) = self.map.get_key_value(s) {
            return k.clone();
        }
        let k: Arc<str> = Arc::from(s);
        self.map.insert(k.clone(), ());
        k
    }

    /// How many distinct names are held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no name is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interner_shares() {
        let mut i = Interner::new();
        let a = i.intern("https://smartdatamodels.org/dataModel.Environment/NO2");
        let b = i.intern("https://smartdatamodels.org/dataModel.Environment/NO2");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(i.len(), 1);
    }

    #[test]
    fn privacy_codes_round_trip() {
        for p in [
            PrivacyClass::Public,
            PrivacyClass::Personal,
            PrivacyClass::Sensitive,
        ] {
            assert_eq!(PrivacyClass::from_code(p.code()), p);
        }
        assert_eq!(PrivacyClass::from_code(99), PrivacyClass::Sensitive);
    }
}
