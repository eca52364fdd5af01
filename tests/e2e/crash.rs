//! Crash safety: SIGKILL in the middle of a burst of concurrent creates. Every create
//! that was answered 2xx must be there after restart, and a watch resumed from before
//! the burst replays what it missed (or says 410 Expired).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::Server;

#[test]
fn acknowledged_creates_survive_sigkill() {
    let mut s = Server::start();
    let list = s.ok(&["get", "--raw", "/api/v1/namespaces/default/configmaps"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let rv0 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop_at = Instant::now() + Duration::from_millis(1500);
    let s_ref = &s;
    std::thread::scope(|scope| {
        for t in 0..8 {
            let acked = acked.clone();
            scope.spawn(move || {
                let mut i = 0;
                while Instant::now() < stop_at + Duration::from_millis(1500) {
                    let name = format!("burst-{t}-{i}");
                    let body = format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"i":"{i}"}}}}"#);
                    let (code, _) = s_ref.curl("POST", "/api/v1/namespaces/default/configmaps", "application/json", body.as_bytes());
                    if (200..300).contains(&code) {
                        acked.lock().unwrap().push(name);
                    }
                    i += 1;
                }
            });
        }
        std::thread::sleep(stop_at.saturating_duration_since(Instant::now()));
        // Kill while the workers are still writing.
        let pid = s_ref.pid();
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    });
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "the burst acknowledged only {} creates",
        acked.len()
    );

    s.restart();
    let names = s.ok(&["get", "cm", "-o", "name"]);
    let present: std::collections::HashSet<&str> = names
        .lines()
        .filter_map(|l| l.strip_prefix("configmap/"))
        .collect();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|n| !present.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged creates lost after SIGKILL: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );

    // Resume a watch from before the burst.
    let out = s.ok(&["get", "--raw", &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv0}&timeoutSeconds=3")]);
    let mut replayed = std::collections::HashSet::new();
    let mut expired = false;
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let ev: serde_json::Value = serde_json::from_str(line).unwrap();
        match ev["type"].as_str() {
            Some("ADDED") => {
                replayed.insert(
                    ev["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                );
            }
            Some("ERROR") => {
                assert_eq!(ev["object"]["code"], 410, "{ev}");
                expired = true;
            }
            _ => {}
        }
    }
    if !expired {
        let not_replayed: Vec<&String> = acked.iter().filter(|n| !replayed.contains(*n)).collect();
        assert!(
            not_replayed.is_empty(),
            "watch from {rv0} missed {} acknowledged creates",
            not_replayed.len()
        );
    }
}
