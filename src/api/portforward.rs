//! `pods/portforward`: what `kubectl port-forward` talks to. The API server checks the
//! pod (it exists, has a node, is Running, the node's agent can reach it), upgrades the
//! connection and serves SPDY/3.1 port-forward sessions on it, as the kubelet does:
//! either tunnelled in a WebSocket (subprotocol `SPDY/3.1+portforward.k8s.io`, the
//! binary messages being chunks of the SPDY byte stream; kubectl 1.32 tries this
//! first) or on a direct `Upgrade: SPDY/3.1` (its fallback).
//!
//! In a session every forwarded connection is a pair of client-opened streams with the
//! same `requestID`: an `error` stream and a `data` stream naming the `port`. Once both
//! are there the pod's port is dialled through a [`PortForwarder`] (the local agent dials
//! `localhost:<port>` inside the pod's network namespace) and bytes are copied both ways;
//! a client FIN half-closes the pod connection, the pod's EOF ends the data stream with
//! FIN, then the error stream is closed. A failure to connect is written to the error
//! stream with the kubelet's message, which makes kubectl give up the session.
//!
//! There is no flow control (spdystream neither sends nor heeds WINDOW_UPDATE): the
//! session writes what the pods send as fast as the connection takes it, as the kubelet
//! does. On kubectl's side one goroutine reads every frame and hands each stream's data
//! over unbuffered (behind a queue of 50 frames per worker), so a local connection whose
//! reader stops (say a client blocked on its own full stdout) stalls every other stream
//! of the session once the kernel's buffers toward it are full. Nothing here can prevent
//! that without the client's window updates; it is the client's to avoid.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{SinkExt as _, StreamExt as _};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::body::Body;
use super::request::{Query, ResourcePath};
use super::spdy::{self, Frame};
use super::status::{ApiError, ApiResult};
use super::upgrade::{self, WebSocket};
use super::ApiServer;

/// The port-forward protocol kubectl negotiates (`X-Stream-Protocol-Version`).
pub const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol of SPDY tunnelled in a WebSocket.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";
/// How long the second stream of a pair may take to arrive (the kubelet's default).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest DATA frame sent.
const CHUNK: usize = 32 * 1024;

/// The pod a session forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardTarget {
    pub node: String,
    pub namespace: String,
    pub pod: String,
    pub uid: String,
}

/// Reaches pods' ports: the agent of the pod's node.
pub trait PortForwarder: Send + Sync {
    /// Whether this forwarder can reach the pod now (it runs on its node and its network
    /// sandbox exists); the error is the message the client sees. Called before the
    /// connection is upgraded.
    fn check(&self, target: &ForwardTarget) -> Result<(), String>;

    /// A TCP connection to `port` on the pod's own localhost.
    fn connect(
        &self,
        target: &ForwardTarget,
        port: u16,
    ) -> BoxFuture<'static, Result<TcpStream, String>>;
}

fn bad(msg: String) -> ApiError {
    ApiError::BadRequest(msg)
}

/// The ports of a `ports` query parameter (optional for SPDY clients), checked as the
/// kubelet checks them.
fn query_ports(q: &Query) -> ApiResult<Vec<u16>> {
    let mut ports = Vec::new();
    for (k, v) in &q.raw {
        if k != "ports" {
            continue;
        }
        if v.is_empty() {
            return Err(bad("query parameter \"port\" cannot be empty".into()));
        }
        for p in v.split(',') {
            let port = p
                .parse::<u16>()
                .map_err(|e| bad(format!("unable to parse {v:?} as a port: {e}")))?;
            if port < 1 {
                return Err(bad(format!("port {v:?} must be > 0")));
            }
            ports.push(port);
        }
    }
    Ok(ports)
}

/// The port of a stream's `port` header, with the kubelet's messages.
fn stream_port(value: Option<&str>) -> Result<u16, String> {
    let v = value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| "\"port\" header is required".to_string())?;
    let port = v
        .parse::<u16>()
        .map_err(|e| format!("unable to parse {v:?} as a port: {e}"))?;
    if port < 1 {
        return Err(format!("port {v:?} must be > 0"));
    }
    Ok(port)
}

/// Whether a request asks for a direct SPDY/3.1 upgrade.
fn is_spdy_upgrade(headers: &http::HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "spdy/3.1")
}

