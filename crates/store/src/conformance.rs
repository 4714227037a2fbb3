//! The backend-generic suite: behaviour every [`Store`] backend must show.
//!
//! Each check takes a factory that returns a fresh, empty store, and panics (like an
//! `assert!`) when the backend misbehaves. A backend's integration test calls
//! [`run_all`], or the checks one by one to get one test per check:
//!
//! ```no_run
//! # fn open_fresh_store() -> Box<dyn polity_store::Store> { unimplemented!() }
//! polity_store::conformance::run_all(&|| open_fresh_store());
//! ```
//!
//! The checks only use the traits, so the embedded fjall backend and the PostgreSQL
//! backend are held to exactly the same behaviour. This module is compiled always (it
//! is small, and a backend in another crate needs it outside `cfg(test)`).

use std::{collections::BTreeMap, sync::Arc};

use polity_model::{
    Batch, EntityId, EntityOp, Fold, Instances, Observation, PrivacyClass, Tenant, Timestamp,
    UnitCode, Value,
};

use crate::{DeadLetterQuery, Device, EntityQuery, NewDeadLetter, SeriesQuery, Store};

/// Makes a fresh, empty store.
pub type Factory<'a> = &'a dyn Fn() -> Box<dyn Store>;

/// One check of the suite.
pub type Check = fn(Factory<'_>);

/// Every check, by name, in the order [`run_all`] runs them.
pub const CHECKS: &[(&str, Check)] = &[
    ("value_kinds_round_trip", value_kinds_round_trip),
    ("entity_state_folds", entity_state_folds),
    ("types_and_counts", types_and_counts),
    ("pagination_by_cursor", pagination_by_cursor),
    ("series_queries", series_queries),
    ("tenant_isolation", tenant_isolation),
    ("dead_letters_persist", dead_letters_persist),
    (
        "device_upsert_keeps_first_seen",
        device_upsert_keeps_first_seen,
    ),
    (
        "delete_entity_removes_state_and_series",
        delete_entity_removes_state_and_series,
    ),
    ("empty_store_answers_empty", empty_store_answers_empty),
    ("documents_by_kind_and_tenant", documents_by_kind_and_tenant),
    ("entity_operations", entity_operations),
];

/// Runs every check, each against its own fresh store.
pub fn run_all(factory: Factory<'_>) {
    for (name, check) in CHECKS {
        tracing::info!(check = name, "conformance");
        check(factory);
    }
}

// ---------------------------------------------------------------------------------------
// Fixtures

const NS: &str = "https://smartdatamodels.org/dataModel.";

/// A tenant name that is valid by construction.
pub fn tenant(name: &str) -> Tenant {
    Tenant::new(name).expect("fixture tenant names are valid")
}

/// `urn:ngsi-ld:{ty}:{local}`.
pub fn id(ty: &str, local: &str) -> EntityId {
    EntityId::urn(ty, local).expect("fixture ids are valid")
}

/// The expanded IRI of a Smart Data Models type or attribute.
pub fn iri(term: &str) -> Arc<str> {
    Arc::from(format!("{NS}{term}").as_str())
}

/// A numeric observation of `attr` on entity `e` (type `ty`) at `t` ms.
pub fn obs(e: &EntityId, ty: &str, attr: &str, v: f64, t: i64) -> Observation {
    Observation {
        entity: e.clone(),
        entity_type: iri(ty),
        attr: iri(attr),
        dataset_id: None,
        value: Value::Number(v),
        unit: None,
        observed_at: Timestamp::from_millis(t),
        observed: true,
        privacy: PrivacyClass::Public,
        meta: None,
    }
}

/// One batch for `tenant` from source `test`.
pub fn batch(tenant: &Tenant, observations: Vec<Observation>) -> Batch {
    Batch::of(tenant.clone(), Arc::from("test"), observations)
}

fn all(limit: usize) -> SeriesQuery {
    SeriesQuery {
        limit,
        ..SeriesQuery::default()
    }
}

fn times(obs: &[Observation]) -> Vec<i64> {
    obs.iter().map(|o| o.observed_at.as_millis()).collect()
}

fn device(t: &Tenant, dev: &str, first: i64, last: i64) -> Device {
    Device {
        tenant: t.clone(),
        device_id: dev.into(),
        entity: id("Device", dev),
        entity_type: iri("Device"),
        source: "lorawan".into(),
        first_seen: Timestamp::from_millis(first),
        last_seen: Timestamp::from_millis(last),
        labels: BTreeMap::from([("site".to_string(), "north".to_string())]),
    }
}

fn dead_letter(t: Option<&Tenant>, source: &str, payload: &[u8]) -> NewDeadLetter {
    NewDeadLetter {
        at: Timestamp::from_millis(1_700_000_000_000),
        tenant: t.cloned(),
        source: source.into(),
        reason: format!("{source}: expected a SenML pack, found garbage at byte 0"),
        content_type: Some("application/senml+json".into()),
        payload: payload.to_vec(),
    }
}

// ---------------------------------------------------------------------------------------
// Checks

/// Every kind of value, with units, datasetIds, privacy classes and metadata, comes back
/// from both the series and the entity state exactly as committed.
pub fn value_kinds_round_trip(factory: Factory<'_>) {
    let s = factory();
    let t = tenant("adelaide");
    let e = id("Thing", "kinds");
    let base = obs(&e, "Thing", "x", 0.0, 1_000);
    let geo = serde_json::json!({"type": "Point", "coordinates": [138.6007, -34.9285]});
    let json = serde_json::json!({"a": [1, 2.5, null, true, "x"], "nested": {"k": "v"}});
    let mut meta = serde_json::Map::new();
    meta.insert(
        "https://uri.etsi.org/ngsi-ld/instanceId".into(),
        serde_json::json!("urn:ngsi-ld:Instance:1"),
    );
    let kinds: Vec<Observation> = vec![
        Observation {
            attr: iri("number"),
            value: Value::Number(-12.75),
            unit: Some(UnitCode::new("CEL").unwrap()),
            ..base.clone()
        },
        Observation {
            attr: iri("big"),
            value: Value::Number(f64::MAX),
            ..base.clone()
        },
        Observation {
            attr: iri("bool"),
            value: Value::Bool(true),
            privacy: PrivacyClass::Personal,
            ..base.clone()
        },
        Observation {
            attr: iri("text"),
            value: Value::Text(Arc::from("héllo \u{0} wörld 🌏")),
            ..base.clone()
        },
        Observation {
            attr: iri("empty"),
            value: Value::Text(Arc::from("")),
            ..base.clone()
        },
        Observation {
            attr: iri("rel"),
            value: Value::Relationship(id("Building", "b1")),
            ..base.clone()
        },
        Observation {
            attr: iri("location"),
            value: Value::Geo(Arc::new(geo)),
            privacy: PrivacyClass::Sensitive,
            ..base.clone()
        },
        Observation {
            attr: iri("json"),
            value: Value::Json(Arc::new(json)),
            meta: Some(Arc::new(meta)),
            ..base.clone()
        },
        Observation {
            attr: iri("number"),
            dataset_id: Some(Arc::from("urn:ngsi-ld:Dataset:b")),
            value: Value::Number(2.0),
            ..base.clone()
        },
        Observation {
            attr: iri("weird\u{0}name"),
            dataset_id: Some(Arc::from("")),
            value: Value::Number(3.0),
            ..base.clone()
        },
        Observation {
            attr: iri("ancient"),
            value: Value::Number(1.0),
            observed_at: Timestamp::from_millis(polity_model::time::MIN_MS),
            observed: true,
            ..base.clone()
        },
        Observation {
            attr: iri("future"),
            value: Value::Number(1.0),
            observed_at: Timestamp::from_millis(polity_model::time::MAX_MS),
            observed: true,
            ..base.clone()
        },
    ];
    let stats = s.commit(&[batch(&t, kinds.clone())]).expect("commit");
    assert_eq!(stats.observations, kinds.len() as u64);
    assert_eq!(stats.entities_touched, 1);

    let mut want = kinds.clone();
    want.sort_by(|a, b| (&a.attr, &a.dataset_id).cmp(&(&b.attr, &b.dataset_id)));
    let series = s.series(&t, &e, &all(100)).expect("series");
    assert_eq!(
        series, want,
        "series returns every value kind unchanged, ordered by attr then datasetId"
    );

    let state = s.entity(&t, &e).expect("entity").expect("entity exists");
    assert_eq!(
        state.attrs, want,
        "entity state holds every value kind unchanged"
    );
    assert_eq!(state.entity_type, iri("Thing"));
}

/// The latest observation of an attribute wins; an older one is kept in the series but
/// leaves the state alone; replaying a batch changes nothing.
pub fn entity_state_folds(factory: Factory<'_>) {
    let s = factory();
    let t = tenant("adelaide");
    let e = id("AirQualityObserved", "a1");
    let b1 = batch(
        &t,
        vec![
            obs(&e, "AirQualityObserved", "NO2", 10.0, 1_000),
            obs(&e, "AirQualityObserved", "PM10", 5.0, 1_000),
        ],
    );
    s.commit(std::slice::from_ref(&b1)).expect("commit");
    let first = s.entity(&t, &e).unwrap().unwrap();
    assert_eq!(first.attrs.len(), 2);
    assert!(first.created_at <= first.modified_at);

    // Newer wins, older is ignored, both in one call across two batches.
    s.commit(&[
        batch(&t, vec![obs(&e, "AirQualityObserved", "NO2", 20.0, 2_000)]),
        batch(&t, vec![obs(&e, "AirQualityObserved", "NO2", 15.0, 1_500)]),
    ])
    .expect("commit");
    let st = s.entity(&t, &e).unwrap().unwrap();
    assert_eq!(
        st.attr(&iri("NO2")).unwrap().value,
        Value::Number(20.0),
        "latest observation wins"
    );
    assert_eq!(st.created_at, first.created_at, "createdAt never changes");
    assert_eq!(
        times(
            &s.series(
                &t,
                &e,
                &SeriesQuery {
                    attrs: Some(vec![iri("NO2")]),
                    ..all(10)
                }
            )
            .unwrap()
        ),
        vec![1_000, 1_500, 2_000]
    );

    // Replaying everything is idempotent: same state, same series.
    let before = s.entity(&t, &e).unwrap().unwrap();
    let series_before = s.series(&t, &e, &all(100)).unwrap();
    s.commit(&[b1.clone(), b1]).expect("replay");
    assert_eq!(
        s.entity(&t, &e).unwrap().unwrap(),
        before,
        "replay leaves state unchanged"
    );
    assert_eq!(
        s.series(&t, &e, &all(100)).unwrap(),
        series_before,
        "replay adds no points"
    );

    // A commit of nothing is fine.
    assert_eq!(s.commit(&[]).unwrap().observations, 0);
    assert_eq!(s.commit(&[batch(&t, vec![])]).unwrap().observations, 0);
}

/// Types are listed with their entity counts; counts follow creation, not observations.
pub fn types_and_counts(factory: Factory<'_>) {
    let s = factory();
    let t = tenant("adelaide");
    let mut o = Vec::new();
    for i in 0..5 {
        o.push(obs(
            &id("ParkingSpot", &format!("p{i}")),
            "ParkingSpot",
            "status",
            1.0,
            1,
        ));
        o.push(obs(
            &id("ParkingSpot", &format!("p{i}")),
            "ParkingSpot",
            "status",
            0.0,
            2,
        ));
    }
    for i in 0..3 {
        o.push(obs(
            &id("StreetLight", &format!("l{i}")),
            "StreetLight",
            "powerState",
            1.0,
            1,
        ));
    }
    s.commit(&[batch(&t, o)]).expect("commit");
    assert_eq!(
        s.types(&t).unwrap(),
        vec![(iri("ParkingSpot"), 5), (iri("StreetLight"), 3)]
    );
    assert_eq!(s.count_entities(&t, None).unwrap(), 8);
    assert_eq!(s.count_entities(&t, Some(&iri("ParkingSpot"))).unwrap(), 5);
    assert_eq!(s.count_entities(&t, Some(&iri("Nothing"))).unwrap(), 0);
    let points = s.count_points(&t).unwrap();
    assert!(
        points >= 13,
        "count_points counts every committed point (got {points})"
    );
    assert_eq!(s.tenants().unwrap(), vec![t.clone()]);

    // A later observation with another type does not move the entity to that type.
    s.commit(&[batch(
        &t,
        vec![obs(
            &id("ParkingSpot", "p0"),
            "OffStreetParking",
            "status",
            1.0,
            3,
        )],
    )])
    .unwrap();
    assert_eq!(s.count_entities(&t, Some(&iri("ParkingSpot"))).unwrap(), 5);
    assert_eq!(s.types(&t).unwrap().len(), 2);
}

/// Keyset pagination visits every entity exactly once, in id order, with and without a
/// type filter; `ids` selects and `limit` caps.
pub fn pagination_by_cursor(factory: Factory<'_>) {
    let s = factory();
    let t = tenant("adelaide");
    let mut o = Vec::new();
    for i in 0..250 {
        let ty = if i % 3 == 0 {
            "StreetLight"
        } else {
            "ParkingSpot"
        };
        o.push(obs(&id(ty, &format!("{i:04}")), ty, "x", i as f64, 1));
    }
    s.commit(&[batch(&t, o)]).expect("commit");

    for (filter, expect) in [(None, 250usize), (Some(iri("StreetLight")), 84)] {
        let mut seen: Vec<EntityId> = Vec::new();
        let mut after = None;
        loop {
            let q = EntityQuery {
                entity_type: filter.clone(),
                ids: None,
                after: after.clone(),
                limit: 37,
            };
            let page = s.entities(&t, &q).expect("page");
            assert!(page.len() <= 37);
            if page.is_empty() {
                break;
            }
            if let Some(f) = &filter {
                assert!(
                    page.iter().all(|e| &e.entity_type == f),
                    "type filter holds"
                );
            }
            after = page.last().map(|e| e.id.clone());
            seen.extend(page.into_iter().map(|e| e.id));
        }
        assert_eq!(
            seen.len(),
            expect,
            "every entity visited once (filter {filter:?})"
        );
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "ids ascend strictly");
    }

    let pick = vec![
        id("ParkingSpot", "0002"),
        id("StreetLight", "0003"),
        id("ParkingSpot", "9999"),
        id("ParkingSpot", "0001"),
    ];
    let got = s
        .entities(
            &t,
            &EntityQuery {
                ids: Some(pick),
                limit: 10,
                ..EntityQuery::default()
            },
        )
        .unwrap();
    let got: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        got,
        [
            "urn:ngsi-ld:ParkingSpot:0001",
            "urn:ngsi-ld:ParkingSpot:0002",
            "urn:ngsi-ld:StreetLight:0003"
        ]
    );
    let typed = s
        .entities(
            &t,
            &EntityQuery {
                ids: Some(vec![id("StreetLight", "0003"), id("ParkingSpot", "0001")]),
                entity_type: Some(iri("StreetLight")),
                limit: 10,
                after: None,
            },
        )
        .unwrap();
    assert_eq!(typed.len(), 1, "ids and type filters combine");
    assert!(
        s.entities(
            &t,
            &EntityQuery {
                limit: 0,
                ..EntityQuery::default()
            }
        )
        .unwrap()
        .is_empty()
    );
}

