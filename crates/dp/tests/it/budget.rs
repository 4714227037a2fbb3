//! The privacy-budget ledger: the anchor of 4 ε per citizen per year holds across
//! queries, datasets of one population, restarts and crashes.

use std::io::Write;

use chrono::{TimeZone, Utc};
use polity_dp::{Aggregator, BudgetLedger, CountSpec, DpError, Epsilon, LEDGER_FILE};

use crate::{TestClock, config, day, ds, eps};

fn spec(epsilon: f64) -> CountSpec {
    CountSpec {
        epsilon: eps(epsilon),
        max_contributions_per_citizen: 1,
    }
}

fn cells() -> Vec<(String, u64)> {
    vec![("north".to_owned(), 120), ("south".to_owned(), 80)]
}

#[test]
fn the_query_that_would_pass_four_is_refused_also_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::at(day(2026, 3, 1));
    {
        let aggregator = clock.open(dir.path(), config(4.0));
        aggregator
            .release_counts(&ds("energy"), &cells(), spec(1.5))
            .expect("1.5 of 4");
        aggregator
            .release_counts(&ds("energy"), &cells(), spec(1.5))
            .expect("3 of 4");
        let refused = aggregator.release_counts(&ds("energy"), &cells(), spec(1.5));
        match refused {
            Err(DpError::BudgetExhausted {
                dataset,
                group,
                spent,
                requested,
                cap,
                resets_at,
            }) => {
                assert_eq!(dataset, ds("energy"));
                assert_eq!(group.as_str(), "residents");
                assert_eq!((spent, requested, cap), (eps(3.0), eps(1.5), eps(4.0)));
                assert_eq!(
                    resets_at,
                    Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
                        .single()
                        .expect("date")
                );
            }
            other => panic!("expected BudgetExhausted, got {other:?}"),
        }
        // Exactly up to the cap is allowed; one micro-ε more is not.
        aggregator
            .release_counts(&ds("energy"), &cells(), spec(1.0))
            .expect("4 of 4");
        let tiny = CountSpec {
            epsilon: Epsilon::from_micros(1),
            max_contributions_per_citizen: 1,
        };
        assert!(matches!(
            aggregator.release_counts(&ds("energy"), &cells(), tiny),
            Err(DpError::BudgetExhausted { .. })
        ));
    }
    let reopened = clock.open(dir.path(), config(4.0));
    assert_eq!(
        reopened.budget(&ds("energy")).expect("budget").spent,
        eps(4.0)
    );
    assert!(matches!(
        reopened.release_counts(&ds("energy"), &cells(), spec(0.1)),
        Err(DpError::BudgetExhausted { .. })
    ));
}

#[test]
fn datasets_of_one_population_share_one_budget_and_others_do_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::at(day(2026, 6, 1));
    let aggregator = clock.open(dir.path(), config(4.0));
    aggregator
        .release_counts(&ds("energy"), &cells(), spec(3.0))
        .expect("3 of 4");
    // Same residents, other dataset: sequential composition, so the 3 ε count.
    assert!(matches!(
        aggregator.release_counts(&ds("mobility"), &cells(), spec(2.0)),
        Err(DpError::BudgetExhausted { .. })
    ));
    let status = aggregator.budget(&ds("mobility")).expect("budget");
    assert_eq!((status.spent, status.remaining), (eps(3.0), eps(1.0)));
    // Another population has its own budget.
    aggregator
        .release_counts(&ds("footfall"), &cells(), spec(2.0))
        .expect("visitors' budget");
}

#[test]
fn a_new_year_resets_the_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::at(day(2026, 12, 31));
    let aggregator = clock.open(dir.path(), config(4.0));
    aggregator
        .release_counts(&ds("energy"), &cells(), spec(4.0))
        .expect("all of 2026");
    assert!(
        aggregator
            .release_counts(&ds("energy"), &cells(), spec(0.5))
            .is_err()
    );
    clock.set(
        Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
            .single()
            .expect("date"),
    );
    aggregator
        .release_counts(&ds("energy"), &cells(), spec(0.5))
        .expect("2027 is a new window");
    let status = aggregator.budget(&ds("energy")).expect("budget");
    assert_eq!((status.year, status.spent), (2027, eps(0.5)));
    assert_eq!(
        aggregator
            .ledger()
            .spent(&status.group, 2026)
            .expect("spent"),
        eps(4.0)
    );
}

