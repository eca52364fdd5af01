//! How the control loops reach the API: a kube-rs [`kube::Client`], either in-process or
//! over HTTPS. In the server process requests go straight to [`ApiServer::handle`] (no TLS,
//! no socket, same routing, validation and watch cache as kubectl gets); everywhere else
//! (`skiff simulate`, agents) the client reads a kubeconfig or a server URL plus token.
//! The loops cannot tell the two apart.

pub mod events;
pub mod metrics;

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use http::{Request, Response};

use crate::api::body::Body;
use crate::api::{ApiServer, UserInfo};

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("client configuration: {0}")]
    Config(String),
    #[error("building the client: {0}")]
    Build(#[source] kube::Error),
}

/// A client whose requests are served by `api` in this process, as `user`.
pub fn in_process(api: Arc<ApiServer>, user: UserInfo) -> kube::Client {
    let service = tower::service_fn(move |req: Request<kube::client::Body>| {
        let api = api.clone();
        let user = user.clone();
        async move { Ok::<Response<Body>, Infallible>(api.handle(req, Some(user)).await) }
    });
    kube::Client::new(service, "default")
}

/// A client from a kubeconfig file (its current context).
pub async fn from_kubeconfig(path: &Path) -> Result<kube::Client, ClientError> {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(path).map_err(|source| ClientError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|source| ClientError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })?;
    kube::Client::try_from(config).map_err(ClientError::Build)
}

/// A client for `server` (an `https://` URL) authenticating with a bearer token. The
/// server's certificate is checked against `ca_pem` when given; without it the client
/// trusts any certificate, as `kubectl --insecure-skip-tls-verify` does.
pub fn from_token(
    server: &str,
    token: &str,
    ca_pem: Option<&[u8]>,
) -> Result<kube::Client, ClientError> {
    let url = server
        .parse::<http::Uri>()
        .map_err(|e| ClientError::Config(format!("server URL {server:?}: {e}")))?;
    let mut config = kube::Config::new(url);
    config.auth_info.token = Some(token.to_string().into());
    match ca_pem {
        Some(pem) => {
            let certs = rustls_pemfile::certs(&mut &pem[..])
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ClientError::Config(format!("CA certificate: {e}")))?;
            config.root_cert = Some(certs.into_iter().map(|c| c.to_vec()).collect());
        }
        None => config.accept_invalid_certs = true,
    }
    kube::Client::try_from(config).map_err(ClientError::Build)
}

#[cfg(test)]
mod tests;
