//! Measures what TLS costs a node, on one core: full handshakes per second, requests per
//! second with one connection per request (full and resumed TLS handshakes, and plain
//! HTTP), and requests per second over keep-alive connections, HTTPS against plain HTTP.
//!
//! Server and clients share one current-thread tokio runtime, so every number is what
//! one core does for both ends (the server's share is roughly half). Each figure is the
//! median of 5 runs of 1.5 s.
//!
//! ```text
//! cargo run --release -p polity-tls --example tls_bench
//! ```

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, client::Resumption, pki_types::ServerName};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    sync::watch,
};
use tokio_rustls::TlsConnector;

const RUNS: usize = 5;
const RUN_TIME: Duration = Duration::from_millis(1500);
const CLIENTS: usize = 8;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench())
}

async fn bench() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let section = polity_tls::self_signed(dir.path(), &[])?;
    let app = Router::new().route("/hello", get(|| async { "hello" }));
    let (_stop, stop_rx) = watch::channel(false);

    let tls_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let tls_addr = tls_listener.local_addr()?;
    tokio::spawn(polity_tls::serve_https(
        tls_listener,
        app.clone(),
        polity_tls::server_config(&section)?,
        stop_rx,
    ));
    let plain_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let plain_addr = plain_listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(plain_listener, app).await;
    });

    let mut full = (*polity_tls::client_config(Some(&section.cert))?).clone();
    full.alpn_protocols = vec![b"http/1.1".to_vec()];
    let resumed = full.clone();
    full.resumption = Resumption::disabled();
    let full = Arc::new(full);
    let resumed = Arc::new(resumed);
    // Prime the session cache so "resumed" resumes from its first connection.
    let primed = Arc::new(AtomicU64::new(0));
    one_request(Some(resumed.clone()), tls_addr, &primed).await?;

    println!(
        "one core (client and server share a current-thread runtime), {CLIENTS} concurrent clients, \
         median of {RUNS} × {:.1} s",
        RUN_TIME.as_secs_f64()
    );
    println!("{:<52} {:>12}", "measure", "per second");
    let rows: [(&str, Workload); 6] = [
        (
            "TLS 1.3 full handshakes (ECDSA P-256, X25519)",
            Workload::Handshake(full.clone()),
        ),
        (
            "HTTPS, new connection per request, full handshake",
            Workload::Connections(Some(full.clone()), tls_addr),
        ),
        (
            "HTTPS, new connection per request, resumed",
            Workload::Connections(Some(resumed), tls_addr),
        ),
        (
            "plain HTTP, new connection per request",
            Workload::Connections(None, plain_addr),
        ),
        (
            "HTTPS requests, keep-alive",
            Workload::Requests(Some(full), tls_addr),
        ),
        (
            "plain HTTP requests, keep-alive",
            Workload::Requests(None, plain_addr),
        ),
    ];
    for (name, work) in rows {
        let mut rates = Vec::with_capacity(RUNS);
        let resumed = Arc::new(AtomicU64::new(0));
        let mut total = 0.0;
        for _ in 0..RUNS {
            let rate = run(&work, tls_addr, &resumed).await?;
            total += rate * RUN_TIME.as_secs_f64();
            rates.push(rate);
        }
        rates.sort_by(f64::total_cmp);
        let note = match resumed.load(Ordering::Relaxed) {
            0 => String::new(),
            n => format!("  ({:.0} % resumed)", 100.0 * n as f64 / total),
        };
        println!("{name:<52} {:>12.0}{note}", rates[RUNS / 2]);
    }
    Ok(())
}

enum Workload {
    /// Connect, TLS handshake, close.
    Handshake(Arc<ClientConfig>),
    /// Connect (TLS when a config is given), one GET, close.
    Connections(Option<Arc<ClientConfig>>, SocketAddr),
    /// One connection (TLS when a config is given), GETs until the deadline.
    Requests(Option<Arc<ClientConfig>>, SocketAddr),
}

/// Runs `CLIENTS` loops of `work` for `RUN_TIME`; returns completed operations per second.
async fn run(
    work: &Workload,
    tls_addr: SocketAddr,
    resumed: &Arc<AtomicU64>,
) -> Result<f64, Box<dyn std::error::Error>> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + RUN_TIME;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let done = done.clone();
        tasks.push(match work {
            Workload::Handshake(cfg) => {
                let cfg = cfg.clone();
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        handshake(tls_addr, &cfg).await?;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok::<_, std::io::Error>(())
                })
            }
            Workload::Connections(cfg, addr) => {
                let (cfg, addr, resumed) = (cfg.clone(), *addr, resumed.clone());
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        one_request(cfg.clone(), addr, &resumed).await?;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            }
            Workload::Requests(cfg, addr) => {
                let (cfg, addr) = (cfg.clone(), *addr);
                tokio::spawn(async move {
                    let tcp = TcpStream::connect(addr).await?;
                    tcp.set_nodelay(true)?;
                    match cfg {
                        Some(cfg) => {
                            let tls = TlsConnector::from(cfg)
                                .connect(ServerName::try_from("localhost").map_err(io)?, tcp)
                                .await?;
                            requests(tls, deadline, &done).await
                        }
                        None => requests(tcp, deadline, &done).await,
                    }
                })
            }
        });
    }
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / RUN_TIME.as_secs_f64())
}

/// One full TLS connection: connect, handshake, close.
async fn handshake(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> std::io::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let tls = TlsConnector::from(cfg.clone())
        .connect(ServerName::try_from("localhost").map_err(io)?, tcp)
        .await?;
    drop(tls);
    Ok(())
}

/// Connect, one GET /hello, close; counts TLS sessions that were resumed.
async fn one_request(
    cfg: Option<Arc<ClientConfig>>,
    addr: SocketAddr,
    resumed: &AtomicU64,
) -> std::io::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let past = Instant::now() - Duration::from_secs(1);
    let sink = AtomicU64::new(0);
    match cfg {
        Some(cfg) => {
            let tls = TlsConnector::from(cfg)
                .connect(ServerName::try_from("localhost").map_err(io)?, tcp)
                .await?;
            if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                resumed.fetch_add(1, Ordering::Relaxed);
            }
            get_until(tls, past, &sink, 1).await
        }
        None => get_until(tcp, past, &sink, 1).await,
    }
}

/// GET /hello in a loop on one keep-alive connection until `deadline`.
async fn requests<S>(stream: S, deadline: Instant, done: &AtomicU64) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    get_until(stream, deadline, done, 0).await
}

/// GET /hello on one connection until `deadline`, but at least `min` times.
async fn get_until<S>(
    stream: S,
    deadline: Instant,
    done: &AtomicU64,
    min: u64,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io)?;
    tokio::spawn(conn);
    let mut sent = 0;
    while sent < min || Instant::now() < deadline {
        sent += 1;
        let req = hyper::Request::get("/hello")
            .header(hyper::header::HOST, "localhost")
            .body(String::new())
            .map_err(io)?;
        send.ready().await.map_err(io)?;
        let resp = send.send_request(req).await.map_err(io)?;
        let body = axum::body::to_bytes(axum::body::Body::new(resp.into_body()), 1024)
            .await
            .map_err(io)?;
        if body.as_ref() != b"hello" {
            return Err(io("unexpected body"));
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn io(e: impl ToString) -> std::io::Error {
    std::io::Error::other(e.to_string())
}
