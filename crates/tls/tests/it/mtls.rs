//! Mutual TLS: with `client_ca` set, only clients with a certificate from that CA get in.

use std::path::{Path, PathBuf};

use hyper::StatusCode;
use polity_tls::{HttpsOptions, TlsSection};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};

use crate::support::*;

/// A CA and one client certificate it signed, written as PEM files in `dir`.
struct ClientPki {
    ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn client_pki(dir: &Path) -> ClientPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Adelaide devices CA (test)");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let mut leaf = CertificateParams::new(vec!["sensor-42.adelaide".to_owned()]).unwrap();
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &ca).unwrap();

    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    ClientPki {
        ca: write("clients-ca.pem", ca.pem()),
        client_cert: write("client.pem", leaf_cert.pem()),
        client_key: write("client-key.pem", leaf_key.serialize_pem()),
    }
}

/// Connects and sends a request, expecting the server to refuse: returns the error. In
/// TLS 1.3 the client finishes its side of the handshake before the server has checked
/// the client's certificate, so the server's alert can arrive on the first read.
async fn refusal(
    addr: std::net::SocketAddr,
    client: std::sync::Arc<rustls::ClientConfig>,
) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tls = match tls_connect(addr, client).await {
        Ok(tls) => tls,
        Err(e) => return format!("{e:?}"),
    };
    let _ = tls
        .write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer).await {
        Err(e) => format!("{e:?}"),
        Ok(_) => panic!("the server answered: {}", String::from_utf8_lossy(&answer)),
    }
}

fn with_alpn(c: std::sync::Arc<rustls::ClientConfig>) -> std::sync::Arc<rustls::ClientConfig> {
    let mut c = (*c).clone();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    std::sync::Arc::new(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_the_cas_clients_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let server = polity_tls::self_signed(dir.path(), &[]).unwrap();
    let pki = client_pki(dir.path());
    let section = TlsSection {
        client_ca: Some(pki.ca.clone()),
        ..server.clone()
    };
    let node = https_node(&section, HttpsOptions::default()).await;

    // With a certificate from the CA: served.
    let with_cert = with_alpn(
        polity_tls::client_config_with_identity(
            Some(&server.cert),
            &pki.client_cert,
            &pki.client_key,
        )
        .unwrap(),
    );
    assert_eq!(
        get_once(node.addr, with_cert, "/hello").await,
        Ok((StatusCode::OK, "hello".to_owned()))
    );

    // Without a certificate: refused with the TLS alert that says why.
    let err = refusal(node.addr, https_client(Some(&server.cert))).await;
    assert!(err.contains("CertificateRequired"), "{err}");

    // With a self-signed certificate the CA never issued: refused too.
    let other = tempfile::tempdir().unwrap();
    let stranger = polity_tls::self_signed(other.path(), &[]).unwrap();
    let wrong = with_alpn(
        polity_tls::client_config_with_identity(Some(&server.cert), &stranger.cert, &stranger.key)
            .unwrap(),
    );
    let err = refusal(node.addr, wrong).await;
    assert!(err.contains("UnknownCA"), "{err}");

    assert!(
        eventually(|| {
            let s = node.counters.snapshot();
            s.handshakes_ok == 1 && s.handshakes_failed == 2
        })
        .await,
        "{:?}",
        node.counters.snapshot()
    );
}
