//! Wiring the trust layer of a node: the issuers it trusts, the Cedar policies, the
//! audit writer, and the keys for pseudonyms and erasure. `node::start` calls
//! [`TrustLayer::open`] before any listener opens, so a bad policy file or a missing
//! JWKS stops start-up with a message instead of a node that refuses everyone.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use polity_audit::{AuditLog, AuditWriter, writer::WriterHandle};
use polity_identity::{IssuerConfig, Verifier};
use polity_model::Tenant;
use polity_privacy::{CitizenVault, IdentifierKind, KeyDir, Pseudonymizer};
use polity_trust::{Authorizer, SubjectPseudonyms};

use crate::config::Config;

/// The built-in issuer's URL (`iss`).
pub const BUILT_IN_ISSUER: &str = "urn:polity:issuer:built-in";
use polity_ingest::protect::SUBJECT_PURPOSE;

/// Citizens' pseudonyms through the node's keyed HMAC.
pub struct SubjectKeys(pub Arc<Pseudonymizer>);

impl SubjectPseudonyms for SubjectKeys {
    fn subject(&self, tenant: &Tenant, citizen_id: &str) -> Option<String> {
        self.0
            .pseudonymize(
                tenant,
                SUBJECT_PURPOSE,
                IdentifierKind::PersonLink,
                citizen_id,
            )
            .map(|p| p.as_str().to_owned())
            .map_err(|e| tracing::warn!(error = %e, "cannot pseudonymize a citizen id"))
            .ok()
    }
}

/// The parts of the trust layer a running node holds.
pub struct TrustLayer {
    /// Whether tokens are checked (false under `--insecure-no-auth`).
    pub enforcing: bool,
    /// Verifies tokens; `None` when authentication is off.
    pub verifier: Option<Verifier>,
    /// Decides requests.
    pub authorizer: Arc<dyn Authorizer>,
    /// Appends audit entries (group commit).
    pub audit: AuditWriter,
    /// The audit writer's thread.
    pub audit_thread: WriterHandle,
    /// Pseudonyms per city and purpose.
    pub pseudonyms: Arc<Pseudonymizer>,
    /// Per-citizen keys (crypto-shredding).
    pub vault: Arc<CitizenVault>,
    /// Differentially private aggregates and the privacy budget (`<data_dir>/dp`).
    pub aggregator: Arc<polity_dp::Aggregator>,
    /// Consents (in `<data_dir>/consent`: consent history is personal data).
    pub consents: Arc<polity_consent::ConsentStore>,
    /// Files whose change means the verifier must be rebuilt.
    watched: Vec<PathBuf>,
    /// When each issuer's `jwks_url` is next fetched.
    jwks_schedule: JwksSchedule,
}

impl TrustLayer {
    /// Opens the trust layer of the node configured by `cfg`. `jwks_schedule` comes from
    /// the first [`refresh_remote_jwks`], which the caller runs before this.
    pub fn open(cfg: &Config, jwks_schedule: JwksSchedule) -> anyhow::Result<TrustLayer> {
        let data_dir = &cfg.node.data_dir;
        let key_dir = cfg.privacy.key_dir(data_dir);
        let keys = KeyDir::open(&key_dir)
            .with_context(|| format!("opening the key directory {}", key_dir.display()))?;
        keys.check_apart_from(data_dir)
            .context("[privacy] key_dir must live apart from the data directory")?;
        let pseudonyms = Arc::new(Pseudonymizer::new(keys.clone()));
        let vault = Arc::new(CitizenVault::new(keys));

        let consents = Arc::new(
            polity_consent::ConsentStore::open(data_dir.join("consent"))
                .context("opening the consent store")?,
        );
        let aggregator = Arc::new(
            polity_dp::Aggregator::open(data_dir.join("dp"), polity_national::aggregator_config())
                .context("opening the privacy-budget ledger")?,
        );
        let log = AuditLog::open(data_dir)
            .with_context(|| format!("opening the audit log in {}", data_dir.display()))?;
        let (audit, audit_thread) =
            AuditWriter::start(log).context("starting the audit log writer")?;

        let enforcing = !cfg.insecure_no_auth;
        let (verifier, watched) = if enforcing {
            let (v, w) = build_verifier(cfg)?;
            (Some(v), w)
        } else {
            (None, Vec::new())
        };
        let authorizer: Arc<dyn Authorizer> = Arc::new(match &cfg.auth.policies {
            Some(dir) => polity_authz::CedarAuthorizer::from_dir(dir)
                .with_context(|| format!("loading the Cedar policies in {}", dir.display()))?,
            None => polity_authz::CedarAuthorizer::builtin()
                .context("loading the built-in Cedar policies")?,
        });
        Ok(TrustLayer {
            enforcing,
            verifier,
            authorizer,
            audit,
            audit_thread,
            pseudonyms,
            vault,
            consents,
            aggregator,
            watched,
            jwks_schedule,
        })
    }

