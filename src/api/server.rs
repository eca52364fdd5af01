//! The HTTPS listener: TLS (rustls, ALPN h2 and http/1.1), the client identity from a
//! verified certificate or a bearer token, and one hyper connection task per client.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::auth::UserInfo;
use super::ApiServer;
use crate::pki::ClientIdentity;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Bind the listener (so callers know the port is taken before they report ready).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Accept connections forever.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, api: Arc<ApiServer>) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let api = api.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let cert_user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|c| ClientIdentity::from_der(c.as_ref()).ok())
                .map(|id| UserInfo::new(id.user, id.groups));
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let api = api.clone();
                let cert_user = cert_user.clone();
                async move {
                    let auth = req
                        .headers()
                        .get(http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok());
                    let user = cert_user.or_else(|| api.authenticate_bearer(auth));
                    Ok::<_, std::convert::Infallible>(api.handle(req, user).await)
                }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
