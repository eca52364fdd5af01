//! Attaching to a container's own stdio (`kubectl attach`, `kubectl run -it`): the
//! client side of a shim's `Attach` connection ([`super::protocol::attach`] frames).
//!
//! [`Runtime::attach`] connects to the container's shim and returns an [`Attachment`]:
//! byte streams for stdin, stdout and stderr (tokio duplex pipes pumped to and from the
//! framed connection by two tasks), a resizer for a terminal, and [`Attachment::finish`]
//! that completes when the container has exited and its output has come. Dropping the
//! attachment detaches: the container keeps running (with `stdinOnce`, its stdin closes).

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

use super::protocol::{attach, Request, Response};
use super::{Runtime, RuntimeError};

/// Which of the container's streams to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachSpec {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// A client attached to a container's stdio.
pub struct Attachment {
    /// Write here to feed the container's stdin; shut it down to say there is no more.
    pub stdin: Option<DuplexStream>,
    /// The container's stdout (a terminal's whole output) from the moment of attaching.
    pub stdout: Option<DuplexStream>,
    pub stderr: Option<DuplexStream>,
    resize: mpsc::UnboundedSender<(u16, u16)>,
    ended: oneshot::Receiver<()>,
    /// Dropped with the attachment: the writer task then closes its side (detach).
    _attached: oneshot::Sender<()>,
}

impl Attachment {
    /// Something that resizes the container's terminal (nothing happens without one).
    pub fn resizer(&self) -> impl Fn(u16, u16) + Send + Sync + 'static {
        let tx = self.resize.clone();
        move |w, h| {
            let _ = tx.send((w, h));
        }
    }

    /// Wait until the container has exited and its output has been delivered (or the
    /// shim went away); dropping the result detaches.
    pub async fn finish(self) {
        let Attachment {
            ended, _attached, ..
        } = self;
        let _ = ended.await;
        drop(_attached);
    }
}

impl Runtime {
    /// Attach to the running container `id`.
    pub async fn attach(&self, id: &str, spec: AttachSpec) -> Result<Attachment, RuntimeError> {
        let request = Request::Attach {
            stdin: spec.stdin,
            stdout: spec.stdout,
            stderr: spec.stderr,
        };
        let stream = self.send(id, &request).await?;
        let (mut rd, wr) = stream.into_split();
        // The answer line, byte by byte: what follows it is already output.
        let mut line = Vec::new();
        loop {
            let mut byte = [0u8; 1];
            match rd.read(&mut byte).await {
                Ok(0) | Err(_) => return Err(RuntimeError::ShimGone { id: id.into() }),
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) if line.len() > 64 * 1024 => {
                    return Err(RuntimeError::Shim {
                        id: id.into(),
                        message: "answer to attach too long".into(),
                    })
                }
                Ok(_) => line.push(byte[0]),
            }
        }
        match serde_json::from_slice(&line) {
            Ok(Response::Ok) => {}
            Ok(Response::Error { message }) => {
                return Err(RuntimeError::Shim {
                    id: id.into(),
                    message,
                })
            }
            Ok(Response::State(_)) | Err(_) => {
                return Err(RuntimeError::Shim {
                    id: id.into(),
                    message: format!(
                        "unexpected answer to attach: {:?}",
                        String::from_utf8_lossy(&line)
                    ),
                })
            }
        }

        const PIPE: usize = 64 * 1024;
        let (stdin, stdin_src) = if spec.stdin {
            let (ours, theirs) = tokio::io::duplex(PIPE);
            (Some(theirs), Some(ours))
        } else {
            (None, None)
        };
        let mut outputs = [None, None];
        let mut readers = [None, None];
        for (i, wanted) in [spec.stdout, spec.stderr].into_iter().enumerate() {
            if wanted {
                let (ours, theirs) = tokio::io::duplex(PIPE);
                outputs[i] = Some(ours);
                readers[i] = Some(theirs);
            }
        }
        let [stdout, stderr] = readers;
        let (resize, resizes) = mpsc::unbounded_channel();
        let (attached, detached) = oneshot::channel();
        let (end, ended) = oneshot::channel();
        tokio::spawn(read_output(rd, outputs, end));
        tokio::spawn(write_input(wr, stdin_src, resizes, detached));
        Ok(Attachment {
            stdin,
            stdout,
            stderr,
            resize,
            ended,
            _attached: attached,
        })
    }
}

/// Demultiplex the shim's frames into the output pipes until the shim closes the
/// connection (the container has exited), then say so on `end`.
async fn read_output(
    mut rd: OwnedReadHalf,
    mut outputs: [Option<DuplexStream>; 2],
    end: oneshot::Sender<()>,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 32 * 1024];
    'read: loop {
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let mut used = 0;
        loop {
            let (kind, payload, n) = match attach::parse(&buf[used..]) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "bad frame from a shim; detaching");
                    break 'read;
                }
            };
            let slot = match kind {
                attach::STDOUT => Some(0),
                attach::STDERR => Some(1),
                _ => None,
            };
            if let Some(out) = slot.and_then(|i| outputs[i].as_mut()) {
                // A reader that went away no longer wants output; the rest still flows.
                if out.write_all(payload).await.is_err() {
                    if let Some(i) = slot {
                        outputs[i] = None;
                    }
                }
            }
            used += n;
        }
        buf.drain(..used);
    }
    drop(outputs);
    let _ = end.send(());
}

/// Frame stdin and resizes for the shim until the attachment is dropped; then close our
/// side, which detaches.
async fn write_input(
    mut wr: OwnedWriteHalf,
    mut stdin: Option<DuplexStream>,
    mut resizes: mpsc::UnboundedReceiver<(u16, u16)>,
    mut detached: oneshot::Receiver<()>,
) {
    let mut chunk = vec![0u8; 32 * 1024];
    let mut resizing = true;
    loop {
        let frame = tokio::select! {
            _ = &mut detached => break,
            read = async {
                match stdin.as_mut() {
                    Some(s) => s.read(&mut chunk).await,
                    None => std::future::pending().await,
                }
            } => match read {
                Ok(n) if n > 0 => attach::frame(attach::STDIN, &chunk[..n]),
                _ => {
                    stdin = None;
                    attach::frame(attach::CLOSE_STDIN, &[])
                }
            },
            size = resizes.recv(), if resizing => match size {
                Some((w, h)) => attach::frame(attach::RESIZE, &attach::resize_payload(w, h)),
                None => {
                    resizing = false;
                    continue;
                }
            },
        };
        if wr.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}
