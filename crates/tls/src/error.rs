//! Errors, written for the operator who has to fix the file or address they name.

use std::{io, net::SocketAddr, path::PathBuf};

/// Why a TLS config, certificate or listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A configured file does not exist.
    #[error(
        "the TLS {what} file {} does not exist; check the path in the [tls] section (paths are relative to the working directory)",
        path.display()
    )]
    Missing {
        /// Which file: "certificate", "private key" or "client CA".
        what: &'static str,
        /// The path as configured.
        path: PathBuf,
    },
    /// A configured file exists but cannot be read.
    #[error("cannot read the TLS {what} file {}: {source}; check that the node's user may read it", path.display())]
    Read {
        /// Which file.
        what: &'static str,
        /// The path as configured.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A file is not well-formed PEM.
    #[error("the TLS {what} file {} is not valid PEM ({detail}); it must hold `-----BEGIN …-----` blocks", path.display())]
    Pem {
        /// Which file.
        what: &'static str,
        /// The path as configured.
        path: PathBuf,
        /// What the parser found wrong.
        detail: String,
    },
    /// A certificate file holds no certificate.
    #[error(
        "the TLS {what} file {} holds no certificate (no `-----BEGIN CERTIFICATE-----` block); point it at a PEM certificate file{hint}",
        path.display(),
        hint = if *what == "certificate" { ", leaf certificate first, then intermediates" } else { "" }
    )]
    NoCertificate {
        /// Which file: "certificate" or "client CA".
        what: &'static str,
        /// The path as configured.
        path: PathBuf,
    },
    /// A certificate cannot be used (bad encoding, not a valid CA certificate).
    #[error("the TLS {what} file {} holds a certificate that cannot be used: {detail}; replace it with a valid X.509 certificate", path.display())]
    BadCertificate {
        /// Which file.
        what: &'static str,
        /// The path as configured.
        path: PathBuf,
        /// rustls' reason.
        detail: String,
    },
    /// The key file holds no private key.
    #[error(
        "the TLS private key file {} holds no private key (no `PRIVATE KEY` block: PKCS#8, PKCS#1 or SEC1); point `key` at the unencrypted PEM key of the certificate (encrypted keys are not supported)",
        path.display()
    )]
    NoKey {
        /// The path as configured.
        path: PathBuf,
    },
    /// The private key is not of a type the ring provider can sign with.
    #[error(
        "the private key in {} is of an unsupported type ({detail}); use an ECDSA P-256/P-384, Ed25519 or RSA (2048 bits or more) key",
        path.display()
    )]
    UnsupportedKey {
        /// The path as configured.
        path: PathBuf,
        /// rustls' reason.
        detail: String,
    },
    /// The private key does not belong to the certificate.
    #[error(
        "the private key {} does not belong to the certificate {}; use the key the certificate was issued for (or the certificate issued for this key)",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the assembled config for another reason.
    #[error("TLS configuration failed: {0}; check the [tls] files")]
    Config(String),
    /// A name given for the self-signed certificate is not a DNS name or IP address.
    #[error(
        "`{name}` cannot be put in a certificate ({detail}); give host names like `polity.example.org` or IP addresses"
    )]
    InvalidName {
        /// The name as given.
        name: String,
        /// rcgen's reason.
        detail: String,
    },
    /// Generating the self-signed certificate failed.
    #[error("could not generate the self-signed demo certificate: {0}")]
    Generate(String),
    /// Writing the self-signed certificate or key failed.
    #[error("cannot write {}: {source}; check that the data directory is writable by the node's user", path.display())]
    Write {
        /// The file or directory being written.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Something else already listens on the address.
    #[error("{addr} is already in use by another program; choose another address with {flag}")]
    AddrInUse {
        /// The address asked for.
        addr: SocketAddr,
        /// The flag or config key that sets it.
        flag: String,
    },
    /// The address cannot be listened on for another reason.
    #[error("cannot listen on {addr}: {source}; choose another address with {flag}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The flag or config key that sets it.
        flag: String,
        /// The operating system's reason.
        source: io::Error,
    },
}
