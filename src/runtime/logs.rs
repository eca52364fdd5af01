//! Container logs in the CRI format the kubelet writes and `kubectl logs` reads:
//! one line per record, `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <text>`, where `P`
//! marks a partial line (a long line split, or output without a trailing newline that is
//! still growing) and `F` the end of a line.
//!
//! [`LineSplitter`] turns a byte stream into records; [`CriLog`] appends them to the
//! log file and rotates it by size the way the kubelet names rotated files
//! (`0.log` → `0.log.20261123-211108`), keeping at most N files. The shim owns both.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};

/// A record longer than this is written in `P` pieces (containerd uses 16 KiB too).
pub const MAX_RECORD: usize = 16 * 1024;

/// Which output of the container a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Splits a byte stream into lines: complete lines come out as full records, overlong
/// ones in partial pieces of [`MAX_RECORD`] bytes.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feed bytes; `emit(text, partial)` is called for every record that is complete.
    pub fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(&[u8], bool)) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            let (line, rest) = data.split_at(nl);
            if self.pending.is_empty() {
                emit_line(strip_cr(line), &mut emit);
            } else {
                self.pending.extend_from_slice(line);
                let whole = std::mem::take(&mut self.pending);
                emit_line(strip_cr(&whole), &mut emit);
            }
            data = &rest[1..];
        }
        self.pending.extend_from_slice(data);
        while self.pending.len() >= MAX_RECORD {
            let rest = self.pending.split_off(MAX_RECORD);
            let piece = std::mem::replace(&mut self.pending, rest);
            emit(&piece, true);
        }
    }

    /// The stream ended: what is left is the last line (written as a full record).
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8], bool)) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            emit_line(&rest, &mut emit);
        }
    }
}

/// A complete line: pieces of [`MAX_RECORD`] bytes as partial records, then the rest as
/// the full record that ends it.
fn emit_line(mut line: &[u8], emit: &mut impl FnMut(&[u8], bool)) {
    while line.len() > MAX_RECORD {
        let (piece, rest) = line.split_at(MAX_RECORD);
        emit(piece, true);
        line = rest;
    }
    emit(line, false);
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Format one CRI log record (with its newline).
pub fn format_record(ts: &str, stream: Stream, partial: bool, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ts.len() + text.len() + 12);
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(text);
    out.push(b'\n');
    out
}

/// An append-only CRI log file with size-based rotation.
#[derive(Debug)]
pub struct CriLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: usize,
}

impl CriLog {
    /// Open (append to) `path`, creating its directory. `max_size` 0 turns rotation off;
    /// `max_files` counts the live file too.
    pub fn open(path: &Path, max_size: u64, max_files: usize) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(CriLog {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
        })
    }

    /// Append one record stamped now.
    pub fn write(&mut self, stream: Stream, partial: bool, text: &[u8]) -> io::Result<()> {
        let ts = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
        let record = format_record(&ts, stream, partial, text);
        if self.max_size > 0 && self.size > 0 && self.size + record.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&record)?;
        self.size += record.len() as u64;
        Ok(())
    }

    /// Rename the live file to `<name>.<timestamp>`, start a new one and drop the oldest
    /// rotated files beyond `max_files - 1`.
    pub fn rotate(&mut self) -> io::Result<()> {
        let stamp = Utc::now().format("%Y%m%d-%H%M%S%.9f").to_string();
        let mut rotated = self.path.as_os_str().to_owned();
        rotated.push(format!(".{stamp}"));
        std::fs::rename(&self.path, &rotated)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        let mut old = self.rotated_files()?;
        old.sort();
        let keep = self.max_files - 1;
        if old.len() > keep {
            for f in &old[..old.len() - keep] {
                std::fs::remove_file(f)?;
            }
        }
        Ok(())
    }

    /// Rotated files of this log (`<name>.<timestamp>`), in no particular order.
    pub fn rotated_files(&self) -> io::Result<Vec<PathBuf>> {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return Ok(Vec::new());
        };
        let mut prefix = name.to_os_string();
        prefix.push(".");
        let prefix = prefix.to_string_lossy().into_owned();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                out.push(entry.path());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |t, p| {
                out.push((String::from_utf8_lossy(t).into_owned(), p))
            });
        }
        s.finish(|t, p| out.push((String::from_utf8_lossy(t).into_owned(), p)));
        out
    }

    #[test]
    fn lines_across_chunks() {
        assert_eq!(
            split(&[b"a\nb", b"c\r\n", b"\nlast"]),
            vec![
                ("a".into(), false),
                ("bc".into(), false),
                ("".into(), false),
                ("last".into(), false)
            ]
        );
    }

    #[test]
    fn long_lines_are_partial() {
        let long = vec![b'x'; MAX_RECORD * 2 + 10];
        let mut data = long.clone();
        data.push(b'\n');
        let out = split(&[&data]);
        assert_eq!(out.len(), 3);
        assert!(out[0].1 && out[1].1 && !out[2].1);
        assert_eq!(out[2].0.len(), 10);
    }

    #[test]
    fn record_format() {
        let r = format_record(
            "2026-01-02T03:04:05.000000006Z",
            Stream::Stderr,
            false,
            b"hi",
        );
        assert_eq!(r, b"2026-01-02T03:04:05.000000006Z stderr F hi\n");
        let r = format_record("t", Stream::Stdout, true, b"");
        assert_eq!(r, b"t stdout P \n");
    }

    #[test]
    fn writes_and_rotates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c").join("0.log");
        let mut log = CriLog::open(&path, 200, 3).expect("open");
        for i in 0..20 {
            log.write(
                Stream::Stdout,
                false,
                format!("line {i:02} of output").as_bytes(),
            )
            .expect("write");
        }
        let live = std::fs::read_to_string(&path).expect("read");
        assert!(live.len() <= 200, "live file is bounded: {}", live.len());
        let last = live.lines().last().expect("a line");
        let mut parts = last.splitn(4, ' ');
        let ts = parts.next().expect("ts");
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
        assert_eq!(parts.next(), Some("stdout"));
        assert_eq!(parts.next(), Some("F"));
        assert_eq!(parts.next(), Some("line 19 of output"));
        let rotated = log.rotated_files().expect("list");
        assert_eq!(rotated.len(), 2, "max 3 files: live + 2 rotated");
    }
}
