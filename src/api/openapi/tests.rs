//! Tests of the generated OpenAPI documents.

use super::*;
use crate::registry::resources::RESOURCES;

fn doc(api: &OpenApi, path: &str) -> Value {
    let (bytes, _) = api.v3_document(path).expect("document exists");
    serde_json::from_slice(bytes).expect("document is JSON")
}

fn collect_refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(s)) => out.push(s),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn schema_with_gvk<'a>(d: &'a Value, group: &str, version: &str, kind: &str) -> Option<&'a str> {
    let want = schemas::gvk(group, version, kind);
    d["components"]["schemas"]
        .as_object()?
        .iter()
        .find(|(_, s)| {
            s["x-kubernetes-group-version-kind"]
                .as_array()
                .is_some_and(|a| a.contains(&want))
        })
        .map(|(n, _)| n.as_str())
}

#[test]
fn deployment_patch_has_field_validation() {
    let api = OpenApi::build();
    let d = doc(&api, "apis/apps/v1");
    let op = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        op["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
    assert_eq!(op["x-kubernetes-action"], "patch");
    assert_eq!(op["operationId"], "patchAppsV1NamespacedDeployment");
    let names: Vec<&str> = op["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for want in ["fieldValidation", "fieldManager", "dryRun", "force"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let content = op["requestBody"]["content"].as_object().expect("content");
    assert!(content.contains_key("application/merge-patch+json"));
    assert!(content.contains_key("application/json-patch+json"));
    assert!(content.contains_key("application/apply-patch+yaml"));
    assert!(!content.contains_key("application/strategic-merge-patch+json"));
}

#[test]
fn every_patch_operation_takes_field_validation() {
    let api = OpenApi::build();
    for path in api.v3_paths().map(str::to_string).collect::<Vec<_>>() {
        let d = doc(&api, &path);
        for (p, item) in d["paths"].as_object().expect("paths") {
            if let Some(op) = item.get("patch") {
                let has = op["parameters"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|p| p["name"] == "fieldValidation"));
                assert!(has, "{p}: PATCH without fieldValidation");
                assert!(op["requestBody"]["content"]
                    .get("application/strategic-merge-patch+json")
                    .is_none());
            }
        }
    }
}

#[test]
fn deployment_schema_is_tagged_and_explainable() {
    let api = OpenApi::build();
    let d = doc(&api, "apis/apps/v1");
    let s = &d["components"]["schemas"];
    let dep = &s["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        dep["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert!(
        dep.get("required").is_none(),
        "metadata must not be required"
    );
    assert!(dep["description"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(
        dep["properties"]["spec"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
    );
    let list = &s["io.k8s.api.apps.v1.DeploymentList"];
    assert_eq!(
        list["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "DeploymentList", "version": "v1"}])
    );
    assert_eq!(
        list["properties"]["items"]["items"]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.Deployment"
    );
    assert_eq!(
        s["io.k8s.api.core.v1.PodSpec"]["required"],
        json!(["containers"])
    );
    assert_eq!(
        s["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["items"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.Container"
    );
    let ios = &s["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(ios["x-kubernetes-int-or-string"], true);
    let q = &s["io.k8s.apimachinery.pkg.api.resource.Quantity"];
    assert!(q.get("x-kubernetes-int-or-string").is_none());
    assert_eq!(q["oneOf"][0]["type"], "string");
    let scale = &s["io.k8s.api.autoscaling.v1.Scale"];
    assert_eq!(
        scale["x-kubernetes-group-version-kind"],
        json!([{"group": "autoscaling", "kind": "Scale", "version": "v1"}])
    );
    let sub = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["put"];
    assert_eq!(
        sub["x-kubernetes-group-version-kind"],
        json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
    );
}

#[test]
fn all_refs_resolve_in_every_document() {
    let api = OpenApi::build();
    for path in api.v3_paths().map(str::to_string).collect::<Vec<_>>() {
        let d = doc(&api, &path);
        let schemas = d["components"]["schemas"].as_object().expect("schemas");
        let mut refs = Vec::new();
        collect_refs(&d, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{path}: foreign $ref {r}"));
            assert!(schemas.contains_key(name), "{path}: unresolved $ref {r}");
        }
    }
}

#[test]
fn every_served_kind_has_a_real_schema() {
    let api = OpenApi::build();
    for r in RESOURCES {
        assert!(
            schemas::find_kind(r.group, r.version, r.kind).is_some(),
            "{}/{} {} has no k8s-openapi type",
            r.group,
            r.version,
            r.kind
        );
        let d = doc(&api, &gv_path(r.group, r.version));
        let name = schema_with_gvk(&d, r.group, r.version, r.kind);
        assert!(
            name.is_some(),
            "no schema for {} in {}",
            r.kind,
            r.api_version()
        );
        if r.verbs.contains(&"list") {
            let list = format!("{}List", r.kind);
            assert!(
                schema_with_gvk(&d, r.group, r.version, &list).is_some(),
                "no schema for {list}"
            );
        }
        for sub in r.subresources {
            if matches!(sub.name, "log" | "exec" | "attach" | "portforward") {
                continue;
            }
            assert!(
                schema_with_gvk(&d, sub.group, sub.version, sub.kind).is_some(),
                "no schema for {} ({}/{})",
                sub.kind,
                r.plural,
                sub.name
            );
        }
    }
}

#[test]
fn subresource_and_meta_kinds_are_present() {
    let api = OpenApi::build();
    let core = doc(&api, "api/v1");
    for (g, v, k) in [
        ("policy", "v1", "Eviction"),
        ("", "v1", "Binding"),
        ("authentication.k8s.io", "v1", "TokenRequest"),
        ("", "v1", "Status"),
        ("", "v1", "DeleteOptions"),
        ("", "v1", "WatchEvent"),
        ("", "v1", "APIResourceList"),
    ] {
        assert!(
            schema_with_gvk(&core, g, v, k).is_some(),
            "{k} missing in api/v1"
        );
    }
    assert!(core["components"]["schemas"]
        .get("io.k8s.apimachinery.pkg.apis.meta.v1.Patch")
        .is_some());
    let authz = doc(&api, "apis/authorization.k8s.io/v1");
    assert!(schema_with_gvk(
        &authz,
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview"
    )
    .is_some());
    let op = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"];
    assert_eq!(op["operationId"], "createCoreV1NamespacedPodEviction");
    let op = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/exec"]["post"];
    assert_eq!(op["x-kubernetes-action"], "connect");
    let op = &core["paths"]["/api/v1/pods"]["get"];
    assert_eq!(op["operationId"], "listCoreV1PodForAllNamespaces");
    let op = &core["paths"]["/api/v1/namespaces/{name}"]["get"];
    assert_eq!(op["operationId"], "readCoreV1Namespace");
}

#[test]
fn root_index_names_every_document_with_its_hash() {
    let api = OpenApi::build();
    let root: Value = serde_json::from_slice(api.v3_root()).expect("root is JSON");
    let paths = root["paths"].as_object().expect("paths");
    assert!(paths.contains_key("api/v1"));
    assert!(paths.contains_key("apis/apps/v1"));
    assert_eq!(paths.len(), api.v3_paths().count());
    for (p, entry) in paths {
        let (_, hash) = api.v3_document(p).expect("listed document exists");
        assert_eq!(
            entry["serverRelativeURL"],
            format!("/openapi/v3/{p}?hash={hash}")
        );
    }
    assert!(api.v3_document("apis/nope/v1").is_none());
    assert!(api.v3_document("/apis/apps/v1").is_some());
    assert_eq!(api.v3_root_etag().len(), 64);
    assert!(api.v3_root_etag().bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn documents_are_deterministic() {
    let a = generate("apps", "v1").to_string();
    let b = generate("apps", "v1").to_string();
    assert_eq!(a, b);
    assert_eq!(OpenApi::build().v3_root(), OpenApi::build().v3_root());
}

#[test]
fn v2_document_is_swagger_with_resolvable_refs() {
    let api = OpenApi::build();
    let v2: Value = serde_json::from_slice(api.v2().0).expect("v2 is JSON");
    assert_eq!(v2["swagger"], "2.0");
    let defs = v2["definitions"].as_object().expect("definitions");
    let mut refs = Vec::new();
    collect_refs(&v2, &mut refs);
    for r in refs {
        let name = r
            .strip_prefix("#/definitions/")
            .unwrap_or_else(|| panic!("foreign $ref {r}"));
        assert!(defs.contains_key(name), "unresolved $ref {r}");
    }
    let op = &v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    let params = op["parameters"].as_array().expect("parameters");
    assert!(params.iter().any(|p| p["in"] == "body"));
    assert!(params
        .iter()
        .any(|p| p["name"] == "fieldValidation" && p["type"] == "string"));
    let del = &defs["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"];
    assert!(del["x-kubernetes-group-version-kind"]
        .as_array()
        .is_some_and(|a| a.len() > 2));
    assert_eq!(
        defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"],
        "string"
    );
}

// ---- the v2 document as gnostic protobuf -------------------------------------

/// A decoded protobuf message: its fields in order, LEN payloads as bytes,
/// varints as numbers (decoded with skiff's own wire reader).
struct Msg<'a>(Vec<(u32, Field<'a>)>);

enum Field<'a> {
    Num(u64),
    Bytes(&'a [u8]),
}

fn decode(buf: &[u8]) -> Msg<'_> {
    use crate::api::protobuf::wire::{Reader, LEN, VARINT};
    let mut r = Reader::new(buf);
    let mut out = Vec::new();
    while !r.is_empty() {
        let (field, wt) = r.key().expect("field key");
        let v = match wt {
            VARINT => Field::Num(r.varint().expect("varint")),
            LEN => Field::Bytes(r.len_delimited().expect("payload")),
            other => {
                r.skip(other).expect("skippable field");
                continue;
            }
        };
        out.push((field, v));
    }
    Msg(out)
}

impl<'a> Msg<'a> {
    fn all(&self, field: u32) -> Vec<&'a [u8]> {
        self.0
            .iter()
            .filter(|(f, _)| *f == field)
            .filter_map(|(_, v)| match v {
                Field::Bytes(b) => Some(*b),
                Field::Num(_) => None,
            })
            .collect()
    }
    fn one(&self, field: u32) -> Option<&'a [u8]> {
        self.all(field).last().copied()
    }
    fn msg(&self, field: u32) -> Msg<'a> {
        decode(self.one(field).unwrap_or_default())
    }
    fn str(&self, field: u32) -> &'a str {
        std::str::from_utf8(self.one(field).unwrap_or_default()).expect("UTF-8 string")
    }
    fn strs(&self, field: u32) -> Vec<&'a str> {
        self.all(field)
            .into_iter()
            .map(|b| std::str::from_utf8(b).expect("UTF-8 string"))
            .collect()
    }
    fn num(&self, field: u32) -> u64 {
        self.0
            .iter()
            .rev()
            .find_map(|(f, v)| match v {
                Field::Num(n) if *f == field => Some(*n),
                _ => None,
            })
            .unwrap_or(0)
    }
    /// `repeated Named<T> {1 name, 2 value}` in `field`, as (name, value) pairs.
    fn named(&self, field: u32) -> Vec<(&'a str, Msg<'a>)> {
        self.all(field)
            .into_iter()
            .map(|b| {
                let n = decode(b);
                (n.str(1), n.msg(2))
            })
            .collect()
    }
    /// A `repeated NamedAny` vendor extension's YAML text, parsed (it is JSON).
    fn extension(&self, field: u32, name: &str) -> Option<Value> {
        let (_, any) = self.named(field).into_iter().find(|(n, _)| *n == name)?;
        Some(serde_yaml_ok(any.str(2)))
    }
}

fn serde_yaml_ok(text: &str) -> Value {
    serde_json::from_str(text.trim_end()).expect("extension YAML is JSON text")
}

fn v2_protobuf_doc(api: &OpenApi) -> Msg<'_> {
    decode(api.v2_protobuf().0)
}

/// The PATCH operation of `path` in a decoded gnostic Document.
fn patch_operation<'a>(doc: &Msg<'a>, path: &str) -> Msg<'a> {
    let (_, item) = doc
        .msg(8)
        .named(2)
        .into_iter()
        .find(|(p, _)| *p == path)
        .unwrap_or_else(|| panic!("path {path} missing"));
    item.msg(8)
}