impl ApiServer {
    /// Serve `kubectl port-forward` with `provider` (the server's local agent).
    pub fn set_port_forward(&self, provider: Arc<dyn PortForwarder>) {
        let _ = self.port_forward.set(provider);
    }

    /// `GET` (WebSocket) or `POST` (SPDY) `…/pods/{name}/portforward`.
    pub(crate) async fn pod_port_forward<B>(
        &self,
        p: &ResourcePath,
        q: &Query,
        req: &mut Request<B>,
    ) -> ApiResult<Response<Body>> {
        query_ports(q)?;
        let (namespace, name, pod) = self.read_pod(p).await?;
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        if node.is_empty() {
            return Err(bad(format!("pod {name} does not have a host assigned")));
        }
        let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
        if phase != "Running" {
            return Err(bad(format!(
                "unable to forward port because pod is not running. Current status={phase}"
            )));
        }
        let target = ForwardTarget {
            node: node.to_string(),
            namespace,
            pod: name,
            uid: pod["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        };
        let provider = self.port_forward.get().cloned().ok_or_else(|| {
            bad(format!(
                "no agent serves port-forward for node {:?} (skiff forwards to pods of its own node only)",
                target.node
            ))
        })?;
        provider.check(&target).map_err(bad)?;

        if let Some(offered) = upgrade::websocket_protocols(req.headers()) {
            if !offered.iter().any(|o| o == TUNNEL_PROTOCOL) {
                // kubectl falls back to SPDY on any answer but 101.
                return Err(bad(format!(
                    "unable to upgrade: none of the offered WebSocket subprotocols {offered:?} is supported; skiff serves port-forward as {TUNNEL_PROTOCOL:?} or over SPDY/3.1"
                )));
            }
            return upgrade::accept_websocket(req, TUNNEL_PROTOCOL, move |ws| async move {
                serve_websocket(ws, target, provider).await;
            });
        }
        if !is_spdy_upgrade(req.headers()) {
            return Err(bad(format!(
                "unable to upgrade: missing upgrade headers in request (Connection: Upgrade with Upgrade: SPDY/3.1, or a WebSocket with subprotocol {TUNNEL_PROTOCOL})"
            )));
        }
        let offered: Vec<String> = req
            .headers()
            .get_all(STREAM_PROTOCOL_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if !offered.is_empty() && !offered.iter().any(|o| o == PROTOCOL) {
            return Err(ApiError::Forbidden(format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [\"{PROTOCOL}\"]"
            )));
        }
        let on_upgrade = req
            .extensions_mut()
            .remove::<hyper::upgrade::OnUpgrade>()
            .ok_or_else(|| {
                bad("this connection cannot be upgraded to SPDY/3.1 (HTTP/1.1 is required)".into())
            })?;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let (rd, wr) = tokio::io::split(TokioIo::new(upgraded));
                    serve(rd, Outbound::Io(wr), target, provider).await
                }
                Err(e) => tracing::debug!(error = %e, "SPDY upgrade failed"),
            }
        });
        let mut resp = Response::new(super::body::full(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        h.insert(STREAM_PROTOCOL_HEADER, HeaderValue::from_static(PROTOCOL));
        Ok(resp)
    }
}

/// Serve a session tunnelled in a WebSocket: binary messages in are chunks of the
/// client's SPDY byte stream; every batch of our frames goes out as one binary message,
/// so no frame is ever split across messages.
async fn serve_websocket(ws: WebSocket, target: ForwardTarget, provider: Arc<dyn PortForwarder>) {
    let (sink, mut stream) = ws.split();
    let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
    let inbound = tokio::spawn(async move {
        while let Some(msg) = stream.next().await {
            match msg {
                Ok(Message::Binary(b)) => {
                    if theirs.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Ok(Message::Close(_)) | Err(_) => break,
                // Pings are answered by tungstenite; text carries no SPDY.
                Ok(_) => {}
            }
        }
        let _ = theirs.shutdown().await;
    });
    serve(
        ours,
        Outbound::<tokio::io::DuplexStream>::WebSocket(sink),
        target,
        provider,
    )
    .await;
    inbound.abort();
}

/// Where encoded frames go: the upgraded connection itself, or a WebSocket.
pub enum Outbound<W> {
    Io(W),
    WebSocket(futures::stream::SplitSink<WebSocket, Message>),
}

impl<W: AsyncWrite + Unpin> Outbound<W> {
    async fn send(&mut self, batch: &[u8]) -> bool {
        match self {
            Outbound::Io(w) => w.write_all(batch).await.is_ok() && w.flush().await.is_ok(),
            Outbound::WebSocket(ws) => ws
                .send(Message::Binary(Bytes::copy_from_slice(batch)))
                .await
                .is_ok(),
        }
    }

    async fn close(&mut self) {
        match self {
            Outbound::Io(w) => {
                let _ = w.shutdown().await;
            }
            Outbound::WebSocket(ws) => {
                let _ = ws.close().await;
            }
        }
    }
}

/// A data stream's inbound side, as the reader loop keeps it.
struct DataIn {
    /// Bytes from the client; dropped on its FIN.
    tx: Option<mpsc::Sender<Bytes>>,
    /// Fired when the client resets the stream.
    reset: Option<oneshot::Sender<()>>,
}

/// Streams of one `requestID` until both are there.
struct Pending {
    since: Instant,
    error: Option<u32>,
    data: Option<DataOut>,
}

/// A data stream waiting for its error stream: what its forward will need.
struct DataOut {
    id: u32,
    port: u16,
    from_client: mpsc::Receiver<Bytes>,
    reset: oneshot::Receiver<()>,
}

/// Serve one port-forward session on `io` until the client goes away.
pub async fn serve<R, W>(
    mut rd: R,
    wr: Outbound<W>,
    target: ForwardTarget,
    provider: Arc<dyn PortForwarder>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, out_rx) = mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(write_frames(wr, out_rx));
    let mut decoder = spdy::Decoder::default();
    let mut buf = BytesMut::with_capacity(CHUNK);
    let mut data_in: HashMap<u32, DataIn> = HashMap::new();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut forwards: JoinSet<u32> = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let result: Result<(), String> = 'session: loop {
        // Handle every whole frame buffered so far.
        loop {
            let frame = match decoder.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    let _ = out
                        .send(Frame::GoAway {
                            last_good_stream_id: 0,
                            status: spdy::goaway::PROTOCOL_ERROR,
                        })
                        .await;
                    break 'session Err(e.to_string());
                }
            };
            match frame {
                Frame::SynStream {
                    stream_id,
                    flags,
                    headers,
                    ..
                } => {
                    let stream_type = spdy::header(&headers, "streamtype").unwrap_or_default();
                    let port = stream_port(spdy::header(&headers, "port"));
                    let checked = match (port, stream_type) {
                        (Err(e), _) => Err(e),
                        (Ok(p), "error" | "data") => Ok(p),
                        (Ok(_), "") => Err("\"streamType\" header is required".to_string()),
                        (Ok(_), other) => Err(format!("invalid stream type {other:?}")),
                    };
                    let port = match checked {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::debug!(stream_id, error = %e, "port-forward stream rejected");
                            let _ = out
                                .send(Frame::RstStream {
                                    stream_id,
                                    status: spdy::rst::REFUSED_STREAM,
                                })
                                .await;
                            continue;
                        }
                    };
                    let _ = out
                        .send(Frame::SynReply {
                            stream_id,
                            flags: 0,
                            headers: Vec::new(),
                        })
                        .await;
                    // Old clients send no requestID; the kubelet pairs their streams by
                    // consecutive ids.
                    let request_id = match spdy::header(&headers, "requestid") {
                        Some(r) if !r.is_empty() => r.to_string(),
                        _ if stream_type == "data" => stream_id.saturating_sub(2).to_string(),
                        _ => stream_id.to_string(),
                    };
                    let pair = pending.entry(request_id.clone()).or_insert(Pending {
                        since: Instant::now(),
                        error: None,
                        data: None,
                    });
                    let duplicate = if stream_type == "error" {
                        let had = pair.error.is_some();
                        if !had {
                            pair.error = Some(stream_id);
                        }
                        had
                    } else if pair.data.is_some() {
                        true
                    } else {
                        let (tx, rx) = mpsc::channel(16);
                        let (reset_tx, reset_rx) = oneshot::channel();
                        let fin = flags & spdy::FLAG_FIN != 0;
                        data_in.insert(
                            stream_id,
                            DataIn {
                                tx: (!fin).then_some(tx),
                                reset: Some(reset_tx),
                            },
                        );
                        pair.data = Some(DataOut {
                            id: stream_id,
                            port,
                            from_client: rx,
                            reset: reset_rx,
                        });
                        false
                    };
                    if duplicate {
                        if let Some(err) = pair.error {
                            let msg = format!(
                                "error processing stream for request {request_id}: {stream_type} stream already assigned"
                            );
                            let _ = out.send(data_frame(err, Bytes::from(msg), false)).await;
                        }
                        continue;
                    }
                    if pair.error.is_some() && pair.data.is_some() {
                        if let Some(Pending {
                            error: Some(error_id),
                            data: Some(data),
                            ..
                        }) = pending.remove(&request_id)
                        {
                            let conn = provider.connect(&target, data.port);
                            forwards.spawn(forward(
                                conn,
                                ForwardPair {
                                    error_id,
                                    data_id: data.id,
                                    port: data.port,
                                    pod: target.uid.clone(),
                                },
                                data.from_client,
                                data.reset,
                                out.clone(),
                            ));
                        }
                    }
                }
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                } => {
                    if let Some(d) = data_in.get_mut(&stream_id) {
                        if !data.is_empty() {
                            if let Some(tx) = &d.tx {
                                // Waiting here holds up the session, as spdystream
                                // does: SPDY as kubectl speaks it has no flow control.
                                if tx.send(data).await.is_err() {
                                    d.tx = None;
                                }
                            }
                        }
                        if flags & spdy::FLAG_FIN != 0 {
                            d.tx = None;
                        }
                    }
                }
                Frame::RstStream { stream_id, .. } => {
                    if let Some(mut d) = data_in.remove(&stream_id) {
                        if let Some(r) = d.reset.take() {
                            let _ = r.send(());
                        }
                    }
                }
                Frame::Ping { id } => {
                    // Odd ids are the client's own pings; even ones would answer ours.
                    if id % 2 == 1 {
                        let _ = out.send(Frame::Ping { id }).await;
                    }
                }
                Frame::GoAway { .. } => break 'session Ok(()),
                Frame::SynReply { .. }
                | Frame::Headers { .. }
                | Frame::Settings { .. }
                | Frame::WindowUpdate { .. }
                | Frame::Unknown { .. } => {}
            }
        }
        tokio::select! {
            n = rd.read_buf(&mut buf) => match n {
                Ok(0) => break 'session Ok(()),
                Ok(_) => {}
                Err(e) => break 'session Err(format!("reading the connection: {e}")),
            },
            Some(done) = forwards.join_next(), if !forwards.is_empty() => {
                if let Ok(data_id) = done {
                    data_in.remove(&data_id);
                }
            }
            _ = tick.tick() => {
                let expired: Vec<String> = pending
                    .iter()
                    .filter(|(_, p)| p.since.elapsed() > STREAM_CREATION_TIMEOUT)
                    .map(|(k, _)| k.clone())
                    .collect();
                for request_id in expired {
                    if let Some(p) = pending.remove(&request_id) {
                        if let Some(err) = p.error {
                            let msg = format!("timed out waiting for streams of request {request_id}");
                            let _ = out.send(data_frame(err, Bytes::from(msg), true)).await;
                        }
                        if let Some(DataOut { id: data_id, .. }) = p.data {
                            data_in.remove(&data_id);
                            let _ = out.send(data_frame(data_id, Bytes::new(), true)).await;
                        }
                    }
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::warn!(pod = %format!("{}/{}", target.namespace, target.pod), error = %e, "port-forward session failed");
    }
    // Ends the forwards still running; then the writer drains what is queued and ends.
    forwards.shutdown().await;
    drop(out);
    let _ = writer.await;
}

fn data_frame(stream_id: u32, bytes: Bytes, fin: bool) -> Frame {
    Frame::Data {
        stream_id,
        flags: if fin { spdy::FLAG_FIN } else { 0 },
        data: bytes,
    }
}

/// Writes queued frames in order (one header compression context), batching what is
/// ready into one write.
async fn write_frames<W: AsyncWrite + Unpin>(mut wr: Outbound<W>, mut rx: mpsc::Receiver<Frame>) {
    let mut encoder = match spdy::Encoder::new() {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "port-forward: no header compressor");
            return;
        }
    };
    let mut buf = BytesMut::with_capacity(CHUNK + 64);
    while let Some(frame) = rx.recv().await {
        let mut next = Some(frame);
        while let Some(f) = next.take() {
            if let Err(e) = encoder.encode(&f, &mut buf) {
                tracing::warn!(error = %e, "port-forward: encoding a frame");
                return;
            }
            if buf.len() < 4 * CHUNK {
                next = rx.try_recv().ok();
            }
        }
        if !wr.send(&buf).await {
            return;
        }
        buf.clear();
    }
    wr.close().await;
}