/// Time ranges are [from, to); lastN gives the latest N per attribute instance, oldest
/// first; attribute filters and limits hold; negative times order correctly.
pub fn series_queries(factory: Factory<'_>) {
    let s = factory();
    let t = tenant("adelaide");
    let e = id("WeatherObserved", "w1");
    let mut o = Vec::new();
    for i in -10i64..40 {
        o.push(obs(
            &e,
            "WeatherObserved",
            "temperature",
            i as f64,
            i * 1_000,
        ));
        if i % 2 == 0 {
            o.push(obs(&e, "WeatherObserved", "humidity", i as f64, i * 1_000));
        }
        let mut d = obs(
            &e,
            "WeatherObserved",
            "temperature",
            100.0 + i as f64,
            i * 1_000,
        );
        d.dataset_id = Some(Arc::from("urn:ngsi-ld:Dataset:roof"));
        o.push(d);
    }
    // Deliver out of order: the store orders by time.
    o.reverse();
    s.commit(&[batch(&t, o)]).expect("commit");

    let temp = Some(vec![iri("temperature")]);
    let got = s
        .series(
            &t,
            &e,
            &SeriesQuery {
                attrs: temp.clone(),
                from: Some(Timestamp::from_millis(-3_000)),
                to: Some(Timestamp::from_millis(2_000)),
                ..all(100)
            },
        )
        .unwrap();
    assert_eq!(
        times(&got),
        vec![
            -3_000, -2_000, -1_000, 0, 1_000, -3_000, -2_000, -1_000, 0, 1_000
        ],
        "[from, to), default instance then datasets"
    );
    assert!(got[..5].iter().all(|o| o.dataset_id.is_none()));
    assert!(got[5..].iter().all(|o| o.dataset_id.is_some()));

    let last = s
        .series(
            &t,
            &e,
            &SeriesQuery {
                last_n: Some(3),
                ..all(100)
            },
        )
        .unwrap();
    let expect: Vec<(String, Option<Arc<str>>, i64)> = last
        .iter()
        .map(|o| {
            (
                o.attr.to_string(),
                o.dataset_id.clone(),
                o.observed_at.as_millis(),
            )
        })
        .collect();
    assert_eq!(
        expect,
        vec![
            (iri("humidity").to_string(), None, 34_000),
            (iri("humidity").to_string(), None, 36_000),
            (iri("humidity").to_string(), None, 38_000),
            (iri("temperature").to_string(), None, 37_000),
            (iri("temperature").to_string(), None, 38_000),
            (iri("temperature").to_string(), None, 39_000),
            (
                iri("temperature").to_string(),
                Some(Arc::from("urn:ngsi-ld:Dataset:roof")),
                37_000
            ),
            (
                iri("temperature").to_string(),
                Some(Arc::from("urn:ngsi-ld:Dataset:roof")),
                38_000
            ),
            (
                iri("temperature").to_string(),
                Some(Arc::from("urn:ngsi-ld:Dataset:roof")),
                39_000
            ),
        ],
        "lastN per attribute instance, ascending"
    );
    let last_in_range = s
        .series(
            &t,
            &e,
            &SeriesQuery {
                attrs: Some(vec![iri("humidity")]),
                to: Some(Timestamp::from_millis(0)),
                last_n: Some(2),
                ..all(100)
            },
        )
        .unwrap();
    assert_eq!(
        times(&last_in_range),
        vec![-4_000, -2_000],
        "lastN applies within the range"
    );

    let limited = s
        .series(
            &t,
            &e,
            &SeriesQuery {
                attrs: temp,
                ..all(7)
            },
        )
        .unwrap();
    assert_eq!(
        times(&limited),
        vec![-10_000, -9_000, -8_000, -7_000, -6_000, -5_000, -4_000],
        "limit caps the total"
    );
    let both = s
        .series(
            &t,
            &e,
            &SeriesQuery {
                attrs: Some(vec![iri("temperature"), iri("humidity"), iri("humidity")]),
                ..all(1_000)
            },
        )
        .unwrap();
    assert_eq!(
        both.len(),
        25 + 50 + 50,
        "attr filter lists are deduplicated"
    );
    assert_eq!(both[0].attr, iri("humidity"), "ordered by attribute");
    assert!(
        s.series(
            &t,
            &e,
            &SeriesQuery {
                attrs: Some(vec![iri("nope")]),
                ..all(10)
            }
        )
        .unwrap()
        .is_empty()
    );
    assert!(
        s.series(&t, &id("WeatherObserved", "other"), &all(10))
            .unwrap()
            .is_empty()
    );
    assert!(
        s.series(
            &t,
            &e,
            &SeriesQuery {
                from: Some(Timestamp::from_millis(5)),
                to: Some(Timestamp::from_millis(5)),
                ..all(10)
            }
        )
        .unwrap()
        .is_empty()
    );

    // An entity whose id extends another's must not leak into it.
    let e2 = EntityId::new(&format!("{e}x")).unwrap();
    s.commit(&[batch(
        &t,
        vec![obs(&e2, "WeatherObserved", "temperature", 1.0, 1)],
    )])
    .unwrap();
    assert_eq!(s.series(&t, &e, &all(1_000)).unwrap().len(), 125);
}

