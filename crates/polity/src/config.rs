//! The node configuration file (TOML), read by `polity serve --config` and checked by
//! `polity validate`.
//!
//! Every struct denies unknown fields, so a misspelt option is an error with its
//! position rather than a silently ignored line. Every field's default is documented
//! here, and `docs/CONFIGURATION.md` reproduces this reference.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use polity_ingest::sources::{coap::CoapSourceConfig, mqtt::MqttSourceConfig};
use polity_model::Tenant;
use serde::Deserialize;

/// A node's whole configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The node itself.
    #[serde(default)]
    pub node: NodeSection,
    /// Tuning of the write path.
    #[serde(default)]
    pub pipeline: PipelineSection,
    /// An embedded MQTT broker for devices, for the demo and small sites. Default: none.
    #[serde(default)]
    pub broker: Option<BrokerSection>,
    /// The cities this node serves, for `/api/cities` and the overview page.
    #[serde(default)]
    pub cities: Vec<CitySection>,
    /// Who may call the node: token issuers and authorization policies.
    #[serde(default)]
    pub auth: AuthSection,
    /// Privacy at ingest: where the pseudonymization and erasure keys live.
    #[serde(default)]
    pub privacy: PrivacySection,
    /// NGSI-LD subscriptions and their notifications.
    #[serde(default)]
    pub subscriptions: SubscriptionsSection,
    /// JSON-LD `@context`s: downloading them on first use, and preloading them.
    #[serde(default)]
    pub contexts: ContextsSection,
    /// The temporal API.
    #[serde(default)]
    pub temporal: TemporalSection,
    /// Sources by name. Default: none (the NGSI-LD HTTP API is always on). Read in a
    /// second pass by [`parse`], from the spanned document, so that errors inside a
    /// source point at the key (serde's internally tagged enums lose positions).
    #[serde(skip)]
    pub sources: BTreeMap<String, SourceSection>,
    /// Set by `polity serve --insecure-no-auth`: no tokens, no policies.
    #[serde(skip)]
    pub insecure_no_auth: bool,
    /// The raw `[sources]` table of the first pass.
    #[serde(default, rename = "sources")]
    raw_sources: Option<toml::Table>,
}

/// `[node]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Shown in page titles and logs. Default `"polity"`.
    #[serde(default = "default_name")]
    pub name: String,
    /// HTTP listen address of the NGSI-LD API, pages, `/health` and `/metrics`.
    /// Default `127.0.0.1:8080`. Overridden by `--http`.
    #[serde(default = "default_http")]
    pub http: SocketAddr,
    /// Where the embedded store keeps its files. Default `./polity-data`. Overridden by `--data-dir`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The tenant of NGSI-LD requests without an `NGSILD-Tenant` header. Default `default`.
    #[serde(default = "default_tenant")]
    pub default_tenant: Tenant,
    /// Largest HTTP request body in bytes. Default 8388608 (8 MiB).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Serve HTTPS instead of HTTP: `tls = { cert = "cert.pem", key = "key.pem" }`,
    /// plus `client_ca = "ca.pem"` for mutual TLS. Default: none (plain HTTP, with a
    /// loud warning on a non-loopback address).
    #[serde(default)]
    pub tls: Option<polity_tls::TlsSection>,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            name: default_name(),
            http: default_http(),
            data_dir: default_data_dir(),
            default_tenant: default_tenant(),
            max_body_bytes: default_max_body(),
            tls: None,
        }
    }
}

fn default_name() -> String {
    "polity".into()
}
fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./polity-data")
}
fn default_tenant() -> Tenant {
    Tenant::new("default").expect("valid tenant")
}
fn default_max_body() -> usize {
    8 << 20
}

/// `[pipeline]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    /// Submissions that may wait for the writer before sources are slowed. Default 4096.
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    /// Most observations in one group commit. Default 100000.
    #[serde(default = "default_group")]
    pub max_group_observations: usize,
}

impl Default for PipelineSection {
    fn default() -> Self {
        PipelineSection {
            queue_capacity: default_queue(),
            max_group_observations: default_group(),
        }
    }
}

fn default_queue() -> usize {
    4096
}
fn default_group() -> usize {
    100_000
}

