//! Privacy at the city edge: the protect transform, run on every batch before it is
//! queued for storage.
//!
//! * **Pseudonymization.** Attributes that carry personal identifiers (account numbers,
//!   licence plates, MAC addresses, and links from devices to people) are replaced by
//!   keyed HMAC-SHA256 pseudonyms ([`polity_privacy::Pseudonymizer`]), with keys per
//!   city and per purpose. The clear identifier is never stored or forwarded: it exists
//!   only in the request being processed. Such attributes become personal data.
//! * **Location coarsening.** A GeoProperty classed personal or sensitive is snapped to
//!   the centre of a grid cell ([`polity_privacy::coarsen`]).
//! * **Sealing for crypto-shredding.** With a vault, every other personal or sensitive
//!   value of an entity that belongs to a citizen (its `owner` link) is encrypted with
//!   that citizen's key ([`polity_privacy::CitizenVault`]) before it is stored: erasing
//!   the key erases the values in the entity state, the series, caches and backups.
//!   The owner link itself stays a pseudonym in clear, so authorization can match it.
//!   Values of a citizen whose key was erased are dropped.
//!
//! A value that does not look like its declared kind (a "MAC address" that is not one)
//! is still pseudonymized, as an opaque identifier: a malformed identifier is no reason
//! to store it in clear.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use polity_model::{Batch, EntityId, PrivacyClass, Tenant, Value};
use polity_privacy::{CitizenVault, IdentifierKind, LocationPolicy, Pseudonymizer};

/// The prefix of a sealed value (a [`CitizenVault`] envelope) in a text property.
pub const SEALED_PREFIX: &str = "enc1:";

/// Attribute short names that link an entity to the person it belongs to.
pub const OWNER_ATTR: &str = "owner";

/// The additional authenticated data a sealed value is bound to: its entity and
/// attribute, so an envelope cannot be moved to another attribute or entity.
pub fn seal_aad(entity: &str, attr: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(entity.len() + attr.len() + 1);
    v.extend_from_slice(entity.as_bytes());
    v.push(0);
    v.extend_from_slice(attr.as_bytes());
    v
}

/// The owner an observation names, if it is an `owner` link (by short name, whatever
/// the attribute's expanded IRI): the relationship's object or the text value.
pub fn owner_link(o: &polity_model::Observation) -> Option<String> {
    if short_name(&o.attr) != OWNER_ATTR {
        return None;
    }
    match &o.value {
        Value::Relationship(id) => Some(id.as_str().to_owned()),
        Value::Text(t) => Some(t.to_string()),
        _ => None,
    }
}

/// Owners of entities, as pseudonyms, learned from `owner` links as they pass.
type Owners = RwLock<HashMap<(Tenant, EntityId), String>>;

/// The purpose under which links from devices to people are pseudonymized; the same
/// key turns a citizen's id into the pseudonym their data is filed under.
pub const SUBJECT_PURPOSE: &str = "subject";

/// The URN prefix of a link to a person; stripped before a person link is hashed.
pub const PERSON_URN: &str = "urn:ngsi-ld:Person:";

/// One identifier attribute: its kind and the purpose its pseudonyms serve.
#[derive(Debug, Clone)]
pub struct IdentifierRule {
    /// How the value is canonicalized before hashing.
    pub kind: IdentifierKind,
    /// The key purpose (pseudonyms under different purposes cannot be linked).
    pub purpose: String,
}

/// The privacy policy applied at ingest.
#[derive(Clone)]
pub struct Protector {
    pseudonyms: Arc<Pseudonymizer>,
    vault: Option<Arc<CitizenVault>>,
    owners: Arc<Owners>,
    /// By attribute short name (the last segment of the expanded IRI).
    identifiers: HashMap<String, IdentifierRule>,
    location: LocationPolicy,
}

impl std::fmt::Debug for Protector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protector")
            .field("identifiers", &self.identifiers.keys().collect::<Vec<_>>())
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// The short name of an attribute IRI: what follows the last `/` or `#`.
pub fn short_name(attr: &str) -> &str {
    attr.rsplit(['/', '#']).next().unwrap_or(attr)
}

impl Protector {
    /// The default policy: Smart Data Models' identifier attributes (`owner`,
    /// `accountNumber`, `vehiclePlateIdentifier`/`licensePlate`, `macAddress`), and
    /// personal locations on a 500 m grid.
    pub fn new(pseudonyms: Arc<Pseudonymizer>) -> Self {
        let mut identifiers = HashMap::new();
        let mut add = |names: &[&str], kind, purpose: &str| {
            for n in names {
                identifiers.insert(
                    (*n).to_owned(),
                    IdentifierRule {
                        kind,
                        purpose: purpose.to_owned(),
                    },
                );
            }
        };
        add(&["owner"], IdentifierKind::PersonLink, SUBJECT_PURPOSE);
        add(
            &["accountNumber", "contractNumber"],
            IdentifierKind::AccountNumber,
            "billing",
        );
        add(
            &["vehiclePlateIdentifier", "licensePlate", "licencePlate"],
            IdentifierKind::LicencePlate,
            "mobility",
        );
        add(
            &["macAddress", "bluetoothMac", "wifiMac"],
            IdentifierKind::MacAddress,
            "presence",
        );
        Protector {
            pseudonyms,
            vault: None,
            owners: Arc::default(),
            identifiers,
            location: LocationPolicy::default(),
        }
    }

