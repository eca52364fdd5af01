//! Protobuf wire-format primitives: a bounds-checked reader over a byte slice.

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
