//! Starting a node: the one code path shared by `polity serve` and `polity up`.
//!
//! Order matters for the user: storage first (so a locked data dir fails before any
//! port is taken), then every listener is bound before anything is announced, so a busy
//! port fails start-up with the flag to change instead of half a node.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Instant};

use anyhow::Context as _;
use polity_broker::EmbeddedBroker;
use polity_bus::Bus;
use polity_ingest::{
    IngestHandle, Metrics, Normalizer, PipelineOptions, Writer,
    sources::{SourceContext, SourceError, coap::CoapSource, mqtt::MqttSource},
};
use polity_store::{Store, fjall::FjallStore};
use polity_web::{City, Rates, WebState};
use tokio::{sync::watch, task::JoinHandle};

use crate::config::{Config, SourceSection};

/// Flags that name each listener in error messages, so the user knows what to change.
#[derive(Debug, Clone)]
pub struct FlagNames {
    /// The HTTP listener.
    pub http: &'static str,
    /// The embedded broker.
    pub mqtt: &'static str,
    /// CoAP sources.
    pub coap: &'static str,
}

impl FlagNames {
    /// Names for a node started from a config file.
    pub fn config() -> Self {
        FlagNames {
            http: "--http or node.http",
            mqtt: "--mqtt-listen or broker.listen",
            coap: "--coap-listen or sources.<name>.listen",
        }
    }
}

/// Prints start-up progress lines.
pub struct Progress {
    started: Instant,
    quiet: bool,
}

impl Progress {
    /// Progress printed to stdout unless `quiet`.
    pub fn new(quiet: bool) -> Self {
        Progress {
            started: Instant::now(),
            quiet,
        }
    }

