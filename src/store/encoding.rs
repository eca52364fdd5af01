//! On-disk layout of the sled backend: the keyspaces of its single sled tree and the binary
//! encodings of their keys and values. Nothing else knows byte layouts.
//!
//! All data lives in one sled tree so that one `sled::Batch` (atomic, also across a crash)
//! covers every keyspace a write touches. Keyspaces are told apart by the first byte:
//!
//! | keyspace | key                         | value                                        |
//! |----------|-----------------------------|----------------------------------------------|
//! | current  | `k` key                     | create_rev, mod_rev                          |
//! | history  | `h` escape(key) `00 00` rev | `00` (put) / `01` (tombstone)                |
//! | log      | `l` rev                     | kind, create_rev, key length, key, value     |
//! | meta     | `m` name                    | i64                                          |
//!
//! Like etcd, values are stored once, in the log, keyed by revision: writes append at the
//! end of the log (cheap for a B-tree) and the two indexes that are updated at random
//! places stay small. A read finds the revision through an index, then the value in the log.
//! Delete entries carry no value (it is the previous version's).
//!
//! Revisions are big-endian `i64`s (always >= 0, so byte order is numeric order).
//! `escape` doubles every `00` byte into `00 ff`, so `00 00` terminates the key and history
//! entries sort by key (lexically, exactly as the current keyspace does) then by revision.

use bytes::Bytes;

use crate::store::{EventKind, StoreError};

pub(crate) const CURRENT: u8 = b'k';
pub(crate) const HISTORY: u8 = b'h';
pub(crate) const LOG: u8 = b'l';

pub(crate) const META_FORMAT: &[u8] = b"mformat";
pub(crate) const META_COMPACTED: &[u8] = b"mcompacted";
/// Log entries up to this revision have been through compaction.
pub(crate) const META_COMPACT_CURSOR: &[u8] = b"mcompactcursor";
pub(crate) const FORMAT_VERSION: i64 = 1;

const TOMBSTONE: u8 = 1;
const PUT: u8 = 0;

fn corrupt(context: String) -> StoreError {
    StoreError::Corrupt { context }
}

fn read_i64(raw: &[u8], at: usize, what: &str) -> Result<i64, StoreError> {
    raw.get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(i64::from_be_bytes)
        .ok_or_else(|| corrupt(format!("{what}: truncated record of {} bytes", raw.len())))
}

fn utf8_key(raw: &[u8], what: &str) -> Result<String, StoreError> {
    String::from_utf8(raw.to_vec()).map_err(|_| corrupt(format!("{what}: key is not UTF-8")))
}

// ---- current keyspace ----

pub(crate) fn current_key(key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + key.len());
    out.push(CURRENT);
    out.extend_from_slice(key.as_bytes());
    out
}

/// Smallest current-keyspace key strictly after every key <= `key`.
pub(crate) fn current_key_after(key: &str) -> Vec<u8> {
    let mut out = current_key(key);
    out.push(0);
    out
}

pub(crate) fn decode_current_key(raw: &[u8]) -> Result<String, StoreError> {
    match raw.split_first() {
        Some((&CURRENT, key)) => utf8_key(key, "current key"),
        _ => Err(corrupt("current key: wrong keyspace".to_owned())),
    }
}

/// (create_revision, mod_revision) of a live key.
pub(crate) fn encode_current(create_revision: i64, mod_revision: i64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&create_revision.to_be_bytes());
    out[8..].copy_from_slice(&mod_revision.to_be_bytes());
    out
}

pub(crate) fn decode_current(raw: &[u8]) -> Result<(i64, i64), StoreError> {
    let what = "current value";
    Ok((read_i64(raw, 0, what)?, read_i64(raw, 8, what)?))
}

// ---- history keyspace ----

fn escape_into(out: &mut Vec<u8>, key: &[u8]) {
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
}

