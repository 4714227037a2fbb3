//! Integration tests for polity-authz: the default policy matrix, injection through
//! entity ids and pseudonyms, loading policy directories, and validation diagnostics.

mod fixtures;
mod injection;
mod load;
mod matrix;
mod validate;
