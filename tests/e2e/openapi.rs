//! `/openapi/v2` as kubectl uses it: gnostic protobuf for its v2 fieldValidation
//! verifier and client-side validation, which `create -f` of a `List` and of the
//! create-only review kinds go through.

use crate::harness::{eventually, Server};

const LIST: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: app-config
  data:
    mode: fast
- apiVersion: v1
  kind: Secret
  metadata:
    name: app-secret
  stringData:
    password: hunter2
"#;

fn yaml(text: &str) -> serde_yaml::Value {
    serde_yaml::from_str(text).expect("kubectl printed YAML")
}

#[test]
fn create_list_creates_every_item() {
    let s = Server::start();
    let f = s.write("list.yaml", LIST);
    let out = s.ok(&["create", "-f", f.to_str().unwrap()]);
    assert_eq!(
        out.trim(),
        "configmap/app-config created\nsecret/app-secret created"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "configmap",
            "app-config",
            "-o",
            "jsonpath={.data.mode}"
        ]),
        "fast"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "secret",
            "app-secret",
            "-o",
            "jsonpath={.data.password}"
        ]),
        "aHVudGVyMg=="
    );
}

#[test]
fn create_list_reports_unknown_fields_client_side() {
    let s = Server::start();
    let bad = LIST.replace("    mode: fast\n", "    mode: fast\n  colour: blue\n");
    let f = s.write("list.yaml", &bad);
    let f = f.to_str().unwrap();
    let err = s.fails(&["create", "-f", f, "--validate=strict"]);
    assert!(
        err.contains(r#"unknown field "colour" in io.k8s.api.core.v1.ConfigMap"#),
        "{err}"
    );
    assert!(err.contains("--validate=false"), "{err}");
    // Validation failed before anything was sent.
    let missing = s.fails(&["get", "configmap", "app-config"]);
    assert!(
        missing.contains("NotFound") || missing.contains("not found"),
        "{missing}"
    );
    let missing = s.fails(&["get", "secret", "app-secret"]);
    assert!(missing.contains("not found"), "{missing}");
    // Without validation both are created (the server drops the unknown field).
    s.ok(&["create", "-f", f, "--validate=false"]);
    s.ok(&["get", "configmap", "app-config"]);
    s.ok(&["get", "secret", "app-secret"]);
}

#[test]
fn create_token_review_from_file() {
    let s = Server::start();
    // The `default` ServiceAccount is made by a controller shortly after start.
    let token = eventually(30, "kubectl create token default", || {
        let out = s.kubectl(&["create", "token", "default"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    let review = format!(
        "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: {token}\n"
    );
    let f = s.write("tokenreview.yaml", &review);
    let out = yaml(&s.ok(&["create", "-f", f.to_str().unwrap(), "-o", "yaml"]));
    assert_eq!(out["kind"], "TokenReview");
    assert_eq!(out["status"]["authenticated"], true, "{out:?}");
    assert_eq!(
        out["status"]["user"]["username"],
        "system:serviceaccount:default:default"
    );

    let f = s.write(
        "bad-tokenreview.yaml",
        "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: not-a-token\n",
    );
    let out = yaml(&s.ok(&["create", "-f", f.to_str().unwrap(), "-o", "yaml"]));
    assert_ne!(out["status"]["authenticated"], true, "{out:?}");
}

#[test]
fn create_self_subject_reviews_from_file() {
    let s = Server::start();
    let f = s.write(
        "ssar.yaml",
        r#"
apiVersion: authorization.k8s.io/v1
kind: SelfSubjectAccessReview
spec:
  resourceAttributes:
    namespace: default
    verb: get
    resource: pods
"#,
    );
    let out = yaml(&s.ok(&["create", "-f", f.to_str().unwrap(), "-o", "yaml"]));
    assert_eq!(out["kind"], "SelfSubjectAccessReview");
    assert_eq!(out["status"]["allowed"], true, "{out:?}");
    assert_eq!(out["spec"]["resourceAttributes"]["resource"], "pods");

    let f = s.write(
        "ssr.yaml",
        "apiVersion: authentication.k8s.io/v1\nkind: SelfSubjectReview\n",
    );
    let out = yaml(&s.ok(&["create", "-f", f.to_str().unwrap(), "-o", "yaml"]));
    assert_eq!(out["kind"], "SelfSubjectReview");
    assert!(
        out["status"]["userInfo"]["username"]
            .as_str()
            .is_some_and(|u| !u.is_empty()),
        "{out:?}"
    );
}

#[test]
fn openapi_v2_json_stays_the_default() {
    let s = Server::start();
    let doc: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "--raw", "/openapi/v2"])).expect("v2 is JSON");
    assert_eq!(doc["swagger"], "2.0");
    assert!(doc["definitions"]["io.k8s.api.core.v1.ConfigMap"].is_object());
}