fn unescape(escaped: &[u8]) -> Result<String, StoreError> {
    let mut out = Vec::with_capacity(escaped.len());
    let mut bytes = escaped.iter();
    while let Some(&b) = bytes.next() {
        out.push(b);
        if b == 0 && bytes.next() != Some(&0xff) {
            return Err(corrupt("history key: bad escape".to_owned()));
        }
    }
    String::from_utf8(out).map_err(|_| corrupt("history key: key is not UTF-8".to_owned()))
}

/// Prefix of every history entry whose key starts with `prefix`.
pub(crate) fn history_prefix(prefix: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + prefix.len());
    out.push(HISTORY);
    escape_into(&mut out, prefix.as_bytes());
    out
}

/// History entry of `key` at `revision`.
pub(crate) fn history_key(key: &str, revision: i64) -> Vec<u8> {
    let mut out = history_prefix(key);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&revision.to_be_bytes());
    out
}

/// Smallest history key strictly after every entry of every key <= `key`.
pub(crate) fn history_key_after(key: &str) -> Vec<u8> {
    let mut out = history_prefix(key);
    out.extend_from_slice(&[0, 1]);
    out
}

/// Splits a history key into (escaped key, revision). The escaped key identifies the user
/// key (escaping is injective), so callers can group entries without unescaping.
pub(crate) fn split_history_key(raw: &[u8]) -> Result<(&[u8], i64), StoreError> {
    let len = raw.len();
    if len < 11 || raw[0] != HISTORY || raw[len - 10..len - 8] != [0, 0] {
        return Err(corrupt(format!("history key of {len} bytes is malformed")));
    }
    let revision = read_i64(raw, len - 8, "history key")?;
    Ok((&raw[1..len - 10], revision))
}

pub(crate) fn history_user_key(escaped: &[u8]) -> Result<String, StoreError> {
    unescape(escaped)
}

pub(crate) fn encode_history(tombstone: bool) -> [u8; 1] {
    [if tombstone { TOMBSTONE } else { PUT }]
}

pub(crate) fn decode_history(raw: &[u8]) -> Result<bool, StoreError> {
    match raw {
        [PUT] => Ok(false),
        [TOMBSTONE] => Ok(true),
        other => Err(corrupt(format!("history value {other:?} is malformed"))),
    }
}

// ---- log keyspace ----

pub(crate) fn log_key(revision: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(LOG);
    out.extend_from_slice(&revision.to_be_bytes());
    out
}

pub(crate) fn decode_log_key(raw: &[u8]) -> Result<i64, StoreError> {
    if raw.len() != 9 || raw[0] != LOG {
        return Err(corrupt(format!(
            "log key of {} bytes is malformed",
            raw.len()
        )));
    }
    read_i64(raw, 1, "log key")
}

/// One log entry: a write at some revision.
pub(crate) struct LogRecord {
    pub(crate) kind: EventKind,
    pub(crate) create_revision: i64,
    pub(crate) key: String,
    /// Empty for deletions.
    pub(crate) value: Bytes,
}

const LOG_HEADER: usize = 1 + 8 + 4;

pub(crate) fn encode_log(
    kind: EventKind,
    create_revision: i64,
    key: &str,
    value: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(LOG_HEADER + key.len() + value.len());
    out.push(match kind {
        EventKind::Create => 0,
        EventKind::Update => 1,
        EventKind::Delete => 2,
    });
    out.extend_from_slice(&create_revision.to_be_bytes());
    // Keys are far below 4 GiB (sled could not store them otherwise).
    out.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(value);
    out
}

/// Decodes everything but the value: (kind, create_revision, key, value offset).
fn decode_log_header(raw: &[u8]) -> Result<(EventKind, i64, String, usize), StoreError> {
    let kind = match raw.first() {
        Some(0) => EventKind::Create,
        Some(1) => EventKind::Update,
        Some(2) => EventKind::Delete,
        other => return Err(corrupt(format!("log value: unknown kind {other:?}"))),
    };
    let create_revision = read_i64(raw, 1, "log value")?;
    let key_len = raw
        .get(9..LOG_HEADER)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .and_then(|len| usize::try_from(len).ok())
        .ok_or_else(|| corrupt("log value: truncated header".to_owned()))?;
    let key_end = LOG_HEADER
        .checked_add(key_len)
        .filter(|end| *end <= raw.len())
        .ok_or_else(|| corrupt("log value: truncated key".to_owned()))?;
    let key = utf8_key(&raw[LOG_HEADER..key_end], "log value")?;
    Ok((kind, create_revision, key, key_end))
}

