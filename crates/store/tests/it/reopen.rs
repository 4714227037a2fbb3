//! Everything written is there after the store is closed and opened again, including
//! what the backend keeps in memory (entity cache, type index, counts, id counters).

use std::path::Path;

use std::sync::Arc;

use polity_model::{Batch, EntityOp, Fold, Instances, Timestamp, Value};
use polity_store::{
    DeadLetterQuery, DeadLetterStore, Device, EntityQuery, EntityStore, NewDeadLetter, Registry,
    SeriesQuery, SeriesStore, Store, StoreError,
    conformance::{batch, id, iri, obs, tenant},
    fjall::{FjallOptions, FjallStore},
};

fn open(dir: &Path) -> FjallStore {
    FjallStore::open(dir, FjallOptions::default()).expect("open")
}

/// Everything a user could read, as one comparable value.
fn snapshot(s: &FjallStore) -> String {
    let mut out = String::new();
    for t in s.tenants().unwrap() {
        let entities = s
            .entities(
                &t,
                &EntityQuery {
                    limit: usize::MAX,
                    ..EntityQuery::default()
                },
            )
            .unwrap();
        out += &format!(
            "tenant {t}: {} entities, types {:?}\n",
            s.count_entities(&t, None).unwrap(),
            s.types(&t).unwrap()
        );
        out += &format!("points {}\n", s.count_points(&t).unwrap());
        for e in &entities {
            out += &format!("{e:?}\n");
            out += &format!(
                "{:?}\n",
                s.series(
                    &t,
                    &e.id,
                    &SeriesQuery {
                        limit: usize::MAX,
                        ..SeriesQuery::default()
                    }
                )
                .unwrap()
            );
        }
        out += &format!(
            "devices {} {:?}\n",
            s.count_devices(&t).unwrap(),
            s.devices(&t, None, usize::MAX).unwrap()
        );
    }
    out += &format!(
        "dead letters {} {:?}\n",
        s.dead_letter_count().unwrap(),
        s.dead_letters(&DeadLetterQuery {
            limit: usize::MAX,
            ..DeadLetterQuery::default()
        })
        .unwrap()
    );
    out
}

