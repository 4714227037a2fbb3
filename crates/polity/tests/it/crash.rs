//! `kill -9` under load loses no acknowledged observation.
//!
//! A node ingests from concurrent HTTP batch-upsert writers and CoAP SenML-CBOR writers;
//! each writer records a request's observations as acknowledged only when the node
//! answered success (HTTP 201/204, CoAP 2.04). The node is SIGKILLed at a random-ish
//! moment, restarted on the same data directory, and every acknowledged observation
//! (entity, observedAt, value) must be in the temporal series, with entity state at
//! least as new as the newest acknowledged one. Three kill points, each checked
//! cumulatively (earlier rounds must survive later kills too).

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::SeqCst},
    },
    time::{Duration, Instant},
};

use coap_lite::ContentFormat;
use polity_model::{Pack, Record, Timestamp};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::common::{CoapClient, ServeNode, client_as, free_udp_port, get_json, is_changed, serve};

/// Entities each writer writes in every request (one observation each).
const ENTITIES: usize = 8;
const HTTP_WRITERS: usize = 3;
const COAP_WRITERS: usize = 2;
const ROUNDS: usize = 3;
const TENANT: &str = "crash";
/// Shortest time between two requests of one writer: keeps the load realistic on two
/// shared cores and every series well under the temporal API's 10 000-instance page.
const PACE: Duration = Duration::from_millis(2);
/// 2026-01-01T00:00:00Z; observation `n` of a writer is at BASE + n s.
const BASE_MS: i64 = 1_767_225_600_000;

fn time_ms(n: u64) -> i64 {
    BASE_MS + n as i64 * 1000
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Path_ {
    Http,
    Coap,
}

/// What one writer sent and which of its requests were acknowledged.
#[derive(Debug)]
struct Writer {
    path: Path_,
    /// Entity ids are `{prefix}{i}` for i in 0..ENTITIES.
    prefix: String,
    /// Sequence numbers (1…) of acknowledged requests; each covers every entity.
    acked: Vec<u64>,
    /// The highest sequence number sent.
    sent: u64,
    /// Answers that were neither success nor a dropped connection.
    unexpected: Vec<String>,
}

impl Writer {
    fn observations(&self) -> usize {
        self.acked.len() * ENTITIES
    }
}

fn config(dir: &Path) -> String {
    format!(
        r#"[node]
http = "127.0.0.1:0"
data_dir = "{}"

[sources.c]
type = "coap"
listen = "127.0.0.1:{}"
tenant = "{TENANT}"
"#,
        dir.join("data").display(),
        free_udp_port()
    )
}

async fn http_writer(
    http: reqwest::Client,
    base: String,
    prefix: String,
    stop: Arc<AtomicBool>,
) -> Writer {
    let url = format!("{base}/ngsi-ld/v1/entityOperations/upsert");
    let mut w = Writer {
        path: Path_::Http,
        prefix,
        acked: Vec::new(),
        sent: 0,
        unexpected: Vec::new(),
    };
    let mut pace = tokio::time::interval(PACE);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(SeqCst) {
        pace.tick().await;
        let n = w.sent + 1;
        w.sent = n;
        let at = Timestamp::from_millis(time_ms(n)).to_string();
        let body: Vec<Value> = (0..ENTITIES)
            .map(|i| {
                json!({
                    "id": format!("{}{i}", w.prefix),
                    "type": "Meter",
                    "seq": {"type": "Property", "value": n, "observedAt": at},
                })
            })
            .collect();
        let r = http
            .post(&url)
            .header("NGSILD-Tenant", TENANT)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&body).expect("encode"))
            .send()
            .await;
        match r {
            Ok(r) if matches!(r.status().as_u16(), 201 | 204) => w.acked.push(n),
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                w.unexpected.push(format!("{status}: {text}"));
            }
            // The node was killed (or the connection broke): not acknowledged.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    w
}

