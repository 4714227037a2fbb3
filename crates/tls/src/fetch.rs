//! Small outgoing HTTP(S) exchanges: fetching a document from a configured server (an
//! issuer's JWK Set, with [`get`]) and delivering a notification (with [`send`]). Built
//! on hyper over tokio-rustls with the same ring-based client config as everything
//! else, so there is one crypto provider in the node.
//!
//! Deliberately narrow: one request per connection, no redirects, no cookies, a size
//! cap on the answer and one deadline for the whole exchange. [`get`] accepts plain
//! `http://` only for loopback hosts; [`send`] takes the caller's rule for which
//! addresses may be reached, checked after name resolution (so a name that resolves to
//! a forbidden address is refused too).

use std::{sync::Arc, time::Duration};

use http_body_util::{BodyExt as _, Limited};
use hyper::{StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, pki_types::ServerName};
use tokio::net::TcpStream;

/// Why a fetch failed, in words for the operator who configured the URL.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL cannot be used.
    #[error("{url} cannot be fetched: {reason}")]
    Url {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not be reached or the exchange failed.
    #[error("fetching {url} failed: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// The network, TLS or HTTP error.
        reason: String,
    },
    /// The server answered, but not with 200.
    #[error("fetching {url} answered {status}; check the URL")]
    Status {
        /// The URL.
        url: String,
        /// The status received.
        status: StatusCode,
    },
    /// The host resolves only to addresses the caller forbade.
    #[error("{url} resolves to {addr}, which is not allowed as a destination ({why})")]
    Forbidden {
        /// The URL.
        url: String,
        /// The address it resolved to.
        addr: std::net::IpAddr,
        /// The caller's rule.
        why: &'static str,
    },
    /// The whole exchange took longer than the deadline.
    #[error("fetching {url} took longer than {timeout:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The deadline.
        timeout: Duration,
    },
}

/// Limits of one [`get`].
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// Largest body accepted, bytes. Default 1 MiB.
    pub max_bytes: usize,
    /// Deadline for connecting, the handshake, the request and the body. Default 10 s.
    pub timeout: Duration,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            max_bytes: 1 << 20,
            timeout: Duration::from_secs(10),
        }
    }
}

/// GETs `url` (`https://`, or `http://` on a loopback host) and returns the body of a
/// 200 answer. The server's certificate is checked against `client`'s roots and must
/// name the URL's host.
pub async fn get(
    url: &str,
    client: Arc<ClientConfig>,
    limits: FetchLimits,
) -> Result<Vec<u8>, FetchError> {
    if url.starts_with("http://") {
        let host = url
            .parse::<Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_owned))
            .unwrap_or_default();
        if !is_loopback(host.trim_start_matches('[').trim_end_matches(']')) {
            return Err(FetchError::Url {
                url: url.to_owned(),
                reason: "plain http is accepted only for loopback hosts; use https".into(),
            });
        }
    }
    let req = Outgoing {
        method: hyper::Method::GET,
        url,
        headers: vec![(
            hyper::header::ACCEPT,
            hyper::header::HeaderValue::from_static("application/json"),
        )],
        body: bytes::Bytes::new(),
    };
    let (status, body) = send(req, client, limits, &|_| Ok(())).await?;
    if status != StatusCode::OK {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status,
        });
    }
    Ok(body)
}

/// One outgoing request.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// The method.
    pub method: hyper::Method,
    /// `http://…` or `https://…`.
    pub url: &'a str,
    /// Headers besides `Host`, `Content-Length` and `User-Agent`, which are set here.
    pub headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    /// The body (empty for none).
    pub body: bytes::Bytes,
}

/// Whether `ip` is an address a request from a client must not make the node reach by
/// default: loopback, private (RFC 1918, unique local), link-local, carrier-grade NAT,
/// unspecified, broadcast or multicast.
pub fn is_private(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // CGNAT 100.64/10
                || v4.octets()[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link-local
        }
    }
}

