//! The systems under test and their load workers: the skiff server process (started on a
//! fresh data dir, ready when `/readyz` answers over TLS), etcd (started on loopback with
//! its default fsync durability), and the in-process `SledStore`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Method, StatusCode};
use skiff::store::{SledStore, Store};

use crate::https::{Conn, Credentials, Proto, Target};
use crate::load::Worker;
use crate::proc::{free_port, Proc, TempDir};
use crate::{err, Result};

/// A `skiff server --disable-agent` process on a fresh data dir and a free loopback port.
/// Fields drop in order: the process is stopped before its directory is removed.
pub struct Skiff {
    pub proc: Proc,
    dir: TempDir,
    pub port: u16,
    spawned: Instant,
}

impl Skiff {
    pub fn spawn(bin: &Path, base: &Path) -> Result<Skiff> {
        let dir = TempDir::new(base, "skiff")?;
        let port = free_port()?;
        // An empty config file keeps the host's /etc/skiff/config.yaml out of the run.
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, "").map_err(|e| err(format!("writing {config:?}: {e}")))?;
        let mut cmd = Command::new(bin);
        cmd.arg("server")
            .arg("--disable-agent")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--https-listen-port={port}"))
            .arg("--write-kubeconfig")
            .arg(dir.path().join("kubeconfig.yaml"))
            .arg("--config")
            .arg(&config)
            .env_remove("SKIFF_LOG")
            .env_remove("SKIFF_DATA_DIR");
        let spawned = Instant::now();
        let proc = Proc::spawn("skiff server", cmd, dir.path().join("server.log"))?;
        Ok(Skiff {
            proc,
            dir,
            port,
            spawned,
        })
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    /// Polls `/readyz` over TLS (every 2 ms) until it answers 200; returns the time from
    /// spawning the process and the connection settings for the benchmark clients.
    pub async fn wait_ready(
        &mut self,
        proto: Proto,
        timeout: Duration,
    ) -> Result<(Duration, Target)> {
        let deadline = Instant::now() + timeout;
        let mut target = None;
        loop {
            self.proc.check_running()?;
            if target.is_none() {
                // The kubeconfig is written just before the listener is bound; a half-written
                // file just fails to parse and is read again.
                if let Ok(creds) = Credentials::from_kubeconfig(&self.kubeconfig()) {
                    target = Some(Target {
                        port: self.port,
                        tls: creds.tls_config(proto)?,
                        proto,
                    });
                }
            }
            if let Some(t) = &target {
                if let Ok(mut conn) = Conn::open(t).await {
                    let reply = conn
                        .request(Method::GET, "/readyz", &[], Bytes::new())
                        .await;
                    if matches!(reply, Ok(ref r) if r.status == StatusCode::OK) {
                        return Ok((self.spawned.elapsed(), t.clone()));
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(err(format!(
                    "skiff server not ready after {timeout:?}; log tail:\n{}",
                    self.proc.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The server's own `ready_ms` from its "ready" log line, if logged.
    pub fn logged_ready_ms(&self) -> Option<u64> {
        let log = strip_ansi(&std::fs::read_to_string(&self.proc.log).ok()?);
        let rest = log.split("ready_ms=").nth(1)?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }
}

/// `text` without ANSI escape sequences (`ESC [ ... letter`), which the server's log has.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// An `etcd` process on loopback (random client and peer ports, temp data dir, default
/// durability: every write's WAL entry is fsynced before it is acknowledged).
pub struct Etcd {
    proc: Proc,
    _dir: TempDir,
    pub endpoint: String,
}

impl Etcd {
    pub async fn start(bin: &Path, base: &Path) -> Result<Etcd> {
        let dir = TempDir::new(base, "etcd")?;
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut cmd = Command::new(bin);
        cmd.arg("--name=bench")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=bench={peer}"))
            .arg("--initial-cluster-state=new")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            // etcd also reads ETCD_* variables; keep the caller's out of the run.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        let mut proc = Proc::spawn("etcd", cmd, dir.path().join("etcd.log"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            proc.check_running()?;
            if let Ok(mut c) = etcd_client::Client::connect([client.as_str()], None).await {
                if c.status().await.is_ok() {
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err(err(format!(
                    "etcd not ready after 30 s; log tail:\n{}",
                    proc.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Etcd {
            proc,
            _dir: dir,
            endpoint: client,
        })
    }

    pub fn stop(&mut self) {
        self.proc.stop();
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

/// A ~1 KiB value of printable pseudo-random bytes (nothing on the path compresses it).
pub fn payload(size: usize) -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), size)
}

/// `SledStore::create` of `<prefix><seq>` with a fixed value.
pub struct StoreWorker {
    pub store: Arc<SledStore>,
    pub prefix: String,
    pub value: Bytes,
}

impl Worker for StoreWorker {
    fn op(&mut self, seq: u64) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let key = format!("{}{seq}", self.prefix);
            self.store
                .create(&key, self.value.clone())
                .await
                .map(|_| ())
                .map_err(|e| err(format!("store create {key}: {e}")))
        })
    }
}

/// etcd `Put` of `<prefix><seq>` over this worker's own gRPC connection.
pub struct EtcdWorker {
    pub client: etcd_client::Client,
    pub prefix: String,
    pub value: Bytes,
}

impl EtcdWorker {
    pub async fn connect(endpoint: &str, prefix: String, value: Bytes) -> Result<EtcdWorker> {
        let client = etcd_client::Client::connect([endpoint], None)
            .await
            .map_err(|e| err(format!("connecting to etcd at {endpoint}: {e}")))?;
        Ok(EtcdWorker {
            client,
            prefix,
            value,
        })
    }
}

impl Worker for EtcdWorker {
    fn op(&mut self, seq: u64) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let key = format!("{}{seq}", self.prefix);
            self.client
                .put(key.as_bytes(), self.value.to_vec(), None)
                .await
                .map(|_| ())
                .map_err(|e| err(format!("etcd put {key}: {e}")))
        })
    }
}

/// `POST /api/v1/namespaces/<ns>/configmaps` of a ConfigMap named `<prefix><seq>` with a
/// ~1 KiB `data` value, over this worker's own TLS connection; expects 201.
pub struct ApiWorker {
    pub conn: Conn,
    pub path: String,
    pub prefix: String,
    pub payload: Arc<str>,
}

impl ApiWorker {
    pub async fn connect(
        target: &Target,
        namespace: &str,
        prefix: String,
        payload: Arc<str>,
    ) -> Result<ApiWorker> {
        Ok(ApiWorker {
            conn: Conn::open(target).await?,
            path: format!("/api/v1/namespaces/{namespace}/configmaps"),
            prefix,
            payload,
        })
    }
}

impl Worker for ApiWorker {
    fn op(&mut self, seq: u64) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let body = format!(
                r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{}{seq}"}},"data":{{"payload":"{}"}}}}"#,
                self.prefix, self.payload
            );
            self.conn
                .post_json(&self.path, Bytes::from(body), StatusCode::CREATED)
                .await
        })
    }
}
