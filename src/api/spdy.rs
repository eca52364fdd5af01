//! SPDY/3.1 framing, the server side of what `kubectl port-forward` speaks (moby's
//! spdystream, as client-go uses it): decoding and encoding frames, and the header blocks
//! zlib-compressed with SPDY/3's preset dictionary (one compression context per
//! direction for the whole connection).
//!
//! Only what a port-forward session needs is modelled: SYN_STREAM, SYN_REPLY, RST_STREAM,
//! SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE and DATA. spdystream does no flow
//! control, so WINDOW_UPDATE is parsed and ignored by the session, never sent.

use std::sync::OnceLock;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;
/// FIN on a DATA, SYN_STREAM, SYN_REPLY or HEADERS frame: the sender's half is closed.
pub const FLAG_FIN: u8 = 0x01;
/// The largest payload a frame can carry (a 24-bit length).
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;
/// The largest header block (uncompressed) accepted from a peer.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// RST_STREAM status codes (SPDY/3 section 2.6.3).
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const CANCEL: u32 = 5;
}

/// GOAWAY status codes.
pub mod goaway {
    pub const OK: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
}

mod kind {
    pub const SYN_STREAM: u16 = 1;
    pub const SYN_REPLY: u16 = 2;
    pub const RST_STREAM: u16 = 3;
    pub const SETTINGS: u16 = 4;
    pub const PING: u16 = 6;
    pub const GOAWAY: u16 = 7;
    pub const HEADERS: u16 = 8;
    pub const WINDOW_UPDATE: u16 = 9;
}

/// What can go wrong reading or writing frames.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("unsupported SPDY version {0} (only 3 is spoken)")]
    Version(u16),
    #[error("{what} frame of {len} bytes is malformed")]
    Malformed { what: &'static str, len: usize },
    #[error("header block: {0}")]
    HeaderBlock(String),
    #[error("header compression: {0}")]
    Compression(String),
}

/// Header name/value pairs; names are lower case, several values of one name are joined
/// by NUL, as on the wire.
pub type Headers = Vec<(String, String)>;

/// The first value of header `name` (lower case).
pub fn header<'h>(headers: &'h Headers, name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.split('\0').next().unwrap_or_default())
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        /// (flags, id, value)
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame of a type this module does not know (skipped, as the spec says).
    Unknown {
        kind: u16,
    },
}

/// The header names and values SPDY/3 primes both zlib contexts with: each name is
/// written with its 32-bit length, then the text block follows as is.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

const DICTIONARY_TEXT: &str = concat!(
    "100101201202205206300302303304305306307",
    "402405406407408409410411412413414415416417",
    "502504505",
    "203 Non-Authoritative Information",
    "204 No Content",
    "301 Moved Permanently",
    "400 Bad Request",
    "401 Unauthorized",
    "403 Forbidden",
    "404 Not Found",
    "500 Internal Server Error",
    "501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec",
    " 00:00:00",
    " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,",
    "application/xhtml+xml,text/plain,text/javascript,",
    "publicprivatemax-age=gzip,deflate,sdch",
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// SPDY/3's zlib dictionary for header blocks.
pub fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        let mut d = Vec::with_capacity(1423);
        for w in DICTIONARY_WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(DICTIONARY_TEXT.as_bytes());
        d
    })
}

