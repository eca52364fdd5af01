//! Image pull secrets: `kubernetes.io/dockerconfigjson` (`{"auths": {server: …}}`) and
//! the older `kubernetes.io/dockercfg` (`{server: …}`), and matching them to an image's
//! registry the way the kubelet does (server keys may carry a scheme, a path and a
//! leading `*.` wildcard; Docker Hub's many names are one).

use base64::Engine as _;
use serde_json::Value;

use super::reference::DOCKER_HUB;
use super::registries::Auth;
use super::ImageError;

/// One login from a pull secret.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredential {
    /// Normalized server key: `docker.io`, `127.0.0.1:5000`, `*.example.com/team`.
    pub registry: String,
    pub username: String,
    pub password: String,
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for RegistryCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredential")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl RegistryCredential {
    pub fn auth(&self) -> Auth {
        match &self.identity_token {
            Some(t) if !t.is_empty() => Auth::IdentityToken(t.clone()),
            _ => Auth::Basic {
                username: self.username.clone(),
                password: self.password.clone(),
            },
        }
    }
}

/// Parse a secret's `.dockerconfigjson` or `.dockercfg` bytes.
pub fn credentials_from_dockerconfigjson(
    bytes: &[u8],
) -> Result<Vec<RegistryCredential>, ImageError> {
    let bad = |reason: String| ImageError::Credentials { reason };
    let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let servers = match v.get("auths") {
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad("\"auths\" is not an object".into())),
        None => v
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?,
    };
    let mut out = Vec::new();
    for (server, entry) in servers {
        let entry = entry
            .as_object()
            .ok_or_else(|| bad(format!("the entry for {server:?} is not an object")))?;
        let field = |k: &str| {
            entry
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (mut username, mut password) = (field("username"), field("password"));
        let encoded = field("auth");
        if !encoded.is_empty() {
            if let Auth::Basic {
                username: u,
                password: p,
            } = decode_basic(&encoded).map_err(|e| bad(format!("{server}: {e}")))?
            {
                username = u;
                password = p;
            }
        }
        let token = field("identitytoken");
        out.push(RegistryCredential {
            registry: normalize_server(server),
            username,
            password,
            identity_token: (!token.is_empty()).then_some(token),
        });
    }
    // Most specific first, so `find` picks the best match.
    out.sort_by_key(|c| std::cmp::Reverse(c.registry.len()));
    Ok(out)
}

/// `user:password` in base64.
pub fn decode_basic(encoded: &str) -> Result<Auth, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("auth is not base64: {e}"))?;
    let text = String::from_utf8(raw).map_err(|_| "auth is not UTF-8".to_string())?;
    let (u, p) = text
        .split_once(':')
        .ok_or_else(|| "auth is not \"username:password\"".to_string())?;
    Ok(Auth::Basic {
        username: u.to_string(),
        password: p.to_string(),
    })
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://h:5000/x/` → `h:5000/x`.
fn normalize_server(server: &str) -> String {
    let s = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let s = s.trim_end_matches('/');
    let (host, path) = match s.split_once('/') {
        Some((h, p)) => (h, p),
        None => (s, ""),
    };
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB,
        h => h,
    };
    // Docker Hub's legacy API paths (`/v1/`, `/v2/`) are not repository prefixes.
    let path = if matches!(path, "v1" | "v2") {
        ""
    } else {
        path
    };
    if path.is_empty() {
        host.to_string()
    } else {
        format!("{host}/{path}")
    }
}

/// The credential for `host` and `repository`, if any (the first, most specific match).
pub fn find<'a>(
    creds: &'a [RegistryCredential],
    host: &str,
    repository: &str,
) -> Option<&'a RegistryCredential> {
    let host = if host == "registry-1.docker.io" {
        DOCKER_HUB
    } else {
        host
    };
    creds.iter().find(|c| {
        let (h, path) = match c.registry.split_once('/') {
            Some((h, p)) => (h, p),
            None => (c.registry.as_str(), ""),
        };
        let host_ok = match h.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|rest| rest.ends_with('.') && !rest[..rest.len() - 1].contains('.')),
            None => h == host,
        };
        host_ok
            && (path.is_empty()
                || repository == path
                || repository.starts_with(&format!("{path}/")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerconfigjson_with_auth_fields_and_docker_hub_names() {
        let json = br#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},
            "127.0.0.1:5000": {"username": "bob", "password": "pw"},
            "registry.example.com/team": {"identitytoken": "tok"}
        }}"#;
        let creds = credentials_from_dockerconfigjson(json).expect("parses");
        assert_eq!(creds.len(), 3);
        let hub = find(&creds, "docker.io", "library/busybox").expect("hub");
        // Only the first ':' separates the user from the password.
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("user", "pa:ss")
        );
        assert_eq!(
            find(&creds, "registry-1.docker.io", "library/busybox").map(|c| &c.username),
            Some(&"user".to_string())
        );
        let local = find(&creds, "127.0.0.1:5000", "x").expect("local");
        assert_eq!(
            local.auth(),
            Auth::Basic {
                username: "bob".into(),
                password: "pw".into()
            }
        );
        let team = find(&creds, "registry.example.com", "team/app").expect("team");
        assert_eq!(team.auth(), Auth::IdentityToken("tok".into()));
        assert!(find(&creds, "registry.example.com", "other/app").is_none());
        assert!(find(&creds, "quay.io", "x").is_none());
        // Secrets never show in debug output.
        assert!(!format!("{creds:?}").contains("pw"));
    }

    #[test]
    fn legacy_dockercfg_and_wildcards() {
        let json = br#"{"*.example.com": {"auth": "YTpi", "email": "x@y"}}"#;
        let creds = credentials_from_dockerconfigjson(json).expect("parses");
        assert!(find(&creds, "r.example.com", "x").is_some());
        assert!(find(&creds, "a.b.example.com", "x").is_none());
        assert!(find(&creds, "example.com", "x").is_none());
    }

    #[test]
    fn malformed_secrets_say_why() {
        for (bytes, needle) in [
            (&b"nope"[..], "not JSON"),
            (br#"{"auths": []}"#, "not an object"),
            (br#"{"auths": {"h": {"auth": "!!"}}}"#, "base64"),
            (
                br#"{"auths": {"h": {"auth": "bm9jb2xvbg=="}}}"#,
                "username:password",
            ),
        ] {
            let e = credentials_from_dockerconfigjson(bytes).expect_err("rejected");
            assert!(e.to_string().contains(needle), "{e}");
        }
    }
}
