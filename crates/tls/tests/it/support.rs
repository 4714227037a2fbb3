//! Shared fixtures: a router, an HTTPS node, a TLS client and a tiny HTTP/1.1 client.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use axum::{Router, extract::ConnectInfo, routing::get};
use hyper::StatusCode;
use polity_tls::{HttpsOptions, TlsCounters, TlsSection};
use rustls::{ClientConfig, pki_types::ServerName};
use tokio::{net::TcpStream, sync::watch, task::JoinHandle};
use tokio_rustls::{TlsConnector, client::TlsStream};

pub fn loopback0() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// `/hello` answers "hello", `/peer` the client's address as the server saw it,
/// `/slow` "done" after 500 ms.
pub fn router() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "done"
            }),
        )
}

/// A running HTTPS server.
pub struct HttpsNode {
    pub addr: SocketAddr,
    pub counters: Arc<TlsCounters>,
    pub stop: watch::Sender<bool>,
    pub task: JoinHandle<()>,
}

pub async fn https_node(section: &TlsSection, mut opts: HttpsOptions) -> HttpsNode {
    let config = polity_tls::server_config(section).expect("server config");
    let listener = tokio::net::TcpListener::bind(loopback0()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counters = Arc::new(TlsCounters::default());
    opts.counters = counters.clone();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(polity_tls::serve_https_with(
        listener,
        router(),
        config,
        rx,
        opts,
    ));
    HttpsNode {
        addr,
        counters,
        stop,
        task,
    }
}

/// A client config trusting `ca` (or the public roots), offering ALPN `http/1.1`.
pub fn https_client(ca: Option<&Path>) -> Arc<ClientConfig> {
    let mut c = (*polity_tls::client_config(ca).expect("client config")).clone();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

pub async fn tls_connect(
    addr: SocketAddr,
    client: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(client)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// An HTTP/1.1 connection over an established TLS stream, spoken by hand.
///
/// hyper's client can report a kept-alive connection as ready while its dispatcher is
/// still finishing the previous exchange ("connection was not ready"), which made the
/// keep-alive test flaky. Writing the requests ourselves tests only the server.
pub struct Http(TlsStream<TcpStream>);

impl Http {
    pub async fn over(tls: TlsStream<TcpStream>) -> Result<Http, String> {
        Ok(Http(tls))
    }

    /// One `GET` and its whole response (the server always sends `content-length`).
    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, String), String> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        self.0
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("{e:?}"))?;
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .0
                .read(&mut chunk)
                .await
                .map_err(|e| format!("{e:?}"))?;
            if n == 0 {
                return Err("connection closed before a response".to_owned());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .ok_or_else(|| format!("not an HTTP response: {head:?}"))?;
        let length = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .ok_or_else(|| format!("no content-length in {head:?}"))?;
        let mut body = buf[head_end..].to_vec();
        while body.len() < length {
            let mut chunk = [0u8; 4096];
            let n = self
                .0
                .read(&mut chunk)
                .await
                .map_err(|e| format!("{e:?}"))?;
            if n == 0 {
                return Err("connection closed inside a response body".to_owned());
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(length);
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// One GET on a fresh TLS connection.
pub async fn get_once(
    addr: SocketAddr,
    client: Arc<ClientConfig>,
    path: &str,
) -> Result<(StatusCode, String), String> {
    let tls = tls_connect(addr, client)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut http = Http::over(tls).await.map_err(|e| format!("{e:?}"))?;
    http.get(path).await
}

/// Polls `cond` for up to 5 s.
pub async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}