/// Reads frames from a byte stream; holds the peer's header decompression context.
pub struct Decoder {
    inflate: Decompress,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder {
            inflate: Decompress::new(true),
        }
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Decoder {
    /// The next whole frame at the front of `buf` (consumed), or `None` when more bytes
    /// are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = (be32(&buf[4..8]) & 0x00ff_ffff) as usize;
        if buf.len() < 8 + len {
            buf.reserve(8 + len - buf.len());
            return Ok(None);
        }
        let head = buf.split_to(8);
        let payload = buf.split_to(len).freeze();
        let flags = head[4];
        if head[0] & 0x80 == 0 {
            return Ok(Some(Frame::Data {
                stream_id: be32(&head[0..4]) & 0x7fff_ffff,
                flags,
                data: payload,
            }));
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let frame_kind = u16::from_be_bytes([head[2], head[3]]);
        let malformed = |what| SpdyError::Malformed { what, len };
        let p = &payload[..];
        Ok(Some(match frame_kind {
            kind::SYN_STREAM => {
                if len < 10 {
                    return Err(malformed("SYN_STREAM"));
                }
                Frame::SynStream {
                    stream_id: be32(&p[0..4]) & 0x7fff_ffff,
                    associated_to: be32(&p[4..8]) & 0x7fff_ffff,
                    priority: p[8] >> 5,
                    flags,
                    headers: self.headers(&p[10..])?,
                }
            }
            kind::SYN_REPLY | kind::HEADERS => {
                if len < 4 {
                    return Err(malformed("SYN_REPLY/HEADERS"));
                }
                let stream_id = be32(&p[0..4]) & 0x7fff_ffff;
                let headers = self.headers(&p[4..])?;
                if frame_kind == kind::SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            kind::RST_STREAM => {
                if len != 8 {
                    return Err(malformed("RST_STREAM"));
                }
                Frame::RstStream {
                    stream_id: be32(&p[0..4]) & 0x7fff_ffff,
                    status: be32(&p[4..8]),
                }
            }
            kind::SETTINGS => {
                if len < 4 {
                    return Err(malformed("SETTINGS"));
                }
                let n = be32(&p[0..4]) as usize;
                if len != 4 + n.saturating_mul(8) {
                    return Err(malformed("SETTINGS"));
                }
                let entries = p[4..]
                    .chunks_exact(8)
                    .map(|e| (e[0], be32(e) & 0x00ff_ffff, be32(&e[4..8])))
                    .collect();
                Frame::Settings { flags, entries }
            }
            kind::PING => {
                if len != 4 {
                    return Err(malformed("PING"));
                }
                Frame::Ping { id: be32(p) }
            }
            kind::GOAWAY => {
                // SPDY/2 peers sent no status; accept both.
                if len != 8 && len != 4 {
                    return Err(malformed("GOAWAY"));
                }
                Frame::GoAway {
                    last_good_stream_id: be32(p) & 0x7fff_ffff,
                    status: if len == 8 { be32(&p[4..8]) } else { 0 },
                }
            }
            kind::WINDOW_UPDATE => {
                if len != 8 {
                    return Err(malformed("WINDOW_UPDATE"));
                }
                Frame::WindowUpdate {
                    stream_id: be32(p) & 0x7fff_ffff,
                    delta: be32(&p[4..8]) & 0x7fff_ffff,
                }
            }
            other => Frame::Unknown { kind: other },
        }))
    }

    /// Inflates one header block (the continuation of the connection's zlib stream,
    /// ended by a sync flush) and parses its pairs.
    fn headers(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        let mut out = Vec::with_capacity(compressed.len() * 4 + 64);
        let mut input = compressed;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::HeaderBlock(format!(
                        "larger than {MAX_HEADER_BLOCK} bytes"
                    )));
                }
                out.reserve(out.len().max(256));
            }
            let before_in = self.inflate.total_in();
            let before_out = out.len();
            let result = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (self.inflate.total_in() - before_in) as usize;
            input = &input[used.min(input.len())..];
            match result {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {
                    if input.is_empty() && out.len() < out.capacity() {
                        break;
                    }
                    if used == 0 && out.len() == before_out && out.len() < out.capacity() {
                        return Err(SpdyError::Compression(
                            "the header block is truncated".into(),
                        ));
                    }
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(dictionary())
                        .map_err(|e| SpdyError::Compression(e.to_string()))?;
                }
                Err(e) => return Err(SpdyError::Compression(e.to_string())),
            }
        }
        parse_header_block(&out)
    }
}

/// The pairs of an uncompressed header block: a 32-bit count, then per pair a 32-bit
/// length and the name, a 32-bit length and the value.
pub fn parse_header_block(block: &[u8]) -> Result<Headers, SpdyError> {
    let bad = |m: &str| SpdyError::HeaderBlock(m.to_string());
    let mut b = block;
    if b.remaining() < 4 {
        return Err(bad("no pair count"));
    }
    let n = b.get_u32() as usize;
    let mut headers = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let mut field = |what: &str| -> Result<String, SpdyError> {
            if b.remaining() < 4 {
                return Err(bad(&format!("truncated {what} length")));
            }
            let len = b.get_u32() as usize;
            if b.remaining() < len {
                return Err(bad(&format!("truncated {what}")));
            }
            let s = String::from_utf8_lossy(&b[..len]).into_owned();
            b.advance(len);
            Ok(s)
        };
        let name = field("name")?.to_ascii_lowercase();
        let value = field("value")?;
        headers.push((name, value));
    }
    Ok(headers)
}