/// `[broker]`: the embedded MQTT broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSection {
    /// MQTT listen address. Default `127.0.0.1:1884` (1883 is often taken by a system
    /// broker such as Mosquitto). Overridden by `--mqtt-listen`.
    #[serde(default = "default_mqtt")]
    pub listen: SocketAddr,
    /// Also accept MQTT over TLS on this address (devices use it; the plain listener
    /// can then stay on loopback). Needs `tls`. Default: none.
    #[serde(default)]
    pub tls_listen: Option<SocketAddr>,
    /// Certificate and key of the MQTT-over-TLS listener. Default: none.
    #[serde(default)]
    pub tls: Option<polity_tls::TlsSection>,
}

fn default_mqtt() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1884))
}

/// `[auth]`: authentication and authorization. Every route needs a token unless its
/// policy lets anonymous callers in (only `/health` and the sign-in page do, by default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Trust the node's own built-in issuer (keys in `<data_dir>/identity`, tokens from
    /// `polity token`). Default `true`; set `false` when every token comes from the
    /// issuers below.
    #[serde(default = "yes")]
    pub built_in_issuer: bool,
    /// The audience (`aud`) tokens must name for this node. Default `"polity"`.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// A directory of Cedar policy files (`*.cedar`) replacing the built-in policies.
    /// Checked against the Cedar schema by `polity validate` and at start-up.
    /// Default: the built-in policies (see docs/SECURITY.md).
    #[serde(default)]
    pub policies: Option<PathBuf>,
    /// Trusted external issuers: one per city, plus a national one. Default: none.
    #[serde(default)]
    pub issuers: Vec<IssuerSection>,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            built_in_issuer: true,
            audience: default_audience(),
            policies: None,
            issuers: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_audience() -> String {
    "polity".into()
}
fn default_jwks_refresh() -> u64 {
    300
}

/// `[[auth.issuers]]`: one trusted OpenID Connect / OAuth 2.0 issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSection {
    /// The issuer URL, compared exactly with the token's `iss`. Required.
    pub url: String,
    /// The issuer's JWK Set file (RFC 7517). It is re-read when it changes, so keys
    /// rotate without a restart. Set exactly one of this and `jwks_url`.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Where the issuer publishes its JWK Set (its `jwks_uri`), `https://…`; plain
    /// `http://` only on a loopback host. Fetched at start and every
    /// `jwks_refresh_secs`; the last good copy is kept in the data directory, so an
    /// issuer that is briefly down neither stops start-up nor drops its keys. Set
    /// exactly one of this and `jwks_file`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// PEM file with the CA certificate(s) to trust for `jwks_url`. Default: the
    /// Mozilla root set built into the binary.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// How often `jwks_url` is fetched again, seconds (at least 10). Default 300.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_secs: u64,
    /// The cities this issuer vouches for. Empty: a national issuer, which may issue
    /// any principal. Default: empty.
    #[serde(default)]
    pub tenants: Vec<Tenant>,
    /// The audience for this issuer's tokens. Default: `[auth] audience`.
    #[serde(default)]
    pub audience: Option<String>,
}

/// `[subscriptions]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionsSection {
    /// Let notifications go to loopback, private, link-local and other non-public
    /// addresses (checked after name resolution). Default false, so a subscription
    /// cannot reach the node's own network.
    #[serde(default)]
    pub allow_private_endpoints: bool,
    /// Most subscriptions per tenant. Default 1000.
    #[serde(default = "default_max_subscriptions")]
    pub max_per_tenant: usize,
    /// Retries after a failed delivery, with delays of 1 s, 2 s, 4 s, … Default 3.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Deadline of one delivery attempt, seconds. Default 10.
    #[serde(default = "default_notify_timeout")]
    pub timeout_secs: u64,
    /// Most entities in one notification; more go in several. Default 100.
    #[serde(default = "default_max_entities")]
    pub max_entities: usize,
}

fn default_max_subscriptions() -> usize {
    1000
}
fn default_retries() -> u32 {
    3
}
fn default_notify_timeout() -> u64 {
    10
}
fn default_max_entities() -> usize {
    100
}

impl Default for SubscriptionsSection {
    fn default() -> Self {
        SubscriptionsSection {
            allow_private_endpoints: false,
            max_per_tenant: default_max_subscriptions(),
            retries: default_retries(),
            timeout_secs: default_notify_timeout(),
            max_entities: default_max_entities(),
        }
    }
}

