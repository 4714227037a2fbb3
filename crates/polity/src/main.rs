//! `polity`: run a node, the demo nation, validation and benchmarks.
//!
//! The binary is thin: it parses the command line, reads config, and calls into the
//! library crates. Start-up of every node, demo or not, goes through [`node::start`].

mod bench;
mod config;
mod node;
mod trust;
mod up;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

/// Polity joins smart cities into a smart nation: one NGSI-LD view over every city's
/// own platform.
#[derive(Debug, Parser)]
#[command(name = "polity", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log filter, e.g. `info`, `polity_ingest=debug`. Also read from RUST_LOG.
    #[arg(long, global = true, env = "POLITY_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the demo nation in one process: three cities feeding over CoAP, MQTT and
    /// HTTP, on embedded storage, with no external services.
    Up(up::UpArgs),
    /// Run a node from a TOML config file (an empty node without one).
    Serve(ServeArgs),
    /// Check config files and print precise errors as file:line:col.
    Validate(ValidateArgs),
    /// Benchmarks; each figure is printed as `name: value unit`.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print a bearer token from the node's built-in issuer (for the embedded demo).
    Token(TokenArgs),
    /// Manage pseudonymization keys (per city and purpose, apart from the data).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// List every route the node serves, with the action and scope that guard it
    /// (read from the router itself, by starting a throwaway node).
    Routes {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub use trust::BUILT_IN_ISSUER;
/// The audience of tokens for a Polity node.
pub const AUDIENCE: &str = "polity";

#[derive(Debug, Args)]
struct TokenArgs {
    /// The node's data directory (the issuer's keys are in DIR/identity).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Who the token is for: operator, city-admin:TENANT, city-analyst:TENANT,
    /// security-analyst, app:CLIENT:TENANT[,TENANT…] or citizen:TENANT:ID.
    #[arg(long = "as", value_name = "PRINCIPAL")]
    principal: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    ttl: u64,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Start a new key version for one city and purpose: new pseudonyms use it, old
    /// ones stay matchable until the old version is retired. Run it while the node is
    /// stopped, or restart the node afterwards (keys are cached).
    Rotate {
        /// The key directory (`[privacy] key_dir`, default `<data_dir>-keys`).
        #[arg(long, value_name = "DIR")]
        key_dir: PathBuf,
        /// The city.
        #[arg(long)]
        tenant: String,
        /// The purpose: subject, billing, mobility, presence, …
        #[arg(long)]
        purpose: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check a node's audit log: every record, its Merkle root against the signed tree
    /// heads, and truncation. Reports the first bad entry and exits non-zero.
    Verify {
        /// The node's data directory (the log is in DIR/audit).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The log's Ed25519 public key, hex, kept apart from the log. Default: the
        /// key stored beside the log, which only proves consistency with itself.
        #[arg(long, value_name = "HEX")]
        public_key: Option<String>,
    },
}

/// Listener and storage flags shared by `up` and `serve`.
#[derive(Debug, Clone, Args)]
pub struct NodeFlags {
    /// HTTP listen address for the NGSI-LD API and the pages.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Directory of the embedded store.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Listen address of the embedded MQTT broker.
    #[arg(long, value_name = "ADDR")]
    pub mqtt_listen: Option<SocketAddr>,
    /// Listen address of the CoAP source (UDP).
    #[arg(long, value_name = "ADDR")]
    pub coap_listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The node's TOML config. Without it the node is empty: the NGSI-LD API with
    /// nothing ingesting.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    flags: NodeFlags,
    /// Serve without authentication or authorization, for conformance test suites.
    /// Refused unless the HTTP address is a loopback address.
    #[arg(long)]
    insecure_no_auth: bool,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// Config files to check.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| cli.log.clone());
    // rumqttd logs routine client disconnects as errors; keep it at warn unless asked.
    let filter = if filter.contains("rumqttd") {
        filter
    } else {
        format!("{filter},{}", polity_broker::TRACING_DIRECTIVE)
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Validate(a) => validate(&a.files),
        Command::Token(a) => token(&a),
        Command::Keys(KeysCommand::Rotate {
            key_dir,
            tenant,
            purpose,
        }) => rotate_key(&key_dir, &tenant, &purpose),
        Command::Audit(AuditCommand::Verify {
            data_dir,
            public_key,
        }) => audit_verify(&data_dir, public_key.as_deref()),
        other => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")
            .and_then(|rt| {
                rt.block_on(async move {
                    match other {
                        Command::Up(a) => up::run(a).await,
                        Command::Serve(a) => serve(a).await,
                        Command::Bench(b) => bench::run(b).await,
                        Command::Routes { json } => routes(json).await,
                        Command::Validate(_)
                        | Command::Audit(_)
                        | Command::Token(_)
                        | Command::Keys(_) => {
                            unreachable!("handled above")
                        }
                    }
                })
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn validate(files: &[PathBuf]) -> anyhow::Result<()> {
    let mut bad = 0;
    for f in files {
        let name = f.display().to_string();
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{name}: cannot read: {e}");
                bad += 1;
                continue;
            }
        };
        // A Cedar policy file is checked on its own against the schema.
        if f.extension().is_some_and(|e| e == "cedar") {
            match polity_authz::validate_source(&name, &text) {
                Ok(s) => println!("{name}: ok ({} policies)", s.policies()),
                Err(diags) => {
                    for d in diags {
                        eprintln!("{d}");
                    }
                    bad += 1;
                }
            }
            continue;
        }
        match config::parse(&name, &text) {
            Ok(cfg) => {
                // The policies a config names are checked as the node would load them.
                // (Relative to the working directory, as `serve` reads it.)
                if let Some(dir) = &cfg.auth.policies
                    && let Err(diags) = polity_authz::validate_dir(dir)
                {
                    for d in diags {
                        eprintln!("{d}");
                    }
                    bad += 1;
                    continue;
                }
                println!(
                    "{name}: ok ({} sources, {} cities)",
                    cfg.sources.len(),
                    cfg.cities.len()
                )
            }
            Err(e) => {
                eprintln!("{e}");
                bad += 1;
            }
        }
    }
    if bad > 0 {
        anyhow::bail!("{bad} of {} files have errors", files.len());
    }
    Ok(())
}

fn token(a: &TokenArgs) -> anyhow::Result<()> {
    let principal: polity_identity::Principal = a
        .principal
        .parse()
        .map_err(|e| anyhow::anyhow!("--as {}: {e}", a.principal))?;
    let issuer = polity_identity::Issuer::open(&a.data_dir, BUILT_IN_ISSUER)
        .with_context(|| format!("opening the built-in issuer in {}", a.data_dir.display()))?;
    let jwt = issuer.issue(&principal, AUDIENCE, std::time::Duration::from_secs(a.ttl))?;
    println!("{jwt}");
    Ok(())
}

fn rotate_key(dir: &std::path::Path, tenant: &str, purpose: &str) -> anyhow::Result<()> {
    let tenant = polity_model::Tenant::new(tenant)?;
    let keys = polity_privacy::KeyDir::open(dir)
        .with_context(|| format!("opening the key directory {}", dir.display()))?;
    let p = polity_privacy::Pseudonymizer::new(keys);
    let v = p.rotate(&tenant, purpose)?;
    println!("{tenant}/{purpose}: now at key version {v}");
    Ok(())
}

fn audit_verify(dir: &std::path::Path, key: Option<&str>) -> anyhow::Result<()> {
    let result = match key {
        Some(hex) => {
            let bytes: [u8; 32] = polity_audit::head::from_hex(hex.trim())
                .and_then(|v| v.try_into().ok())
                .context("--public-key must be 64 hex digits (an Ed25519 public key)")?;
            polity_audit::verify::verify_dir_with_key(dir, &bytes)
        }
        None => polity_audit::verify::verify_dir(dir),
    };
    match result {
        Ok(r) => {
            println!(
                "audit log ok: {} entries, {} covered by the signed head, {} checkpoints checked, root {}",
                r.entries, r.signed_tree_size, r.checkpoints, r.root_hash
            );
            if r.unsigned_entries > 0 {
                println!(
                    "note: the {} newest entries are not yet under a signed head",
                    r.unsigned_entries
                );
            }
            Ok(())
        }
        Err(e) => match e.first_bad_entry() {
            Some(i) => anyhow::bail!("audit log FAILED at entry {i}: {e}"),
            None => anyhow::bail!("audit log FAILED: {e}"),
        },
    }
}

/// Applies command-line flags over a config.
pub fn apply_flags(cfg: &mut config::Config, flags: &NodeFlags) {
    if let Some(h) = flags.http {
        cfg.node.http = h;
    }
    if let Some(d) = &flags.data_dir {
        cfg.node.data_dir = d.clone();
    }
    if let Some(m) = flags.mqtt_listen {
        cfg.broker
            .get_or_insert(config::BrokerSection {
                listen: m,
                tls_listen: None,
                tls: None,
            })
            .listen = m;
    }
    if let Some(c) = flags.coap_listen {
        for s in cfg.sources.values_mut() {
            if let config::SourceSection::Coap(coap) = s {
                coap.listen = c;
            }
        }
    }
}

async fn routes(json: bool) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("polity-routes-{}", std::process::id()));
    let mut cfg = config::Config::default();
    cfg.node.http = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.node.data_dir = dir.join("data");
    let node = node::start(&cfg, &node::FlagNames::config(), &node::Progress::new(true)).await;
    let table = match node {
        Ok(n) => {
            let t = n.routes.clone();
            n.stop().await;
            Ok(t)
        }
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let table = table?;
    if json {
        let rows: Vec<_> = table
            .iter()
            .map(|r| {
                serde_json::json!({
                    "method": r.method,
                    "path": r.path,
                    "action": r.action.name(),
                    "scope": format!("{:?}", r.scope).to_lowercase(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for r in &table {
            println!(
                "{:<7} {:<40} {:<16} {:?}",
                r.method,
                r.path,
                r.action.name(),
                r.scope
            );
        }
    }
    Ok(())
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let mut cfg = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            config::parse(&path.display().to_string(), &text)?
        }
        None => config::Config::default(),
    };
    apply_flags(&mut cfg, &a.flags);
    if a.insecure_no_auth {
        anyhow::ensure!(
            cfg.node.http.ip().is_loopback(),
            "--insecure-no-auth serves everything to anyone, so it only listens on a loopback address; {} is not one (use --http 127.0.0.1:PORT)",
            cfg.node.http
        );
        cfg.insecure_no_auth = true;
        eprintln!(
            "WARNING: --insecure-no-auth: no tokens are checked and every request may read and write every tenant. Use it only for conformance testing."
        );
    } else if cfg.node.tls.is_none() {
        polity_tls::warn_if_plaintext(cfg.node.http, "the HTTP API (configure [node] tls)");
    }
    println!("Starting Polity node `{}`", cfg.node.name);
    let progress = node::Progress::new(false);
    let node = node::start(&cfg, &node::FlagNames::config(), &progress).await?;
    println!(
        "\nReady. NGSI-LD API: http://{}/ngsi-ld/v1/  ·  overview: http://{}/  ·  Ctrl-C stops.",
        node.http, node.http
    );
    up::wait_for_stop().await;
    println!("Stopping…");
    node.stop().await;
    Ok(())
}
