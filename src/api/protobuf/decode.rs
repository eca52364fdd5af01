//! The schema-driven decoder: protobuf wire data → `serde_json::Value`.

use std::cmp::Ordering;

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::schema::{GROUPS, KINDS, TYPES};
use super::schema_types::{Card, Field, Msg, Special, Ty};
use super::wire::{Reader, WireError, FIXED64, LEN, VARINT};
use super::{ProtobufError, CONTENT_TYPE, MAGIC, MAX_DEPTH};

const UNKNOWN: &str = "runtime.Unknown";
const META_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
/// Unix seconds of Go's zero `time.Time` (0001-01-01T00:00:00Z).
const GO_ZERO_TIME: i64 = -62_135_596_800;

fn malformed(ty: &'static str, field: &'static str, e: WireError) -> ProtobufError {
    ProtobufError::Malformed {
        ty,
        field,
        reason: e.describe(),
    }
}

fn invalid(ty: &'static str, field: &'static str, reason: impl Into<String>) -> ProtobufError {
    ProtobufError::InvalidValue {
        ty,
        field,
        reason: reason.into(),
    }
}

fn utf8(ty: &'static str, field: &'static str, b: &[u8]) -> Result<String, ProtobufError> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|e| invalid(ty, field, format!("invalid UTF-8 in string: {e}")))
}

// ------------------------------------------------------------------ lookups

pub(super) fn type_name(idx: u16) -> &'static str {
    TYPES.get(usize::from(idx)).map_or("?", |m| m.name)
}

fn cmp_ignore_case(a: &str, b: &str) -> Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

/// Index of a message type by full proto name (ASCII case-insensitive).
pub(super) fn type_by_name(name: &str) -> Option<u16> {
    let i = TYPES
        .binary_search_by(|m| cmp_ignore_case(m.name, name))
        .ok()?;
    u16::try_from(i).ok()
}

/// Index of the message type for an apiVersion/kind: the resources of the
/// schema first, then `<group package>.<version>.<kind>` (e.g. list and
/// subresource kinds), then meta/v1 (`DeleteOptions`, `Status`, …).
pub(super) fn type_for_kind(api_version: &str, kind: &str) -> Option<u16> {
    if let Ok(i) = KINDS.binary_search_by(|(a, k, _)| (*a, *k).cmp(&(api_version, kind))) {
        return KINDS.get(i).map(|r| r.2);
    }
    if kind.is_empty() || !kind.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    if let Ok(i) = GROUPS.binary_search_by(|(g, _)| (*g).cmp(group)) {
        if let Some((_, prefix)) = GROUPS.get(i) {
            if let Some(t) = type_by_name(&format!("{prefix}.{version}.{kind}")) {
                return Some(t);
            }
        }
    }
    type_by_name(&format!("{META_V1}.{kind}"))
}

// ------------------------------------------------------------------ envelope

