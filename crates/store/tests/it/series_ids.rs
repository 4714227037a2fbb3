//! Series ids: each series (tenant, entity, attribute, datasetId) is interned to a `u64`
//! that keys its points. The mapping must survive reopening, never be shared between
//! tenants, and reach the disk in the same write as the series' first point: a crash
//! can leave neither a point without its id nor an id without its point.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::Arc,
};

use polity_model::{EntityId, Observation, Value};
use polity_store::{
    EntityStore, SeriesQuery, SeriesStore, Store, StoreError,
    conformance::{batch, id, iri, obs, tenant},
    fjall::{FjallOptions, FjallStore},
};

fn open(dir: &Path) -> FjallStore {
    FjallStore::open(dir, FjallOptions::default()).expect("open")
}

fn all() -> SeriesQuery {
    SeriesQuery {
        limit: usize::MAX,
        ..SeriesQuery::default()
    }
}

fn with_dataset(mut o: Observation, d: &str) -> Observation {
    o.dataset_id = Some(Arc::from(d));
    o
}

/// The raw keyspaces, read behind the store's back (it must be closed): every series
/// id with its record, and every point's series id with how many points it has.
fn raw(dir: &Path) -> (BTreeMap<u64, Vec<u8>>, BTreeMap<u64, u64>) {
    let db = fjall::Database::builder(dir).open().expect("raw open");
    let ids = db
        .keyspace("series_ids", fjall::KeyspaceCreateOptions::default)
        .expect("series_ids");
    let series = db
        .keyspace("series", fjall::KeyspaceCreateOptions::default)
        .expect("series");
    let mut records = BTreeMap::new();
    for kv in ids.iter() {
        let (k, v) = kv.into_inner().unwrap();
        let k: [u8; 8] = (&*k).try_into().expect("8-byte series id");
        records.insert(u64::from_be_bytes(k), v.to_vec());
    }
    let mut points = BTreeMap::new();
    for kv in series.iter() {
        let k = kv.key().unwrap();
        assert_eq!(k.len(), 16, "a point key is series id ‖ time");
        let id = u64::from_be_bytes(k[..8].try_into().unwrap());
        *points.entry(id).or_insert(0u64) += 1;
    }
    (records, points)
}

