//! The Swagger 2.0 document (`/openapi/v2`), converted from the v3 documents:
//! their schemas merged into `definitions` (the `x-kubernetes-group-version-kind`
//! lists of shared meta types united), `$ref`s rewritten to `#/definitions/`,
//! parameters flattened (`type` instead of `schema`), request bodies turned into
//! `in: body` parameters with `consumes`, and response content into `schema` with
//! `produces`. A field's `allOf: [{$ref}]` (v3's way to put a description next to
//! a reference) becomes a plain `$ref` with that description, as kube-apiserver's
//! v2 document has it: kube-openapi's v2 parser (kubectl's client-side
//! validation) treats a schema without `$ref`, `type` or `properties` as
//! "anything" and would not look into the referenced kind.

use serde_json::{json, Map, Value};

use super::schemas::REF_PREFIX;

const V2_REF_PREFIX: &str = "#/definitions/";
const GVK: &str = "x-kubernetes-group-version-kind";

/// Merges the v3 documents into one Swagger 2.0 document.
pub(crate) fn convert(docs: impl Iterator<Item = Value>) -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    for doc in docs {
        let Value::Object(mut doc) = doc else {
            continue;
        };
        if let Some(Value::Object(schemas)) = doc
            .remove("components")
            .and_then(|mut c| c.get_mut("schemas").map(Value::take))
        {
            for (name, schema) in schemas {
                merge_definition(&mut definitions, name, schema);
            }
        }
        if let Some(Value::Object(p)) = doc.remove("paths") {
            for (path, item) in p {
                paths.insert(path, convert_path_item(item));
            }
        }
    }
    for (name, schema) in definitions.iter_mut() {
        rewrite_refs(schema);
        if name == "io.k8s.apimachinery.pkg.api.resource.Quantity" {
            flatten_one_of(schema, None);
        } else if name == "io.k8s.apimachinery.pkg.util.intstr.IntOrString" {
            flatten_one_of(schema, Some("int-or-string"));
        }
    }
    for item in paths.values_mut() {
        rewrite_refs(item);
    }
    let mut paths: Vec<(String, Value)> = paths.into_iter().collect();
    paths.sort_by(|a, b| a.0.cmp(&b.0));
    let mut definitions: Vec<(String, Value)> = definitions.into_iter().collect();
    definitions.sort_by(|a, b| a.0.cmp(&b.0));
    json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": concat!("skiff-", env!("CARGO_PKG_VERSION")) },
        "paths": paths.into_iter().collect::<Map<String, Value>>(),
        "definitions": definitions.into_iter().collect::<Map<String, Value>>(),
        "securityDefinitions": {
            "BearerToken": {
                "type": "apiKey",
                "name": "authorization",
                "in": "header",
                "description": "Bearer Token authentication",
            },
        },
        "security": [{ "BearerToken": [] }],
    })
}

/// Adds a schema, uniting the GVK lists when it is already there.
fn merge_definition(defs: &mut Map<String, Value>, name: String, schema: Value) {
    let Some(existing) = defs.get_mut(&name) else {
        defs.insert(name, schema);
        return;
    };
    let Some(Value::Array(new)) = schema.get(GVK) else {
        return;
    };
    if let Some(Value::Array(old)) = existing.get_mut(GVK) {
        for g in new {
            if !old.contains(g) {
                old.push(g.clone());
            }
        }
    }
}

/// Swagger 2.0 has no `oneOf`: Quantity and IntOrString are strings there.
fn flatten_one_of(schema: &mut Value, format: Option<&str>) {
    if let Value::Object(m) = schema {
        m.remove("oneOf");
        m.insert("type".into(), json!("string"));
        if let Some(f) = format {
            m.insert("format".into(), json!(f));
        }
    }
}

