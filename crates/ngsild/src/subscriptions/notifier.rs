//! Delivers notifications: a sink on the node's bus, plus a clock for periodic
//! subscriptions.
//!
//! For each committed batch it finds the subscriptions of the batch's tenant whose
//! `entities` select a changed entity and whose `watchedAttributes` name a changed
//! attribute, and hands the entity ids to that subscription's worker. A worker runs per
//! subscription, so one slow endpoint delays only its own notifications. It is
//! level-triggered: it reads each entity's *current* state from the store when it
//! sends, so ids queued while it waits (throttling, retries) coalesce into one
//! notification with the latest state, and nothing is sent twice for one change.
//!
//! Every notification is authorized as a read by the subscription's owner at that
//! moment (see the module above), rendered like a `GET` in the subscription's format
//! and `@context`, and sent with retries (1 s, 2 s, 4 s, …). Outcomes are recorded on
//! the subscription (`timesSent`, `lastSuccess`, `lastFailure`, …) durably.
//!
//! If the notifier falls behind the bus and batches are skipped, every change-triggered
//! subscription is re-evaluated against the current state of all its entities, so a
//! lag never loses the last state of an entity (it may only merge intermediate ones).

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::http::{HeaderName, HeaderValue, Method, header};
use polity_bus::Bus;
use polity_model::{EntityId, EntityState, Tenant, Timestamp, ngsild::RenderOptions};
use polity_store::EntityQuery;
use polity_trust::{Action, Resource};
use serde_json::{Value, json};
use tokio::sync::{broadcast::error::RecvError, mpsc, watch};

use super::{NotifyConfig, Subscription};
use crate::{ApiState, access::View, problem::Problem, request};

/// Why an address may not receive notifications, or `Ok`.
pub fn address_rule(ip: IpAddr, config: &NotifyConfig) -> Result<(), &'static str> {
    if config.allow_private_endpoints || !polity_tls::fetch::is_private(ip) {
        Ok(())
    } else {
        Err(
            "a loopback, private or link-local address; set [subscriptions] allow_private_endpoints = true to allow it",
        )
    }
}

/// Refuses, at creation, an endpoint whose host is an address notifications may not
/// reach. (Names are checked again after resolution, when sending.)
pub fn check_endpoint(uri: &str, config: &NotifyConfig) -> Result<(), Problem> {
    let host = uri.parse::<axum::http::Uri>().ok().and_then(|u| {
        u.host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
    });
    let Some(host) = host else {
        return Err(Problem::bad_data(format!(
            "endpoint.uri `{uri}` has no host"
        )));
    };
    let ip = match host.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) if host.eq_ignore_ascii_case("localhost") => Some(IpAddr::from([127, 0, 0, 1])),
        Err(_) => None,
    };
    if let Some(ip) = ip
        && let Err(why) = address_rule(ip, config)
    {
        return Err(Problem::bad_data(format!(
            "endpoint.uri `{uri}` points to {ip}, {why}"
        )));
    }
    Ok(())
}

/// Counters of the notifier, for `/metrics`.
#[derive(Debug, Default)]
pub struct NotifyCounters {
    /// Notifications delivered.
    pub sent: std::sync::atomic::AtomicU64,
    /// Notifications that failed after every retry.
    pub failed: std::sync::atomic::AtomicU64,
    /// Entities left out of notifications because the owner may not read them.
    pub withheld: std::sync::atomic::AtomicU64,
    /// Times the notifier fell behind the bus and re-evaluated from the store.
    pub lagged: std::sync::atomic::AtomicU64,
}