impl SubscriptionsSection {
    /// The notifier's settings.
    pub fn notify_config(&self) -> polity_ngsild::subscriptions::NotifyConfig {
        polity_ngsild::subscriptions::NotifyConfig {
            allow_private_endpoints: self.allow_private_endpoints,
            max_per_tenant: self.max_per_tenant.max(1),
            retries: self.retries.min(10),
            timeout: std::time::Duration::from_secs(self.timeout_secs.clamp(1, 300)),
            max_entities: self.max_entities.max(1),
        }
    }
}

/// `[temporal]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemporalSection {
    /// Most instances one temporal response carries per entity; past it the answer is
    /// 206 Partial Content with a `Content-Range` saying what it covers. Default 10000.
    #[serde(default = "default_max_instances")]
    pub max_instances: usize,
}

fn default_max_instances() -> usize {
    10_000
}

impl Default for TemporalSection {
    fn default() -> Self {
        TemporalSection {
            max_instances: default_max_instances(),
        }
    }
}

/// `[contexts]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextsSection {
    /// Download a context a request names that the node does not hold, once, on first
    /// use. Default true. Off, unknown contexts answer 503 LdContextNotAvailable.
    #[serde(default = "yes")]
    pub fetch: bool,
    /// Let downloads reach loopback, private and link-local addresses (checked after
    /// name resolution). Default false, so a request cannot make the node probe its
    /// own network.
    #[serde(default)]
    pub allow_private: bool,
    /// Deadline of one download, seconds. Default 5.
    #[serde(default = "default_context_timeout")]
    pub timeout_secs: u64,
    /// Context documents to load at start-up, for air-gapped nodes: each
    /// `{ url = "https://…", file = "path.jsonld" }` serves `file` as the context `url`.
    #[serde(default)]
    pub preload: Vec<PreloadedContext>,
}

/// One `[[contexts.preload]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreloadedContext {
    /// The URL requests name the context by.
    pub url: String,
    /// The file holding the context document (`{"@context": …}`).
    pub file: PathBuf,
}

fn default_context_timeout() -> u64 {
    5
}

impl Default for ContextsSection {
    fn default() -> Self {
        ContextsSection {
            fetch: true,
            allow_private: false,
            timeout_secs: default_context_timeout(),
            preload: Vec::new(),
        }
    }
}

impl ContextsSection {
    /// The registry's download policy.
    pub fn fetch_policy(&self) -> polity_ngsild::contexts::FetchPolicy {
        polity_ngsild::contexts::FetchPolicy {
            enabled: self.fetch,
            allow_private: self.allow_private,
            timeout: std::time::Duration::from_secs(self.timeout_secs.clamp(1, 120)),
            ..polity_ngsild::contexts::FetchPolicy::default()
        }
    }
}

/// `[privacy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySection {
    /// Where pseudonymization and per-citizen erasure keys live. It must not be inside
    /// the data directory (or contain it), so that data backups never hold keys.
    /// Default: `<data_dir>-keys`, beside the data directory.
    #[serde(default)]
    pub key_dir: Option<PathBuf>,
    /// The privacy notice consent records and receipts point to. Default
    /// `https://example.invalid/privacy`: set it to the city's published notice.
    #[serde(default = "default_policy_url")]
    pub policy_url: String,
}

fn default_policy_url() -> String {
    "https://example.invalid/privacy".into()
}

impl Default for PrivacySection {
    fn default() -> Self {
        PrivacySection {
            key_dir: None,
            policy_url: default_policy_url(),
        }
    }
}

impl PrivacySection {
    /// The key directory for a node whose data lives in `data_dir`.
    pub fn key_dir(&self, data_dir: &std::path::Path) -> PathBuf {
        self.key_dir.clone().unwrap_or_else(|| {
            let mut name = data_dir
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_else(|| "polity-data".into());
            name.push("-keys");
            data_dir.with_file_name(name)
        })
    }
}

/// `[[cities]]`: a city served by this node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CitySection {
    /// Display name, e.g. `"Adelaide"`. Required.
    pub name: String,
    /// The city's NGSI-LD tenant. Required.
    pub tenant: Tenant,
    /// How the city's data arrives, in words. Default: derived from its sources.
    #[serde(default)]
    pub feed: Option<String>,
    /// Names of the sources that feed the city. Default: none.
    #[serde(default)]
    pub sources: Vec<String>,
}

/// `[sources.NAME]`: one source, by `type`.
#[derive(Debug, Clone)]
pub enum SourceSection {
    /// CoAP over UDP: SenML (JSON, CBOR) and device JSON.
    Coap(CoapSourceConfig),
    /// An MQTT subscription: SenML and device JSON.
    Mqtt(MqttSourceConfig),
}

