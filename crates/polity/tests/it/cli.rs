//! The command line: busy ports name the flag to change, `validate` reports positions,
//! and every `--help` works.

use std::{
    net::{TcpListener, UdpSocket},
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use crate::common::{POLITY, Proc};

/// Runs `polity up` with `flag` set to an address something else holds (and every
/// other listener on port 0); it must fail fast and say which flag to change.
async fn up_fails_on_busy(flag: &str, busy: &str, dir: &Path) {
    let data = dir.join(format!("data{flag}"));
    let data = data.to_str().expect("utf-8 path");
    let mut args = vec!["up", "--data-dir", data, "--devices", "1"];
    for f in ["--http", "--mqtt-listen", "--coap-listen"] {
        args.push(f);
        args.push(if f == flag { busy } else { "127.0.0.1:0" });
    }
    let started = Instant::now();
    let mut proc = Proc::spawn(&args, dir, &format!("busy{flag}"));
    let status = proc
        .wait_exit(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| {
            panic!(
                "polity up kept running with {flag} {busy} taken\n{}",
                proc.output()
            )
        });
    let took = started.elapsed();
    assert!(!status.success(), "{flag} busy: exit {status}");
    let err = proc.stderr();
    assert!(
        err.contains(flag) && err.contains(busy),
        "{flag} busy: stderr should name the flag and the address:\n{}",
        proc.output()
    );
    assert!(
        took < Duration::from_secs(5),
        "{flag} busy: took {took:?} to fail"
    );
    proc.assert_no_panic();
}

#[tokio::test]
async fn busy_ports_name_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tcp = TcpListener::bind("127.0.0.1:0").expect("bind TCP");
    let tcp_addr = tcp.local_addr().expect("addr").to_string();
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    let udp_addr = udp.local_addr().expect("addr").to_string();
    up_fails_on_busy("--http", &tcp_addr, dir.path()).await;
    up_fails_on_busy("--mqtt-listen", &tcp_addr, dir.path()).await;
    up_fails_on_busy("--coap-listen", &udp_addr, dir.path()).await;
    drop((tcp, udp));
}

fn run(args: &[&str]) -> Output {
    Command::new(POLITY)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|e| panic!("cannot run polity {args:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn validate_reports_file_line_col() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[node]\nname = \"x\"\nhttp_port = 8080\n").expect("write");
    let bad = bad.to_str().expect("utf-8 path");
    let o = run(&["validate", bad]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{bad}:3:1:")),
        "expected `{bad}:3:1:`: {}",
        text(&o)
    );
    assert!(err.contains("http_port"), "{}", text(&o));

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[node]\nname = \"x\"\nhttp = \"127.0.0.1:8080\"\n\n[sources.c]\ntype = \"coap\"\nlisten = \"127.0.0.1:5683\"\ntenant = \"adelaide\"\n",
    )
    .expect("write");
    let good = good.to_str().expect("utf-8 path");
    let o = run(&["validate", good]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("{good}: ok")),
        "{}",
        text(&o)
    );

    // One bad file among good ones fails the whole run, and each file is reported.
    let o = run(&["validate", good, bad]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ok"),
        "{}",
        text(&o)
    );

    let demo = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/examples/demo-nation.toml"
    );
    let o = run(&["validate", demo]);
    assert!(o.status.success(), "the shipped demo config: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ok"),
        "{}",
        text(&o)
    );

    let o = run(&["validate", &format!("{bad}.missing")]);
    assert!(!o.status.success(), "a missing file: {}", text(&o));
}

#[test]
fn help_works_for_every_command() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["help"],
        &["up", "--help"],
        &["serve", "--help"],
        &["validate", "--help"],
        &["bench", "--help"],
        &["bench", "ingest", "--help"],
        &["audit", "verify", "--help"],
        &["token", "--help"],
        &["routes", "--help"],
        &["keys", "rotate", "--help"],
    ] {
        let o = run(args);
        assert!(o.status.success(), "polity {args:?}: {}", text(&o));
        assert!(!o.stdout.is_empty(), "polity {args:?} printed nothing");
    }
    let o = run(&["--help"]);
    let out = String::from_utf8_lossy(&o.stdout);
    for cmd in ["up", "serve", "validate", "bench"] {
        assert!(out.contains(cmd), "--help does not list {cmd}:\n{out}");
    }
    let o = run(&["no-such-command"]);
    assert!(!o.status.success(), "{}", text(&o));
}

