//! Measures durable write and range-read throughput of SQLite and fjall for the temporal
//! series, and of `FjallStore::commit` itself, as the architecture asks.
//!
//! ```text
//! cargo run --release -p polity-store --example series_engines -- --points 1000000 --batch 1000
//! ```
//!
//! Options: `--points N` (batched writes), `--batch B` (points per durable batch),
//! `--single M` (single-point durable commits), `--series S` (distinct series),
//! `--dir D` (where to write; must be a real disk, not tmpfs, or fsync costs nothing).
//!
//! Every write is durable before the next starts: SQLite in WAL mode with
//! `synchronous=FULL`, one transaction per batch, a prepared insert into a `WITHOUT
//! ROWID` table keyed (series, ts); fjall with one write batch per batch, synced with
//! `fdatasync` (and once with `fsync`, for comparison). Each figure is printed as
//! `name: value unit`.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use fjall::{Database, KeyspaceCreateOptions, PersistMode};
use polity_model::{
    Batch, EntityId, Observation, PrivacyClass, Tenant, Timestamp, UnitCode, Value,
};
use polity_store::{
    SeriesQuery, SeriesStore, Store,
    fjall::{Durability, FjallOptions, FjallStore},
};

struct Args {
    points: u64,
    batch: u64,
    single: u64,
    series: u64,
    dir: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        points: 1_000_000,
        batch: 1_000,
        single: 2_000,
        series: 1_000,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let val = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let num = || {
            val.parse::<u64>()
                .unwrap_or_else(|_| panic!("{flag}: `{val}` is not a number"))
        };
        match flag.as_str() {
            "--points" => a.points = num(),
            "--batch" => a.batch = num().max(1),
            "--single" => a.single = num(),
            "--series" => a.series = num().max(1),
            "--dir" => a.dir = Some(PathBuf::from(&val)),
            _ => panic!("unknown option {flag}; see the example's doc comment"),
        }
    }
    a
}

fn report(name: &str, value: f64, unit: &str) {
    println!("{name}: {value:.0} {unit}");
}

/// Point `i` belongs to series `i % S` at time `i / S` seconds.
fn point(i: u64, s: u64) -> (u64, i64) {
    (i % s, (i / s) as i64 * 1_000)
}

fn fjall_key(series: u64, ts: i64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&series.to_be_bytes());
    k[8..].copy_from_slice(&((ts as u64) ^ (1 << 63)).to_be_bytes());
    k
}

// ---------------------------------------------------------------------------------------
// SQLite

fn sqlite_open(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).expect("open sqlite");
    let mode: String = c
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .expect("wal");
    assert_eq!(mode.to_lowercase(), "wal");
    c.execute_batch(
        "PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS points (series INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL,
                                            PRIMARY KEY (series, ts)) WITHOUT ROWID;",
    )
    .expect("schema");
    c
}