/// A problem in a config file, with its position.
#[derive(Debug)]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some((l, c)) => write!(f, "{}:{l}:{c}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A problem and the byte range it is at, when known.
type Located = (Option<std::ops::Range<usize>>, String);

/// Reads every `[sources.NAME]` table from the spanned document: its `type` picks the
/// config struct, which is deserialized (errors keep the key's position) and then checked
/// with the same rules the source applies at start-up.
fn parse_sources(text: &str) -> Result<BTreeMap<String, SourceSection>, Located> {
    use serde::Deserialize as _;
    use toml::de::{DeTable, DeValue, ValueDeserializer};
    let doc = DeTable::parse(text).map_err(|e| (e.span(), e.message().trim().to_owned()))?;
    let mut out = BTreeMap::new();
    let Some(sources) = doc.get_ref().get("sources") else {
        return Ok(out);
    };
    let DeValue::Table(table) = sources.get_ref() else {
        return Err((
            Some(sources.span()),
            "`sources` must be tables such as [sources.NAME]".into(),
        ));
    };
    for (name, value) in table {
        let name_span = Some(name.span());
        let name = name.get_ref().to_string();
        let DeValue::Table(fields) = value.get_ref() else {
            return Err((
                name_span,
                format!("sources.{name} must be a table with a `type`"),
            ));
        };
        let kind = match fields.get("type").map(|t| t.get_ref()) {
            Some(DeValue::String(t)) => t.to_string(),
            Some(_) => {
                return Err((
                    name_span,
                    format!("sources.{name}.type must be a string: \"coap\" or \"mqtt\""),
                ));
            }
            None => {
                return Err((
                    name_span,
                    format!("sources.{name} needs a `type`: \"coap\" or \"mqtt\""),
                ));
            }
        };
        let mut rest = fields.clone();
        rest.remove("type");
        let body = ValueDeserializer::from(toml::Spanned::new(value.span(), DeValue::Table(rest)));
        let err = |e: toml::de::Error| {
            (
                e.span().or(name_span.clone()),
                format!("sources.{name}: {}", e.message().trim()),
            )
        };
        let section = match kind.as_str() {
            "coap" => SourceSection::Coap(CoapSourceConfig::deserialize(body).map_err(err)?),
            "mqtt" => SourceSection::Mqtt(MqttSourceConfig::deserialize(body).map_err(err)?),
            other => {
                return Err((
                    name_span,
                    format!(
                        "sources.{name}.type `{other}` is not a source type; use \"coap\" or \"mqtt\""
                    ),
                ));
            }
        };
        let checked = match &section {
            SourceSection::Coap(c) => c.check(),
            SourceSection::Mqtt(m) => m.check(),
        };
        checked.map_err(|p| (name_span.clone(), format!("sources.{name}: {p}")))?;
        out.insert(name, section);
    }
    Ok(out)
}

/// 1-based line and column of byte offset `at` in `text`.
pub fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = &text[..text.floor_char_boundary(at)];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// Parses and checks a config file's text.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    let at = |span: Option<std::ops::Range<usize>>, message: String| ConfigError {
        file: file.to_owned(),
        position: span.map(|s| line_col(text, s.start)),
        message,
    };
    let mut cfg: Config =
        toml::from_str(text).map_err(|e| at(e.span(), e.message().trim().to_owned()))?;
    if cfg.raw_sources.take().is_some() {
        cfg.sources = parse_sources(text).map_err(|(span, m)| at(span, m))?;
    }
    check(&cfg).map_err(|(path, message)| ConfigError {
        file: file.to_owned(),
        position: locate(text, &path).map(|r| line_col(text, r.start)),
        message,
    })?;
    Ok(cfg)
}

/// Sources every node has: the HTTP routes of the NGSI-LD API and of SenML ingest.
pub const BUILT_IN_SOURCES: [&str; 2] = ["http-ngsi-ld", "http-senml"];

/// One step of a path into the config document.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_owned())
}