/// Writes frames; holds our header compression context.
pub struct Encoder {
    deflate: Compress,
}

impl Encoder {
    pub fn new() -> Result<Encoder, SpdyError> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(dictionary())
            .map_err(|e| SpdyError::Compression(e.to_string()))?;
        Ok(Encoder { deflate })
    }

    /// Appends `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
        match frame {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_PAYLOAD {
                    return Err(SpdyError::Malformed {
                        what: "DATA",
                        len: data.len(),
                    });
                }
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32((u32::from(*flags) << 24) | data.len() as u32);
                out.extend_from_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                let block = self.compress(headers)?;
                control(out, kind::SYN_STREAM, *flags, 10 + block.len());
                out.put_u32(*stream_id);
                out.put_u32(*associated_to);
                out.put_u8(priority << 5);
                out.put_u8(0);
                out.extend_from_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            }
            | Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let block = self.compress(headers)?;
                let k = if matches!(frame, Frame::SynReply { .. }) {
                    kind::SYN_REPLY
                } else {
                    kind::HEADERS
                };
                control(out, k, *flags, 4 + block.len());
                out.put_u32(*stream_id);
                out.extend_from_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control(out, kind::RST_STREAM, 0, 8);
                out.put_u32(*stream_id);
                out.put_u32(*status);
            }
            Frame::Settings { flags, entries } => {
                control(out, kind::SETTINGS, *flags, 4 + 8 * entries.len());
                out.put_u32(entries.len() as u32);
                for (f, id, value) in entries {
                    out.put_u32((u32::from(*f) << 24) | (id & 0x00ff_ffff));
                    out.put_u32(*value);
                }
            }
            Frame::Ping { id } => {
                control(out, kind::PING, 0, 4);
                out.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control(out, kind::GOAWAY, 0, 8);
                out.put_u32(*last_good_stream_id);
                out.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control(out, kind::WINDOW_UPDATE, 0, 8);
                out.put_u32(*stream_id);
                out.put_u32(*delta);
            }
            Frame::Unknown { .. } => {
                return Err(SpdyError::Malformed {
                    what: "unknown control",
                    len: 0,
                })
            }
        }
        Ok(())
    }

    fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut block = Vec::new();
        block.put_u32(headers.len() as u32);
        for (name, value) in headers {
            block.put_u32(name.len() as u32);
            block.extend_from_slice(name.to_ascii_lowercase().as_bytes());
            block.put_u32(value.len() as u32);
            block.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut input = &block[..];
        loop {
            if out.len() == out.capacity() {
                out.reserve(256);
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            let used = (self.deflate.total_in() - before) as usize;
            input = &input[used.min(input.len())..];
            // Done once all input is in and the flush left room to spare.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        Ok(out)
    }
}

fn control(out: &mut BytesMut, k: u16, flags: u8, len: usize) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(k);
    out.put_u32((u32::from(flags) << 24) | (len as u32 & 0x00ff_ffff));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's encoder as spdystream builds it: its own zlib context primed with the
    /// dictionary, best compression, a sync flush after every header block.
    struct GoClient {
        deflate: Compress,
    }

    impl GoClient {
        fn new() -> GoClient {
            let mut deflate = Compress::new(Compression::best(), true);
            deflate.set_dictionary(dictionary()).expect("dictionary");
            GoClient { deflate }
        }

        /// A SYN_STREAM laid out as spdystream's `writeSynStreamFrame` does.
        fn syn_stream(&mut self, id: u32, headers: &[(&str, &str)]) -> Vec<u8> {
            let mut block = Vec::new();
            block.put_u32(headers.len() as u32);
            for (n, v) in headers {
                block.put_u32(n.len() as u32);
                block.extend_from_slice(n.to_ascii_lowercase().as_bytes());
                block.put_u32(v.len() as u32);
                block.extend_from_slice(v.as_bytes());
            }
            let mut z = Vec::with_capacity(block.len() + 256);
            self.deflate
                .compress_vec(&block, &mut z, FlushCompress::Sync)
                .expect("compress");
            let mut f = Vec::new();
            f.put_u16(0x8003);
            f.put_u16(1);
            f.put_u32(10 + z.len() as u32);
            f.put_u32(id);
            f.put_u32(0);
            f.put_u8(0);
            f.put_u8(0);
            f.extend_from_slice(&z);
            f
        }
    }

    #[test]
    fn the_dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        let mut c = Compress::new(Compression::default(), true);
        // set_dictionary answers the dictionary's Adler-32, the id a zlib header names.
        assert_eq!(c.set_dictionary(d).expect("dictionary"), 0xe3c6_a7c2);
    }

    #[test]
    fn a_clients_syn_streams_decode_with_headers_across_one_zlib_stream() {
        let mut client = GoClient::new();
        let mut wire = BytesMut::new();
        for (id, ty) in [(1u32, "error"), (3, "data")] {
            wire.extend_from_slice(&client.syn_stream(
                id,
                &[("streamType", ty), ("port", "80"), ("requestID", "0")],
            ));
        }
        // A DATA frame with FIN, a PING and a RST_STREAM (Cancel), as spdystream writes them.
        wire.extend_from_slice(&[0, 0, 0, 1, 1, 0, 0, 0]);
        wire.extend_from_slice(&[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]);
        wire.extend_from_slice(&[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 5]);
        let mut dec = Decoder::default();
        // Fed a byte at a time, as a WebSocket or TCP stream may cut it.
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for b in wire.iter() {
            buf.put_u8(*b);
            while let Some(f) = dec.decode(&mut buf).expect("decode") {
                frames.push(f);
            }
        }
        assert_eq!(frames.len(), 5, "{frames:?}");
        match &frames[1] {
            Frame::SynStream {
                stream_id, headers, ..
            } => {
                assert_eq!(*stream_id, 3);
                assert_eq!(header(headers, "streamtype"), Some("data"));
                assert_eq!(header(headers, "port"), Some("80"));
                assert_eq!(header(headers, "requestid"), Some("0"));
            }
            other => panic!("not a SYN_STREAM: {other:?}"),
        }
        assert_eq!(
            frames[2],
            Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: Bytes::new()
            }
        );
        assert_eq!(frames[3], Frame::Ping { id: 1 });
        assert_eq!(
            frames[4],
            Frame::RstStream {
                stream_id: 3,
                status: rst::CANCEL
            }
        );
    }

    #[test]
    fn what_we_encode_decodes_again() {
        let mut enc = Encoder::new().expect("encoder");
        let mut dec = Decoder::default();
        let mut buf = BytesMut::new();
        let frames = vec![
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: vec![],
            },
            Frame::SynReply {
                stream_id: 3,
                flags: 0,
                headers: vec![("x-a".into(), "b\0c".into())],
            },
            Frame::Data {
                stream_id: 3,
                flags: 0,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Bytes::new(),
            },
            Frame::GoAway {
                last_good_stream_id: 3,
                status: goaway::OK,
            },
            Frame::Settings {
                flags: 0,
                entries: vec![(0, 7, 65536)],
            },
            Frame::WindowUpdate {
                stream_id: 3,
                delta: 1000,
            },
        ];
        for f in &frames {
            enc.encode(f, &mut buf).expect("encode");
        }
        let mut back = Vec::new();
        while let Some(f) = dec.decode(&mut buf).expect("decode") {
            back.push(f);
        }
        assert_eq!(back, frames);
        assert!(buf.is_empty());
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let mut dec = Decoder::default();
        let mut v2 = BytesMut::from(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(matches!(dec.decode(&mut v2), Err(SpdyError::Version(2))));
        let mut short_ping = BytesMut::from(&[0x80, 3, 0, 6, 0, 0, 0, 2, 0, 1][..]);
        assert!(dec.decode(&mut short_ping).is_err());
        let mut garbage_headers =
            BytesMut::from(&[0x80, 3, 0, 2, 0, 0, 0, 8, 0, 0, 0, 1, 1, 2, 3, 4][..]);
        assert!(dec.decode(&mut garbage_headers).is_err());
        assert!(parse_header_block(&[0, 0, 0, 2, 0, 0, 0, 9, b'a']).is_err());
    }
}
