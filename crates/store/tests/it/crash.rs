//! Crash consistency: a real child process commits in a loop and is killed with SIGKILL;
//! every batch it acknowledged must be there after reopening.
//!
//! The child is this test binary, re-run with `POLITY_STORE_CRASH_CHILD=<dir>` and
//! filtered to [`crash_child`], which is a no-op without that variable. It prints
//! `ack <seq>` only after `commit` returned `Ok`, so an acknowledged batch is exactly
//! one the pipeline would have acknowledged to its senders.
//!
//! What this can and cannot catch: SIGKILL loses whatever the process had not handed to
//! the kernel, so this fails if a commit returns before its journal entry left the
//! process (checked once by turning the batch's durability off: acknowledged batches went
//! missing). It cannot tell `fsync` from no `fsync`, which only a power cut shows.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Stdio},
};

use polity_model::{Observation, Timestamp, Value};
use polity_store::{
    EntityStore, SeriesQuery, SeriesStore, Store,
    conformance::{batch, id, obs, tenant},
    fjall::{FjallOptions, FjallStore},
};

const ENV: &str = "POLITY_STORE_CRASH_CHILD";
const ENTITIES: u64 = 13;
const PER_BATCH: u64 = 50;

/// The observations of batch `seq`: entity `seq % ENTITIES` gets attribute `seq` =
/// `seq` at time `seq`, and `PER_BATCH - 1` more points of attribute `n`.
fn batch_obs(seq: u64) -> Vec<Observation> {
    let e = id("Counter", &format!("{}", seq % ENTITIES));
    let mut v = vec![obs(&e, "Counter", "seq", seq as f64, seq as i64)];
    for i in 1..PER_BATCH {
        v.push(obs(
            &e,
            "Counter",
            "n",
            i as f64,
            (seq * PER_BATCH + i) as i64,
        ));
    }
    v
}

/// Runs only in the child: commit forever, acknowledging each batch after it is durable.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(ENV) else { return };
    let start: u64 = std::env::var("POLITY_STORE_CRASH_START")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let store =
        FjallStore::open(Path::new(&dir), FjallOptions::default()).expect("child opens the store");
    let t = tenant("crash");
    let mut out = std::io::stdout().lock();
    // libtest has printed `test crash::crash_child ... ` with no newline: end that line.
    writeln!(out).expect("stdout");
    for seq in start.. {
        store.commit(&[batch(&t, batch_obs(seq))]).expect("commit");
        writeln!(out, "ack {seq}")
            .and_then(|_| out.flush())
            .expect("stdout");
    }
}

/// Starts a child at `start`, kills it after `kill_after` acknowledgements, and returns
/// the last acknowledged sequence number.
fn run_child_and_kill(dir: &Path, start: u64, kill_after: u64) -> u64 {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV, dir)
        .env("POLITY_STORE_CRASH_START", start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut last = None;
    let mut acks = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ack ") {
            let n: u64 = n.trim().parse().unwrap();
            assert_eq!(n, last.map_or(start, |l| l + 1), "acks are in order");
            last = Some(n);
            acks += 1;
            if acks == kill_after {
                // SIGKILL on Unix: no destructors, no flushing.
                child.kill().unwrap();
                break;
            }
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed, it did not finish");
    last.expect("the child acknowledged batches before it was killed")
}

fn assert_acknowledged_present(dir: &Path, upto: u64) {
    let s = FjallStore::open(dir, FjallOptions::default()).expect("reopen after SIGKILL");
    let t = tenant("crash");
    for e in 0..ENTITIES {
        let entity = id("Counter", &e.to_string());
        // The last acknowledged batch of this entity.
        let Some(last) = (0..=upto).rev().find(|s| s % ENTITIES == e) else {
            continue;
        };
        let state = s
            .entity(&t, &entity)
            .unwrap()
            .unwrap_or_else(|| panic!("entity {entity} lost"));
        let seq = state
            .attr(&polity_store::conformance::iri("seq"))
            .expect("seq attribute");
        assert!(
            seq.observed_at >= Timestamp::from_millis(last as i64),
            "entity {entity}: state older than acknowledged batch {last}"
        );
        let pts = s
            .series(
                &t,
                &entity,
                &SeriesQuery {
                    attrs: Some(vec![seq.attr.clone()]),
                    to: Some(Timestamp::from_millis(upto as i64 + 1)),
                    limit: usize::MAX,
                    ..SeriesQuery::default()
                },
            )
            .unwrap();
        let got: Vec<u64> = pts
            .iter()
            .map(|p| p.observed_at.as_millis() as u64)
            .collect();
        let want: Vec<u64> = (0..=upto).filter(|s| s % ENTITIES == e).collect();
        assert_eq!(
            got, want,
            "entity {entity}: every acknowledged batch's point is in the series"
        );
        assert!(
            pts.iter()
                .all(|p| p.value == Value::Number(p.observed_at.as_millis() as f64))
        );
    }
    // And the bulk points of the last acknowledged batch, all of them.
    let entity = id("Counter", &(upto % ENTITIES).to_string());
    let n = s
        .series(
            &t,
            &entity,
            &SeriesQuery {
                attrs: Some(vec![polity_store::conformance::iri("n")]),
                from: Some(Timestamp::from_millis((upto * PER_BATCH) as i64)),
                to: Some(Timestamp::from_millis(((upto + 1) * PER_BATCH) as i64)),
                limit: usize::MAX,
                ..SeriesQuery::default()
            },
        )
        .unwrap();
    assert_eq!(
        n.len() as u64,
        PER_BATCH - 1,
        "the last acknowledged batch is complete"
    );
}

#[test]
fn acknowledged_batches_survive_sigkill() {
    if std::env::var(ENV).is_ok() {
        return; // We are a child.
    }
    let dir = tempfile::tempdir().unwrap();
    let mut next = 0;
    // Kill early (during the first journal writes), mid-way and later, reusing the
    // directory so recovery also runs on top of earlier recoveries.
    for kill_after in [1, 7, 60, 23, 150] {
        let last = run_child_and_kill(dir.path(), next, kill_after);
        assert_acknowledged_present(dir.path(), last);
        // The batch after `last` may or may not have landed; the next child commits it
        // again, which overwrites the same keys.
        next = last + 1;
    }
}
