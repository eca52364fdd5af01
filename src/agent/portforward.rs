//! The node's side of `kubectl port-forward`: connections to a pod's ports made the way
//! the kubelet makes them, to `localhost:<port>` inside the pod's network namespace (so
//! servers bound to 127.0.0.1 in the pod are reachable too). The API server holds this as
//! its [`crate::api::portforward::PortForwarder`].
//!
//! A socket belongs to the namespace of the thread that created it, so each connection is
//! made by a short-lived dedicated OS thread that `setns`es into the pod's namespace,
//! connects and hands the socket back; no thread of the async runtime changes namespace.

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream as StdTcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use nix::sched::{setns, CloneFlags};
use tokio::net::TcpStream;

use crate::agent::pods::worker::NodeContext;
use crate::api::portforward::{ForwardTarget, PortForwarder};

/// How long a connection to the pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Port-forward to the pods of this server's own agent.
pub struct LocalPortForward(pub Arc<NodeContext>);

impl LocalPortForward {
    fn netns(&self, target: &ForwardTarget) -> Result<PathBuf, String> {
        if target.node != self.0.node_name {
            return Err(format!(
                "pod {}/{} runs on node {:?}; this server forwards to pods of node {:?} only",
                target.namespace, target.pod, target.node, self.0.node_name
            ));
        }
        self.0
            .network
            .sandbox(&target.uid)
            .map(|s| s.netns)
            .ok_or_else(|| format!("pod not found (\"{}_{}\")", target.pod, target.namespace))
    }
}

impl PortForwarder for LocalPortForward {
    fn check(&self, target: &ForwardTarget) -> Result<(), String> {
        self.netns(target).map(|_| ())
    }

    fn connect(
        &self,
        target: &ForwardTarget,
        port: u16,
    ) -> BoxFuture<'static, Result<TcpStream, String>> {
        let netns = self.netns(target);
        Box::pin(async move {
            let netns = netns?;
            let stream = connect_in(netns, port).await?;
            stream
                .set_nonblocking(true)
                .map_err(|e| format!("making the pod connection non-blocking: {e}"))?;
            TcpStream::from_std(stream).map_err(|e| format!("registering the pod connection: {e}"))
        })
    }
}

/// Connect to `localhost:port` (IPv4, then IPv6) inside the network namespace at `netns`.
async fn connect_in(netns: PathBuf, port: u16) -> Result<StdTcpStream, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("skiff-portfwd".into())
        .spawn(move || {
            let r = (|| {
                let file = File::open(&netns)
                    .map_err(|e| format!("opening the pod's network namespace {}: {e}", netns.display()))?;
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| {
                    format!("entering the pod's network namespace {}: {e}", netns.display())
                })?;
                let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
                StdTcpStream::connect_timeout(&v4, CONNECT_TIMEOUT).or_else(|e4| {
                    StdTcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|e6| {
                        format!(
                            "failed to connect to localhost:{port} inside the pod's network namespace, IPv4: {e4}; IPv6: {e6}"
                        )
                    })
                })
            })();
            // This thread is in the pod's namespace now; it ends here.
            let _ = tx.send(r);
        })
        .map_err(|e| format!("starting the port-forward thread: {e}"))?;
    rx.await
        .unwrap_or_else(|_| Err("the port-forward thread ended without an answer".into()))
}