impl NotifyCounters {
    /// The counters, and the number of subscriptions, in Prometheus text format.
    pub fn render_prometheus(&self, subscriptions: usize, out: &mut String) {
        use std::{fmt::Write as _, sync::atomic::Ordering::Relaxed};
        let _ = writeln!(
            out,
            "# HELP polity_subscriptions NGSI-LD subscriptions on this node.\n# TYPE polity_subscriptions gauge\npolity_subscriptions {subscriptions}"
        );
        let _ = writeln!(
            out,
            "# HELP polity_notifications_total Notifications by outcome (failed: after every retry).\n# TYPE polity_notifications_total counter"
        );
        for (k, v) in [("sent", &self.sent), ("failed", &self.failed)] {
            let _ = writeln!(
                out,
                "polity_notifications_total{{outcome=\"{k}\"}} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP polity_notifications_withheld_total Entities left out of notifications because the subscription's owner may not read them.\n# TYPE polity_notifications_withheld_total counter\npolity_notifications_withheld_total {}",
            self.withheld.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP polity_notifier_lagged_total Times the notifier fell behind the bus and re-read state from the store.\n# TYPE polity_notifier_lagged_total counter\npolity_notifier_lagged_total {}",
            self.lagged.load(Relaxed)
        );
    }
}

enum Job {
    /// These entities changed.
    Changed(Vec<EntityId>),
    /// Every entity the subscription selects (periodic, or after a lag).
    All,
}

type Key = (Tenant, String);

/// Spawns the notifier: it runs until `shutdown` turns true.
pub fn spawn(
    st: ApiState,
    bus: &Bus,
    counters: Arc<NotifyCounters>,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let rx = bus.subscribe();
    let tls = polity_tls::client_config(None).ok();
    tokio::spawn(run(st, rx, counters, shutdown, tls))
}

async fn run(
    st: ApiState,
    mut rx: polity_bus::Subscription,
    counters: Arc<NotifyCounters>,
    mut shutdown: watch::Receiver<bool>,
    tls: Option<Arc<polity_tls::ClientConfig>>,
) {
    let shared = Arc::new(Shared { st, counters, tls });
    let mut workers: HashMap<Key, mpsc::UnboundedSender<Job>> = HashMap::new();
    let mut next_periodic: HashMap<Key, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { break },
            m = rx.recv() => match m {
                Ok(c) => on_batch(&shared, &mut workers, &c.batch),
                Err(RecvError::Lagged(n)) => {
                    shared.counters.lagged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(skipped = n, "the notifier fell behind; re-evaluating every subscription from the store");
                    for s in shared.st.subscriptions.all() {
                        if s.time_interval.is_none() && live(&s) {
                            dispatch(&shared, &mut workers, &s, Job::All);
                        }
                    }
                }
                Err(RecvError::Closed) => break,
            },
            _ = tick.tick() => {}
            _ = shared.st.subscriptions.changed.notified() => {}
        }
        // Periodic subscriptions that are due; forget workers of deleted ones.
        let now = Instant::now();
        let subs = shared.st.subscriptions.all();
        let live_keys: std::collections::HashSet<Key> = subs
            .iter()
            .map(|s| (s.tenant.clone(), s.id.clone()))
            .collect();
        workers.retain(|k, tx| live_keys.contains(k) && !tx.is_closed());
        next_periodic.retain(|k, _| live_keys.contains(k));
        for s in subs {
            let Some(every) = s.time_interval else {
                continue;
            };
            if !live(&s) {
                continue;
            }
            let key = (s.tenant.clone(), s.id.clone());
            let due = next_periodic.entry(key.clone()).or_insert(now);
            if *due <= now {
                *due = now + Duration::from_secs_f64(every);
                dispatch(&shared, &mut workers, &s, Job::All);
            }
        }
    }
}

fn live(s: &Subscription) -> bool {
    s.is_active && s.expires_at.is_none_or(|e| e > Timestamp::now())
}

fn on_batch(
    shared: &Arc<Shared>,
    workers: &mut HashMap<Key, mpsc::UnboundedSender<Job>>,
    batch: &polity_model::Batch,
) {
    let subs = shared.st.subscriptions.of_tenant(&batch.tenant);
    if subs.is_empty() {
        return;
    }
    // entity → (type, changed attributes)
    let mut changed: HashMap<&EntityId, (&str, BTreeSet<&str>)> = HashMap::new();
    for o in &batch.observations {
        changed
            .entry(&o.entity)
            .or_insert_with(|| (&o.entity_type, BTreeSet::new()))
            .1
            .insert(&o.attr);
    }
    for s in subs {
        if s.time_interval.is_some() || !live(&s) {
            continue;
        }
        let ids: Vec<EntityId> = changed
            .iter()
            .filter(|(id, (ty, attrs))| {
                s.selects(id.as_str(), ty) && s.watches(attrs.iter().copied())
            })
            .map(|(id, _)| (*id).clone())
            .collect();
        if !ids.is_empty() {
            dispatch(shared, workers, &s, Job::Changed(ids));
        }
    }
}

fn dispatch(
    shared: &Arc<Shared>,
    workers: &mut HashMap<Key, mpsc::UnboundedSender<Job>>,
    s: &Subscription,
    job: Job,
) {
    let key = (s.tenant.clone(), s.id.clone());
    let tx = workers.entry(key.clone()).or_insert_with(|| {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(worker(shared.clone(), key, rx));
        tx
    });
    // A worker that ended (its subscription was deleted) is replaced next time.
    let _ = tx.send(job);
}

struct Shared {
    st: ApiState,
    counters: Arc<NotifyCounters>,
    tls: Option<Arc<polity_tls::ClientConfig>>,
}

