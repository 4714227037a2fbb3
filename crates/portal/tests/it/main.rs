//! The portal's routes are exercised end to end through the binary
//! (crates/polity/tests/it/authz.rs and privacy.rs), where the gate, the policies and
//! the ingest path that seals values are real.
