//! `polity serve` with `[node] tls`: the API answers over HTTPS (rustls), a token is
//! still required inside the TLS session, plain HTTP on the same port gets nothing, and
//! a client that does not trust the certificate is refused.

use std::{path::Path, sync::Arc};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Proc, addr_after, token};

fn config(dir: &Path, tls: &polity_tls::TlsSection) -> String {
    format!(
        r#"[node]
http = "127.0.0.1:0"
data_dir = "{}"
default_tenant = "adelaide"
tls = {{ cert = "{}", key = "{}" }}
"#,
        dir.join("data").display(),
        tls.cert.display(),
        tls.key.display()
    )
}

/// Sends one raw HTTP/1.1 request over TLS; returns the whole answer.
async fn https_raw(
    addr: std::net::SocketAddr,
    client: Arc<polity_tls::ClientConfig>,
    request: &str,
) -> std::io::Result<String> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("server name");
    let mut tls = tokio_rustls::TlsConnector::from(client)
        .connect(name, tcp)
        .await?;
    tls.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// One HTTP/1.1 GET over TLS; returns the status line.
async fn https_get(
    addr: std::net::SocketAddr,
    client: Arc<polity_tls::ClientConfig>,
    path: &str,
    bearer: Option<&str>,
) -> std::io::Result<String> {
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let text = https_raw(
        addr,
        client,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}NGSILD-Tenant: adelaide\r\nConnection: close\r\n\r\n"),
    )
    .await?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_speaks_https_and_still_requires_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = polity_tls::self_signed(dir.path(), &[]).expect("self-signed certificate");
    let path = dir.path().join("tls-node.toml");
    std::fs::write(&path, config(dir.path(), &tls)).expect("config");
    let mut proc = Proc::spawn(
        &["serve", "--config", path.to_str().expect("utf-8")],
        dir.path(),
        "tls",
    );
    let out = proc
        .wait_for_stdout(
            "Ready.",
            std::time::Instant::now() + std::time::Duration::from_secs(20),
        )
        .await;
    let addr = addr_after(&out, "pages on https://");
    let trusting = polity_tls::client_config(Some(&tls.cert)).expect("client config");

    assert_eq!(
        https_get(addr, trusting.clone(), "/health", None)
            .await
            .expect("TLS"),
        "HTTP/1.1 200 OK"
    );
    assert!(
        https_get(addr, trusting.clone(), "/ngsi-ld/v1/types", None)
            .await
            .expect("TLS")
            .starts_with("HTTP/1.1 401"),
    );
    let t = token(&dir.path().join("data"), "city-admin:adelaide");
    let line = https_get(addr, trusting.clone(), "/ngsi-ld/v1/types", Some(&t))
        .await
        .expect("TLS");
    assert!(!line.contains("401") && !line.contains("403"), "{line}");

    // Over HTTPS the session cookie is `Secure`: a browser never sends it in clear.
    let form = format!("token={t}");
    let answer = https_raw(
        addr,
        trusting,
        &format!(
            "POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    )
    .await
    .expect("TLS");
    let cookie = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {answer}"));
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );

    // A client that trusts only the public roots does not get in.
    let public = polity_tls::client_config(None).expect("client config");
    assert!(https_get(addr, public, "/health", None).await.is_err());

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(addr).await.expect("connect");
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(15), plain.read(&mut buf))
        .await
        .map(|r| r.unwrap_or(0))
        .unwrap_or(0);
    assert!(!String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    proc.assert_no_panic();
}
