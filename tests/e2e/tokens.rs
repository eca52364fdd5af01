//! Service-account tokens with the real kubectl: `kubectl create token` (TokenRequest), the
//! token as kubectl's only credential (no client certificate), `kubectl auth whoami`
//! (SelfSubjectReview), TokenReview, and revocation when the ServiceAccount or the bound pod
//! goes away.

use std::path::PathBuf;
use std::process::Output;

use base64::Engine;
use serde_json::Value;

use crate::harness::{eventually, Server};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The claims of a JWT (its middle part), without checking anything.
fn claims(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token:?}");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1])
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON payload")
}

/// The server CA from the admin kubeconfig, as a file for `--certificate-authority`.
fn ca_file(s: &Server) -> PathBuf {
    let kc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&s.kubeconfig).expect("kubeconfig"))
            .expect("kubeconfig YAML");
    let data = kc["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .expect("certificate-authority-data");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("base64 CA");
    let path = s.path().join("token-ca.crt");
    std::fs::write(&path, pem).expect("write CA");
    path
}

/// kubectl with only `--server`, `--certificate-authority` and `--token` (an empty
/// kubeconfig, so no client certificate is presented).
fn kubectl_with_token(s: &Server, token: &str, args: &[&str]) -> Output {
    let empty = s.write("empty-kubeconfig.yaml", "apiVersion: v1\nkind: Config\n");
    let ca = ca_file(s);
    let mut cmd = s.kubectl_cmd(&[]);
    cmd.env("KUBECONFIG", &empty)
        .arg(format!("--server={}", s.url("")))
        .arg(format!("--certificate-authority={}", ca.display()))
        .arg(format!("--token={token}"))
        .args(args);
    cmd.output().expect("run kubectl")
}

fn ok_with_token(s: &Server, token: &str, args: &[&str]) -> String {
    let out = kubectl_with_token(s, token, args);
    assert!(
        out.status.success(),
        "kubectl {args:?} with a token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stderr of a kubectl run with `token` that must fail.
fn fails_with_token(s: &Server, token: &str, args: &[&str]) -> String {
    let out = kubectl_with_token(s, token, args);
    assert!(
        !out.status.success(),
        "kubectl {args:?} with a token unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `kubectl create token <args>` once the ServiceAccount exists (the `default` one is made
/// by a controller shortly after start).
fn create_token(s: &Server, args: &[&str]) -> String {
    let mut full = vec!["create", "token"];
    full.extend_from_slice(args);
    eventually(30, "kubectl create token", || {
        let out = s.kubectl(&full);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    })
}

/// A TokenReview created with `kubectl create -f` (kubectl validates it against the
/// protobuf OpenAPI v2 document first), answered with its status.
fn token_review(s: &Server, token: &str, audiences: &[&str]) -> Value {
    let review = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token, "audiences": audiences},
    });
    let file = s.write("review.json", &review.to_string());
    let out = s.ok(&["create", "-f", &file.display().to_string(), "-o", "json"]);
    serde_json::from_str(&out).expect("TokenReview JSON")
}

fn whoami(s: &Server, token: &str) -> Value {
    let out = ok_with_token(s, token, &["auth", "whoami", "-o", "json"]);
    serde_json::from_str(&out).expect("SelfSubjectReview JSON")
}

#[test]
fn kubectl_create_token_gives_a_working_service_account_credential() {
    let s = Server::start();
    let token = create_token(&s, &["default"]);
    let c = claims(&token);
    let sa_uid = s.ok(&[
        "get",
        "serviceaccount",
        "default",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    assert_eq!(c["iss"], ISSUER);
    assert_eq!(c["sub"], "system:serviceaccount:default:default");
    assert_eq!(c["aud"], serde_json::json!([ISSUER]));
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );
    assert_eq!(c["kubernetes.io"]["namespace"], "default");
    assert_eq!(c["kubernetes.io"]["serviceaccount"]["name"], "default");
    assert_eq!(c["kubernetes.io"]["serviceaccount"]["uid"], sa_uid.as_str());
    assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()));

    // The token alone gets kubectl in.
    s.ok(&["create", "configmap", "visible", "--from-literal=k=v"]);
    let out = ok_with_token(&s, &token, &["get", "configmaps", "-o", "name"]);
    assert!(out.contains("configmap/visible"), "{out}");
    ok_with_token(&s, &token, &["get", "pods"]);

    // whoami: the table and the SelfSubjectReview behind it.
    let table = ok_with_token(&s, &token, &["auth", "whoami"]);
    assert!(
        table.lines().any(|l| l.starts_with("Username")
            && l.trim_end()
                .ends_with("system:serviceaccount:default:default")),
        "{table}"
    );
    let me = whoami(&s, &token);
    let user = &me["status"]["userInfo"];
    assert_eq!(user["username"], "system:serviceaccount:default:default");
    assert_eq!(user["uid"], sa_uid.as_str());
    assert_eq!(
        user["groups"],
        serde_json::json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/credential-id"][0],
        format!("JTI={}", c["jti"].as_str().unwrap_or_default())
    );
    let admin = s.ok(&["auth", "whoami"]);
    assert!(admin.contains("system:admin"), "{admin}");

    // Lifetimes: --duration, and upstream's minimum.
    let short = create_token(&s, &["default", "--duration=10m"]);
    let c = claims(&short);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 600);
    let err = s.fails(&["create", "token", "default", "--duration=5m"]);
    assert!(
        err.contains("spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes"),
        "{err}"
    );
    let err = s.fails(&["create", "token", "missing"]);
    assert!(
        err.contains("serviceaccounts \"missing\" not found"),
        "{err}"
    );

    // TokenReview: the token authenticates, garbage does not.
    let review = token_review(&s, &token, &[]);
    assert_eq!(review["status"]["authenticated"], true, "{review}");
    assert_eq!(
        review["status"]["user"]["username"],
        "system:serviceaccount:default:default"
    );
    assert_eq!(review["status"]["audiences"], serde_json::json!([ISSUER]));
    let review = token_review(&s, "not-a-token", &[]);
    assert_ne!(review["status"]["authenticated"], true, "{review}");
    assert!(review["status"]["error"].is_string(), "{review}");
    let err = fails_with_token(&s, "not-a-token", &["get", "pods"]);
    assert!(err.contains("Unauthorized"), "{err}");

    // A token for another audience is not an API credential, but reviews for that audience.
    let vault = create_token(&s, &["default", "--audience=vault"]);
    assert_eq!(claims(&vault)["aud"], serde_json::json!(["vault"]));
    let err = fails_with_token(&s, &vault, &["get", "pods"]);
    assert!(err.contains("Unauthorized"), "{err}");
    let review = token_review(&s, &vault, &["vault"]);
    assert_eq!(review["status"]["authenticated"], true, "{review}");
    assert_eq!(review["status"]["audiences"], serde_json::json!(["vault"]));
    let review = token_review(&s, &vault, &[]);
    assert_ne!(review["status"]["authenticated"], true, "{review}");

    // The signing key survives a restart: tokens stay valid.
    let mut s = s;
    s.restart();
    let out = ok_with_token(&s, &token, &["get", "configmaps", "-o", "name"]);
    assert!(out.contains("configmap/visible"), "{out}");
}

