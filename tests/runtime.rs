//! Integration tests of the embedded container runtime (src/runtime): real containers
//! through `skiff shim` and libcontainer, on a busybox-static root filesystem. They need
//! root (as CI and tests/run.sh run them) and Debian's `busybox-static`.
//!
//! Every test has its own run dir and cgroup parent; a guard kills what a failed test
//! leaves behind and removes its cgroups. No network setup: each container gets a new,
//! empty network namespace; the host's is never touched.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use skiff::runtime::cgroup;
use skiff::runtime::{
    ContainerSpec, ContainerState, Resources, Runtime, RuntimeConfig, RuntimeError, Status,
};

const BUSYBOX: &str = "/bin/busybox";

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the runtime tests create containers and cgroups: run them as root"
    );
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: install Debian's busybox-static (tests/run.sh does)"
    );
}

/// A busybox root filesystem in `root`: `/bin/busybox` and relative links for every
/// applet (`bin/sh -> busybox`; `busybox --install -s` would point them at the host's
/// path of busybox, which the container does not have).
fn make_rootfs(root: &Path) {
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "work"] {
        std::fs::create_dir_all(root.join(d)).expect("rootfs dirs");
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copy busybox");
    let out = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    assert!(out.status.success(), "busybox --list failed");
    for applet in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))
                .expect("applet link");
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").expect("passwd");
}

/// A runtime in a fresh run dir, with a cgroup parent of its own; cleans up on drop
/// whatever the test did not.
struct Env {
    run: tempfile::TempDir,
    logs: tempfile::TempDir,
    rootfs: tempfile::TempDir,
    runtime: Option<Runtime>,
    parent: String,
}

impl Env {
    fn new(name: &str) -> Env {
        require_root();
        let run = tempfile::Builder::new()
            .prefix("skiff-rt-")
            .tempdir()
            .expect("run dir");
        let logs = tempfile::tempdir().expect("log dir");
        let rootfs = tempfile::Builder::new()
            .prefix("skiff-rootfs-")
            .tempdir()
            .expect("rootfs dir");
        make_rootfs(rootfs.path());
        let runtime = Runtime::new(config(run.path())).expect("runtime");
        Env {
            run,
            logs,
            rootfs,
            runtime: Some(runtime),
            parent: format!("/skiff-test/{}-{name}", std::process::id()),
        }
    }

    fn rt(&self) -> &Runtime {
        self.runtime.as_ref().expect("runtime present")
    }

    fn spec(&self, id: &str, script: &str) -> ContainerSpec {
        let mut spec = ContainerSpec::new(
            id,
            self.rootfs.path(),
            vec!["/bin/sh".into(), "-c".into(), script.into()],
        );
        spec.cgroup_parent = Some(self.parent.clone());
        spec.log_path = self.logs.path().join(id).join("0.log");
        spec
    }
}

fn config(run_dir: &Path) -> RuntimeConfig {
    RuntimeConfig {
        run_dir: run_dir.to_path_buf(),
        shim_binary: PathBuf::from(env!("CARGO_BIN_EXE_skiff")),
        seal_binary: true,
        in_memory: false,
    }
}

fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0): look at the state too.
    // SAFETY: signal 0 only checks for existence.
    if pid <= 0 || unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        drop(self.runtime.take());
        let containers = self.run.path().join("containers");
        let mut paths = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&containers) {
            for e in entries.flatten() {
                let dir = e.path();
                for file in ["shim.pid"] {
                    if let Ok(pid) = std::fs::read_to_string(dir.join(file)) {
                        if let Ok(pid) = pid.trim().parse::<i32>() {
                            // SAFETY: killing a shim this test started.
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                        }
                    }
                }
                if let Ok(s) = std::fs::read_to_string(dir.join("started.json")) {
                    if let Some(pid) = serde_json::from_str::<serde_json::Value>(&s)
                        .ok()
                        .and_then(|v| v.get("pid")?.as_i64())
                    {
                        // SAFETY: killing a container init this test started.
                        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    }
                }
                paths.push(format!(
                    "{}/{}",
                    self.parent,
                    e.file_name().to_string_lossy()
                ));
            }
        }
        paths.push(self.parent.clone());
        for p in paths {
            for _ in 0..40 {
                if cgroup::remove(&p).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = cgroup::remove("/skiff-test");
    }
}

