//! TLS for Polity: HTTPS for the API and pages, MQTT over TLS for the embedded broker,
//! and the client side of MQTT over TLS for the MQTT source.
//!
//! This crate owns everything that touches certificates and TLS sessions:
//!
//! - [`TlsSection`], the `[tls]` config (certificate, key, optional client CA for
//!   mutual TLS), and [`server_config`] / [`mqtt_server_config`], which turn it into a
//!   rustls server config with errors that name the file and say what to fix;
//! - [`self_signed`], the demo certificate `polity up` creates once in its data dir;
//! - [`serve_https`], which serves an axum `Router` over TLS (HTTP/1.1) with a
//!   per-connection handshake timeout and graceful shutdown;
//! - [`MqttTlsFront`], a TLS listener that terminates TLS and pipes bytes to the
//!   embedded broker's plain loopback listener;
//! - [`client_config`], the rustls client config the MQTT source hands to rumqttc;
//! - [`fetch::get`], one HTTPS GET with a size cap and a deadline, for an issuer's JWK
//!   Set;
//! - [`TlsCounters`], handshake and connection counters for `/metrics`.
//!
//! Every config is built on rustls' **ring** provider, installed explicitly in each
//! config (never the process default), with TLS 1.2 and 1.3 only. There is no
//! aws-lc-rs and no OpenSSL here: one crypto provider for the whole node.
//!
//! It must not touch routes, authorization or MQTT semantics: it moves bytes and
//! requests between sockets and the router or broker it is given.

mod config;
mod counters;
mod error;
pub mod fetch;
mod https;
mod mqtt;
mod self_signed;

use std::{net::SocketAddr, path::PathBuf};

pub use config::{client_config, client_config_with_identity, mqtt_server_config, server_config};
pub use counters::{TlsCounters, TlsCountersSnapshot};
pub use error::TlsError;
pub use https::{HttpsOptions, serve_http_with, serve_https, serve_https_with};
pub use mqtt::{MqttFrontOptions, MqttTlsFront};
/// The rustls config types in this crate's API, so callers need no rustls dependency.
pub use rustls::{ClientConfig, ServerConfig};
pub use self_signed::{CERT_FILE, KEY_FILE, TLS_DIR, self_signed};

/// How long a client gets to finish the TLS handshake before the connection is
/// dropped (10 s). A slow or silent client never holds more than its own connection.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The `[tls]` section of a node's config: where its certificate and key are, and
/// whether clients must present certificates.
///
/// ```toml
/// [tls]
/// cert = "/etc/polity/tls/cert.pem"
/// key = "/etc/polity/tls/key.pem"
/// # client_ca = "/etc/polity/tls/clients-ca.pem"   # mutual TLS
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM file with the server's certificate chain, leaf certificate first.
    pub cert: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1; not
    /// encrypted). Keep it readable by the node's user only.
    pub key: PathBuf,
    /// PEM file with the CA certificate(s) that sign client certificates. When set,
    /// mutual TLS is on: every client must present a certificate that chains to one of
    /// these CAs, and connections without one are refused during the handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
}

/// The warning to show when `service` listens on `addr` without TLS, or `None` when
/// `addr` is a loopback address (only this machine can reach it).
///
/// An unspecified address (`0.0.0.0`, `::`) listens on every interface, so it warns.
/// Callers print it to stderr and log it with `tracing::warn!`, e.g. through
/// [`warn_if_plaintext`].
pub fn plaintext_warning(addr: SocketAddr, service: &str) -> Option<String> {
    if addr.ip().is_loopback() {
        return None;
    }
    Some(format!(
        "WARNING: {service} on {addr} is served WITHOUT TLS to a non-loopback address: \
         anyone on the network can read and alter its traffic, tokens included. \
         Configure a [tls] section with cert and key (or listen on 127.0.0.1 only)."
    ))
}

/// Logs [`plaintext_warning`] at `warn` and prints it to stderr when it applies.
/// Returns whether it warned.
pub fn warn_if_plaintext(addr: SocketAddr, service: &str) -> bool {
    match plaintext_warning(addr, service) {
        Some(message) => {
            eprintln!("{message}");
            tracing::warn!(%addr, service, "serving without TLS on a non-loopback address");
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_quiet_and_everything_else_warns() {
        for quiet in ["127.0.0.1:8080", "[::1]:8080"] {
            assert_eq!(plaintext_warning(quiet.parse().unwrap(), "HTTP"), None);
        }
        for loud in ["0.0.0.0:8080", "[::]:8080", "192.168.1.10:8080"] {
            let msg = plaintext_warning(loud.parse().unwrap(), "HTTP").expect(loud);
            assert!(msg.contains("WITHOUT TLS") && msg.contains(loud), "{msg}");
        }
    }

    #[test]
    fn tls_section_rejects_unknown_fields() {
        let ok: TlsSection = toml::from_str("cert = \"c.pem\"\nkey = \"k.pem\"\n").unwrap();
        assert_eq!(ok.client_ca, None);
        let err = toml::from_str::<TlsSection>("cert = \"c\"\nkey = \"k\"\nca = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `ca`"), "{err}");
    }
}
