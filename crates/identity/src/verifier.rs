//! Access-token verification following RFC 8725 (JWT best current practices) and the
//! RFC 9068 access-token profile.
//!
//! For every token the [`Verifier`]:
//!
//! 1. rejects tokens longer than [`Verifier::max_token_bytes`];
//! 2. requires exactly three base64url segments (JWS compact serialisation; JWE and
//!    unsecured tokens are rejected);
//! 3. pins the algorithm: only `EdDSA` (Ed25519) is accepted, so `none`, HMAC and any
//!    algorithm-confusion attempt fail with [`AuthError::AlgorithmNotAllowed`];
//! 4. requires `typ` to be `at+jwt` (or `application/at+jwt`), rejects `crit`;
//! 5. looks up the token's `iss` among the configured issuers;
//! 6. picks the key by `kid` from that issuer's JWKS (several keys allowed, for rotation);
//! 7. checks the signature, then `exp`, `nbf` (with [`Verifier::leeway`]) and `aud`;
//! 8. maps the `role`/`tenants`/`sub`/`client_id` claims to a [`Principal`].
//!
//! Issuers and their JWKS are configuration ([`IssuerConfig`]): this crate does not
//! fetch JWKS documents over HTTP (no OpenID discovery). Load them from files or from
//! the built-in [`Issuer`](crate::Issuer), and rebuild the verifier when keys rotate.

use std::{collections::HashMap, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use serde_json::Value;

use crate::{claims::Claims, principal::Principal};

/// Default maximum token size in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Default clock-skew leeway for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// The largest leeway [`Verifier::with_leeway`] accepts; larger values are clamped.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// One trusted issuer.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerConfig {
    /// The issuer URL, compared exactly with the token's `iss`.
    pub url: String,
    /// The audience this node requires in tokens from this issuer.
    pub audience: String,
    /// The issuer's RFC 7517 JWK Set (`{"keys":[…]}`), given as configuration.
    pub jwks: Value,
    /// The tenants this issuer may vouch for. Empty: a national issuer, which may issue
    /// any principal. Otherwise a city issuer: its tokens must name principals bound to
    /// these tenants only, and never cross-tenant roles (operator, security analyst).
    pub tenants: Vec<polity_model::Tenant>,
}

/// Why the verifier configuration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No issuer was configured.
    #[error("no trusted issuers are configured; add at least one issuer with its JWKS")]
    NoIssuers,
    /// The same issuer URL was configured twice.
    #[error("issuer `{0}` is configured twice; merge the entries into one")]
    DuplicateIssuer(String),
    /// The issuer URL or audience is empty.
    #[error("issuer `{0}` needs a non-empty url and audience")]
    Empty(String),
    /// The JWKS is not a JWK Set or holds no usable key.
    #[error(
        "the JWKS of issuer `{issuer}` is invalid: {reason}; give an RFC 7517 key set of Ed25519 (OKP) keys"
    )]
    BadJwks {
        /// The issuer URL.
        issuer: String,
        /// What is wrong.
        reason: String,
    },
}

