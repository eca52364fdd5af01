//! Pulling from registries with `oci-client`: the endpoints of [`super::registries`] are
//! tried in order until one resolves the reference (a manifest, or an index resolved to
//! this host's linux platform); its config and layers are then streamed into the blob
//! store with `pull_blob` (never a whole layer in memory), digests checked on the way.
//!
//! Errors are worded as containerd words them, since the agent shows them in
//! `ErrImagePull` messages: `failed to pull and unpack image "<ref>": failed to resolve
//! reference "<ref>": <ref>: not found`. As in containerd's resolver, the error
//! reported is the first one that was not a 404; "not found" only when every endpoint
//! said so.
//!
//! Not implemented: TLS client certificates (`tls.cert_file`/`key_file`: `oci-client`
//! takes no client identity; such an endpoint fails with a clear error), OAuth2
//! refresh-token exchange (an `identitytoken` is sent as a bearer token), parallel
//! layer downloads.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;

use super::blobs::BlobWriter;
use super::credentials::RegistryCredential;
use super::reference::Reference;
use super::registries::{Auth, Endpoint};
use super::{Candidate, ImageError, Inner, Lease, PullErrorKind};

/// rustls on ring for `reqwest` (built without a provider of its own): install it as
/// the process default once; an already installed default is kept.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The `oci-client` for one endpoint.
pub fn client_for(ep: &Endpoint) -> Result<oci_client::Client, ImageError> {
    install_crypto_provider();
    let mut cfg = ClientConfig {
        protocol: if ep.scheme == "http" {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        connect_timeout: Some(Duration::from_secs(15)),
        read_timeout: Some(Duration::from_secs(120)),
        user_agent: concat!("skiff/", env!("CARGO_PKG_VERSION")),
        ..ClientConfig::default()
    };
    if let Some(tls) = &ep.tls {
        if tls.cert_file.is_some() || tls.key_file.is_some() {
            return Err(ImageError::NotImplemented(format!(
                "TLS client certificates for registry {} (configs.{}.tls.cert_file/key_file)",
                ep.host, ep.host
            )));
        }
        if let Some(ca) = &tls.ca_file {
            let data = std::fs::read(ca).map_err(super::io_err(format!(
                "reading configs.{}.tls.ca_file {}",
                ep.host,
                ca.display()
            )))?;
            cfg.extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        cfg.accept_invalid_certificates = tls.insecure_skip_verify;
    }
    oci_client::Client::try_from(cfg).map_err(|e| ImageError::Config {
        path: "registries.yaml".into(),
        reason: format!("registry {}: {e}", ep.host),
    })
}

fn registry_auth(a: &Auth) -> RegistryAuth {
    match a {
        Auth::Anonymous => RegistryAuth::Anonymous,
        Auth::Basic { username, password } => {
            RegistryAuth::Basic(username.clone(), password.clone())
        }
        Auth::IdentityToken(t) => RegistryAuth::Bearer(t.clone()),
    }
}

fn classify(e: &OciDistributionError) -> PullErrorKind {
    use OciDistributionError as E;
    match e {
        E::ImageManifestNotFoundError(_) => PullErrorKind::NotFound,
        E::ServerError { code: 404, .. } => PullErrorKind::NotFound,
        E::ServerError {
            code: 401 | 403, ..
        } => PullErrorKind::Unauthorized,
        E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => PullErrorKind::Unauthorized,
        E::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                PullErrorKind::NotFound
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                PullErrorKind::Unauthorized
            } else {
                PullErrorKind::Other
            }
        }
        _ => PullErrorKind::Other,
    }
}

/// The error chain of `e` in one line (reqwest hides the cause, e.g. "connection refused").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