/// Tenant A never sees tenant B's entities, series, types, counts, devices or dead
/// letters, through any read method.
pub fn tenant_isolation(factory: Factory<'_>) {
    let s = factory();
    let (a, b) = (tenant("adelaide"), tenant("brisbane"));
    let shared = id("ParkingSpot", "same-id");
    let only_b = id("StreetLight", "b-only");
    s.commit(&[
        batch(&a, vec![obs(&shared, "ParkingSpot", "status", 1.0, 10)]),
        batch(
            &b,
            vec![
                obs(&shared, "ParkingSpot", "status", 2.0, 20),
                obs(&only_b, "StreetLight", "powerState", 1.0, 20),
            ],
        ),
    ])
    .expect("commit");
    s.upsert_devices(&[device(&b, "dev-b", 1, 2)]).unwrap();
    s.put_dead_letter(dead_letter(Some(&b), "mqtt", b"b's garbage"))
        .unwrap();

    let sa = s.entity(&a, &shared).unwrap().unwrap();
    assert_eq!(
        sa.attrs[0].value,
        Value::Number(1.0),
        "same id, separate state"
    );
    assert!(s.entity(&a, &only_b).unwrap().is_none());
    let all_a = s
        .entities(
            &a,
            &EntityQuery {
                limit: 100,
                ..EntityQuery::default()
            },
        )
        .unwrap();
    assert_eq!(all_a.len(), 1);
    assert!(
        s.entities(
            &a,
            &EntityQuery {
                ids: Some(vec![only_b.clone()]),
                limit: 10,
                ..EntityQuery::default()
            }
        )
        .unwrap()
        .is_empty()
    );
    assert!(
        s.entities(
            &a,
            &EntityQuery {
                entity_type: Some(iri("StreetLight")),
                limit: 10,
                ..EntityQuery::default()
            }
        )
        .unwrap()
        .is_empty()
    );
    assert_eq!(s.count_entities(&a, None).unwrap(), 1);
    assert_eq!(s.count_entities(&a, Some(&iri("StreetLight"))).unwrap(), 0);
    assert_eq!(s.types(&a).unwrap(), vec![(iri("ParkingSpot"), 1)]);
    assert_eq!(times(&s.series(&a, &shared, &all(100)).unwrap()), vec![10]);
    assert!(s.series(&a, &only_b, &all(100)).unwrap().is_empty());
    assert_eq!(s.count_points(&a).unwrap(), 1);
    assert_eq!(s.count_points(&b).unwrap(), 2);
    assert!(s.device(&a, "dev-b").unwrap().is_none());
    assert!(s.devices(&a, None, 100).unwrap().is_empty());
    assert_eq!(s.count_devices(&a).unwrap(), 0);
    assert_eq!(s.count_devices(&b).unwrap(), 1);
    assert!(
        s.dead_letters(&DeadLetterQuery {
            tenant: Some(a.clone()),
            limit: 100,
            ..DeadLetterQuery::default()
        })
        .unwrap()
        .is_empty()
    );
    assert_eq!(
        s.dead_letters(&DeadLetterQuery {
            tenant: Some(b.clone()),
            limit: 100,
            ..DeadLetterQuery::default()
        })
        .unwrap()
        .len(),
        1
    );
    assert_eq!(s.tenants().unwrap(), vec![a.clone(), b.clone()]);

    // Deleting in A leaves B alone.
    assert!(s.delete_entity(&a, &shared).unwrap());
    assert_eq!(
        s.entity(&b, &shared).unwrap().unwrap().attrs[0].value,
        Value::Number(2.0)
    );
    assert_eq!(s.series(&b, &shared, &all(10)).unwrap().len(), 1);
    assert!(
        !s.delete_entity(&a, &only_b).unwrap(),
        "cannot delete another tenant's entity"
    );
    assert!(s.entity(&b, &only_b).unwrap().is_some());
}

