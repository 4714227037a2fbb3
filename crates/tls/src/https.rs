//! Serving an axum `Router` over HTTPS (HTTP/1.1 on tokio-rustls and hyper), or over
//! plain HTTP with the same connection handling.
//!
//! The accept loop only accepts: each connection's handshake runs in its own task with
//! a timeout, so a slow, silent or plain-HTTP client costs one task and never delays
//! the others. Headers must arrive within a deadline, connections are capped, response
//! header names are written in their conventional case (`Location`, `Link`: some
//! clients compare them case-sensitively), and a trailing `/` can be dropped from
//! request paths before routing. It must not change what the router answers.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, extract::ConnectInfo};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
};
use tokio_rustls::TlsAcceptor;
use tower_service::Service as _;

use crate::{HANDSHAKE_TIMEOUT, TlsCounters};

/// Most connection slots a listener can have: `acquire_many` counts in `u32`.
pub(crate) const MAX_SLOTS: usize = if (u32::MAX as usize) < Semaphore::MAX_PERMITS {
    u32::MAX as usize
} else {
    Semaphore::MAX_PERMITS
};

/// Tuning of [`serve_https_with`]. The defaults suit a city hub.
#[derive(Debug, Clone)]
pub struct HttpsOptions {
    /// Time a client gets to finish the TLS handshake. Default [`HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// Time a client gets to send a request's headers once connected. Default 30 s.
    pub header_read_timeout: Duration,
    /// Most connections open at once; more are closed at once and counted as refused.
    /// Default 10 000.
    pub max_connections: usize,
    /// Where handshakes and refusals are counted (share it with `/metrics`).
    pub counters: Arc<TlsCounters>,
    /// Route `/a/b/` as `/a/b` (the query string is kept). Default false.
    pub strip_trailing_slash: bool,
}

impl Default for HttpsOptions {
    fn default() -> Self {
        HttpsOptions {
            handshake_timeout: HANDSHAKE_TIMEOUT,
            header_read_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            counters: Arc::default(),
            strip_trailing_slash: false,
        }
    }
}

/// Serves `app` over HTTPS on `listener` with [`HttpsOptions::default`] until
/// `shutdown` becomes `true` (or its sender is dropped). See [`serve_https_with`].
pub async fn serve_https(
    listener: TcpListener,
    app: Router,
    config: Arc<ServerConfig>,
    shutdown: watch::Receiver<bool>,
) {
    serve_https_with(listener, app, config, shutdown, HttpsOptions::default()).await;
}

/// Serves `app` over HTTPS on `listener` until `shutdown` becomes `true` (or its sender
/// is dropped).
///
/// Each connection does its TLS handshake in its own task within
/// `opts.handshake_timeout`; failed and timed-out handshakes are counted in
/// `opts.counters` and logged at `debug` (they are the client's problem, not the
/// node's). Requests see the peer address as `ConnectInfo<SocketAddr>`.
///
/// On shutdown it stops accepting, closes idle keep-alive connections, lets requests in
/// flight finish, and returns when every connection has closed. Long-lived responses
/// (server-sent events) must end on the same signal; bound the wait with a timeout.
pub async fn serve_https_with(
    listener: TcpListener,
    app: Router,
    config: Arc<ServerConfig>,
    shutdown: watch::Receiver<bool>,
    opts: HttpsOptions,
) {
    serve(
        listener,
        app,
        Some(TlsAcceptor::from(config)),
        shutdown,
        opts,
    )
    .await;
}

/// Serves `app` over plain HTTP on `listener` until `shutdown` becomes `true`, with the
/// connection handling of [`serve_https_with`] (header deadline, connection cap,
/// graceful shutdown) without the TLS handshake.
pub async fn serve_http_with(
    listener: TcpListener,
    app: Router,
    shutdown: watch::Receiver<bool>,
    opts: HttpsOptions,
) {
    serve(listener, app, None, shutdown, opts).await;
}

