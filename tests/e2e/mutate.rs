//! label, annotate, edit, patch (json, merge, strategic), scale and delete.

use std::os::unix::fs::PermissionsExt;

use crate::harness::{eventually, Server};

#[test]
fn label_and_annotate() {
    let s = Server::start();
    s.ok(&["create", "configmap", "c"]);
    assert_eq!(
        s.ok(&["label", "cm", "c", "app=web"]).trim(),
        "configmap/c labeled"
    );
    let err = s.fails(&["label", "cm", "c", "app=api"]);
    assert!(
        err.contains("already has a value (web)") && err.contains("--overwrite"),
        "{err}"
    );
    s.ok(&["label", "cm", "c", "app=api", "--overwrite"]);
    assert_eq!(
        s.ok(&["get", "cm", "c", "-o", "jsonpath={.metadata.labels.app}"]),
        "api"
    );
    s.ok(&["label", "cm", "c", "app-"]);
    assert_eq!(
        s.ok(&["get", "cm", "c", "-o", "jsonpath={.metadata.labels}"]),
        ""
    );
    assert_eq!(
        s.ok(&["annotate", "cm", "c", "note=hello"]).trim(),
        "configmap/c annotated"
    );
    s.fails(&["annotate", "cm", "c", "note=bye"]);
    s.ok(&["annotate", "cm", "c", "note=bye", "--overwrite"]);
    assert_eq!(
        s.ok(&[
            "get",
            "cm",
            "c",
            "-o",
            "jsonpath={.metadata.annotations.note}"
        ]),
        "bye"
    );
    s.ok(&["annotate", "cm", "c", "note-"]);
    assert_eq!(
        s.ok(&[
            "get",
            "cm",
            "c",
            "-o",
            "jsonpath={.metadata.annotations.note}"
        ]),
        ""
    );
}

#[test]
fn edit_with_an_editor_script() {
    let s = Server::start();
    s.ok(&["create", "configmap", "ed", "--from-literal=color=blue"]);
    let script = s.write(
        "editor.sh",
        "#!/bin/sh\nsed -i 's/color: blue/color: green/' \"$1\"\n",
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = s
        .kubectl_cmd(&["edit", "cm", "ed"])
        .env("EDITOR", &script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configmap/ed edited"
    );
    assert_eq!(
        s.ok(&["get", "cm", "ed", "-o", "jsonpath={.data.color}"]),
        "green"
    );
}

#[test]
fn patch_types() {
    let s = Server::start();
    s.ok(&["create", "deployment", "web", "--image=nginx:1.27"]);
    // Strategic merge: the container list is merged by name.
    s.ok(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}"#,
    ]);
    // As kube-apiserver does, items only in the patch come before the server's.
    assert_eq!(
        s.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].name}"
        ]),
        "sidecar nginx"
    );
    // Merge patch replaces the list.
    s.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"only","image":"busybox"}]}}}}"#,
    ]);
    assert_eq!(
        s.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].name}"
        ]),
        "only"
    );
    // JSON patch.
    s.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
    ]);
    assert_eq!(
        s.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "4"
    );
    let err = s.fails(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/nothing/here"}]"#,
    ]);
    assert!(err.contains("nothing"), "{err}");
}

#[test]
fn scale_and_deployment_scale_subresource() {
    let s = Server::start();
    s.ok(&["create", "deployment", "web", "--image=nginx:1.27"]);
    assert_eq!(
        s.ok(&["scale", "deploy", "web", "--replicas=3"]).trim(),
        "deployment.apps/web scaled"
    );
    assert_eq!(
        s.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );
    let scale = s.ok(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
    ]);
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=web");
}

#[test]
fn delete_variants() {
    let s = Server::start();
    for n in ["a", "b", "c"] {
        s.ok(&["create", "configmap", n]);
    }
    s.ok(&["label", "cm", "a", "b", "group=x"]);
    let out = s.ok(&["delete", "cm", "-l", "group=x"]);
    assert!(
        out.contains("configmap \"a\" deleted") && out.contains("configmap \"b\" deleted"),
        "{out}"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "cm",
            "-o",
            "name",
            "--field-selector",
            "metadata.name!=kube-root-ca.crt"
        ])
        .trim(),
        "configmap/c"
    );
    let f = s.write(
        "c.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
    );
    assert_eq!(
        s.ok(&["delete", "-f", f.to_str().unwrap()]).trim(),
        "configmap \"c\" deleted"
    );
    let err = s.fails(&["delete", "cm", "c"]);
    assert!(
        err.contains("Error from server (NotFound): configmaps \"c\" not found"),
        "{err}"
    );

    // A pod bound to a node waits for its kubelet; --force --grace-period=0 removes it at once.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  nodeName: node-1\n  containers:\n  - name: c\n    image: busybox\n";
    s.ok_stdin(&["apply", "-f", "-"], pod);
    s.ok(&["delete", "pod", "p", "--wait=false"]);
    let ts = s.ok(&[
        "get",
        "pod",
        "p",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(!ts.is_empty(), "graceful delete sets deletionTimestamp");
    assert!(s.ok(&["get", "pod", "p"]).contains("Terminating"));
    let out = s.kubectl(&["delete", "pod", "p", "--force", "--grace-period=0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(10, "pod gone", || {
        s.kubectl(&["get", "pod", "p"])
            .status
            .code()
            .filter(|c| *c != 0)
    });
}