/// Why a token was rejected. Messages are safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token is longer than the limit.
    #[error("the access token is longer than {limit} bytes; request a token with fewer claims")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The token is not a well-formed signed JWT.
    #[error(
        "the access token is malformed ({0}); send a JWS compact token as `Authorization: Bearer <token>`"
    )]
    Malformed(String),
    /// The header's `alg` is not accepted (including `none`).
    #[error("the token algorithm `{0}` is not accepted; tokens must be signed with EdDSA")]
    AlgorithmNotAllowed(String),
    /// The header's `typ` is not `at+jwt`.
    #[error(
        "the token type `{0}` is not accepted; send an OAuth access token (typ at+jwt), not an ID token"
    )]
    WrongType(String),
    /// The `iss` is not a configured issuer.
    #[error(
        "the token issuer `{0}` is not trusted by this node; obtain a token from a configured issuer"
    )]
    UnknownIssuer(String),
    /// The `kid` is not in the issuer's JWKS.
    #[error(
        "the token was signed with key `{kid}`, which issuer `{issuer}` does not publish; the key was retired or the node's JWKS is stale, get a new token or update the JWKS"
    )]
    UnknownKey {
        /// The issuer URL.
        issuer: String,
        /// The key id from the header (empty if absent).
        kid: String,
    },
    /// The signature does not verify.
    #[error("the token signature is invalid; the token was altered or signed by another key")]
    BadSignature,
    /// `exp` is in the past.
    #[error("the access token has expired; request a new one")]
    Expired,
    /// `nbf` is in the future.
    #[error("the access token is not valid yet; check the clocks of the issuer and this node")]
    NotYetValid,
    /// `aud` does not contain this node's audience.
    #[error(
        "the access token is meant for another audience; request a token for this node's audience"
    )]
    WrongAudience,
    /// A required claim is missing.
    #[error("the access token lacks the `{0}` claim; the issuer must include it")]
    MissingClaim(String),
    /// The Polity claims (`role`, `tenants`, …) do not describe a valid principal.
    #[error("the access token's role claims are invalid: {0}")]
    BadClaims(String),
    /// A city issuer vouched for a principal outside its cities (or a national role).
    #[error(
        "issuer `{issuer}` may only issue tokens for {allowed}, not for `{principal}`; obtain the token from the issuer of that city or the national issuer"
    )]
    IssuerNotForTenant {
        /// The issuer URL.
        issuer: String,
        /// The principal the token claimed.
        principal: String,
        /// The tenants the issuer may vouch for.
        allowed: String,
    },
}

/// A token that passed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPrincipal {
    /// Who the token speaks for.
    pub principal: Principal,
    /// The verified claims.
    pub claims: Claims,
    /// The kid of the key that verified the signature.
    pub kid: String,
}

struct TrustedIssuer {
    audience: String,
    keys: HashMap<String, DecodingKey>,
    tenants: Vec<polity_model::Tenant>,
}

/// Verifies access tokens against a fixed set of trusted issuers.
pub struct Verifier {
    issuers: HashMap<String, TrustedIssuer>,
    leeway: Duration,
    max_token_bytes: usize,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .field("leeway", &self.leeway)
            .field("max_token_bytes", &self.max_token_bytes)
            .finish()
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<Value>,
    typ: Option<Value>,
    kid: Option<Value>,
    crit: Option<Value>,
}

#[derive(Deserialize)]
struct RawIss {
    iss: Option<Value>,
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

fn parse_jwks(issuer: &str, jwks: &Value) -> Result<HashMap<String, DecodingKey>, ConfigError> {
    let bad = |reason: String| ConfigError::BadJwks {
        issuer: issuer.to_owned(),
        reason,
    };
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no `keys` array".into()))?;
    let mut out = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        let field = |name: &str| k.get(name).and_then(Value::as_str);
        // Keys for other uses or algorithms are skipped, not accepted under another alg.
        if field("use").is_some_and(|u| u != "sig") {
            continue;
        }
        if field("kty") != Some("OKP") || field("crv") != Some("Ed25519") {
            continue;
        }
        if field("alg").is_some_and(|a| a != "EdDSA") {
            continue;
        }
        let kid = field("kid").ok_or_else(|| bad(format!("key {i} has no `kid`")))?;
        let x = field("x").ok_or_else(|| bad(format!("key `{kid}` has no `x`")))?;
        let raw = B64
            .decode(x)
            .map_err(|e| bad(format!("key `{kid}`: `x` is not base64url ({e})")))?;
        if raw.len() != 32 {
            return Err(bad(format!(
                "key `{kid}`: `x` is not a 32-byte Ed25519 key"
            )));
        }
        if out
            .insert(kid.to_owned(), DecodingKey::from_ed_der(&raw))
            .is_some()
        {
            return Err(bad(format!("kid `{kid}` appears twice")));
        }
    }
    if out.is_empty() {
        return Err(bad("no Ed25519 signing key".into()));
    }
    Ok(out)
}