async fn coap_writer(addr: std::net::SocketAddr, prefix: String, stop: Arc<AtomicBool>) -> Writer {
    let mut coap = CoapClient::connect(addr).await;
    let mut w = Writer {
        path: Path_::Coap,
        prefix,
        acked: Vec::new(),
        sent: 0,
        unexpected: Vec::new(),
    };
    let mut pace = tokio::time::interval(PACE);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(SeqCst) {
        pace.tick().await;
        let n = w.sent + 1;
        w.sent = n;
        let secs = time_ms(n) as f64 / 1000.0;
        let pack = Pack(
            (0..ENTITIES)
                .map(|i| Record {
                    n: Some(format!("{}{i}:seq", w.prefix)),
                    v: Some(n as f64),
                    t: Some(secs),
                    ..Record::default()
                })
                .collect(),
        );
        let r = coap
            .post(
                "senml",
                Some(ContentFormat::ApplicationSenmlCBOR),
                pack.to_cbor(),
                4,
                Duration::from_secs(1),
            )
            .await;
        match r {
            Some(p) if is_changed(&p) => w.acked.push(n),
            Some(p) => w.unexpected.push(format!(
                "{:?}: {}",
                p.header.code,
                String::from_utf8_lossy(&p.payload)
            )),
            None => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    w
}

/// Checks every acknowledged observation of `w` on the node at `base`; returns how many
/// observations were checked.
async fn verify(http: reqwest::Client, base: String, w: Arc<Writer>) -> usize {
    if w.acked.is_empty() {
        return 0;
    }
    let newest = *w.acked.iter().max().expect("not empty");
    let mut checked = 0;
    for i in 0..ENTITIES {
        let id = format!("{}{i}", w.prefix);
        let url = format!(
            "{base}/ngsi-ld/v1/temporal/entities/{id}?timerel=after&timeAt=1970-01-01T00:00:00Z&options=temporalValues"
        );
        let (status, body) = get_json(&http, &url, TENANT).await;
        assert_eq!(status, 200, "{:?} {id}: temporal GET: {body}", w.path);
        let values = body["seq"]["values"]
            .as_array()
            .unwrap_or_else(|| panic!("{:?} {id}: no seq values in {body}", w.path));
        let stored: std::collections::HashMap<i64, f64> = values
            .iter()
            .map(|pair| {
                let t = pair[1].as_str().expect("time string");
                let t = Timestamp::parse(t).expect("RFC 3339 time").as_millis();
                (t, pair[0].as_f64().expect("numeric value"))
            })
            .collect();
        assert!(
            stored.len() as u64 <= w.sent,
            "{:?} {id}: {} instances stored but only {} sent",
            w.path,
            stored.len(),
            w.sent
        );
        for &n in &w.acked {
            match stored.get(&time_ms(n)) {
                Some(v) if *v == n as f64 => {}
                other => panic!(
                    "{:?} {id}: acknowledged observation #{n} at {} is LOST (found {other:?}; {} of {} acked instances stored)",
                    w.path,
                    Timestamp::from_millis(time_ms(n)),
                    w.acked
                        .iter()
                        .filter(|a| stored.contains_key(&time_ms(**a)))
                        .count(),
                    w.acked.len()
                ),
            }
            checked += 1;
        }
        let (status, entity) =
            get_json(&http, &format!("{base}/ngsi-ld/v1/entities/{id}"), TENANT).await;
        assert_eq!(status, 200, "{:?} {id}: entity GET: {entity}", w.path);
        let latest = entity["seq"]["value"]
            .as_f64()
            .unwrap_or_else(|| panic!("{:?} {id}: no seq value in {entity}", w.path));
        assert!(
            latest >= newest as f64 && latest <= w.sent as f64,
            "{:?} {id}: entity state seq {latest}, but #{newest} was acknowledged and #{} was the last sent",
            w.path,
            w.sent
        );
    }
    checked
}

/// A pseudo-random number in `0..n` that differs from run to run.
fn jitter(n: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (nanos ^ (nanos >> 17)).wrapping_mul(0x9E37_79B9_7F4A_7C15) % n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_observation() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node: ServeNode = serve(&config(dir.path()), dir.path(), "crash-0").await;
    // A gateway application that may write and read the tenant.
    let http = client_as(
        &dir.path().join("data"),
        &format!("app:crash-test:{TENANT}"),
    );
    let mut writers: Vec<Arc<Writer>> = Vec::new();
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        for k in 0..HTTP_WRITERS {
            let prefix = format!("urn:ngsi-ld:Meter:w{}-", round * 10 + k);
            tasks.spawn(http_writer(
                http.clone(),
                node.base.clone(),
                prefix,
                stop.clone(),
            ));
        }
        let coap_addr = node.coap.expect("the CoAP source address");
        for k in 0..COAP_WRITERS {
            let prefix = format!("urn:ngsi-ld:Meter:c{}-", round * 10 + k);
            tasks.spawn(coap_writer(coap_addr, prefix, stop.clone()));
        }
        let load = Duration::from_millis(1500 + jitter(1500));
        tokio::time::sleep(load).await;
        node.proc.assert_no_panic();
        node.proc.kill9();
        stop.store(true, SeqCst);
        let mut round_writers = Vec::new();
        while let Some(w) = tokio::time::timeout(Duration::from_secs(15), tasks.join_next())
            .await
            .expect("writers stop after the kill")
        {
            round_writers.push(w.expect("writer task"));
        }
        for w in &round_writers {
            assert!(
                w.unexpected.is_empty(),
                "{:?} writer {} got unexpected answers: {:?}",
                w.path,
                w.prefix,
                &w.unexpected[..w.unexpected.len().min(5)]
            );
        }
        let count = |p: Path_| -> (usize, usize, u64) {
            round_writers
                .iter()
                .filter(|w| w.path == p)
                .fold((0, 0, 0), |(r, o, s), w| {
                    (r + w.acked.len(), o + w.observations(), s + w.sent)
                })
        };
        let (http_req, http_obs, http_sent) = count(Path_::Http);
        let (coap_req, coap_obs, coap_sent) = count(Path_::Coap);
        println!(
            "round {round}: SIGKILL after {} ms of load; acknowledged before the kill: HTTP {http_req} of {http_sent} requests ({http_obs} observations), CoAP {coap_req} of {coap_sent} packs ({coap_obs} observations)",
            load.as_millis()
        );
        assert!(
            http_obs >= 200,
            "only {http_obs} HTTP observations acknowledged in round {round}; the test means little"
        );
        assert!(
            coap_obs >= 200,
            "only {coap_obs} CoAP observations acknowledged in round {round}; the test means little"
        );
        writers.extend(round_writers.into_iter().map(Arc::new));

        // Restart on the same data directory and check everything acknowledged so far.
        node = serve(
            &config(dir.path()),
            dir.path(),
            &format!("crash-{}", round + 1),
        )
        .await;
        let mut checks = JoinSet::new();
        for w in &writers {
            checks.spawn(verify(http.clone(), node.base.clone(), w.clone()));
        }
        let mut checked = 0;
        while let Some(n) = checks.join_next().await {
            checked += n.expect("verification task");
        }
        println!(
            "round {round}: after restart all {checked} acknowledged observations (rounds 0..={round}) are stored"
        );
    }
    node.proc.assert_no_panic();
    println!("kill -9 test took {:.1} s", started.elapsed().as_secs_f64());
}
