//! Polity's common information model.
//!
//! This crate owns the types every other crate speaks: NGSI-LD entities and attributes,
//! JSON-LD term expansion and compaction against the built-in core `@context`, SenML
//! packs (RFC 8428) in JSON and CBOR, UN/CEFACT units, ids and UTC time, and the compact
//! [`Observation`] that flows through the ingest hot path.
//!
//! It is pure: no I/O, no async runtime, no global state. Everything here can be tested
//! with plain unit tests and property tests.
//!
//! | module | owns |
//! |---|---|
//! | [`id`] | entity ids and tenants |
//! | [`time`] | UTC millisecond timestamps |
//! | [`units`] | UN/CEFACT common codes, conversion, SenML unit symbols |
//! | [`observation`] | the hot-path [`Observation`] and [`Batch`] |
//! | [`entity`] | [`EntityState`], latest instance per attribute |
//! | [`senml`] | SenML packs in JSON and CBOR, and their resolution |
//! | [`jsonld`] | JSON-LD active contexts, term expansion and compaction |
//! | [`ngsild`] | NGSI-LD entity JSON to observations and back |
//! | [`query`] | the NGSI-LD query language (`q`): parse, print, evaluate against [`EntityState`] |
//! | [`selection`] | entity type expressions and scope queries |
//! | [`geoquery`] | geo-queries: `georel`, geometry and coordinates, evaluated on GeoJSON |

pub mod entity;
pub mod geoquery;
pub mod id;
pub mod jsonld;
pub mod ngsild;
pub mod observation;
pub mod query;
pub mod selection;
pub mod senml;
pub mod time;
pub mod units;

pub use entity::{AttrTimes, EntityOp, EntityState, Instances};
pub use id::{EntityId, IdError, Tenant};
pub use jsonld::{Context, ContextCache, JsonLdError};
pub use ngsild::{
    Format, NgsiLdError, ParseDefaults, ParsedEntity, RenderOptions, TemporalOptions, parse_entity,
    parse_fragment, parse_temporal, render_entity, render_temporal,
};
pub use observation::{Batch, Fold, Interner, Observation, PrivacyClass, Value};
pub use query::{Query, QueryError};
pub use senml::{Pack, Record, ResolvedRecord, SenmlError, SenmlValue};
pub use time::Timestamp;
pub use units::{QuantityKind, UnitCode, UnitError, UnitInfo};
