//! Building rustls configs from PEM files: server (HTTPS, MQTT) and client (MQTT source).
//!
//! Each config gets the ring provider explicitly and TLS 1.3 + 1.2 only, so nothing
//! depends on a process-wide default provider.

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
    sign::CertifiedKey,
};

use crate::{TlsError, TlsSection};

/// TLS 1.3 first, then 1.2; nothing older exists in rustls.
static VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The one crypto provider: rustls' ring provider.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server config for HTTPS: the section's certificate and key, mutual TLS when
/// `client_ca` is set, TLS 1.2+ and ALPN `http/1.1`.
///
/// Errors name the file and say what to fix: a missing file, no certificate in the
/// PEM, no or an unsupported private key, a key that does not match the certificate,
/// or a client CA file without a usable CA certificate.
pub fn server_config(section: &TlsSection) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = build_server(section)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The server config for MQTT over TLS: as [`server_config`] but without ALPN, so
/// clients that offer an MQTT ALPN id (or none) are all accepted.
pub fn mqtt_server_config(section: &TlsSection) -> Result<Arc<ServerConfig>, TlsError> {
    Ok(Arc::new(build_server(section)?))
}

fn build_server(section: &TlsSection) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let certs = load_certs("certificate", &section.cert)?;
    let key = load_key(&section.key)?;
    let certified = certified_key(&provider, certs, key, &section.cert, &section.key)?;

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &section.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = Arc::new(root_store("client CA", ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::BadCertificate {
                    what: "client CA",
                    path: ca.clone(),
                    detail: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    Ok(builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified))))
}

/// The client config for MQTT over TLS (what the MQTT source passes to rumqttc as
/// `TlsConfiguration::Rustls`): trusts the CA certificates in the PEM file `ca`, or,
/// without one, the Mozilla root set built into the binary (webpki-roots), so a broker
/// with a public certificate works with no file at all.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    Ok(Arc::new(client_builder(ca)?.with_no_client_auth()))
}

/// As [`client_config`], and presents the client certificate `cert` (PEM chain) with
/// its private key `key`, for brokers that require mutual TLS.
pub fn client_config_with_identity(
    ca: Option<&Path>,
    cert: &Path,
    key: &Path,
) -> Result<Arc<ClientConfig>, TlsError> {
    let certs = load_certs("certificate", cert)?;
    let private = load_key(key)?;
    // Same checks as the server: type supported, key matches certificate.
    certified_key(&provider(), certs.clone(), private.clone_key(), cert, key)?;
    let config = client_builder(ca)?
        .with_client_auth_cert(certs, private)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

fn client_builder(
    ca: Option<&Path>,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>, TlsError> {
    let roots = match ca {
        Some(ca) => root_store("CA", ca)?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots))
}

/// Pairs the chain with the key, checking the key type and that they match.
pub(crate) fn certified_key(
    provider: &CryptoProvider,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, TlsError> {
    let signing =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::UnsupportedKey {
                path: key_path.to_owned(),
                detail: e.to_string(),
            })?;
    let certified = CertifiedKey::new(certs, signing);
    match certified.keys_match() {
        // ring's keys always expose their public key; Unknown cannot happen with them.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            })
        }
        Err(e) => Err(TlsError::BadCertificate {
            what: "certificate",
            path: cert_path.to_owned(),
            detail: e.to_string(),
        }),
    }
}

fn root_store(what: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(what, path)? {
        roots.add(cert).map_err(|e| TlsError::BadCertificate {
            what,
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// Reads a file, telling a missing file apart from an unreadable one.
fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => TlsError::Missing {
            what,
            path: path.to_owned(),
        },
        _ => TlsError::Read {
            what,
            path: path.to_owned(),
            source,
        },
    })
}

/// All certificates in a PEM file, in order; at least one.
pub(crate) fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("private key", path)?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => Ok(key),
        Err(rustls::pki_types::pem::Error::NoItemsFound) => Err(TlsError::NoKey {
            path: path.to_owned(),
        }),
        Err(e) => Err(pem_error("private key", path, e)),
    }
}

fn pem_error(what: &'static str, path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Pem {
        what,
        path: PathBuf::from(path),
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh self-signed certificate and key as PEM text.
    fn generated() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn section(cert: PathBuf, key: PathBuf) -> TlsSection {
        TlsSection {
            cert,
            key,
            client_ca: None,
        }
    }

    #[test]
    fn a_matching_pair_builds_with_http11_alpn_and_no_alpn_for_mqtt() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = generated();
        let s = section(
            write(dir.path(), "c.pem", &c),
            write(dir.path(), "k.pem", &k),
        );
        let http = server_config(&s).unwrap();
        assert_eq!(http.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(mqtt_server_config(&s).unwrap().alpn_protocols.is_empty());
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (_, k) = generated();
        let missing = dir.path().join("nope.pem");
        let s = section(missing.clone(), write(dir.path(), "k.pem", &k));
        let err = server_config(&s).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Missing {
                    what: "certificate",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(&missing.display().to_string()));
    }

    #[test]
    fn a_key_in_the_cert_slot_says_no_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (_, k) = generated();
        let kp = write(dir.path(), "k.pem", &k);
        let err = server_config(&section(kp.clone(), kp)).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
        assert!(err.to_string().contains("BEGIN CERTIFICATE"), "{err}");
    }

    #[test]
    fn a_cert_in_the_key_slot_says_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = generated();
        let cp = write(dir.path(), "c.pem", &c);
        let err = server_config(&section(cp.clone(), cp)).unwrap_err();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err:?}");
    }

    #[test]
    fn another_certificates_key_is_a_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = generated();
        let (_, other_key) = generated();
        let s = section(
            write(dir.path(), "c.pem", &c),
            write(dir.path(), "k.pem", &other_key),
        );
        let err = server_config(&s).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn an_unsupported_key_type_is_reported() {
        // A syntactically valid PKCS#8 block whose content is no key ring can load.
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = generated();
        let junk = "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n";
        let s = section(
            write(dir.path(), "c.pem", &c),
            write(dir.path(), "k.pem", junk),
        );
        let err = server_config(&s).unwrap_err();
        assert!(matches!(err, TlsError::UnsupportedKey { .. }), "{err:?}");
    }

    #[test]
    fn a_client_ca_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = generated();
        let mut s = section(
            write(dir.path(), "c.pem", &c),
            write(dir.path(), "k.pem", &k),
        );
        s.client_ca = Some(write(dir.path(), "ca.pem", "not pem at all\n"));
        let err = server_config(&s).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::NoCertificate {
                    what: "client CA",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn the_client_trusts_public_roots_by_default_and_only_the_file_when_given() {
        let default = client_config(None).unwrap();
        assert!(default.alpn_protocols.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = generated();
        client_config(Some(&write(dir.path(), "ca.pem", &c))).unwrap();
        let err = client_config(Some(&dir.path().join("none.pem"))).unwrap_err();
        assert!(
            matches!(err, TlsError::Missing { what: "CA", .. }),
            "{err:?}"
        );
    }
}
