//! The cluster PKI, laid out and behaving like k3s's `server/tls` directory.
//!
//! On first start [`Pki::load_or_create`] creates in the TLS directory:
//!
//! | file | what |
//! | --- | --- |
//! | `server-ca.crt` / `server-ca.key` | CA for serving certificates (`skiff-server-ca@<unix time>`) |
//! | `client-ca.crt` / `client-ca.key` | CA for client certificates (`skiff-client-ca@<unix time>`) |
//! | `serving-kube-apiserver.crt` / `.key` | API server serving certificate, signed by the server CA |
//! | `client-admin.crt` / `.key` | `CN=system:admin, O=system:masters`, signed by the client CA |
//! | `service.key` / `service.pub` | ECDSA P-256 service-account token signing key pair |
//!
//! Keys are written with mode 0600, certificates and the public key with 0644,
//! always atomically (temp file + rename). All keys are ECDSA P-256 (rcgen
//! with ring cannot generate RSA keys). CAs are valid for 10 years, leaf
//! certificates for one year.
//!
//! On later starts everything is reused byte for byte. A leaf certificate is
//! re-issued (with the existing CA) when it is unreadable, does not match its
//! key, was not signed by the current CA, expires within 90 days, or — for the
//! serving certificate — does not cover the requested SANs; the new serving
//! certificate carries the union of the old and the requested SANs, as k3s's
//! dynamic listener does (delete the file to drop stale names). A CA is never
//! replaced automatically: a CA certificate without its key is an error.
//!
//! Besides, the module renders kubeconfigs ([`kubeconfig`]), builds the API
//! server's rustls config ([`Pki::server_tls_config`]), maps verified client
//! certificates to users and groups ([`ClientIdentity`]) and handles k3s-style
//! join tokens ([`server_token`], [`parse_token`]).

mod certs;
mod error;
mod fsutil;
mod kubeconfig;
mod sans;
mod tls;
mod token;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use certs::{Ca, CA_VALIDITY_DAYS, LEAF_VALIDITY_DAYS, RENEW_BEFORE_DAYS, SERVING_CN};
pub use error::PkiError;
pub use fsutil::{write_file_atomic, CERT_MODE, KEY_MODE};
pub use kubeconfig::{kubeconfig, write_kubeconfig, KUBECONFIG_MODE};
pub use sans::{host_addresses, hostname, ServingSans, DEFAULT_FIRST_SERVICE_IP, FIXED_DNS_SANS};
pub use tls::{
    build_server_config, crypto_provider, parse_cert_chain, parse_private_key, root_store,
    ClientIdentity, ALPN_PROTOCOLS,
};
pub use token::{
    ca_hash, generate_secret, load_or_create_server_token, parse_token, server_token, ParsedToken,
    SERVER_USERNAME, TOKEN_FILE, TOKEN_PREFIX,
};

use certs::{reissue_reason, CertInfo, LeafProfile};
use fsutil::read_optional;

/// File names inside the TLS directory.
pub mod files {
    /// Server CA certificate.
    pub const SERVER_CA_CRT: &str = "server-ca.crt";
    /// Server CA key.
    pub const SERVER_CA_KEY: &str = "server-ca.key";
    /// Client CA certificate.
    pub const CLIENT_CA_CRT: &str = "client-ca.crt";
    /// Client CA key.
    pub const CLIENT_CA_KEY: &str = "client-ca.key";
    /// API server serving certificate.
    pub const SERVING_CRT: &str = "serving-kube-apiserver.crt";
    /// API server serving key.
    pub const SERVING_KEY: &str = "serving-kube-apiserver.key";
    /// Admin client certificate.
    pub const ADMIN_CRT: &str = "client-admin.crt";
    /// Admin client key.
    pub const ADMIN_KEY: &str = "client-admin.key";
    /// Service-account signing private key.
    pub const SERVICE_KEY: &str = "service.key";
    /// Service-account signing public key.
    pub const SERVICE_PUB: &str = "service.pub";
}

/// User name of the admin client certificate.
pub const ADMIN_USER: &str = "system:admin";
/// Group of the admin client certificate.
pub const ADMIN_GROUP: &str = "system:masters";

