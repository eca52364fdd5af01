//! Request and response bodies: size-capped reading, JSON/YAML/protobuf decoding, and
//! the response helpers every handler uses.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;

use super::status::{ApiError, ApiResult};

/// The largest request body accepted (kube-apiserver's limit is 3 MiB as well).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Read a body, refusing more than `MAX_BODY_BYTES`.
pub async fn read<B>(body: B) -> ApiResult<Bytes>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.is::<http_body_util::LengthLimitError>() {
                Err(ApiError::RequestEntityTooLarge(format!(
                    "the request body is larger than the limit of {MAX_BODY_BYTES} bytes"
                )))
            } else {
                Err(ApiError::BadRequest(format!(
                    "reading the request body: {e}"
                )))
            }
        }
    }
}

/// The media types a write may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    Json,
    Yaml,
    Protobuf,
    JsonPatch,
    MergePatch,
    StrategicMergePatch,
    ApplyPatch,
}

pub fn content_type(header: Option<&str>) -> ApiResult<ContentType> {
    let media = header
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Ok(match media.as_str() {
        "application/json" | "" | "*/*" => ContentType::Json,
        "application/yaml" => ContentType::Yaml,
        "application/vnd.kubernetes.protobuf" => ContentType::Protobuf,
        "application/json-patch+json" => ContentType::JsonPatch,
        "application/merge-patch+json" => ContentType::MergePatch,
        "application/strategic-merge-patch+json" => ContentType::StrategicMergePatch,
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => ContentType::ApplyPatch,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other:?})"
            )))
        }
    })
}

/// Decode an object body (create/update) into JSON.
pub fn decode_object(ct: ContentType, bytes: &[u8]) -> ApiResult<Value> {
    let value = match ct {
        ContentType::Json => parse_json(bytes)?,
        ContentType::Yaml | ContentType::ApplyPatch => parse_yaml(bytes)?,
        ContentType::Protobuf => super::protobuf::decode_request(bytes)
            .map_err(|e| ApiError::BadRequest(format!("decoding protobuf body: {e}")))?,
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "a patch media type is only accepted by PATCH".into(),
            ))
        }
    };
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON or YAML object".into(),
        ));
    }
    Ok(value)
}

pub fn parse_json(bytes: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("error decoding JSON body: {e}")))
}

pub fn parse_yaml(bytes: &[u8]) -> ApiResult<Value> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::BadRequest("the YAML body is not valid UTF-8".into()))?;
    let v: serde_yaml::Value = serde_yaml::from_str(text)
        .map_err(|e| ApiError::BadRequest(format!("error decoding YAML body: {e}")))?;
    serde_json::to_value(v)
        .map_err(|e| ApiError::BadRequest(format!("error converting YAML body to JSON: {e}")))
}

/// A JSON response.
pub fn json(code: u16, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    respond(code, "application/json", bytes)
}

pub fn respond(code: u16, content_type: &str, bytes: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

pub fn error(e: &ApiError) -> Response<Body> {
    json(e.code(), &e.to_status())
}

/// Add `Warning: 299 - "…"` headers.
pub fn add_warnings(resp: &mut Response<Body>, warnings: &[String]) {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
}

/// Paths of keys that appear twice in one JSON object (`metadata.labels.app`), which
/// Strict field validation refuses and Warn reports. serde_json keeps the last silently.
pub fn duplicate_fields(bytes: &[u8]) -> Vec<String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    struct Walk<'a> {
        path: String,
        out: &'a mut Vec<String>,
    }

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            loop {
                let path = format!("{}[{i}]", self.path);
                if seq
                    .next_element_seed(Walk {
                        path,
                        out: &mut *self.out,
                    })?
                    .is_none()
                {
                    return Ok(());
                }
                i += 1;
            }
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = if self.path.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.path)
                };
                if !seen.insert(key) {
                    self.out.push(path.clone());
                }
                map.next_value_seed(Walk {
                    path,
                    out: &mut *self.out,
                })?;
            }
            Ok(())
        }
    }

    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let _ = Walk {
        path: String::new(),
        out: &mut out,
    }
    .deserialize(&mut de);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_fields_are_found_with_paths() {
        let body =
            br#"{"metadata":{"name":"a","labels":{"x":"1","x":"2"}},"data":[{"k":1,"k":2}]}"#;
        assert_eq!(
            duplicate_fields(body),
            vec!["metadata.labels.x", "data[0].k"]
        );
        assert!(duplicate_fields(br#"{"a":1,"b":{"a":2}}"#).is_empty());
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type(Some("application/json; charset=utf-8")).unwrap(),
            ContentType::Json
        );
        assert_eq!(
            content_type(Some("application/strategic-merge-patch+json")).unwrap(),
            ContentType::StrategicMergePatch
        );
        assert!(content_type(Some("text/csv")).is_err());
    }
}
