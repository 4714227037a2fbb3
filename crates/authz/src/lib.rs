//! Polity's authorization engine: Cedar policies that answer every authorization
//! question, deny by default.
//!
//! This crate owns the Cedar schema (`schema/polity.cedarschema`), the default policies
//! (`policies/*.cedar`), [`CedarAuthorizer`] (the [`polity_trust::Authorizer`] the
//! binary plugs in) and the validator behind `polity validate` ([`validate_dir`],
//! [`validate_source`]). It is a leaf crate because `cedar-policy` is heavy: the HTTP
//! crates ask questions through `polity-trust` and never depend on this crate. It must
//! not authenticate callers (that is `polity-identity`), decide which action a route
//! asks about (that is `polity-trust` and the routes), or change the vocabulary.
//!
//! # What it decides
//!
//! One question at a time: may this **caller** (a verified principal, or nobody) do this
//! **action** to this **resource** (the node, a city, one entity, a data subject's
//! records) in this **context** (a declared purpose, the subject's consent)? Anything
//! no policy permits is denied; a `forbid` always wins over a `permit`; a policy that
//! fails to evaluate denies the whole request. Every [`polity_trust::Decision`] names
//! the policies that determined it (or [`DENY_BY_DEFAULT`], [`NOT_APPLICABLE`],
//! [`EVALUATION_ERROR`]).
//!
//! # The default matrix
//!
//! T is the principal's city; "entity" means one of T's entities; "own" means owned by
//! the citizen (their pseudonym). Every cell not listed is denied.
//!
//! | principal | Node | Tenant T | entity of T | Subject of T |
//! |---|---|---|---|---|
//! | anonymous | health, login | – | – | – |
//! | every authenticated principal | health, login, overview | | | |
//! | operator (national, any city) | metrics, audit, aggregate | access, read, temporal, types, aggregate | read, temporal, types, aggregate | – |
//! | security analyst | metrics, audit, aggregate | – | – | – |
//! | city admin of T | – | access, read, write, temporal, types, aggregate; personal with a purpose | read, write, temporal, types, aggregate; personal with a purpose | export, erase |
//! | city analyst of T | – | access, read, temporal, types, aggregate | read, temporal, types, aggregate | – |
//! | application (each of its cities) | – | access, read, write, temporal, types, aggregate; personal with consent | the same | – |
//! | citizen of T | – | access | own entities: read, temporal, personal | own records: audit-own, consent, export, erase |
//!
//! Guards (`policies/guards.cedar`) forbid, whatever else is permitted: any city-bound
//! principal (admin, analyst, citizen, application) acting in a city not theirs;
//! national principals reading personal data, writing, or touching a subject's records;
//! personal data without a purpose, a consent or the subject themself asking.
//!
//! # Writing custom policies
//!
//! Put `.cedar` files in a directory and load it with [`CedarAuthorizer::from_dir`]
//! (start from [`DEFAULT_POLICIES`]: a directory replaces the defaults, it does not add
//! to them). Check them first with [`validate_dir`] (`polity validate`): every policy is
//! validated against [`SCHEMA`] in strict mode, and each problem is reported as
//! `file:line:column` with a hint. A load with any problem fails; it never falls back.
//!
//! - Types and actions live in the `Polity` namespace: principals `Anonymous`,
//!   `Operator`, `SecurityAnalyst`, `CityAdmin {tenant}`, `CityAnalyst {tenant}`,
//!   `Application {client_id, tenants}`, `Citizen {tenant, pseudonym}`; resources
//!   `Node`, `Tenant {name}`, `Entity {tenant, type, owner}` (in its `Tenant`),
//!   `Subject {tenant, pseudonym}`; actions `Polity::Action::"entity.read"` and so on,
//!   one per [`polity_trust::Action`]; context `{purpose, consent}`.
//! - Give each policy an `@id("…")`: it is the name decisions and audit entries show
//!   (without one a policy is named `file.cedar#N`). Ids must be unique.
//! - Missing values are empty strings: `owner` is `""` for an entity nobody owns,
//!   `purpose` is `""` when none was declared.
//! - Static policies only; no templates, no extension functions.
//!
//! ```
//! use polity_authz::CedarAuthorizer;
//! use polity_identity::Principal;
//! use polity_model::Tenant;
//! use polity_trust::{Action, Authorizer, Caller, Context, Resource};
//!
//! let authz = CedarAuthorizer::from_sources([(
//!     "parking.cedar",
//!     r#"
//!     // Analysts may read parking spots of their city, and nothing else.
//!     @id("analyst-parking")
//!     permit (principal is Polity::CityAnalyst, action == Polity::Action::"entity.read",
//!             resource is Polity::Entity)
//!     when { resource.tenant == principal.tenant && resource.type == "ParkingSpot" };
//!     "#,
//! )])?;
//! let adelaide = Tenant::new("adelaide")?;
//! let analyst = Caller::of(Principal::CityAnalyst(adelaide.clone()));
//! let spot = Resource::Entity(polity_trust::EntityRef {
//!     tenant: adelaide,
//!     id: "urn:ngsi-ld:ParkingSpot:1".into(),
//!     entity_type: "ParkingSpot".into(),
//!     owner: None,
//! });
//! assert!(authz.allows(&analyst, Action::EntityRead, &spot, &Context::default()));
//! assert!(!authz.allows(&analyst, Action::EntityWrite, &spot, &Context::default()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod authorizer;
mod diagnostic;
mod policies;
mod vocabulary;

pub use authorizer::{
    CedarAuthorizer, DENY_BY_DEFAULT, EVALUATION_ERROR, LoadError, NOT_APPLICABLE,
};
pub use diagnostic::{Diagnostic, Summary, line_column};
pub use policies::{DEFAULT_POLICIES, POLICY_EXTENSION, validate_dir, validate_source};
pub use vocabulary::{NAMESPACE, SCHEMA};