/// Decodes `k8s\0` + runtime.Unknown (`depth` > 0 for envelopes nested in a
/// RawExtension).
pub(super) fn decode_envelope(body: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    let rest = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or(ProtobufError::MissingMagic)?;
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep {
            ty: UNKNOWN,
            limit: MAX_DEPTH,
        });
    }
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut content_encoding = String::new();
    let mut content_type = String::new();
    let mut r = Reader::new(rest);
    while !r.is_empty() {
        let (tag, wt) = r.key().map_err(|e| malformed(UNKNOWN, "?", e))?;
        let field = match tag {
            1 => "typeMeta",
            2 => "raw",
            3 => "contentEncoding",
            4 => "contentType",
            _ => {
                r.skip(wt).map_err(|e| malformed(UNKNOWN, "?", e))?;
                continue;
            }
        };
        if wt != LEN {
            return Err(malformed(UNKNOWN, field, WireError::BadWireType(wt)));
        }
        let b = r
            .len_delimited()
            .map_err(|e| malformed(UNKNOWN, field, e))?;
        match tag {
            1 => {
                let mut tm = Reader::new(b);
                while !tm.is_empty() {
                    let err = |e| malformed("runtime.TypeMeta", "?", e);
                    let (t, w) = tm.key().map_err(err)?;
                    if (t == 1 || t == 2) && w == LEN {
                        let s = tm.len_delimited().map_err(err)?;
                        if t == 1 {
                            api_version = utf8("runtime.TypeMeta", "apiVersion", s)?;
                        } else {
                            kind = utf8("runtime.TypeMeta", "kind", s)?;
                        }
                    } else {
                        tm.skip(w).map_err(err)?;
                    }
                }
            }
            2 => raw = b,
            3 => content_encoding = utf8(UNKNOWN, field, b)?,
            _ => content_type = utf8(UNKNOWN, field, b)?,
        }
    }
    if !content_encoding.is_empty() {
        return Err(ProtobufError::Unsupported {
            what: "contentEncoding",
            value: content_encoding,
        });
    }
    let mut obj = match content_type.as_str() {
        "" | CONTENT_TYPE => {
            let idx =
                type_for_kind(&api_version, &kind).ok_or_else(|| ProtobufError::UnknownKind {
                    api_version: api_version.clone(),
                    kind: kind.clone(),
                })?;
            decode_msg(idx, raw, depth + 1)?
        }
        "application/json" => serde_json::from_slice(raw)
            .map_err(|e| invalid(UNKNOWN, "raw", format!("invalid JSON: {e}")))?,
        _ => {
            return Err(ProtobufError::Unsupported {
                what: "contentType",
                value: content_type,
            })
        }
    };
    // kind and apiVersion first, like Go's JSON of a TypeMeta-embedding struct.
    let mut out = Map::new();
    if !kind.is_empty() {
        out.insert("kind".into(), Value::String(kind));
    }
    if !api_version.is_empty() {
        out.insert("apiVersion".into(), Value::String(api_version));
    }
    match obj {
        Value::Object(ref mut m) => {
            for (k, v) in std::mem::take(m) {
                if !out.contains_key(&k) {
                    out.insert(k, v);
                }
            }
            Ok(Value::Object(out))
        }
        other => Err(invalid(
            UNKNOWN,
            "raw",
            format!("expected an object, got {other}"),
        )),
    }
}

// ------------------------------------------------------------------ messages

/// Per-field accumulator while scanning one message.
enum Slot<'a> {
    Empty,
    /// Last value of a singular scalar.
    Scalar(Value),
    /// Occurrences of a singular message field (protobuf merges them, which
    /// equals decoding their concatenation).
    Chunks(Vec<&'a [u8]>),
    List(Vec<Value>),
    Map(Map<String, Value>),
}

/// Decodes message `idx` from `bytes` into its JSON form.
pub(super) fn decode_msg(idx: u16, bytes: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    let msg = TYPES
        .get(usize::from(idx))
        .ok_or_else(|| ProtobufError::UnknownType(format!("#{idx}")))?;
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep {
            ty: msg.name,
            limit: MAX_DEPTH,
        });
    }
    match msg.special {
        Special::None => decode_object(msg, bytes, depth).map(Value::Object),
        Special::Time => decode_time(msg, bytes, depth, false),
        Special::MicroTime => decode_time(msg, bytes, depth, true),
        Special::Duration => {
            let ns = int_field(msg, &decode_object(msg, bytes, depth)?, 1);
            Ok(Value::String(go_duration(ns)))
        }
        Special::Quantity => {
            let obj = decode_object(msg, bytes, depth)?;
            Ok(field_value(msg, &obj, 1)
                .cloned()
                .unwrap_or_else(|| Value::String("0".into())))
        }
        Special::IntOrString => {
            let obj = decode_object(msg, bytes, depth)?;
            match int_field(msg, &obj, 1) {
                0 => Ok(Value::from(int_field(msg, &obj, 2))),
                1 => Ok(field_value(msg, &obj, 3)
                    .cloned()
                    .unwrap_or_else(|| Value::String(String::new()))),
                t => Err(invalid(
                    msg.name,
                    "type",
                    format!("unknown IntOrString type {t}"),
                )),
            }
        }
        Special::RawJson | Special::RawExtension => {
            let raw = raw_bytes(msg, bytes)?;
            if raw.is_empty() {
                Ok(Value::Null)
            } else if msg.special == Special::RawExtension && raw.starts_with(MAGIC) {
                decode_envelope(raw, depth + 1)
            } else {
                serde_json::from_slice(raw)
                    .map_err(|e| invalid(msg.name, "raw", format!("invalid embedded JSON: {e}")))
            }
        }
        Special::SchemaOrArray => {
            let obj = decode_object(msg, bytes, depth)?;
            Ok(non_empty_array(msg, &obj, 2)
                .or_else(|| field_value(msg, &obj, 1).cloned())
                .unwrap_or(Value::Null))
        }
        Special::SchemaOrBool => {
            let obj = decode_object(msg, bytes, depth)?;
            Ok(field_value(msg, &obj, 2).cloned().unwrap_or_else(|| {
                Value::Bool(matches!(field_value(msg, &obj, 1), Some(Value::Bool(true))))
            }))
        }
        Special::SchemaOrStringArray => {
            let obj = decode_object(msg, bytes, depth)?;
            Ok(non_empty_array(msg, &obj, 2)
                .or_else(|| field_value(msg, &obj, 1).cloned())
                .unwrap_or(Value::Null))
        }
        Special::StringList => {
            let obj = decode_object(msg, bytes, depth)?;
            Ok(field_value(msg, &obj, 1)
                .cloned()
                .unwrap_or_else(|| Value::Array(Vec::new())))
        }
    }
}

