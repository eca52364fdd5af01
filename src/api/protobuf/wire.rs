//! Protobuf wire-format primitives: a bounds-checked reader over a byte slice,
//! and a writer that appends fields to a byte vector.

/// Wire types used by Kubernetes (groups, wire types 3 and 4, are rejected).
pub(crate) const VARINT: u8 = 0;
pub(crate) const FIXED64: u8 = 1;
pub(crate) const LEN: u8 = 2;
pub(crate) const FIXED32: u8 = 5;

/// A low-level decoding failure; the caller adds type/field context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireError {
    Truncated,
    VarintTooLong,
    BadTag,
    BadWireType(u8),
}

impl WireError {
    pub(crate) fn describe(self) -> String {
        match self {
            WireError::Truncated => "truncated input".to_string(),
            WireError::VarintTooLong => "varint longer than 10 bytes".to_string(),
            WireError::BadTag => "invalid field number".to_string(),
            WireError::BadWireType(w) => format!("unsupported wire type {w}"),
        }
    }
}

/// Reads protobuf primitives from a slice; never panics, never reads past the end.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for (i, &b) in self.buf.iter().enumerate().take(10) {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        if self.buf.len() >= 10 {
            Err(WireError::VarintTooLong)
        } else {
            Err(WireError::Truncated)
        }
    }

    /// Reads a field key: (field number, wire type).
    pub(crate) fn key(&mut self) -> Result<(u32, u8), WireError> {
        let k = self.varint()?;
        let tag = k >> 3;
        let wt = (k & 7) as u8;
        if tag == 0 || tag > 0x1fff_ffff {
            return Err(WireError::BadTag);
        }
        match wt {
            VARINT | FIXED64 | LEN | FIXED32 => Ok((tag as u32, wt)),
            other => Err(WireError::BadWireType(other)),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Reads a length-delimited payload.
    pub(crate) fn len_delimited(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| WireError::Truncated)?;
        self.take(n)
    }

    pub(crate) fn fixed64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Skips the payload of a field with wire type `wt`.
    pub(crate) fn skip(&mut self, wt: u8) -> Result<(), WireError> {
        match wt {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.len_delimited().map(drop),
            FIXED32 => self.take(4).map(drop),
            other => Err(WireError::BadWireType(other)),
        }
    }
}

/// Appends protobuf fields to a byte vector, proto3 style: the scalar helpers
/// skip default values (empty strings, `false`, zero), as a proto3 encoder
/// leaves them out; [`message`](Self::message) always writes the field, so an
/// empty but present message stays present.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Writer::default()
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn raw_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.raw_varint((u64::from(field) << 3) | u64::from(wire_type));
    }

    /// A varint field (`int64`, `uint64`, `bool`, enums); zero is skipped.
    pub(crate) fn varint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, VARINT);
            self.raw_varint(v);
        }
    }

    /// A varint field written even when zero (a `oneof` member, whose presence
    /// is the information).
    pub(crate) fn varint_always(&mut self, field: u32, v: u64) {
        self.key(field, VARINT);
        self.raw_varint(v);
    }

    /// An `int64` field; negative values take ten bytes, as protobuf specifies.
    pub(crate) fn int64(&mut self, field: u32, v: i64) {
        self.varint(field, v as u64);
    }

    pub(crate) fn bool(&mut self, field: u32, v: bool) {
        self.varint(field, u64::from(v));
    }

    /// A `double` field; `0.0` is skipped.
    pub(crate) fn double(&mut self, field: u32, v: f64) {
        if v != 0.0 {
            self.key(field, FIXED64);
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// A `bytes` field, written even when empty (for repeated fields, where an
    /// empty element is still an element).
    pub(crate) fn bytes_always(&mut self, field: u32, v: &[u8]) {
        self.key(field, LEN);
        self.raw_varint(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    /// A `string` field; the empty string is skipped.
    pub(crate) fn string(&mut self, field: u32, v: &str) {
        if !v.is_empty() {
            self.bytes_always(field, v.as_bytes());
        }
    }

    /// One element of a `repeated string` field (written even when empty).
    pub(crate) fn repeated_string(&mut self, field: u32, v: &str) {
        self.bytes_always(field, v.as_bytes());
    }

    /// An embedded message: `body` writes its fields into a fresh writer whose
    /// bytes become this field's payload.
    pub(crate) fn message(&mut self, field: u32, body: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::new();
        body(&mut inner);
        self.bytes_always(field, &inner.buf);
    }
}