/// Dead letters keep reason, source, tenant, content type and exact payload bytes, get
/// increasing ids, and filter and paginate.
pub fn dead_letters_persist(factory: Factory<'_>) {
    let s = factory();
    let t = tenant("adelaide");
    let raw = [0xa1u8, 0x00, 0xff, b'x'];
    let d0 = s
        .put_dead_letter(dead_letter(Some(&t), "coap", &raw))
        .unwrap();
    let d1 = s
        .put_dead_letter(dead_letter(None, "mqtt", b"{not json"))
        .unwrap();
    let d2 = s
        .put_dead_letter(dead_letter(Some(&t), "mqtt", b""))
        .unwrap();
    assert!(d0 < d1 && d1 < d2, "ids increase");
    assert_eq!(s.dead_letter_count().unwrap(), 3);

    let all = s
        .dead_letters(&DeadLetterQuery {
            limit: 10,
            ..DeadLetterQuery::default()
        })
        .unwrap();
    assert_eq!(
        all.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![d0, d1, d2]
    );
    assert_eq!(all[0].payload, raw, "payload bytes are exact");
    assert_eq!(
        all[0].reason,
        "coap: expected a SenML pack, found garbage at byte 0"
    );
    assert_eq!(
        all[0].content_type.as_deref(),
        Some("application/senml+json")
    );
    assert_eq!(all[0].tenant.as_ref(), Some(&t));
    assert_eq!(all[0].at, Timestamp::from_millis(1_700_000_000_000));
    assert_eq!(all[1].tenant, None);
    assert_eq!(all[1].payload_text(), "{not json");

    let mqtt = s
        .dead_letters(&DeadLetterQuery {
            source: Some("mqtt".into()),
            limit: 10,
            ..DeadLetterQuery::default()
        })
        .unwrap();
    assert_eq!(mqtt.iter().map(|d| d.id).collect::<Vec<_>>(), vec![d1, d2]);
    let page = s
        .dead_letters(&DeadLetterQuery {
            after: Some(d0),
            limit: 1,
            ..DeadLetterQuery::default()
        })
        .unwrap();
    assert_eq!(page.iter().map(|d| d.id).collect::<Vec<_>>(), vec![d1]);
    let mine = s
        .dead_letters(&DeadLetterQuery {
            tenant: Some(t.clone()),
            source: Some("mqtt".into()),
            limit: 10,
            after: None,
        })
        .unwrap();
    assert_eq!(mine.iter().map(|d| d.id).collect::<Vec<_>>(), vec![d2]);
    assert!(
        s.dead_letters(&DeadLetterQuery {
            after: Some(u64::MAX),
            limit: 10,
            ..DeadLetterQuery::default()
        })
        .unwrap()
        .is_empty()
    );
    assert!(
        s.tenants().unwrap().contains(&t),
        "a tenant with only dead letters is listed"
    );
}

