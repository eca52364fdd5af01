//! The Swagger 2.0 document as gnostic's `openapi.v2.Document` protobuf
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`), the only
//! form in which kubectl and client-go download `/openapi/v2`.
//!
//! The input is the JSON document built by the `v2` submodule; this module only
//! maps it onto gnostic's messages (field numbers from gnostic's
//! `openapiv2/OpenAPIv2.proto`). What kubectl reads from it:
//!
//! * the `x-kubernetes-group-version-kind` vendor extension and the parameters
//!   of every PATCH operation (its v2 `fieldValidation` verifier, used when the
//!   v3 document has no PATCH operation for a kind);
//! * `definitions`, walked by kube-openapi's `util/proto` parser for
//!   client-side validation (`kubectl create -f` of a `List`, of create-only
//!   review kinds, `--validate=strict`): a kind is found through its
//!   definition's `x-kubernetes-group-version-kind` list.
//!
//! Vendor extensions and `default`/`enum`/`example` values are gnostic `Any`s
//! carrying YAML text; JSON is YAML, so the value's compact JSON is written.
//! Keywords Swagger 2.0 lacks (`oneOf`, `anyOf`, `not`, `nullable`) are dropped,
//! and so is every key gnostic has no field for (they would be vendor
//! extensions only if they start with `x-`).

use serde_json::{Map, Value};

use crate::api::protobuf::wire::Writer;

/// Encodes a Swagger 2.0 JSON document as a gnostic `openapi.v2.Document`.
pub(crate) fn encode(doc: &Value) -> Vec<u8> {
    let mut out = Writer::new();
    let Some(doc) = doc.as_object() else {
        return out.into_bytes();
    };
    let w = &mut out;
    for (key, value) in doc {
        match key.as_str() {
            "swagger" => w.string(1, str_of(value)),
            "info" => w.message(2, |w| info(w, value)),
            "host" => w.string(3, str_of(value)),
            "basePath" => w.string(4, str_of(value)),
            "schemes" => strings(w, 5, value),
            "consumes" => strings(w, 6, value),
            "produces" => strings(w, 7, value),
            "paths" => w.message(8, |w| paths(w, value)),
            "definitions" => w.message(9, |w| named(w, 1, value, schema)),
            "security" => each(value, |v| w.message(12, |w| security_requirement(w, v))),
            "securityDefinitions" => w.message(13, |w| named(w, 1, value, security_definition)),
            _ => {}
        }
    }
    extensions(w, 16, doc);
    out.into_bytes()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn each(v: &Value, mut f: impl FnMut(&Value)) {
    if let Value::Array(a) = v {
        a.iter().for_each(&mut f);
    }
}

/// A `repeated string` from a JSON array of strings.
fn strings(w: &mut Writer, field: u32, v: &Value) {
    each(v, |s| {
        if let Some(s) = s.as_str() {
            w.repeated_string(field, s);
        }
    });
}

/// A gnostic `Any` holding `v` as YAML (compact JSON, which YAML parsers read).
fn any(w: &mut Writer, v: &Value) {
    let mut yaml = v.to_string();
    yaml.push('\n');
    w.string(2, &yaml);
}

/// The `repeated NamedAny vendor_extension` of an object: its `x-` keys.
fn extensions(w: &mut Writer, field: u32, m: &Map<String, Value>) {
    for (k, v) in m.iter().filter(|(k, _)| k.starts_with("x-")) {
        w.message(field, |w| {
            w.string(1, k);
            w.message(2, |w| any(w, v));
        });
    }
}

/// A map object as `repeated Named<T> {1 name, 2 value}` in `field`.
fn named(w: &mut Writer, field: u32, v: &Value, value: fn(&mut Writer, &Value)) {
    if let Value::Object(m) = v {
        for (name, v) in m {
            w.message(field, |w| {
                w.repeated_string(1, name);
                w.message(2, |w| value(w, v));
            });
        }
    }
}

fn info(w: &mut Writer, v: &Value) {
    let Some(m) = v.as_object() else { return };
    for (key, value) in m {
        match key.as_str() {
            "title" => w.string(1, str_of(value)),
            "version" => w.string(2, str_of(value)),
            "description" => w.string(3, str_of(value)),
            "termsOfService" => w.string(4, str_of(value)),
            _ => {}
        }
    }
    extensions(w, 7, m);
}

/// `SecurityRequirement { repeated NamedStringArray additional_properties = 1 }`.
fn security_requirement(w: &mut Writer, v: &Value) {
    named(w, 1, v, |w, scopes| strings(w, 1, scopes));
}

/// `SecurityDefinitionsItem`: only API-key and basic schemes are described.
fn security_definition(w: &mut Writer, v: &Value) {
    let Some(m) = v.as_object() else { return };
    let field_of = |k: &str| m.get(k).map(str_of).unwrap_or_default();
    match field_of("type") {
        "apiKey" => w.message(2, |w| {
            w.string(1, "apiKey");
            w.string(2, field_of("name"));
            w.string(3, field_of("in"));
            w.string(4, field_of("description"));
            extensions(w, 5, m);
        }),
        "basic" => w.message(1, |w| {
            w.string(1, "basic");
            w.string(2, field_of("description"));
            extensions(w, 3, m);
        }),
        _ => {}
    }
}

fn paths(w: &mut Writer, v: &Value) {
    let Some(m) = v.as_object() else { return };
    extensions(w, 1, m);
    for (path, item) in m.iter().filter(|(k, _)| !k.starts_with("x-")) {
        w.message(2, |w| {
            w.repeated_string(1, path);
            w.message(2, |w| path_item(w, item));
        });
    }
}

fn path_item(w: &mut Writer, v: &Value) {
    let Some(m) = v.as_object() else { return };
    for (key, value) in m {
        let op = match key.as_str() {
            "$ref" => {
                w.string(1, str_of(value));
                continue;
            }
            "get" => 2,
            "put" => 3,
            "post" => 4,
            "delete" => 5,
            "options" => 6,
            "head" => 7,
            "patch" => 8,
            "parameters" => {
                each(value, |p| w.message(9, |w| parameters_item(w, p)));
                continue;
            }
            _ => continue,
        };
        w.message(op, |w| operation(w, value));
    }
    extensions(w, 10, m);
}

fn operation(w: &mut Writer, v: &Value) {
    let Some(m) = v.as_object() else { return };
    for (key, value) in m {
        match key.as_str() {
            "tags" => strings(w, 1, value),
            "summary" => w.string(2, str_of(value)),
            "description" => w.string(3, str_of(value)),
            "operationId" => w.string(5, str_of(value)),
            "produces" => strings(w, 6, value),
            "consumes" => strings(w, 7, value),
            "parameters" => each(value, |p| w.message(8, |w| parameters_item(w, p))),
            "responses" => w.message(9, |w| responses(w, value)),
            "schemes" => strings(w, 10, value),
            "deprecated" => w.bool(11, value.as_bool().unwrap_or(false)),
            "security" => each(value, |v| w.message(12, |w| security_requirement(w, v))),
            _ => {}
        }
    }
    extensions(w, 13, m);
}

/// `ParametersItem`: a `$ref` (`JsonReference`) or a `Parameter`, which is a
/// `BodyParameter` or a `NonBodyParameter` by `in`.
fn parameters_item(w: &mut Writer, v: &Value) {
    let Some(m) = v.as_object() else { return };
    if let Some(r) = m.get("$ref") {
        w.message(2, |w| {
            w.string(1, str_of(r));
            w.string(2, m.get("description").map(str_of).unwrap_or_default());
        });
        return;
    }
    let text = |k: &str| m.get(k).map(str_of).unwrap_or_default();
    let required = m.get("required").and_then(Value::as_bool).unwrap_or(false);
    let location = text("in");
    w.message(1, |w| {
        if location == "body" {
            w.message(1, |w| {
                w.string(1, text("description"));
                w.string(2, text("name"));
                w.string(3, location);
                w.bool(4, required);
                if let Some(s) = m.get("schema") {
                    w.message(5, |w| schema(w, s));
                }
                extensions(w, 6, m);
            });
            return;
        }
        // NonBodyParameter's oneof, and where each sub-schema's `type` field is.
        let (variant, base) = match location {
            "header" => (1, 5),
            "formData" => (2, 6),
            "query" => (3, 6),
            "path" => (4, 5),
            _ => return,
        };
        w.message(2, |w| {
            w.message(variant, |w| {
                w.bool(1, required);
                w.string(2, location);
                w.string(3, text("description"));
                w.string(4, text("name"));
                if base == 6 {
                    w.bool(
                        5,
                        m.get("allowEmptyValue")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    );
                }
                primitive(w, base, m);
            });
        });
    });
}

/// The fields gnostic's non-body parameter sub-schemas, `Header` and
/// `PrimitivesItems` share, in the same order from `type` (field `base`) on,
/// ending with the vendor extensions.
fn primitive(w: &mut Writer, base: u32, m: &Map<String, Value>) {
    for (key, value) in m {
        let f = |offset: u32| base + offset;
        match key.as_str() {
            "type" => w.string(f(0), str_of(value)),
            "format" => w.string(f(1), str_of(value)),
            "items" => w.message(f(2), |w| {
                if let Some(items) = value.as_object() {
                    primitive(w, 1, items);
                }
            }),
            "collectionFormat" => w.string(f(3), str_of(value)),
            "default" => w.message(f(4), |w| any(w, value)),
            "maximum" => w.double(f(5), value.as_f64().unwrap_or(0.0)),
            "exclusiveMaximum" => w.bool(f(6), value.as_bool().unwrap_or(false)),
            "minimum" => w.double(f(7), value.as_f64().unwrap_or(0.0)),
            "exclusiveMinimum" => w.bool(f(8), value.as_bool().unwrap_or(false)),
            "maxLength" => w.int64(f(9), value.as_i64().unwrap_or(0)),
            "minLength" => w.int64(f(10), value.as_i64().unwrap_or(0)),
            "pattern" => w.string(f(11), str_of(value)),
            "maxItems" => w.int64(f(12), value.as_i64().unwrap_or(0)),
            "minItems" => w.int64(f(13), value.as_i64().unwrap_or(0)),
            "uniqueItems" => w.bool(f(14), value.as_bool().unwrap_or(false)),
            "enum" => each(value, |e| w.message(f(15), |w| any(w, e))),
            "multipleOf" => w.double(f(16), value.as_f64().unwrap_or(0.0)),
            _ => {}
        }
    }
    extensions(w, base + 17, m);
}

/// `Responses { repeated NamedResponseValue response_code = 1; vendor_extension = 2 }`.
fn responses(w: &mut Writer, v: &Value) {
    let Some(m) = v.as_object() else { return };
    for (code, resp) in m.iter().filter(|(k, _)| !k.starts_with("x-")) {
        w.message(1, |w| {
            w.repeated_string(1, code);
            w.message(2, |w| response_value(w, resp));
        });
    }
    extensions(w, 2, m);
}

/// `ResponseValue`: a `Response` (1) or a `JsonReference` (2).
fn response_value(w: &mut Writer, v: &Value) {
    let Some(m) = v.as_object() else { return };
    if let Some(r) = m.get("$ref") {
        w.message(2, |w| w.string(1, str_of(r)));
        return;
    }
    w.message(1, |w| {
        w.string(1, m.get("description").map(str_of).unwrap_or_default());
        if let Some(s) = m.get("schema") {
            // SchemaItem's oneof: a Schema (1).
            w.message(2, |w| w.message(1, |w| schema(w, s)));
        }
        extensions(w, 5, m);
    });
}

/// gnostic's `Schema` message.
fn schema(w: &mut Writer, v: &Value) {
    let Some(m) = v.as_object() else { return };
    for (key, value) in m {
        match key.as_str() {
            "$ref" => w.string(1, str_of(value)),
            "format" => w.string(2, str_of(value)),
            "title" => w.string(3, str_of(value)),
            "description" => w.string(4, str_of(value)),
            "default" => w.message(5, |w| any(w, value)),
            "multipleOf" => w.double(6, value.as_f64().unwrap_or(0.0)),
            "maximum" => w.double(7, value.as_f64().unwrap_or(0.0)),
            "exclusiveMaximum" => w.bool(8, value.as_bool().unwrap_or(false)),
            "minimum" => w.double(9, value.as_f64().unwrap_or(0.0)),
            "exclusiveMinimum" => w.bool(10, value.as_bool().unwrap_or(false)),
            "maxLength" => w.int64(11, value.as_i64().unwrap_or(0)),
            "minLength" => w.int64(12, value.as_i64().unwrap_or(0)),
            "pattern" => w.string(13, str_of(value)),
            "maxItems" => w.int64(14, value.as_i64().unwrap_or(0)),
            "minItems" => w.int64(15, value.as_i64().unwrap_or(0)),
            "uniqueItems" => w.bool(16, value.as_bool().unwrap_or(false)),
            "maxProperties" => w.int64(17, value.as_i64().unwrap_or(0)),
            "minProperties" => w.int64(18, value.as_i64().unwrap_or(0)),
            "required" => strings(w, 19, value),
            "enum" => each(value, |e| w.message(20, |w| any(w, e))),
            "additionalProperties" => w.message(21, |w| match value {
                // AdditionalPropertiesItem's oneof: a Schema (1) or a bool (2);
                // `false` must be written although it is proto3's default.
                Value::Bool(b) => w.varint_always(2, u64::from(*b)),
                other => w.message(1, |w| schema(w, other)),
            }),
            "type" => w.message(22, |w| match value {
                Value::Array(_) => strings(w, 1, value),
                other => w.repeated_string(1, str_of(other)),
            }),
            "items" => w.message(23, |w| match value {
                Value::Array(a) => a.iter().for_each(|s| w.message(1, |w| schema(w, s))),
                other => w.message(1, |w| schema(w, other)),
            }),
            "allOf" => each(value, |s| w.message(24, |w| schema(w, s))),
            "properties" => w.message(25, |w| named(w, 1, value, schema)),
            "discriminator" => w.string(26, str_of(value)),
            "readOnly" => w.bool(27, value.as_bool().unwrap_or(false)),
            "example" => w.message(30, |w| any(w, value)),
            _ => {}
        }
    }
    extensions(w, 31, m);
}
