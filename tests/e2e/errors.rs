//! Error messages as kubectl prints them, and bad input that must be refused cleanly.

use crate::harness::Server;

fn curl(s: &Server, method: &str, path: &str, ct: &str, body: &[u8]) -> (u16, serde_json::Value) {
    s.curl(method, path, ct, body)
}

#[test]
fn kubectl_error_messages() {
    let s = Server::start();
    let nf = s.fails(&["get", "deploy", "nothere"]);
    assert!(
        nf.contains("Error from server (NotFound): deployments.apps \"nothere\" not found"),
        "{nf}"
    );
    s.ok(&["create", "configmap", "demo"]);
    let ae = s.fails(&["create", "configmap", "demo"]);
    assert!(
        ae.contains("error: failed to create configmap: configmaps \"demo\" already exists"),
        "{ae}"
    );
    let f = s.write(
        "demo.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n",
    );
    let ae = s.fails(&["create", "-f", f.to_str().unwrap()]);
    assert!(
        ae.contains("Error from server (AlreadyExists)")
            && ae.contains("configmaps \"demo\" already exists"),
        "{ae}"
    );

    // Conflict: replace with a stale resourceVersion.
    let stale = s.ok(&["get", "cm", "demo", "-o", "json"]);
    s.ok(&["label", "cm", "demo", "x=y"]);
    let f = s.write("stale.json", &stale);
    let cf = s.fails(&["replace", "-f", f.to_str().unwrap()]);
    assert!(
        cf.contains(
            "Operation cannot be fulfilled on configmaps \"demo\": the object has been modified"
        ),
        "{cf}"
    );

    // Invalid with a field path.
    let bad =
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n";
    let inv = s.fails_stdin(&["apply", "-f", "-"], bad);
    assert!(
        inv.contains("is invalid") && inv.contains("spec.containers[0].image: Required value"),
        "{inv}"
    );
    let inv = s.fails(&["create", "configmap", "Bad_Name"]);
    assert!(
        inv.contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{inv}"
    );

    // Unknown field under Strict validation (kubectl's default).
    let unk = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: u\ndata:\n  a: b\nbogus: 1\n";
    let e = s.fails_stdin(&["apply", "-f", "-"], unk);
    assert!(e.contains("unknown field \"bogus\""), "{e}");
    s.fails(&["get", "cm", "u"]);
    // Namespace must exist.
    let e = s.fails(&["create", "configmap", "x", "-n", "nowhere"]);
    assert!(e.contains("namespaces \"nowhere\" not found"), "{e}");
}

#[test]
fn bad_input_is_refused_and_nothing_is_stored() {
    let s = Server::start();
    let path = "/api/v1/namespaces/default/configmaps";
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("application/json", b"{not json".to_vec(), 400),
        ("application/yaml", b"a: [unclosed".to_vec(), 400),
        (
            "application/json",
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"t1"},"data":{"a":1}}"#
                .to_vec(),
            400,
        ),
        (
            "application/json",
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_Valid"}}"#.to_vec(),
            422,
        ),
        (
            "application/json",
            br#"{"apiVersion":"v1","kind":"Deployment","metadata":{"name":"t2"}}"#.to_vec(),
            400,
        ),
        ("application/json", br#"[1,2,3]"#.to_vec(), 400),
        (
            "application/json",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            400,
        ),
        ("application/json", vec![b' '; 4 * 1024 * 1024], 413),
        (
            "application/vnd.kubernetes.protobuf",
            b"k8s\0\x0a\xff\xff".to_vec(),
            400,
        ),
        ("text/csv", b"a,b".to_vec(), 415),
    ];
    for (ct, body, want) in cases {
        let (code, status) = curl(&s, "POST", path, ct, &body);
        assert_eq!(
            code,
            want,
            "{ct} body starting {:?}: {status}",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        );
        assert_eq!(status["kind"], "Status", "{status}");
        assert_eq!(status["code"], want);
    }
    let (code, status) = curl(
        &s,
        "GET",
        "/apis/nothing.example.com/v1/widgets",
        "application/json",
        b"",
    );
    assert_eq!(code, 404, "{status}");
    // kubectl (HTTP/2, protobuf body) gets the 413 message too.
    let big = s.write("big.txt", &"x".repeat(4 * 1024 * 1024));
    let e = s.fails(&[
        "create",
        "configmap",
        "big",
        &format!("--from-file=big={}", big.display()),
    ]);
    assert!(e.contains("larger than the limit"), "{e}");
    // Still serving, and nothing was stored.
    let names = s.ok(&["get", "cm", "-o", "name"]);
    assert!(
        !names.contains("t1") && !names.contains("t2") && !names.contains("Not_Valid"),
        "{names}"
    );
}
