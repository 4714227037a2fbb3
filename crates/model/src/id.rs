//! Identifiers: NGSI-LD entity ids (URIs, usually URNs) and tenant names.
//!
//! Ids are reference-counted strings so that the hot path clones them without
//! allocating. Validation happens once, at the edge of the system.

use std::{fmt, sync::Arc};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An identifier that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Entity ids must be absolute URIs (NGSI-LD 4.5.1).
    #[error(
        "entity id `{0}` is not an absolute URI; use a URN such as urn:ngsi-ld:ParkingSpot:adelaide-001"
    )]
    NotUri(String),
    /// Tenant names are short lowercase tokens.
    #[error(
        "tenant `{0}` is invalid: use 1 to 64 characters from a-z, 0-9, '-' and '_', starting with a letter"
    )]
    BadTenant(String),
}

fn clip(s: &str) -> String {
    s.chars().take(128).collect()
}

/// Whether `s` is an absolute URI in the sense of RFC 3986: `scheme ":" rest`, with no
/// characters that a URI may never contain.
pub fn is_absolute_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut sc = scheme.chars();
    let scheme_ok = sc.next().is_some_and(|c| c.is_ascii_alphabetic())
        && sc.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    scheme_ok
        && !rest.is_empty()
        && s.len() <= 2048
        && !s.chars().any(|c| {
            c.is_control()
                || c.is_whitespace()
                || matches!(c, '<' | '>' | '"' | '{' | '}' | '|' | '\\' | '^' | '`')
        })
}

/// The id of an NGSI-LD entity: an absolute URI.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityId(Arc<str>);

impl EntityId {
    /// Validates and wraps an id.
    pub fn new(s: &str) -> Result<Self, IdError> {
        if is_absolute_uri(s) {
            Ok(EntityId(Arc::from(s)))
        } else {
            Err(IdError::NotUri(clip(s)))
        }
    }

    /// `urn:ngsi-ld:{short_type}:{local}`, the id form the Smart Data Models examples use.
    /// Characters that a URN may not carry are percent-encoded in `local`.
    pub fn urn(short_type: &str, local: &str) -> Result<Self, IdError> {
        let mut s = String::with_capacity(12 + short_type.len() + local.len());
        s.push_str("urn:ngsi-ld:");
        s.push_str(short_type);
        s.push(':');
        for b in local.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~:@!$&'()*+,;=".contains(&b) {
                s.push(b as char);
            } else {
                s.push_str(&format!("%{b:02X}"));
            }
        }
        EntityId::new(&s)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for EntityId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EntityId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        EntityId::new(&s).map_err(serde::de::Error::custom)
    }
}

/// One NGSI-LD tenant. In Polity one city is one tenant (`NGSILD-Tenant`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tenant(Arc<str>);

impl Tenant {
    /// Validates and wraps a tenant name.
    pub fn new(s: &str) -> Result<Self, IdError> {
        let ok = (1..=64).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok {
            Ok(Tenant(Arc::from(s)))
        } else {
            Err(IdError::BadTenant(clip(s)))
        }
    }

    /// The tenant name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Tenant {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Tenant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Tenant::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urns_and_urls_are_ids() {
        assert!(EntityId::new("urn:ngsi-ld:ParkingSpot:santander:daoiz_velarde_1_5:3").is_ok());
        assert!(EntityId::new("https://example.org/things/1").is_ok());
        assert!(EntityId::new("not a uri").is_err());
        assert!(EntityId::new("ParkingSpot1").is_err());
        assert!(EntityId::new("1urn:x").is_err());
        assert!(EntityId::new("urn:").is_err());
    }

    #[test]
    fn urn_builder_escapes() {
        let id = EntityId::urn("WaterConsumptionObserved", "adelaide/meter 7").unwrap();
        assert_eq!(
            id.as_str(),
            "urn:ngsi-ld:WaterConsumptionObserved:adelaide%2Fmeter%207"
        );
    }

    #[test]
    fn tenants() {
        assert!(Tenant::new("adelaide").is_ok());
        assert!(Tenant::new("Adelaide").is_err());
        assert!(Tenant::new("").is_err());
        assert!(Tenant::new("a/b").is_err());
    }
}
