//! The HTTPS client: the admin credentials from the kubeconfig skiff writes, a rustls
//! client config (ring provider, the cluster CA, the admin client certificate) and one
//! hyper connection (`client::conn`, HTTP/1.1 or HTTP/2 by ALPN) per benchmark client.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{err, Result};

/// Which HTTP version the benchmark clients speak (offered by ALPN; skiff serves both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    /// HTTP/1.1 (one request at a time per connection).
    H1,
    /// HTTP/2 (what kubectl and client-go use).
    H2,
}

impl Proto {
    pub fn label(self) -> &'static str {
        match self {
            Proto::H1 => "HTTP/1.1",
            Proto::H2 => "HTTP/2",
        }
    }
}

/// The CA and admin client credentials from a kubeconfig (all PEM).
pub struct Credentials {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl Credentials {
    /// Reads the first cluster's CA and the first user's client certificate and key.
    pub fn from_kubeconfig(path: &Path) -> Result<Credentials> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(format!("reading {}: {e}", path.display())))?;
        let kc: serde_yaml::Value = serde_yaml::from_str(&text)
            .map_err(|e| err(format!("parsing {}: {e}", path.display())))?;
        let field = |v: &serde_yaml::Value, what: &str| -> Result<Vec<u8>> {
            let s = v
                .as_str()
                .ok_or_else(|| err(format!("{}: no {what}", path.display())))?;
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|e| err(format!("{}: {what} is not base64: {e}", path.display())))
        };
        let user = &kc["users"][0]["user"];
        Ok(Credentials {
            ca: field(
                &kc["clusters"][0]["cluster"]["certificate-authority-data"],
                "certificate-authority-data",
            )?,
            cert: field(&user["client-certificate-data"], "client-certificate-data")?,
            key: field(&user["client-key-data"], "client-key-data")?,
        })
    }

    /// A rustls client config trusting the cluster CA and presenting the admin certificate.
    pub fn tls_config(&self, proto: Proto) -> Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut &self.ca[..]) {
            let cert = cert.map_err(|e| err(format!("CA certificate: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| err(format!("CA certificate: {e}")))?;
        }
        let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &self.cert[..])
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| err(format!("client certificate: {e}")))?;
        let key = rustls_pemfile::private_key(&mut &self.key[..])
            .map_err(|e| err(format!("client key: {e}")))?
            .ok_or_else(|| err("client key: no private key in the kubeconfig"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| err(format!("TLS versions: {e}")))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| err(format!("client certificate: {e}")))?;
        config.alpn_protocols = vec![match proto {
            Proto::H1 => b"http/1.1".to_vec(),
            Proto::H2 => b"h2".to_vec(),
        }];
        Ok(Arc::new(config))
    }
}

/// Where the API server listens, and how to talk to it.
#[derive(Clone)]
pub struct Target {
    pub port: u16,
    pub tls: Arc<rustls::ClientConfig>,
    pub proto: Proto,
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// One TLS connection to the API server.
pub struct Conn {
    sender: Sender,
    authority: String,
}

/// A response read to the end.
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Conn {
    /// TCP connect, TLS handshake (with the client certificate) and HTTP handshake.
    pub async fn open(target: &Target) -> Result<Conn> {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), target.port);
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| err(format!("connecting to {addr}: {e}")))?;
        tcp.set_nodelay(true)
            .map_err(|e| err(format!("TCP_NODELAY: {e}")))?;
        let server_name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
        let tls = TlsConnector::from(Arc::clone(&target.tls))
            .connect(server_name, tcp)
            .await
            .map_err(|e| err(format!("TLS handshake with {addr}: {e}")))?;
        let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(tls);
        let sender = match target.proto {
            Proto::H1 => {
                let (sender, conn) = http1::handshake(io)
                    .await
                    .map_err(|e| err(format!("HTTP/1.1 handshake: {e}")))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Sender::H1(sender)
            }
            Proto::H2 => {
                if negotiated.as_deref() != Some(b"h2") {
                    return Err(err("the server did not negotiate h2 by ALPN"));
                }
                let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| err(format!("HTTP/2 handshake: {e}")))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Sender::H2(sender)
            }
        };
        Ok(Conn {
            sender,
            authority: format!("127.0.0.1:{}", target.port),
        })
    }

    /// Sends one request and reads the whole response body.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply> {
        // HTTP/2 needs the scheme and authority in the URI; HTTP/1.1 gets origin form + Host.
        let uri = match self.sender {
            Sender::H1(_) => path.to_string(),
            Sender::H2(_) => format!("https://{}{path}", self.authority),
        };
        let mut builder = Request::builder().method(method).uri(uri);
        if let Sender::H1(_) = self.sender {
            builder = builder.header(http::header::HOST, &self.authority);
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let req = builder
            .body(Full::new(body))
            .map_err(|e| err(format!("building request: {e}")))?;
        let resp = match &mut self.sender {
            Sender::H1(s) => {
                s.ready()
                    .await
                    .map_err(|e| err(format!("connection: {e}")))?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready()
                    .await
                    .map_err(|e| err(format!("connection: {e}")))?;
                s.send_request(req).await
            }
        }
        .map_err(|e| err(format!("request {path}: {e}")))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| err(format!("reading the response to {path}: {e}")))?
            .to_bytes();
        Ok(Reply { status, body })
    }

    /// POSTs JSON and fails unless the answer is `expect`.
    pub async fn post_json(&mut self, path: &str, body: Bytes, expect: StatusCode) -> Result<()> {
        let reply = self
            .request(
                Method::POST,
                path,
                &[("content-type", "application/json")],
                body,
            )
            .await?;
        if reply.status != expect {
            return Err(err(format!(
                "POST {path}: HTTP {} (expected {expect}): {}",
                reply.status,
                String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)])
            )));
        }
        Ok(())
    }
}
