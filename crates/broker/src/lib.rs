//! The embedded MQTT broker for the demo and small sites (rumqttd, kept in a leaf crate).
//!
//! `polity up` and small edge sites need an MQTT broker without installing one. This
//! crate owns exactly that: an MQTT 3.1.1 listener ([`EmbeddedBroker`]) backed by
//! [rumqttd](https://docs.rs/rumqttd), running on its own threads with its own
//! single-threaded runtimes, so it never competes with the node's tokio runtime. Polity
//! itself connects to it as an ordinary MQTT client (see `polity-ingest`'s MQTT source),
//! exactly as it would to a city's Mosquitto or EMQX. Larger deployments use the city's
//! broker instead and do not start this one.
//!
//! It must not know about Polity's data model: it moves bytes between MQTT clients.
//!
//! # Logging
//!
//! rumqttd logs through `tracing` on threads it spawns itself, so the node's global
//! subscriber receives its events (a thread-local default cannot reach them). It is
//! chatty at `info` (one event per connection). Binaries add [`TRACING_DIRECTIVE`] to
//! their `EnvFilter` to keep only its warnings and errors.
//!
//! # Lifetime
//!
//! rumqttd has no shutdown: once started, the broker serves until the process exits.
//! Dropping an [`EmbeddedBroker`] does not stop it. Start it once per process (tests
//! may start several, each on its own port).

use std::{
    collections::HashMap,
    io,
    net::{SocketAddr, TcpListener},
    thread,
    time::Duration,
};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// `EnvFilter` directive that keeps rumqttd's warnings and errors and drops its
/// per-connection `info` chatter. Add it to the node's filter, e.g.
/// `format!("{base},{}", polity_broker::TRACING_DIRECTIVE)`.
pub const TRACING_DIRECTIVE: &str = "rumqttd=warn";

/// The command-line flag that chooses the listen address, named in error messages.
pub const LISTEN_FLAG: &str = "--mqtt-listen";

/// Largest MQTT payload the embedded broker accepts, in bytes (256 KiB). Device
/// messages are far smaller; this bounds a misbehaving client's memory use.
pub const MAX_PAYLOAD: usize = 256 * 1024;

/// Why the embedded broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Something else already listens on the address.
    #[error(
        "MQTT listen address {addr} is already in use (is another MQTT broker such as Mosquitto running there?); choose another with {flag} ADDR"
    )]
    AddrInUse {
        /// The address asked for.
        addr: SocketAddr,
        /// The flag or config key that sets it (normally [`LISTEN_FLAG`]).
        flag: String,
    },
    /// The address cannot be listened on for another reason (not a local address,
    /// a privileged port without permission).
    #[error("cannot listen for MQTT on {addr}: {source}; choose another address with {flag} ADDR")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The flag or config key that sets it.
        flag: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The broker's threads could not be started.
    #[error("could not start the embedded MQTT broker's threads: {0}")]
    Spawn(io::Error),
    /// The broker did not begin accepting connections in time.
    #[error(
        "the embedded MQTT broker did not start listening on {addr} within {waited_ms} ms; another process may have taken the port, so retry or choose another with {flag} ADDR"
    )]
    NotListening {
        /// The address it should listen on.
        addr: SocketAddr,
        /// How long we waited.
        waited_ms: u64,
        /// The flag or config key that sets it.
        flag: String,
    },
}

/// Tuning of the embedded broker. The defaults suit the demo and a small site.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// The flag or config key named in errors about the address. Default [`LISTEN_FLAG`].
    pub flag: String,
    /// Most concurrent client connections. Default 10 000.
    pub max_connections: usize,
    /// Largest accepted payload, bytes. Default [`MAX_PAYLOAD`].
    pub max_payload: usize,
    /// Most unacknowledged QoS 1 messages per connection. Default 100.
    pub max_inflight: usize,
    /// How long to wait for the listener to come up. Default 5 s.
    pub start_timeout: Duration,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            flag: LISTEN_FLAG.to_owned(),
            max_connections: 10_000,
            max_payload: MAX_PAYLOAD,
            max_inflight: 100,
            start_timeout: Duration::from_secs(5),
        }
    }
}

/// A running embedded MQTT 3.1.1 broker.
#[derive(Debug)]
pub struct EmbeddedBroker {
    local_addr: SocketAddr,
}

