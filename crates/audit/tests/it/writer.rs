//! The group-committing writer: durability, concurrency, reads while writing,
//! shutdown.

use std::path::Path;
use std::time::Duration;

use polity_audit::log::RECORD_HEADER_BYTES;
use polity_audit::{
    AuditEntry, AuditLog, AuditWriter, WriteError, WriterConfig, verify_bundle, verify_dir,
};

use crate::{access, entry};

/// Complete records in the entries file, counted from the bytes on disk.
fn records_on_disk(dir: &Path) -> u64 {
    let bytes = std::fs::read(dir.join("audit/entries")).unwrap();
    let (mut at, mut n) = (0usize, 0u64);
    while at + RECORD_HEADER_BYTES <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += RECORD_HEADER_BYTES + len;
        if at <= bytes.len() {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_entry_is_on_disk_when_record_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, handle) = AuditWriter::start(AuditLog::open(dir.path()).unwrap()).unwrap();
    for i in 0..20 {
        let index = writer.record(entry(i)).await.unwrap();
        assert_eq!(index, i);
        assert!(
            records_on_disk(dir.path()) > index,
            "entry {index} not yet written"
        );
    }
    let range = writer
        .record_many((20..30).map(entry).collect())
        .await
        .unwrap();
    assert_eq!(range, 20..30);
    assert_eq!(records_on_disk(dir.path()), 30);
    drop(writer);
    let log = tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(log.len(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_burst_is_durable_and_verifies_after_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    // A small queue, so the burst meets backpressure.
    let config = WriterConfig {
        queue_requests: 16,
        ..WriterConfig::default()
    };
    let (writer, handle) =
        AuditWriter::start_with(AuditLog::open(dir.path()).unwrap(), config).unwrap();
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let w = writer.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for k in 0..1250u64 {
                let e = access(t * 1250 + k, &format!("citizen:task-{t}"));
                got.push((w.record(e.clone()).await.unwrap(), e));
            }
            got
        }));
    }
    let mut recorded: Vec<(u64, AuditEntry)> = Vec::new();
    for t in tasks {
        recorded.extend(t.await.unwrap());
    }
    drop(writer);
    let log = tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(log.len(), 10_000);
    assert_eq!(
        log.latest_head().map(|h| h.tree_size),
        Some(10_000),
        "a final head is published on shutdown"
    );
    drop(log);

    let report = verify_dir(dir.path()).unwrap();
    assert_eq!(report.entries, 10_000);
    assert_eq!(report.unsigned_entries, 0);

    // Every acknowledged entry is in the reopened log, at the index it was given.
    let log = AuditLog::open(dir.path()).unwrap();
    recorded.sort_by_key(|(i, _)| *i);
    let indices: Vec<u64> = recorded.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        indices,
        (0..10_000).collect::<Vec<_>>(),
        "indices are unique"
    );
    for (i, e) in &recorded {
        assert_eq!(&log.entry(*i).unwrap(), e);
    }
    assert_eq!(log.entries_for_subject("citizen:task-3").len(), 1250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_while_writing_see_every_committed_entry_with_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    let key = log.public_key();
    let (writer, handle) = AuditWriter::start(log).unwrap();
    for i in 0..10 {
        writer.record(access(i, "citizen:ana")).await.unwrap();
    }
    writer.record(access(10, "citizen:bo")).await.unwrap();
    let head = writer.head().await.unwrap();
    assert_eq!(head.tree_size, 11);
    assert!(head.verify(&key));

    writer.record(access(11, "citizen:ana")).await.unwrap();
    let bundle = writer.access_report("citizen:ana").await.unwrap();
    assert_eq!(
        bundle.head.tree_size, 12,
        "the report covers the newest entry"
    );
    assert_eq!(bundle.entries.len(), 11);
    verify_bundle(&bundle, Some(&key)).unwrap();

    drop(writer);
    tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_are_published_on_a_timer_while_idle() {
    let dir = tempfile::tempdir().unwrap();
    let config = WriterConfig {
        head_every: Duration::from_millis(100),
        ..WriterConfig::default()
    };
    let (writer, handle) =
        AuditWriter::start_with(AuditLog::open(dir.path()).unwrap(), config).unwrap();
    writer.record(entry(0)).await.unwrap();
    writer.record(entry(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Read the published head from disk, not through the writer (which would sign).
    let sth: polity_audit::SignedTreeHead =
        serde_json::from_slice(&std::fs::read(dir.path().join("audit/sth.json")).unwrap()).unwrap();
    assert_eq!(sth.tree_size, 2);
    drop(writer);
    tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_entry_is_refused_without_failing_its_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, handle) = AuditWriter::start(AuditLog::open(dir.path()).unwrap()).unwrap();
    let mut huge = entry(0);
    huge.resource = "x".repeat(2 << 20);
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let w = writer.clone();
        tasks.push(tokio::spawn(async move { w.record(entry(i)).await }));
    }
    let refused = writer.record(huge).await;
    assert!(
        matches!(refused, Err(WriteError::Rejected(_))),
        "{refused:?}"
    );
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // The writer carries on.
    assert_eq!(writer.record(entry(99)).await.unwrap(), 20);
    drop(writer);
    let log = tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(log.len(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_runs_until_the_last_clone_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, handle) = AuditWriter::start(AuditLog::open(dir.path()).unwrap()).unwrap();
    let keep = writer.clone();
    drop(writer);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!handle.is_finished(), "one clone remains");
    assert_eq!(keep.record(entry(0)).await.unwrap(), 0);
    drop(keep);
    let log = tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(log.len(), 1);
}
