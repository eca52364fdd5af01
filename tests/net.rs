//! Integration tests of the pod network (src/net) with real interfaces, namespaces and
//! nftables rules. They need root (as CI and tests/run.sh run them), Debian's
//! `iproute2`, `nftables` and `busybox-static`, and util-linux's `nsenter`.
//!
//! The host's root network namespace is never touched. Each test (the "outer" run)
//! creates two network namespaces: a node (`…-n`) and an outside world (`…-o`) joined
//! by a veth `ext0` (node 192.168.77.1/24, outside 192.168.77.2/24), every command
//! addressed to them with `ip -n`. It then re-executes this test binary for that one
//! test with `ip netns exec <node>` (which also gives the child a private mount
//! namespace): the child (the "inner" run) refuses to go on unless it is in a namespace
//! other than its parent's, and there drives `PodNetwork` like the agent would. The
//! outer run deletes both namespaces and the state dir afterwards, also on failure;
//! the pods' namespace mounts die with the child's mount namespace.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skiff::net::{HostPort, NetConfig, PodKey, PodNetwork, PodSandboxNet, Protocol};

const INNER: &str = "SKIFF_NETTEST_INNER";
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const BUSYBOX: &str = "/bin/busybox";

/// What the inner run knows about its world.
struct World {
    state_dir: PathBuf,
    outside_ns: PathBuf,
}

fn netns_inode(path: &str) -> String {
    std::fs::read_link(path)
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `ip -n <ns> <args>`: every outer command names its namespace.
fn ip_n(ns: &str, args: &[&str]) {
    run(Command::new("ip").arg("-n").arg(ns).args(args));
}

/// Deletes the test's namespaces when dropped.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs test `name` inside a node namespace of its own (see the module docs); in the
/// inner run, calls `scenario`.
fn in_node_netns<F, Fut>(name: &str, scenario: F)
where
    F: FnOnce(World) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if std::env::var_os(INNER).is_some() {
        let parent = std::env::var("SKIFF_NETTEST_PARENT_NETNS").unwrap_or_default();
        let mine = netns_inode("/proc/self/ns/net");
        assert!(
            !parent.is_empty() && mine != parent && mine != netns_inode("/proc/1/ns/net"),
            "refusing to run: not inside the test's own network namespace ({mine})"
        );
        let world = World {
            state_dir: std::env::var_os("SKIFF_NETTEST_STATE")
                .expect("state dir")
                .into(),
            outside_ns: std::env::var_os("SKIFF_NETTEST_OUTSIDE")
                .expect("outside ns")
                .into(),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(scenario(world));
        return;
    }

    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the net tests need root");
    for tool in ["/usr/sbin/nft", BUSYBOX, "/usr/bin/nsenter"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing (tests/run.sh installs it)"
        );
    }
    // Namespace names: unique per process and test (a short hash of the test's name).
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let tag = format!("skiff-nt-{}-{:06x}", std::process::id(), hash & 0xff_ffff);
    let (node, outside) = (format!("{tag}-n"), format!("{tag}-o"));
    let _guard = Namespaces(vec![node.clone(), outside.clone()]);
    run(Command::new("ip").args(["netns", "add", &node]));
    run(Command::new("ip").args(["netns", "add", &outside]));
    ip_n(&node, &["link", "set", "lo", "up"]);
    ip_n(&outside, &["link", "set", "lo", "up"]);
    ip_n(
        &node,
        &[
            "link", "add", "ext0", "type", "veth", "peer", "name", "ext0", "netns", &outside,
        ],
    );
    ip_n(&node, &["addr", "add", "192.168.77.1/24", "dev", "ext0"]);
    ip_n(&node, &["link", "set", "ext0", "up"]);
    ip_n(&outside, &["addr", "add", "192.168.77.2/24", "dev", "ext0"]);
    ip_n(&outside, &["link", "set", "ext0", "up"]);

    let state = tempfile::Builder::new()
        .prefix("skiff-net-")
        .tempdir()
        .expect("state dir");
    let bridge_nf = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    let bridge_nf_before = std::fs::read_to_string(bridge_nf).ok();
    let exe = std::env::current_exe().expect("test binary");
    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut inner = Command::new("ip")
        .args(["netns", "exec", &node])
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .env(
            "SKIFF_NETTEST_PARENT_NETNS",
            netns_inode("/proc/self/ns/net"),
        )
        .env("SKIFF_NETTEST_STATE", state.path())
        .env("SKIFF_NETTEST_OUTSIDE", format!("/run/netns/{outside}"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.reopen().expect("log")))
        .stderr(Stdio::from(log.reopen().expect("log")))
        .spawn()
        .expect("re-running the test in the node namespace");
    let (status, _) = wait_within(&mut inner, Duration::from_secs(120));
    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
    assert!(status.success(), "inner run failed ({status}):\n{text}");
    assert_eq!(
        std::fs::read_to_string(bridge_nf).ok(),
        bridge_nf_before,
        "the host's {bridge_nf} changed"
    );
    assert!(
        text.contains("1 passed"),
        "the inner run did not run the test:\n{text}"
    );
    println!("{text}");
}