/// The byte range of the value at `path` in the document, for error positions.
fn locate(text: &str, path: &[Seg]) -> Option<std::ops::Range<usize>> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let root = toml::Spanned::new(doc.span(), DeValue::Table(doc.into_inner()));
    let mut cur = &root;
    for seg in path {
        cur = match (cur.get_ref(), seg) {
            (DeValue::Table(t), Seg::Key(k)) => t.get(k.as_str())?,
            (DeValue::Array(a), Seg::Index(i)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(cur.span())
}

/// Cross-field checks that serde cannot express. Returns where in the document the
/// problem is, and the message.
fn check(cfg: &Config) -> Result<(), (Vec<Seg>, String)> {
    let mut tenants = std::collections::BTreeSet::new();
    for (i, c) in cfg.cities.iter().enumerate() {
        if !tenants.insert(c.tenant.clone()) {
            return Err((
                vec![key("cities"), Seg::Index(i), key("tenant")],
                format!(
                    "two cities use tenant `{}`; give each city its own tenant",
                    c.tenant
                ),
            ));
        }
        for (j, s) in c.sources.iter().enumerate() {
            if !cfg.sources.contains_key(s) && !BUILT_IN_SOURCES.contains(&s.as_str()) {
                return Err((
                    vec![key("cities"), Seg::Index(i), key("sources"), Seg::Index(j)],
                    format!(
                        "city `{}` names source `{s}`, which is not defined; add a [sources.{s}] table or use a built-in source (http-ngsi-ld, http-senml)",
                        c.name
                    ),
                ));
            }
        }
    }
    for (i, issuer) in cfg.auth.issuers.iter().enumerate() {
        let at = |k: &str| vec![key("auth"), key("issuers"), Seg::Index(i), key(k)];
        match (&issuer.jwks_file, &issuer.jwks_url) {
            (Some(_), Some(_)) => {
                return Err((
                    at("jwks_url"),
                    "set either `jwks_file` or `jwks_url` for an issuer, not both".into(),
                ));
            }
            (None, None) => {
                return Err((
                    at("url"),
                    format!(
                        "issuer {} needs its keys: set `jwks_url` (its jwks_uri, https://…) or `jwks_file` (a JWK Set file)",
                        issuer.url
                    ),
                ));
            }
            (None, Some(u)) => {
                let ok = u.starts_with("https://")
                    || ["http://127.", "http://localhost", "http://[::1]"]
                        .iter()
                        .any(|p| u.starts_with(p));
                if !ok {
                    return Err((
                        at("jwks_url"),
                        format!(
                            "`jwks_url` {u} must be https:// (plain http only on a loopback host)"
                        ),
                    ));
                }
                if issuer.jwks_refresh_secs < 10 {
                    return Err((
                        at("jwks_refresh_secs"),
                        "`jwks_refresh_secs` must be at least 10 (default 300)".into(),
                    ));
                }
            }
            (Some(_), None) => {
                if issuer.ca.is_some() {
                    return Err((
                        at("ca"),
                        "`ca` is for fetching `jwks_url`; an issuer with `jwks_file` needs none"
                            .into(),
                    ));
                }
            }
        }
    }
    // TCP and UDP ports are separate spaces; port 0 means "any free port"; an
    // unspecified address (0.0.0.0, ::) clashes with every address on its port.
    type Claims = Vec<(std::net::SocketAddr, String)>;
    let claim = |taken: &mut Claims,
                 addr: std::net::SocketAddr,
                 key: String|
     -> Result<(), String> {
        if addr.port() == 0 {
            return Ok(());
        }
        let clash = taken.iter().find(|(a, _)| {
            a.port() == addr.port()
                && a.is_ipv4() == addr.is_ipv4()
                && (a.ip() == addr.ip() || a.ip().is_unspecified() || addr.ip().is_unspecified())
        });
        if let Some((a, other)) = clash {
            return Err(format!(
                "{key} {addr} clashes with {other} {a}; choose another port"
            ));
        }
        taken.push((addr, key));
        Ok(())
    };
    let mut tcp = Claims::new();
    claim(&mut tcp, cfg.node.http, "node.http".into())
        .map_err(|m| (vec![key("node"), key("http")], m))?;
    if let Some(b) = &cfg.broker {
        claim(&mut tcp, b.listen, "broker.listen".into())
            .map_err(|m| (vec![key("broker"), key("listen")], m))?;
    }
    let mut udp = Claims::new();
    for (name, s) in &cfg.sources {
        if let SourceSection::Coap(c) = s {
            claim(&mut udp, c.listen, format!("sources.{name}.listen"))
                .map_err(|m| (vec![key("sources"), key(name), key("listen")], m))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_an_empty_node() {
        let c = parse("x.toml", "").unwrap();
        assert_eq!(c.node.http.port(), 8080);
        assert!(c.sources.is_empty());
    }

    #[test]
    fn unknown_field_is_reported_with_position() {
        let text = "[node]\nname = \"a\"\nhttp_port = 9\n";
        let e = parse("node.toml", text).unwrap_err();
        assert_eq!(e.position, Some((3, 1)), "{e}");
        assert!(e.to_string().starts_with("node.toml:3:1: "), "{e}");
        assert!(e.message.contains("http_port"), "{e}");
    }

    #[test]
    fn bad_tenant_is_reported() {
        let text = "[[cities]]\nname = \"Adelaide\"\ntenant = \"Adelaide City\"\n";
        let e = parse("c.toml", text).unwrap_err();
        assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");
        assert!(e.message.contains("tenant"), "{e}");
    }

    #[test]
    fn cross_field_errors_point_at_the_offending_value() {
        // The duplicate is the second city's tenant (line 7), not the first mention.
        let text = "[[cities]]\nname = \"A\"\ntenant = \"perth\"\n\n[[cities]]\nname = \"B\"\ntenant = \"perth\"\n";
        let e = parse("c.toml", text).unwrap_err();
        assert_eq!(e.position, Some((7, 10)), "{e}");
        // An unspecified address clashes with a specific one on the same port.
        let text = "[node]\nhttp = \"0.0.0.0:9000\"\n[broker]\nlisten = \"127.0.0.1:9000\"\n";
        let e = parse("c.toml", text).unwrap_err();
        assert_eq!(e.position, Some((4, 10)), "{e}");
        assert!(e.message.contains("clashes"), "{e}");
    }

    #[test]
    fn undefined_source_is_reported() {
        let text = "[[cities]]\nname = \"Adelaide\"\ntenant = \"adelaide\"\nsources = [\"nope\"]\n";
        let e = parse("c.toml", text).unwrap_err();
        assert_eq!(e.position, Some((4, 12)), "{e}");
    }

    #[test]
    fn listener_clashes() {
        let clash = "[node]\nhttp = \"127.0.0.1:9000\"\n[broker]\nlisten = \"127.0.0.1:9000\"\n";
        let e = parse("c.toml", clash).unwrap_err();
        assert!(e.message.contains("broker.listen"), "{e}");
        // Port 0 is any free port, and UDP does not clash with TCP.
        let ok = "[node]\nhttp = \"127.0.0.1:0\"\n[broker]\nlisten = \"127.0.0.1:0\"\n\
                  [sources.c]\ntype = \"coap\"\nlisten = \"127.0.0.1:9000\"\ntenant = \"a\"\n";
        parse(
            "c.toml",
            &ok.replace("127.0.0.1:9000\"\ntenant", "127.0.0.1:8080\"\ntenant"),
        )
        .unwrap();
    }

    #[test]
    fn errors_inside_a_source_point_at_the_key() {
        let text = "[sources.c]\ntype = \"coap\"\ntenant = \"a\"\nlisen = \"127.0.0.1:1\"\n";
        let e = parse("s.toml", text).unwrap_err();
        assert_eq!(e.position, Some((4, 1)), "{e}");
        assert!(e.message.contains("lisen"), "{e}");
        let text = "[sources.c]\ntype = \"coap\"\ntenant = \"a\"\nmax_payload = \"64k\"\n";
        let e = parse("s.toml", text).unwrap_err();
        assert_eq!(e.position.map(|p| p.0), Some(4), "{e}");
        assert!(e.message.contains("sources.c"), "{e}");
    }

    #[test]
    fn validate_applies_the_sources_own_rules() {
        for (body, needle) in [
            ("type = \"mqtt\"\n", "tenant"),
            ("type = \"mqtt\"\ntenant = \"a\"\nqos = 3\n", "qos"),
            (
                "type = \"mqtt\"\ntenant = \"a\"\nbroker = \"mqtt://x\"\n",
                "host:port",
            ),
            ("type = \"coap\"\nmax_payload = 10000000\n", "max_payload"),
            ("type = \"coap\"\nmax_in_flight = 0\n", "max_in_flight"),
            ("type = \"amqp\"\n", "not a source type"),
        ] {
            let text = format!("[node]\nname = \"n\"\n\n[sources.s]\n{body}");
            let e = parse("s.toml", &text).unwrap_err();
            assert_eq!(e.position, Some((4, 10)), "{body}: {e}");
            assert!(e.message.contains(needle), "{body}: {e}");
        }
    }

    #[test]
    fn line_col_counts_chars() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("", 0), (1, 1));
    }
}
