//! Ingest: sources → normalize → group commit → bus.
//!
//! This crate owns the write path of a node. Sources (CoAP, MQTT, and the HTTP routes in
//! `polity-ngsild`) decode payloads into [`polity_model::Observation`]s, the
//! [`normalize`] transform converts units and applies privacy policy, and the
//! [`pipeline`] commits batches durably in groups before acknowledging senders. Input
//! that cannot be decoded goes to the dead-letter store with its reason. It does not own
//! storage (see `polity-store`) or the HTTP API.

pub mod decode;
pub mod metrics;
pub mod normalize;
pub mod pipeline;
pub mod protect;
pub mod sources;

pub use metrics::{Metrics, SourceCounters, SourceKind, SourceSnapshot};
pub use normalize::Normalizer;
pub use pipeline::{IngestError, IngestHandle, PipelineOptions, Writer, start};