/// Upserting a known device keeps its `first_seen`, moves `last_seen` only forward and
/// takes every other field from the update; devices list in id order with a cursor.
pub fn device_upsert_keeps_first_seen(factory: Factory<'_>) {
    let s = factory();
    let t = tenant("adelaide");
    s.upsert_devices(&[device(&t, "eui-02", 100, 200), device(&t, "eui-01", 50, 60)])
        .unwrap();
    let mut later = device(&t, "eui-02", 500, 600);
    later.labels.insert("firmware".into(), "1.2.0".into());
    later.source = "mqtt".into();
    // Twice in one call, and an older sighting: last_seen must not go back.
    s.upsert_devices(&[later.clone(), device(&t, "eui-02", 10, 300)])
        .unwrap();
    let d = s.device(&t, "eui-02").unwrap().unwrap();
    assert_eq!(
        d.first_seen,
        Timestamp::from_millis(100),
        "first_seen is kept"
    );
    assert_eq!(
        d.last_seen,
        Timestamp::from_millis(600),
        "last_seen only advances"
    );
    assert_eq!(d.entity, id("Device", "eui-02"));
    assert_eq!(
        s.count_devices(&t).unwrap(),
        2,
        "an upsert of a known device is not a new device"
    );

    let more: Vec<Device> = (3..30)
        .map(|i| device(&t, &format!("eui-{i:02}"), 1, 1))
        .collect();
    s.upsert_devices(&more).unwrap();
    assert_eq!(s.count_devices(&t).unwrap(), 29);
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s.devices(&t, after.as_deref(), 8).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|d| d.device_id.clone());
        seen.extend(page.into_iter().map(|d| d.device_id));
    }
    let want: Vec<String> = (1..30).map(|i| format!("eui-{i:02}")).collect();
    assert_eq!(seen, want, "devices page in id order");
    assert!(s.device(&t, "nope").unwrap().is_none());
    s.upsert_devices(&[]).unwrap();
}