/// Pull `r` into the blob store; the caller unpacks and records it.
pub(crate) async fn pull(
    inner: &Inner,
    r: &Reference,
    creds: &[RegistryCredential],
    lease: &Lease,
) -> Result<Candidate, ImageError> {
    let name = r.to_string();
    let fail = |kind: PullErrorKind, message: String| ImageError::Pull {
        reference: name.clone(),
        kind,
        message,
    };
    let endpoints = inner.registries().endpoints(r, creds)?;
    let mut first_error: Option<(PullErrorKind, String)> = None;
    for ep in &endpoints {
        let client = match client_for(ep) {
            Ok(c) => c,
            Err(e) => {
                first_error.get_or_insert((PullErrorKind::Other, e.to_string()));
                continue;
            }
        };
        let oref = match (&r.tag, &r.digest) {
            (Some(t), Some(d)) => oci_client::Reference::with_tag_and_digest(
                ep.host.clone(),
                ep.repository.clone(),
                t.clone(),
                d.clone(),
            ),
            (None, Some(d)) => oci_client::Reference::with_digest(
                ep.host.clone(),
                ep.repository.clone(),
                d.clone(),
            ),
            (Some(t), None) => {
                oci_client::Reference::with_tag(ep.host.clone(), ep.repository.clone(), t.clone())
            }
            (None, None) => oci_client::Reference::with_tag(
                ep.host.clone(),
                ep.repository.clone(),
                "latest".into(),
            ),
        };
        let auth = registry_auth(&ep.auth);
        let resolved = client
            .pull_image_manifest_and_list_digest(&oref, &auth)
            .await;
        let (manifest, digest, list_digest) = match resolved {
            Ok(m) => m,
            Err(e) => {
                let kind = classify(&e);
                tracing::info!(endpoint = %format!("{}://{}/{}", ep.scheme, ep.host, ep.repository),
                    error = %chain(&e), "trying the next registry endpoint");
                if kind != PullErrorKind::NotFound && first_error.is_none() {
                    let detail = match kind {
                        PullErrorKind::Unauthorized => format!(
                            "pull access denied, repository does not exist or may require authorization: {}",
                            chain(&e)
                        ),
                        _ => format!("failed to do request: {}", chain(&e)),
                    };
                    first_error = Some((kind, detail));
                }
                continue;
            }
        };
        // Resolved: from here on, failures end the pull (as containerd fetches the
        // content from the host that resolved it).
        let copy_err = |e: String| fail(PullErrorKind::Other, format!("failed to copy: {e}"));
        fetch_blob(&client, &oref, &manifest.config, inner, lease)
            .await
            .map_err(copy_err)?;
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for layer in &manifest.layers {
            let t = layer.media_type.as_str();
            if !super::unpack::is_layer_media_type(t) {
                return Err(fail(
                    PullErrorKind::Other,
                    format!("layer {} has an unsupported media type {t:?}", layer.digest),
                ));
            }
            fetch_blob(&client, &oref, layer, inner, lease)
                .await
                .map_err(copy_err)?;
            layers.push(layer.digest.clone());
        }
        let repo_digest = r
            .with_digest(list_digest.as_deref().unwrap_or(&digest))
            .to_string();
        return Ok(Candidate {
            references: if r.tag.is_some() {
                vec![r.clone()]
            } else {
                Vec::new()
            },
            repo_digests: vec![repo_digest],
            config_digest: manifest.config.digest.clone(),
            layers,
        });
    }
    let (kind, detail) =
        first_error.unwrap_or((PullErrorKind::NotFound, format!("{name}: not found")));
    Err(fail(
        kind,
        format!("failed to resolve reference {name:?}: {detail}"),
    ))
}

/// Stream one blob into the store unless it is there.
async fn fetch_blob(
    client: &oci_client::Client,
    oref: &oci_client::Reference,
    desc: &oci_client::manifest::OciDescriptor,
    inner: &Inner,
    lease: &Lease,
) -> Result<(), String> {
    lease.add(&desc.digest).map_err(|e| e.to_string())?;
    if inner.blobs().exists(&desc.digest) {
        return Ok(());
    }
    let writer = inner
        .blobs()
        .writer(Some(&desc.digest))
        .map_err(|e| e.to_string())?;
    let mut out = AsyncBlob(Some(writer));
    client
        .pull_blob(oref, desc, &mut out)
        .await
        .map_err(|e| format!("{}: {}", desc.digest, chain(&e)))?;
    let writer = out.0.take().ok_or("blob writer gone")?;
    // The expected digest is leased above and `commit` checks the blob against it.
    tokio::task::spawn_blocking(move || writer.commit())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The blob writer as an `AsyncWrite` (writes go to the page cache; the fsync happens in
/// `commit`).
struct AsyncBlob(Option<BlobWriter>);

impl tokio::io::AsyncWrite for AsyncBlob {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        Poll::Ready(match this.0.as_mut() {
            Some(w) => std::io::Write::write(w, buf),
            None => Err(std::io::Error::other("blob already committed")),
        })
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::image::registries::TlsConfig;

    #[test]
    fn https_clients_build_on_ring_and_client_certificates_are_refused() {
        let ca = rcgen::generate_simple_self_signed(vec!["registry.test".into()]).expect("cert");
        let dir = tempfile::tempdir().expect("tmp");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.cert.pem()).expect("write");
        let mut ep = Endpoint {
            scheme: "https".into(),
            host: "registry.test:5000".into(),
            repository: "x".into(),
            is_default: true,
            tls: Some(TlsConfig {
                ca_file: Some(ca_file),
                ..TlsConfig::default()
            }),
            auth: Auth::Anonymous,
        };
        client_for(&ep).expect("https client with an extra CA");
        ep.tls = Some(TlsConfig {
            cert_file: Some("/x/cert.pem".into()),
            key_file: Some("/x/key.pem".into()),
            ..TlsConfig::default()
        });
        let Err(e) = client_for(&ep) else {
            panic!("client certificates are not implemented, yet a client was built");
        };
        assert!(e.to_string().contains("not implemented"), "{e}");
    }
}
