//! `registries.yaml` in k3s's format and where a pull goes:
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://127.0.0.1:5000", "https://mirror.example"]
//!     rewrite:
//!       "^library/(.*)": "mirrored/$1"
//! configs:
//!   "mirror.example":
//!     auth: {username: u, password: p}      # or auth: base64(u:p), or identitytoken
//!     tls: {ca_file: /x/ca.pem, insecure_skip_verify: false}
//! ```
//!
//! As in k3s/containerd: a registry's mirror endpoints are tried in order, each with the
//! repository rewritten by the first matching `rewrite` rule, then the registry's default
//! endpoint (`docker.io` → `https://registry-1.docker.io`, else `https://<registry>`),
//! without rewrites. A `*` mirror applies to registries without one of their own. An
//! endpoint written `http://` is spoken to in plain HTTP. `configs` are keyed by the
//! endpoint's host (with port).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::credentials::RegistryCredential;
use super::reference::{Reference, DOCKER_HUB};
use super::ImageError;

/// The parsed `registries.yaml` (empty when there is none).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, RegistryConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Regular expression → replacement (`$1`), applied to the repository path. A
    /// `BTreeMap` keeps the order stable; k3s documents no order between rules either.
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// base64 of `username:password`.
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub identitytoken: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// How to log in to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh/identity token (sent as a bearer token).
    IdentityToken(String),
}

/// One place to try, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// Host with port: what the client connects to and the key into `configs`.
    pub host: String,
    /// The repository on that endpoint (rewritten for mirrors).
    pub repository: String,
    /// The registry's own default endpoint (not a mirror).
    pub is_default: bool,
    pub tls: Option<TlsConfig>,
    pub auth: Auth,
}

impl RegistriesConfig {
    /// Read `path`; a missing file is an empty config (as in k3s).
    pub fn load(path: &Path) -> Result<RegistriesConfig, ImageError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|reason| ImageError::Config {
                path: path.display().to_string(),
                reason,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(ImageError::Io {
                context: format!("reading {}", path.display()),
                source: e,
            }),
        }
    }

    pub fn parse(text: &str) -> Result<RegistriesConfig, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let cfg: RegistriesConfig = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        for (registry, m) in &cfg.mirrors {
            for pattern in m.rewrite.keys() {
                regex::Regex::new(pattern)
                    .map_err(|e| format!("mirrors.{registry}.rewrite {pattern:?}: {e}"))?;
            }
            for ep in &m.endpoint {
                split_endpoint(ep)
                    .map_err(|e| format!("mirrors.{registry}.endpoint {ep:?}: {e}"))?;
            }
        }
        for (host, c) in &cfg.configs {
            if let Some(a) = &c.auth {
                auth_from_config(a).map_err(|e| format!("configs.{host}.auth: {e}"))?;
            }
        }
        Ok(cfg)
    }

    /// The endpoints to try for `r`, in order. `creds` (image pull secrets) are used for
    /// an endpoint whose `configs` entry gives no auth.
    pub fn endpoints(
        &self,
        r: &Reference,
        creds: &[RegistryCredential],
    ) -> Result<Vec<Endpoint>, ImageError> {
        let mut out: Vec<Endpoint> = Vec::new();
        let mirror = self
            .mirrors
            .get(&r.registry)
            .or_else(|| self.mirrors.get("*"));
        if let Some(m) = mirror {
            for ep in &m.endpoint {
                let (scheme, host) = split_endpoint(ep).map_err(|reason| ImageError::Config {
                    path: "registries.yaml".into(),
                    reason: format!("endpoint {ep:?}: {reason}"),
                })?;
                let repository = rewrite(&m.rewrite, &r.repository)?;
                out.push(self.endpoint(scheme, host, repository, false, r, creds)?);
            }
        }
        let default_host = if r.registry == DOCKER_HUB {
            "registry-1.docker.io".to_string()
        } else {
            r.registry.clone()
        };
        let listed = out
            .iter()
            .any(|e| e.host == default_host && e.repository == r.repository);
        if !listed {
            out.push(self.endpoint(
                "https".into(),
                default_host,
                r.repository.clone(),
                true,
                r,
                creds,
            )?);
        }
        Ok(out)
    }

    fn endpoint(
        &self,
        scheme: String,
        host: String,
        repository: String,
        is_default: bool,
        r: &Reference,
        creds: &[RegistryCredential],
    ) -> Result<Endpoint, ImageError> {
        let config = self.configs.get(&host);
        let configured = match config.and_then(|c| c.auth.as_ref()) {
            Some(a) => Some(auth_from_config(a).map_err(|reason| ImageError::Config {
                path: "registries.yaml".into(),
                reason: format!("configs.{host}.auth: {reason}"),
            })?),
            None => None,
        };
        let auth = match configured {
            Some(a) => a,
            None => {
                // A pull secret for the endpoint itself, else (for the registry's own
                // endpoint) one for the image's registry, as the kubelet matches them.
                let by_host = super::credentials::find(creds, &host, &repository);
                let by_registry = if is_default {
                    super::credentials::find(creds, &r.registry, &r.repository)
                } else {
                    None
                };
                by_host
                    .or(by_registry)
                    .map(|c| c.auth())
                    .unwrap_or(Auth::Anonymous)
            }
        };
        Ok(Endpoint {
            scheme,
            host,
            repository,
            is_default,
            tls: config.and_then(|c| c.tls.clone()),
            auth,
        })
    }
}