/// Waits for `child` at most `within`; kills it after that. Returns its exit status
/// and whether it had to be killed.
fn wait_within(
    child: &mut std::process::Child,
    within: Duration,
) -> (std::process::ExitStatus, bool) {
    let deadline = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (status, false),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let status = child.wait().expect("wait after kill");
                return (status, true);
            }
        }
    }
}

/// A child's stdout, once it ended (killed after `within`): a process that hangs makes
/// the test fail, not wait forever.
fn stdout_within(mut child: std::process::Child, within: Duration) -> String {
    let mut out = child.stdout.take();
    let (_, killed) = wait_within(&mut child, within);
    let mut text = String::new();
    if let Some(o) = out.as_mut() {
        let _ = o.read_to_string(&mut text);
    }
    if killed {
        text.push_str("<killed: still running>");
    }
    text
}

fn config(world: &World) -> NetConfig {
    NetConfig::new("10.42.0.0/24".parse().expect("cidr"), &world.state_dir)
}

fn key(uid: &str, name: &str) -> PodKey {
    PodKey {
        uid: uid.into(),
        namespace: "default".into(),
        name: name.into(),
    }
}

/// `busybox <args>` inside a pod's network namespace.
fn in_pod(sandbox: &PodSandboxNet, args: &[&str]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", sandbox.netns.display()))
        .arg(BUSYBOX)
        .args(args);
    c
}

