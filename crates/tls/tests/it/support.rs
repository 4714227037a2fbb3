//! Shared fixtures: a router, an HTTPS node, a TLS client and a tiny HTTP/1.1 client.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use axum::{Router, extract::ConnectInfo, routing::get};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
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

/// An HTTP/1.1 connection over an established TLS stream.
pub struct Http(hyper::client::conn::http1::SendRequest<String>);

impl Http {
    pub async fn over(tls: TlsStream<TcpStream>) -> Result<Http, hyper::Error> {
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(Http(send))
    }

    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, String), String> {
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, "localhost")
            .body(String::new())
            .unwrap();
        // On a kept-alive connection the previous exchange may still be winding down:
        // wait until hyper can take the next request, as its docs require.
        self.0.ready().await.map_err(|e| format!("{e:?}"))?;
        // Debug shows the cause (e.g. the TLS alert), Display only "connection error".
        let resp = self
            .0
            .send_request(req)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = resp.status();
        let body = axum::body::to_bytes(axum::body::Body::new(resp.into_body()), 1 << 20)
            .await
            .map_err(|e| format!("{e:?}"))?;
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