/// Names of the query parameters of a decoded gnostic Operation.
fn query_params(op: &Msg<'_>) -> Vec<String> {
    op.all(8)
        .into_iter()
        .map(decode)
        .map(|item| item.msg(1).msg(2).msg(3))
        .filter(|q| q.str(2) == "query")
        .map(|q| q.str(4).to_string())
        .collect()
}

#[test]
fn v2_protobuf_has_definitions_with_gvk_and_patch_field_validation() {
    let api = OpenApi::build();
    let doc = v2_protobuf_doc(&api);
    assert_eq!(doc.str(1), "2.0");
    assert_eq!(doc.msg(2).str(1), "Kubernetes");

    let defs = doc.msg(9).named(1);
    let (_, cm) = defs
        .iter()
        .find(|(n, _)| *n == "io.k8s.api.core.v1.ConfigMap")
        .expect("ConfigMap definition");
    assert_eq!(
        cm.extension(31, "x-kubernetes-group-version-kind"),
        Some(json!([{"group": "", "kind": "ConfigMap", "version": "v1"}]))
    );
    assert_eq!(cm.msg(22).strs(1), ["object"]);
    let props = cm.msg(25).named(1);
    let names: Vec<&str> = props.iter().map(|(n, _)| *n).collect();
    for want in [
        "apiVersion",
        "kind",
        "metadata",
        "data",
        "binaryData",
        "immutable",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let field = |name: &str| &props.iter().find(|(n, _)| *n == name).expect(name).1;
    // data: a map of strings (additionalProperties holds a Schema).
    assert_eq!(field("data").msg(22).strs(1), ["object"]);
    assert_eq!(field("data").msg(21).msg(1).msg(22).strs(1), ["string"]);
    // metadata: a plain reference with the field's own description beside it.
    assert_eq!(
        field("metadata").str(1),
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert!(field("metadata").msg(22).all(1).is_empty());
    assert!(!field("metadata").str(4).is_empty());

    // kubectl's v2 fieldValidation verifier: the PATCH operation names its kind
    // and takes fieldValidation as a query parameter.
    for (path, gvk) in [
        (
            "/api/v1/namespaces/{namespace}/configmaps/{name}",
            json!({"group": "", "kind": "ConfigMap", "version": "v1"}),
        ),
        (
            "/api/v1/namespaces/{name}",
            json!({"group": "", "kind": "Namespace", "version": "v1"}),
        ),
    ] {
        let op = patch_operation(&doc, path);
        assert_eq!(
            op.extension(13, "x-kubernetes-group-version-kind"),
            Some(gvk)
        );
        assert!(query_params(&op).iter().any(|p| p == "fieldValidation"));
        // The body parameter is a BodyParameter with a schema.
        let body = op
            .all(8)
            .into_iter()
            .map(decode)
            .map(|i| i.msg(1).msg(1))
            .find(|b| b.str(3) == "body")
            .expect("body parameter");
        assert_eq!(body.str(2), "body");
        assert_eq!(body.num(4), 1, "required");
        assert!(op.strs(7).contains(&"application/merge-patch+json"));
    }
}

/// The checks kube-openapi's `util/proto` parser makes while reading every v2
/// definition (it rejects the whole document on the first failure, and kubectl
/// then cannot validate anything client-side).
fn check_parsable(s: &Msg<'_>, defs: &[&str], path: &str, errors: &mut Vec<String>) {
    let types = s.msg(22).strs(1);
    let reference = s.str(1);
    if !reference.is_empty() {
        if !s.msg(25).all(1).is_empty() || !types.is_empty() {
            errors.push(format!("{path}: $ref next to a type or properties"));
        }
        match reference.strip_prefix("#/definitions/") {
            Some(name) if defs.contains(&name) => {}
            _ => errors.push(format!("{path}: bad reference {reference}")),
        }
        return;
    }
    let properties = s.one(25).is_some();
    match types.as_slice() {
        [] | ["object"] if properties => {
            for (name, field) in s.msg(25).named(1) {
                check_parsable(&field, defs, &format!("{path}.{name}"), errors);
            }
        }
        [] => {}
        ["object"] => {
            let additional = s.msg(21);
            if additional.one(1).is_some() {
                check_parsable(&additional.msg(1), defs, path, errors);
            }
        }
        ["array"] => {
            let items = s.msg(23).all(1);
            if items.len() == 1 {
                check_parsable(&decode(items[0]), defs, &format!("{path}[]"), errors);
            } else {
                errors.push(format!("{path}: array with {} items", items.len()));
            }
        }
        ["string" | "number" | "integer" | "boolean"] => {}
        other => errors.push(format!("{path}: unparsable type {other:?}")),
    }
}

#[test]
fn v2_protobuf_definitions_parse_like_kube_openapi() {
    let api = OpenApi::build();
    let doc = v2_protobuf_doc(&api);
    let defs = doc.msg(9).named(1);
    let names: Vec<&str> = defs.iter().map(|(n, _)| *n).collect();
    let mut errors = Vec::new();
    for (name, schema) in &defs {
        check_parsable(schema, &names, name, &mut errors);
    }
    assert!(errors.is_empty(), "{} problems: {errors:#?}", errors.len());

    // Every served kind is found through a definition's GVK list (kubectl's
    // LookupResource), and so are the create-only review kinds.
    let mut gvks = Vec::new();
    for (_, schema) in &defs {
        if let Some(Value::Array(list)) = schema.extension(31, "x-kubernetes-group-version-kind") {
            gvks.extend(list);
        }
    }
    for r in RESOURCES {
        let want = json!({"group": r.group, "kind": r.kind, "version": r.version});
        assert!(gvks.contains(&want), "no definition for {want}");
    }
    for (group, kind) in [
        ("authentication.k8s.io", "TokenReview"),
        ("authentication.k8s.io", "SelfSubjectReview"),
        ("authorization.k8s.io", "SelfSubjectAccessReview"),
    ] {
        let want = json!({"group": group, "kind": kind, "version": "v1"});
        assert!(gvks.contains(&want), "no definition for {want}");
    }
}

#[test]
fn v2_protobuf_is_the_same_whichever_form_is_asked_first() {
    let first = OpenApi::build();
    let direct = first.v2_protobuf().0.to_vec();
    let second = OpenApi::build();
    let _ = second.v2();
    let (via_json, etag) = second.v2_protobuf();
    assert!(
        direct == via_json,
        "protobuf differs when built from the kept JSON"
    );
    assert_eq!(etag.len(), 64);
    assert_ne!(etag, second.v2().1, "JSON and protobuf share an entity tag");
}

#[test]
fn writer_round_trips_through_the_reader() {
    use crate::api::protobuf::wire::Writer;
    let mut w = Writer::new();
    w.string(1, "");
    w.string(2, "héllo");
    w.varint(3, 300);
    w.int64(4, -1);
    w.bool(5, false);
    w.varint_always(6, 0);
    w.double(7, 1.5);
    w.message(8, |w| w.repeated_string(1, ""));
    let bytes = w.into_bytes();
    let m = decode(&bytes);
    let fields: Vec<u32> = m.0.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        fields,
        [2, 3, 4, 6, 8],
        "defaults are left out, oneof zero kept"
    );
    assert_eq!(m.str(2), "héllo");
    assert_eq!(m.num(3), 300);
    assert_eq!(m.num(4), u64::MAX);
    assert_eq!(m.msg(8).strs(1), [""]);
    // field 7 is FIXED64: 1.5 little-endian after key (7 << 3 | 1).
    let tail = &bytes[bytes.len() - 2 - 1 - 8 - 2..];
    assert_eq!(tail[0], 7 << 3 | 1);
    assert_eq!(&tail[1..9], &1.5f64.to_le_bytes());
}
