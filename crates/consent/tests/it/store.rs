//! The consent store: the check, withdrawal, expiry, crash recovery, erasure.

use std::{
    fs,
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use polity_consent::{
    ConsentError, ConsentState, ConsentStore, DataCategory, Purpose, RequestError,
    store::EVENTS_FILE,
};
use polity_model::Timestamp;

use crate::{at, parking_request, tenant};

const APP: &str = "app:parking-app:adelaide";

#[test]
fn grant_permits_exactly_what_was_consented() {
    let d = tempfile::tempdir().unwrap();
    let s = ConsentStore::open(d.path()).unwrap();
    let now = at("2026-03-01T10:00:00Z");
    let (rec, _) = s.grant(parking_request("citizen-a", 90), now).unwrap();
    let adl = tenant("adelaide");
    let id = Some(rec.consent_id);

    for cat in [DataCategory::ParkingSession, DataCategory::Location] {
        assert_eq!(
            s.permits(&adl, "citizen-a", APP, Purpose::ServiceProvision, cat, now),
            id
        );
    }
    // Everything else: none.
    let sp = Purpose::ServiceProvision;
    let ps = DataCategory::ParkingSession;
    assert_eq!(
        s.permits(&tenant("perth"), "citizen-a", APP, sp, ps, now),
        None
    );
    assert_eq!(s.permits(&adl, "citizen-b", APP, sp, ps, now), None);
    assert_eq!(
        s.permits(&adl, "citizen-a", "app:other-app:adelaide", sp, ps, now),
        None
    );
    assert_eq!(
        s.permits(&adl, "citizen-a", APP, Purpose::Research, ps, now),
        None
    );
    assert_eq!(
        s.permits(
            &adl,
            "citizen-a",
            APP,
            sp,
            DataCategory::EnergyConsumption,
            now
        ),
        None
    );
    // Tenants do not see each other's records either.
    assert!(s.get(&tenant("perth"), rec.consent_id).is_none());
    assert_eq!(s.get(&adl, rec.consent_id).unwrap(), rec);
    assert_eq!(s.list_for_subject(&adl, "citizen-a"), vec![rec]);
}

#[test]
fn withdrawal_takes_effect_at_once_and_survives_restart() {
    let d = tempfile::tempdir().unwrap();
    let adl = tenant("adelaide");
    let now = at("2026-03-01T10:00:00Z");
    let (keep, gone) = {
        let s = ConsentStore::open(d.path()).unwrap();
        let (keep, _) = s.grant(parking_request("citizen-a", 30), now).unwrap();
        let mut research = parking_request("citizen-a", 30);
        research.purpose = Purpose::Research;
        let (gone, _) = s.grant(research, now).unwrap();
        let check = |p| s.permits(&adl, "citizen-a", APP, p, DataCategory::Location, now);
        assert_eq!(check(Purpose::Research), Some(gone.consent_id));

        let later = at("2026-03-01T10:05:00Z");
        let (rec, receipt) = s
            .withdraw(&adl, "citizen-a", gone.consent_id, later)
            .unwrap();
        assert_eq!(rec.withdrawn_at, Some(later));
        assert_eq!(rec.state(now), ConsentState::Withdrawn);
        assert_eq!(receipt.json.withdrawn_at, Some(later));
        // Immediately, even for a `now` before the withdrawal time.
        assert_eq!(check(Purpose::Research), None);
        assert_eq!(check(Purpose::ServiceProvision), Some(keep.consent_id));
        (keep, gone)
    };
    let s = ConsentStore::open(d.path()).unwrap();
    let check = |p| s.permits(&adl, "citizen-a", APP, p, DataCategory::Location, now);
    assert_eq!(check(Purpose::Research), None);
    assert_eq!(check(Purpose::ServiceProvision), Some(keep.consent_id));
    assert_eq!(
        s.get(&adl, gone.consent_id).unwrap().withdrawn_at,
        Some(at("2026-03-01T10:05:00Z"))
    );
}

#[test]
fn withdrawal_is_seen_by_the_next_check_on_another_thread() {
    let d = tempfile::tempdir().unwrap();
    let s = Arc::new(ConsentStore::open(d.path()).unwrap());
    let now = at("2026-03-01T10:00:00Z");
    let (rec, _) = s.grant(parking_request("citizen-a", 30), now).unwrap();
    let withdrawn = Arc::new(AtomicBool::new(false));
    let reader = {
        let (s, withdrawn) = (Arc::clone(&s), Arc::clone(&withdrawn));
        std::thread::spawn(move || {
            let adl = tenant("adelaide");
            let mut checks_after = 0;
            while checks_after < 1000 {
                let done = withdrawn.load(Ordering::SeqCst);
                let p = s.permits(
                    &adl,
                    "citizen-a",
                    APP,
                    Purpose::ServiceProvision,
                    DataCategory::ParkingSession,
                    now,
                );
                if done {
                    assert_eq!(p, None, "a check after withdraw returned still permitted");
                    checks_after += 1;
                }
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(5));
    s.withdraw(&tenant("adelaide"), "citizen-a", rec.consent_id, now)
        .unwrap();
    withdrawn.store(true, Ordering::SeqCst);
    reader.join().unwrap();
}

#[test]
fn second_withdrawal_is_a_no_op() {
    let d = tempfile::tempdir().unwrap();
    let s = ConsentStore::open(d.path()).unwrap();
    let adl = tenant("adelaide");
    let (rec, _) = s
        .grant(parking_request("citizen-a", 30), at("2026-03-01T10:00:00Z"))
        .unwrap();
    let first = at("2026-03-02T00:00:00Z");
    s.withdraw(&adl, "citizen-a", rec.consent_id, first)
        .unwrap();
    let (again, receipt) = s
        .withdraw(
            &adl,
            "citizen-a",
            rec.consent_id,
            at("2026-03-03T00:00:00Z"),
        )
        .unwrap();
    assert_eq!(again.withdrawn_at, Some(first));
    assert_eq!(receipt.json.withdrawn_at, Some(first));
    let text = fs::read_to_string(d.path().join(EVENTS_FILE)).unwrap();
    assert_eq!(text.matches("\"withdrawn\"").count(), 1, "{text}");
}

#[test]
fn withdrawing_someone_elses_consent_is_not_found() {
    let d = tempfile::tempdir().unwrap();
    let s = ConsentStore::open(d.path()).unwrap();
    let now = at("2026-03-01T10:00:00Z");
    let (rec, _) = s.grant(parking_request("citizen-a", 30), now).unwrap();
    for (t, subj) in [("adelaide", "citizen-b"), ("perth", "citizen-a")] {
        let e = s
            .withdraw(&tenant(t), subj, rec.consent_id, now)
            .unwrap_err();
        assert!(matches!(e, ConsentError::NotFound { .. }), "{e}");
    }
    assert!(
        s.permits(
            &tenant("adelaide"),
            "citizen-a",
            APP,
            Purpose::ServiceProvision,
            DataCategory::Location,
            now
        )
        .is_some()
    );
}

#[test]
fn expiry_is_exclusive_at_the_boundary() {
    let d = tempfile::tempdir().unwrap();
    let granted = at("2026-03-01T10:00:00Z");
    let (end, id) = {
        let s = ConsentStore::open(d.path()).unwrap();
        let (rec, _) = s.grant(parking_request("citizen-a", 7), granted).unwrap();
        (rec.expires_at, rec.consent_id)
    };
    assert_eq!(end, at("2026-03-08T10:00:00Z"));
    let s = ConsentStore::open(d.path()).unwrap();
    let check = |ms: i64| {
        s.permits(
            &tenant("adelaide"),
            "citizen-a",
            APP,
            Purpose::ServiceProvision,
            DataCategory::ParkingSession,
            Timestamp::from_millis(ms),
        )
    };
    assert_eq!(check(end.as_millis() - 1), Some(id));
    assert_eq!(check(end.as_millis()), None);
    assert_eq!(
        s.get(&tenant("adelaide"), id).unwrap().state(end),
        ConsentState::Expired
    );
}

#[test]
fn more_than_twelve_months_is_refused_and_nothing_is_written() {
    let d = tempfile::tempdir().unwrap();
    let s = ConsentStore::open(d.path()).unwrap();
    // 2025-06-01 → 2026-06-01 has no 29 February: 365 days is the limit.
    let now = at("2025-06-01T00:00:00Z");
    let e = s.grant(parking_request("citizen-a", 366), now).unwrap_err();
    match &e {
        ConsentError::Invalid(RequestError::ExceedsTwelveMonths {
            max_days, latest, ..
        }) => {
            assert_eq!(*max_days, 365);
            assert_eq!(*latest, at("2026-06-01T00:00:00Z"));
        }
        other => panic!("wrong error: {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("12 calendar months") && msg.contains("at most 365 days"),
        "{msg}"
    );
    let e = s.grant(parking_request("citizen-a", 400), now).unwrap_err();
    assert!(e.to_string().contains("1 to 366 days"), "{e}");
    assert_eq!(fs::metadata(d.path().join(EVENTS_FILE)).unwrap().len(), 0);
    // Across 29 February 2028, 366 days fit.
    assert!(
        s.grant(
            parking_request("citizen-a", 366),
            at("2027-06-01T00:00:00Z")
        )
        .is_ok()
    );
}

#[test]
fn torn_last_line_is_dropped_and_the_store_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join(EVENTS_FILE);
    let now = at("2026-03-01T10:00:00Z");
    let first = {
        let s = ConsentStore::open(d.path()).unwrap();
        s.grant(parking_request("citizen-a", 30), now).unwrap().0
    };
    let good_len = fs::metadata(&path).unwrap().len();
    // A crash in the middle of writing the next grant: half a line, no newline.
    let whole = fs::read(&path).unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&whole[..whole.len() / 2]).unwrap();
    drop(f);

    let s = ConsentStore::open(d.path()).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        good_len,
        "torn tail truncated"
    );
    assert_eq!(
        s.list_for_subject(&tenant("adelaide"), "citizen-a"),
        vec![first.clone()]
    );
    let (second, _) = s.grant(parking_request("citizen-b", 30), now).unwrap();
    drop(s);
    let s = ConsentStore::open(d.path()).unwrap();
    assert!(s.get(&tenant("adelaide"), first.consent_id).is_some());
    assert!(s.get(&tenant("adelaide"), second.consent_id).is_some());
}

#[test]
fn corruption_before_the_end_is_refused_with_its_line() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join(EVENTS_FILE);
    {
        let s = ConsentStore::open(d.path()).unwrap();
        let now = at("2026-03-01T10:00:00Z");
        for who in ["citizen-a", "citizen-b", "citizen-c"] {
            s.grant(parking_request(who, 30), now).unwrap();
        }
    }
    let original = fs::read_to_string(&path).unwrap();

    // An edit that breaks the JSON of line 2.
    fs::write(&path, original.replacen("\"citizen-b\"", "\"citizen-b", 1)).unwrap();
    let e = ConsentStore::open(d.path()).unwrap_err();
    assert!(matches!(e, ConsentError::Corrupt { line: 2, .. }), "{e}");
    assert!(e.to_string().contains("line 2"), "{e}");

    // An edit that keeps the JSON valid but stretches a consent past 12 months.
    let stretched = original.replacen("\"durationDays\":30", "\"durationDays\":3000", 1);
    assert_ne!(stretched, original);
    fs::write(&path, stretched).unwrap();
    let e = ConsentStore::open(d.path()).unwrap_err();
    assert!(matches!(e, ConsentError::Corrupt { line: 1, .. }), "{e}");

    // A complete (newline-terminated) bad last line is corruption too, not a torn write.
    fs::write(&path, format!("{original}{{\"event\":\"granted\"}}\n")).unwrap();
    let e = ConsentStore::open(d.path()).unwrap_err();
    assert!(matches!(e, ConsentError::Corrupt { line: 4, .. }), "{e}");
}

#[test]
fn erase_subject_leaves_no_trace_in_the_file() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join(EVENTS_FILE);
    let adl = tenant("adelaide");
    let now = at("2026-03-01T10:00:00Z");
    let s = ConsentStore::open(d.path()).unwrap();
    let (a1, _) = s
        .grant(parking_request("citizen-erase-me", 30), now)
        .unwrap();
    let mut research = parking_request("citizen-erase-me", 60);
    research.purpose = Purpose::Research;
    let (a2, _) = s.grant(research, now).unwrap();
    s.withdraw(&adl, "citizen-erase-me", a2.consent_id, now)
        .unwrap();
    let (b, _) = s.grant(parking_request("citizen-stays", 30), now).unwrap();
    // The same pseudonym in another city is another person's history: it stays.
    let mut perth = parking_request("citizen-erase-me", 30);
    perth.tenant = tenant("perth");
    let (p, _) = s.grant(perth, now).unwrap();

    let before = fs::read(&path).unwrap();
    assert!(contains(&before, a1.consent_id.to_string().as_bytes()));

    assert_eq!(s.erase_subject(&adl, "citizen-erase-me").unwrap(), 2);
    assert_eq!(s.erase_subject(&adl, "citizen-erase-me").unwrap(), 0);

    let after = fs::read(&path).unwrap();
    for trace in [a1.consent_id.to_string(), a2.consent_id.to_string()] {
        assert!(
            !contains(&after, trace.as_bytes()),
            "{trace} is still in the file"
        );
    }
    let text = String::from_utf8(after).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines()
            .all(|l| !l.contains("\"tenant\":\"adelaide\"") || !l.contains("citizen-erase-me"))
    );
    assert!(text.contains(&b.consent_id.to_string()));
    assert!(text.contains(&p.consent_id.to_string()));
    assert!(!d.path().join(format!("{EVENTS_FILE}.tmp")).exists());

    assert!(s.list_for_subject(&adl, "citizen-erase-me").is_empty());
    assert!(s.get(&adl, a1.consent_id).is_none());
    assert_eq!(
        s.permits(
            &adl,
            "citizen-erase-me",
            APP,
            Purpose::ServiceProvision,
            DataCategory::Location,
            now
        ),
        None
    );
    // The store keeps working on the rewritten file, and a restart sees the same.
    let (b2, _) = s.grant(parking_request("citizen-stays", 10), now).unwrap();
    drop(s);
    let s = ConsentStore::open(d.path()).unwrap();
    assert!(s.list_for_subject(&adl, "citizen-erase-me").is_empty());
    assert_eq!(s.list_for_subject(&adl, "citizen-stays").len(), 2);
    assert!(s.get(&adl, b2.consent_id).is_some());
    assert_eq!(
        s.list_for_subject(&tenant("perth"), "citizen-erase-me")
            .len(),
        1
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