/// `http://host:port[/v2]` → (`http`, `host:port`). No scheme means https.
fn split_endpoint(ep: &str) -> Result<(String, String), String> {
    let (scheme, rest) = match ep.split_once("://") {
        Some((s, rest)) if s == "http" || s == "https" => (s.to_string(), rest),
        Some((s, _)) => return Err(format!("unsupported scheme {s:?}")),
        None => ("https".to_string(), ep),
    };
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, p.trim_end_matches('/')),
        None => (rest, ""),
    };
    if !path.is_empty() && path != "v2" {
        return Err(format!(
            "endpoint paths other than /v2 are not implemented (got /{path})"
        ));
    }
    if host.is_empty() {
        return Err("no host".into());
    }
    Ok((scheme, host.to_string()))
}

fn rewrite(rules: &BTreeMap<String, String>, repository: &str) -> Result<String, ImageError> {
    for (pattern, replacement) in rules {
        let re = regex::Regex::new(pattern).map_err(|e| ImageError::Config {
            path: "registries.yaml".into(),
            reason: format!("rewrite {pattern:?}: {e}"),
        })?;
        if re.is_match(repository) {
            return Ok(re.replace(repository, replacement.as_str()).into_owned());
        }
    }
    Ok(repository.to_string())
}

fn auth_from_config(a: &AuthConfig) -> Result<Auth, String> {
    if let Some(token) = &a.identitytoken {
        if !token.is_empty() {
            return Ok(Auth::IdentityToken(token.clone()));
        }
    }
    if let Some(encoded) = &a.auth {
        if !encoded.is_empty() {
            return super::credentials::decode_basic(encoded);
        }
    }
    match (&a.username, &a.password) {
        (Some(u), p) if !u.is_empty() => Ok(Auth::Basic {
            username: u.clone(),
            password: p.clone().unwrap_or_default(),
        }),
        _ => Ok(Auth::Anonymous),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - "https://mirror.example.com:8443/v2"
    rewrite:
      "^library/(.*)": "mirrored/$1"
  "*":
    endpoint: ["https://catch.all"]
configs:
  "mirror.example.com:8443":
    auth:
      username: alice
      password: secret
    tls:
      ca_file: /etc/ssl/mirror-ca.pem
      insecure_skip_verify: true
  "127.0.0.1:5000":
    auth:
      auth: Ym9iOmh1bnRlcjI=
  "quay.io":
    auth:
      identitytoken: tok
"#;

    fn r(s: &str) -> Reference {
        Reference::parse(s).expect("reference")
    }

    #[test]
    fn mirrors_in_order_then_the_default_endpoint() {
        let cfg = RegistriesConfig::parse(YAML).expect("parses");
        let eps = cfg.endpoints(&r("busybox:1"), &[]).expect("endpoints");
        let got: Vec<(&str, &str, &str, bool)> = eps
            .iter()
            .map(|e| {
                (
                    e.scheme.as_str(),
                    e.host.as_str(),
                    e.repository.as_str(),
                    e.is_default,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("http", "127.0.0.1:5000", "mirrored/busybox", false),
                (
                    "https",
                    "mirror.example.com:8443",
                    "mirrored/busybox",
                    false
                ),
                // The default endpoint never gets the rewrite.
                ("https", "registry-1.docker.io", "library/busybox", true),
            ]
        );
        assert_eq!(
            eps[0].auth,
            Auth::Basic {
                username: "bob".into(),
                password: "hunter2".into()
            }
        );
        assert_eq!(
            eps[1].auth,
            Auth::Basic {
                username: "alice".into(),
                password: "secret".into()
            }
        );
        let tls = eps[1].tls.as_ref().expect("tls");
        assert!(tls.insecure_skip_verify);
        assert_eq!(
            tls.ca_file.as_deref(),
            Some(Path::new("/etc/ssl/mirror-ca.pem"))
        );
        assert_eq!(eps[2].auth, Auth::Anonymous);
        // Rewrites only touch what matches.
        let eps = cfg.endpoints(&r("rancher/k3s"), &[]).expect("endpoints");
        assert_eq!(eps[0].repository, "rancher/k3s");
    }

    #[test]
    fn wildcard_mirror_and_registries_without_mirrors() {
        let cfg = RegistriesConfig::parse(YAML).expect("parses");
        let eps = cfg.endpoints(&r("quay.io/a/b"), &[]).expect("endpoints");
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].host, "catch.all");
        assert_eq!(eps[1].host, "quay.io");
        assert_eq!(eps[1].auth, Auth::IdentityToken("tok".into()));
        let empty = RegistriesConfig::parse("").expect("empty");
        let eps = empty
            .endpoints(&r("127.0.0.1:5000/x"), &[])
            .expect("endpoints");
        assert_eq!(eps.len(), 1);
        assert_eq!(
            (eps[0].scheme.as_str(), eps[0].host.as_str()),
            ("https", "127.0.0.1:5000")
        );
    }

    #[test]
    fn pull_secrets_fill_in_missing_auth() {
        let cfg = RegistriesConfig::default();
        let creds = vec![RegistryCredential {
            registry: "docker.io".into(),
            username: "u".into(),
            password: "p".into(),
            identity_token: None,
        }];
        let eps = cfg.endpoints(&r("busybox"), &creds).expect("endpoints");
        assert_eq!(
            eps[0].auth,
            Auth::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        let eps = cfg.endpoints(&r("quay.io/x"), &creds).expect("endpoints");
        assert_eq!(eps[0].auth, Auth::Anonymous);
    }

    #[test]
    fn bad_configs_are_rejected_with_the_reason() {
        let e = RegistriesConfig::parse("mirrors:\n  docker.io:\n    rewrite:\n      \"(\": x\n")
            .expect_err("bad regex");
        assert!(e.contains("rewrite"), "{e}");
        let e = RegistriesConfig::parse("mirrors:\n  x:\n    endpoint: [\"ftp://h\"]\n")
            .expect_err("bad scheme");
        assert!(e.contains("unsupported scheme"), "{e}");
        let e = RegistriesConfig::parse("mirror: {}\n").expect_err("unknown key");
        assert!(e.contains("mirror"), "{e}");
    }
}