async fn worker(shared: Arc<Shared>, key: Key, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut last_sent: Option<Instant> = None;
    while let Some(first) = rx.recv().await {
        let Some(sub) = shared.st.subscriptions.get(&key.0, &key.1) else {
            return;
        };
        // Throttling: wait out the period; what arrives meanwhile joins this round.
        if let (Some(t), Some(last)) = (sub.throttling, last_sent) {
            let until = last + Duration::from_secs_f64(t);
            tokio::time::sleep_until(until.into()).await;
        }
        let mut all = false;
        let mut ids = BTreeSet::new();
        let mut take = |j: Job| match j {
            Job::All => all = true,
            Job::Changed(v) => ids.extend(v),
        };
        take(first);
        while let Ok(j) = rx.try_recv() {
            take(j);
        }
        // The subscription may have changed while we waited.
        let Some(sub) = shared.st.subscriptions.get(&key.0, &key.1) else {
            return;
        };
        if !live(&sub) {
            continue;
        }
        let states = match load(&shared.st, &sub, all, ids).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(subscription = %sub.id, error = %e, "cannot read entities to notify");
                continue;
            }
        };
        let Some(data) = authorize_and_render(&shared, &sub, states).await else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        last_sent = Some(Instant::now());
        for chunk in data.chunks(shared.st.subscriptions.config.max_entities.max(1)) {
            let outcome = deliver(&shared, &sub, chunk.to_vec()).await;
            let c = &shared.counters;
            match &outcome {
                Ok(()) => c.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                Err(_) => c.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            };
            let subs = shared.st.subscriptions.clone();
            let (t, id) = key.clone();
            let r = tokio::task::spawn_blocking(move || subs.record(&t, &id, outcome)).await;
            if !matches!(r, Ok(Ok(()))) {
                tracing::warn!(subscription = %key.1, "cannot record a delivery outcome");
            }
        }
    }
}

/// The current state of the entities to notify: `ids`, or with `all` every entity the
/// subscription selects.
async fn load(
    st: &ApiState,
    sub: &Subscription,
    all: bool,
    ids: BTreeSet<EntityId>,
) -> Result<Vec<EntityState>, polity_store::StoreError> {
    let store = st.store.clone();
    let tenant = sub.tenant.clone();
    let selectors = sub.entities.clone();
    let cap = st.limits.max_limit;
    let sub = sub.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        if all {
            let mut types: Vec<&str> = selectors.iter().map(|s| s.entity_type.as_str()).collect();
            types.sort_unstable();
            types.dedup();
            for ty in types {
                let q = EntityQuery {
                    limit: cap,
                    ..EntityQuery::all(Some(Arc::from(ty)))
                };
                out.extend(
                    store
                        .entities(&tenant, &q)?
                        .into_iter()
                        .filter(|e| sub.selects(e.id.as_str(), &e.entity_type)),
                );
            }
        } else {
            for id in ids {
                if let Some(e) = store.entity(&tenant, &id)? {
                    out.push(e);
                }
            }
        }
        Ok(out)
    })
    .await
    .unwrap_or_else(|e| {
        Err(polity_store::StoreError::Io {
            op: "read entities to notify",
            reason: e.to_string(),
        })
    })
}

/// The entities the owner may read now, redacted and rendered; `None` when the owner
/// may no longer act in the tenant or the audit log cannot record a release.
async fn authorize_and_render(
    shared: &Shared,
    sub: &Subscription,
    states: Vec<EntityState>,
) -> Option<Vec<Value>> {
    let st = &shared.st;
    let gate = st.subscriptions.gate()?;
    let principal = sub.owner.parse::<polity_identity::Principal>().ok()?;
    let access = gate.access_as(principal, sub.tenant.clone(), Default::default());
    if !access.unrestricted()
        && !access.allows(Action::TenantAccess, &Resource::Tenant(sub.tenant.clone()))
    {
        tracing::debug!(subscription = %sub.id, "the owner may no longer act in this tenant; nothing notified");
        return None;
    }
    let ctx = context_of(st, sub);
    let opts = RenderOptions {
        format: sub.notification.render_format(),
        sys_attrs: sub.notification.sys_attrs,
        attrs: (!sub.notification.attributes.is_empty())
            .then(|| sub.notification.attributes.clone()),
        include_context: None,
    };
    let mut view = View::reading(&access, Action::EntityRead, st);
    let mut data = Vec::new();
    for s in states {
        if !view.sees(&sub.tenant, &s) {
            shared
                .counters
                .withheld
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        }
        let s = view.redact(&sub.tenant, s);
        // q is evaluated on what the owner may see, so it cannot probe hidden values.
        if !sub.passes_q(&s) {
            continue;
        }
        data.push(polity_model::ngsild::render_entity(&s, &ctx.context, &opts));
    }
    if !view.audit().await {
        tracing::warn!(subscription = %sub.id, "the audit log is unavailable; personal data withheld from a notification");
        return None;
    }
    Some(data)
}