fn ping_from(sandbox: &PodSandboxNet, to: Ipv4Addr) -> bool {
    in_pod(sandbox, &["ping", "-c", "1", "-W", "2", &to.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn pod_addresses(sandbox: &PodSandboxNet) -> String {
    let out = run(Command::new("nsenter")
        .arg(format!("--net={}", sandbox.netns.display()))
        .args(["ip", "-o", "-4", "addr", "show"]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pods_get_addresses_talk_and_are_torn_down() {
    in_node_netns(
        "pods_get_addresses_talk_and_are_torn_down",
        |w| async move {
            let started = Instant::now();
            let net = PodNetwork::new(config(&w)).await.expect("pod network");
            let t_new = started.elapsed();
            assert!(link_exists("skiff0"));
            assert_eq!(
                std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                    .unwrap()
                    .trim(),
                "1"
            );

            let t = Instant::now();
            let a = net.setup(&key("uid-a", "a"), &[]).await.expect("setup a");
            let t_setup = t.elapsed();
            let b = net.setup(&key("uid-b", "b"), &[]).await.expect("setup b");
            println!("measured: PodNetwork::new {t_new:?}, first pod setup {t_setup:?}");
            assert_eq!(a.ip, Ipv4Addr::new(10, 42, 0, 2));
            assert_eq!(b.ip, Ipv4Addr::new(10, 42, 0, 3));
            assert_eq!(a.gateway, Ipv4Addr::new(10, 42, 0, 1));
            assert_eq!(a.prefix_len, 24);
            assert!(a.netns.starts_with(&w.state_dir));
            let addrs = pod_addresses(&a);
            assert!(
                addrs.contains("eth0") && addrs.contains("inet 10.42.0.2/24"),
                "{addrs}"
            );
            assert!(
                addrs.contains("lo") && addrs.contains("127.0.0.1/8"),
                "{addrs}"
            );

            assert!(ping_from(&a, b.ip), "pod a cannot ping pod b");
            assert!(ping_from(&b, a.ip), "pod b cannot ping pod a");
            assert!(ping_from(&b, a.gateway), "pod b cannot ping the gateway");
            assert!(
                ping_from(&a, NODE_IP),
                "pod a cannot reach the node's address"
            );

            // Idempotent: the same sandbox again, and still one veth for the pod.
            let t = Instant::now();
            let again = net
                .setup(&key("uid-a", "a"), &[])
                .await
                .expect("setup a again");
            println!("measured: repeated setup {:?}", t.elapsed());
            assert_eq!(again, a);
            let links =
                String::from_utf8_lossy(&run(Command::new("ip").args(["-o", "link"])).stdout)
                    .into_owned();
            assert_eq!(links.matches(&a.host_veth).count(), 1, "{links}");
            assert!(ping_from(&a, b.ip));

            // Teardown removes the veth, the namespace file and the address.
            let t = Instant::now();
            net.teardown("uid-a").await.expect("teardown a");
            println!("measured: teardown {:?}", t.elapsed());
            assert!(
                !link_exists(&a.host_veth),
                "veth {} is still there",
                a.host_veth
            );
            assert!(!a.netns.exists(), "{} is still there", a.netns.display());
            assert!(net.sandbox("uid-a").is_none());
            net.teardown("uid-a").await.expect("teardown is idempotent");
            assert!(!ping_from(&b, a.ip), "the old address still answers");
            let c = net.setup(&key("uid-c", "c"), &[]).await.expect("setup c");
            assert_eq!(c.ip, a.ip, "the freed address is handed out again");
            assert!(ping_from(&c, b.ip));

            // A new PodNetwork on the same state dir (a restarted skiff) keeps the
            // allocations and the pods' connectivity.
            drop(net);
            let net = PodNetwork::new(config(&w))
                .await
                .expect("pod network after restart");
            let mut after: Vec<(String, Ipv4Addr)> =
                net.sandboxes().into_iter().map(|s| (s.uid, s.ip)).collect();
            after.sort();
            assert_eq!(
                after,
                vec![("uid-b".to_string(), b.ip), ("uid-c".to_string(), c.ip)]
            );
            assert!(
                ping_from(&b, c.ip),
                "pods lost connectivity over the restart"
            );
            let d = net.setup(&key("uid-d", "d"), &[]).await.expect("setup d");
            assert_eq!(
                d.ip,
                Ipv4Addr::new(10, 42, 0, 4),
                "allocated over a held address"
            );

            // A burst at once (setups queue, the IPAM record is written for several
            // at a time): every pod gets its own address, the pods reach each other,
            // and every allocation is on disk (a restarted skiff finds them all).
            let keys: Vec<PodKey> = (0..12)
                .map(|i| key(&format!("uid-burst-{i}"), &format!("burst-{i}")))
                .collect();
            let t = Instant::now();
            let burst: Vec<PodSandboxNet> =
                futures::future::join_all(keys.iter().map(|k| net.setup(k, &[])))
                    .await
                    .into_iter()
                    .map(|r| r.expect("setup in a burst"))
                    .collect();
            println!("measured: 12 setups at once {:?}", t.elapsed());
            let ips: std::collections::BTreeSet<Ipv4Addr> = burst.iter().map(|s| s.ip).collect();
            assert_eq!(ips.len(), 12, "addresses handed out twice: {burst:?}");
            assert!(!ips.contains(&b.ip) && !ips.contains(&c.ip) && !ips.contains(&d.ip));
            assert!(ping_from(&burst[11], burst[0].ip), "burst pods cannot talk");
            drop(net);
            let net = PodNetwork::new(config(&w))
                .await
                .expect("pod network after the burst");
            let recorded: std::collections::BTreeSet<Ipv4Addr> =
                net.sandboxes().into_iter().map(|s| s.ip).collect();
            assert_eq!(recorded.len(), 15, "{recorded:?}");
            assert!(ips.is_subset(&recorded), "{recorded:?}");
            for k in &keys {
                net.teardown(&k.uid).await.expect("teardown of a burst pod");
            }

            for uid in ["uid-b", "uid-c", "uid-d"] {
                net.teardown(uid).await.expect("teardown");
            }
            assert!(net.sandboxes().is_empty());
            let left: Vec<_> = std::fs::read_dir(w.state_dir.join("netns"))
                .expect("netns dir")
                .collect();
            assert!(left.is_empty(), "namespace files left: {left:?}");
            let links =
                String::from_utf8_lossy(&run(Command::new("ip").args(["-o", "link"])).stdout)
                    .into_owned();
            assert!(!links.contains("veth"), "veths left: {links}");
        },
    );
}

/// Connects to `addr` until it answers (the listener may still be starting), sends
/// `msg` and returns everything read back.
fn exchange(addr: SocketAddr, msg: &str, within: Duration) -> Result<String, String> {
    let deadline = Instant::now() + within;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(3)))
                    .map_err(|e| e.to_string())?;
                s.write_all(msg.as_bytes()).map_err(|e| e.to_string())?;
                let _ = s.shutdown(std::net::Shutdown::Write);
                let mut got = String::new();
                s.read_to_string(&mut got).map_err(|e| e.to_string())?;
                return Ok(got);
            }
            Err(e) if Instant::now() > deadline => return Err(format!("{addr}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
fn host_port_reaches_the_pod_through_the_node_address() {
    in_node_netns(
        "host_port_reaches_the_pod_through_the_node_address",
        |w| async move {
            let net = PodNetwork::new(config(&w)).await.expect("pod network");
            let web = HostPort {
                protocol: Protocol::Tcp,
                host_ip: None,
                host_port: 30080,
                container_port: 8080,
            };
            let pod = net
                .setup(&key("uid-web", "web"), &[web])
                .await
                .expect("setup");
            assert_eq!(pod.host_ports, vec![web]);
            let rules = String::from_utf8_lossy(
                &run(Command::new("nft").args(["list", "table", "ip", "skiff"])).stdout,
            )
            .into_owned();
            assert!(rules.contains("dnat to 10.42.0.2:8080"), "{rules}");

            // Another pod cannot take the same hostPort.
            let err = net
                .setup(&key("uid-other", "other"), &[web])
                .await
                .expect_err("a second pod on hostPort 30080");
            assert_eq!(
                err.to_string(),
                "hostPort 30080/TCP is already used by pod default/web"
            );
            assert!(
                net.sandbox("uid-other").is_none(),
                "the failed setup left a record"
            );

            let mut listener = in_pod(&pod, &["nc", "-l", "-p", "8080"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("nc -l in the pod");
            listener
                .stdin
                .take()
                .expect("stdin")
                .write_all(b"hello-from-pod\n")
                .expect("listener input");
            let reply = tokio::task::spawn_blocking(|| {
                exchange(
                    SocketAddr::from((NODE_IP, 30080)),
                    "hello-from-node\n",
                    Duration::from_secs(5),
                )
            })
            .await
            .expect("client");
            let heard = stdout_within(listener, Duration::from_secs(5));
            assert_eq!(reply.as_deref(), Ok("hello-from-pod\n"));
            assert_eq!(heard, "hello-from-node\n");

            // Hairpin: another pod on the same bridge reaches the hostPort through the
            // node's address too (its replies must come back through the node).
            // br_netfilter (built in here) would let the bridge's conntrack un-NAT the
            // replies by itself; switched off in this namespace (the setting is per
            // network namespace), only the hairpin masquerade rule can make this work.
            std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "0")
                .expect("bridge-nf-call-iptables in the test namespace");
            let peer = net
                .setup(&key("uid-peer", "peer"), &[])
                .await
                .expect("setup peer");
            let mut listener = in_pod(&pod, &["nc", "-l", "-p", "8080"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("nc -l in the pod");
            listener
                .stdin
                .take()
                .expect("stdin")
                .write_all(b"hello-again\n")
                .expect("listener input");
            std::thread::sleep(Duration::from_millis(300));
            let mut client = in_pod(&peer, &["nc", "-w", "3", "192.168.77.1", "30080"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("nc in the peer pod");
            client
                .stdin
                .take()
                .expect("stdin")
                .write_all(b"hello-from-peer\n")
                .expect("client input");
            let answer = stdout_within(client, Duration::from_secs(5));
            let heard = stdout_within(listener, Duration::from_secs(5));
            assert_eq!(heard, "hello-from-peer\n");
            assert_eq!(answer, "hello-again\n");
            net.teardown("uid-peer").await.expect("teardown peer");

            // After teardown the port is closed again and its rule is gone.
            net.teardown("uid-web").await.expect("teardown");
            let rules = String::from_utf8_lossy(
                &run(Command::new("nft").args(["list", "table", "ip", "skiff"])).stdout,
            )
            .into_owned();
            assert!(!rules.contains("30080"), "{rules}");
            let closed = TcpStream::connect_timeout(
                &SocketAddr::from((NODE_IP, 30080)),
                Duration::from_secs(2),
            );
            assert!(
                closed.is_err(),
                "hostPort 30080 still answers after teardown"
            );
        },
    );
}

#[test]
fn traffic_leaving_the_cluster_is_masqueraded() {
    in_node_netns(
        "traffic_leaving_the_cluster_is_masqueraded",
        |w| async move {
            let net = PodNetwork::new(config(&w)).await.expect("pod network");
            let pod = net
                .setup(&key("uid-client", "client"), &[])
                .await
                .expect("setup");

            // A listener in the outside namespace, which has no route to the pod CIDR: only
            // a masqueraded connection can be answered, and it must come from the node.
            let outside = w.outside_ns.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            let server = std::thread::spawn(move || {
                let f = std::fs::File::open(&outside).expect("outside ns");
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                let l = TcpListener::bind((OUTSIDE_IP, 9000)).expect("bind outside");
                tx.send(()).expect("ready");
                l.set_nonblocking(true).expect("nonblocking");
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    match l.accept() {
                        Ok((mut s, peer)) => {
                            s.set_nonblocking(false).expect("blocking");
                            s.set_read_timeout(Some(Duration::from_secs(5)))
                                .expect("timeout");
                            let mut got = String::new();
                            let _ = s.read_to_string(&mut got);
                            return Some((peer, got));
                        }
                        Err(_) if Instant::now() > deadline => return None,
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            });
            rx.recv_timeout(Duration::from_secs(5))
                .expect("listener ready");
            let mut client = in_pod(&pod, &["nc", "-w", "3", "192.168.77.2", "9000"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("nc in the pod");
            client
                .stdin
                .take()
                .expect("stdin")
                .write_all(b"from-pod\n")
                .expect("client input");
            let (status, killed) = wait_within(&mut client, Duration::from_secs(8));
            assert!(
                status.success() && !killed,
                "nc from the pod failed: {status}"
            );
            let (peer, got) = server
                .join()
                .expect("listener thread")
                .expect("no connection reached the outside listener");
            assert_eq!(got, "from-pod\n");
            assert_eq!(
                peer.ip(),
                std::net::IpAddr::V4(NODE_IP),
                "the outside saw the pod's own address"
            );
            net.teardown("uid-client").await.expect("teardown");
        },
    );
}
