//! A node for tests: FjallStore in a temporary directory, the ingest pipeline and the
//! NGSI-LD router served on 127.0.0.1:0, plus helpers to call it and check answers.

use std::{sync::Arc, time::Duration};

use polity_bus::Bus;
use polity_ingest::{Metrics, Normalizer, PipelineOptions, Writer};
use polity_model::Tenant;
use polity_ngsild::ApiState;
use polity_store::{DeadLetter, DeadLetterQuery, DeadLetterStore, fjall::FjallStore};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;

/// The core context every response without a user context refers to.
pub const CORE: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";
/// The JSON-LD context link relation.
pub const CONTEXT_REL: &str = "http://www.w3.org/ns/json-ld#context";
/// The tenant header.
pub const TENANT: &str = "NGSILD-Tenant";
/// The source name of the HTTP NGSI-LD routes, as their dead letters record it.
pub const HTTP_SOURCE: &str = "http-ngsi-ld";
/// The source name of the HTTP SenML route.
pub const SENML_SOURCE: &str = "http-senml";

pub struct Node {
    base: String,
    pub http: reqwest::Client,
    pub store: Arc<FjallStore>,
    server: tokio::task::JoinHandle<()>,
    /// Keeps the listener serving (it stops when this is dropped).
    _stop_http: tokio::sync::watch::Sender<bool>,
    _notifier: (
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ),
    _writer: Writer,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        // Stops serving, which drops the router and with it the ingest handles, so the
        // writer thread ends.
        self.server.abort();
    }
}

impl Node {
    /// A node with the default limits.
    pub async fn start() -> Node {
        Node::start_with(|_| {}).await
    }

