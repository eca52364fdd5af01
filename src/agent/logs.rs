//! Serving container logs, as kubelet does for `kubectl logs`: the CRI-format files of
//! one run of one container (`<root>/<ns>_<pod>_<uid>/<container>/<run>.log` and its
//! rotated `<run>.log.<time>` files), decoded back to the container's output (partial
//! lines joined), with `tailLines`, `sinceSeconds`/`sinceTime`, `timestamps` and
//! `limitBytes`; with `follow`, new output is streamed until the container has exited
//! and its file is read to the end.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::io::AsyncReadExt;

/// How often a followed log is polled for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// What part of a log to serve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub tail_lines: Option<i64>,
    pub since: Option<DateTime<Utc>>,
    pub timestamps: bool,
    pub limit_bytes: Option<i64>,
}

/// One CRI log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: &'a str,
    pub partial: bool,
    pub text: &'a str,
}

/// `<RFC3339Nano> <stdout|stderr> <F|P> <text>`; `None` for a malformed line.
pub fn parse_record(line: &str) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    Some(Record {
        time,
        partial: tag == "P",
        text,
    })
}

/// Turns CRI records into output lines, joining partial records.
#[derive(Debug, Default)]
pub struct Decoder {
    pending: String,
    pending_time: Option<String>,
}

impl Decoder {
    /// Feed one record line; returns a complete output line (with its first record's
    /// time) when the record ends one.
    pub fn push(&mut self, line: &str) -> Option<(String, String)> {
        let r = parse_record(line)?;
        if self.pending_time.is_none() {
            self.pending_time = Some(r.time.to_string());
        }
        self.pending.push_str(r.text);
        if r.partial {
            return None;
        }
        let text = std::mem::take(&mut self.pending);
        let time = self.pending_time.take().unwrap_or_default();
        Some((time, text))
    }
}

fn keep(opts: &LogOptions, time: &str) -> bool {
    match opts.since {
        None => true,
        Some(since) => {
            DateTime::parse_from_rfc3339(time).is_ok_and(|t| t.with_timezone(&Utc) >= since)
        }
    }
}

fn render(opts: &LogOptions, time: &str, text: &str) -> String {
    if opts.timestamps {
        format!("{time} {text}\n")
    } else {
        format!("{text}\n")
    }
}

/// The output of whole log text (several files' worth) as `opts` asks.
pub fn render_all(text: &str, opts: &LogOptions) -> String {
    let mut decoder = Decoder::default();
    let mut lines: Vec<String> = text
        .lines()
        .filter_map(|l| decoder.push(l))
        .filter(|(time, _)| keep(opts, time))
        .map(|(time, text)| render(opts, &time, &text))
        .collect();
    if let Some(n) = opts.tail_lines.filter(|n| *n >= 0) {
        let n = n as usize;
        if lines.len() > n {
            lines.drain(..lines.len() - n);
        }
    }
    lines.concat()
}