/// Which destination addresses a [`send`] may reach: `Err(reason)` refuses one.
pub type AddressRule<'a> = &'a (dyn Fn(std::net::IpAddr) -> Result<(), &'static str> + Sync);

/// Sends `req` and returns the status and body of the answer, whatever the status.
/// The host is resolved first and every address it resolves to is checked with
/// `allow`; the connection goes to the first allowed one.
pub async fn send(
    req: Outgoing<'_>,
    client: Arc<ClientConfig>,
    limits: FetchLimits,
    allow: AddressRule<'_>,
) -> Result<(StatusCode, Vec<u8>), FetchError> {
    let url = req.url.to_owned();
    match tokio::time::timeout(
        limits.timeout,
        exchange(req, client, limits.max_bytes, allow),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout {
            url,
            timeout: limits.timeout,
        }),
    }
}

async fn exchange(
    req: Outgoing<'_>,
    client: Arc<ClientConfig>,
    max_bytes: usize,
    allow: AddressRule<'_>,
) -> Result<(StatusCode, Vec<u8>), FetchError> {
    let url = req.url;
    let bad = |reason: &str| FetchError::Url {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let transport = |reason: String| FetchError::Transport {
        url: url.to_owned(),
        reason,
    };
    let uri: Uri = url
        .parse()
        .map_err(|e| bad(&format!("not a valid URL ({e})")))?;
    let host = uri
        .host()
        .ok_or_else(|| bad("the URL has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(bad("the URL must start with https:// or http://")),
    };
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| transport(format!("cannot resolve {host}: {e}")))?
        .collect();
    let mut refused = None;
    let target = addrs.iter().copied().find(|a| match allow(a.ip()) {
        Ok(()) => true,
        Err(why) => {
            refused.get_or_insert((a.ip(), why));
            false
        }
    });
    let Some(target) = target else {
        return Err(match refused {
            Some((addr, why)) => FetchError::Forbidden {
                url: url.to_owned(),
                addr,
                why,
            },
            None => transport(format!("{host} resolves to no address")),
        });
    };
    let tcp = TcpStream::connect(target)
        .await
        .map_err(|e| transport(format!("cannot connect to {host}:{port} ({target}): {e}")))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
    let request = Prepared {
        method: req.method,
        authority,
        path,
        headers: req.headers,
        body: req.body,
    };
    if tls {
        let name = ServerName::try_from(host.clone())
            .map_err(|_| bad("the host is not a valid DNS name or IP address"))?;
        let stream = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map_err(|e| transport(format!("TLS handshake with {host}: {e}")))?;
        request.run(TokioIo::new(stream), url, max_bytes).await
    } else {
        request.run(TokioIo::new(tcp), url, max_bytes).await
    }
}

struct Prepared {
    method: hyper::Method,
    authority: String,
    path: String,
    headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    body: bytes::Bytes,
}

impl Prepared {
    async fn run<IO>(
        self,
        io: IO,
        url: &str,
        max_bytes: usize,
    ) -> Result<(StatusCode, Vec<u8>), FetchError>
    where
        IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let transport = |reason: String| FetchError::Transport {
            url: url.to_owned(),
            reason,
        };
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| transport(format!("{e}")))?;
        let driver = tokio::spawn(conn);
        let mut builder = hyper::Request::builder()
            .method(self.method)
            .uri(self.path)
            .header(hyper::header::HOST, self.authority)
            .header(hyper::header::USER_AGENT, "polity");
        for (k, v) in self.headers {
            builder = builder.header(k, v);
        }
        let req = builder
            .body(http_body_util::Full::new(self.body))
            .map_err(|e| transport(format!("{e}")))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| transport(format!("{e}")))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), max_bytes)
            .collect()
            .await
            .map_err(|e| {
                transport(format!(
                    "reading the answer (at most {max_bytes} bytes): {e}"
                ))
            })?
            .to_bytes();
        driver.abort();
        Ok((status, body.to_vec()))
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