#[test]
fn series_ids_survive_reopen_and_are_not_shared() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (tenant("adelaide"), tenant("brisbane"));
    let (e1, e2) = (id("Room", "1"), id("Room", "2"));
    {
        let s = open(dir.path());
        s.commit(&[
            batch(
                &a,
                vec![
                    obs(&e1, "Room", "temperature", 20.0, 1_000),
                    with_dataset(obs(&e1, "Room", "temperature", 21.0, 1_000), "urn:d:1"),
                    obs(&e1, "Room", "humidity", 40.0, 1_000),
                    obs(&e2, "Room", "temperature", 22.0, 1_000),
                ],
            ),
            // The same entity and attribute in another tenant is another series.
            batch(&b, vec![obs(&e1, "Room", "temperature", 99.0, 1_000)]),
        ])
        .unwrap();
    }
    let (records, points) = raw(dir.path());
    assert_eq!(records.len(), 5, "one id per series: {records:?}");
    assert_eq!(
        points.keys().collect::<Vec<_>>(),
        records.keys().collect::<Vec<_>>()
    );

    {
        // After reopening, the same series get the same ids: new points of old series
        // add no id, a new series adds exactly one.
        let s = open(dir.path());
        s.commit(&[
            batch(
                &a,
                vec![
                    obs(&e1, "Room", "temperature", 23.0, 2_000),
                    with_dataset(obs(&e1, "Room", "temperature", 24.0, 2_000), "urn:d:1"),
                    obs(&e2, "Room", "temperature", 25.0, 2_000),
                    obs(&e2, "Room", "co2", 400.0, 2_000),
                ],
            ),
            batch(&b, vec![obs(&e1, "Room", "temperature", 98.0, 2_000)]),
        ])
        .unwrap();
        let got = s
            .series(&a, &e1, &all())
            .unwrap()
            .into_iter()
            .map(|o| {
                (
                    o.attr.to_string(),
                    o.dataset_id.as_deref().map(str::to_owned),
                    o.observed_at.as_millis(),
                    o.value,
                )
            })
            .collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                (
                    iri("humidity").to_string(),
                    None,
                    1_000,
                    Value::Number(40.0)
                ),
                (
                    iri("temperature").to_string(),
                    None,
                    1_000,
                    Value::Number(20.0)
                ),
                (
                    iri("temperature").to_string(),
                    None,
                    2_000,
                    Value::Number(23.0)
                ),
                (
                    iri("temperature").to_string(),
                    Some("urn:d:1".into()),
                    1_000,
                    Value::Number(21.0)
                ),
                (
                    iri("temperature").to_string(),
                    Some("urn:d:1".into()),
                    2_000,
                    Value::Number(24.0)
                ),
            ]
        );
        let other: Vec<f64> = s
            .series(&b, &e1, &all())
            .unwrap()
            .iter()
            .map(|o| o.value.as_f64().unwrap())
            .collect();
        assert_eq!(
            other,
            vec![99.0, 98.0],
            "tenants do not see each other's series"
        );
        assert_eq!(s.count_points(&a).unwrap(), 8);
        assert_eq!(s.count_points(&b).unwrap(), 2);
    }
    let (after, points) = raw(dir.path());
    assert_eq!(after.len(), 6, "only the new series got an id: {after:?}");
    for (k, v) in &records {
        assert_eq!(after.get(k), Some(v), "series {k} kept its id and identity");
    }
    assert_eq!(
        points.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    assert_eq!(points.values().sum::<u64>(), 10);

    {
        // Deleting an entity removes its series ids with its points; ids are not
        // reused within the process.
        let s = open(dir.path());
        assert!(s.delete_entity(&a, &e1).unwrap());
        assert!(s.series(&a, &e1, &all()).unwrap().is_empty());
        assert_eq!(
            s.series(&b, &e1, &all()).unwrap().len(),
            2,
            "the other tenant's stay"
        );
        s.commit(&[batch(&a, vec![obs(&e1, "Room", "temperature", 1.0, 3_000)])])
            .unwrap();
        assert_eq!(s.series(&a, &e1, &all()).unwrap().len(), 1);
    }
    let (ids, points) = raw(dir.path());
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(
        points.keys().collect::<Vec<_>>(),
        ids.keys().collect::<Vec<_>>()
    );
    let max_before = *after.keys().max().unwrap();
    assert!(
        ids.keys().any(|&k| k > max_before),
        "the re-created series has a new id"
    );
    let s = open(dir.path());
    assert_eq!(s.series(&a, &e1, &all()).unwrap().len(), 1);
    assert_eq!(s.count_points(&a).unwrap(), 4);
}

#[test]
fn a_directory_of_the_previous_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let meta = db
            .keyspace("meta", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        meta.insert("v", 1u32.to_be_bytes()).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let err = FjallStore::open(dir.path(), FjallOptions::default()).unwrap_err();
    assert!(
        matches!(err, StoreError::Format { found: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("store format 1"), "{err}");
}

// ---------------------------------------------------------------------------------------
// A crash at any byte of a commit that creates series.

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Every file under `dir`, by path relative to it.
fn files(dir: &Path, base: &Path, out: &mut BTreeMap<std::path::PathBuf, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            files(&e.path(), base, out);
        } else {
            let rel = e.path().strip_prefix(base).unwrap().to_owned();
            out.insert(rel, std::fs::read(e.path()).unwrap());
        }
    }
}