async fn serve(
    listener: TcpListener,
    app: Router,
    acceptor: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
    opts: HttpsOptions,
) {
    let max = opts.max_connections.clamp(1, MAX_SLOTS);
    let slots = Arc::new(Semaphore::new(max));
    let opts = Arc::new(opts);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    accept_error(&error).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            opts.counters.refused();
            tracing::debug!(%peer, "HTTPS connection refused: at the connection limit");
            continue;
        };
        tokio::spawn(connection(
            tcp,
            peer,
            acceptor.clone(),
            app.clone(),
            opts.clone(),
            shutdown.clone(),
            slot,
        ));
    }
    drop(listener);
    // Every connection task holds one permit until it ends.
    let _ = slots.acquire_many(max as u32).await;
}

/// Resolves when `rx` says stop, or when its sender is gone (nobody can say so any
/// more). The guard `wait_for` returns is dropped here: it is not `Send`.
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Logs an accept error and, when it is about the process (out of file descriptors),
/// backs off so the loop does not spin.
pub(crate) async fn accept_error(error: &std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        tracing::debug!(%error, "accept failed");
    } else {
        tracing::warn!(%error, "accept failed; retrying in 100 ms");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    app: Router,
    opts: Arc<HttpsOptions>,
    mut shutdown: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let _active = opts.counters.open();
    let _ = tcp.set_nodelay(true);
    let Some(acceptor) = acceptor else {
        serve_connection(tcp, peer, app, opts.clone(), shutdown).await;
        return;
    };
    let tls = tokio::select! {
        result = tokio::time::timeout(opts.handshake_timeout, acceptor.accept(tcp)) => match result {
            Ok(Ok(tls)) => {
                opts.counters.handshake_ok();
                tls
            }
            Ok(Err(error)) => {
                opts.counters.handshake_failed(false);
                tracing::debug!(%peer, %error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                opts.counters.handshake_failed(true);
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        () = stopped(&mut shutdown) => return,
    };
    serve_connection(tls, peer, app, opts.clone(), shutdown).await;
}

/// `/a/b/?q` → `/a/b?q`; the root stays `/`.
fn strip_trailing_slash(uri: &mut hyper::Uri) {
    let path = uri.path();
    if path.len() <= 1 || !path.ends_with('/') {
        return;
    }
    let mut pq = path.trim_end_matches('/').to_owned();
    if pq.is_empty() {
        pq.push('/');
    }
    if let Some(q) = uri.query() {
        pq.push('?');
        pq.push_str(q);
    }
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = pq.parse().ok();
    if let Ok(u) = hyper::Uri::from_parts(parts) {
        *uri = u;
    }
}

async fn serve_connection<IO>(
    io: IO,
    peer: SocketAddr,
    app: Router,
    opts: Arc<HttpsOptions>,
    mut shutdown: watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let strip = opts.strip_trailing_slash;
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        if strip {
            strip_trailing_slash(req.uri_mut());
        }
        let mut app = app.clone();
        async move {
            // A Router is always ready; poll anyway, as the Service contract asks.
            std::future::poll_fn(|cx| {
                tower_service::Service::<hyper::Request<Incoming>>::poll_ready(&mut app, cx)
            })
            .await?;
            app.call(req).await
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .title_case_headers(true)
        .serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "HTTPS connection ended with an error");
                }
                break;
            }
            () = stopped(&mut shutdown), if !draining => {
                // Finish the request in flight, then close; idle connections close now.
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slashes_go_and_the_query_stays() {
        for (from, to) in [
            ("/ngsi-ld/v1/entities/", "/ngsi-ld/v1/entities"),
            (
                "/ngsi-ld/v1/entities/?type=A",
                "/ngsi-ld/v1/entities?type=A",
            ),
            ("/a/b//", "/a/b"),
            ("/", "/"),
            ("/a", "/a"),
            ("/a?x=/", "/a?x=/"),
        ] {
            let mut u: hyper::Uri = from.parse().unwrap();
            strip_trailing_slash(&mut u);
            assert_eq!(u.to_string(), to, "{from}");
        }
    }
}
