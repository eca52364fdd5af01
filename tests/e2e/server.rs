//! The server command itself: flags, config file, certificates across restarts, token
//! authentication, and the clear refusal to run without the (unbuilt) agent.

use std::process::Command;

use crate::harness::{free_port, skiff_bin, Server};

#[test]
fn version_and_bad_agent_flags() {
    let out = Command::new(skiff_bin()).arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && v.starts_with("skiff "), "{v}");

    // A bad agent flag stops the server before anything starts. (The agent itself is
    // only ever started inside a test's own network namespace: tests/e2e/node.rs.)
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, "").unwrap();
    let out = Command::new(skiff_bin())
        .args(["server", "--node-label", "novalue", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&cfg)
        .arg(format!("--https-listen-port={}", free_port()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--node-label \"novalue\": expected key=value"),
        "{err}"
    );
    assert!(
        !dir.path().join("data/server").exists(),
        "nothing was set up"
    );
}

#[test]
fn certificates_are_reused_across_restarts() {
    let mut s = Server::start();
    let ca = |s: &Server| std::fs::read(s.data_dir().join("server/tls/server-ca.crt")).unwrap();
    let token = |s: &Server| std::fs::read_to_string(s.data_dir().join("server/token")).unwrap();
    let (ca1, t1) = (ca(&s), token(&s));
    assert!(t1.starts_with("K10") && t1.contains("::server:"), "{t1}");
    s.ok(&["create", "configmap", "kept"]);
    s.restart();
    assert_eq!(ca(&s), ca1, "the CA changed on restart");
    assert_eq!(token(&s), t1, "the server token changed on restart");
    s.ok(&["get", "configmap", "kept"]);
    let mode =
        std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(&s.kubeconfig).unwrap()) & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn token_auth_file_and_unauthorized() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "s3cr3t-token,alice,1001,\"dev,ops\"\n").unwrap();
    let s = Server::start_with(&["--token-auth-file", tokens.to_str().unwrap()]);
    let base = |token: &str| {
        let mut c = Command::new("kubectl");
        c.env("HOME", s.path())
            .env("KUBECONFIG", "/dev/null")
            .args([
                "--server",
                &s.url(""),
                "--insecure-skip-tls-verify",
                "--token",
                token,
            ]);
        c
    };
    let out = base("s3cr3t-token")
        .args(["get", "ns", "default", "-o", "name"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "namespace/default"
    );
    let out = base("wrong").args(["get", "ns"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("You must be logged in to the server (Unauthorized)"),
        "{err}"
    );
}

#[test]
fn config_file_keys_are_flag_names() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let kubeconfig = dir.path().join("kc.yaml");
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "data-dir: {}\nhttps-listen-port: {port}\nbind-address: 127.0.0.1\ndisable-agent: true\nwrite-kubeconfig: {}\nwrite-kubeconfig-mode: \"0640\"\n",
            dir.path().join("data").display(),
            kubeconfig.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(skiff_bin())
        .args(["server", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    crate::harness::eventually(30, "server from config file", || {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", dir.path())
            .args(["get", "--raw", "/readyz"])
            .output()
            .ok()?;
        out.status.success().then_some(())
    });
    let mode =
        std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(&kubeconfig).unwrap()) & 0o777;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(mode, 0o640);
    let server = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(
        server.contains(&format!("https://127.0.0.1:{port}")),
        "{server}"
    );
}