/// Deleting an entity removes its state, its series and its count, durably, and only
/// its own.
pub fn delete_entity_removes_state_and_series(factory: Factory<'_>) {
    let s = factory();
    let t = tenant("adelaide");
    let (e1, e2) = (id("ParkingSpot", "1"), id("ParkingSpot", "10"));
    s.commit(&[batch(
        &t,
        vec![
            obs(&e1, "ParkingSpot", "status", 1.0, 1),
            obs(&e1, "ParkingSpot", "status", 1.0, 2),
            obs(&e2, "ParkingSpot", "status", 1.0, 1),
        ],
    )])
    .unwrap();
    assert!(s.delete_entity(&t, &e1).unwrap());
    assert!(s.entity(&t, &e1).unwrap().is_none());
    assert!(s.series(&t, &e1, &all(10)).unwrap().is_empty());
    assert_eq!(
        s.series(&t, &e2, &all(10)).unwrap().len(),
        1,
        "an id sharing a prefix survives"
    );
    assert_eq!(s.count_entities(&t, None).unwrap(), 1);
    assert_eq!(s.types(&t).unwrap(), vec![(iri("ParkingSpot"), 1)]);
    assert!(
        !s.delete_entity(&t, &e1).unwrap(),
        "second delete finds nothing"
    );
    assert!(s.delete_entity(&t, &e2).unwrap());
    assert!(
        s.types(&t).unwrap().is_empty(),
        "a type with no entities is not listed"
    );

    // The entity comes back, fresh, on its next observation.
    s.commit(&[batch(&t, vec![obs(&e1, "ParkingSpot", "status", 0.0, 0)])])
        .unwrap();
    assert_eq!(s.entity(&t, &e1).unwrap().unwrap().attrs.len(), 1);
}