/// (kind, key) of a log entry, without copying its value.
pub(crate) fn decode_log_key_of(raw: &[u8]) -> Result<(EventKind, String), StoreError> {
    let (kind, _, key, _) = decode_log_header(raw)?;
    Ok((kind, key))
}

pub(crate) fn decode_log(raw: &[u8]) -> Result<LogRecord, StoreError> {
    let (kind, create_revision, key, value_at) = decode_log_header(raw)?;
    Ok(LogRecord {
        kind,
        create_revision,
        key,
        value: Bytes::copy_from_slice(&raw[value_at..]),
    })
}

// ---- meta keyspace ----

pub(crate) fn encode_meta(value: i64) -> [u8; 8] {
    value.to_be_bytes()
}

pub(crate) fn decode_meta(name: &[u8], raw: &[u8]) -> Result<i64, StoreError> {
    read_i64(raw, 0, &format!("meta {}", String::from_utf8_lossy(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keys_sort_like_user_keys_then_revisions() {
        let keys = ["", "a", "a\0", "a\0b", "a\u{1}", "ab", "b"];
        let mut encoded = Vec::new();
        for key in keys {
            for rev in [1, 2, 300] {
                encoded.push((history_key(key, rev), key, rev));
            }
        }
        let mut sorted = encoded.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(encoded, sorted, "history order must be (key, revision)");
        for (raw, key, rev) in &encoded {
            let (escaped, got_rev) = split_history_key(raw).expect("well-formed");
            assert_eq!(history_user_key(escaped).expect("escaped"), *key);
            assert_eq!(got_rev, *rev);
        }
    }

    #[test]
    fn history_prefix_and_start_after_bounds() {
        // Every version of every key extending the prefix starts with the prefix encoding,
        // keys that merely sort after it do not.
        let p = history_prefix("a\0");
        assert!(history_key("a\0", 5).starts_with(&p));
        assert!(history_key("a\0z", 5).starts_with(&p));
        assert!(!history_key("a", 5).starts_with(&p));
        assert!(!history_key("a\u{1}", 5).starts_with(&p));
        // `after(k)` sorts after all versions of k and before all versions of any key > k.
        let after = history_key_after("a");
        assert!(history_key("a", i64::MAX) < after);
        assert!(after < history_key("a\0", 0));
        assert!(after < history_key("a\u{1}", 0));
    }

    #[test]
    fn log_records_round_trip() {
        let raw = encode_log(EventKind::Update, 7, "/a\0b", b"\0value");
        let record = decode_log(&raw).expect("decode");
        assert_eq!(record.kind, EventKind::Update);
        assert_eq!(record.create_revision, 7);
        assert_eq!(record.key, "/a\0b");
        assert_eq!(&record.value[..], b"\0value");
        assert_eq!(
            decode_current(&encode_current(3, 9)).expect("decode"),
            (3, 9)
        );
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        assert!(decode_current(&[1, 2, 3]).is_err());
        assert!(decode_history(&[]).is_err());
        assert!(decode_history(&[0, 1]).is_err());
        assert!(decode_history(&[9]).is_err());
        assert!(split_history_key(b"h").is_err());
        assert!(decode_log_key(b"l12").is_err());
        assert!(decode_log(&[7, b'a']).is_err());
        let good = encode_log(EventKind::Update, 3, "/k", b"value");
        for cut in 0..LOG_HEADER + 2 {
            assert!(decode_log(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_utf8 = encode_log(EventKind::Create, 1, "/k", b"");
        bad_utf8[LOG_HEADER + 1] = 0xff;
        assert!(decode_log(&bad_utf8).is_err());
        assert!(unescape(&[b'a', 0, b'b']).is_err());
    }
}