/// The streams of one forwarded connection.
struct ForwardPair {
    error_id: u32,
    data_id: u32,
    port: u16,
    /// How the kubelet names the pod in its messages (skiff: the pod's uid).
    pod: String,
}

/// One forwarded connection: dial, copy both ways, close the streams. Returns the data
/// stream's id.
async fn forward(
    conn: BoxFuture<'static, Result<TcpStream, String>>,
    pair: ForwardPair,
    mut from_client: mpsc::Receiver<Bytes>,
    mut reset: oneshot::Receiver<()>,
    out: mpsc::Sender<Frame>,
) -> u32 {
    let stream = match conn.await {
        Ok(s) => s,
        Err(e) => {
            let msg = format!(
                "error forwarding port {} to pod {}, uid : {e}",
                pair.port, pair.pod
            );
            tracing::info!("port-forward: {msg}");
            let _ = out.send(data_frame(pair.data_id, Bytes::new(), true)).await;
            let _ = out
                .send(data_frame(pair.error_id, Bytes::from(msg), true))
                .await;
            return pair.data_id;
        }
    };
    let (mut pod_rd, mut pod_wr) = stream.into_split();
    let up = async move {
        while let Some(chunk) = from_client.recv().await {
            if pod_wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // The client's FIN (or reset): half-close toward the pod.
        let _ = pod_wr.shutdown().await;
        // Keep the write half (and so the socket) until the other direction ends.
        std::future::pending::<()>().await
    };
    let down = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match pod_rd.read(&mut buf).await {
                Ok(0) => return true,
                Ok(n) => {
                    let chunk = Bytes::copy_from_slice(&buf[..n]);
                    if out
                        .send(data_frame(pair.data_id, chunk, false))
                        .await
                        .is_err()
                    {
                        return false;
                    }
                }
                Err(e) => {
                    tracing::debug!(port = pair.port, error = %e, "port-forward: reading from the pod");
                    return true;
                }
            }
        }
    };
    let finish = tokio::select! {
        fin = down => fin,
        _ = up => true,
        _ = &mut reset => false,
    };
    if finish {
        let _ = out.send(data_frame(pair.data_id, Bytes::new(), true)).await;
    }
    let _ = out
        .send(data_frame(pair.error_id, Bytes::new(), true))
        .await;
    pair.data_id
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Forwards every port to one local listener.
    struct Loopback(std::net::SocketAddr);

    impl PortForwarder for Loopback {
        fn check(&self, _: &ForwardTarget) -> Result<(), String> {
            Ok(())
        }
        fn connect(
            &self,
            _: &ForwardTarget,
            port: u16,
        ) -> BoxFuture<'static, Result<TcpStream, String>> {
            let addr = self.0;
            Box::pin(async move {
                if port != addr.port() {
                    return Err(format!(
                        "failed to connect to localhost:{port}: connection refused"
                    ));
                }
                TcpStream::connect(addr).await.map_err(|e| e.to_string())
            })
        }
    }

    fn target() -> ForwardTarget {
        ForwardTarget {
            node: "n".into(),
            namespace: "default".into(),
            pod: "web".into(),
            uid: "uid-1".into(),
        }
    }

    fn syn(id: u32, ty: &str, port: u16, request: &str) -> Frame {
        Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: vec![
                ("streamtype".into(), ty.into()),
                ("port".into(), port.to_string()),
                ("requestid".into(), request.into()),
            ],
        }
    }

    /// The client end: frames out through its own encoder, frames in through a decoder.
    struct Client {
        io: tokio::io::DuplexStream,
        enc: spdy::Encoder,
        dec: spdy::Decoder,
        buf: BytesMut,
    }

    impl Client {
        async fn send(&mut self, frames: &[Frame]) {
            let mut b = BytesMut::new();
            for f in frames {
                self.enc.encode(f, &mut b).expect("encode");
            }
            self.io.write_all(&b).await.expect("write");
        }

        async fn next(&mut self) -> Frame {
            loop {
                if let Some(f) = self.dec.decode(&mut self.buf).expect("decode") {
                    return f;
                }
                let n =
                    tokio::time::timeout(Duration::from_secs(10), self.io.read_buf(&mut self.buf))
                        .await
                        .expect("a frame within 10s")
                        .expect("read");
                assert!(n > 0, "the server closed the connection");
            }
        }
    }

    #[tokio::test]
    async fn a_session_forwards_pairs_answers_pings_and_reports_refused_ports() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        // The "pod": answers what it read, upper-cased, once the client half-closes.
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let _ = s.read_to_end(&mut got).await;
                    let _ = s.write_all(&got.to_ascii_uppercase()).await;
                });
            }
        });
        let (server_end, client_end) = tokio::io::duplex(64 * 1024);
        let (rd, wr) = tokio::io::split(server_end);
        tokio::spawn(serve(
            rd,
            Outbound::Io(wr),
            target(),
            Arc::new(Loopback(addr)),
        ));
        let mut c = Client {
            io: client_end,
            enc: spdy::Encoder::new().expect("encoder"),
            dec: spdy::Decoder::default(),
            buf: BytesMut::new(),
        };
        let port = addr.port();
        c.send(&[
            syn(1, "error", port, "0"),
            data_frame(1, Bytes::new(), true),
            syn(3, "data", port, "0"),
            Frame::Ping { id: 1 },
            data_frame(3, Bytes::from_static(b"hello "), false),
            data_frame(3, Bytes::from_static(b"pod"), true),
            syn(5, "error", 1, "1"),
            syn(7, "data", 1, "1"),
            syn(9, "data", 0, "2"),
        ])
        .await;
        let mut replies = Vec::new();
        let mut payload: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut fins = Vec::new();
        let mut pinged = false;
        let mut refused = Vec::new();
        while fins.len() < 4 || !pinged || refused.is_empty() {
            match c.next().await {
                Frame::SynReply { stream_id, .. } => replies.push(stream_id),
                Frame::Ping { id } => pinged = id == 1,
                Frame::RstStream { stream_id, status } => refused.push((stream_id, status)),
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                } => {
                    payload
                        .entry(stream_id)
                        .or_default()
                        .extend_from_slice(&data);
                    if flags & spdy::FLAG_FIN != 0 {
                        fins.push(stream_id);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        replies.sort();
        assert_eq!(replies, [1, 3, 5, 7]);
        assert_eq!(
            refused,
            [(9, spdy::rst::REFUSED_STREAM)],
            "port 0 is refused"
        );
        assert_eq!(payload.get(&3).map(Vec::as_slice), Some(&b"HELLO POD"[..]));
        assert_eq!(
            payload.get(&1).map(Vec::len).unwrap_or(0),
            0,
            "no error for port {port}"
        );
        let err = String::from_utf8_lossy(payload.get(&5).map(Vec::as_slice).unwrap_or_default());
        assert_eq!(
            err,
            "error forwarding port 1 to pod uid-1, uid : failed to connect to localhost:1: connection refused"
        );
        // The data stream ends before its error stream.
        let pos = |id| fins.iter().position(|f| *f == id).expect("fin");
        assert!(pos(3) < pos(1), "{fins:?}");
        assert!(pos(7) < pos(5), "{fins:?}");
    }

    #[test]
    fn ports_are_checked_as_the_kubelet_does() {
        assert_eq!(stream_port(Some("8080")), Ok(8080));
        assert_eq!(stream_port(None), Err("\"port\" header is required".into()));
        assert_eq!(stream_port(Some("0")), Err("port \"0\" must be > 0".into()));
        assert!(stream_port(Some("70000"))
            .expect_err("out of range")
            .starts_with("unable to parse \"70000\" as a port"));
        let q = Query::parse(Some("ports=80,443")).expect("query");
        assert_eq!(query_ports(&q).expect("ports"), [80, 443]);
        let q = Query::parse(Some("ports=99999")).expect("query");
        assert!(query_ports(&q).is_err());
    }
}