fn field_by_tag(msg: &Msg, tag: u32) -> Option<&'static Field> {
    let fields: &'static [Field] = msg.fields;
    fields
        .binary_search_by_key(&tag, |f| f.0)
        .ok()
        .and_then(|i| fields.get(i))
}

fn field_value<'o>(msg: &Msg, obj: &'o Map<String, Value>, tag: u32) -> Option<&'o Value> {
    field_by_tag(msg, tag).and_then(|f| obj.get(f.1))
}

fn int_field(msg: &Msg, obj: &Map<String, Value>, tag: u32) -> i64 {
    field_value(msg, obj, tag)
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn non_empty_array(msg: &Msg, obj: &Map<String, Value>, tag: u32) -> Option<Value> {
    match field_value(msg, obj, tag) {
        Some(Value::Array(a)) if !a.is_empty() => Some(Value::Array(a.clone())),
        _ => None,
    }
}

/// The last `raw` (tag 1) payload of a RawExtension/FieldsV1/JSON message.
fn raw_bytes<'a>(msg: &Msg, bytes: &'a [u8]) -> Result<&'a [u8], ProtobufError> {
    let mut raw: &[u8] = &[];
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        let (tag, wt) = r.key().map_err(|e| malformed(msg.name, "raw", e))?;
        if tag == 1 && wt == LEN {
            raw = r
                .len_delimited()
                .map_err(|e| malformed(msg.name, "raw", e))?;
        } else if tag == 1 {
            return Err(malformed(msg.name, "raw", WireError::BadWireType(wt)));
        } else {
            tracing::warn!(ty = msg.name, tag, "skipping unknown protobuf field");
            r.skip(wt).map_err(|e| malformed(msg.name, "?", e))?;
        }
    }
    Ok(raw)
}

fn decode_time(
    msg: &'static Msg,
    bytes: &[u8],
    depth: usize,
    micro: bool,
) -> Result<Value, ProtobufError> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    let obj = decode_object(msg, bytes, depth)?;
    let seconds = int_field(msg, &obj, 1);
    // metav1.Time keeps whole seconds only (its Unmarshal drops nanos).
    let nanos = if micro { int_field(msg, &obj, 2) } else { 0 };
    if seconds == GO_ZERO_TIME && nanos == 0 {
        return Ok(Value::Null);
    }
    let nanos = u32::try_from(nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| invalid(msg.name, "nanos", format!("out of range: {nanos}")))?;
    let t = chrono::DateTime::from_timestamp(seconds, nanos)
        .filter(|t| (0..=9999).contains(&chrono::Datelike::year(t)))
        .ok_or_else(|| invalid(msg.name, "seconds", format!("out of range: {seconds}")))?;
    let format = if micro {
        chrono::SecondsFormat::Micros
    } else {
        chrono::SecondsFormat::Secs
    };
    Ok(Value::String(t.to_rfc3339_opts(format, true)))
}

