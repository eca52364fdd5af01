//! Join tokens in k3s's format: `K10<sha256 of the CA bundle>::<user>:<password>`.
//!
//! The hash lets a joining node pin the server CA it fetches over an
//! unauthenticated channel; the `user:password` part authenticates it.

use std::fmt::Write as _;
use std::path::Path;

use rand::RngCore;
use sha2::{Digest, Sha256};

use super::error::PkiError;
use super::fsutil::{read_optional, write_file_atomic, KEY_MODE};

/// Prefix of a full token (format version 1 of k3s).
pub const TOKEN_PREFIX: &str = "K10";
/// User name of the server token, also assumed for a bare secret.
pub const SERVER_USERNAME: &str = "server";
/// File name of the server token inside the server data directory.
pub const TOKEN_FILE: &str = "token";

/// A parsed join token. `Debug` does not print the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedToken {
    /// Lower-case hex SHA-256 of the CA bundle, when the token pins one.
    pub ca_hash: Option<String>,
    /// User part (`server` for server tokens and bare secrets).
    pub username: String,
    /// The secret.
    pub password: String,
}

impl std::fmt::Debug for ParsedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedToken")
            .field("ca_hash", &self.ca_hash)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl ParsedToken {
    /// Checks the pinned CA hash (if any) against `ca_pem`.
    pub fn verify_ca(&self, ca_pem: &str) -> Result<(), PkiError> {
        match &self.ca_hash {
            None => Ok(()),
            Some(expected) => {
                let actual = ca_hash(ca_pem);
                if expected.eq_ignore_ascii_case(&actual) {
                    Ok(())
                } else {
                    Err(PkiError::CaHashMismatch {
                        expected: expected.clone(),
                        actual,
                    })
                }
            }
        }
    }

    /// Renders the token back in full form, pinning `ca_pem`.
    pub fn to_token_string(&self, ca_pem: &str) -> String {
        format!(
            "{TOKEN_PREFIX}{}::{}:{}",
            ca_hash(ca_pem),
            self.username,
            self.password
        )
    }
}

/// Lower-case hex SHA-256 of the CA PEM bytes exactly as given.
pub fn ca_hash(ca_pem: &str) -> String {
    hex(&Sha256::digest(ca_pem.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `K10<sha256 hex of ca_pem>::server:<secret>`.
pub fn server_token(ca_pem: &str, secret: &str) -> String {
    format!(
        "{TOKEN_PREFIX}{}::{SERVER_USERNAME}:{secret}",
        ca_hash(ca_pem)
    )
}

/// A new random secret: 16 random bytes as 32 lower-case hex characters.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex(&bytes)
}

/// Parses a full token (`K10<hash>::<user>:<password>`) or a bare secret
/// (taken as the password of user `server`, no CA pin).
pub fn parse_token(token: &str) -> Result<ParsedToken, PkiError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(PkiError::InvalidToken {
            reason: "token is empty".into(),
        });
    }
    let full = token
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|rest| rest.split_once("::"));
    let Some((hash, creds)) = full else {
        return Ok(ParsedToken {
            ca_hash: None,
            username: SERVER_USERNAME.to_string(),
            password: token.to_string(),
        });
    };
    let ca_hash = if hash.is_empty() {
        None
    } else if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some(hash.to_ascii_lowercase())
    } else {
        return Err(PkiError::InvalidToken {
            reason: "CA hash is not 64 hex characters".into(),
        });
    };
    let (username, password) = creds
        .split_once(':')
        .ok_or_else(|| PkiError::InvalidToken {
            reason: "missing ':' between user and password".into(),
        })?;
    if username.is_empty() || password.is_empty() {
        return Err(PkiError::InvalidToken {
            reason: "empty user or password".into(),
        });
    }
    Ok(ParsedToken {
        ca_hash,
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// Returns the server token stored in `<server_dir>/token` (mode 0600),
/// creating it with a fresh secret on first start. A stored bare secret or a
/// token pinning a different CA is rewritten in full form for `ca_pem`,
/// keeping the secret.
pub fn load_or_create_server_token(server_dir: &Path, ca_pem: &str) -> Result<String, PkiError> {
    let path = server_dir.join(TOKEN_FILE);
    if let Some(existing) = read_optional(&path)? {
        let parsed = parse_token(&existing).map_err(|e| PkiError::Parse {
            what: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let token = ParsedToken {
            username: SERVER_USERNAME.to_string(),
            ..parsed.clone()
        }
        .to_token_string(ca_pem);
        if token != existing.trim() {
            if parsed.verify_ca(ca_pem).is_err() {
                tracing::warn!(path = %path.display(), "server token pinned a different CA; rewriting it for the current CA");
            }
            write_file_atomic(&path, format!("{token}\n").as_bytes(), KEY_MODE)?;
        }
        return Ok(token);
    }
    let token = server_token(ca_pem, &generate_secret());
    write_file_atomic(&path, format!("{token}\n").as_bytes(), KEY_MODE)?;
    tracing::info!(path = %path.display(), "created server token");
    Ok(token)
}
