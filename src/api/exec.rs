//! `pods/exec` (`kubectl exec`, `kubectl cp`): the API server checks the request against
//! the pod with kube-apiserver's messages, upgrades the connection to a WebSocket
//! (`v5.channel.k8s.io`, or `v4.channel.k8s.io`) and relays it to the command the pod's
//! node runs through a [`PodExec`] provider (in `skiff server`, the local agent).
//!
//! The channel protocol (kubectl-contract.md §5): every binary message starts with a
//! channel byte, 0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize (`{"Width":…,"Height":…}`),
//! and in v5 255 closes a stream (`[255, 0]`: the client has no more stdin). When the
//! command has exited and its output is drained, the status channel carries a metav1
//! Status (`Success`, or `NonZeroExitCode` with the code as cause) and the socket closes.
//!
//! `pods/attach` (`kubectl attach`, `kubectl run -it`) is the same relay joined to the
//! container's own stdio instead of a new command: output from the moment of attaching,
//! stdin when the container has `stdin: true`; it ends with `Success` when the
//! container exits, and a client that leaves only detaches.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{SinkExt as _, StreamExt as _};
use http::{Request, Response};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::body::Body;
use super::podlogs::pick_container;
use super::request::{Query, ResourcePath};
use super::status::{ApiError, ApiResult};
use super::upgrade::{self, WebSocket};
use super::ApiServer;

/// The stream protocols skiff speaks for exec, best first.
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// How long output may still come after the command exited (from processes it left
/// holding its stdout) before the session ends without it.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// One exec or attach request, checked against the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub node: String,
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub container: String,
    /// The command to run; empty for attach.
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A command running for an exec request.
pub struct ExecSession {
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    pub stdout: Option<Pin<Box<dyn AsyncRead + Send>>>,
    pub stderr: Option<Pin<Box<dyn AsyncRead + Send>>>,
    /// Set the terminal size (TTY sessions).
    pub resize: Option<Box<dyn Fn(u16, u16) + Send + Sync>>,
    /// The command's exit code (attach: 0 once the container has exited and its output
    /// is through). Dropping it before then detaches an attach session.
    pub exit: BoxFuture<'static, Result<i32, String>>,
}

/// Where commands run: the agent of the pod's node.
pub trait PodExec: Send + Sync {
    fn exec(&self, req: ExecRequest) -> BoxFuture<'static, Result<ExecSession, String>>;
    /// Join the running container's own stdio.
    fn attach(&self, req: ExecRequest) -> BoxFuture<'static, Result<ExecSession, String>>;
}

fn flag(q: &Query, name: &str) -> bool {
    q.raw
        .iter()
        .any(|(k, v)| k == name && matches!(v.as_str(), "true" | "1"))
}

impl ApiServer {
    /// Use `provider` for `pods/exec` (the server's local agent).
    pub fn set_pod_exec(&self, provider: Arc<dyn PodExec>) {
        let _ = self.pod_exec.set(provider);
    }

    /// `GET|POST …/pods/{name}/exec` and `…/attach`.
    pub(crate) async fn pod_exec<B>(
        &self,
        p: &ResourcePath,
        q: &Query,
        attach: bool,
        mut req: Request<B>,
    ) -> ApiResult<Response<Body>> {
        let (namespace, name, pod) = self.read_pod(p).await?;
        let container_param = q
            .raw
            .iter()
            .find(|(k, _)| k == "container")
            .map(|(_, v)| v.as_str());
        let container = pick_container(&pod, &name, container_param)?;
        let command: Vec<String> = q
            .raw
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect();
        let (stdin, stdout, stderr, tty) = (
            flag(q, "stdin"),
            flag(q, "stdout"),
            flag(q, "stderr"),
            flag(q, "tty"),
        );
        if !stdin && !stdout && !stderr {
            return Err(ApiError::BadRequest(
                "you must specify at least 1 of stdin, stdout, stderr".into(),
            ));
        }
        if tty && stderr {
            return Err(ApiError::BadRequest(
                "stderr must not be set when tty is set (the terminal carries both)".into(),
            ));
        }
        if !attach && command.is_empty() {
            return Err(ApiError::BadRequest(
                "you must specify at least one command for the container".into(),
            ));
        }
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        if node.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "pod {name} does not have a host assigned"
            )));
        }
        let provider = self.pod_exec.get().cloned().ok_or_else(|| {
            ApiError::BadRequest(format!(
                "no agent serves exec for node {node:?} (skiff serves exec on its own node only)"
            ))
        })?;
        let offered = upgrade::websocket_protocols(req.headers()).ok_or_else(|| {
            ApiError::BadRequest(
                "skiff serves exec over WebSocket (v5.channel.k8s.io) only; SPDY is not supported"
                    .into(),
            )
        })?;
        let protocol = PROTOCOLS
            .into_iter()
            .find(|p| offered.iter().any(|o| o == p))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "none of the offered subprotocols {offered:?} is supported (supported: {PROTOCOLS:?})"
                ))
            })?;
        let request = ExecRequest {
            node: node.to_string(),
            namespace,
            pod: name,
            uid: pod["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            container,
            command,
            stdin,
            stdout,
            stderr,
            tty,
        };
        upgrade::accept_websocket(&mut req, protocol, move |ws| async move {
            serve(ws, provider, request, attach).await;
        })
    }
}