/// Go's `time.Duration.String()`.
pub(super) fn go_duration(d: i64) -> String {
    fn frac(v: u64, prec: u32) -> String {
        let s = format!("{:0width$}", v, width = prec as usize);
        let s = s.trim_end_matches('0');
        if s.is_empty() {
            String::new()
        } else {
            format!(".{s}")
        }
    }
    let u = d.unsigned_abs();
    let sign = if d < 0 { "-" } else { "" };
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000_000_000 {
        let (unit, prec) = match u {
            0..=999 => ("ns", 0),
            1_000..=999_999 => ("µs", 3),
            _ => ("ms", 6),
        };
        let p = 10u64.pow(prec);
        return format!("{sign}{}{}{unit}", u / p, frac(u % p, prec));
    }
    let secs = u / 1_000_000_000;
    let f = frac(u % 1_000_000_000, 9);
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        format!("{sign}{h}h{m}m{s}{f}s")
    } else if m > 0 {
        format!("{sign}{m}m{s}{f}s")
    } else {
        format!("{sign}{s}{f}s")
    }
}

/// Decodes an ordinary message into a JSON object.
fn decode_object(
    msg: &'static Msg,
    bytes: &[u8],
    depth: usize,
) -> Result<Map<String, Value>, ProtobufError> {
    let fields: &'static [Field] = msg.fields;
    let mut slots: Vec<Slot<'_>> = fields.iter().map(|_| Slot::Empty).collect();
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        let (tag, wt) = r.key().map_err(|e| malformed(msg.name, "?", e))?;
        let Ok(i) = fields.binary_search_by_key(&tag, |f| f.0) else {
            tracing::warn!(
                ty = msg.name,
                tag,
                wire_type = wt,
                "skipping unknown protobuf field"
            );
            r.skip(wt).map_err(|e| malformed(msg.name, "?", e))?;
            continue;
        };
        let (Some(field), Some(slot)) = (fields.get(i), slots.get_mut(i)) else {
            continue;
        };
        let Field(_, name, ty, card) = *field;
        let err = |e| malformed(msg.name, name, e);
        match card {
            Card::Opt | Card::OmitZero | Card::Inline => {
                if let Ty::M(_) = ty {
                    check_wire(msg, name, ty, wt)?;
                    let b = r.len_delimited().map_err(err)?;
                    match slot {
                        Slot::Chunks(c) => c.push(b),
                        _ => *slot = Slot::Chunks(vec![b]),
                    }
                } else {
                    *slot = Slot::Scalar(read_scalar(msg, name, ty, wt, &mut r)?);
                }
            }
            Card::Rep => {
                if !matches!(slot, Slot::List(_)) {
                    *slot = Slot::List(Vec::new());
                }
                let Slot::List(list) = slot else { continue };
                match ty {
                    Ty::M(t) => {
                        check_wire(msg, name, ty, wt)?;
                        let b = r.len_delimited().map_err(err)?;
                        list.push(decode_msg(t, b, depth + 1)?);
                    }
                    Ty::I32 | Ty::I64 | Ty::Bool | Ty::F64 if wt == LEN => {
                        // packed encoding
                        let mut p = Reader::new(r.len_delimited().map_err(err)?);
                        let pwt = if ty == Ty::F64 { FIXED64 } else { VARINT };
                        while !p.is_empty() {
                            list.push(read_scalar(msg, name, ty, pwt, &mut p)?);
                        }
                    }
                    _ => list.push(read_scalar(msg, name, ty, wt, &mut r)?),
                }
            }
            Card::Map => {
                if wt != LEN {
                    return Err(err(WireError::BadWireType(wt)));
                }
                let entry = r.len_delimited().map_err(err)?;
                let (k, v) = decode_map_entry(msg, name, ty, entry, depth)?;
                if !matches!(slot, Slot::Map(_)) {
                    *slot = Slot::Map(Map::new());
                }
                if let Slot::Map(m) = slot {
                    m.insert(k, v);
                }
            }
        }
    }

    let mut out = Map::new();
    for (field, slot) in fields.iter().zip(slots) {
        let Field(_, name, ty, card) = *field;
        match slot {
            Slot::Empty => {}
            Slot::Scalar(v) => {
                if !(card == Card::OmitZero && is_zero(&v)) {
                    out.insert(name.to_string(), v);
                }
            }
            Slot::Chunks(chunks) => {
                let Ty::M(t) = ty else { continue };
                let v = if let [one] = chunks.as_slice() {
                    decode_msg(t, one, depth + 1)?
                } else {
                    decode_msg(t, &chunks.concat(), depth + 1)?
                };
                if card == Card::Inline {
                    if let Value::Object(m) = v {
                        out.extend(m);
                    }
                } else {
                    out.insert(name.to_string(), v);
                }
            }
            Slot::List(list) => {
                if !list.is_empty() {
                    out.insert(name.to_string(), Value::Array(list));
                }
            }
            Slot::Map(m) => {
                if !m.is_empty() {
                    out.insert(name.to_string(), Value::Object(m));
                }
            }
        }
    }
    Ok(out)
}