    /// One finished step.
    pub fn step(&self, what: impl std::fmt::Display) {
        if !self.quiet {
            println!(
                "  ✓ {what}  ({:.1} s)",
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

/// A running node.
pub struct Node {
    /// The HTTP address actually bound.
    pub http: SocketAddr,
    /// The embedded broker's address, if one runs.
    pub mqtt: Option<SocketAddr>,
    /// Bound CoAP sources by name.
    pub coap: BTreeMap<String, SocketAddr>,
    /// The ingest handle (for in-process producers such as benchmarks).
    pub ingest: IngestHandle,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Committed batches, for in-process sinks.
    pub bus: Bus,
    /// The gate every request passes.
    pub gate: polity_trust::Gate,
    /// The route table behind the gate (for coverage tests).
    pub routes: Vec<polity_trust::RouteSpec>,
    /// The audit writer.
    pub audit: polity_audit::AuditWriter,
    audit_thread: Option<polity_audit::writer::WriterHandle>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
    writer: Option<Writer>,
    _broker: Option<EmbeddedBroker>,
    _mqtt_tls: Option<polity_tls::MqttTlsFront>,
}

fn bind_error(e: std::io::Error, addr: SocketAddr, flag: &str) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        anyhow::anyhow!(
            "{addr} is already in use by another program; choose another address with {flag}"
        )
    } else {
        anyhow::anyhow!("cannot listen on {addr}: {e}; choose another address with {flag}")
    }
}

/// Starts a node from `cfg`.
pub async fn start(cfg: &Config, flags: &FlagNames, progress: &Progress) -> anyhow::Result<Node> {
    let dir = cfg.node.data_dir.clone();
    let store: Arc<dyn Store> = {
        let d = dir.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || FjallStore::open(&d, Default::default()))
                .await?
                .with_context(|| format!("opening the data directory {}", dir.display()))?,
        )
    };
    progress.step(format_args!(
        "storage ready in {} (embedded, fjall)",
        dir.display()
    ));
    // Issuers that publish their keys at a URL: fetch them now. One that is down does
    // not stop the node while a copy from an earlier fetch exists.
    let mut schedule = crate::trust::JwksSchedule::new();
    if !cfg.insecure_no_auth {
        for e in crate::trust::refresh_remote_jwks(cfg, &mut schedule).await {
            eprintln!("warning: {e}; using the last copy fetched, if any");
            tracing::warn!(error = %e, "cannot fetch an issuer's keys");
        }
    }
    let mut trust = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || crate::trust::TrustLayer::open(&cfg, schedule))
            .await??
    };
    if trust.enforcing {
        progress.step("trust layer ready (tokens required, Cedar policies, audit log)");
    }

    // Owners of stored entities, so values arriving later are sealed with their key.
    let owners = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || known_owners(&*store))
            .await?
            .context("reading entity owners from the store")?
    };
    let metrics = Metrics::new();
    let bus = Bus::default();
    let opts = PipelineOptions {
        queue_capacity: cfg.pipeline.queue_capacity,
        max_group_observations: cfg.pipeline.max_group_observations,
    };
    let (ingest, writer) = polity_ingest::start(
        store.clone(),
        bus.clone(),
        metrics.clone(),
        Normalizer::new().with_protector(
            polity_ingest::protect::Protector::new(trust.pseudonyms.clone())
                .with_vault(trust.vault.clone(), owners),
        ),
        opts,
    )
    .context("starting the writer thread")?;
    progress.step("ingest pipeline running (bounded queue, group commit)");

    let listener = tokio::net::TcpListener::bind(cfg.node.http)
        .await
        .map_err(|e| bind_error(e, cfg.node.http, flags.http))?;
    let http = listener.local_addr()?;

    let broker = match &cfg.broker {
        Some(b) => {
            let broker = EmbeddedBroker::start(b.listen).map_err(|e| {
                anyhow::anyhow!("{e}").context(format!(
                    "starting the embedded MQTT broker (change it with {})",
                    flags.mqtt
                ))
            })?;
            progress.step(format_args!(
                "embedded MQTT broker listening on {}",
                broker.local_addr()
            ));
            Some(broker)
        }
        None => None,
    };
    let mqtt = broker.as_ref().map(|b| b.local_addr());
    // MQTT over TLS: a rustls front that terminates TLS and pipes to the broker.
    let mqtt_tls = match (&cfg.broker, &broker) {
        (Some(b), Some(running)) => match (&b.tls_listen, &b.tls) {
            (Some(listen), Some(tls)) => {
                let sc = polity_tls::mqtt_server_config(tls)
                    .context("the MQTT-over-TLS certificate ([broker] tls)")?;
                let front = polity_tls::MqttTlsFront::start(*listen, running.local_addr(), sc)
                    .await
                    .context("starting the MQTT-over-TLS listener ([broker] tls_listen)")?;
                progress.step(format_args!(
                    "MQTT over TLS listening on {}",
                    front.local_addr()
                ));
                Some(front)
            }
            (Some(_), None) => {
                anyhow::bail!("[broker] tls_listen needs [broker] tls = {{ cert, key }}")
            }
            _ => None,
        },
        _ => None,
    };

    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut coap = BTreeMap::new();
    let mut subscribed = Vec::new();
    for (name, section) in &cfg.sources {
        let ctx = SourceContext {
            name: name.clone(),
            ingest: ingest.clone(),
            metrics: metrics.clone(),
        };
        match section {
            SourceSection::Coap(c) => {
                let src = CoapSource::bind(c.clone(), ctx)
                    .await
                    .map_err(|e| match e {
                        // Only a listen problem is fixed by changing the address.
                        SourceError::AddrInUse { .. } | SourceError::Bind { .. } => {
                            anyhow::anyhow!("{e}").context(format!(
                                "starting CoAP source `{name}` (change it with {})",
                                flags.coap
                            ))
                        }
                        other => anyhow::anyhow!("{other}"),
                    })?;
                let addr = src.local_addr();
                coap.insert(name.clone(), addr);
                progress.step(format_args!(
                    "CoAP source `{name}` listening on udp://{addr}"
                ));
                let rx = shutdown_rx.clone();
                tasks.push(tokio::spawn(async move { src.run(rx).await }));
            }
            SourceSection::Mqtt(m) => {
                let mut m = m.clone();
                // A source pointed at the embedded broker's configured address follows it
                // when it was started on another port (e.g. port 0 in tests).
                if let (Some(b), Some(addr)) = (&cfg.broker, mqtt)
                    && m.broker == b.listen.to_string()
                {
                    m.broker = addr.to_string();
                }
                let detail = m.broker.clone();
                let tls = m.tls.clone();
                if tls.is_none() {
                    warn_plaintext_broker(name, &m.broker);
                }
                let mut src = MqttSource::new(m, ctx).map_err(|e| anyhow::anyhow!("{e}"))?;
                if let Some(t) = tls {
                    let client = match (&t.cert, &t.key) {
                        (Some(cert), Some(key)) => {
                            polity_tls::client_config_with_identity(t.ca.as_deref(), cert, key)
                        }
                        _ => polity_tls::client_config(t.ca.as_deref()),
                    }
                    .with_context(|| format!("TLS settings of MQTT source `{name}`"))?;
                    src = src.with_tls(client);
                }
                subscribed.push((name.clone(), detail, src.connected()));
                let rx = shutdown_rx.clone();
                tasks.push(tokio::spawn(async move { src.run(rx).await }));
            }
        }
    }
    // A broker drops what is published before a subscription exists, so give each MQTT
    // source a moment to subscribe before the node reports ready. A broker that is down
    // does not stop the node: the source keeps retrying and /metrics shows it.
    let links: Vec<_> = subscribed
        .iter()
        .map(|(name, _, flag)| (name.clone(), flag.clone()))
        .collect();
    for (name, detail, flag) in subscribed {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !flag.load(std::sync::atomic::Ordering::Relaxed)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if flag.load(std::sync::atomic::Ordering::Relaxed) {
            progress.step(format_args!("MQTT source `{name}` subscribed at {detail}"));
        } else {
            progress.step(format_args!(
                "MQTT source `{name}` not yet connected to {detail}; it keeps retrying"
            ));
        }
    }

    let mut api = {
        let (store, ingest, metrics) = (store.clone(), ingest.clone(), metrics.clone());
        let notify = cfg.subscriptions.notify_config();
        tokio::task::spawn_blocking(move || {
            polity_ngsild::ApiState::with_notify(store, ingest, &metrics, notify)
        })
        .await?
        .context("loading the stored subscriptions")?
    };
    let subscriptions = api.subscriptions.clone();
    let notifier_state = api.clone();
    let notify_counters =
        Arc::new(polity_ngsild::subscriptions::notifier::NotifyCounters::default());
    api.contexts = Arc::new(polity_ngsild::contexts::ContextRegistry::new(
        cfg.contexts.fetch_policy(),
    ));
    for p in &cfg.contexts.preload {
        let text = std::fs::read(&p.file)
            .with_context(|| format!("reading the preloaded context {}", p.file.display()))?;
        let doc: serde_json::Value = serde_json::from_slice(&text)
            .with_context(|| format!("the preloaded context {} is not JSON", p.file.display()))?;
        api.contexts
            .insert(&p.url, doc, polity_ngsild::contexts::Kind::Cached)
            .map_err(|e| {
                anyhow::anyhow!("the preloaded context {}: {}", p.file.display(), e.detail)
            })?;
    }
    api.temporal = polity_ngsild::temporal::TemporalLimits {
        max_instances: cfg.temporal.max_instances.max(1),
    };
    api.vault = Some(trust.vault.clone());
    api.consents = Some(trust.consents.clone());
    api.default_tenant = cfg.node.default_tenant.clone();
    api.limits.max_body = cfg.node.max_body_bytes;
    let rates = Arc::new(Rates::default());
    tasks.push(rates.spawn_sampler(metrics.clone()));
    let cities = cfg
        .cities
        .iter()
        .map(|c| City {
            name: c.name.clone(),
            tenant: c.tenant.clone(),
            sources: c.sources.clone(),
            feed: c
                .feed
                .clone()
                .unwrap_or_else(|| describe_feed(cfg, &c.sources)),
        })
        .collect();
    let gate_counters = Arc::new(polity_trust::GateCounters::default());
    let web = WebState {
        store: store.clone(),
        metrics: metrics.clone(),
        cities: Arc::new(cities),
        rates,
        node_name: cfg.node.name.clone(),
        links: Arc::new(links),
        gate: gate_counters.clone(),
        shutdown: shutdown_rx.clone(),
        more_metrics: {
            let (c, subs) = (notify_counters.clone(), subscriptions.clone());
            Arc::new(move |out: &mut String| c.render_prometheus(subs.len(), out))
        },
    };
    let (router, routes) = polity_ngsild::routes(api)
        .merge(polity_web::routes(web))
        .merge(polity_trust::session::routes(cfg.node.tls.is_some()))
        .merge(polity_trust::me::routes(trust.audit.clone()))
        .merge(polity_national::routes(polity_national::NationalState {
            store: store.clone(),
            vault: trust.vault.clone(),
            aggregator: trust.aggregator.clone(),
        }))
        .merge(polity_portal::routes(polity_portal::PortalState {
            store: store.clone(),
            audit: trust.audit.clone(),
            consents: trust.consents.clone(),
            vault: trust.vault.clone(),
            controllers: Arc::new(
                cfg.cities
                    .iter()
                    .map(|c| (c.tenant.clone(), format!("City of {}", c.name)))
                    .collect(),
            ),
            policy_url: cfg.privacy.policy_url.clone(),
        }))
        .into_parts();
    let gate = match trust.verifier.take() {
        Some(v) => polity_trust::Gate::new(
            v,
            trust.authorizer.clone(),
            cfg.node.default_tenant.clone(),
            &routes,
        ),
        None => polity_trust::Gate::insecure_no_auth(cfg.node.default_tenant.clone(), &routes),
    }
    .with_counters(gate_counters)
    .with_audit(Arc::new(trust.audit.clone()))
    .with_pseudonyms(Arc::new(crate::trust::SubjectKeys(
        trust.pseudonyms.clone(),
    )));
    if let Some(t) = trust.spawn_key_watch(cfg, gate.clone(), shutdown_rx.clone()) {
        tasks.push(t);
    }
    // Notifications are reads by each subscription's owner, decided by this gate.
    subscriptions.set_gate(gate.clone());
    tasks.push(polity_ngsild::subscriptions::notifier::spawn(
        notifier_state,
        &bus,
        notify_counters.clone(),
        shutdown_rx.clone(),
    ));
    if !subscriptions.is_empty() {
        progress.step(format_args!(
            "{} subscriptions loaded; notifying",
            subscriptions.len()
        ));
    }
    let app = gate.protect(
        router
            .method_not_allowed_fallback(polity_ngsild::method_not_allowed)
            .fallback(polity_ngsild::not_found),
    );
    let rx = shutdown_rx.clone();
    let (server, scheme) = match &cfg.node.tls {
        Some(tls) => {
            let sc =
                polity_tls::server_config(tls).context("the HTTPS certificate ([node] tls)")?;
            let rx = shutdown_rx.clone();
            (
                tokio::spawn(polity_tls::serve_https_with(
                    listener,
                    app,
                    sc,
                    rx,
                    http_options(),
                )),
                "https",
            )
        }
        None => (
            tokio::spawn(async move {
                polity_tls::serve_http_with(listener, app, rx, http_options()).await;
            }),
            "http",
        ),
    };
    progress.step(format_args!("NGSI-LD API and pages on {scheme}://{http}"));

    Ok(Node {
        http,
        mqtt,
        coap,
        ingest,
        metrics,
        bus,
        gate,
        routes,
        audit: trust.audit,
        audit_thread: Some(trust.audit_thread),
        shutdown,
        server,
        tasks,
        writer: Some(writer),
        _broker: broker,
        _mqtt_tls: mqtt_tls,
    })
}

