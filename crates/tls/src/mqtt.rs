//! MQTT over TLS for the embedded broker: a TLS listener in front of the broker's plain
//! loopback listener.
//!
//! rumqttd has TLS of its own, but through tokio-rustls 0.25 (rustls 0.22): a second
//! rustls in the build. Terminating TLS here keeps one rustls on ring, and the broker
//! keeps listening on loopback only. It must not parse MQTT: it pipes bytes.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use rustls::ServerConfig;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;

use crate::{
    HANDSHAKE_TIMEOUT, TlsCounters, TlsError,
    https::{MAX_SLOTS, accept_error, stopped},
};

/// Tuning of [`MqttTlsFront`]. The defaults suit the demo and a small site.
#[derive(Debug, Clone)]
pub struct MqttFrontOptions {
    /// The flag or config key named in errors about the listen address.
    /// Default `--mqtt-tls-listen`.
    pub flag: String,
    /// Time a client gets to finish the TLS handshake. Default [`HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// Time allowed to connect to the broker behind. Default 5 s.
    pub upstream_timeout: Duration,
    /// Most TLS connections open at once; more are closed at once and counted as
    /// refused. Default 10 000 (the embedded broker's own limit).
    pub max_connections: usize,
}

impl Default for MqttFrontOptions {
    fn default() -> Self {
        MqttFrontOptions {
            flag: "--mqtt-tls-listen".to_owned(),
            handshake_timeout: HANDSHAKE_TIMEOUT,
            upstream_timeout: Duration::from_secs(5),
            max_connections: 10_000,
        }
    }
}

/// A running MQTT-over-TLS listener that forwards each connection to a plain MQTT
/// listener (normally the embedded broker on loopback). Dropping it stops accepting
/// and closes the connections it forwards.
#[derive(Debug)]
pub struct MqttTlsFront {
    local_addr: SocketAddr,
    counters: Arc<TlsCounters>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl MqttTlsFront {
    /// Listens for MQTT over TLS on `listen` (port 0 picks a free port) and forwards
    /// each connection to `upstream`, with [`MqttFrontOptions::default`]. Use a config
    /// from [`crate::mqtt_server_config`].
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        config: Arc<ServerConfig>,
    ) -> Result<MqttTlsFront, TlsError> {
        Self::start_with(listen, upstream, config, MqttFrontOptions::default()).await
    }

    /// As [`MqttTlsFront::start`] with explicit options.
    pub async fn start_with(
        listen: SocketAddr,
        upstream: SocketAddr,
        config: Arc<ServerConfig>,
        opts: MqttFrontOptions,
    ) -> Result<MqttTlsFront, TlsError> {
        let listener = TcpListener::bind(listen).await.map_err(|source| {
            if source.kind() == io::ErrorKind::AddrInUse {
                TlsError::AddrInUse {
                    addr: listen,
                    flag: opts.flag.clone(),
                }
            } else {
                TlsError::Listen {
                    addr: listen,
                    flag: opts.flag.clone(),
                    source,
                }
            }
        })?;
        let local_addr = listener.local_addr().map_err(|source| TlsError::Listen {
            addr: listen,
            flag: opts.flag.clone(),
            source,
        })?;
        let counters = Arc::new(TlsCounters::default());
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            listener,
            upstream,
            TlsAcceptor::from(config),
            Arc::new(opts),
            counters.clone(),
            stop_rx,
        ));
        tracing::info!(addr = %local_addr, %upstream, "MQTT over TLS listening");
        Ok(MqttTlsFront {
            local_addr,
            counters,
            stop,
            task: Some(task),
        })
    }

    /// The address it listens on (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Its handshake and connection counters.
    pub fn counters(&self) -> Arc<TlsCounters> {
        self.counters.clone()
    }

    /// Stops accepting, closes every forwarded connection and waits until they are
    /// closed. MQTT clients see a disconnect and reconnect elsewhere or later.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MqttTlsFront {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    acceptor: TlsAcceptor,
    opts: Arc<MqttFrontOptions>,
    counters: Arc<TlsCounters>,
    mut stop: watch::Receiver<bool>,
) {
    let max = opts.max_connections.clamp(1, MAX_SLOTS);
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    accept_error(&error).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            counters.refused();
            tracing::debug!(%peer, "MQTT TLS connection refused: at the connection limit");
            continue;
        };
        tokio::spawn(forward(
            tcp,
            peer,
            upstream,
            acceptor.clone(),
            opts.clone(),
            counters.clone(),
            stop.clone(),
            slot,
        ));
    }
    drop(listener);
    let _ = slots.acquire_many(max as u32).await;
}

#[allow(clippy::too_many_arguments)] // one task's whole context, passed once
async fn forward(
    tcp: TcpStream,
    peer: SocketAddr,
    upstream: SocketAddr,
    acceptor: TlsAcceptor,
    opts: Arc<MqttFrontOptions>,
    counters: Arc<TlsCounters>,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let _active = counters.open();
    let _ = tcp.set_nodelay(true);
    let work = async {
        let mut tls = match tokio::time::timeout(opts.handshake_timeout, acceptor.accept(tcp)).await
        {
            Ok(Ok(tls)) => {
                counters.handshake_ok();
                tls
            }
            Ok(Err(error)) => {
                counters.handshake_failed(false);
                tracing::debug!(%peer, %error, "MQTT TLS handshake failed");
                return;
            }
            Err(_) => {
                counters.handshake_failed(true);
                tracing::debug!(%peer, "MQTT TLS handshake timed out");
                return;
            }
        };
        let mut broker = match tokio::time::timeout(
            opts.upstream_timeout,
            TcpStream::connect(upstream),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(error)) => {
                counters.upstream_failed();
                tracing::warn!(%peer, %upstream, %error, "cannot reach the MQTT broker behind the TLS listener");
                return;
            }
            Err(_) => {
                counters.upstream_failed();
                tracing::warn!(%peer, %upstream, "the MQTT broker behind the TLS listener did not accept in time");
                return;
            }
        };
        let _ = broker.set_nodelay(true);
        match tokio::io::copy_bidirectional(&mut tls, &mut broker).await {
            Ok((up, down)) => tracing::debug!(%peer, up, down, "MQTT TLS connection closed"),
            Err(error) => tracing::debug!(%peer, %error, "MQTT TLS connection ended"),
        }
    };
    tokio::select! {
        () = work => {}
        () = stopped(&mut stop) => {}
    }
}
