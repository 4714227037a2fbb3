//! Reading entries back: by index and by subject, before and after reopening.

use polity_audit::{AuditLog, LogError};

use crate::{access, entry};

#[test]
fn entries_read_back_by_index_after_appends_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = AuditLog::open(dir.path()).unwrap();
    log.append(&entry(0)).unwrap();
    log.append_batch(&(1..300).map(entry).collect::<Vec<_>>())
        .unwrap();
    for i in [0, 1, 150, 299] {
        assert_eq!(log.entry(i).unwrap(), entry(i), "entry {i} before reopen");
    }
    assert!(matches!(
        log.entry(300),
        Err(LogError::NoSuchEntry {
            index: 300,
            len: 300
        })
    ));
    drop(log);
    let mut log = AuditLog::open(dir.path()).unwrap();
    for i in (0..300).step_by(7) {
        assert_eq!(log.entry(i).unwrap(), entry(i), "entry {i} after reopen");
    }
    // Appends after reopen land after the scanned records.
    assert_eq!(log.append(&entry(300)).unwrap(), 300);
    assert_eq!(log.entry(300).unwrap(), entry(300));
    assert_eq!(log.entry(299).unwrap(), entry(299));
}

#[test]
fn the_subject_index_lists_a_citizens_entries_in_order_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = AuditLog::open(dir.path()).unwrap();
    let who = |i: u64| ["citizen:ana", "citizen:bo", "citizen:cy"][(i % 3) as usize];
    let batch: Vec<_> = (0..30).map(|i| access(i, who(i))).collect();
    log.append_batch(&batch).unwrap();
    let mut no_subject = entry(30);
    no_subject.subject = None;
    log.append(&no_subject).unwrap();
    let ana: Vec<u64> = (0..30).filter(|i| i % 3 == 0).collect();
    assert_eq!(log.entries_for_subject("citizen:ana"), ana);
    assert!(log.entries_for_subject("citizen:nobody").is_empty());
    assert_eq!(log.subject_count(), 3);
    drop(log);

    let mut log = AuditLog::open(dir.path()).unwrap();
    assert_eq!(log.entries_for_subject("citizen:ana"), ana);
    assert_eq!(log.subject_count(), 3);
    log.append(&access(31, "citizen:ana")).unwrap();
    let mut more = ana.clone();
    more.push(31);
    assert_eq!(log.entries_for_subject("citizen:ana"), more);
    for i in more {
        assert_eq!(
            log.entry(i).unwrap().subject.as_deref(),
            Some("citizen:ana")
        );
    }
}

#[test]
fn an_entry_edited_on_disk_while_open_is_refused_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = AuditLog::open(dir.path()).unwrap();
    log.append_batch(&(0..3).map(entry).collect::<Vec<_>>())
        .unwrap();
    let path = dir.path().join("audit/entries");
    let mut bytes = std::fs::read(&path).unwrap();
    let needle = b"benefit-eligibility";
    let at = bytes
        .windows(needle.len())
        .rposition(|w| w == needle)
        .unwrap();
    bytes[at] = b'B';
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        log.entry(2),
        Err(LogError::Corrupt { index: 2, .. })
    ));
    assert_eq!(log.entry(0).unwrap(), entry(0));
}
