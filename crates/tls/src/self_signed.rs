//! The self-signed demo certificate for `polity up`: created once in the data
//! directory and reused while it is valid for the names asked for.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use rustls::{
    RootCertStore,
    client::{WebPkiServerVerifier, danger::ServerCertVerifier as _},
    pki_types::{ServerName, UnixTime},
};

use crate::{
    TlsError, TlsSection,
    config::{certified_key, load_certs, load_key, provider},
};

/// Directory under the data directory that holds the demo certificate.
pub const TLS_DIR: &str = "tls";
/// File name of the demo certificate (PEM) in [`TLS_DIR`].
pub const CERT_FILE: &str = "cert.pem";
/// File name of the demo private key (PEM, mode 0600) in [`TLS_DIR`].
pub const KEY_FILE: &str = "key.pem";

/// How long a new demo certificate is valid.
const VALIDITY_DAYS: i64 = 365;
/// A certificate this close to expiry is replaced rather than reused.
const RENEW_BEFORE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The names every demo certificate covers, before the caller's own.
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Returns a [`TlsSection`] for a self-signed certificate in `dir/tls/`, creating
/// `cert.pem` and `key.pem` (mode 0600) when they are missing, unreadable, do not
/// match, expire within 7 days or do not cover every name.
///
/// The certificate covers `localhost`, `127.0.0.1`, `::1` and `names` (host names or
/// IP addresses), uses an ECDSA P-256 key and is valid for a year. Clients must be
/// told to trust `cert.pem` itself (e.g. `curl --cacert DIR/tls/cert.pem`): it is for
/// demos and tests, not for a public deployment.
pub fn self_signed(dir: &Path, names: &[String]) -> Result<TlsSection, TlsError> {
    let tls_dir = dir.join(TLS_DIR);
    let section = TlsSection {
        cert: tls_dir.join(CERT_FILE),
        key: tls_dir.join(KEY_FILE),
        client_ca: None,
    };
    let mut all: Vec<String> = LOCAL_NAMES.iter().map(|s| (*s).to_owned()).collect();
    for n in names {
        if !all.contains(n) {
            all.push(n.clone());
        }
    }
    if section.cert.exists() || section.key.exists() {
        match reusable(&section, &all) {
            Ok(()) => {
                restrict(&section.key)?;
                tracing::debug!(cert = %section.cert.display(), "reusing the self-signed certificate");
                return Ok(section);
            }
            Err(reason) => {
                tracing::info!(cert = %section.cert.display(), %reason, "replacing the self-signed certificate");
            }
        }
    }
    let (cert_pem, key_pem) = generate(&all)?;
    create_dir(&tls_dir)?;
    // Key first: a crash between the two renames leaves a pair that does not match,
    // which the next start detects and replaces.
    write_atomic(&section.key, key_pem.as_bytes(), 0o600)?;
    write_atomic(&section.cert, cert_pem.as_bytes(), 0o644)?;
    tracing::info!(cert = %section.cert.display(), names = ?all, "created a self-signed TLS certificate");
    Ok(section)
}

/// Why the existing pair cannot be reused, if it cannot.
fn reusable(section: &TlsSection, names: &[String]) -> Result<(), String> {
    let certs = load_certs("certificate", &section.cert).map_err(|e| e.to_string())?;
    let key = load_key(&section.key).map_err(|e| e.to_string())?;
    let leaf = certs.first().cloned().ok_or("no certificate")?;
    certified_key(&provider(), certs, key, &section.cert, &section.key)
        .map_err(|e| e.to_string())?;
    // Verify the certificate as a client trusting exactly it would, a week from now:
    // that checks the validity period and every name with rustls' own verifier.
    let mut roots = RootCertStore::empty();
    roots.add(leaf.clone()).map_err(|e| e.to_string())?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| e.to_string())?;
    let later = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        + RENEW_BEFORE;
    for name in names {
        let server_name = ServerName::try_from(name.as_str())
            .map_err(|e| format!("{name}: {e}"))?
            .to_owned();
        verifier
            .verify_server_cert(
                &leaf,
                &[],
                &server_name,
                &[],
                UnixTime::since_unix_epoch(later),
            )
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

fn generate(names: &[String]) -> Result<(String, String), TlsError> {
    // A name a TLS client cannot ask for is useless in the certificate; rcgen alone
    // would accept any ASCII.
    for name in names {
        ServerName::try_from(name.as_str()).map_err(|e| TlsError::InvalidName {
            name: name.clone(),
            detail: e.to_string(),
        })?;
    }
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Polity demo node (self-signed)");
    let now = chrono::Utc::now();
    let (y, m, d) = ymd(now - chrono::Duration::days(1));
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd(now + chrono::Duration::days(VALIDITY_DAYS));
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Year, month and day of `t`, for `rcgen::date_time_ymd` (midnight UTC of that day).
fn ymd(t: chrono::DateTime<chrono::Utc>) -> (i32, u8, u8) {
    use chrono::Datelike as _;
    // chrono's month (1..=12) and day (1..=31) always fit in a u8.
    (t.year(), t.month() as u8, t.day() as u8)
}

fn create_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| TlsError::Write {
                path: dir.to_owned(),
                source,
            },
        )?;
    }
    Ok(())
}