/// The loaded cluster PKI (all PEMs in memory). `Debug` prints no keys.
#[derive(Clone)]
pub struct Pki {
    tls_dir: PathBuf,
    server_ca: Ca,
    client_ca: Ca,
    serving_cert_pem: String,
    serving_key_pem: String,
    admin_cert_pem: String,
    admin_key_pem: String,
    service_key_pem: String,
    service_pub_pem: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("tls_dir", &self.tls_dir)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Loads the PKI from `tls_dir`, creating whatever is missing and
    /// re-issuing leaf certificates as described in the module docs.
    pub fn load_or_create(tls_dir: &Path, sans: &ServingSans) -> Result<Pki, PkiError> {
        std::fs::create_dir_all(tls_dir)
            .map_err(|e| PkiError::io("creating TLS directory", tls_dir, e))?;
        let server_ca = load_or_create_ca(
            tls_dir,
            files::SERVER_CA_CRT,
            files::SERVER_CA_KEY,
            "skiff-server-ca",
        )?;
        let client_ca = load_or_create_ca(
            tls_dir,
            files::CLIENT_CA_CRT,
            files::CLIENT_CA_KEY,
            "skiff-client-ca",
        )?;
        let (serving_cert_pem, serving_key_pem) = load_or_issue_leaf(
            tls_dir,
            files::SERVING_CRT,
            files::SERVING_KEY,
            &server_ca,
            SERVING_CN,
            LeafKind::Serving(sans),
        )?;
        let (admin_cert_pem, admin_key_pem) = load_or_issue_leaf(
            tls_dir,
            files::ADMIN_CRT,
            files::ADMIN_KEY,
            &client_ca,
            ADMIN_USER,
            LeafKind::Client(&[ADMIN_GROUP]),
        )?;
        let (service_key_pem, service_pub_pem) = load_or_create_service_key(tls_dir)?;
        Ok(Pki {
            tls_dir: tls_dir.to_path_buf(),
            server_ca,
            client_ca,
            serving_cert_pem,
            serving_key_pem,
            admin_cert_pem,
            admin_key_pem,
            service_key_pem,
            service_pub_pem,
        })
    }

    /// The TLS directory the PKI lives in.
    pub fn tls_dir(&self) -> &Path {
        &self.tls_dir
    }

    /// The server CA (signs serving certificates).
    pub fn server_ca(&self) -> &Ca {
        &self.server_ca
    }

    /// The client CA (signs client certificates).
    pub fn client_ca(&self) -> &Ca {
        &self.client_ca
    }

    /// Server CA certificate PEM (what clients trust; `certificate-authority-data`).
    pub fn server_ca_pem(&self) -> &str {
        &self.server_ca.cert_pem
    }

    /// Server CA private key PEM.
    pub fn server_ca_key_pem(&self) -> &str {
        &self.server_ca.key_pem
    }

    /// Client CA certificate PEM (what the API server verifies client certs against).
    pub fn client_ca_pem(&self) -> &str {
        &self.client_ca.cert_pem
    }

    /// Client CA private key PEM.
    pub fn client_ca_key_pem(&self) -> &str {
        &self.client_ca.key_pem
    }

    /// API server serving certificate PEM.
    pub fn serving_cert_pem(&self) -> &str {
        &self.serving_cert_pem
    }

    /// API server serving key PEM.
    pub fn serving_key_pem(&self) -> &str {
        &self.serving_key_pem
    }

    /// Admin (`system:admin` / `system:masters`) client certificate PEM.
    pub fn admin_cert_pem(&self) -> &str {
        &self.admin_cert_pem
    }

    /// Admin client key PEM.
    pub fn admin_key_pem(&self) -> &str {
        &self.admin_key_pem
    }

    /// Service-account token signing key (PKCS#8 PEM, ECDSA P-256, i.e. ES256).
    pub fn service_account_key_pem(&self) -> &str {
        &self.service_key_pem
    }

    /// Service-account token verification key (SubjectPublicKeyInfo PEM).
    pub fn service_account_pub_pem(&self) -> &str {
        &self.service_pub_pem
    }

    /// DNS and IP SANs of the current serving certificate.
    pub fn serving_sans(&self) -> Result<ServingSans, PkiError> {
        let info = CertInfo::from_pem(&self.serving_cert_pem, "serving certificate")?;
        Ok(ServingSans {
            dns: info.dns_sans.into_iter().collect(),
            ips: info.ip_sans.into_iter().collect(),
        })
    }

    /// rustls config for the API server: serving certificate, ALPN
    /// `h2`/`http/1.1`, ring provider. With `client_auth`, client
    /// certificates are verified against the client CA but stay optional so
    /// bearer-token clients can connect too.
    pub fn server_tls_config(
        &self,
        client_auth: bool,
    ) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        build_server_config(
            &self.serving_cert_pem,
            &self.serving_key_pem,
            client_auth.then_some(self.client_ca.cert_pem.as_str()),
        )
    }

    /// Issues a client certificate signed by the client CA with
    /// `CN=common_name` and one `O` per organization, e.g.
    /// `system:node:<name>` / `["system:nodes"]`. At most two distinct
    /// organizations are supported (rcgen 0.13 keeps one value per attribute
    /// type; the second uses a custom type with the same OID); more is an
    /// [`PkiError::InvalidInput`].
    /// Returns (certificate PEM, private key PEM). Nothing is written to disk.
    pub fn issue_client_cert(
        &self,
        common_name: &str,
        organizations: &[&str],
        validity_days: u32,
    ) -> Result<(String, String), PkiError> {
        self.client_ca.issue(
            common_name,
            LeafProfile::Client { organizations },
            validity_days,
        )
    }

    /// Admin kubeconfig for `server_url` (e.g. `https://127.0.0.1:6443`),
    /// with everything named `default` like k3s's `k3s.yaml`.
    pub fn admin_kubeconfig(&self, server_url: &str) -> String {
        kubeconfig(
            server_url,
            &self.server_ca.cert_pem,
            &self.admin_cert_pem,
            &self.admin_key_pem,
            "default",
        )
    }
}

