//! The e2e harness: starts the real `skiff` binary on a free loopback port with its own
//! data dir, and runs the real kubectl against it with an isolated HOME (so kubectl's
//! discovery cache is per test). Everything it starts it stops, by PID, on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub kubeconfig: PathBuf,
    extra_args: Vec<String>,
    simulators: std::sync::atomic::AtomicUsize,
    /// A whole node (server + agent) runs inside this network namespace, created for the
    /// test and removed on drop; kubectl runs inside it too.
    netns: Option<String>,
    /// A node's private mount namespace is held by this process (`sleep`), across server
    /// restarts; killed on drop.
    mount_holder: Option<Child>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn skiff_bin() -> &'static str {
    env!("CARGO_BIN_EXE_skiff")
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        // An empty config file keeps the host's /etc/skiff/config.yaml out of the test.
        std::fs::write(dir.path().join("config.yaml"), "").expect("config file");
        let mut s = Server {
            child: None,
            dir,
            port,
            kubeconfig,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            simulators: Default::default(),
            netns: None,
            mount_holder: None,
        };
        s.spawn();
        s
    }

    /// A single-node cluster: `skiff server` with its agent (containers, pod network),
    /// inside a network namespace of its own so the host's network stays untouched.
    /// Container logs go under the test's dir.
    pub fn start_node(extra: &[&str]) -> Server {
        Server::start_node_with(extra, None)
    }

    /// A node whose data dir is a tmpfs of `size` (`mount -o size=`) inside the node's
    /// mount namespace: a small filesystem of its own (disk-pressure tests). Read it
    /// through [`Server::node_data_dir`]; run programs on it with [`Server::in_node_mounts`].
    pub fn start_node_on_tmpfs(size: &str, extra: &[&str]) -> Server {
        Server::start_node_with(extra, Some(size))
    }

    fn start_node_with(extra: &[&str], data_tmpfs: Option<&str>) -> Server {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let netns = format!("skiff-e2e-{}-{n}", std::process::id());
        let status = Command::new("ip")
            .args(["netns", "add", &netns])
            .status()
            .expect("run ip netns add");
        assert!(status.success(), "ip netns add {netns} failed");
        let status = Command::new("ip")
            .args(["-n", &netns, "link", "set", "lo", "up"])
            .status()
            .expect("run ip link");
        assert!(status.success(), "bringing lo up in {netns} failed");
        // The machine's own network card and address (one end of a veth pair whose other
        // end stays in the namespace too): the node's IP, where pods reach the API
        // server as on a real machine.
        let route = "route add default via 192.168.77.1 dev eth0";
        for args in [
            "link add eth0 type veth peer name uplink",
            "addr add 192.168.77.10/24 dev eth0",
            "link set uplink up",
            "link set eth0 up",
            route,
        ] {
            let ok = Command::new("ip")
                .arg("-n")
                .arg(&netns)
                .args(args.split(' '))
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("ip").args(["netns", "del", &netns]).status();
                panic!("ip -n {netns} {args} failed");
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        std::fs::write(dir.path().join("config.yaml"), "").expect("config file");
        let mut extra_args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        extra_args.push(format!(
            "--pod-logs-dir={}",
            dir.path().join("pod-logs").display()
        ));
        let mut s = Server {
            child: None,
            dir,
            port: free_port(),
            kubeconfig,
            extra_args,
            simulators: Default::default(),
            netns: Some(netns),
            mount_holder: None,
        };
        s.make_mount_namespace();
        if let Some(size) = data_tmpfs {
            std::fs::create_dir_all(s.data_dir()).expect("data dir");
            let out = s
                .in_node_mounts("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "skiff-data"])
                .arg(s.data_dir())
                .output()
                .expect("run mount");
            assert!(
                out.status.success(),
                "mounting a tmpfs data dir: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        s.spawn();
        s
    }

    /// `program` run in the node's mount namespace (where its data dir may be a tmpfs).
    pub fn in_node_mounts(&self, program: &str) -> Command {
        let mnt = self.mount_namespace().expect("a node test");
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount={}", mnt.display())).arg(program);
        c
    }

    /// The data dir as the node sees it (through its mount namespace holder's root).
    pub fn node_data_dir(&self) -> PathBuf {
        match &self.mount_holder {
            Some(h) => PathBuf::from(format!(
                "/proc/{}/root{}",
                h.id(),
                self.data_dir().display()
            )),
            None => self.data_dir(),
        }
    }

    /// The node's mount namespace (of its holder process).
    fn mount_namespace(&self) -> Option<PathBuf> {
        self.mount_holder
            .as_ref()
            .map(|c| PathBuf::from(format!("/proc/{}/ns/mnt", c.id())))
    }

    /// The node's private mount namespace, held by a process of its own across server
    /// restarts, so that the mounts of running containers (root filesystems, namespace
    /// files, tmpfs volumes) are there for the restarted server, as on a real machine,
    /// and all go away with the namespace when the test ends.
    fn make_mount_namespace(&mut self) {
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "infinity"])
            .stdin(Stdio::null())
            .spawn()
            .expect("run unshare");
        let ours = std::fs::read_link("/proc/self/ns/mnt").expect("our mount namespace");
        let theirs = format!("/proc/{}/ns/mnt", holder.id());
        self.mount_holder = Some(holder);
        eventually(10, "the node's mount namespace", || {
            std::fs::read_link(&theirs)
                .ok()
                .filter(|ns| *ns != ours)
                .map(|_| ())
        });
    }

    /// `program` run inside the node's network namespace when there is one (only the
    /// network namespace: `ip netns exec` would also remount /sys and hide the cgroup
    /// hierarchies the runtime needs).
    pub fn in_netns(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// The server of a node test: in the node's network and mount namespaces.
    fn server_cmd(&self) -> Command {
        match (&self.netns, self.mount_namespace()) {
            (Some(ns), Some(mnt)) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--mount={}", mnt.display()))
                    .arg(format!("--net=/run/netns/{ns}"))
                    .arg(skiff_bin());
                c
            }
            _ => Command::new(skiff_bin()),
        }
    }

    /// The mount table the node's server and containers see (`/proc/self/mountinfo`).
    pub fn node_mounts(&self) -> String {
        let mnt = self.mount_namespace().expect("a node test");
        let out = Command::new("nsenter")
            .arg(format!("--mount={}", mnt.display()))
            .args(["cat", "/proc/self/mountinfo"])
            .output()
            .expect("run nsenter");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run `program` in the node's network namespace (e.g. `ip`).
    pub fn in_node(&self, program: &str, args: &[&str]) -> String {
        let out = self
            .in_netns(program)
            .args(args)
            .output()
            .expect("run in the node");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("server log");
        let mut cmd = self.server_cmd();
        cmd.arg("server");
        if self.netns.is_none() {
            cmd.arg("--disable-agent");
        }
        let child = cmd
            .arg("--data-dir")
            .arg(self.data_dir())
            // A node's server is alone in its network namespace: it listens on every
            // address there, so that its pods reach it.
            .arg(if self.netns.is_some() {
                "--bind-address=0.0.0.0"
            } else {
                "--bind-address=127.0.0.1"
            })
            .arg(format!("--https-listen-port={}", self.port))
            .arg("--write-kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--config")
            .arg(self.dir.path().join("config.yaml"))
            .args(&self.extra_args)
            .env(
                "SKIFF_LOG",
                std::env::var("E2E_SKIFF_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start skiff server");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Wait for /readyz through kubectl (proves TLS, auth and the kubeconfig).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("skiff server exited early ({status}); log:\n{}", self.log());
                }
            }
            if self.kubeconfig.exists() {
                let out = self.kubectl(&["get", "--raw", "/readyz"]);
                if out.status.success() {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("skiff server not ready after 30s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The node's network namespace (`/run/netns/<name>`), for node tests.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// The API server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGKILL the server (crash), then wait for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same data dir and port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.in_netns("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .env_remove("KUBECTL_EXTERNAL_DIFF");
        cmd
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args).output().expect("run kubectl")
    }

    /// Run kubectl (`args`, a shell-quoted command line) on a terminal, as a user at a
    /// shell would: under `script`, which gives it a pty and types `typed` into it.
    pub fn kubectl_on_terminal(&self, args: &str, typed: &str) -> Output {
        use std::io::Write;
        let netns = match &self.netns {
            Some(ns) => format!("nsenter --net=/run/netns/{ns} "),
            None => String::new(),
        };
        let mut child = Command::new("script")
            .args(["-qec", &format!("{netns}kubectl {args}"), "/dev/null"])
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run script");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(typed.as_bytes()).expect("type into script");
        drop(stdin);
        child.wait_with_output().expect("script output")
    }

    /// Run kubectl with `stdin` as input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("kubectl output")
    }

    /// kubectl that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl that must fail; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn fails_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).expect("write fixture");
        p
    }

    /// The client certificate files from the kubeconfig, for raw HTTPS requests.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{}", self.port, path)
    }

    /// Write the admin credentials from the kubeconfig as PEM files (once, atomically).
    fn credential_files(&self) -> (PathBuf, PathBuf, PathBuf) {
        use base64::Engine;
        let dir = self.path();
        let files = (
            dir.join("ca.crt"),
            dir.join("admin.crt"),
            dir.join("admin.key"),
        );
        if files.2.exists() {
            return files;
        }
        let kc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig"))
                .expect("kubeconfig YAML");
        let b64 = |v: &serde_yaml::Value| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().expect("base64 field"))
                .expect("base64")
        };
        let user = &kc["users"][0]["user"];
        for (path, value) in [
            (
                &files.0,
                &kc["clusters"][0]["cluster"]["certificate-authority-data"],
            ),
            (&files.1, &user["client-certificate-data"]),
            (&files.2, &user["client-key-data"]),
        ] {
            let tmp = path.with_extension(
                format!("tmp{:?}", std::thread::current().id()).replace(['(', ')'], ""),
            );
            std::fs::write(&tmp, b64(value)).expect("write credential");
            std::fs::rename(&tmp, path).expect("rename credential");
        }
        files
    }

    /// A raw HTTPS/1.1 request with the admin certificate (for bodies kubectl would never
    /// send). Returns the status code and the JSON body (Null if not JSON).
    pub fn curl(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        use std::io::Write;
        let (ca, cert, key) = self.credential_files();
        let mut child = Command::new("curl")
            .args([
                "-sS",
                "--http1.1",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "--cacert",
            ])
            .arg(ca)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .args([
                "-X",
                method,
                "-H",
                &format!("Content-Type: {content_type}"),
                "--data-binary",
                "@-",
            ])
            .arg(self.url(path))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run curl");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(body);
        }
        let out = child.wait_with_output().expect("curl output");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (json, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
        )
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Start `skiff simulate` against this server (e.g. `&["--nodes", "3"]`) and wait until
    /// its nodes are registered and Ready. Stopped (by PID) when dropped.
    pub fn simulate(&self, args: &[&str]) -> Simulator {
        let n = self
            .simulators
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log_path = self.dir.path().join(format!("simulate-{n}.log"));
        let log = std::fs::File::create(&log_path).expect("simulate log");
        let child = Command::new(skiff_bin())
            .arg("simulate")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env(
                "SKIFF_LOG",
                std::env::var("E2E_SKIFF_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start skiff simulate");
        let mut sim = Simulator {
            child: Some(child),
            log: log_path,
        };
        eventually(30, "simulated nodes registered", || {
            if let Some(Ok(Some(status))) = sim.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "skiff simulate exited early ({status}); log:\n{}",
                    sim.log()
                );
            }
            sim.log()
                .contains("simulated nodes registered")
                .then_some(())
        });
        sim
    }
}

