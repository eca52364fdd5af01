//! Decoding of `application/vnd.kubernetes.protobuf` request bodies into JSON.
//!
//! kubectl's typed clients (`kubectl create deployment|configmap|secret|…`,
//! `kubectl create token`, `kubectl auth can-i`, `kubectl autoscale`) send
//! protobuf bodies and do not retry with JSON when the server answers 415, so
//! the API server converts them into the object's ordinary JSON form and then
//! proceeds exactly as for a JSON body. Responses stay JSON.
//!
//! # Envelope
//!
//! A body is the 4-byte magic `k8s\0` followed by a `runtime.Unknown` message:
//! `typeMeta` (tag 1: `{apiVersion = 1, kind = 2}`), `raw` (tag 2: the object's
//! go-to-protobuf encoding), `contentEncoding` (tag 3, must be empty) and
//! `contentType` (tag 4, empty or `application/vnd.kubernetes.protobuf`).
//! [`decode_request`] finds the message type from apiVersion + kind, decodes
//! `raw` and returns the object with `kind` and `apiVersion` set (first).
//!
//! # Schema
//!
//! Decoding is driven by the generated table in `schema.rs` (written by
//! `tools/protobuf-schema/generate.py` from the `k8s-pb` and `k8s-openapi`
//! crates; see its README). It covers every message reachable from the types of
//! Kubernetes 1.32 (core, apps, batch, autoscaling, policy, rbac, networking,
//! scheduling, storage, coordination, discovery, authentication, authorization,
//! events, certificates, admissionregistration, flowcontrol, node, resource,
//! apiextensions, apiregistration, meta/v1, runtime, intstr, resource).
//!
//! # JSON rendering (what kubectl would have sent as JSON)
//!
//! The result is what Go's `encoding/json` prints for the decoded object:
//!
//! * JSON field names are the Kubernetes camelCase names; fields are emitted in
//!   protobuf tag order.
//! * Presence is proto2-style: a singular field present on the wire is
//!   rendered even when zero (`replicas: 0`, `containerPort: 0`) — except
//!   scalars that are non-pointer Go fields tagged `omitempty` (e.g.
//!   `metadata.generateName`, `imagePullPolicy`, `hostPort`): go-to-protobuf
//!   always writes those, Go's JSON omits their zero value, and so do we.
//! * Non-pointer struct fields are always written by go-to-protobuf and are
//!   rendered as objects, possibly empty (`"strategy": {}`, `"status": {}`), as
//!   Go's JSON does.
//! * An empty `meta/v1 Time` (go-to-protobuf always writes
//!   `metadata.creationTimestamp` as an empty message) becomes JSON `null`, so
//!   the result contains `"creationTimestamp": null` exactly like kubectl's
//!   JSON. Null values are kept, never dropped (RawExtension/FieldsV1 without
//!   bytes are `null` too).
//! * Empty repeated and map fields are omitted (Go would print `null` for a nil
//!   slice without `omitempty`; both mean "unset").
//! * `bytes` fields (e.g. `Secret.data` values) become base64 strings;
//!   `Quantity` a string; `IntOrString` a number or a string; `Duration` a Go
//!   duration string (`1h0m0s`); `Time` `2024-01-02T03:04:05Z`; `MicroTime`
//!   `2024-01-02T03:04:05.123456Z`; `RawExtension`/`FieldsV1`/apiextensions
//!   `JSON` the embedded JSON value.
//!
//! # Robustness
//!
//! Bodies come from the network: truncated or malicious input yields a
//! [`ProtobufError`], never a panic or an unbounded loop. Nesting is limited to
//! [`MAX_DEPTH`] messages. **Unknown field tags are skipped** (after checking
//! that they are well-formed) with a `tracing` warning, like Kubernetes' own
//! generated unmarshallers do — newer clients may send fields this schema does
//! not know. A known field with the wrong wire type is an error.
//!
//! All errors should be answered with 400 Bad Request (never 415).

mod decode;
#[rustfmt::skip]
mod schema;
mod schema_types;
pub(crate) mod wire;

#[cfg(test)]
mod tests;

use serde_json::Value;

/// The magic prefix of Kubernetes protobuf bodies.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Maximum message nesting depth accepted by the decoder.
pub const MAX_DEPTH: usize = 64;

/// Errors from decoding a protobuf body. Every variant names where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error("protobuf body does not start with the Kubernetes magic prefix \"k8s\\0\"")]
    MissingMagic,
    /// The wire data is broken (truncated, bad varint, wrong wire type, …).
    #[error("malformed protobuf in {ty} field {field}: {reason}")]
    Malformed {
        ty: &'static str,
        field: &'static str,
        reason: String,
    },
    /// Well-formed wire data whose value cannot be represented (invalid UTF-8,
    /// out-of-range time, invalid embedded JSON, …).
    #[error("invalid value in {ty} field {field}: {reason}")]
    InvalidValue {
        ty: &'static str,
        field: &'static str,
        reason: String,
    },
    /// No schema for the apiVersion/kind of the envelope.
    #[error("no protobuf schema for kind {kind:?} in apiVersion {api_version:?}")]
    UnknownKind { api_version: String, kind: String },
    /// No schema for a message type name given to [`decode_message`].
    #[error("no protobuf schema for message type {0:?}")]
    UnknownType(String),
    /// Messages nested deeper than [`MAX_DEPTH`].
    #[error("protobuf messages nested deeper than {limit} levels (in {ty})")]
    TooDeep { ty: &'static str, limit: usize },
    /// A `runtime.Unknown` envelope this server cannot handle.
    #[error("unsupported {what} {value:?} in runtime.Unknown")]
    Unsupported { what: &'static str, value: String },
}

/// Decodes a `k8s\0` + `runtime.Unknown` request body into the object's JSON
/// form, with `kind` and `apiVersion` set.
pub fn decode_request(body: &[u8]) -> Result<Value, ProtobufError> {
    decode::decode_envelope(body, 0)
}

/// Decodes the protobuf encoding of one message into JSON. `type_name` is the
/// full proto name, e.g. `k8s.io.api.apps.v1.Deployment` or
/// `k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta` (ASCII case-insensitive).
pub fn decode_message(type_name: &str, bytes: &[u8]) -> Result<Value, ProtobufError> {
    let idx = decode::type_by_name(type_name)
        .ok_or_else(|| ProtobufError::UnknownType(type_name.to_string()))?;
    decode::decode_msg(idx, bytes, 0)
}

/// The full proto message name used for `apiVersion`/`kind`, if known
/// (e.g. `("apps/v1", "Deployment")` → `k8s.io.api.apps.v1.Deployment`).
pub fn message_type_for(api_version: &str, kind: &str) -> Option<&'static str> {
    decode::type_for_kind(api_version, kind).map(decode::type_name)
}
