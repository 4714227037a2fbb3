//! Polity's common information model.
//!
//! This crate owns the types every other crate speaks: NGSI-LD entities and attributes,
//! JSON-LD term expansion and compaction against the built-in core `@context`, SenML
//! packs (RFC 8428) in JSON and CBOR, UN/CEFACT units, ids and UTC time, and the compact
//! [`Observation`] that flows through the ingest hot path.
//!
//! It is pure: no I/O, no async runtime, no global state. Everything here can be tested
//! with plain unit tests and property tests.

pub mod entity;
pub mod id;
pub mod observation;
pub mod time;
pub mod units;

pub use entity::EntityState;
pub use id::{EntityId, IdError, Tenant};
pub use observation::{Batch, Interner, Observation, PrivacyClass, Value};
pub use time::Timestamp;
pub use units::UnitCode;
