//! `polity up`: the demo nation in one process.
//!
//! It runs the node config in `docs/examples/demo-nation.toml` (built in) through the
//! same start-up path as `polity serve`, then starts the simulated devices of each city
//! against the node's real listeners on loopback.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::Args;
use polity_sim::{
    NationSpec,
    send::{Endpoints, SendOptions, spawn_city},
};
use tokio::sync::watch;

use crate::{
    NodeFlags, apply_flags, config,
    node::{self, FlagNames, Progress},
};

/// The demo nation's config, shipped as a worked example.
pub const DEMO_CONFIG: &str = include_str!("../../../docs/examples/demo-nation.toml");

/// Options of `polity up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    flags: NodeFlags,
    /// Simulated devices per city.
    #[arg(long, default_value_t = 3000, value_name = "N")]
    devices: usize,
    /// Seconds between two reports of one device.
    #[arg(long, default_value_t = 15.0, value_name = "SECS")]
    report_interval: f64,
    /// Hours of history each device backfills at start, so charts and temporal queries
    /// have data at once.
    #[arg(long, default_value_t = 2.0, value_name = "HOURS")]
    backfill_hours: f64,
    /// Share of deliberately malformed device messages, to exercise dead letters.
    #[arg(long, default_value_t = 0.001, value_name = "FRACTION")]
    fault_rate: f64,
}

/// Runs the demo nation until Ctrl-C.
pub async fn run(a: UpArgs) -> anyhow::Result<()> {
    let mut cfg = config::parse("demo-nation.toml (built in)", DEMO_CONFIG)
        .context("the built-in demo config")?;
    apply_flags(&mut cfg, &a.flags);
    // The Melbourne source subscribes to the embedded broker, wherever it listens.
    if let (Some(b), Some(config::SourceSection::Mqtt(m))) =
        (&cfg.broker, cfg.sources.get_mut("melbourne-mqtt"))
    {
        m.broker = b.listen.to_string();
    }
    anyhow::ensure!(a.devices > 0, "--devices must be at least 1");
    anyhow::ensure!(
        a.report_interval > 0.0,
        "--report-interval must be positive"
    );

    println!(
        "Starting the Polity demo nation: Adelaide, Melbourne and Sydney, {} devices each",
        a.devices
    );
    let progress = Progress::new(false);
    let flags = FlagNames {
        http: "--http",
        mqtt: "--mqtt-listen",
        coap: "--coap-listen",
    };
    let node = node::start(&cfg, &flags, &progress).await?;

    let mut spec = NationSpec::demo(a.devices);
    spec.fault_rate = a.fault_rate.clamp(0.0, 1.0);
    let endpoints = Endpoints {
        coap: *node
            .coap
            .get("adelaide-coap")
            .context("the demo's CoAP source did not start")?,
        mqtt: node.mqtt.context("the demo's MQTT broker did not start")?,
        http: format!("http://{}", node.http),
    };
    // The demo's issuer mints the tokens the demo itself needs: the Sydney gateway's
    // (an application allowed to write Sydney) and the sign-in link printed below.
    let issuer = crate::trust::built_in_issuer(&cfg.node.data_dir)?;
    let day = Duration::from_secs(24 * 3600);
    let gateway = polity_identity::Principal::Application {
        client_id: "sydney-gateway".into(),
        tenants: vec![polity_model::Tenant::new("sydney")?],
    };
    let opts = SendOptions {
        report_interval: Duration::from_secs_f64(a.report_interval),
        backfill_hours: a.backfill_hours.max(0.0),
        http_token: Some(issuer.issue(&gateway, crate::AUDIENCE, day)?),
        ..SendOptions::default()
    };
    let sign_in = issuer.issue(
        &polity_identity::Principal::Operator,
        crate::AUDIENCE,
        Duration::from_secs(12 * 3600),
    )?;
    let (stop_devices, devices_rx) = watch::channel(false);
    let mut senders = Vec::new();
    for city in spec.build() {
        let name = city.spec.name.clone();
        let (stats, task) =
            spawn_city(Arc::new(city), &endpoints, opts.clone(), devices_rx.clone());
        senders.push((name, stats, task));
    }
    progress.step(format_args!(
        "{} simulated devices reporting every {} s",
        a.devices * senders.len(),
        a.report_interval
    ));

    let http = node.http;
    println!();
    println!("Polity demo nation is running.");
    println!("  Sign in         http://{http}/login#{sign_in}");
    println!("                  (as the national operator, for 12 h; every route needs a token)");
    println!("  Overview        http://{http}/");
    println!(
        "  NGSI-LD API     http://{http}/ngsi-ld/v1/entities?type=AirQualityObserved   (header NGSILD-Tenant: adelaide | melbourne | sydney)"
    );
    println!("  Cities          http://{http}/api/cities");
    println!("  Metrics         http://{http}/metrics");
    println!(
        "  Adelaide        SenML/CBOR over CoAP  -> udp://{}",
        endpoints.coap
    );
    println!(
        "  Melbourne       JSON over MQTT        -> mqtt://{}",
        endpoints.mqtt
    );
    println!(
        "  Sydney          NGSI-LD over HTTP     -> {}/ngsi-ld/v1/entityOperations/upsert",
        endpoints.http
    );
    println!("  Data            {}", cfg.node.data_dir.display());
    println!(
        "  A token         polity token --data-dir {} --as city-admin:adelaide",
        cfg.node.data_dir.display()
    );
    println!(
        "  Principals      operator · security-analyst · city-admin:CITY · city-analyst:CITY · app:CLIENT:CITY · citizen:CITY:ID"
    );
    println!(
        "  Call the API    curl -H \"Authorization: Bearer $TOKEN\" -H 'NGSILD-Tenant: adelaide' 'http://{http}/ngsi-ld/v1/entities?type=AirQualityObserved'"
    );
    println!("Press Ctrl-C to stop.");

    wait_for_stop().await;
    println!("Stopping…");
    let _ = stop_devices.send(true);
    for (_, _, task) in senders {
        let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    }
    node.stop().await;
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM; a second one exits at once (status 130).
pub async fn wait_for_stop() {
    signal().await;
    tokio::spawn(async {
        signal().await;
        eprintln!("Second stop signal: exiting now.");
        std::process::exit(130);
    });
}

/// Ctrl-C or SIGTERM.
async fn signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