#[test]
fn forty_tenths_are_exactly_four() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::at(day(2026, 2, 2));
    {
        let aggregator = clock.open(dir.path(), config(4.0));
        for i in 0..40 {
            aggregator
                .release_counts(&ds("energy"), &cells(), spec(0.1))
                .unwrap_or_else(|e| panic!("charge {i}: {e}"));
        }
        // In floats, forty 0.1s sum to 3.9999999999999996 and a 41st would slip through.
        assert!(
            aggregator
                .release_counts(&ds("energy"), &cells(), spec(0.1))
                .is_err()
        );
    }
    let reopened = clock.open(dir.path(), config(4.0));
    let spent = reopened.budget(&ds("energy")).expect("budget").spent;
    assert_eq!(spent.micros(), 4_000_000);
}

#[test]
fn a_torn_last_line_is_cut_and_the_ledger_keeps_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::at(day(2026, 5, 5));
    {
        let aggregator = clock.open(dir.path(), config(4.0));
        aggregator
            .release_counts(&ds("energy"), &cells(), spec(1.25))
            .expect("charged");
    }
    let path = dir.path().join(LEDGER_FILE);
    let intact = std::fs::read(&path).expect("read");
    // A crash in the middle of writing the next charge.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    file.write_all(br#"{"group":"residents","dataset":"energy","year":2026,"micro_ep"#)
        .expect("write");
    drop(file);

    let aggregator = clock.open(dir.path(), config(4.0));
    assert_eq!(
        std::fs::read(&path).expect("read"),
        intact,
        "torn tail not cut"
    );
    assert_eq!(
        aggregator.budget(&ds("energy")).expect("budget").spent,
        eps(1.25)
    );
    aggregator
        .release_counts(&ds("energy"), &cells(), spec(1.0))
        .expect("still charges");
    drop(aggregator);
    let reopened = clock.open(dir.path(), config(4.0));
    assert_eq!(
        reopened.budget(&ds("energy")).expect("budget").spent,
        eps(2.25)
    );
}

#[test]
fn a_corrupt_middle_line_refuses_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::at(day(2026, 5, 5));
    {
        let aggregator = clock.open(dir.path(), config(4.0));
        aggregator
            .release_counts(&ds("energy"), &cells(), spec(1.0))
            .expect("charged");
        aggregator
            .release_counts(&ds("energy"), &cells(), spec(1.0))
            .expect("charged");
    }
    let path = dir.path().join(LEDGER_FILE);
    let text = std::fs::read_to_string(&path).expect("read");
    let edited = text
        .replacen("1000000", "1", 1)
        .replacen("\"year\"", "\"yaer\"", 1);
    std::fs::write(&path, edited).expect("write");
    match Aggregator::open(dir.path(), config(4.0)) {
        Err(DpError::LedgerCorrupt { line: 1, .. }) => {}
        other => panic!("expected LedgerCorrupt at line 1, got {other:?}"),
    }
}

#[test]
fn a_second_writer_is_locked_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(LEDGER_FILE);
    let first = BudgetLedger::open(&path).expect("open");
    assert!(matches!(
        BudgetLedger::open(&path),
        Err(DpError::LedgerLocked(_))
    ));
    drop(first);
    BudgetLedger::open(&path).expect("free again");
}

#[test]
fn caps_above_the_anchor_are_refused_without_the_override() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut over = config(4.0);
    over.groups[0].per_citizen_annual_epsilon = 5.0;
    assert!(matches!(
        Aggregator::open(dir.path(), over.clone()),
        Err(DpError::InvalidConfig(_))
    ));
    over.groups[0].leave_anchor = true;
    Aggregator::open(dir.path(), over).expect("explicitly leaves the anchor");
}
