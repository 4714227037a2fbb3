//! The national aggregates are exercised end to end through the binary
//! (crates/polity/tests/it/privacy.rs), with the real gate, policies and budget ledger.
