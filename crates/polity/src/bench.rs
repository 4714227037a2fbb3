//! `polity bench …`: benchmarks that print each figure as `name: value unit`.
//!
//! `bench ingest` starts a real node in this process on a fresh data directory and
//! loopback ports, drives each source kind with a load generator for a fixed time, and
//! reports end-to-end durable throughput (observations committed to storage per second,
//! from the pipeline's own counter), acknowledgement latency percentiles and peak RSS.
//! The load generator shares the machine (and this process) with the node, so figures
//! are lower bounds of what the node alone could do.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use coap_lite::{ContentFormat, MessageClass, MessageType, Packet, RequestType, ResponseType};
use polity_model::{
    Timestamp,
    senml::{Pack, Record},
};

use crate::{
    config::{self, BrokerSection, Config},
    node::{self, FlagNames, Progress},
};

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// End-to-end ingest into durable storage, per source kind.
    Ingest(IngestArgs),
}

/// Options of `bench ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Seconds of load per source kind.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Observations per HTTP request or SenML pack, for the batched sources.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// CoAP requests and MQTT publishes in flight at once.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Only these scenarios (comma-separated): http-ngsi-ld, http-senml, coap, mqtt.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where the scenario data dirs go (a temporary directory by default).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Runs a benchmark.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Ingest(a) => ingest(a).await,
    }
}

#[derive(Default)]
struct Latencies(Mutex<Vec<u32>>);

impl Latencies {
    fn record(&self, d: Duration) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(d.as_micros().min(u32::MAX as u128) as u32);
    }
    fn percentile(&self, p: f64) -> f64 {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_unstable();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i] as f64 / 1000.0
    }
}

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

async fn ingest(a: IngestArgs) -> anyhow::Result<()> {
    let base = match &a.data_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("polity-bench-{}", std::process::id())),
    };
    let all = ["http-ngsi-ld", "http-senml", "coap", "mqtt"];
    let wanted: Vec<&str> = if a.only.is_empty() {
        all.to_vec()
    } else {
        all.iter()
            .copied()
            .filter(|s| a.only.iter().any(|o| o == s))
            .collect()
    };
    println!(
        "bench ingest: {} s per scenario, batch {}, {} HTTP clients, window {}",
        a.seconds, a.batch, a.clients, a.window
    );
    for scenario in wanted {
        let dir = base.join(scenario);
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = Config::default();
        cfg.node.http = "127.0.0.1:0".parse()?;
        cfg.node.data_dir = dir.clone();
        match scenario {
            "coap" => {
                let c: config::Config = config::parse(
                    "bench",
                    "[sources.bench-coap]\ntype = \"coap\"\nlisten = \"127.0.0.1:0\"\ntenant = \"bench\"\n",
                )?;
                cfg.sources = c.sources;
            }
            "mqtt" => {
                cfg.broker = Some(BrokerSection {
                    listen: "127.0.0.1:0".parse()?,
                    tls_listen: None,
                    tls: None,
                });
                let c: config::Config = config::parse(
                    "bench",
                    "[sources.bench-mqtt]\ntype = \"mqtt\"\nbroker = \"127.0.0.1:0\"\ntopics = [\"bench/#\"]\ntenant = \"bench\"\nformat = \"json\"\n",
                )?;
                cfg.sources = c.sources;
            }
            _ => {}
        }
        let node = node::start(&cfg, &FlagNames::config(), &Progress::new(true)).await?;
        let lat = Arc::new(Latencies::default());
        let stop = Arc::new(AtomicBool::new(false));
        let dur = Duration::from_secs_f64(a.seconds);
        let before = node.metrics.committed.load(Relaxed);
        let started = Instant::now();
        let mut tasks = Vec::new();
        match scenario {
            "http-ngsi-ld" | "http-senml" => {
                // The load generator is the city's gateway application: a real token,
                // verified and authorized on every request like any other client's.
                let token = crate::trust::built_in_issuer(&cfg.node.data_dir)?.issue(
                    &polity_identity::Principal::Application {
                        client_id: "bench-gateway".into(),
                        tenants: vec![polity_model::Tenant::new("bench")?],
                    },
                    crate::AUDIENCE,
                    Duration::from_secs(3600),
                )?;
                let url = if scenario == "http-senml" {
                    format!("http://{}/api/ingest/senml", node.http)
                } else {
                    format!("http://{}/ngsi-ld/v1/entityOperations/upsert", node.http)
                };
                for c in 0..a.clients.max(1) {
                    tasks.push(tokio::spawn(http_client(
                        url.clone(),
                        token.clone(),
                        scenario == "http-senml",
                        c,
                        a.batch,
                        lat.clone(),
                        stop.clone(),
                    )));
                }
            }
            "coap" => {
                let addr = *node.coap.values().next().context("CoAP source")?;
                tasks.push(tokio::spawn(coap_client(
                    addr,
                    a.window,
                    lat.clone(),
                    stop.clone(),
                )));
            }
            "mqtt" => {
                let addr = node.mqtt.context("broker")?;
                let bus_rx = node.bus.subscribe();
                tasks.push(tokio::spawn(mqtt_latency(
                    bus_rx,
                    lat.clone(),
                    stop.clone(),
                )));
                tasks.push(tokio::spawn(mqtt_client(
                    addr,
                    a.window,
                    node.metrics.clone(),
                    stop.clone(),
                )));
            }
            _ => unreachable!("scenario list is fixed"),
        }
        tokio::time::sleep(dur).await;
        stop.store(true, Relaxed);
        let committed = node.metrics.committed.load(Relaxed) - before;
        let elapsed = started.elapsed().as_secs_f64();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        let name = scenario.replace('-', "_");
        println!(
            "{name}_throughput: {:.0} observations/s",
            committed as f64 / elapsed
        );
        println!("{name}_ack_latency_p50: {:.2} ms", lat.percentile(0.50));
        println!("{name}_ack_latency_p99: {:.2} ms", lat.percentile(0.99));
        println!("{name}_commits: {}", node.metrics.commits.load(Relaxed));
        let failures = node.metrics.commit_failures.load(Relaxed);
        anyhow::ensure!(
            failures == 0,
            "{failures} group commits failed during {scenario}"
        );
        node.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let Some(rss) = peak_rss_mib() {
        println!("peak_rss: {rss:.1} MiB");
    }
    Ok(())
}