fn decode_json<T: serde::de::DeserializeOwned>(segment: &str, what: &str) -> Result<T, AuthError> {
    let bytes = B64
        .decode(segment)
        .map_err(|_| AuthError::Malformed(format!("the {what} is not base64url")))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Malformed(format!("the {what} is not a JSON object")))
}

impl Verifier {
    /// A verifier trusting `issuers`, with the default leeway and size limit.
    pub fn new(issuers: Vec<IssuerConfig>) -> Result<Self, ConfigError> {
        if issuers.is_empty() {
            return Err(ConfigError::NoIssuers);
        }
        let mut map = HashMap::new();
        for c in issuers {
            if c.url.is_empty() || c.audience.is_empty() {
                return Err(ConfigError::Empty(c.url));
            }
            let keys = parse_jwks(&c.url, &c.jwks)?;
            if map.contains_key(&c.url) {
                return Err(ConfigError::DuplicateIssuer(c.url));
            }
            map.insert(
                c.url,
                TrustedIssuer {
                    audience: c.audience,
                    keys,
                    tenants: c.tenants,
                },
            );
        }
        Ok(Verifier {
            issuers: map,
            leeway: DEFAULT_LEEWAY,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        })
    }

    /// Sets the clock-skew leeway applied to `exp` and `nbf`, at most [`MAX_LEEWAY`].
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.min(MAX_LEEWAY);
        self
    }

    /// Sets the maximum token size in bytes.
    pub fn with_max_token_bytes(mut self, limit: usize) -> Self {
        self.max_token_bytes = limit;
        self
    }

    /// The clock-skew leeway.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// The maximum token size in bytes.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// Verifies `token` (without the `Bearer ` prefix) and returns its principal.
    pub fn verify(&self, token: &str) -> Result<VerifiedPrincipal, AuthError> {
        if token.len() > self.max_token_bytes {
            return Err(AuthError::TooLarge {
                limit: self.max_token_bytes,
            });
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [header, payload, signature] = parts.as_slice() else {
            return Err(AuthError::Malformed(
                "a signed JWT has exactly three dot-separated parts".into(),
            ));
        };

        let h: RawHeader = decode_json(header, "header")?;
        let alg = match &h.alg {
            Some(Value::String(a)) => a.as_str(),
            Some(_) => return Err(AuthError::Malformed("`alg` is not a string".into())),
            None => return Err(AuthError::Malformed("the header has no `alg`".into())),
        };
        if alg != "EdDSA" {
            return Err(AuthError::AlgorithmNotAllowed(clip(alg)));
        }
        match &h.typ {
            Some(Value::String(t))
                if t.eq_ignore_ascii_case(crate::AT_JWT)
                    || t.eq_ignore_ascii_case("application/at+jwt") => {}
            Some(Value::String(t)) => return Err(AuthError::WrongType(clip(t))),
            Some(_) => return Err(AuthError::WrongType("(not a string)".into())),
            None => return Err(AuthError::WrongType("(absent)".into())),
        }
        if h.crit.is_some() {
            return Err(AuthError::Malformed(
                "critical header extensions (`crit`) are not supported".into(),
            ));
        }
        if signature.is_empty() {
            return Err(AuthError::Malformed("the signature is missing".into()));
        }
        let kid = match &h.kid {
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(AuthError::Malformed("`kid` is not a string".into())),
            None => None,
        };

        // The issuer is read before the signature check only to select the keys; the
        // signature check below then authenticates it.
        let p: RawIss = decode_json(payload, "payload")?;
        let iss = match &p.iss {
            Some(Value::String(i)) => i.as_str(),
            Some(_) => return Err(AuthError::Malformed("`iss` is not a string".into())),
            None => return Err(AuthError::MissingClaim("iss".into())),
        };
        let issuer = self
            .issuers
            .get(iss)
            .ok_or_else(|| AuthError::UnknownIssuer(clip(iss)))?;
        let (kid, key) = match kid {
            Some(k) => (
                k,
                issuer.keys.get(k).ok_or_else(|| AuthError::UnknownKey {
                    issuer: clip(iss),
                    kid: clip(k),
                })?,
            ),
            None if issuer.keys.len() == 1 => match issuer.keys.iter().next() {
                Some((k, v)) => (k.as_str(), v),
                None => return Err(AuthError::BadSignature),
            },
            None => {
                return Err(AuthError::UnknownKey {
                    issuer: clip(iss),
                    kid: String::new(),
                });
            }
        };

        let mut v = Validation::new(Algorithm::EdDSA);
        v.leeway = self.leeway.as_secs();
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_issuer(&[iss]);
        v.set_audience(&[&issuer.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &v).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => AuthError::BadSignature,
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::InvalidIssuer => AuthError::UnknownIssuer(clip(iss)),
            ErrorKind::InvalidAlgorithm => AuthError::AlgorithmNotAllowed(clip(alg)),
            ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(c.clone()),
            ErrorKind::Json(_) => {
                AuthError::BadClaims("the claims do not match the Polity token profile".into())
            }
            _ => AuthError::Malformed("the token could not be decoded".into()),
        })?;
        let principal = data
            .claims
            .principal()
            .map_err(|e| AuthError::BadClaims(e.to_string()))?;
        if let Some(trusted) = self.issuers.get(&data.claims.iss)
            && !trusted.tenants.is_empty()
        {
            let bound = principal.tenants();
            if bound.is_empty() || !bound.iter().all(|t| trusted.tenants.contains(t)) {
                return Err(AuthError::IssuerNotForTenant {
                    issuer: clip(&data.claims.iss),
                    // Role and tenants only: a citizen's id must not reach logs.
                    principal: format!(
                        "{}:{}",
                        principal.role(),
                        principal
                            .tenants()
                            .iter()
                            .map(|t| t.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                    allowed: trusted
                        .tenants
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        Ok(VerifiedPrincipal {
            principal,
            claims: data.claims,
            kid: kid.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors() {
        assert_eq!(Verifier::new(vec![]).unwrap_err(), ConfigError::NoIssuers);
        let c = |jwks: Value| IssuerConfig {
            url: "https://i".into(),
            audience: "polity".into(),
            jwks,
            tenants: Vec::new(),
        };
        assert!(matches!(
            Verifier::new(vec![c(serde_json::json!({}))]),
            Err(ConfigError::BadJwks { .. })
        ));
        // An HMAC key is never usable, even if it is the only one.
        assert!(matches!(
            Verifier::new(vec![c(
                serde_json::json!({"keys":[{"kty":"oct","k":"AAAA","kid":"h"}]})
            )]),
            Err(ConfigError::BadJwks { .. })
        ));
        let ok = serde_json::json!({"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":B64.encode([7u8;32])}]});
        assert!(Verifier::new(vec![c(ok.clone())]).is_ok());
        assert!(matches!(
            Verifier::new(vec![c(ok.clone()), c(ok)]),
            Err(ConfigError::DuplicateIssuer(_))
        ));
    }

    #[test]
    fn structural_rejections() {
        let ok = serde_json::json!({"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":B64.encode([7u8;32])}]});
        let v = Verifier::new(vec![IssuerConfig {
            url: "https://i".into(),
            audience: "polity".into(),
            jwks: ok,
            tenants: Vec::new(),
        }])
        .unwrap()
        .with_max_token_bytes(100);
        assert_eq!(
            v.verify(&"a".repeat(101)).unwrap_err(),
            AuthError::TooLarge { limit: 100 }
        );
        assert!(matches!(v.verify(""), Err(AuthError::Malformed(_))));
        assert!(matches!(v.verify("a.b"), Err(AuthError::Malformed(_))));
        assert!(matches!(
            v.verify("a.b.c.d.e"),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(v.verify("!!.b.c"), Err(AuthError::Malformed(_))));
    }
}