/// Writes `bytes` to a temporary file created with `mode`, syncs it and renames it over
/// `path`, so a reader never sees half a key and the key is never world-readable.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let err = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(err)
}

/// Makes sure an existing key is readable by its owner only.
fn restrict(key: &Path) -> Result<(), TlsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| TlsError::Write {
                path: key.to_owned(),
                source,
            },
        )?;
    }
    #[cfg(not(unix))]
    let _ = key;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let s = self_signed(dir.path(), &[]).unwrap();
        assert_eq!(s.cert, dir.path().join("tls/cert.pem"));
        let first = std::fs::read(&s.cert).unwrap();
        crate::server_config(&s).expect("the generated pair is usable");
        let again = self_signed(dir.path(), &[]).unwrap();
        assert_eq!(again, s);
        assert_eq!(
            std::fs::read(&s.cert).unwrap(),
            first,
            "reused, not regenerated"
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_key_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let s = self_signed(dir.path(), &[]).unwrap();
        let mode = std::fs::metadata(&s.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Loosened by hand: tightened again on reuse.
        std::fs::set_permissions(&s.key, std::fs::Permissions::from_mode(0o644)).unwrap();
        self_signed(dir.path(), &[]).unwrap();
        let mode = std::fs::metadata(&s.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_new_name_a_broken_pair_or_a_mismatched_key_regenerates() {
        let dir = tempfile::tempdir().unwrap();
        let s = self_signed(dir.path(), &[]).unwrap();
        let first = std::fs::read(&s.cert).unwrap();

        let named = self_signed(dir.path(), &["city.example.org".to_owned()]).unwrap();
        let second = std::fs::read(&named.cert).unwrap();
        assert_ne!(second, first, "a name not covered forces a new certificate");
        // Now covered: reused.
        self_signed(dir.path(), &["city.example.org".to_owned()]).unwrap();
        assert_eq!(std::fs::read(&s.cert).unwrap(), second);

        std::fs::write(&s.cert, "garbage").unwrap();
        self_signed(dir.path(), &[]).unwrap();
        crate::server_config(&s).expect("replaced by a usable pair");

        // A key that belongs to another certificate.
        let other = tempfile::tempdir().unwrap();
        let o = self_signed(other.path(), &[]).unwrap();
        std::fs::copy(&o.key, &s.key).unwrap();
        assert!(matches!(
            crate::server_config(&s),
            Err(TlsError::KeyMismatch { .. })
        ));
        self_signed(dir.path(), &[]).unwrap();
        crate::server_config(&s).expect("mismatch repaired");
    }

    #[test]
    fn a_name_that_cannot_be_in_a_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = self_signed(dir.path(), &["not a host".to_owned()]).unwrap_err();
        assert!(matches!(err, TlsError::InvalidName { .. }), "{err:?}");
    }

    #[test]
    fn an_expiring_certificate_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let s = self_signed(dir.path(), &[]).unwrap();
        // Overwrite with a pair that expires in 2 days (inside the renewal window).
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(
            LOCAL_NAMES
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let now = chrono::Utc::now();
        let (y, m, d) = ymd(now - chrono::Duration::days(30));
        params.not_before = rcgen::date_time_ymd(y, m, d);
        let (y, m, d) = ymd(now + chrono::Duration::days(2));
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(&s.cert, cert.pem()).unwrap();
        std::fs::write(&s.key, key.serialize_pem()).unwrap();
        assert!(reusable(&s, &LOCAL_NAMES.map(String::from)).is_err());
        self_signed(dir.path(), &[]).unwrap();
        assert_ne!(std::fs::read_to_string(&s.cert).unwrap(), cert.pem());
        assert!(reusable(&s, &LOCAL_NAMES.map(String::from)).is_ok());
    }
}