/// A new store answers every read with nothing, not an error.
pub fn empty_store_answers_empty(factory: Factory<'_>) {
    let s = factory();
    let t = tenant("nowhere");
    let e = id("X", "1");
    assert!(s.entity(&t, &e).unwrap().is_none());
    assert!(
        s.entities(
            &t,
            &EntityQuery {
                limit: 10,
                ..EntityQuery::default()
            }
        )
        .unwrap()
        .is_empty()
    );
    assert_eq!(s.count_entities(&t, None).unwrap(), 0);
    assert!(s.types(&t).unwrap().is_empty());
    assert!(s.tenants().unwrap().is_empty());
    assert!(!s.delete_entity(&t, &e).unwrap());
    assert!(s.series(&t, &e, &all(10)).unwrap().is_empty());
    assert_eq!(s.count_points(&t).unwrap(), 0);
    assert!(
        s.dead_letters(&DeadLetterQuery {
            limit: 10,
            ..DeadLetterQuery::default()
        })
        .unwrap()
        .is_empty()
    );
    assert_eq!(s.dead_letter_count().unwrap(), 0);
    assert!(s.device(&t, "d").unwrap().is_none());
    assert!(s.devices(&t, None, 10).unwrap().is_empty());
    assert_eq!(s.count_devices(&t).unwrap(), 0);
    s.sync().unwrap();
    s.disk_usage().unwrap();
}

/// Documents are kept per kind and tenant: same id in two tenants or two kinds are two
/// documents; replace, list in order, delete.
pub fn documents_by_kind_and_tenant(factory: Factory<'_>) {
    let s = factory();
    let (a, b) = (tenant("adelaide"), tenant("brisbane"));
    assert!(s.documents("subscription").unwrap().is_empty());
    s.put_document("subscription", &b, "urn:s:1", b"{\"b\":1}")
        .unwrap();
    s.put_document("subscription", &a, "urn:s:2", b"{\"a\":2}")
        .unwrap();
    s.put_document("subscription", &a, "urn:s:1", b"{\"a\":1}")
        .unwrap();
    s.put_document("registration", &a, "urn:s:1", b"{\"r\":1}")
        .unwrap();
    assert_eq!(
        s.document("subscription", &a, "urn:s:1")
            .unwrap()
            .as_deref(),
        Some(&b"{\"a\":1}"[..])
    );
    assert_eq!(s.document("subscription", &b, "urn:s:2").unwrap(), None);
    let all = s.documents("subscription").unwrap();
    let keys: Vec<_> = all
        .iter()
        .map(|(t, id, _)| (t.as_str().to_owned(), id.clone()))
        .collect();
    assert_eq!(
        keys,
        [
            ("adelaide", "urn:s:1"),
            ("adelaide", "urn:s:2"),
            ("brisbane", "urn:s:1")
        ]
        .map(|(t, i)| (t.to_owned(), i.to_owned()))
    );
    // Replace, then delete.
    s.put_document("subscription", &a, "urn:s:1", b"{}")
        .unwrap();
    assert_eq!(
        s.document("subscription", &a, "urn:s:1")
            .unwrap()
            .as_deref(),
        Some(&b"{}"[..])
    );
    assert!(s.delete_document("subscription", &a, "urn:s:1").unwrap());
    assert!(!s.delete_document("subscription", &a, "urn:s:1").unwrap());
    assert_eq!(s.documents("subscription").unwrap().len(), 2);
    assert_eq!(s.documents("registration").unwrap().len(), 1);
}

