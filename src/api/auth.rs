//! Authentication: client certificates (verified by TLS against the client CA) and bearer
//! tokens, either from a static token file in kube-apiserver's CSV format
//! (`token,user,uid,"group1,group2"`) or service-account JWTs signed by this server
//! (`serviceaccount_token.rs` verifies them). Authorization is allow-all for authenticated
//! users for now (RBAC objects are stored but not yet enforced).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::serviceaccount_token::{self, looks_like_jwt};

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
    /// The user's uid (a service account's uid; empty for certificates).
    pub uid: String,
    /// Extra attributes (`authentication.kubernetes.io/pod-name`, …).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn new(name: impl Into<String>, groups: Vec<String>) -> UserInfo {
        let mut groups = groups;
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        UserInfo {
            name: name.into(),
            groups,
            uid: String::new(),
            extra: BTreeMap::new(),
        }
    }

    /// The field manager used when a writer names none (kube derives it from the
    /// user agent; we use the user name's last segment).
    pub fn default_manager(&self) -> String {
        self.name
            .rsplit(':')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string()
    }

    /// The identity of the server's own bootstrap writes.
    pub fn system() -> UserInfo {
        UserInfo::new("system:skiff", vec!["system:masters".into()])
    }

    /// The controllers' identity (kube-controller-manager's user name).
    pub fn controller_manager() -> UserInfo {
        UserInfo::new(
            "system:kube-controller-manager",
            vec!["system:masters".into()],
        )
    }

    /// The scheduler's identity (kube-scheduler's user name).
    pub fn scheduler() -> UserInfo {
        UserInfo::new("system:kube-scheduler", vec!["system:masters".into()])
    }

    /// A kubelet's identity (RBAC and the node authorizer are not enforced yet).
    pub fn node(name: &str) -> UserInfo {
        UserInfo::new(format!("system:node:{name}"), vec!["system:nodes".into()])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("reading token file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("token file {path}, line {line}: {reason}")]
    Format {
        path: String,
        line: usize,
        reason: String,
    },
}

/// Static bearer tokens.
#[derive(Debug, Default, Clone)]
pub struct TokenAuthenticator {
    tokens: HashMap<String, UserInfo>,
}

impl TokenAuthenticator {
    pub fn from_file(path: &Path) -> Result<TokenAuthenticator, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, reason)| AuthError::Format {
            path: path.display().to_string(),
            line,
            reason,
        })
    }

    /// Parse the CSV: token, user, uid, optional quoted comma-separated groups.
    pub fn parse(text: &str) -> Result<TokenAuthenticator, (usize, String)> {
        let mut tokens = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            if fields.len() < 3 {
                return Err((n + 1, "expected at least 3 columns (token,user,uid)".into()));
            }
            if fields[0].is_empty() {
                return Err((n + 1, "empty token".into()));
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let mut user = UserInfo::new(fields[1].clone(), groups);
            user.uid = fields[2].clone();
            tokens.insert(fields[0].clone(), user);
        }
        Ok(TokenAuthenticator { tokens })
    }

    pub fn insert(&mut self, token: String, user: UserInfo) {
        self.tokens.insert(token, user);
    }

    pub fn authenticate(&self, authorization: Option<&str>) -> Option<UserInfo> {
        self.lookup(bearer_token(authorization)?)
    }

    /// The user of a static token.
    pub fn lookup(&self, token: &str) -> Option<UserInfo> {
        self.tokens.get(token).cloned()
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
pub fn bearer_token(authorization: Option<&str>) -> Option<&str> {
    let (scheme, token) = authorization?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl super::ApiServer {
    /// The user a bearer token names: a static token, else a service-account token for the
    /// API server's audience. `None` (401) otherwise.
    pub fn authenticate_bearer(&self, authorization: Option<&str>) -> Option<UserInfo> {
        let token = bearer_token(authorization)?;
        self.authenticate_token(token, &[serviceaccount_token::ISSUER.to_string()])
            .ok()
            .map(|(user, _)| user)
    }

    /// Authenticates a bearer token for `audiences` (what TokenReview asks). Static tokens
    /// are valid for any audience. The error says why a service-account token was refused.
    pub fn authenticate_token(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<(UserInfo, Vec<String>), String> {
        if let Some(user) = self.tokens.lookup(token) {
            return Ok((user, audiences.to_vec()));
        }
        if !looks_like_jwt(token) {
            return Err("invalid bearer token".into());
        }
        match self.authenticate_service_account_token(token, audiences) {
            Ok((info, matched)) => Ok((info.user_info(), matched)),
            Err(e) => {
                tracing::debug!(error = %e, "service-account token refused");
                Err(format!("invalid bearer token, {e}"))
            }
        }
    }
}

fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            c => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_with_groups() {
        let a = TokenAuthenticator::parse("abc,alice,1,\"dev,ops\"\nxyz,bob,2\n").unwrap();
        let u = a.authenticate(Some("Bearer abc")).unwrap();
        assert_eq!(u.name, "alice");
        assert_eq!(u.groups, vec!["dev", "ops", "system:authenticated"]);
        assert_eq!(a.authenticate(Some("Bearer xyz")).unwrap().name, "bob");
        assert!(a.authenticate(Some("Bearer nope")).is_none());
        assert!(a.authenticate(None).is_none());
        assert_eq!(a.authenticate(Some("bearer abc")).unwrap().uid, "1");
        assert!(a.authenticate(Some("Bearer ")).is_none());
        assert!(a.authenticate(Some("Basic abc")).is_none());
    }

    #[test]
    fn malformed_line_is_reported() {
        assert_eq!(TokenAuthenticator::parse("only,two").unwrap_err().0, 1);
    }
}