    /// Seals personal values of citizens' entities with `vault`; `owners` are the
    /// owner links already stored (tenant, entity, owner pseudonym).
    pub fn with_vault(
        mut self,
        vault: Arc<CitizenVault>,
        owners: impl IntoIterator<Item = (Tenant, EntityId, String)>,
    ) -> Self {
        self.vault = Some(vault);
        if let Ok(mut m) = self.owners.write() {
            m.extend(owners.into_iter().map(|(t, e, o)| ((t, e), o)));
        }
        self
    }

    fn seal(&self, tenant: &Tenant, batch: &mut Batch) -> usize {
        let Some(vault) = &self.vault else { return 0 };
        // Owner links in this batch first: an upsert brings the owner with the values.
        {
            let Ok(mut owners) = self.owners.write() else {
                return 0;
            };
            for o in &batch.observations {
                if let Some(owner) = owner_link(o) {
                    owners.insert((tenant.clone(), o.entity.clone()), owner);
                }
            }
        }
        let Ok(owners) = self.owners.read() else {
            return 0;
        };
        let mut dropped = 0;
        batch.observations.retain_mut(|o| {
            if o.privacy == PrivacyClass::Public || short_name(&o.attr) == OWNER_ATTR {
                return true;
            }
            let Some(owner) = owners.get(&(tenant.clone(), o.entity.clone())) else {
                return true;
            };
            let plain = match serde_json::to_vec(&o.value) {
                Ok(p) => p,
                Err(_) => {
                    dropped += 1;
                    return false;
                }
            };
            match vault.seal(tenant, owner, &plain, &seal_aad(o.entity.as_str(), &o.attr)) {
                Ok(env) => {
                    o.value = Value::Text(env.into());
                    true
                }
                Err(e) => {
                    // An erased citizen's data is not kept; nor is anything that cannot
                    // be sealed.
                    tracing::debug!(error = %e, entity = %o.entity, "personal value not stored");
                    dropped += 1;
                    false
                }
            }
        });
        dropped
    }

    /// Sets the grid personal locations are coarsened to.
    pub fn with_location(mut self, policy: LocationPolicy) -> Self {
        self.location = policy;
        self
    }

    /// Declares another identifier attribute (by short name).
    pub fn with_identifier(mut self, attr: &str, rule: IdentifierRule) -> Self {
        self.identifiers.insert(attr.to_owned(), rule);
        self
    }

    fn pseudonym(
        &self,
        tenant: &polity_model::Tenant,
        rule: &IdentifierRule,
        raw: &str,
    ) -> Option<String> {
        // A link to a person names them as `urn:ngsi-ld:Person:<id>`; their token's
        // subject is `<id>`. Both must key to the same pseudonym.
        let raw = match rule.kind {
            IdentifierKind::PersonLink => raw.strip_prefix(PERSON_URN).unwrap_or(raw),
            _ => raw,
        };
        let p = self
            .pseudonyms
            .pseudonymize(tenant, &rule.purpose, rule.kind, raw)
            .or_else(|_| {
                self.pseudonyms
                    .pseudonymize(tenant, &rule.purpose, IdentifierKind::Other, raw)
            });
        match p {
            Ok(p) => Some(p.as_str().to_owned()),
            Err(e) => {
                tracing::error!(error = %e, "cannot pseudonymize an identifier; dropping it");
                None
            }
        }
    }