/// 10 numeric attributes per entity, so a batch of N observations is N/10 entities.
const ATTRS: [&str; 10] = ["a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9"];

fn ngsild_body(client: usize, seq: u64, n: usize) -> Vec<u8> {
    let t = Timestamp::now();
    let mut out = String::with_capacity(n * 90);
    out.push('[');
    for e in 0..(n / ATTRS.len()).max(1) {
        if e > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"id\":\"urn:ngsi-ld:Meter:c{client}-{e}\",\"type\":\"Meter\""
        ));
        for (i, a) in ATTRS.iter().enumerate() {
            out.push_str(&format!(
                ",\"{a}\":{{\"type\":\"Property\",\"value\":{}.5,\"unitCode\":\"KWH\",\"observedAt\":\"{t}\"}}",
                seq as usize + i
            ));
        }
        out.push('}');
    }
    out.push(']');
    out.into_bytes()
}

fn senml_body(client: usize, seq: u64, n: usize) -> Vec<u8> {
    let t = Timestamp::now().as_secs_f64();
    let mut records = Vec::with_capacity(n);
    for e in 0..(n / ATTRS.len()).max(1) {
        for (i, a) in ATTRS.iter().enumerate() {
            records.push(Record {
                bn: (i == 0).then(|| format!("urn:ngsi-ld:Meter:c{client}-{e}:")),
                bt: (i == 0).then_some(t),
                n: Some((*a).to_owned()),
                u: Some("Wh".into()),
                v: Some(seq as f64 + i as f64),
                ..Default::default()
            });
        }
    }
    Pack(records).to_json()
}

async fn http_client(
    url: String,
    token: String,
    senml: bool,
    client: usize,
    batch: usize,
    lat: Arc<Latencies>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::new();
    let mut seq = 0u64;
    while !stop.load(Relaxed) {
        seq += 1;
        let (body, ct) = if senml {
            (senml_body(client, seq, batch), "application/senml+json")
        } else {
            (ngsild_body(client, seq, batch), "application/json")
        };
        let t0 = Instant::now();
        let r = http
            .post(&url)
            .bearer_auth(&token)
            .header("NGSILD-Tenant", "bench")
            .header("Content-Type", ct)
            .body(body)
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() => lat.record(t0.elapsed()),
            Ok(resp) => {
                eprintln!("bench: HTTP {} from {url}", resp.status());
                return;
            }
            Err(e) => {
                eprintln!("bench: {e}");
                return;
            }
        }
    }
}

