//! `polity up` serves the demo nation within 30 s: every city's entities of every type,
//! with `observedAt` and normalized units, the city list, metrics, the overview page and
//! backfilled history.

use std::time::{Duration, Instant};

use polity_model::Timestamp;
use serde_json::Value;

use crate::common::{
    Proc, addr_after, client_as, free_tcp_port, free_udp_port, get_json, metric, metrics,
    wait_healthy,
};

const TENANTS: [&str; 3] = ["adelaide", "melbourne", "sydney"];
const CITIES: [&str; 3] = ["Adelaide", "Melbourne", "Sydney"];
const TYPES: [&str; 5] = [
    "WaterConsumptionObserved",
    "ACMeasurement",
    "ParkingSpot",
    "TrafficFlowObserved",
    "AirQualityObserved",
];

/// The instances of attribute `a` of a normalized entity (one, or several datasets).
fn instances(a: &Value) -> Vec<&Value> {
    match a {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

/// Every numeric Property of `entity` carries `observedAt`.
fn check_observed_at(tenant: &str, entity: &Value) {
    let obj = entity.as_object().expect("an entity is an object");
    for (name, attr) in obj {
        if matches!(name.as_str(), "id" | "type" | "@context") {
            continue;
        }
        for inst in instances(attr) {
            if inst["type"] == "Property" && inst["value"].is_number() {
                assert!(
                    inst["observedAt"].is_string(),
                    "{tenant} {}: numeric Property `{name}` has no observedAt: {inst}",
                    entity["id"]
                );
            }
        }
    }
}

/// Checks that every entity in `list` having `attr` gives it in `unit` with a value in
/// `range`, and that at least one has it.
fn check_unit(
    tenant: &str,
    ty: &str,
    list: &[Value],
    attr: &str,
    unit: &str,
    range: std::ops::RangeInclusive<f64>,
) {
    let mut seen = 0;
    for e in list {
        let Some(a) = e.get(attr) else { continue };
        for inst in instances(a) {
            seen += 1;
            assert_eq!(
                inst["unitCode"], unit,
                "{tenant} {ty} {}: `{attr}` should be normalized to {unit}: {inst}",
                e["id"]
            );
            let v = inst["value"].as_f64().unwrap_or(f64::NAN);
            assert!(
                range.contains(&v),
                "{tenant} {ty} {}: `{attr}` = {v} {unit} is implausible (expected {range:?})",
                e["id"]
            );
        }
    }
    assert!(seen > 0, "no {tenant} {ty} entity has `{attr}`: {list:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_the_demo_within_30_s() {
    let spawned = Instant::now();
    let deadline = spawned + Duration::from_secs(30);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let mqtt = format!("127.0.0.1:{}", free_tcp_port());
    let coap = format!("127.0.0.1:{}", free_udp_port());
    let mut proc = Proc::spawn(
        &[
            "up",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
            data,
            "--mqtt-listen",
            &mqtt,
            "--coap-listen",
            &coap,
            "--devices",
            "200",
        ],
        dir.path(),
        "up",
    );
    let out = proc
        .wait_for_stdout("Press Ctrl-C to stop.", deadline)
        .await;
    let base = format!("http://{}", addr_after(&out, "Overview        http://"));
    // The listeners are where the flags put them.
    assert_eq!(addr_after(&out, "-> mqtt://").to_string(), mqtt, "{out}");
    assert_eq!(addr_after(&out, "-> udp://").to_string(), coap, "{out}");
    // Every route needs a token; read as the national operator (public data of every
    // city, the pages and the metrics).
    assert!(out.contains("/login#"), "up prints a sign-in link: {out}");
    let http = client_as(std::path::Path::new(data), "operator");
    wait_healthy(&mut proc, &http, &base, deadline).await;
    let healthy = spawned.elapsed();
    // /health reports the Melbourne subscription, which start-up waited for.
    let (_, health) = get_json(&http, &format!("{base}/health"), "adelaide").await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["sources"]["melbourne-mqtt"], "connected", "{health}");

    // Every city has entities of every type, within the deadline.
    let mut lists = std::collections::HashMap::new();
    for tenant in TENANTS {
        for ty in TYPES {
            let url = format!("{base}/ngsi-ld/v1/entities?type={ty}&limit=5");
            let list = loop {
                let (status, body) = get_json(&http, &url, tenant).await;
                if status == 200
                    && let Some(items) = body.as_array()
                    && !items.is_empty()
                {
                    break items.clone();
                }
                assert!(
                    Instant::now() < deadline,
                    "{tenant} has no {ty} entity 30 s after start (last answer {status} {body})\n{}",
                    proc.output()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            assert!(list.len() <= 5, "limit=5 returned {}", list.len());
            for e in &list {
                assert_eq!(e["type"], ty, "{tenant}: {e}");
                check_observed_at(tenant, e);
            }
            lists.insert((tenant, ty), list);
        }
    }
    let all_types = spawned.elapsed();

    // Units are normalized to canonical UN/CEFACT codes whatever the device sent.
    check_unit(
        "adelaide",
        "ACMeasurement",
        &lists[&("adelaide", "ACMeasurement")],
        "totalActiveEnergyImport",
        "KWH",
        0.0..=1e9,
    );
    check_unit(
        "melbourne",
        "AirQualityObserved",
        &lists[&("melbourne", "AirQualityObserved")],
        "temperature",
        "CEL",
        -10.0..=50.0,
    );
    check_unit(
        "sydney",
        "TrafficFlowObserved",
        &lists[&("sydney", "TrafficFlowObserved")],
        "averageVehicleSpeed",
        "KMH",
        0.0..=250.0,
    );

    // The city list names each city with its tenant, feed and sources.
    let cities: Value = http
        .get(format!("{base}/api/cities"))
        .send()
        .await
        .expect("GET /api/cities")
        .json()
        .await
        .expect("/api/cities is JSON");
    let cities = cities.as_array().expect("/api/cities is an array");
    assert_eq!(cities.len(), 3, "{cities:?}");
    for (name, tenant) in CITIES.iter().zip(TENANTS) {
        let c = cities
            .iter()
            .find(|c| c["name"] == *name)
            .unwrap_or_else(|| panic!("{name} missing from /api/cities: {cities:?}"));
        assert_eq!(c["tenant"], tenant, "{c}");
        assert!(
            c["feed"].as_str().is_some_and(|f| !f.is_empty()),
            "{name} has no feed: {c}"
        );
        assert!(
            c["sources"].as_array().is_some_and(|s| !s.is_empty()),
            "{name} lists no sources: {c}"
        );
    }

    // Every feeding source has received messages.
    let feeding = ["adelaide-coap", "melbourne-mqtt", "http-ngsi-ld"];
    loop {
        let text = metrics(&http, &base).await;
        let counts: Vec<(&str, Option<f64>)> = feeding
            .iter()
            .map(|s| {
                (
                    *s,
                    metric(
                        &text,
                        "polity_source_messages_total",
                        &format!("source=\"{s}\""),
                    ),
                )
            })
            .collect();
        if counts.iter().all(|(_, n)| n.is_some_and(|n| n > 0.0)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "polity_source_messages_total is not positive for every source: {counts:?}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The overview page names every city.
    let r = http.get(format!("{base}/")).send().await.expect("GET /");
    assert_eq!(r.status().as_u16(), 200);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(ct.starts_with("text/html"), "overview content type {ct}");
    let html = r.text().await.expect("overview body");
    for name in CITIES {
        assert!(html.contains(name), "overview does not mention {name}");
    }

    // Backfilled history: several instances over the last 3 hours.
    let since = Timestamp::from_millis(Timestamp::now().as_millis() - 3 * 3_600_000);
    let id = lists[&("adelaide", "ACMeasurement")][0]["id"]
        .as_str()
        .expect("entity id")
        .to_owned();
    let url = format!("{base}/ngsi-ld/v1/temporal/entities/{id}?timerel=after&timeAt={since}");
    let most = loop {
        let (status, body) = get_json(&http, &url, "adelaide").await;
        assert_eq!(status, 200, "temporal {id}: {body}");
        let most = body
            .as_object()
            .expect("temporal entity")
            .iter()
            .filter_map(|(_, v)| v.as_array().map(Vec::len))
            .max()
            .unwrap_or(0);
        if most >= 4 {
            break most;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "temporal {id} since {since} has at most {most} instances per attribute: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    proc.assert_no_panic();
    println!(
        "polity up: healthy after {:.1} s, every city and type served after {:.1} s; {id} has {most} instances in the last 3 h",
        healthy.as_secs_f64(),
        all_types.as_secs_f64()
    );
}

/// An MQTT source whose broker is down degrades the node without stopping it: start-up
/// goes on after waiting, `/health` says which source is disconnected, and the API serves.
#[tokio::test]
async fn a_source_whose_broker_is_down_degrades_health_but_the_node_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        r#"[node]
http = "127.0.0.1:0"
data_dir = "{}"

[sources.m]
type = "mqtt"
broker = "127.0.0.1:{}"
tenant = "nowhere"
"#,
        dir.path().join("data").display(),
        free_tcp_port(),
    );
    let node = crate::common::serve(&config, dir.path(), "broker-down").await;
    let http = client_as(&dir.path().join("data"), "operator");
    let (status, health) = get_json(&http, &format!("{}/health", node.base), "nowhere").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["sources"]["m"], "disconnected", "{health}");
    assert_eq!(health["store"], "ok", "{health}");
    let (status, cities) = get_json(&http, &format!("{}/api/cities", node.base), "nowhere").await;
    assert_eq!(status, 200, "{cities}");
    // Paths and methods nobody serves answer with ProblemDetails too.
    let (status, p) = get_json(
        &http,
        &format!("{}/ngsi-ld/v1/nowhere", node.base),
        "nowhere",
    )
    .await;
    assert_eq!(
        (status, p["type"].as_str()),
        (
            404,
            Some("https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound")
        ),
        "{p}"
    );
    let (status, p) = get_json(&http, &format!("{}/nothing-here", node.base), "nowhere").await;
    assert_eq!(
        (status, p["type"].as_str()),
        (
            404,
            Some("https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound")
        ),
        "{p}"
    );
    let r = http
        .delete(format!("{}/ngsi-ld/v1/types", node.base))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 405);
    let p: Value = r.json().await.expect("a ProblemDetails body");
    assert!(
        p["detail"].as_str().is_some_and(|d| d.contains("DELETE")),
        "{p}"
    );
}

/// SIGTERM stops `polity up` promptly and cleanly even while a browser holds the
/// overview's live stream open (the stream ends on shutdown instead of holding it up).
#[tokio::test]
async fn sigterm_stops_up_promptly_with_a_live_page_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (mqtt, coap) = (
        format!("127.0.0.1:{}", free_tcp_port()),
        format!("127.0.0.1:{}", free_udp_port()),
    );
    let args = [
        "up",
        "--http",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--mqtt-listen",
        &mqtt,
        "--coap-listen",
        &coap,
        "--devices",
        "30",
    ];
    let mut proc = Proc::spawn(&args, dir.path(), "up-stop");
    let out = proc
        .wait_for_stdout(
            "Press Ctrl-C to stop.",
            Instant::now() + Duration::from_secs(30),
        )
        .await;
    let base = format!("http://{}", addr_after(&out, "Overview        http://"));
    // Hold the live stream open, reading its first event.
    let mut stream = client_as(&data, "operator")
        .get(format!("{base}/api/overview/stream"))
        .send()
        .await
        .expect("open the live stream");
    assert!(stream.chunk().await.expect("first event").is_some());
    proc.terminate();
    let status = proc.wait_exit(Duration::from_secs(8)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "polity up did not stop cleanly within 8 s of SIGTERM with a stream open: {status:?}\n{}",
        proc.output()
    );
    assert!(proc.stdout().contains("Stopping"), "{}", proc.output());
}