    /// A node whose API state `configure` may adjust (limits, contexts) before serving.
    pub async fn start_with(configure: impl FnOnce(&mut ApiState)) -> Node {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store =
            Arc::new(FjallStore::open(dir.path(), Default::default()).expect("store opens"));
        let metrics = Metrics::new();
        let bus = Bus::default();
        let (ingest, writer) = polity_ingest::start(
            store.clone(),
            bus.clone(),
            metrics.clone(),
            Normalizer::new(),
            PipelineOptions::default(),
        )
        .expect("pipeline starts");
        let mut state = ApiState::with_notify(
            store.clone(),
            ingest,
            &metrics,
            polity_ngsild::subscriptions::NotifyConfig {
                // Notifications go to receivers on loopback in these tests.
                allow_private_endpoints: true,
                ..Default::default()
            },
        )
        .expect("API state");
        configure(&mut state);
        // The protocol tests run with authorization off, as `--insecure-no-auth` does;
        // authorization is tested through the binary with real policies.
        let default_tenant = state.default_tenant.clone();
        let notifier_state = state.clone();
        let (router, table) = polity_ngsild::routes(state).into_parts();
        let gate = polity_trust::Gate::insecure_no_auth(default_tenant, &table);
        notifier_state.subscriptions.set_gate(gate.clone());
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let notifier = polity_ngsild::subscriptions::notifier::spawn(
            notifier_state,
            &bus,
            Arc::default(),
            stop_rx,
        );
        // As the node serves it: ProblemDetails for unknown paths and methods.
        let app = gate.protect(
            router
                .method_not_allowed_fallback(polity_ngsild::method_not_allowed)
                .fallback(polity_ngsild::not_found),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        // The node's own listener: trailing slashes route like none, as in `serve`.
        let (stop_http, never) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(polity_tls::serve_http_with(
            listener,
            app,
            never,
            polity_tls::HttpsOptions {
                strip_trailing_slash: true,
                ..Default::default()
            },
        ));
        let http = reqwest::Client::builder()
            // A hang is a failure, not a stuck test run.
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        Node {
            base: format!("http://{addr}"),
            http,
            store,
            server,
            _stop_http: stop_http,
            _notifier: (stop, notifier),
            _writer: writer,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`, with the tenant header when `tenant` is given.
    pub fn get(&self, path: &str, tenant: Option<&str>) -> RequestBuilder {
        with_tenant(self.http.get(self.url(path)), tenant)
    }

    /// `POST path` with a JSON body sent as `application/json`.
    pub fn post_json(&self, path: &str, tenant: Option<&str>, body: &Value) -> RequestBuilder {
        with_tenant(self.http.post(self.url(path)), tenant)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(body).expect("serializable"))
    }

    /// Creates an entity and asserts 201.
    pub async fn create(&self, tenant: Option<&str>, entity: &Value) {
        let r = self
            .post_json("/ngsi-ld/v1/entities", tenant, entity)
            .send()
            .await
            .expect("request");
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "creating {entity}: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Batch-upserts entities and returns the response.
    pub async fn upsert(&self, tenant: Option<&str>, entities: &Value) -> Response {
        self.post_json("/ngsi-ld/v1/entityOperations/upsert", tenant, entities)
            .send()
            .await
            .expect("request")
    }

    /// Retrieves an entity (with `query`, e.g. `?options=keyValues`) and asserts 200.
    pub async fn entity(&self, tenant: Option<&str>, id: &str, query: &str) -> Value {
        let r = self
            .get(&format!("/ngsi-ld/v1/entities/{id}{query}"), tenant)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), StatusCode::OK, "retrieving {id}{query}");
        r.json().await.expect("a JSON body")
    }

    /// The dead letters a source kept, oldest first.
    pub fn dead_letters(&self, source: &str) -> Vec<DeadLetter> {
        let q = DeadLetterQuery {
            source: Some(source.to_owned()),
            limit: 1000,
            ..Default::default()
        };
        self.store.dead_letters(&q).expect("store read")
    }

    /// The dead letters of one tenant from one source.
    pub fn tenant_dead_letters(&self, tenant: &str, source: &str) -> Vec<DeadLetter> {
        let q = DeadLetterQuery {
            tenant: Some(Tenant::new(tenant).expect("tenant name")),
            source: Some(source.to_owned()),
            limit: 1000,
            ..Default::default()
        };
        self.store.dead_letters(&q).expect("store read")
    }
}

fn with_tenant(rb: RequestBuilder, tenant: Option<&str>) -> RequestBuilder {
    match tenant {
        Some(t) => rb.header(TENANT, t),
        None => rb,
    }
}

/// Asserts `r` is a ProblemDetails answer with `status` and error type `kind` (the last
/// segment of an `https://uri.etsi.org/ngsi-ld/errors/` URI, or `about:blank` for plain
/// HTTP problems), with every member NGSI-LD requires: type, title, status, detail.
/// Returns the body.
pub async fn problem(r: Response, status: u16, kind: &str) -> Value {
    let got = r.status().as_u16();
    let ct = content_type(&r);
    let text = r.text().await.expect("a body");
    assert_eq!(got, status, "status of a {kind} problem; body: {text}");
    assert!(
        ct == "application/json" || ct == "application/problem+json",
        "a ProblemDetails body is JSON, got Content-Type `{ct}`; body: {text}"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("ProblemDetails is not JSON ({e}): {text}"));
    assert_problem_json(&body, status, kind);
    body
}

/// Asserts a JSON value is a ProblemDetails of `status` and `kind` (see [`problem`]).
pub fn assert_problem_json(body: &Value, status: u16, kind: &str) {
    let want = if kind == "about:blank" {
        kind.to_owned()
    } else {
        format!("https://uri.etsi.org/ngsi-ld/errors/{kind}")
    };
    assert_eq!(body["type"], want.as_str(), "type of {body}");
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "title of {body}"
    );
    assert_eq!(body["status"], status, "status member of {body}");
    assert!(
        body["detail"].as_str().is_some_and(|t| !t.is_empty()),
        "detail of {body}"
    );
}

/// The media type of a response's Content-Type, without parameters.
pub fn content_type(r: &Response) -> String {
    r.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// A Link header naming `url` as the JSON-LD context.
pub fn link(url: &str) -> String {
    format!("<{url}>; rel=\"{CONTEXT_REL}\"; type=\"application/ld+json\"")
}

/// The ids of an array of entities, in order.
pub fn ids(body: &Value) -> Vec<&str> {
    body.as_array()
        .expect("an array of entities")
        .iter()
        .map(|e| e["id"].as_str().expect("entity id"))
        .collect()
}

/// A weather station entity in normalized form.
pub fn weather(id: &str) -> Value {
    serde_json::json!({
        "id": id,
        "type": "WeatherObserved",
        "temperature": {
            "type": "Property", "value": 21.5, "unitCode": "CEL",
            "observedAt": "2026-01-01T00:00:00Z"
        },
        "stationName": {"type": "Property", "value": "Victoria Square"},
        "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:d1"},
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [138.6, -34.93]}
        }
    })
}