/// Start the command on the node (or attach to the container) and relay it over `ws`.
async fn serve(ws: WebSocket, provider: Arc<dyn PodExec>, req: ExecRequest, attach: bool) {
    let (mut sink, mut incoming) = ws.split();
    let command = req.command.clone();
    let (want_out, want_err) = (req.stdout, req.stderr);
    let session = if attach {
        provider.attach(req).await
    } else {
        provider.exec(req).await
    };
    let mut session = match session {
        Ok(s) => s,
        Err(message) => {
            let status = json!({
                "metadata": {}, "status": "Failure", "message": message,
                "reason": "InternalError", "code": 500,
            });
            let _ = sink
                .send(frame(STATUS, status.to_string().as_bytes()))
                .await;
            let _ = sink.send(close()).await;
            return;
        }
    };

    // Output: one pump per stream into one writer.
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.send(msg).await.is_err() {
                return None;
            }
        }
        Some(sink)
    });
    let mut pumps = Vec::new();
    for (reader, channel, wanted) in [
        (session.stdout.take(), STDOUT, want_out),
        (session.stderr.take(), STDERR, want_err),
    ] {
        if let Some(reader) = reader {
            pumps.push(tokio::spawn(pump(reader, channel, wanted, tx.clone())));
        }
    }

    // Input: stdin, resizes and the client's close, until the client goes away.
    let mut stdin = session.stdin.take();
    let resize = session.resize.take();
    let mut input = tokio::spawn(async move {
        while let Some(msg) = incoming.next().await {
            let data = match msg {
                Ok(Message::Binary(d)) => d,
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => continue,
            };
            let Some((&channel, rest)) = data.split_first() else {
                continue;
            };
            match channel {
                STDIN => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(rest).await.is_err() || w.flush().await.is_err() {
                            stdin = None;
                        }
                    }
                }
                RESIZE => {
                    if let (Some(resize), Ok(size)) =
                        (resize.as_ref(), serde_json::from_slice::<Value>(rest))
                    {
                        let dim = |k: &str| size[k].as_u64().unwrap_or(0).min(u16::MAX as u64);
                        resize(dim("Width") as u16, dim("Height") as u16);
                    }
                }
                CLOSE if rest.first() == Some(&STDIN) => {
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                }
                _ => {}
            }
        }
    });

    // The client may leave first: then its output pumps stop too (for a TTY that closes
    // the pty, so the shell gets SIGHUP, as when a terminal goes away) and the command
    // is only waited for; an attached client just detaches.
    let mut exit_future = session.exit;
    let exit = tokio::select! {
        exit = &mut exit_future => exit,
        _ = &mut input => {
            for p in &pumps {
                p.abort();
            }
            drop(tx);
            if !attach {
                let _ = exit_future.await;
            }
            return;
        }
    };
    let drain = async {
        for p in pumps {
            let _ = p.await;
        }
    };
    let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, drain).await;
    input.abort();
    let status = match exit {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(message) => json!({
            "metadata": {}, "status": "Failure", "message": message,
            "reason": "InternalError", "code": 500,
        }),
    };
    let _ = tx.send(frame(STATUS, status.to_string().as_bytes())).await;
    drop(tx);
    if let Ok(Some(mut sink)) = writer.await {
        let _ = sink.send(close()).await;
    }
}

/// Copy `reader` to the client on `channel` (or discard it when the client did not ask
/// for that stream).
async fn pump(
    mut reader: Pin<Box<dyn AsyncRead + Send>>,
    channel: u8,
    wanted: bool,
    tx: mpsc::Sender<Message>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if wanted && tx.send(frame(channel, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

fn close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_their_channel_first() {
        match frame(STDOUT, b"hi") {
            Message::Binary(b) => assert_eq!(&b[..], b"\x01hi"),
            other => panic!("not binary: {other:?}"),
        }
    }
}