/// The files of one run, oldest first: rotated ones (by their time suffix), then the
/// live file.
fn run_files(live: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (live.parent(), live.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    rotated.sort();
    rotated.push(live.to_path_buf());
    rotated
}

/// Whether `live` now names another file than the one `file` reads (rotated).
async fn rotated(live: &Path, file: &tokio::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (tokio::fs::metadata(live).await, file.metadata().await) {
        (Ok(path), Ok(open)) => path.ino() != open.ino(),
        _ => false,
    }
}

/// Whether the container still runs (and so may write more).
pub type StillRunning = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// Stream the log of the run whose live file is `live`.
pub async fn stream(
    live: PathBuf,
    opts: LogOptions,
    running: StillRunning,
) -> std::io::Result<BoxStream<'static, std::io::Result<Bytes>>> {
    // The live file is opened first and then read through its descriptor, so nothing
    // written between the first read and following is missed.
    let mut live_file = match tokio::fs::File::open(&live).await {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !opts.follow => None,
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    for f in run_files(&live).iter().filter(|f| **f != live) {
        match tokio::fs::read_to_string(f).await {
            Ok(t) => text.push_str(&t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(f) = live_file.as_mut() {
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).await?;
        text.push_str(&String::from_utf8_lossy(&buf));
    }
    let mut limit = opts.limit_bytes.filter(|l| *l >= 0).map(|l| l as usize);
    let mut cut = move |mut s: String| -> Option<Bytes> {
        if let Some(left) = limit.as_mut() {
            if *left == 0 {
                return None;
            }
            if s.len() > *left {
                let mut end = *left;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
            }
            *left -= s.len();
        }
        Some(Bytes::from(s))
    };
    let first = cut(render_all(&text, &opts));
    let Some(file) = live_file.filter(|_| opts.follow) else {
        return Ok(futures::stream::iter(first.map(Ok)).boxed());
    };
    // Follow: keep reading the live file's descriptor from where the first read ended,
    // so output written just before the container (and its files) are removed is still
    // served; a rotation (a new file at the path) is followed once the old one is read.
    struct Follow {
        live: PathBuf,
        file: tokio::fs::File,
        carry: String,
        decoder: Decoder,
        done: bool,
    }
    let state = Follow {
        live,
        file,
        carry: String::new(),
        decoder: Decoder::default(),
        done: false,
    };
    let opts_follow = opts.clone();
    let rest = futures::stream::unfold((state, cut), move |(mut st, mut cut)| {
        let running = running.clone();
        let opts = opts_follow.clone();
        async move {
            loop {
                if st.done {
                    return None;
                }
                let alive = running().await;
                let mut buf = Vec::new();
                if st.file.read_to_end(&mut buf).await.is_ok() {
                    st.carry.push_str(&String::from_utf8_lossy(&buf));
                }
                if rotated(&st.live, &st.file).await {
                    if let Ok(f) = tokio::fs::File::open(&st.live).await {
                        st.file = f;
                        continue;
                    }
                }
                let mut chunk = String::new();
                while let Some(nl) = st.carry.find('\n') {
                    let line: String = st.carry.drain(..=nl).collect();
                    if let Some((time, text)) = st.decoder.push(line.trim_end_matches('\n')) {
                        if keep(&opts, &time) {
                            chunk.push_str(&render(&opts, &time, &text));
                        }
                    }
                }
                if !alive {
                    st.done = true;
                }
                if !chunk.is_empty() {
                    return cut(chunk).map(|b| (Ok(b), (st, cut)));
                }
                if st.done {
                    return None;
                }
                tokio::time::sleep(FOLLOW_POLL).await;
            }
        }
    });
    Ok(futures::stream::iter(first.map(Ok)).chain(rest).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2024-01-01T00:00:01.000000000Z stdout F one\n\
                       2024-01-01T00:00:02.000000000Z stderr P tw\n\
                       2024-01-01T00:00:02.500000000Z stderr F o\n\
                       2024-01-01T00:00:03.000000000Z stdout F three\n";

    #[test]
    fn partial_records_join_and_options_apply() {
        assert_eq!(render_all(LOG, &LogOptions::default()), "one\ntwo\nthree\n");
        let tail = LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        assert_eq!(render_all(LOG, &tail), "two\nthree\n");
        let since = LogOptions {
            since: Some("2024-01-01T00:00:02Z".parse().expect("time")),
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            render_all(LOG, &since),
            "2024-01-01T00:00:02.000000000Z two\n2024-01-01T00:00:03.000000000Z three\n"
        );
        assert_eq!(parse_record("garbage"), None);
    }

    #[tokio::test]
    async fn follow_streams_until_the_container_exits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let live = dir.path().join("0.log");
        std::fs::write(
            dir.path().join("0.log.20240101-000000"),
            "2024-01-01T00:00:00Z stdout F old\n",
        )
        .expect("rotated");
        std::fs::write(&live, "2024-01-01T00:00:01Z stdout F first\n").expect("live");
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = alive.clone();
        let running: StillRunning = Arc::new(move || {
            let flag = flag.clone();
            Box::pin(async move { flag.load(std::sync::atomic::Ordering::SeqCst) })
        });
        let opts = LogOptions {
            follow: true,
            limit_bytes: Some(1000),
            ..Default::default()
        };
        let mut s = stream(live.clone(), opts, running).await.expect("stream");
        assert_eq!(
            s.next().await.expect("first").expect("bytes"),
            "old\nfirst\n"
        );
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&live)
            .expect("append");
        f.write_all(b"2024-01-01T00:00:02Z stdout F second\n")
            .expect("write");
        assert_eq!(s.next().await.expect("second").expect("bytes"), "second\n");
        f.write_all(b"2024-01-01T00:00:03Z stdout F last words\n")
            .expect("write");
        alive.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            s.next().await.expect("last").expect("bytes"),
            "last words\n"
        );
        assert!(
            s.next().await.is_none(),
            "the stream ends once the container has exited"
        );
    }
}
