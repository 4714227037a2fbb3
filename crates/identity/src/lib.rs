//! Polity identity: who is calling, proven by an OAuth 2.0 access token.
//!
//! * [`Principal`]: the roles Polity knows (operator, city admin/analyst, security
//!   analyst, application, citizen) and their text form (`city-admin:adelaide`, …).
//! * [`Claims`]: the RFC 9068 JWT access-token claims, with Polity's `role` and
//!   `tenants` claims, and their mapping to and from a [`Principal`].
//! * [`Issuer`]: a built-in Ed25519 token issuer for the embedded demo, with key
//!   rotation and an RFC 7517 JWKS.
//! * [`Verifier`]: RFC 8725 token verification against configured issuers.
//!   JWKS documents are configuration: nothing here fetches keys over HTTP.
//!
//! Signatures use `ring` (through `jsonwebtoken` 9, whose only backend is `ring`).
//! Enforcing principals on routes is not part of this crate yet.

mod claims;
mod issuer;
mod principal;
mod verifier;

pub use claims::{Claims, now_secs};
pub use issuer::{Issuer, IssuerError};
pub use principal::{Principal, PrincipalError};
pub use verifier::{
    AuthError, ConfigError, DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES, IssuerConfig, MAX_LEEWAY,
    VerifiedPrincipal, Verifier,
};

/// The JOSE `typ` of access tokens (RFC 9068 §2.1).
pub const AT_JWT: &str = "at+jwt";
