//! rustls server configuration for the API server and mapping of verified
//! client certificates to Kubernetes identities.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::error::PkiError;

/// ALPN protocols offered by the API server, in preference order.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The ring crypto provider, used explicitly instead of a process default.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses every CERTIFICATE block of a PEM string.
pub fn parse_cert_chain(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let mut reader = pem.as_bytes();
    let certs = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::parse(what.to_string(), e))?;
    if certs.is_empty() {
        return Err(PkiError::parse(
            what.to_string(),
            "no CERTIFICATE block in PEM",
        ));
    }
    Ok(certs)
}

/// Parses the first private key (PKCS#8, SEC1 or PKCS#1) of a PEM string.
pub fn parse_private_key(pem: &str, what: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    let mut reader = pem.as_bytes();
    rustls_pemfile::private_key(&mut reader)
        .map_err(|e| PkiError::parse(what.to_string(), e))?
        .ok_or_else(|| PkiError::parse(what.to_string(), "no private key block in PEM"))
}

/// A root store holding the certificates of `ca_pem`.
pub fn root_store(ca_pem: &str, what: &str) -> Result<RootCertStore, PkiError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_cert_chain(ca_pem, what)? {
        roots.add(cert).map_err(|e| PkiError::Tls {
            what: "adding CA to root store",
            source: e,
        })?;
    }
    Ok(roots)
}

/// Builds a TLS server config presenting `cert_chain_pem`/`key_pem`.
///
/// With `client_ca_pem`, client certificates are requested and, when sent,
/// verified against that CA; clients without a certificate are still
/// accepted (they may authenticate with a bearer token).
pub fn build_server_config(
    cert_chain_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> Result<Arc<ServerConfig>, PkiError> {
    let provider = crypto_provider();
    let chain = parse_cert_chain(cert_chain_pem, "serving certificate")?;
    let key = parse_private_key(key_pem, "serving key")?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Tls {
            what: "protocol versions",
            source: e,
        })?;
    let builder = match client_ca_pem {
        Some(ca) => {
            let roots = Arc::new(root_store(ca, "client CA")?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| PkiError::Verifier { source: e })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| PkiError::Tls {
            what: "serving certificate and key",
            source: e,
        })?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The Kubernetes user a (verified) client certificate authenticates as:
/// the subject CN is the user name, each subject O a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// Subject common name, e.g. `system:admin` or `system:node:worker-1`.
    pub user: String,
    /// Subject organization values, e.g. `["system:masters"]`.
    pub groups: Vec<String>,
}

impl ClientIdentity {
    /// Extracts the identity from a DER certificate. The caller must already
    /// have verified the certificate (rustls does this during the handshake);
    /// this only parses it.
    pub fn from_der(cert_der: &[u8]) -> Result<ClientIdentity, PkiError> {
        let (_, cert) = X509Certificate::from_der(cert_der)
            .map_err(|e| PkiError::parse("client certificate", e))?;
        let subject = cert.subject();
        let user = subject
            .iter_common_name()
            .next()
            .ok_or_else(|| PkiError::parse("client certificate", "subject has no CN"))?
            .as_str()
            .map_err(|e| PkiError::parse("client certificate CN", e))?
            .to_string();
        if user.is_empty() {
            return Err(PkiError::parse("client certificate", "subject CN is empty"));
        }
        let groups = subject
            .iter_organization()
            .map(|o| {
                o.as_str()
                    .map(str::to_string)
                    .map_err(|e| PkiError::parse("client certificate O", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClientIdentity { user, groups })
    }
}
