//! The single error type of the PKI module.

use std::path::PathBuf;

/// Everything that can go wrong while creating, loading or using the cluster PKI.
///
/// Every variant carries enough context (a path, or what was being done) to be
/// understandable on its own in a log line.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file system operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done, e.g. "reading", "renaming temp file to".
        what: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// rcgen failed to generate a key or certificate.
    #[error("generating {what}: {source}")]
    Generate {
        /// Which key or certificate, e.g. "server CA certificate".
        what: String,
        /// The underlying error.
        #[source]
        source: rcgen::Error,
    },

    /// A PEM or DER blob (file or in-memory input) could not be parsed.
    #[error("parsing {what}: {reason}")]
    Parse {
        /// What was parsed, usually including a path.
        what: String,
        /// Why it failed.
        reason: String,
    },

    /// A CA certificate exists on disk but its private key does not (or vice versa).
    #[error("incomplete CA in {dir}: {present} exists but {missing} is missing")]
    IncompleteCa {
        /// The TLS directory.
        dir: PathBuf,
        /// The file that exists.
        present: String,
        /// The file that is missing.
        missing: String,
    },

    /// Building a rustls configuration failed.
    #[error("building TLS config ({what}): {source}")]
    Tls {
        /// What was being built.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: rustls::Error,
    },

    /// Building the client certificate verifier failed.
    #[error("building client certificate verifier: {source}")]
    Verifier {
        /// The underlying error.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },

    /// A join token was malformed.
    #[error("invalid token: {reason}")]
    InvalidToken {
        /// Why it was rejected (never includes the secret itself).
        reason: String,
    },

    /// A join token pins a CA whose hash differs from the CA actually presented.
    #[error("CA hash mismatch: token expects {expected}, CA hashes to {actual}")]
    CaHashMismatch {
        /// Hash from the token.
        expected: String,
        /// Hash of the CA bundle at hand.
        actual: String,
    },

    /// A caller-supplied argument was unusable.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl PkiError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PkiError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn generate(what: impl Into<String>, source: rcgen::Error) -> Self {
        PkiError::Generate {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn parse(what: impl Into<String>, reason: impl ToString) -> Self {
        PkiError::Parse {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