/// The CRI records of a log file: (stream, tag, text).
fn records(path: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let mut it = l.splitn(4, ' ');
            let ts = it.next().unwrap_or_default();
            assert!(
                chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
                "timestamp of {l:?}"
            );
            (
                it.next().unwrap_or_default().to_string(),
                it.next().unwrap_or_default().to_string(),
                it.next().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn wait_for_log(path: &Path, needle: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if records(path).iter().any(|(_, _, t)| t == needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "log {} never showed {needle:?}; it has {:?}",
            path.display(),
            records(path)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_to_end(env: &Env, spec: &ContainerSpec) -> ContainerState {
    env.rt().create_and_start(spec).await.expect("starts");
    let state = tokio::time::timeout(Duration::from_secs(30), env.rt().wait(&spec.id))
        .await
        .expect("exits within 30s")
        .expect("wait");
    assert_eq!(state.status, Status::Exited);
    state
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_code_and_cri_logs() {
    let env = Env::new("exit");
    let spec = env.spec("exit", "echo hi; echo err >&2; printf tail; exit 3");
    let state = run_to_end(&env, &spec).await;
    let exit = state.exit.expect("exit recorded");
    assert_eq!(exit.exit_code, 3);
    assert_eq!(exit.signal, None);
    assert!(!exit.oom_killed);
    assert!(chrono::DateTime::parse_from_rfc3339(&exit.finished_at).is_ok());
    let recs = records(&spec.log_path);
    assert!(
        recs.contains(&("stdout".into(), "F".into(), "hi".into())),
        "{recs:?}"
    );
    assert!(
        recs.contains(&("stderr".into(), "F".into(), "err".into())),
        "{recs:?}"
    );
    // Output without a final newline is still logged, as the last full record.
    assert!(
        recs.contains(&("stdout".into(), "F".into(), "tail".into())),
        "{recs:?}"
    );

    // exit.json outlives the shim's answers: status after exit says the same.
    let again = env.rt().status("exit").await.expect("status");
    assert_eq!(again.exit.map(|e| e.exit_code), Some(3));
    // A stopped container cannot be signalled.
    let err = env
        .rt()
        .kill("exit", libc::SIGTERM)
        .await
        .expect_err("not running");
    assert!(err.to_string().contains("not running"), "{err}");
    env.rt().delete("exit").await.expect("delete");
}

#[tokio::test(flavor = "multi_thread")]
async fn env_workdir_user_and_hostname() {
    let env = Env::new("env");
    let mut spec = env.spec(
        "env",
        "echo \"foo=$FOO\"; pwd; id -u; id -g; id -G; hostname",
    );
    spec.env = vec![("FOO".into(), "bar baz".into())];
    spec.cwd = Some("/work".into());
    spec.uid = 1234;
    spec.gid = 2345;
    spec.supplementary_groups = vec![3456];
    spec.hostname = Some("box-1".into());
    let state = run_to_end(&env, &spec).await;
    assert_eq!(state.exit.map(|e| e.exit_code), Some(0));
    let out: Vec<String> = records(&spec.log_path)
        .into_iter()
        .filter(|(s, _, _)| s == "stdout")
        .map(|(_, _, t)| t)
        .collect();
    assert_eq!(
        out,
        ["foo=bar baz", "/work", "1234", "2345", "2345 3456", "box-1"]
    );
    env.rt().delete("env").await.expect("delete");
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_hog_is_oom_killed() {
    let env = Env::new("oom");
    // awk doubles a string until the 16 MiB limit stops it.
    let mut spec = env.spec(
        "oom",
        "echo start; exec awk 'BEGIN { s = \"x\"; while (1) s = s s }'",
    );
    spec.resources = Resources {
        memory_limit: Some(16 << 20),
        ..Resources::default()
    };
    let cg = cgroup::hierarchy_dirs(Path::new(cgroup::CGROUP_ROOT), &spec.cgroups_path());
    let state = run_to_end(&env, &spec).await;
    let exit = state.exit.expect("exit recorded");
    assert!(exit.oom_killed, "{exit:?}");
    assert_eq!(exit.exit_code, 137);
    assert_eq!(exit.signal, Some(libc::SIGKILL));
    assert!(!cg.is_empty());
    env.rt().delete("oom").await.expect("delete");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_container_has_cpu_and_memory_usage_in_its_cgroup() {
    let env = Env::new("usage");
    // An 8 MiB string, then a spin held to 200m by the CFS quota.
    let mut spec = env.spec(
        "usage",
        "exec awk 'BEGIN { s = \"x\"; for (i = 0; i < 23; i++) s = s s; while (1) n++ }'",
    );
    spec.resources = Resources {
        cpu_quota: Some(20_000),
        cpu_period: Some(100_000),
        memory_limit: Some(64 << 20),
        ..Resources::default()
    };
    env.rt().create_and_start(&spec).await.expect("starts");
    let hierarchies = cgroup::Hierarchies::read().expect("mount table");
    let path = spec.cgroups_path();
    let first = hierarchies
        .usage(&path)
        .expect("usage of a running container");
    let started = Instant::now();
    let mut last = first;
    while started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = hierarchies
            .usage(&path)
            .expect("usage of a running container");
        if last.working_set_bytes >= 8 << 20 && last.cpu_ns > first.cpu_ns + 100_000_000 {
            break;
        }
    }
    assert!(
        last.working_set_bytes >= 8 << 20 && last.working_set_bytes < 64 << 20,
        "the 8 MiB string is in the working set: {last:?}"
    );
    let cpu_seconds = (last.cpu_ns - first.cpu_ns) as f64 / 1e9;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        cpu_seconds > 0.1 && cpu_seconds <= elapsed * 0.2 + 0.1,
        "{cpu_seconds:.3} s of CPU in {elapsed:.3} s at a 200m quota"
    );
    env.rt().delete("usage").await.expect("delete");
    assert_eq!(hierarchies.usage(&path), None, "the cgroup is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_and_cpu_limits_reach_the_cgroup() {
    let env = Env::new("limits");
    let mut spec = env.spec("limits", "sleep 30");
    spec.resources = Resources {
        cpu_shares: Some(256),
        cpu_quota: Some(20_000),
        cpu_period: Some(100_000),
        memory_limit: Some(32 << 20),
    };
    env.rt().create_and_start(&spec).await.expect("starts");
    let path = spec.cgroups_path();
    let rel = path.trim_start_matches('/');
    let read = |f: &str| {
        std::fs::read_to_string(Path::new(cgroup::CGROUP_ROOT).join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .trim()
            .to_string()
    };
    if Path::new("/sys/fs/cgroup/memory").is_dir() {
        assert_eq!(
            read(&format!("memory/{rel}/memory.limit_in_bytes")),
            "33554432"
        );
        assert_eq!(read(&format!("cpu/{rel}/cpu.shares")), "256");
        assert_eq!(read(&format!("cpu/{rel}/cpu.cfs_quota_us")), "20000");
    } else {
        assert_eq!(read(&format!("{rel}/memory.max")), "33554432");
        assert_eq!(read(&format!("{rel}/cpu.max")), "20000 100000");
    }
    env.rt().delete("limits").await.expect("delete");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_is_trapped_then_sigkill_ends_it() {
    let env = Env::new("term");
    let spec = env.spec(
        "term",
        "trap 'echo got-term' TERM; echo ready; while true; do sleep 0.1; done",
    );
    let c = env.rt().create_and_start(&spec).await.expect("starts");
    assert!(alive(c.pid));
    wait_for_log(&spec.log_path, "ready", 10).await;
    env.rt().kill("term", libc::SIGTERM).await.expect("SIGTERM");
    wait_for_log(&spec.log_path, "got-term", 10).await;
    // The trap only logs: the container still runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = env.rt().status("term").await.expect("status");
    assert_eq!(s.status, Status::Running);
    assert_eq!(s.pid, c.pid);

    env.rt().kill("term", libc::SIGKILL).await.expect("SIGKILL");
    let s = tokio::time::timeout(Duration::from_secs(10), env.rt().wait("term"))
        .await
        .expect("dies")
        .expect("wait");
    let exit = s.exit.expect("exit");
    assert_eq!((exit.exit_code, exit.signal), (137, Some(libc::SIGKILL)));
    assert!(!exit.oom_killed);
    env.rt().delete("term").await.expect("delete");
}

#[tokio::test(flavor = "multi_thread")]
async fn shim_outlives_its_runtime_and_is_found_again() {
    let mut env = Env::new("survive");
    let spec = env.spec("survive", "echo up; while true; do sleep 1; done");
    let c = env.rt().create_and_start(&spec).await.expect("starts");
    // The shim is detached: not our child, a session of its own.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", c.shim_pid)).expect("shim stat");
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, r)| r.split(' ').collect())
        .unwrap_or_default();
    let ppid: u32 = fields[1].parse().expect("ppid");
    let sid: i32 = fields[3].parse().expect("sid");
    assert_ne!(ppid, std::process::id());
    assert_eq!(sid, c.shim_pid);
    // It runs from the sealed copy, not from the file on disk.
    let exe = std::fs::read_link(format!("/proc/{}/exe", c.shim_pid)).expect("shim exe");
    assert!(
        exe.to_string_lossy().contains("memfd:skiff-shim"),
        "{exe:?}"
    );

    drop(env.runtime.take());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(alive(c.shim_pid), "shim survives the runtime");
    assert!(alive(c.pid), "container survives the runtime");

    let again = Runtime::new(config(env.run.path())).expect("new runtime");
    env.runtime = Some(again);
    let list = env.rt().list().await.expect("list");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].id, "survive");
    assert_eq!(list[0].status, Status::Running);
    assert_eq!(list[0].pid, c.pid);
    assert_eq!(list[0].shim_pid, c.shim_pid);
    wait_for_log(&spec.log_path, "up", 10).await;
    env.rt().delete("survive").await.expect("delete");
    assert!(env.rt().list().await.expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_leaves_nothing_behind() {
    let env = Env::new("gone");
    let spec = env.spec("gone", "sleep 60");
    let c = env.rt().create_and_start(&spec).await.expect("starts");
    let cgroups = cgroup::existing_dirs(&spec.cgroups_path());
    assert!(
        cgroups
            .iter()
            .any(|d| d.starts_with("/sys/fs/cgroup/memory") || d.join("cgroup.procs").exists()),
        "the container has a cgroup: {cgroups:?}"
    );
    // Deleting a running container kills it first.
    env.rt().delete("gone").await.expect("delete");
    let deadline = Instant::now() + Duration::from_secs(5);
    while (alive(c.shim_pid) || alive(c.pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive(c.pid), "container init is gone");
    assert!(!alive(c.shim_pid), "shim is gone");
    assert_eq!(
        cgroup::existing_dirs(&spec.cgroups_path()),
        Vec::<PathBuf>::new()
    );
    assert!(!env.run.path().join("containers/gone").exists());
    assert!(!env.run.path().join("oci/gone").exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let run = env.run.path().to_string_lossy().into_owned();
    let root = env.rootfs.path().to_string_lossy().into_owned();
    assert!(
        !mounts
            .lines()
            .any(|l| l.contains(&run) || l.contains(&root)),
        "no mount of the container remains on the host"
    );
    assert!(matches!(
        env.rt().status("gone").await,
        Err(RuntimeError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn start_failures_are_reported_and_cleaned_up() {
    let env = Env::new("fail");
    let mut spec = env.spec("fail", "true");
    spec.args = vec!["/no/such/binary".into()];
    let err = env
        .rt()
        .create_and_start(&spec)
        .await
        .expect_err("cannot start");
    assert!(matches!(err, RuntimeError::Start { .. }), "{err}");
    assert!(!env.run.path().join("containers/fail").exists());
    assert!(!env.run.path().join("oci/fail").exists());
    assert_eq!(
        cgroup::existing_dirs(&spec.cgroups_path()),
        Vec::<PathBuf>::new()
    );

    let ok = env.spec("dup", "sleep 30");
    env.rt().create_and_start(&ok).await.expect("starts");
    assert!(matches!(
        env.rt().create_and_start(&ok).await,
        Err(RuntimeError::AlreadyExists { .. })
    ));
    env.rt().delete("dup").await.expect("delete");
}

#[tokio::test(flavor = "multi_thread")]
async fn tty_output_is_logged() {
    let env = Env::new("tty");
    let mut spec = env.spec("tty", "test -t 1 && echo is-a-tty; echo \"term=$TERM\"");
    spec.tty = true;
    let state = run_to_end(&env, &spec).await;
    assert_eq!(state.exit.map(|e| e.exit_code), Some(0));
    let recs = records(&spec.log_path);
    assert!(
        recs.contains(&("stdout".into(), "F".into(), "is-a-tty".into())),
        "{recs:?}"
    );
    assert!(
        recs.contains(&("stdout".into(), "F".into(), "term=xterm".into())),
        "{recs:?}"
    );
    env.rt().delete("tty").await.expect("delete");
}

/// The filesystem type of the file system holding `path` (statfs `f_type`).
fn fs_type(path: &Path) -> i64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid C string and a zeroed statfs buffer statfs fills.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut st) }, 0, "statfs");
    st.f_type as i64
}

/// Unmounts `dir` when dropped, also when the test fails.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let c = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid C string.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn run_dir_in_memory_unless_it_holds_state() {
    require_root();
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let dir = tempfile::tempdir().expect("temp dir");
    let fresh = dir.path().join("fresh");
    let _unmount = Unmount(fresh.clone());
    let mut c = config(&fresh);
    c.in_memory = true;
    Runtime::new(c.clone()).expect("runtime");
    assert_eq!(fs_type(&fresh), TMPFS_MAGIC, "a fresh run dir is a tmpfs");
    assert!(fresh.join("containers").is_dir() && fresh.join("oci").is_dir());
    // Again (a restarted agent): the same tmpfs, nothing mounted over it.
    std::fs::write(fresh.join("containers/marker"), "x").expect("marker");
    Runtime::new(c).expect("runtime again");
    assert!(fresh.join("containers/marker").exists());

    // A run dir on disk that holds containers of an earlier skiff stays where it is.
    let old = dir.path().join("old");
    std::fs::create_dir_all(old.join("containers/abc")).expect("old state");
    let _unmount_old = Unmount(old.clone());
    let mut c = config(&old);
    c.in_memory = true;
    Runtime::new(c).expect("runtime on the old dir");
    assert_ne!(fs_type(&old), TMPFS_MAGIC);
    assert!(old.join("containers/abc").is_dir());
}