#[test]
fn deleting_the_service_account_or_bound_pod_revokes_tokens() {
    let s = Server::start();
    s.ok(&["create", "serviceaccount", "robot"]);
    let token = create_token(&s, &["robot"]);
    ok_with_token(&s, &token, &["get", "pods"]);

    s.ok(&["delete", "serviceaccount", "robot"]);
    let err = eventually(10, "token refused after the SA is deleted", || {
        let out = kubectl_with_token(&s, &token, &["get", "pods"]);
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    assert!(
        err.contains("You must be logged in to the server (Unauthorized)"),
        "{err}"
    );
    // The same name again is another ServiceAccount (another uid): still refused.
    s.ok(&["create", "serviceaccount", "robot"]);
    let review = eventually(10, "recreated SA visible", || {
        let r = token_review(&s, &token, &[]);
        r["status"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not match claim"))
            .then_some(r)
    });
    assert_ne!(review["status"]["authenticated"], true);
    fails_with_token(&s, &token, &["get", "pods"]);

    // A pod-bound token names the pod and dies with it.
    s.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  serviceAccountName: robot\n  containers:\n  - name: c\n    image: nginx\n",
    );
    let pod_uid = s.ok(&["get", "pod", "web", "-o", "jsonpath={.metadata.uid}"]);
    let bound = create_token(
        &s,
        &[
            "robot",
            "--bound-object-kind=Pod",
            "--bound-object-name=web",
        ],
    );
    let c = claims(&bound);
    assert_eq!(c["kubernetes.io"]["pod"]["name"], "web");
    assert_eq!(c["kubernetes.io"]["pod"]["uid"], pod_uid.as_str());
    let me = whoami(&s, &bound);
    let extra = &me["status"]["userInfo"]["extra"];
    assert_eq!(extra["authentication.kubernetes.io/pod-name"][0], "web");
    assert_eq!(
        extra["authentication.kubernetes.io/pod-uid"][0],
        pod_uid.as_str()
    );
    // Binding to a pod of another ServiceAccount is refused, as upstream.
    let err = s.fails(&[
        "create",
        "token",
        "default",
        "--bound-object-kind=Pod",
        "--bound-object-name=web",
    ]);
    assert!(err.contains("different serviceaccount name"), "{err}");

    s.ok(&["delete", "pod", "web", "--grace-period=0", "--force"]);
    eventually(30, "pod-bound token refused after the pod is gone", || {
        (!kubectl_with_token(&s, &bound, &["get", "pods"])
            .status
            .success())
        .then_some(())
    });
}