async fn coap_client(addr: SocketAddr, window: usize, lat: Arc<Latencies>, stop: Arc<AtomicBool>) {
    let Ok(sock) = tokio::net::UdpSocket::bind("127.0.0.1:0").await else {
        return;
    };
    if sock.connect(addr).await.is_err() {
        return;
    }
    let sock = Arc::new(sock);
    let inflight: Arc<Mutex<std::collections::HashMap<u16, Instant>>> = Arc::default();
    let sem = Arc::new(tokio::sync::Semaphore::new(window.max(1)));
    let reader = {
        let (sock, inflight, sem, lat) = (sock.clone(), inflight.clone(), sem.clone(), lat.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok(n) = sock.recv(&mut buf).await {
                let Ok(p) = Packet::from_bytes(&buf[..n]) else {
                    continue;
                };
                if let Some(t0) = inflight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&p.header.message_id)
                {
                    if p.header.code == MessageClass::Response(ResponseType::Changed) {
                        lat.record(t0.elapsed());
                    }
                    sem.add_permits(1);
                }
            }
        })
    };
    let mut mid: u16 = 0;
    let mut seq = 0u64;
    while !stop.load(Relaxed) {
        let Ok(permit) = tokio::time::timeout(Duration::from_secs(2), sem.acquire()).await else {
            // A lost datagram: forget the oldest exchanges and go on.
            let mut g = inflight.lock().unwrap_or_else(|e| e.into_inner());
            let lost = g.len();
            g.clear();
            sem.add_permits(lost);
            continue;
        };
        let Ok(permit) = permit else { return };
        permit.forget();
        mid = mid.wrapping_add(1);
        seq += 1;
        let r = Record {
            bn: Some(format!("urn:ngsi-ld:Meter:coap-{}:", seq % 1000)),
            n: Some("a0".into()),
            u: Some("Wh".into()),
            v: Some(seq as f64),
            t: Some(Timestamp::now().as_secs_f64()),
            ..Default::default()
        };
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(RequestType::Post);
        p.header.message_id = mid;
        p.set_token(mid.to_be_bytes().to_vec());
        p.add_option(coap_lite::CoapOption::UriPath, b"senml".to_vec());
        p.set_content_format(ContentFormat::ApplicationSenmlCBOR);
        p.payload = Pack(vec![r]).to_cbor();
        let Ok(bytes) = p.to_bytes() else { continue };
        inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(mid, Instant::now());
        if sock.send(&bytes).await.is_err() {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    reader.abort();
}

/// Publishes QoS 1 device JSON, one observation per message. A broker acknowledges a
/// publish when it has it, not when Polity does, and drops what a lagging subscriber
/// has not read once its buffer is full; so the publisher keeps at most `window`
/// messages ahead of what Polity has committed, and the figure is Polity's, not the
/// broker's.
async fn mqtt_client(
    addr: SocketAddr,
    window: usize,
    metrics: Arc<polity_ingest::Metrics>,
    stop: Arc<AtomicBool>,
) {
    let mut opts = rumqttc::MqttOptions::new("polity-bench", addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(window.clamp(1, u16::MAX as usize) as u16);
    let (client, mut events) = rumqttc::AsyncClient::new(opts, window.max(10));
    let driver = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let mut seq = 0u64;
    let base = metrics.committed.load(Relaxed);
    while !stop.load(Relaxed) {
        if seq.saturating_sub(metrics.committed.load(Relaxed) - base) >= window as u64 {
            tokio::time::sleep(Duration::from_micros(200)).await;
            continue;
        }
        seq += 1;
        let body = format!(
            "{{\"id\":\"urn:ngsi-ld:Meter:mqtt-{}\",\"type\":\"Meter\",\"observedAt\":\"{}\",\"a0\":{{\"value\":{seq},\"unitCode\":\"WHR\"}}}}",
            seq % 1000,
            Timestamp::now()
        );
        if client
            .publish(
                "bench/meter",
                rumqttc::QoS::AtLeastOnce,
                false,
                body.into_bytes(),
            )
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = client.disconnect().await;
    driver.abort();
}

/// MQTT is acknowledged by the broker, not by Polity, so its latency is measured from
/// the publish time carried in `observedAt` to the moment the batch is committed.
async fn mqtt_latency(
    mut rx: polity_bus::Subscription,
    lat: Arc<Latencies>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Relaxed) {
        match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            Ok(Ok(c)) => {
                let now = Timestamp::now().as_millis();
                for o in &c.batch.observations {
                    lat.record(Duration::from_millis(
                        (now - o.observed_at.as_millis()).max(0) as u64,
                    ));
                }
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(_)) => return,
            Err(_) => {}
        }
    }
}
