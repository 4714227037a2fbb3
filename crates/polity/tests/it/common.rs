//! Helpers shared by the scenarios: the `polity` child process, ports, HTTP, CoAP and
//! `/metrics` parsing.

use std::{
    fs::File,
    net::{SocketAddr, TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use coap_lite::{
    CoapOption, ContentFormat, MessageClass, MessageType, Packet, RequestType, ResponseType,
};
use serde_json::Value;

/// The binary under test.
pub const POLITY: &str = env!("CARGO_BIN_EXE_polity");

/// A `polity` child process with its output in files; killed (SIGKILL) when dropped,
/// so no test leaves a process behind, whatever assertion fails.
pub struct Proc {
    child: Option<Child>,
    /// What it was started as, for messages.
    pub label: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// Starts `polity ARGS…`, writing stdout and stderr to files in `log_dir` named
    /// after `label`.
    pub fn spawn(args: &[&str], log_dir: &Path, label: &str) -> Proc {
        let stdout = log_dir.join(format!("{label}.stdout"));
        let stderr = log_dir.join(format!("{label}.stderr"));
        let child = Command::new(POLITY)
            .args(args)
            .env_remove("RUST_LOG")
            .env("POLITY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("create stdout log"))
            .stderr(File::create(&stderr).expect("create stderr log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {POLITY}: {e}"));
        Proc {
            child: Some(child),
            label: label.to_owned(),
            stdout,
            stderr,
        }
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Both outputs, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.label,
            self.stdout(),
            self.label,
            self.stderr()
        )
    }

    /// Exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits until stdout contains `marker`; panics with the output if the process
    /// exits first or `deadline` passes.
    pub async fn wait_for_stdout(&mut self, marker: &str, deadline: Instant) -> String {
        loop {
            let out = self.stdout();
            if out.contains(marker) {
                return out;
            }
            if let Some(status) = self.try_wait() {
                panic!(
                    "{} exited ({status}) before printing {marker:?}\n{}",
                    self.label,
                    self.output()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not print {marker:?} in time\n{}",
                    self.label,
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits for the process to exit by itself, up to `limit`; `None` if it did not.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() > end {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends SIGTERM (what `systemctl stop` sends), as a user stopping the node would.
    pub fn terminate(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix) and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Fails if the process panicked (a Rust panic message on stderr).
    pub fn assert_no_panic(&self) {
        let err = self.stderr();
        assert!(
            !err.contains("panicked"),
            "{} panicked:\n{}",
            self.label,
            self.output()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The address printed right after `needle` on one of `out`'s lines, e.g. the
/// `127.0.0.1:4242` of `… on http://127.0.0.1:4242  (0.3 s)` for needle `on http://`.
pub fn addr_after(out: &str, needle: &str) -> SocketAddr {
    out.lines()
        .find_map(|l| {
            let rest = &l[l.find(needle)? + needle.len()..];
            let token: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            token.parse().ok()
        })
        .unwrap_or_else(|| panic!("no address after {needle:?} in:\n{out}"))
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a TCP port")
        .port()
}

/// A UDP port that was free a moment ago on 127.0.0.1.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a UDP port")
        .port()
}

/// An HTTP client for loopback (never through a proxy) with a per-request timeout.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// A bearer token for `principal` from the built-in issuer of the node whose data
/// lives in `data_dir`, minted by the real `polity token` command.
pub fn token(data_dir: &Path, principal: &str) -> String {
    let o = Command::new(POLITY)
        .args(["token", "--data-dir"])
        .arg(data_dir)
        .args(["--as", principal, "--ttl", "7200"])
        .env_remove("RUST_LOG")
        .output()
        .expect("run polity token");
    assert!(
        o.status.success(),
        "polity token --as {principal} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .expect("utf-8 token")
        .trim()
        .to_owned()
}

/// An HTTP client for loopback that acts as `principal` of the node whose data lives in
/// `data_dir` (its token in every request's Authorization header).
pub fn client_as(data_dir: &Path, principal: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", token(data_dir, principal))
            .parse()
            .expect("header value"),
    );
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .default_headers(h)
        .build()
        .expect("HTTP client")
}

/// Polls `GET base/health` until it answers 200 or `deadline` passes.
pub async fn wait_healthy(proc: &mut Proc, http: &reqwest::Client, base: &str, deadline: Instant) {
    loop {
        if let Ok(r) = http.get(format!("{base}/health")).send().await
            && r.status().as_u16() == 200
        {
            return;
        }
        if let Some(s) = proc.try_wait() {
            panic!(
                "{} exited ({s}) before /health\n{}",
                proc.label,
                proc.output()
            );
        }
        assert!(
            Instant::now() < deadline,
            "/health did not answer 200 in time\n{}",
            proc.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET url` with `NGSILD-Tenant: tenant`: status and JSON body (`Null` if not JSON).
pub async fn get_json(http: &reqwest::Client, url: &str, tenant: &str) -> (u16, Value) {
    let r = http
        .get(url)
        .header("NGSILD-Tenant", tenant)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The value of the first sample of metric `name` whose labels include `label`
/// (e.g. `source="c"`), from a Prometheus text body.
pub fn metric(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|l| label.is_empty() || l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `GET base/metrics` as text.
pub async fn metrics(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("/metrics body")
}

/// A minimal CoAP client over one UDP socket: confirmable requests with
/// retransmission, matching responses by message id.
pub struct CoapClient {
    sock: tokio::net::UdpSocket,
    mid: u16,
}

impl CoapClient {
    /// A client talking to `server`.
    pub async fn connect(server: SocketAddr) -> CoapClient {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind UDP");
        sock.connect(server).await.expect("connect UDP");
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        CoapClient {
            sock,
            mid: seed as u16,
        }
    }

    /// Sends raw bytes (for datagrams that are not CoAP at all).
    pub async fn send_raw(&self, bytes: &[u8]) {
        let _ = self.sock.send(bytes).await;
    }

    /// A confirmable POST to `/path` with `format` and `payload`; retransmits with the
    /// same message id up to `attempts` times, waiting `wait` each time. `None` when no
    /// response came (or the socket reported the server gone).
    pub async fn post(
        &mut self,
        path: &str,
        format: Option<ContentFormat>,
        payload: Vec<u8>,
        attempts: u32,
        wait: Duration,
    ) -> Option<Packet> {
        self.mid = self.mid.wrapping_add(1);
        let mid = self.mid;
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(RequestType::Post);
        p.header.message_id = mid;
        p.set_token(mid.to_be_bytes().to_vec());
        p.add_option(CoapOption::UriPath, path.as_bytes().to_vec());
        if let Some(f) = format {
            p.set_content_format(f);
        }
        p.payload = payload;
        let bytes = p.to_bytes().expect("encode CoAP request");
        let mut buf = vec![0u8; 2048];
        for _ in 0..attempts {
            if self.sock.send(&bytes).await.is_err() {
                return None;
            }
            let end = tokio::time::Instant::now() + wait;
            loop {
                match tokio::time::timeout_at(end, self.sock.recv(&mut buf)).await {
                    Err(_) => break, // retransmit
                    Ok(Err(_)) => return None,
                    Ok(Ok(n)) => {
                        if let Ok(r) = Packet::from_bytes(&buf[..n])
                            && r.header.message_id == mid
                        {
                            return Some(r);
                        }
                    }
                }
            }
        }
        None
    }
}

/// Whether `p` is a 2.04 Changed.
pub fn is_changed(p: &Packet) -> bool {
    p.header.code == MessageClass::Response(ResponseType::Changed)
}

/// A `polity serve` node started from a config file.
pub struct ServeNode {
    /// The process.
    pub proc: Proc,
    /// `http://ADDR`.
    pub base: String,
    /// The bound CoAP source address, if the config has one.
    pub coap: Option<SocketAddr>,
    /// The embedded broker's address, if the config has one.
    pub mqtt: Option<SocketAddr>,
}

/// Writes `config` to `dir/label.toml`, starts `polity serve --config` on it and waits
/// until it prints that it is ready (up to 20 s).
pub async fn serve(config: &str, dir: &Path, label: &str) -> ServeNode {
    let path = dir.join(format!("{label}.toml"));
    std::fs::write(&path, config).expect("write config");
    let path = path.to_str().expect("utf-8 path").to_owned();
    let mut proc = Proc::spawn(&["serve", "--config", &path], dir, label);
    let out = proc
        .wait_for_stdout("Ready.", Instant::now() + Duration::from_secs(20))
        .await;
    let base = format!("http://{}", addr_after(&out, "pages on http://"));
    let coap = out
        .contains("listening on udp://")
        .then(|| addr_after(&out, "listening on udp://"));
    let mqtt = out
        .contains("MQTT broker listening on ")
        .then(|| addr_after(&out, "MQTT broker listening on "));
    ServeNode {
        proc,
        base,
        coap,
        mqtt,
    }
}