fn decode_map_entry(
    msg: &'static Msg,
    name: &'static str,
    ty: Ty,
    entry: &[u8],
    depth: usize,
) -> Result<(String, Value), ProtobufError> {
    let err = |e| malformed(msg.name, name, e);
    let mut key = String::new();
    let mut value: Option<Value> = None;
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut r = Reader::new(entry);
    while !r.is_empty() {
        let (tag, wt) = r.key().map_err(err)?;
        match tag {
            1 => {
                if wt != LEN {
                    return Err(err(WireError::BadWireType(wt)));
                }
                key = utf8(msg.name, name, r.len_delimited().map_err(err)?)?;
            }
            2 => {
                if let Ty::M(_) = ty {
                    check_wire(msg, name, ty, wt)?;
                    chunks.push(r.len_delimited().map_err(err)?);
                } else {
                    value = Some(read_scalar(msg, name, ty, wt, &mut r)?);
                }
            }
            _ => r.skip(wt).map_err(err)?,
        }
    }
    let value = match (ty, value) {
        (Ty::M(t), _) => decode_msg(t, &chunks.concat(), depth + 1)?,
        (_, Some(v)) => v,
        (Ty::Str | Ty::Bytes, None) => Value::String(String::new()),
        (Ty::Bool, None) => Value::Bool(false),
        (_, None) => Value::from(0),
    };
    Ok((key, value))
}

fn check_wire(msg: &Msg, name: &'static str, ty: Ty, wt: u8) -> Result<(), ProtobufError> {
    let want = match ty {
        Ty::Str | Ty::Bytes | Ty::M(_) => LEN,
        Ty::Bool | Ty::I32 | Ty::I64 => VARINT,
        Ty::F64 => FIXED64,
    };
    if wt == want {
        Ok(())
    } else {
        Err(malformed(msg.name, name, WireError::BadWireType(wt)))
    }
}

fn read_scalar(
    msg: &Msg,
    name: &'static str,
    ty: Ty,
    wt: u8,
    r: &mut Reader<'_>,
) -> Result<Value, ProtobufError> {
    check_wire(msg, name, ty, wt)?;
    let err = |e| malformed(msg.name, name, e);
    Ok(match ty {
        Ty::Str => Value::String(utf8(msg.name, name, r.len_delimited().map_err(err)?)?),
        Ty::Bytes => Value::String(
            base64::engine::general_purpose::STANDARD.encode(r.len_delimited().map_err(err)?),
        ),
        Ty::Bool => Value::Bool(r.varint().map_err(err)? != 0),
        // int32 values are sign-extended varints; truncation is the protobuf rule.
        Ty::I32 => Value::from(r.varint().map_err(err)? as i64 as i32),
        Ty::I64 => Value::from(r.varint().map_err(err)? as i64),
        Ty::F64 => {
            let f = f64::from_bits(r.fixed64().map_err(err)?);
            Value::Number(
                Number::from_f64(f).ok_or_else(|| invalid(msg.name, name, "non-finite double"))?,
            )
        }
        Ty::M(_) => {
            return Err(invalid(
                msg.name,
                name,
                "message where a scalar was expected",
            ))
        }
    })
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}