fn load_or_create_ca(
    dir: &Path,
    crt_name: &str,
    key_name: &str,
    cn_prefix: &str,
) -> Result<Ca, PkiError> {
    let crt_path = dir.join(crt_name);
    let key_path = dir.join(key_name);
    let cert = read_optional(&crt_path)?;
    let key = read_optional(&key_path)?;
    match (cert, key) {
        (Some(cert_pem), Some(key_pem)) => {
            let ca = Ca { cert_pem, key_pem };
            ca.validate(&crt_path.display().to_string())?;
            Ok(ca)
        }
        (None, None) => {
            let cn = format!("{cn_prefix}@{}", chrono::Utc::now().timestamp());
            let ca = Ca::generate(&cn)?;
            write_file_atomic(&key_path, ca.key_pem.as_bytes(), KEY_MODE)?;
            write_file_atomic(&crt_path, ca.cert_pem.as_bytes(), CERT_MODE)?;
            tracing::info!(path = %crt_path.display(), cn = %cn, "created CA");
            Ok(ca)
        }
        (Some(_), None) => Err(PkiError::IncompleteCa {
            dir: dir.to_path_buf(),
            present: crt_name.to_string(),
            missing: key_name.to_string(),
        }),
        (None, Some(_)) => Err(PkiError::IncompleteCa {
            dir: dir.to_path_buf(),
            present: key_name.to_string(),
            missing: crt_name.to_string(),
        }),
    }
}

enum LeafKind<'a> {
    Serving(&'a ServingSans),
    Client(&'a [&'a str]),
}

fn load_or_issue_leaf(
    dir: &Path,
    crt_name: &str,
    key_name: &str,
    ca: &Ca,
    common_name: &str,
    kind: LeafKind<'_>,
) -> Result<(String, String), PkiError> {
    let crt_path = dir.join(crt_name);
    let key_path = dir.join(key_name);
    let existing = match (read_optional(&crt_path)?, read_optional(&key_path)?) {
        (Some(c), Some(k)) => Some((c, k)),
        _ => None,
    };
    let required = match kind {
        LeafKind::Serving(sans) => Some(sans),
        LeafKind::Client(_) => None,
    };
    let mut sans_to_issue = required.cloned();
    if let Some((cert_pem, key_pem)) = existing {
        let what = crt_path.display().to_string();
        match reissue_reason(&cert_pem, &key_pem, ca, required, &what) {
            None => return Ok((cert_pem, key_pem)),
            Some(reason) => {
                tracing::info!(path = %what, %reason, "re-issuing certificate");
                // Keep names the old certificate (from this CA) was valid for.
                if let (Some(sans), Ok(old)) =
                    (&mut sans_to_issue, CertInfo::from_pem(&cert_pem, &what))
                {
                    if certs::signed_by(&old.der, &ca.cert_pem).unwrap_or(false) {
                        let old_sans = ServingSans {
                            dns: old.dns_sans.into_iter().collect(),
                            ips: old.ip_sans.into_iter().collect(),
                        };
                        *sans = sans.union(&old_sans);
                    }
                }
            }
        }
    }
    let (cert_pem, key_pem) = match (&kind, &sans_to_issue) {
        (LeafKind::Serving(_), Some(sans)) => ca.issue(
            common_name,
            LeafProfile::Server { sans },
            LEAF_VALIDITY_DAYS,
        )?,
        (LeafKind::Client(orgs), _) => ca.issue(
            common_name,
            LeafProfile::Client {
                organizations: orgs,
            },
            LEAF_VALIDITY_DAYS,
        )?,
        (LeafKind::Serving(_), None) => {
            return Err(PkiError::InvalidInput(
                "serving certificate without SANs".into(),
            ))
        }
    };
    write_file_atomic(&key_path, key_pem.as_bytes(), KEY_MODE)?;
    write_file_atomic(&crt_path, cert_pem.as_bytes(), CERT_MODE)?;
    tracing::info!(path = %crt_path.display(), cn = %common_name, "issued certificate");
    Ok((cert_pem, key_pem))
}

fn load_or_create_service_key(dir: &Path) -> Result<(String, String), PkiError> {
    let key_path = dir.join(files::SERVICE_KEY);
    let pub_path = dir.join(files::SERVICE_PUB);
    let key_pem = match read_optional(&key_path)? {
        Some(pem) => pem,
        None => {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| PkiError::generate("service-account key", e))?;
            let pem = key.serialize_pem();
            write_file_atomic(&key_path, pem.as_bytes(), KEY_MODE)?;
            tracing::info!(path = %key_path.display(), "created service-account key");
            pem
        }
    };
    let key = rcgen::KeyPair::from_pem(&key_pem)
        .map_err(|e| PkiError::parse(key_path.display().to_string(), e))?;
    let pub_pem = key.public_key_pem();
    if read_optional(&pub_path)?.as_deref() != Some(pub_pem.as_str()) {
        write_file_atomic(&pub_path, pub_pem.as_bytes(), CERT_MODE)?;
    }
    Ok((key_pem, pub_pem))
}