fn sqlite_write(c: &mut rusqlite::Connection, from: u64, n: u64, batch: u64, s: u64) -> f64 {
    let start = Instant::now();
    let mut i = from;
    while i < from + n {
        let end = (i + batch).min(from + n);
        let tx = c.transaction().expect("tx");
        {
            let mut st = tx
                .prepare("INSERT OR REPLACE INTO points (series, ts, value) VALUES (?1, ?2, ?3)")
                .expect("prepare");
            for j in i..end {
                let (series, ts) = point(j, s);
                st.execute(rusqlite::params![series as i64, ts, j as f64])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
        i = end;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn sqlite_read(c: &rusqlite::Connection, s: u64, per_series: u64) -> f64 {
    let start = Instant::now();
    let mut got = 0u64;
    let mut st = c
        .prepare(
            "SELECT ts, value FROM points WHERE series = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY ts",
        )
        .expect("prepare");
    for series in (0..s).step_by(7) {
        let rows = st
            .query_map(
                rusqlite::params![series as i64, 0i64, per_series as i64 * 1_000],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?)),
            )
            .expect("query");
        for r in rows {
            r.expect("row");
            got += 1;
        }
    }
    got as f64 / start.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------------------
// fjall, raw

fn fjall_write(
    db: &Database,
    ks: &fjall::Keyspace,
    from: u64,
    n: u64,
    batch: u64,
    s: u64,
    mode: PersistMode,
) -> f64 {
    let start = Instant::now();
    let mut i = from;
    while i < from + n {
        let end = (i + batch).min(from + n);
        let mut b = db.batch().durability(Some(mode));
        for j in i..end {
            let (series, ts) = point(j, s);
            b.insert(
                ks,
                fjall_key(series, ts).to_vec(),
                (j as f64).to_le_bytes().to_vec(),
            );
        }
        b.commit().expect("commit");
        i = end;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn fjall_read(ks: &fjall::Keyspace, s: u64, per_series: u64) -> f64 {
    let start = Instant::now();
    let mut got = 0u64;
    for series in (0..s).step_by(7) {
        let lo = fjall_key(series, 0);
        let hi = fjall_key(series, per_series as i64 * 1_000);
        for kv in ks.range(lo..hi) {
            let (_, v) = kv.into_inner().expect("read");
            assert_eq!(v.len(), 8);
            got += 1;
        }
    }
    got as f64 / start.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------------------
// FjallStore::commit with realistic observations

struct Fixture {
    tenant: Tenant,
    source: Arc<str>,
    ids: Vec<EntityId>,
    ty: Arc<str>,
    attr: Arc<str>,
    unit: UnitCode,
}

impl Fixture {
    fn new(s: u64) -> Self {
        Fixture {
            tenant: Tenant::new("adelaide").expect("tenant"),
            source: Arc::from("mqtt-city"),
            ids: (0..s)
                .map(|i| {
                    EntityId::urn("AirQualityObserved", &format!("adelaide-{i:05}")).expect("id")
                })
                .collect(),
            ty: Arc::from("https://smartdatamodels.org/dataModel.Environment/AirQualityObserved"),
            attr: Arc::from("https://smartdatamodels.org/dataModel.Environment/no2"),
            unit: UnitCode::new("GQ").expect("unit"),
        }
    }

    fn batch(&self, from: u64, to: u64, s: u64) -> Batch {
        let observations = (from..to)
            .map(|j| {
                let (series, ts) = point(j, s);
                Observation {
                    entity: self.ids[series as usize].clone(),
                    entity_type: self.ty.clone(),
                    attr: self.attr.clone(),
                    dataset_id: None,
                    value: Value::Number(20.0 + (j % 97) as f64 / 10.0),
                    unit: Some(self.unit),
                    observed_at: Timestamp::from_millis(1_767_225_600_000 + ts),
                    observed: true,
                    privacy: PrivacyClass::Public,
                    meta: None,
                }
            })
            .collect();
        Batch::of(self.tenant.clone(), self.source.clone(), observations)
    }
}

fn store_write(st: &FjallStore, fx: &Fixture, from: u64, n: u64, batch: u64, s: u64) -> f64 {
    // Build the batches first: the figure is the store's, not the fixture's.
    let mut batches = Vec::new();
    let mut i = from;
    while i < from + n {
        let end = (i + batch).min(from + n);
        batches.push(fx.batch(i, end, s));
        i = end;
    }
    let start = Instant::now();
    for b in &batches {
        st.commit(std::slice::from_ref(b)).expect("commit");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn store_read(st: &FjallStore, fx: &Fixture, s: u64, per_series: u64) -> f64 {
    let start = Instant::now();
    let mut got = 0usize;
    let q = SeriesQuery {
        from: Some(Timestamp::from_millis(1_767_225_600_000)),
        to: Some(Timestamp::from_millis(
            1_767_225_600_000 + per_series as i64 * 1_000,
        )),
        limit: usize::MAX,
        ..SeriesQuery::default()
    };
    for series in (0..s).step_by(7) {
        got += st
            .series(&fx.tenant, &fx.ids[series as usize], &q)
            .expect("read")
            .len();
    }
    got as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let a = args();
    let tmp = match &a.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("temporary directory");
    let dir = tmp.path();
    let per_series = a.points / a.series;
    eprintln!(
        "points={} batch={} single={} series={} dir={}",
        a.points,
        a.batch,
        a.single,
        a.series,
        dir.display()
    );

    // Single-point commits run first, on a quiet disk: after a batched phase the
    // engines' background flushes and the page cache's write-back make every fsync
    // wait, and the figure would measure that instead. `quiesce` runs between phases.
    // SQLite
    {
        let mut c = sqlite_open(&dir.join("series.sqlite"));
        quiesce();
        report(
            "sqlite_single_write",
            sqlite_write(&mut c, a.points, a.single, 1, a.series),
            "points/s",
        );
        quiesce();
        report(
            "sqlite_batched_write",
            sqlite_write(&mut c, 0, a.points, a.batch, a.series),
            "points/s",
        );
        quiesce();
        report(
            "sqlite_range_read",
            sqlite_read(&c, a.series, per_series),
            "points/s",
        );
    }
    // fjall, raw keys
    {
        let db = Database::builder(dir.join("fjall-raw"))
            .open()
            .expect("open fjall");
        let ks = db
            .keyspace("points", KeyspaceCreateOptions::default)
            .expect("keyspace");
        quiesce();
        report(
            "fjall_single_write",
            fjall_write(
                &db,
                &ks,
                a.points,
                a.single,
                1,
                a.series,
                PersistMode::SyncData,
            ),
            "points/s",
        );
        report(
            "fjall_single_write_fsync",
            fjall_write(
                &db,
                &ks,
                a.points + a.single,
                a.single,
                1,
                a.series,
                PersistMode::SyncAll,
            ),
            "points/s",
        );
        quiesce();
        report(
            "fjall_batched_write",
            fjall_write(
                &db,
                &ks,
                0,
                a.points,
                a.batch,
                a.series,
                PersistMode::SyncData,
            ),
            "points/s",
        );
        quiesce();
        report(
            "fjall_range_read",
            fjall_read(&ks, a.series, per_series),
            "points/s",
        );
    }
    // FjallStore::commit
    {
        let st = FjallStore::open(
            &dir.join("store"),
            FjallOptions {
                durability: Durability::SyncData,
                ..FjallOptions::default()
            },
        )
        .expect("open store");
        let fx = Fixture::new(a.series);
        quiesce();
        report(
            "store_commit_single",
            store_write(&st, &fx, a.points, a.single, 1, a.series),
            "observations/s",
        );
        quiesce();
        report(
            "store_commit_batched",
            store_write(&st, &fx, 0, a.points, a.batch, a.series),
            "observations/s",
        );
        quiesce();
        report(
            "store_series_read",
            store_read(&st, &fx, a.series, per_series),
            "observations/s",
        );
        report(
            "store_disk_usage",
            st.disk_usage().expect("disk usage") as f64 / 1_048_576.0,
            "MiB",
        );
    }
}

/// Writes back every dirty page (the `sync` command) and lets background work settle.
fn quiesce() {
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(std::time::Duration::from_secs(2));
}
