//! The NGSI-LD API over real HTTP: an in-process node (fjall store in a temporary
//! directory, the ingest pipeline, the axum router on a loopback port) driven with
//! reqwest, asserting what ETSI GS CIM 009 v1.8 specifies.

mod batch;
mod contexts;
mod entities;
mod errors;
mod node;
mod provision;
mod query;
mod senml;
mod subscriptions;
mod temporal;
mod tenancy;
