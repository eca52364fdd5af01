//! A local `docker-registry serve` (Debian's package) for the tests, on 127.0.0.1 of the
//! test's own network namespace or of a node test's namespace, killed on drop; and
//! pushing a [`TestImage`] to it with `oci-client`. Each test crate uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::image::{TestImage, CONFIG_TYPE, LAYER_GZIP, LAYER_ZSTD};

/// A `docker-registry serve`, killed on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    netns: Option<String>,
    _dir: tempfile::TempDir,
}

/// Run `f` on a thread that entered the network namespace `netns` (`/run/netns/<name>`),
/// or on this one without.
pub fn in_netns<T: Send>(netns: Option<&str>, f: impl FnOnce() -> T + Send) -> T {
    let Some(ns) = netns else { return f() };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns file");
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("setns into the node's network namespace");
                f()
            })
            .join()
            .expect("netns thread")
    })
}

impl Registry {
    /// On 127.0.0.1 of this process's network namespace.
    pub fn start() -> Registry {
        Self::start_in(None, free_port())
    }

    /// On 127.0.0.1:`port` of the network namespace `netns`.
    pub fn start_in(netns: Option<&str>, port: u16) -> Registry {
        let registry = "/usr/bin/docker-registry";
        assert!(
            Path::new(registry).exists(),
            "{registry} is missing: install Debian's docker-registry (tests/run.sh does)"
        );
        let dir = tempfile::tempdir().expect("tmp");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("storage").display()
            ),
        )
        .expect("config");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(registry);
                c
            }
            None => Command::new(registry),
        };
        let child = cmd
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let reg = Registry {
            child,
            port,
            netns: netns.map(str::to_string),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !in_netns(netns, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }) {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    /// Push `img` as `127.0.0.1:<port>/<repo>:<tag>`, from the registry's namespace.
    pub fn push_blocking(&self, img: &TestImage, repo_and_tag: &str) {
        let reference = format!("127.0.0.1:{}/{repo_and_tag}", self.port);
        in_netns(self.netns.as_deref(), || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(push(img, &reference))
        })
    }

    pub fn stop(&mut self) {
        // SAFETY: the registry process this test started, by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Push `img` (its gzip base and zstd top layer) as `reference` over plain HTTP.
pub async fn push(img: &TestImage, reference: &str) {
    skiff::runtime::image::pull::install_crypto_provider();
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let r: oci_client::Reference = reference.parse().expect("reference");
    let layers = vec![
        oci_client::client::ImageLayer::new(img.base_gz.clone(), LAYER_GZIP.into(), None),
        oci_client::client::ImageLayer::new(img.top_zst.clone(), LAYER_ZSTD.into(), None),
    ];
    let config = oci_client::client::Config::new(img.config.clone(), CONFIG_TYPE.into(), None);
    client
        .push(
            &r,
            &layers,
            config,
            &oci_client::secrets::RegistryAuth::Anonymous,
            None,
        )
        .await
        .expect("push to the local registry");
}