impl EmbeddedBroker {
    /// Starts a broker listening on `listen` with default options. Port 0 picks a free
    /// port; read it back with [`EmbeddedBroker::local_addr`].
    pub fn start(listen: SocketAddr) -> Result<EmbeddedBroker, BrokerError> {
        Self::start_with(listen, BrokerOptions::default())
    }

    /// Starts a broker listening on `listen`.
    ///
    /// The address is checked first by binding it with the standard library, so a busy
    /// port gives [`BrokerError::AddrInUse`] instead of a log line from inside rumqttd.
    /// For port 0 that probe picks the free port, releases it and hands it to rumqttd:
    /// another process could take the port in that short window, in which case start-up
    /// fails with [`BrokerError::NotListening`] and can simply be retried.
    pub fn start_with(
        listen: SocketAddr,
        opts: BrokerOptions,
    ) -> Result<EmbeddedBroker, BrokerError> {
        let local_addr = probe(listen, &opts.flag)?;
        let config = config(local_addr, &opts);
        thread::Builder::new()
            .name("polity-mqtt-broker".into())
            .spawn(move || {
                let mut broker = Broker::new(config);
                if let Err(error) = broker.start() {
                    tracing::error!(%error, addr = %local_addr, "embedded MQTT broker stopped");
                }
            })
            .map_err(BrokerError::Spawn)?;
        wait_listening(local_addr, &opts)?;
        tracing::info!(addr = %local_addr, "embedded MQTT broker listening");
        Ok(EmbeddedBroker { local_addr })
    }

    /// The address the broker listens on (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// Binds `listen` once to learn whether it is free and which port it is.
fn probe(listen: SocketAddr, flag: &str) -> Result<SocketAddr, BrokerError> {
    match TcpListener::bind(listen) {
        Ok(l) => l.local_addr().map_err(|source| BrokerError::Listen {
            addr: listen,
            flag: flag.to_owned(),
            source,
        }),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(BrokerError::AddrInUse {
            addr: listen,
            flag: flag.to_owned(),
        }),
        Err(source) => Err(BrokerError::Listen {
            addr: listen,
            flag: flag.to_owned(),
            source,
        }),
    }
}

/// Polls until something accepts TCP connections on `addr`.
fn wait_listening(addr: SocketAddr, opts: &BrokerOptions) -> Result<(), BrokerError> {
    let connect_to = if addr.ip().is_unspecified() {
        // 0.0.0.0 / :: listen on every interface, loopback included.
        let ip = if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    };
    // One real MQTT session proves both the listener and the router answer. It stays
    // connected for the broker's life: rumqttd reuses connection ids, and tearing the
    // probe down while the first real client connects can make the router drop that
    // client's state ("no-connection id 0 is already gone"). rumqttc's blocking client
    // runs its own runtime, so the session gets its own thread.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    thread::Builder::new()
        .name("polity-broker-health".into())
        .spawn(move || health_session(connect_to, ready_tx))
        .map_err(BrokerError::Spawn)?;
    match ready_rx.recv_timeout(opts.start_timeout) {
        Ok(()) => Ok(()),
        Err(_) => Err(BrokerError::NotListening {
            addr,
            waited_ms: opts.start_timeout.as_millis() as u64,
            flag: opts.flag.clone(),
        }),
    }
}

fn config(listen: SocketAddr, opts: &BrokerOptions) -> Config {
    let server = ServerSettings {
        name: "polity-v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: opts.max_payload,
            max_inflight_count: opts.max_inflight,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: opts.max_connections,
            max_outgoing_packet_count: 200,
            // Per-topic commit log kept in memory: 4 × 16 MiB bounds what a slow
            // subscriber can fall behind by before it misses messages.
            max_segment_size: 16 * 1024 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("polity".to_owned(), server)])),
        ..Config::default()
    }
}

/// The broker's own health session: connects (retrying until the listener is up), says
/// so once on `ready`, and then stays connected, answering keep-alives, for the life of
/// the process.
fn health_session(addr: SocketAddr, ready: std::sync::mpsc::Sender<()>) {
    let mut opts =
        rumqttc::MqttOptions::new("polity-broker-health", addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (_client, mut connection) = rumqttc::Client::new(opts, 1);
    for event in connection.iter() {
        match event {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                let _ = ready.send(());
            }
            Ok(_) => {}
            // Not listening yet (or gone): rumqttc reconnects on the next iteration.
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}