/// Entity operations and replace semantics: creation without attributes, several types
/// and a scope, update whatever `observedAt`, attribute and entity deletion, history
/// deletion, all in order within one commit.
pub fn entity_operations(factory: Factory<'_>) {
    let store = factory();
    let t = tenant("ops");
    let e = id("Building", "b1");
    let ops = |ops: Vec<EntityOp>, observations: Vec<Observation>| Batch {
        ops,
        fold: Fold::Replace,
        ..batch(&t, observations)
    };
    // An entity with two types, a scope and no attributes.
    store
        .commit(&[ops(
            vec![EntityOp::Ensure {
                entity: e.clone(),
                types: vec![iri("Building"), iri("Asset")],
                scope: Some(vec![Arc::from("/Paris")]),
            }],
            vec![],
        )])
        .expect("create without attributes");
    let s = store.entity(&t, &e).unwrap().expect("the entity exists");
    assert!(s.attrs.is_empty());
    assert_eq!(
        s.types().cloned().collect::<Vec<_>>(),
        [iri("Building"), iri("Asset")]
    );
    assert_eq!(s.scope, [Arc::<str>::from("/Paris")]);
    for ty in ["Building", "Asset"] {
        let found = store
            .entities(&t, &EntityQuery::all(Some(iri(ty))))
            .unwrap();
        assert_eq!(found.len(), 1, "found by its type {ty}");
        assert_eq!(store.count_entities(&t, Some(&iri(ty))).unwrap(), 1);
    }

    // Replace semantics: an older observedAt still replaces the value.
    store
        .commit(&[batch(&t, vec![obs(&e, "Building", "height", 10.0, 2_000)])])
        .unwrap();
    store
        .commit(&[ops(
            vec![],
            vec![obs(&e, "Building", "height", 12.0, 1_000)],
        )])
        .unwrap();
    let s = store.entity(&t, &e).unwrap().unwrap();
    assert_eq!(s.attr(&iri("height")).unwrap().value, Value::Number(12.0));
    let times = s
        .times(&iri("height"), None)
        .expect("attribute times are kept");
    assert!(times.modified_at >= times.created_at);
    assert_eq!(
        times_of(&*store, &t, &e),
        vec![1_000, 2_000],
        "both points are in the history"
    );

    // Delete one instance of a multi-instance attribute, then clear and replace in
    // one batch: the operations run before the observations.
    let mut radar = obs(&e, "Building", "height", 11.0, 3_000);
    radar.dataset_id = Some(Arc::from("urn:ngsi-ld:Dataset:radar"));
    store.commit(&[batch(&t, vec![radar])]).unwrap();
    store
        .commit(&[ops(
            vec![EntityOp::DeleteAttr {
                entity: e.clone(),
                attr: iri("height"),
                instances: Instances::Dataset(Arc::from("urn:ngsi-ld:Dataset:radar")),
            }],
            vec![],
        )])
        .unwrap();
    let s = store.entity(&t, &e).unwrap().unwrap();
    assert_eq!(
        s.instances(&iri("height")).count(),
        1,
        "only the radar instance went"
    );
    let deleted: Vec<Observation> = store
        .series(&t, &e, &all(usize::MAX))
        .unwrap()
        .into_iter()
        .filter(|o| polity_model::ngsild::is_tombstone(&o.attr, &o.value))
        .collect();
    assert_eq!(deleted.len(), 1, "the deletion is recorded in the history");
    assert_eq!(
        deleted[0].dataset_id.as_deref(),
        Some("urn:ngsi-ld:Dataset:radar")
    );
    let recorded = store.recorded_series(&t, &e, &all(usize::MAX)).unwrap();
    assert!(
        recorded.iter().all(|p| p.recorded_at.as_millis() > 4_000),
        "every point knows when it was recorded"
    );
    store
        .commit(&[ops(
            vec![
                EntityOp::ClearAttrs { entity: e.clone() },
                EntityOp::SetTypes {
                    entity: e.clone(),
                    types: vec![iri("Asset")],
                },
            ],
            vec![obs(&e, "Building", "floors", 3.0, 4_000)],
        )])
        .unwrap();
    let s = store.entity(&t, &e).unwrap().unwrap();
    assert_eq!(s.attrs.len(), 1);
    assert_eq!(&*s.attrs[0].attr, &*iri("floors"));
    assert_eq!(s.types().cloned().collect::<Vec<_>>(), [iri("Asset")]);
    assert!(
        store
            .entities(&t, &EntityQuery::all(Some(iri("Building"))))
            .unwrap()
            .is_empty(),
        "the type index follows a type change"
    );

    // History: delete one point, then all of an attribute's.
    store
        .commit(&[ops(
            vec![EntityOp::DeleteHistory {
                entity: e.clone(),
                attr: iri("height"),
                instances: Instances::Default,
                at: Some(Timestamp::from_millis(1_000)),
            }],
            vec![],
        )])
        .unwrap();
    assert_eq!(times_of(&*store, &t, &e), vec![2_000, 3_000, 4_000]);
    store
        .commit(&[ops(
            vec![EntityOp::DeleteHistory {
                entity: e.clone(),
                attr: iri("height"),
                instances: Instances::All,
                at: None,
            }],
            vec![],
        )])
        .unwrap();
    assert_eq!(times_of(&*store, &t, &e), vec![4_000]);
    assert_eq!(store.count_points(&t).unwrap(), 1);

    // Observations then deletion in the same group: nothing is left.
    let e2 = id("Building", "b2");
    store
        .commit(&[
            batch(&t, vec![obs(&e2, "Building", "height", 1.0, 5_000)]),
            ops(vec![EntityOp::DeleteEntity { entity: e2.clone() }], vec![]),
        ])
        .unwrap();
    assert!(store.entity(&t, &e2).unwrap().is_none());
    assert!(times_of(&*store, &t, &e2).is_empty());
    assert_eq!(store.count_points(&t).unwrap(), 1);

    // Deleting the entity removes its state and history.
    store
        .commit(&[ops(
            vec![EntityOp::DeleteEntity { entity: e.clone() }],
            vec![],
        )])
        .unwrap();
    assert!(store.entity(&t, &e).unwrap().is_none());
    assert_eq!(store.count_points(&t).unwrap(), 0);
    assert!(store.types(&t).unwrap().is_empty());
}

/// The instants of an entity's history, deletion records left out.
fn times_of(store: &dyn Store, t: &Tenant, e: &EntityId) -> Vec<i64> {
    let points: Vec<Observation> = store
        .series(t, e, &all(usize::MAX))
        .unwrap()
        .into_iter()
        .filter(|o| !polity_model::ngsild::is_tombstone(&o.attr, &o.value))
        .collect();
    let mut v = times(&points);
    v.sort_unstable();
    v
}
