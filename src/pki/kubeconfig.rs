//! kubeconfig files in the shape k3s writes (`/etc/rancher/k3s/k3s.yaml`).

use std::fmt::Write as _;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::error::PkiError;
use super::fsutil::write_file_atomic;

/// Default mode of a written kubeconfig (it holds a private key).
pub const KUBECONFIG_MODE: u32 = 0o600;

/// Renders a kubeconfig whose cluster, user and context are all named
/// `cluster_name` (k3s uses `default`), with the CA, client certificate and
/// client key embedded as base64 `*-data` fields.
pub fn kubeconfig(
    server_url: &str,
    ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
    cluster_name: &str,
) -> String {
    let name = yaml_scalar(cluster_name);
    format!(
        "apiVersion: v1\n\
         clusters:\n\
         - cluster:\n    \
             certificate-authority-data: {ca}\n    \
             server: {server}\n  \
           name: {name}\n\
         contexts:\n\
         - context:\n    \
             cluster: {name}\n    \
             user: {name}\n  \
           name: {name}\n\
         current-context: {name}\n\
         kind: Config\n\
         preferences: {{}}\n\
         users:\n\
         - name: {name}\n  \
           user:\n    \
             client-certificate-data: {cert}\n    \
             client-key-data: {key}\n",
        ca = BASE64.encode(ca_pem),
        server = yaml_scalar(server_url),
        cert = BASE64.encode(client_cert_pem),
        key = BASE64.encode(client_key_pem),
    )
}

/// Writes a kubeconfig atomically (temp file + rename) with exactly `mode`
/// (use [`KUBECONFIG_MODE`] unless told otherwise), creating parent directories.
pub fn write_kubeconfig(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    write_file_atomic(path, contents.as_bytes(), mode)
}

/// Emits `s` as a plain YAML scalar when that is unambiguous, else double-quoted.
fn yaml_scalar(s: &str) -> String {
    const KEYWORDS: [&str; 9] = ["true", "false", "null", "yes", "no", "on", "off", "y", "n"];
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | ':' | '-'))
        && !s.ends_with(':')
        && !KEYWORDS.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
