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
    let v2: Value = serde_json::from_slice(api.v2().expect("v2")).expect("v2 is JSON");
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
