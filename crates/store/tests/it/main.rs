//! Integration tests of the embedded fjall backend: the conformance suite, reopening,
//! locking, corruption reporting, and crash consistency with a real process killed by
//! SIGKILL.

mod crash;
mod reopen;
mod series_ids;

use polity_store::{
    Store,
    fjall::{FjallOptions, FjallStore},
};

/// A fresh store in its own temporary directory, deleted when the store is dropped.
fn fresh() -> Box<dyn Store> {
    let dir = tempfile::tempdir().expect("tempdir").keep();
    let opts = FjallOptions {
        temporary: true,
        cache_bytes: 8 * 1024 * 1024,
        ..FjallOptions::default()
    };
    Box::new(FjallStore::open(&dir, opts).expect("open a fresh store"))
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod conformance {
            $(
                #[test]
                fn $check() {
                    polity_store::conformance::$check(&super::fresh);
                }
            )*
        }
    };
}

conformance!(
    value_kinds_round_trip,
    entity_state_folds,
    types_and_counts,
    pagination_by_cursor,
    series_queries,
    tenant_isolation,
    dead_letters_persist,
    device_upsert_keeps_first_seen,
    delete_entity_removes_state_and_series,
    empty_store_answers_empty,
    documents_by_kind_and_tenant,
    entity_operations,
);

#[test]
fn every_conformance_check_has_a_test_here() {
    // The macro list above must name every check the suite has.
    assert_eq!(
        polity_store::conformance::CHECKS.len(),
        12,
        "add the new check to conformance!(…) above"
    );
}
