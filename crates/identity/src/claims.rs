//! JWT access-token claims (RFC 9068 profile) and their mapping to [`Principal`]s.
//!
//! Besides the registered claims (`iss`, `sub`, `aud`, `exp`, `nbf`, `iat`, `jti`) and
//! RFC 9068's `client_id`, Polity uses two private claims:
//!
//! * `role`: the principal kind (`operator`, `city-admin`, `city-analyst`,
//!   `security-analyst`, `app`, `citizen`);
//! * `tenants`: the tenant names the principal is bound to (empty or absent for
//!   cross-tenant roles).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize};

use crate::principal::{Principal, PrincipalError};

/// The claims of a Polity access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer URL.
    pub iss: String,
    /// Subject: see [`Principal::subject`].
    pub sub: String,
    /// Audiences; serialised as a string when there is exactly one.
    #[serde(
        deserialize_with = "string_or_seq",
        serialize_with = "ser_aud",
        default
    )]
    pub aud: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Not before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Unique token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The OAuth 2.0 client the token was issued to (RFC 9068 §2.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The principal kind, see [`Principal::role`].
    pub role: String,
    /// The tenants the principal is bound to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
}

fn string_or_seq<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn ser_aud<S: serde::Serializer>(aud: &[String], s: S) -> Result<S::Ok, S::Error> {
    match aud {
        [one] => s.serialize_str(one),
        many => many.serialize(s),
    }
}

/// Seconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Claims {
    /// Claims for `principal`, issued by `iss` for `audience`, valid from now for `ttl`.
    /// `jti` is left empty; the issuer fills it in.
    pub fn for_principal(principal: &Principal, iss: &str, audience: &str, ttl: Duration) -> Self {
        let now = now_secs();
        let client_id = match principal {
            Principal::Application { client_id, .. } => Some(client_id.clone()),
            _ => None,
        };
        Claims {
            iss: iss.to_owned(),
            sub: principal.subject(),
            aud: vec![audience.to_owned()],
            exp: now.saturating_add(ttl.as_secs()),
            nbf: Some(now),
            iat: Some(now),
            jti: None,
            client_id,
            role: principal.role().to_owned(),
            tenants: principal
                .tenants()
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
        }
    }

    /// The principal these claims describe.
    pub fn principal(&self) -> Result<Principal, PrincipalError> {
        Principal::from_role(
            &self.role,
            &self.tenants,
            &self.sub,
            self.client_id.as_deref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aud_single_or_many() {
        let p = Principal::Operator;
        let mut c = Claims::for_principal(&p, "https://i", "polity", Duration::from_secs(60));
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["aud"], "polity");
        assert_eq!(v["role"], "operator");
        assert!(v.get("tenants").is_none());
        c.aud.push("other".into());
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["aud"], serde_json::json!(["polity", "other"]));
        let back: Claims = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.principal().unwrap(), p);
    }
}