/// Every stored entity's owner link: (tenant, entity, owner pseudonym).
fn known_owners(
    store: &dyn Store,
) -> Result<Vec<(polity_model::Tenant, polity_model::EntityId, String)>, polity_store::StoreError> {
    let mut out = Vec::new();
    for t in store.tenants()? {
        for e in store.entities(&t, &polity_store::EntityQuery::all(None))? {
            if let Some(o) = polity_ngsild::access::owner_of(&e) {
                out.push((t.clone(), e.id.clone(), o));
            }
        }
    }
    Ok(out)
}

fn describe_feed(cfg: &Config, sources: &[String]) -> String {
    let parts: Vec<String> = sources
        .iter()
        .filter_map(|s| cfg.sources.get(s))
        .map(|s| match s {
            SourceSection::Coap(_) => "SenML over CoAP".to_owned(),
            SourceSection::Mqtt(_) => "JSON over MQTT".to_owned(),
        })
        .collect();
    if parts.is_empty() {
        "NGSI-LD over HTTP".into()
    } else {
        parts.join(", ")
    }
}

impl Node {
    /// Stops every source and the server, then lets the writer drain and stop.
    pub async fn stop(mut self) {
        use std::time::Duration;
        let _ = self.shutdown.send(true);
        // The HTTP server finishes the requests in flight (live streams end on the
        // signal), within a limit.
        if tokio::time::timeout(Duration::from_secs(5), &mut self.server)
            .await
            .is_err()
        {
            tracing::warn!("HTTP connections still open after 5 s; closing them");
            self.server.abort();
        }
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        drop(self.ingest);
        // The audit writer drains, publishes a final signed head and stops once the
        // last handle (the gate's, dropped with the server) is gone.
        drop(self.audit);
        drop(self.gate);
        if let Some(h) = self.audit_thread.take() {
            let join = tokio::task::spawn_blocking(move || h.join());
            match tokio::time::timeout(Duration::from_secs(10), join).await {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err(e))) => {
                    tracing::error!(error = %e, "the audit writer stopped with an error")
                }
                _ => tracing::warn!("the audit writer did not stop within 10 s"),
            }
        }
        // The writer drains what was accepted, then stops once every handle is gone.
        if let Some(w) = self.writer.take() {
            let join = tokio::task::spawn_blocking(move || w.join());
            if tokio::time::timeout(Duration::from_secs(10), join)
                .await
                .is_err()
            {
                tracing::warn!(
                    "the writer did not stop within 10 s; exiting anyway (acknowledged data is already durable)"
                );
            }
        }
    }
}

/// Warns when an MQTT source would send its broker credentials and data in clear to
/// another machine.
fn warn_plaintext_broker(source: &str, broker: &str) {
    let host = broker.rsplit_once(':').map_or(broker, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let local = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !local {
        let msg = format!(
            "MQTT source `{source}` connects to {broker} without TLS: its data and credentials cross the network in clear; add [sources.{source}.tls]"
        );
        eprintln!("warning: {msg}");
        tracing::warn!(source, broker, "{msg}");
    }
}

/// How the node's HTTP(S) listener handles connections: NGSI-LD clients write paths
/// with and without a trailing `/` (`/entities/`), and both mean the same resource.
fn http_options() -> polity_tls::HttpsOptions {
    polity_tls::HttpsOptions {
        strip_trailing_slash: true,
        ..polity_tls::HttpsOptions::default()
    }
}