/// `polity audit verify` passes an untouched log and names the first bad entry of an
/// edited one, exiting non-zero.
#[test]
fn audit_verify_names_the_first_bad_entry() {
    use polity_audit::{AuditEntry, AuditLog};
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut log = AuditLog::open(dir.path()).expect("open the log");
        for i in 0..20 {
            let e = AuditEntry {
                at: polity_model::Timestamp::from_millis(1_764_000_000_000 + i),
                actor: "operator".into(),
                action: "read".into(),
                tenant: polity_model::Tenant::new("adelaide").ok(),
                subject: Some(format!("citizen-{i}")),
                resource: format!("urn:ngsi-ld:WaterConsumptionObserved:adelaide-{i}"),
                purpose: Some("billing".into()),
                outcome: "allowed".into(),
            };
            log.append(&e).expect("append");
        }
        log.publish_head().expect("publish the signed head");
    }
    let data = dir.path().to_str().expect("utf-8");
    let o = run(&["audit", "verify", "--data-dir", data]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("audit log ok: 20 entries"),
        "{}",
        text(&o)
    );

    // Change one character of entry 7's purpose in place.
    let path = dir.path().join("audit").join("entries");
    let mut bytes = std::fs::read(&path).expect("read entries");
    let needle = b"citizen-7\"";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("entry 7");
    bytes[at + 8] = b'9';
    std::fs::write(&path, bytes).expect("write entries");
    let o = run(&["audit", "verify", "--data-dir", data]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("FAILED at entry 7"), "{}", text(&o));
}

/// `polity token` prints a token from the node's built-in issuer that verifies against
/// the issuer's own key set; a principal that does not parse is a clear error.
#[test]
fn token_prints_a_verifiable_bearer_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8");
    let o = run(&["token", "--data-dir", data, "--as", "city-admin:adelaide"]);
    assert!(o.status.success(), "{}", text(&o));
    let jwt = String::from_utf8(o.stdout.clone())
        .expect("utf-8")
        .trim()
        .to_owned();
    assert_eq!(jwt.split('.').count(), 3, "{jwt}");
    let issuer =
        polity_identity::Issuer::open(dir.path(), "urn:polity:issuer:built-in").expect("issuer");
    let verifier = polity_identity::Verifier::new(vec![issuer.config("polity")]).expect("verifier");
    let who = verifier.verify(&jwt).expect("the token verifies");
    assert_eq!(who.principal.to_string(), "city-admin:adelaide");

    let o = run(&["token", "--data-dir", data, "--as", "mayor:adelaide"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--as mayor:adelaide"), "{}", text(&o));
}

/// `--insecure-no-auth` exists for conformance suites only: it refuses a non-loopback
/// address before anything starts.
#[test]
fn insecure_no_auth_refuses_non_loopback_addresses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let o = run(&[
        "serve",
        "--insecure-no-auth",
        "--http",
        "0.0.0.0:0",
        "--data-dir",
        data.to_str().expect("utf-8"),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("loopback"), "{}", text(&o));
    assert!(!data.join("audit").exists(), "the node started anyway");
}

/// Cedar policy files are checked against the schema with positions.
#[test]
fn validate_checks_policy_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.cedar");
    std::fs::write(
        &good,
        "@id(\"ops-metrics\")\npermit (principal is Polity::Operator, action == Polity::Action::\"metrics.read\", resource is Polity::Node);\n",
    )
    .expect("write");
    let o = run(&["validate", good.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    let bad = dir.path().join("bad.cedar");
    std::fs::write(
        &bad,
        "@id(\"typo\")\npermit (principal is Polity::CityAdmin, action == Polity::Action::\"entity.read\", resource is Polity::Tenant)\nwhen { resource.nmae == principal.tenant };\n",
    )
    .expect("write");
    let o = run(&["validate", bad.to_str().expect("utf-8")]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.cedar:3:"), "no file:line:col in {err}");
}

/// Pseudonymization keys rotate from the command line; new pseudonyms use the new key.
#[test]
fn keys_rotate_adds_a_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    let k = keys.to_str().expect("utf-8");
    let first = run(&[
        "keys",
        "rotate",
        "--key-dir",
        k,
        "--tenant",
        "adelaide",
        "--purpose",
        "billing",
    ]);
    assert!(first.status.success(), "{}", text(&first));
    let second = run(&[
        "keys",
        "rotate",
        "--key-dir",
        k,
        "--tenant",
        "adelaide",
        "--purpose",
        "billing",
    ]);
    assert!(second.status.success(), "{}", text(&second));
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(
        out.contains("version 2") || out.contains("version 3"),
        "{out}"
    );
    let bad = run(&[
        "keys",
        "rotate",
        "--key-dir",
        k,
        "--tenant",
        "adelaide",
        "--purpose",
        "../etc",
    ]);
    assert!(!bad.status.success(), "{}", text(&bad));
}