    /// Keeps the gate's verifier in step with the issuers' key files: level-triggered,
    /// every few seconds, so a rotated JWKS is trusted without a restart.
    pub fn spawn_key_watch(
        &self,
        cfg: &Config,
        gate: polity_trust::Gate,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if !self.enforcing {
            return None;
        }
        let cfg = cfg.clone();
        let mut watched = self.watched.clone();
        let mut seen = fingerprint(&watched);
        let mut schedule = self.jwks_schedule.clone();
        Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
                for e in refresh_remote_jwks(&cfg, &mut schedule).await {
                    tracing::warn!(error = %e, "cannot refresh an issuer's keys; keeping the previous ones");
                }
                if fingerprint(&watched) == seen {
                    continue;
                }
                match build_verifier(&cfg) {
                    Ok((v, w)) => {
                        gate.set_verifier(v);
                        watched = w;
                        seen = fingerprint(&watched);
                        tracing::info!("issuer keys reloaded");
                    }
                    Err(e) => tracing::warn!(
                        error = %format!("{e:#}"),
                        "issuer keys changed but cannot be loaded; keeping the previous keys"
                    ),
                }
            }
        }))
    }
}

fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    paths
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok();
            (
                p.clone(),
                m.as_ref().and_then(|m| m.modified().ok()),
                m.map(|m| m.len()).unwrap_or(0),
            )
        })
        .collect()
}

/// The verifier for `cfg`'s issuers, and the files it was built from.
pub fn build_verifier(cfg: &Config) -> anyhow::Result<(Verifier, Vec<PathBuf>)> {
    let mut issuers = Vec::new();
    let mut watched = Vec::new();
    if cfg.auth.built_in_issuer {
        let issuer = polity_identity::Issuer::open(&cfg.node.data_dir, BUILT_IN_ISSUER)
            .context("opening the built-in token issuer")?;
        issuers.push(issuer.config(&cfg.auth.audience));
        let dir = cfg.node.data_dir.join("identity");
        if let Ok(rd) = std::fs::read_dir(&dir) {
            watched.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
        }
        watched.push(dir);
    }
    for i in &cfg.auth.issuers {
        let (path, origin) = match (&i.jwks_file, &i.jwks_url) {
            (Some(f), _) => (f.clone(), f.display().to_string()),
            (None, Some(u)) => (
                jwks_cache_path(&cfg.node.data_dir, u),
                format!("the last copy fetched from {u}"),
            ),
            (None, None) => anyhow::bail!("issuer {} has neither jwks_file nor jwks_url", i.url),
        };
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading the JWKS of issuer {} from {origin}{}",
                i.url,
                if i.jwks_url.is_some() {
                    " (it has never been fetched: is the issuer reachable?)"
                } else {
                    ""
                }
            )
        })?;
        let jwks: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{origin} is not a JSON JWK Set"))?;
        issuers.push(IssuerConfig {
            url: i.url.clone(),
            audience: i
                .audience
                .clone()
                .unwrap_or_else(|| cfg.auth.audience.clone()),
            jwks,
            tenants: i.tenants.clone(),
        });
        watched.push(path);
    }
    if issuers.is_empty() {
        anyhow::bail!(
            "no token issuer is trusted: set [auth] built_in_issuer = true or add [[auth.issuers]] (or, for conformance tests on loopback only, serve --insecure-no-auth)"
        );
    }
    Ok((Verifier::new(issuers)?, watched))
}

