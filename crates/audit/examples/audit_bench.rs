//! Audit log benchmark: append throughput, full verification, proof verification.
//!
//! `cargo run --release -p polity-audit --example audit_bench -- --entries 1000000`
//! (`--writer-records N`, default 200,000, and `--writer-tasks N`, default 64, size the
//! [`AuditWriter`] run). Prints `name: value unit` lines. Uses a temporary directory
//! (honours `TMPDIR`).

use std::time::Instant;

use polity_audit::merkle::{verify_consistency, verify_inclusion};
use polity_audit::{AuditEntry, AuditLog, AuditWriter, verify_dir};
use polity_model::{Tenant, Timestamp};

fn entry(i: u64) -> AuditEntry {
    AuditEntry {
        at: Timestamp::from_millis(1_780_000_000_000 + i as i64),
        actor: format!("user:clerk-{}", i % 97),
        action: if i.is_multiple_of(5) {
            "export"
        } else {
            "read"
        }
        .into(),
        tenant: Some(Tenant::new("santander").expect("valid tenant")),
        subject: Some(format!(
            "citizen:{:016x}",
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        )),
        resource: format!("/ngsi-ld/v1/entities/urn:ngsi-ld:Person:{i}"),
        purpose: Some("benefit-eligibility".into()),
        outcome: "allowed".into(),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut entries = 1_000_000u64;
    let mut writer_records = 200_000u64;
    let mut writer_tasks = 64u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut number = |name: &str| -> Result<u64, Box<dyn std::error::Error>> {
            Ok(args
                .next()
                .ok_or(format!("{name} needs a number"))?
                .parse()?)
        };
        match a.as_str() {
            "--entries" => entries = number("--entries")?,
            "--writer-records" => writer_records = number("--writer-records")?,
            "--writer-tasks" => writer_tasks = number("--writer-tasks")?.max(1),
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    let dir = tempfile::tempdir()?;
    let mut log = AuditLog::open(dir.path())?;

    // Durable single appends: one fsync each.
    let singles = 200u64.min(entries);
    let t = Instant::now();
    for i in 0..singles {
        log.append(&entry(i))?;
    }
    let s = t.elapsed().as_secs_f64();
    println!("append_single_fsync: {:.0} entries/s", singles as f64 / s);

    // Batched appends: 1,000 entries per fsync.
    let t = Instant::now();
    let mut i = singles;
    while i < entries {
        let end = (i + 1000).min(entries);
        let batch: Vec<_> = (i..end).map(entry).collect();
        log.append_batch(&batch)?;
        i = end;
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "append_batch_1000: {:.0} entries/s",
        (entries - singles) as f64 / s
    );
    let head = log.publish_head()?;
    let size = log.len();
    drop(log);

    let bytes = std::fs::metadata(dir.path().join("audit/entries"))?.len();
    println!("entries_file: {:.1} MB", bytes as f64 / 1e6);

    let t = Instant::now();
    let report = verify_dir(dir.path())?;
    println!("full_verify_entries: {} entries", report.entries);
    println!("full_verify: {:.3} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let mut log = AuditLog::open(dir.path())?;
    println!("reopen: {:.3} s", t.elapsed().as_secs_f64());
    println!("reopen_subjects: {}", log.subject_count());
    if let Some(rss) = rss_mb() {
        println!("rss_after_reopen: {rss:.0} MB");
    }

    let root = head.root().ok_or("bad head")?;
    let mut times = Vec::new();
    let mut gen_times = Vec::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let idx = x % size;
        let leaf = log.leaf_hash(idx).ok_or("missing leaf")?;
        let t = Instant::now();
        let proof = log.inclusion_proof(idx, size)?;
        gen_times.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        let ok = verify_inclusion(&leaf, idx, size, &proof, &root);
        times.push(t.elapsed().as_secs_f64() * 1e6);
        assert!(ok, "inclusion proof for {idx} failed");
    }
    times.sort_by(f64::total_cmp);
    gen_times.sort_by(f64::total_cmp);
    println!(
        "inclusion_proof_generate_median: {:.1} us",
        percentile(&gen_times, 0.5)
    );
    println!("inclusion_verify_median: {:.1} us", percentile(&times, 0.5));
    println!("inclusion_verify_p99: {:.1} us", percentile(&times, 0.99));

    let old = size / 3 + 1;
    let old_root = log.root(old)?;
    let mut ctimes = Vec::new();
    for _ in 0..100 {
        let proof = log.consistency_proof(old, size)?;
        let t = Instant::now();
        let ok = verify_consistency(old, size, &old_root, &root, &proof);
        ctimes.push(t.elapsed().as_secs_f64() * 1e6);
        assert!(ok, "consistency proof failed");
    }
    ctimes.sort_by(f64::total_cmp);
    println!(
        "consistency_verify_median: {:.1} us",
        percentile(&ctimes, 0.5)
    );

    let mut reads = Vec::new();
    for _ in 0..1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let idx = x % size;
        let t = Instant::now();
        let e = log.entry(idx)?;
        reads.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(e, entry(idx), "entry {idx} read back wrong");
    }
    reads.sort_by(f64::total_cmp);
    println!("entry_read_median: {:.1} us", percentile(&reads, 0.5));

    let subject = entry(size / 2).subject.ok_or("no subject")?;
    let t = Instant::now();
    let bundle = log.access_report(&subject)?;
    let made = t.elapsed().as_secs_f64() * 1e6;
    let t = Instant::now();
    polity_audit::verify_bundle(&bundle, Some(&log.public_key()))?;
    println!(
        "access_report_1_entry: {made:.1} us, verify {:.1} us",
        t.elapsed().as_secs_f64() * 1e6
    );
    drop(log);
    drop(dir);

    writer_bench(writer_records, writer_tasks)
}

/// Records through [`AuditWriter`] from many concurrent tasks: throughput and
/// per-record latency (enqueue to durable acknowledgement).
fn writer_bench(records: u64, tasks: u64) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (writer, handle) = AuditWriter::start(AuditLog::open(dir.path())?)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let per_task = records / tasks;
    let t = Instant::now();
    let mut latencies: Vec<f64> = rt.block_on(async {
        let mut joins = Vec::new();
        for k in 0..tasks {
            let w = writer.clone();
            joins.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_task as usize);
                for i in 0..per_task {
                    let e = entry(k * per_task + i);
                    let t = Instant::now();
                    w.record(e).await?;
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                }
                Ok::<_, polity_audit::WriteError>(lat)
            }));
        }
        let mut all = Vec::new();
        for j in joins {
            all.extend(j.await??);
        }
        Ok::<_, Box<dyn std::error::Error>>(all)
    })?;
    let secs = t.elapsed().as_secs_f64();
    drop(writer);
    let log = handle.join()?;
    let n = latencies.len();
    latencies.sort_by(f64::total_cmp);
    println!("writer_tasks: {tasks}");
    println!("writer_records: {n}");
    println!("writer_throughput: {:.0} records/s", n as f64 / secs);
    println!("writer_latency_p50: {:.2} ms", percentile(&latencies, 0.5));
    println!("writer_latency_p99: {:.2} ms", percentile(&latencies, 0.99));
    assert_eq!(log.len(), n as u64);
    drop(log);
    let report = verify_dir(dir.path())?;
    assert_eq!(report.unsigned_entries, 0);
    Ok(())
}

/// Resident memory of this process, from `/proc/self/status` (Linux only).
fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