#[test]
fn a_crash_never_separates_a_new_series_id_from_its_first_point() {
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live");
    let (before, after) = (root.path().join("before"), root.path().join("after"));
    let t = tenant("adelaide");
    let old = id("Room", "1");
    let new = id("Room", "2");
    {
        let s = open(&live);
        s.commit(&[batch(
            &t,
            vec![obs(&old, "Room", "temperature", 1.0, 1_000)],
        )])
        .unwrap();
        // Copies of the directory as a crash would leave it: the commit is durable in
        // the journal, nothing is flushed yet.
        copy_dir(&live, &before);
        // The commit under test: a new series of an existing entity, a new entity with
        // two series, and a point of an existing series.
        s.commit(&[batch(
            &t,
            vec![
                obs(&old, "Room", "humidity", 2.0, 2_000),
                obs(&new, "Room", "temperature", 3.0, 2_000),
                obs(&new, "Room", "co2", 4.0, 2_000),
                obs(&old, "Room", "temperature", 5.0, 2_000),
            ],
        )])
        .unwrap();
        copy_dir(&live, &after);
    }
    // The commit's journal entry: where the two copies' journals differ.
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    files(&before, &before, &mut a);
    files(&after, &after, &mut b);
    let mut journal = None;
    for (path, bytes) in &b {
        if path.extension().is_some_and(|e| e == "jnl") {
            let old_bytes = a.get(path).cloned().unwrap_or_default();
            let len = bytes.len().max(old_bytes.len());
            let at = |v: &Vec<u8>, i: usize| v.get(i).copied().unwrap_or(0);
            let diff: Vec<usize> = (0..len)
                .filter(|&i| at(bytes, i) != at(&old_bytes, i))
                .collect();
            if let (Some(&first), Some(&last)) = (diff.first(), diff.last()) {
                assert!(journal.is_none(), "the commit is in one journal");
                journal = Some((path.clone(), first, last + 1));
            }
        }
    }
    let (journal, start, end) = journal.expect("the commit is in a journal");
    assert!(end - start > 50, "found the whole entry: {start}..{end}");

    let mut outcomes = BTreeSet::new();
    // Every byte near the entry's ends, every 7th in between (each cut reopens twice).
    let cuts = (start..=end).filter(|&c| c < start + 64 || c + 64 > end || (c - start) % 7 == 0);
    for cut in cuts {
        // The directory as a crash after `cut` bytes of the entry would leave it.
        let dir = root.path().join(format!("cut-{cut}"));
        for (path, bytes) in &b {
            let target = dir.join(path);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            let bytes = if *path == journal {
                &bytes[..cut]
            } else {
                &bytes[..]
            };
            std::fs::write(target, bytes).unwrap();
        }
        let landed = {
            let s = FjallStore::open(&dir, FjallOptions::default())
                .unwrap_or_else(|e| panic!("cut at {cut}: reopen: {e}"));
            let new_points = s.series(&t, &new, &all()).unwrap();
            let old_points = s.series(&t, &old, &all()).unwrap();
            let new_state = s.entity(&t, &new).unwrap();
            let humidity = s
                .entity(&t, &old)
                .unwrap()
                .unwrap()
                .attr(&iri("humidity"))
                .is_some();
            let landed = new_points.len() == 2;
            // All of the commit or none of it.
            assert_eq!(
                (
                    new_points.len(),
                    old_points.len(),
                    new_state.is_some(),
                    humidity,
                    s.count_points(&t).unwrap(),
                ),
                if landed {
                    (2, 3, true, true, 5)
                } else {
                    (0, 1, false, false, 1)
                },
                "cut at {cut}"
            );
            landed
        };
        // And on disk: every id has its points, every point its id.
        let (ids, points) = raw(&dir);
        assert_eq!(
            ids.keys().collect::<Vec<_>>(),
            points.keys().collect::<Vec<_>>(),
            "cut at {cut}: series ids and points"
        );
        assert_eq!(ids.len(), if landed { 4 } else { 1 }, "cut at {cut}");
        outcomes.insert(landed);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert_eq!(
        outcomes,
        BTreeSet::from([false, true]),
        "cuts before the end lose the commit, the cut at the end keeps it"
    );
}

#[test]
fn entity_ids_in_keys_are_not_confused_across_series() {
    // Entities whose ids are prefixes of each other keep separate series.
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let t = tenant("adelaide");
    let (e1, e10) = (
        EntityId::new("urn:ngsi-ld:Room:1").unwrap(),
        EntityId::new("urn:ngsi-ld:Room:10").unwrap(),
    );
    s.commit(&[batch(
        &t,
        vec![
            obs(&e1, "Room", "t", 1.0, 1),
            obs(&e10, "Room", "t", 10.0, 1),
            obs(&e10, "Room", "t", 11.0, 2),
        ],
    )])
    .unwrap();
    assert_eq!(s.series(&t, &e1, &all()).unwrap().len(), 1);
    assert_eq!(s.series(&t, &e10, &all()).unwrap().len(), 2);
    assert!(s.delete_entity(&t, &e1).unwrap());
    assert_eq!(s.series(&t, &e10, &all()).unwrap().len(), 2);
    assert_eq!(s.count_points(&t).unwrap(), 2);
}