#[test]
fn everything_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (tenant("adelaide"), tenant("brisbane"));
    let before = {
        let s = open(dir.path());
        for round in 0..5i64 {
            let mut o = Vec::new();
            for i in 0..40 {
                let ty = if i % 4 == 0 {
                    "StreetLight"
                } else {
                    "ParkingSpot"
                };
                o.push(obs(
                    &id(ty, &format!("{i}")),
                    ty,
                    "occupancy",
                    (round * 100 + i) as f64,
                    round * 1_000 + i,
                ));
            }
            s.commit(&[batch(&a, o.clone()), batch(&b, o[..7].to_vec())])
                .unwrap();
        }
        s.upsert_devices(&[Device {
            tenant: b.clone(),
            device_id: "70B3D57ED0001234".into(),
            entity: id("ParkingSpot", "1"),
            entity_type: iri("ParkingSpot"),
            source: "lorawan".into(),
            first_seen: Timestamp::from_millis(5),
            last_seen: Timestamp::from_millis(9),
            labels: Default::default(),
        }])
        .unwrap();
        s.put_dead_letter(NewDeadLetter {
            at: Timestamp::from_millis(1),
            tenant: None,
            source: "http".into(),
            reason: "not JSON".into(),
            content_type: None,
            payload: vec![0, 1, 2],
        })
        .unwrap();
        assert!(s.delete_entity(&a, &id("ParkingSpot", "3")).unwrap());
        // What only the NGSI-LD API writes: several types, a scope, an attribute without
        // observedAt, attribute times, and a deletion.
        let e = id("Building", "b1");
        let mut name = obs(&e, "Building", "floors", 3.0, 7);
        name.observed = false;
        s.commit(&[Batch {
            ops: vec![
                EntityOp::Ensure {
                    entity: e.clone(),
                    types: vec![iri("Building"), iri("Asset")],
                    scope: Some(vec![Arc::from("/Paris/Centre")]),
                },
                EntityOp::DeleteAttr {
                    entity: id("ParkingSpot", "5"),
                    attr: iri("occupancy"),
                    instances: Instances::All,
                },
            ],
            fold: Fold::Replace,
            ..batch(&a, vec![name])
        }])
        .unwrap();
        snapshot(&s)
    };
    assert!(before.contains("tenant adelaide: 40 entities"), "{before}");

    let s = open(dir.path());
    assert_eq!(
        snapshot(&s),
        before,
        "reopened store reads exactly the same"
    );
    // 195 observations, the API's one, and the record of the attribute's deletion.
    assert_eq!(s.count_points(&a).unwrap(), 197);

    // In-memory counters carry on from where they were, not from zero.
    let next = s
        .put_dead_letter(NewDeadLetter {
            at: Timestamp::from_millis(2),
            tenant: Some(a.clone()),
            source: "http".into(),
            reason: "again".into(),
            content_type: None,
            payload: vec![],
        })
        .unwrap();
    assert_eq!(next, 1, "dead letter ids continue after reopen");
    s.commit(&[batch(
        &a,
        vec![obs(&id("Other", "1"), "Other", "x", 1.0, 1)],
    )])
    .unwrap();
    drop(s);

    let s = open(dir.path());
    let e = s.entity(&a, &id("Other", "1")).unwrap().unwrap();
    assert_eq!(e.entity_type, iri("Other"));
    let series = s
        .series(
            &a,
            &id("Other", "1"),
            &SeriesQuery {
                limit: 10,
                ..SeriesQuery::default()
            },
        )
        .unwrap();
    assert_eq!(
        series[0].entity_type,
        iri("Other"),
        "type names added after a reopen keep their ids"
    );
    assert_eq!(series[0].value, Value::Number(1.0));
    let st = s
        .series(
            &a,
            &id("StreetLight", "0"),
            &SeriesQuery {
                limit: 10,
                ..SeriesQuery::default()
            },
        )
        .unwrap();
    assert_eq!(st[0].entity_type, iri("StreetLight"));
    assert_eq!(s.dead_letter_count().unwrap(), 2);
    assert_eq!(s.count_entities(&a, Some(&iri("ParkingSpot"))).unwrap(), 29);
}

#[test]
fn a_second_open_of_the_same_directory_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    let err = FjallStore::open(dir.path(), FjallOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("another polity process is using") && msg.contains("--data-dir"),
        "{msg}"
    );
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
}

#[test]
fn a_corrupt_entity_record_is_reported_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        s.commit(&[batch(
            &tenant("adelaide"),
            vec![obs(
                &id("ParkingSpot", "7"),
                "ParkingSpot",
                "status",
                1.0,
                1,
            )],
        )])
        .unwrap();
    }
    {
        // Damage the record behind the store's back.
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let ks = db
            .keyspace("entities", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let (k, mut v) = ks
            .iter()
            .next()
            .unwrap()
            .into_inner()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .unwrap();
        v.truncate(v.len() / 2);
        ks.insert(k, v).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let err = FjallStore::open(dir.path(), FjallOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                keyspace: "entities",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        msg.contains("urn:ngsi-ld:ParkingSpot:7") && msg.contains("adelaide"),
        "names the key: {msg}"
    );
}

#[test]
fn stats_count_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let t = tenant("adelaide");
    let e = id("ParkingSpot", "1");
    let stats = s
        .commit(&[
            batch(
                &t,
                vec![
                    obs(&e, "ParkingSpot", "a", 1.0, 1),
                    obs(&e, "ParkingSpot", "b", 1.0, 1),
                ],
            ),
            batch(
                &t,
                vec![obs(&id("ParkingSpot", "2"), "ParkingSpot", "a", 1.0, 1)],
            ),
        ])
        .unwrap();
    assert_eq!((stats.observations, stats.entities_touched), (3, 2));
    assert!(stats.bytes > 100, "{stats:?}");
    assert!(s.disk_usage().unwrap() > 0);
}