/// A running `skiff simulate`.
pub struct Simulator {
    child: Option<Child>,
    log: PathBuf,
}

impl Simulator {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stop the simulator (its nodes stay registered and stop renewing their leases).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Server {
    /// When a test fails, print what a person debugging it would look at first: the
    /// cluster's objects and events, and the ends of the server's and simulators' logs.
    fn report_failure(&self) {
        if self.child.is_some() {
            let state = self.kubectl(&["get", "all,events", "-A", "-o", "wide"]);
            eprintln!(
                "==== cluster state at failure ====\n{}{}",
                String::from_utf8_lossy(&state.stdout),
                String::from_utf8_lossy(&state.stderr)
            );
        }
        let mut logs = vec![self.dir.path().join("server.log")];
        for n in 0..self.simulators.load(std::sync::atomic::Ordering::SeqCst) {
            logs.push(self.dir.path().join(format!("simulate-{n}.log")));
        }
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "==== last lines of {} ====\n{}",
                log.display(),
                tail.join("\n")
            );
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.report_failure();
        }
        if let Some(mut c) = self.child.take() {
            // SIGTERM first for a clean shutdown, then make sure.
            unsafe_kill(c.id(), 15);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if self.mount_holder.is_some() {
            self.remove_node_leftovers();
        }
        if let Some(mut holder) = self.mount_holder.take() {
            // The last process in it gone, the namespace ends, and with it every mount
            // made inside.
            let _ = holder.kill();
            let _ = holder.wait();
        }
        if let Some(ns) = self.netns.take() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

impl Server {
    /// What a node test leaves when it fails half-way: shims and containers the server
    /// started (every process in their cgroups) and the cgroups. Pods the test deleted
    /// leave nothing.
    fn remove_node_leftovers(&self) {
        let containers = self.node_data_dir().join("agent/run/containers");
        let ids: Vec<String> = std::fs::read_dir(&containers)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for id in &ids {
            if let Ok(pid) = std::fs::read_to_string(containers.join(id).join("shim.pid")) {
                if let Ok(pid) = pid.trim().parse::<u32>() {
                    unsafe_kill(pid, 9);
                }
            }
        }
        let hierarchies: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        for id in &ids {
            let uid = id.split('_').next().unwrap_or_default();
            for h in &hierarchies {
                let pod = h.join("skiff").join(format!("pod{uid}"));
                let cgroup = pod.join(id);
                for pid in std::fs::read_to_string(cgroup.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                {
                    if let Ok(pid) = pid.trim().parse::<u32>() {
                        unsafe_kill(pid, 9);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
                let _ = std::fs::remove_dir(&cgroup);
                let _ = std::fs::remove_dir(&pod);
            }
        }
    }
}

fn unsafe_kill(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Poll until `f` returns Some, or panic after `secs`.
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