fn context_of(st: &ApiState, sub: &Subscription) -> request::ActiveContext {
    let resolved = match &sub.context {
        Value::String(url) => request::resolve_url(url, st.contexts.cache()).ok(),
        inline => {
            let cache = st.contexts.cache();
            let resolver = |url: &str| -> Option<Arc<polity_model::jsonld::Context>> {
                if polity_model::jsonld::is_core_context_url(url) {
                    return Some(Arc::new(polity_model::jsonld::Context::core().clone()));
                }
                cache.read().unwrap_or_else(|e| e.into_inner()).get(url)
            };
            polity_model::jsonld::Context::from_json(inline, &resolver)
                .ok()
                .map(|c| request::ActiveContext {
                    reference: inline.clone(),
                    context: Arc::new(c),
                })
        }
    };
    resolved.unwrap_or_else(|| {
        tracing::warn!(subscription = %sub.id, "the subscription's @context is no longer available; notifying with the core context");
        request::ActiveContext::core()
    })
}

fn notification_id() -> String {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 12];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("urn:ngsi-ld:Notification:{hex}")
}

/// Sends one notification with retries; the error is the last attempt's reason.
async fn deliver(shared: &Shared, sub: &Subscription, data: Vec<Value>) -> Result<(), String> {
    let ctx = context_of(&shared.st, sub);
    let ld = sub.notification.endpoint.accept == "application/ld+json";
    let mut body = json!({
        "id": notification_id(),
        "type": "Notification",
        "subscriptionId": sub.id,
        "notifiedAt": Timestamp::now().to_string(),
        "data": data,
    });
    if ld {
        body["@context"] = ctx.reference.clone();
    }
    let body = bytes::Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let mut headers: Vec<(HeaderName, HeaderValue)> = vec![(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if ld {
            "application/ld+json"
        } else {
            "application/json"
        }),
    )];
    if !ld && let Some(link) = ctx.link_header() {
        headers.push((header::LINK, link));
    }
    if let Ok(t) = HeaderValue::from_str(sub.tenant.as_str()) {
        headers.push((HeaderName::from_static("ngsild-tenant"), t));
    }
    for (k, v) in &sub.notification.endpoint.receiver_info {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.push((k, v));
        }
    }
    let Some(tls) = shared.tls.clone() else {
        return Err("no TLS client configuration is available".into());
    };
    let config = &shared.st.subscriptions.config;
    let rule = |ip: IpAddr| address_rule(ip, config);
    let mut delay = Duration::from_secs(1);
    let mut attempt = 0;
    loop {
        let req = polity_tls::fetch::Outgoing {
            method: Method::POST,
            url: &sub.notification.endpoint.uri,
            headers: headers.clone(),
            body: body.clone(),
        };
        let limits = polity_tls::fetch::FetchLimits {
            max_bytes: 64 * 1024,
            timeout: config.timeout,
        };
        let (reason, retry) = match polity_tls::fetch::send(req, tls.clone(), limits, &rule).await {
            Ok((status, _)) if status.is_success() => return Ok(()),
            Ok((status, _)) => (
                format!("the endpoint answered {status}"),
                status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429,
            ),
            Err(
                e @ (polity_tls::fetch::FetchError::Forbidden { .. }
                | polity_tls::fetch::FetchError::Url { .. }),
            ) => (e.to_string(), false),
            Err(e) => (e.to_string(), true),
        };
        attempt += 1;
        if !retry || attempt > config.retries {
            tracing::info!(subscription = %sub.id, %reason, attempts = attempt, "notification failed");
            return Err(reason);
        }
        tokio::time::sleep(delay).await;
        delay = delay.saturating_mul(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_refused_unless_allowed() {
        let strict = NotifyConfig::default();
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.5",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(address_rule(a.parse().unwrap(), &strict).is_err(), "{a}");
        }
        for a in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(address_rule(a.parse().unwrap(), &strict).is_ok(), "{a}");
        }
        let open = NotifyConfig {
            allow_private_endpoints: true,
            ..NotifyConfig::default()
        };
        assert!(address_rule("127.0.0.1".parse().unwrap(), &open).is_ok());
        assert!(check_endpoint("http://169.254.169.254/latest", &strict).is_err());
        assert!(check_endpoint("http://localhost:8080/n", &strict).is_err());
        assert!(check_endpoint("https://example.org/n", &strict).is_ok());
    }
}