/// Where the last good JWK Set fetched from `url` is kept: in the data directory, so a
/// restart while the issuer is down still trusts its keys.
pub fn jwks_cache_path(data_dir: &Path, url: &str) -> PathBuf {
    let name: String = url
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(120)
        .collect();
    // Different URLs may sanitize alike; a hash of the whole URL (FNV-1a, stable across
    // builds, not a security measure) keeps them apart.
    let tag = url.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    data_dir
        .join("identity")
        .join("jwks-cache")
        .join(format!("{name}-{tag:016x}.json"))
}

/// When each issuer configured by URL is next fetched.
pub type JwksSchedule = std::collections::HashMap<String, std::time::Instant>;

/// Fetches the JWK Set of every issuer configured by URL that is due in `schedule`
/// (all of them on an empty schedule), and stores the good ones. A set that cannot be
/// fetched or is not a usable JWK Set is reported, the previous copy stays, and the
/// issuer is tried again after 30 s. Returns one message per issuer that failed.
pub async fn refresh_remote_jwks(cfg: &Config, schedule: &mut JwksSchedule) -> Vec<String> {
    let now = std::time::Instant::now();
    let mut failed = Vec::new();
    for i in &cfg.auth.issuers {
        let Some(url) = &i.jwks_url else { continue };
        if schedule.get(url).is_some_and(|due| *due > now) {
            continue;
        }
        let path = jwks_cache_path(&cfg.node.data_dir, url);
        let next = match fetch_jwks(url, i.ca.as_deref()).await {
            Ok(body) => match store_if_changed(&path, &body) {
                Ok(()) => Duration::from_secs(i.jwks_refresh_secs),
                Err(e) => {
                    failed.push(format!("storing the JWKS of {url}: {e:#}"));
                    Duration::from_secs(30)
                }
            },
            Err(e) => {
                failed.push(format!("{e:#}"));
                Duration::from_secs(30)
            }
        };
        schedule.insert(url.clone(), now + next);
    }
    failed
}

async fn fetch_jwks(url: &str, ca: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    let client = polity_tls::client_config(ca).with_context(|| format!("the CA for {url}"))?;
    let body =
        polity_tls::fetch::get(url, client, polity_tls::fetch::FetchLimits::default()).await?;
    let set: serde_json::Value =
        serde_json::from_slice(&body).with_context(|| format!("{url} did not answer with JSON"))?;
    if !set.get("keys").is_some_and(|k| k.is_array()) {
        anyhow::bail!("{url} did not answer with a JWK Set (no `keys` array)");
    }
    // Refuse a set the verifier would refuse, before it replaces a good copy.
    polity_identity::Verifier::new(vec![IssuerConfig {
        url: url.to_owned(),
        audience: "check".into(),
        jwks: set,
        tenants: Vec::new(),
    }])
    .with_context(|| format!("the JWK Set at {url}"))?;
    Ok(body)
}

/// Writes `body` to `path` atomically, unless it already holds exactly that (so an
/// unchanged set does not look like a rotation to the key watch).
fn store_if_changed(path: &Path, body: &[u8]) -> anyhow::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == body) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The built-in issuer of the node whose data lives in `data_dir`.
pub fn built_in_issuer(data_dir: &Path) -> anyhow::Result<polity_identity::Issuer> {
    polity_identity::Issuer::open(data_dir, BUILT_IN_ISSUER)
        .with_context(|| format!("opening the built-in issuer in {}", data_dir.display()))
}
