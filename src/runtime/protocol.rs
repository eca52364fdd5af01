//! What the agent and a shim say to each other, and the on-disk records a shim leaves.
//!
//! One request per connection on the shim's unix socket: the client writes one JSON line
//! ([`Request`]), the shim answers one JSON line ([`Response`]) and closes. `Wait` is
//! answered when the container has exited. `Attach` is answered with `Ok` and the
//! connection then carries [`attach`] frames both ways until either side closes it. The same [`ContainerState`] is what
//! `Runtime::status` returns; [`ExitStatus`] is also written to `exit.json` so that the
//! exit survives the shim.
//!
//! Per-container layout under the run dir (`<run>/containers/<id>/`):
//! `spec.json` (skiff's spec), `config.json` (the OCI bundle config), `shim.sock`,
//! `shim.pid`, `shim.log` (the shim's own diagnostics), `exit.json`, `console.sock` (tty
//! only). libcontainer's own state lives in `<run>/oci/<id>/`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A request to a shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Request {
    /// Where the container is in its life.
    Status,
    /// Send a signal to the container's init process.
    Kill { signal: i32 },
    /// Answer when the container has exited (with its final state).
    Wait,
    /// Kill the container if it still runs, remove its cgroup and state, and exit.
    Delete,
    /// Join the container's own stdio: from the `Ok` on, the shim sends the container's
    /// output as it comes and takes stdin and resizes ([`attach`] frames).
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
}

/// The frames of an attached connection: a kind byte, the payload's length (u32, big
/// endian), the payload. The shim sends [`attach::STDOUT`] and [`attach::STDERR`] (a
/// terminal's output is all stdout) and closes the connection when the container has
/// exited and its output is sent; the client sends [`attach::STDIN`],
/// [`attach::RESIZE`] (width and height, u16 big endian each) and
/// [`attach::CLOSE_STDIN`]. A client that closes its side has detached.
pub mod attach {
    pub const STDIN: u8 = 0;
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    pub const RESIZE: u8 = 4;
    pub const CLOSE_STDIN: u8 = 255;
    /// The largest payload a frame may carry.
    pub const MAX_PAYLOAD: usize = 1 << 20;

    /// `data` as one frame of `kind` (payloads past [`MAX_PAYLOAD`] are cut there).
    pub fn frame(kind: u8, data: &[u8]) -> Vec<u8> {
        let data = &data[..data.len().min(MAX_PAYLOAD)];
        let mut out = Vec::with_capacity(data.len() + 5);
        out.push(kind);
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    /// A frame read from a buffer: (kind, payload, bytes used).
    pub type Parsed<'a> = (u8, &'a [u8], usize);

    /// The first complete frame in `buf`; `Err` when the length is past [`MAX_PAYLOAD`].
    pub fn parse(buf: &[u8]) -> Result<Option<Parsed<'_>>, String> {
        let Some(header) = buf.get(..5) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(format!(
                "attach frame of {len} bytes (at most {MAX_PAYLOAD})"
            ));
        }
        Ok(buf
            .get(5..5 + len)
            .map(|payload| (header[0], payload, 5 + len)))
    }

    /// A resize frame's payload.
    pub fn resize_payload(width: u16, height: u16) -> [u8; 4] {
        let (w, h) = (width.to_be_bytes(), height.to_be_bytes());
        [w[0], w[1], h[0], h[1]]
    }

    /// (width, height) from a resize payload.
    pub fn parse_resize(payload: &[u8]) -> Option<(u16, u16)> {
        match payload {
            [w0, w1, h0, h1] => Some((
                u16::from_be_bytes([*w0, *w1]),
                u16::from_be_bytes([*h0, *h1]),
            )),
            _ => None,
        }
    }
}

/// A shim's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Response {
    State(ContainerState),
    Ok,
    Error { message: String },
}

/// The first line a shim writes on its readiness pipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Ready {
    Started { pid: i32, shim_pid: i32 },
    Failed { message: String },
}

/// Running or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Running,
    Exited,
    /// The shim is gone and left no exit record (killed from outside).
    Unknown,
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitStatus {
    /// The exit code, or 128 + signal number when a signal ended it (as kubelet reports).
    pub exit_code: i32,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// The kernel's OOM killer killed a process of the container's cgroup.
    pub oom_killed: bool,
    /// RFC 3339 with nanoseconds.
    pub finished_at: String,
}

/// One container as the runtime sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    pub id: String,
    pub status: Status,
    /// The container's init process (in the host's PID namespace); 0 if unknown.
    pub pid: i32,
    /// The shim serving it; 0 once gone.
    pub shim_pid: i32,
    /// RFC 3339 with nanoseconds; empty if unknown.
    pub started_at: String,
    pub exit: Option<ExitStatus>,
    pub log_path: PathBuf,
    pub cgroups_path: String,
    /// The image it was made from (its spec's `image`; empty if unknown).
    #[serde(default)]
    pub image: String,
}

/// Paths of one container's state dir.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub dir: PathBuf,
}

impl StateDir {
    pub fn new(run_dir: &Path, id: &str) -> Self {
        StateDir {
            dir: containers_dir(run_dir).join(id),
        }
    }
    pub fn spec(&self) -> PathBuf {
        self.dir.join("spec.json")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("shim.sock")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("shim.pid")
    }
    pub fn shim_log(&self) -> PathBuf {
        self.dir.join("shim.log")
    }
    pub fn exit_file(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
    pub fn started_file(&self) -> PathBuf {
        self.dir.join("started.json")
    }
    pub fn console_socket(&self) -> PathBuf {
        self.dir.join("console.sock")
    }
}

/// skiff's per-container state dirs.
pub fn containers_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("containers")
}

/// libcontainer's state root.
pub fn oci_root(run_dir: &Path) -> PathBuf {
    run_dir.join("oci")
}

/// Write `value` as JSON to `path` atomically (temp file + rename).
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let data = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let r: Request = serde_json::from_str(r#"{"op":"kill","signal":15}"#).expect("parses");
        assert_eq!(r, Request::Kill { signal: 15 });
        assert_eq!(
            serde_json::to_string(&Request::Wait).expect("json"),
            r#"{"op":"wait"}"#
        );
        let e = Response::Error {
            message: "no".into(),
        };
        let s = serde_json::to_string(&e).expect("json");
        assert_eq!(s, r#"{"result":"error","message":"no"}"#);
        assert_eq!(serde_json::from_str::<Response>(&s).expect("parses"), e);
    }

    #[test]
    fn attach_frames_round_trip_and_wait_for_their_whole_payload() {
        let mut wire = attach::frame(attach::STDIN, b"echo hi\n");
        wire.extend(attach::frame(
            attach::RESIZE,
            &attach::resize_payload(120, 40),
        ));
        let (kind, payload, used) = attach::parse(&wire).expect("valid").expect("complete");
        assert_eq!((kind, payload), (attach::STDIN, &b"echo hi\n"[..]));
        let (kind, payload, _) = attach::parse(&wire[used..])
            .expect("valid")
            .expect("complete");
        assert_eq!(kind, attach::RESIZE);
        assert_eq!(attach::parse_resize(payload), Some((120, 40)));
        assert_eq!(attach::parse(&wire[..used - 1]), Ok(None));
        let huge = [attach::STDIN, 0xff, 0xff, 0xff, 0xff];
        assert!(attach::parse(&huge).is_err());
    }
}