/// `{allOf: [{$ref: X}], description…}` → `{$ref: X, description…}` when the
/// schema has nothing a `$ref` may not sit next to in Swagger 2.0 parsers.
fn collapse_all_of(m: &mut Map<String, Value>) {
    let single_ref = match m.get("allOf") {
        Some(Value::Array(a)) if a.len() == 1 => match &a[0] {
            Value::Object(inner) if inner.len() == 1 => inner.get("$ref").cloned(),
            _ => None,
        },
        _ => None,
    };
    if let Some(r) = single_ref {
        if !m.contains_key("type") && !m.contains_key("properties") {
            m.remove("allOf");
            m.insert("$ref".into(), r);
        }
    }
}

fn rewrite_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            collapse_all_of(m);
            for (k, v) in m.iter_mut() {
                if k == "$ref" {
                    if let Value::String(s) = v {
                        if let Some(rest) = s.strip_prefix(REF_PREFIX) {
                            *s = format!("{V2_REF_PREFIX}{rest}");
                        }
                    }
                } else {
                    rewrite_refs(v);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// `{name, in, schema: {type}}` → `{name, in, type}`.
fn convert_param(p: Value) -> Value {
    let Value::Object(mut m) = p else {
        return p;
    };
    if let Some(Value::Object(schema)) = m.remove("schema") {
        for (k, v) in schema {
            m.insert(k, v);
        }
    }
    Value::Object(m)
}

fn convert_params(v: Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.into_iter().map(convert_param).collect()),
        other => other,
    }
}

fn convert_path_item(item: Value) -> Value {
    let Value::Object(item) = item else {
        return item;
    };
    let mut out = Map::new();
    for (key, value) in item {
        let converted = match key.as_str() {
            "parameters" => convert_params(value),
            _ => convert_operation(value),
        };
        out.insert(key, converted);
    }
    Value::Object(out)
}

fn convert_operation(op: Value) -> Value {
    let Value::Object(op) = op else {
        return op;
    };
    let mut out = Map::new();
    let mut params: Vec<Value> = Vec::new();
    let mut consumes: Vec<Value> = Vec::new();
    let mut produces: Vec<Value> = Vec::new();
    let mut rest = Vec::new();
    for (key, value) in op {
        match key.as_str() {
            "parameters" => {
                if let Value::Array(a) = convert_params(value) {
                    params.extend(a);
                }
            }
            "requestBody" => {
                let required = value.get("required").cloned().unwrap_or(Value::Bool(false));
                let mut schema = json!({});
                if let Some(Value::Object(content)) = value.get("content") {
                    for (ty, media) in content {
                        consumes.push(json!(ty));
                        if let Some(s) = media.get("schema") {
                            schema = s.clone();
                        }
                    }
                }
                params.insert(
                    0,
                    json!({ "name": "body", "in": "body", "required": required, "schema": schema }),
                );
            }
            "responses" => {
                let mut responses = Map::new();
                if let Value::Object(codes) = value {
                    for (code, resp) in codes {
                        let mut r = Map::new();
                        if let Some(d) = resp.get("description") {
                            r.insert("description".into(), d.clone());
                        }
                        if let Some(Value::Object(content)) = resp.get("content") {
                            for (ty, media) in content {
                                let ty = json!(ty);
                                if !produces.contains(&ty) {
                                    produces.push(ty);
                                }
                                if let Some(s) = media.get("schema") {
                                    r.insert("schema".into(), s.clone());
                                }
                            }
                        }
                        responses.insert(code, Value::Object(r));
                    }
                }
                rest.push(("responses".to_string(), Value::Object(responses)));
            }
            _ => rest.push((key, value)),
        }
    }
    if !consumes.is_empty() {
        out.insert("consumes".into(), Value::Array(consumes));
    }
    for (k, v) in rest {
        if k == "responses" {
            if !params.is_empty() {
                out.insert(
                    "parameters".into(),
                    Value::Array(std::mem::take(&mut params)),
                );
            }
            if !produces.is_empty() {
                out.insert(
                    "produces".into(),
                    Value::Array(std::mem::take(&mut produces)),
                );
            }
        }
        out.insert(k, v);
    }
    Value::Object(out)
}