    /// Applies the policy to `batch` in place. Identifiers that cannot be pseudonymized
    /// (keys unreadable) are dropped, never kept in clear; returns how many.
    pub fn protect(&self, batch: &mut Batch) -> usize {
        let tenant = batch.tenant.clone();
        let mut dropped = 0;
        batch.observations.retain_mut(|o| {
            if let Some(rule) = self.identifiers.get(short_name(&o.attr)) {
                o.privacy = o.privacy.max(PrivacyClass::Personal);
                let new = match &o.value {
                    Value::Text(t) => self.pseudonym(&tenant, rule, t).map(|p| Value::Text(p.into())),
                    Value::Relationship(id) => self
                        .pseudonym(&tenant, rule, id.as_str())
                        .and_then(|p| EntityId::new(&p).ok())
                        .map(Value::Relationship),
                    Value::Number(n) => self
                        .pseudonym(&tenant, rule, &n.to_string())
                        .map(|p| Value::Text(p.into())),
                    Value::Json(j)
                    | Value::LanguageMap(j)
                    | Value::Vocab(j)
                    | Value::JsonValue(j)
                    | Value::List(j)
                    | Value::ListRelationship(j) => {
                        let mut j = (**j).clone();
                        let ok = pseudonymize_json(&mut j, &mut |s| self.pseudonym(&tenant, rule, s));
                        // Whatever the attribute type, the pseudonyms are plain values.
                        ok.then(|| Value::Json(Arc::new(j)))
                    }
                    Value::Bool(_) | Value::Geo(_) => None,
                };
                match new {
                    Some(v) => o.value = v,
                    None => {
                        dropped += 1;
                        return false;
                    }
                }
            } else if let Value::Geo(g) = &o.value
                && o.privacy != PrivacyClass::Public
            {
                match polity_privacy::coarsen(g, self.location) {
                    Ok(c) => o.value = Value::Geo(Arc::new(c)),
                    Err(e) => {
                        tracing::warn!(error = %e, "a personal location could not be coarsened; dropping it");
                        dropped += 1;
                        return false;
                    }
                }
            }
            true
        });
        dropped + self.seal(&tenant, batch)
    }
}

/// Replaces every string in `j` by its pseudonym; false if one failed.
fn pseudonymize_json(
    j: &mut serde_json::Value,
    f: &mut impl FnMut(&str) -> Option<String>,
) -> bool {
    match j {
        serde_json::Value::String(s) => match f(s) {
            Some(p) => {
                *s = p;
                true
            }
            None => false,
        },
        serde_json::Value::Array(a) => a.iter_mut().all(|v| pseudonymize_json(v, f)),
        serde_json::Value::Object(m) => m.values_mut().all(|v| pseudonymize_json(v, f)),
        _ => {
            // Numbers and booleans inside an identifier value are identifying too.
            let text = j.to_string();
            match f(&text) {
                Some(p) => {
                    *j = serde_json::Value::String(p);
                    true
                }
                None => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polity_model::{Observation, Tenant, Timestamp};

    fn obs(attr: &str, value: Value, privacy: PrivacyClass) -> Observation {
        Observation {
            entity: EntityId::new("urn:ngsi-ld:Device:m1").unwrap(),
            entity_type: Arc::from("https://smartdatamodels.org/dataModel.Device/Device"),
            attr: Arc::from(attr),
            dataset_id: None,
            value,
            unit: None,
            observed_at: Timestamp::now(),
            observed: true,
            privacy,
            meta: None,
        }
    }

    #[test]
    fn identifiers_never_stay_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let keys = polity_privacy::KeyDir::open(dir.path()).unwrap();
        let p = Protector::new(Arc::new(Pseudonymizer::new(keys)));
        let tenant = Tenant::new("adelaide").unwrap();
        let mut batch = Batch::of(
            tenant.clone(),
            Arc::from("t"),
            vec![
                obs(
                    "https://smartdatamodels.org/owner",
                    Value::Relationship(EntityId::new("urn:ngsi-ld:Person:alice").unwrap()),
                    PrivacyClass::Public,
                ),
                obs(
                    "macAddress",
                    Value::Text("AA:BB:CC:DD:EE:FF".into()),
                    PrivacyClass::Public,
                ),
                obs(
                    "macAddress",
                    Value::Text("not a mac".into()),
                    PrivacyClass::Public,
                ),
                obs(
                    "https://uri.etsi.org/ngsi-ld/default-context/vehiclePlateIdentifier",
                    Value::Json(Arc::new(serde_json::json!(["SA 123 ABC", 42]))),
                    PrivacyClass::Public,
                ),
                obs(
                    "location",
                    Value::Geo(Arc::new(
                        serde_json::json!({"type":"Point","coordinates":[138.6007123,-34.9284989]}),
                    )),
                    PrivacyClass::Personal,
                ),
                obs("temperature", Value::Number(21.5), PrivacyClass::Public),
            ],
        );
        assert_eq!(p.protect(&mut batch), 0);
        let text = serde_json::to_string(&batch.observations).unwrap();
        for clear in [
            "alice",
            "AA:BB",
            "aabbcc",
            "not a mac",
            "SA 123",
            "138.6007123",
        ] {
            assert!(!text.contains(clear), "{clear} left in clear: {text}");
        }
        assert!(text.contains("pn1:subject:"));
        assert_eq!(batch.observations[0].privacy, PrivacyClass::Personal);
        assert_eq!(batch.observations[5].value, Value::Number(21.5));
        // The owner link keys to the same pseudonym the citizen's token maps to.
        let me = Pseudonymizer::new(polity_privacy::KeyDir::open(dir.path()).unwrap())
            .pseudonymize(
                &tenant,
                SUBJECT_PURPOSE,
                IdentifierKind::PersonLink,
                "alice",
            )
            .unwrap();
        assert_eq!(
            batch.observations[0].value,
            Value::Relationship(EntityId::new(me.as_str()).unwrap())
        );
    }
}
