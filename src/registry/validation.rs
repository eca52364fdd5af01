//! Server-side validation: the checks kube-apiserver runs on create and update, with
//! its user-visible messages reproduced byte for byte (`<field>: <type>[: <value>][:
//! <detail>]`, as `field.Error.Error()` prints them).
//!
//! Objects arrive as JSON already defaulted ([`super::defaults`]) and type-checked by a
//! round trip through the `k8s-openapi` types, so required fields the client left out
//! may show up as `""`, `[]` or `{}`; everything here treats empty as missing.
//!
//! Bad values are printed the way Go's `fmt` prints them in kube: strings quoted as
//! `%q` does, integers bare, and structs and maps in `%#v` form
//! (`map[string]string{"app":"x"}`, `v1.LabelSelector{...}`). Where kube prints a
//! large internal struct (a whole pod template or a `cmp.Diff`), an abbreviated
//! rendering is used; the leading part of the message still matches.
//!
//! Coverage follows `pkg/apis/*/validation` for the kinds skiff serves: object
//! metadata, pod specs (also inside templates), workloads, Services, ConfigMaps and
//! Secrets, RBAC, storage, policy, autoscaling, discovery, networking, coordination
//! and scheduling. Duplicate messages are dropped, as kube's `ToAggregate` does.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde_json::{Map, Value};

use super::defaults::apply_defaults;
use crate::apimachinery::quantity::{parse_quantity, Quantity, QuantityError};

// ---------------------------------------------------------------------------
// Field errors
// ---------------------------------------------------------------------------

/// The kind of a field error (kube's `field.ErrorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
}

impl ErrorKind {
    /// The text kube prints for the type (`Required value`, `Invalid value`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "Not found",
            ErrorKind::Required => "Required value",
            ErrorKind::Duplicate => "Duplicate value",
            ErrorKind::Invalid => "Invalid value",
            ErrorKind::NotSupported => "Unsupported value",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::TooLong => "Too long",
            ErrorKind::TooMany => "Too many",
            ErrorKind::Internal => "Internal error",
        }
    }

    /// The `reason` of a Status cause for this type.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "FieldValueNotFound",
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::Duplicate => "FieldValueDuplicate",
            ErrorKind::Invalid => "FieldValueInvalid",
            ErrorKind::NotSupported => "FieldValueNotSupported",
            ErrorKind::Forbidden => "FieldValueForbidden",
            ErrorKind::TooLong => "FieldValueTooLong",
            ErrorKind::TooMany => "FieldValueTooMany",
            ErrorKind::Internal => "InternalError",
        }
    }
}

/// The offending value of a field error, in the shape Go's `fmt` would print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadValue {
    /// Not printed (Required, Forbidden, TooLong and Internal never print a value).
    Omitted,
    /// A string, printed quoted as Go's `%q` does.
    Str(String),
    /// An integer, printed bare.
    Int(i64),
    /// A value already rendered in Go's `%#v` syntax.
    Go(String),
}

/// One validation failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field path, as kube prints it (`spec.containers[0].image`).
    pub field: String,
    pub kind: ErrorKind,
    /// The detail after the value (may be empty).
    pub detail: String,
    /// The offending value.
    pub value: BadValue,
}

impl FieldError {
    /// The `reason` of the Status cause (`FieldValueRequired`, …).
    pub fn cause_reason(&self) -> &'static str {
        self.kind.reason()
    }

    /// The message without the leading `<field>: ` (kube's `ErrorBody`).
    pub fn body(&self) -> String {
        let mut s = match (self.kind, &self.value) {
            (
                ErrorKind::Required
                | ErrorKind::Forbidden
                | ErrorKind::TooLong
                | ErrorKind::Internal,
                _,
            )
            | (_, BadValue::Omitted) => self.kind.as_str().to_string(),
            (k, BadValue::Str(v)) => format!("{}: {}", k.as_str(), go_quote(v)),
            (k, BadValue::Int(n)) => format!("{}: {n}", k.as_str()),
            (k, BadValue::Go(t)) => format!("{}: {t}", k.as_str()),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

fn mk(field: &str, kind: ErrorKind, value: BadValue, detail: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        kind,
        detail: detail.into(),
        value,
    }
}

fn required(field: &str, detail: &str) -> FieldError {
    mk(field, ErrorKind::Required, BadValue::Omitted, detail)
}

fn forbidden(field: &str, detail: impl Into<String>) -> FieldError {
    mk(field, ErrorKind::Forbidden, BadValue::Omitted, detail)
}

fn invalid(field: &str, value: BadValue, detail: impl Into<String>) -> FieldError {
    mk(field, ErrorKind::Invalid, value, detail)
}

fn invalid_str(field: &str, value: &str, detail: impl Into<String>) -> FieldError {
    invalid(field, BadValue::Str(value.to_string()), detail)
}

fn invalid_int(field: &str, value: i64, detail: impl Into<String>) -> FieldError {
    invalid(field, BadValue::Int(value), detail)
}

fn duplicate(field: &str, value: BadValue) -> FieldError {
    mk(field, ErrorKind::Duplicate, value, "")
}

fn not_found(field: &str, value: &str) -> FieldError {
    mk(
        field,
        ErrorKind::NotFound,
        BadValue::Str(value.to_string()),
        "",
    )
}

fn not_supported(field: &str, value: BadValue, valid: &[&str]) -> FieldError {
    let detail = if valid.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = valid.iter().map(|v| go_quote(v)).collect();
        format!("supported values: {}", quoted.join(", "))
    };
    mk(field, ErrorKind::NotSupported, value, detail)
}

fn too_long(field: &str, max: usize) -> FieldError {
    mk(
        field,
        ErrorKind::TooLong,
        BadValue::Omitted,
        format!("may not be more than {max} bytes"),
    )
}

fn immutable(field: &str, value: BadValue) -> FieldError {
    invalid(field, value, FIELD_IMMUTABLE)
}

const FIELD_IMMUTABLE: &str = "field is immutable";
const IS_NEGATIVE: &str = "must be greater than or equal to 0";

type Errs = Vec<FieldError>;

/// Drop repeated messages, keeping the first (kube's `ErrorList.ToAggregate`).
fn dedup(errs: Errs) -> Errs {
    let mut seen = HashSet::new();
    errs.into_iter()
        .filter(|e| seen.insert(e.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------
// Go value printing
// ---------------------------------------------------------------------------

/// A string quoted as Go's `strconv.Quote` / `%q` does.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                let n = c as u32;
                if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `map[string]string{"a":"b", ...}` (keys sorted), or `map[string]string(nil)`.
fn go_string_map(m: Option<&Value>) -> String {
    go_named_string_map("map[string]string", m)
}

fn go_named_string_map(type_name: &str, m: Option<&Value>) -> String {
    match m.and_then(Value::as_object) {
        None => format!("{type_name}(nil)"),
        Some(m) => {
            let sorted: BTreeMap<&String, String> =
                m.iter().map(|(k, v)| (k, value_text(v))).collect();
            let items: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
                .collect();
            format!("{type_name}{{{}}}", items.join(", "))
        }
    }
}

/// `[]string{"a", "b"}` or `[]string(nil)`.
fn go_string_slice(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        None => "[]string(nil)".to_string(),
        Some(a) if a.is_empty() => "[]string(nil)".to_string(),
        Some(a) => {
            let items: Vec<String> = a.iter().map(|x| go_quote(&value_text(x))).collect();
            format!("[]string{{{}}}", items.join(", "))
        }
    }
}

/// A `*metav1.LabelSelector` as kube prints it in errors.
fn go_label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel.filter(|s| s.is_object()) else {
        return "null".to_string();
    };
    let labels = sel
        .get("matchLabels")
        .filter(|m| m.as_object().is_some_and(|m| !m.is_empty()));
    let exprs = arr(sel, "matchExpressions");
    let exprs_text = if exprs.is_empty() {
        "[]v1.LabelSelectorRequirement(nil)".to_string()
    } else {
        let items: Vec<String> = exprs
            .iter()
            .map(|e| {
                format!(
                    "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                    go_quote(s(e, "key")),
                    go_quote(s(e, "operator")),
                    go_string_slice(e.get("values"))
                )
            })
            .collect();
        format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{}}}",
        go_string_map(labels),
        exprs_text
    )
}

/// An `intstr.IntOrString` in `%#v` form.
fn go_int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => format!(
            "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
            go_quote(s)
        ),
        other => format!(
            "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
            other.as_i64().unwrap_or(0)
        ),
    }
}

/// A compact Go-like rendering of arbitrary JSON (for large structs kube prints with
/// `%#v`, which cannot be reproduced exactly).
fn go_json(v: &Value) -> String {
    match v {
        Value::Null => "nil".to_string(),
        Value::String(s) => go_quote(s),
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", upper_first(k), go_json(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(go_json).collect();
            format!("{{{}}}", items.join(", "))
        }
        other => other.to_string(),
    }
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------------

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn map_of<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

/// The value under `key` unless missing or null.
fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key)
        .and_then(|x| x.as_i64().or_else(|| x.as_f64().map(|f| f as i64)))
}

fn boolean(v: &Value, key: &str) -> Option<bool> {
    v.get(key).and_then(Value::as_bool)
}

/// Text of a scalar (strings bare, numbers and booleans as JSON).
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn is_empty_value(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(m)) => m.is_empty(),
        _ => false,
    }
}

const NULL: Value = Value::Null;

fn child<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&NULL)
}

// ---------------------------------------------------------------------------
// String format checks (k8s.io/apimachinery/pkg/util/validation)
// ---------------------------------------------------------------------------

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const CONFIG_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_KEY_MSG: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const PERCENT_FMT: &str = "[0-9]+%";
const PERCENT_MSG: &str =
    "a valid percent string must be a numeric string followed by an ending '%'";
const WILDCARD_FMT: &str = "\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const WILDCARD_MSG: &str = "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character";
const RELAXED_ENV_MSG: &str =
    "a valid environment variable name must consist only of printable ASCII characters other than '='";

/// kube's `RegexError`: the message, examples and the regex.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

fn matches_dns_label(v: &str) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn matches_dns_subdomain(v: &str) -> bool {
    v.split('.').all(matches_dns_label)
}

fn matches_dns1035(v: &str) -> bool {
    matches_dns_label(v) && v.as_bytes()[0].is_ascii_lowercase()
}

fn matches_qualified_part(v: &str) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// `IsDNS1123Label`.
pub fn is_dns1123_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !matches_dns_label(v) {
        if matches_dns_subdomain(v) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// `IsDNS1123Subdomain`.
pub fn is_dns1123_subdomain(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !matches_dns_subdomain(v) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// `IsDNS1035Label`.
pub fn is_dns1035_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !matches_dns1035(v) {
        errs.push(regex_error(
            DNS1035_LABEL_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

fn is_wildcard_dns1123_subdomain(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 253 {
        errs.push(max_len_error(253));
    }
    let ok = v.strip_prefix("*.").is_some_and(matches_dns_subdomain);
    if !ok {
        errs.push(regex_error(WILDCARD_MSG, WILDCARD_FMT, &["*.example.com"]));
    }
    errs
}

/// `IsQualifiedName` (label keys, annotation keys, finalizers).
pub fn is_qualified_name(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = v.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                for m in is_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {m}"));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !matches_qualified_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// `IsValidLabelValue`.
pub fn is_valid_label_value(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !v.is_empty() && !matches_qualified_part(v) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

fn has_chdir_prefix(v: &str) -> Option<String> {
    match v {
        "." => Some("must not be '.'".into()),
        ".." => Some("must not be '..'".into()),
        _ if v.starts_with("..") => Some("must not start with '..'".into()),
        _ => None,
    }
}

/// `IsConfigMapKey` (ConfigMap and Secret data keys).
pub fn is_config_map_key(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 253 {
        errs.push(max_len_error(253));
    }
    let ok = !v.is_empty()
        && v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'));
    if !ok {
        errs.push(regex_error(
            CONFIG_KEY_MSG,
            CONFIG_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    errs.extend(has_chdir_prefix(v));
    errs
}

/// `IsValidPortName`.
pub fn is_valid_port_name(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 15 {
        errs.push(max_len_error(15));
    }
    if v.is_empty()
        || !v
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !v.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if v.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if v.starts_with('-') || v.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// `IsValidPortNum`.
pub fn is_valid_port_num(p: i64) -> Vec<String> {
    if (1..=65535).contains(&p) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

fn is_relaxed_env_var_name(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.is_empty() {
        errs.push("environment variable name must be non-empty".to_string());
    }
    if v.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        errs.push(RELAXED_ENV_MSG.to_string());
    }
    errs
}

fn is_valid_percent(v: &str) -> Vec<String> {
    let ok = v
        .strip_suffix('%')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()));
    if ok {
        Vec::new()
    } else {
        vec![regex_error(PERCENT_MSG, PERCENT_FMT, &["1%", "93%"])]
    }
}

fn is_valid_path_segment_name(v: &str, prefix: bool) -> Vec<String> {
    if !prefix {
        for bad in [".", ".."] {
            if v == bad {
                return vec![format!("may not be '{bad}'")];
            }
        }
    }
    ["/", "%"]
        .iter()
        .filter(|bad| v.contains(*bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

fn is_valid_ip(v: &str) -> bool {
    v.parse::<std::net::IpAddr>().is_ok() || parse_ipv4_sloppy(v)
}

/// Go's `ParseIPSloppy` also accepts IPv4 octets with leading zeros.
fn parse_ipv4_sloppy(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|c| c.is_ascii_digit())
                && p.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

const IP_MSG: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

fn quantity_of(v: &Value) -> Option<Quantity> {
    match v {
        Value::String(s) => parse_quantity(s).ok(),
        Value::Number(n) => parse_quantity(&n.to_string()).ok(),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------

/// Whether `sel` (a `metav1.LabelSelector` as JSON) selects nothing in particular:
/// missing, null, or with neither `matchLabels` nor `matchExpressions`.
fn selector_is_empty(sel: Option<&Value>) -> bool {
    match sel {
        None | Some(Value::Null) => true,
        Some(s) => {
            map_of(s, "matchLabels").is_none_or(Map::is_empty)
                && arr(s, "matchExpressions").is_empty()
        }
    }
}

/// `LabelSelectorAsSelector` succeeds (operators known, values well-formed).
fn selector_converts(sel: &Value) -> bool {
    let labels_ok = map_of(sel, "matchLabels").is_none_or(|m| {
        m.iter().all(|(k, v)| {
            is_qualified_name(k).is_empty() && is_valid_label_value(&value_text(v)).is_empty()
        })
    });
    labels_ok
        && arr(sel, "matchExpressions").iter().all(|e| {
            let values = arr(e, "values");
            let op_ok = match s(e, "operator") {
                "In" | "NotIn" => !values.is_empty(),
                "Exists" | "DoesNotExist" => values.is_empty(),
                _ => false,
            };
            op_ok
                && is_qualified_name(s(e, "key")).is_empty()
                && values
                    .iter()
                    .all(|v| is_valid_label_value(&value_text(v)).is_empty())
        })
}

/// Whether the selector matches `labels`. A missing selector matches nothing, an
/// empty one everything.
fn selector_matches(sel: Option<&Value>, labels: Option<&Value>) -> bool {
    let Some(sel) = sel.filter(|s| s.is_object()) else {
        return false;
    };
    let empty = Map::new();
    let labels = labels.and_then(Value::as_object).unwrap_or(&empty);
    let label = |k: &str| labels.get(k).map(value_text);
    let labels_ok = map_of(sel, "matchLabels").is_none_or(|m| {
        m.iter()
            .all(|(k, v)| label(k).as_deref() == Some(value_text(v).as_str()))
    });
    labels_ok
        && arr(sel, "matchExpressions").iter().all(|e| {
            let key = s(e, "key");
            let values: Vec<String> = arr(e, "values").iter().map(value_text).collect();
            match s(e, "operator") {
                "In" => label(key).is_some_and(|v| values.contains(&v)),
                "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
                "Exists" => label(key).is_some(),
                "DoesNotExist" => label(key).is_none(),
                _ => false,
            }
        })
}

/// `ValidateLabelSelector`.
fn validate_label_selector(sel: Option<&Value>, path: &str, errs: &mut Errs) {
    let Some(sel) = sel.filter(|s| s.is_object()) else {
        return;
    };
    validate_labels(sel.get("matchLabels"), &format!("{path}.matchLabels"), errs);
    for (i, e) in arr(sel, "matchExpressions").iter().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        let values = arr(e, "values");
        match s(e, "operator") {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(required(
                        &format!("{p}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(forbidden(
                        &format!("{p}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            op => errs.push(invalid_str(
                &format!("{p}.operator"),
                op,
                "not a valid selector operator",
            )),
        }
        let key = s(e, "key");
        for m in is_qualified_name(key) {
            errs.push(invalid_str(&format!("{p}.key"), key, m));
        }
        for (j, v) in values.iter().enumerate() {
            let v = value_text(v);
            for m in is_valid_label_value(&v) {
                errs.push(invalid_str(&format!("{p}.values[{j}]"), &v, m));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Object metadata
// ---------------------------------------------------------------------------

/// Which name format a kind's `metadata.name` must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    PathSegment,
    /// Metadata is not validated (review kinds that are never stored).
    Skip,
}

fn name_rule(group: &str, kind: &str) -> NameRule {
    match (group, kind) {
        ("", "Namespace") => NameRule::Label,
        ("", "Service") => NameRule::Dns1035,
        ("apps", "StatefulSet") => NameRule::Label,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        ("authorization.k8s.io", _) | ("authentication.k8s.io", _) | ("", "ComponentStatus") => {
            NameRule::Skip
        }
        _ => NameRule::Subdomain,
    }
}

fn name_messages(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    let masked;
    let name = if prefix && rule != NameRule::PathSegment {
        masked = mask_trailing_dash(name);
        masked.as_str()
    } else {
        name
    };
    match rule {
        NameRule::Subdomain => is_dns1123_subdomain(name),
        NameRule::Label => is_dns1123_label(name),
        NameRule::Dns1035 => is_dns1035_label(name),
        NameRule::PathSegment => is_valid_path_segment_name(name, prefix),
        NameRule::Skip => Vec::new(),
    }
}

/// kube's `maskTrailingDash`: a generateName may end in '-'.
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') && name.is_char_boundary(name.len() - 2) {
        format!("{}a", &name[..name.len() - 2])
    } else {
        name.to_string()
    }
}

/// `ValidateLabels` (keys and values of a `map[string]string`).
fn validate_labels(labels: Option<&Value>, path: &str, errs: &mut Errs) {
    let Some(m) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in m {
        for msg in is_qualified_name(k) {
            errs.push(invalid_str(path, k, msg));
        }
        let v = value_text(v);
        for msg in is_valid_label_value(&v) {
            errs.push(invalid_str(path, &v, msg));
        }
    }
}

const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

/// `ValidateAnnotations`.
fn validate_annotations(annotations: Option<&Value>, path: &str, errs: &mut Errs) {
    let Some(m) = annotations.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0usize;
    for (k, v) in m {
        for msg in is_qualified_name(&k.to_lowercase()) {
            errs.push(invalid_str(path, k, msg));
        }
        total += k.len() + value_text(v).len();
    }
    if total > TOTAL_ANNOTATION_SIZE {
        errs.push(too_long(path, TOTAL_ANNOTATION_SIZE));
    }
}

fn validate_owner_references(meta: &Value, errs: &mut Errs) {
    let path = "metadata.ownerReferences";
    let refs = arr(meta, "ownerReferences");
    let mut controller = String::new();
    for r in refs {
        let api_version = s(r, "apiVersion");
        let version = match api_version.matches('/').count() {
            0 => api_version,
            1 => api_version.split_once('/').map(|(_, v)| v).unwrap_or(""),
            _ => "",
        };
        if version.is_empty() {
            errs.push(invalid_str(
                &format!("{path}.apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        for (key, msg) in [
            ("kind", "kind must not be empty"),
            ("name", "name must not be empty"),
            ("uid", "uid must not be empty"),
        ] {
            if s(r, key).is_empty() {
                errs.push(invalid_str(&format!("{path}.{key}"), "", msg));
            }
        }
        if boolean(r, "controller") == Some(true) {
            let this = format!("{}/{}", s(r, "kind"), s(r, "name"));
            if controller.is_empty() {
                controller = this;
            } else {
                errs.push(invalid(
                    path,
                    BadValue::Go(format!("[]v1.OwnerReference{}", go_json(&Value::Array(refs.to_vec())))),
                    format!("Only one reference can have Controller set to true. Found \"true\" in references for {controller} and {this}"),
                ));
            }
        }
    }
}

fn validate_finalizers(meta: &Value, errs: &mut Errs) {
    let path = "metadata.finalizers";
    let fins = arr(meta, "finalizers");
    for f in fins {
        let f = value_text(f);
        for msg in is_qualified_name(&f) {
            errs.push(invalid_str(path, &f, msg));
        }
    }
    let has = |n: &str| fins.iter().any(|f| f.as_str() == Some(n));
    if has("orphan") && has("foregroundDeletion") {
        errs.push(invalid(
            path,
            BadValue::Go(go_string_slice(meta.get("finalizers"))),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
}

/// `ValidateObjectMeta` for a create.
fn validate_object_meta(obj: &Value, namespaced: bool, rule: NameRule, errs: &mut Errs) {
    if rule == NameRule::Skip {
        return;
    }
    let meta = child(obj, "metadata");
    let generate_name = s(meta, "generateName");
    if !generate_name.is_empty() {
        for msg in name_messages(rule, generate_name, true) {
            errs.push(invalid_str("metadata.generateName", generate_name, msg));
        }
    }
    let name = s(meta, "name");
    if name.is_empty() {
        errs.push(required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for msg in name_messages(rule, name, false) {
            errs.push(invalid_str("metadata.name", name, msg));
        }
    }
    validate_namespace_field(meta, namespaced, errs);
    validate_meta_common(meta, errs);
}

fn validate_namespace_field(meta: &Value, namespaced: bool, errs: &mut Errs) {
    let ns = s(meta, "namespace");
    if namespaced {
        if ns.is_empty() {
            errs.push(required("metadata.namespace", ""));
        } else {
            for msg in is_dns1123_label(ns) {
                errs.push(invalid_str("metadata.namespace", ns, msg));
            }
        }
    } else if !ns.is_empty() {
        errs.push(forbidden("metadata.namespace", "not allowed on this type"));
    }
}

fn validate_meta_common(meta: &Value, errs: &mut Errs) {
    if let Some(g) = int(meta, "generation").filter(|g| *g < 0) {
        errs.push(invalid_int("metadata.generation", g, IS_NEGATIVE));
    }
    validate_labels(meta.get("labels"), "metadata.labels", errs);
    validate_annotations(meta.get("annotations"), "metadata.annotations", errs);
    validate_owner_references(meta, errs);
    validate_finalizers(meta, errs);
}

/// `ValidateObjectMetaUpdate`.
fn validate_object_meta_update(new: &Value, old: &Value, rule: NameRule, errs: &mut Errs) {
    if rule == NameRule::Skip {
        return;
    }
    let nm = child(new, "metadata");
    let om = child(old, "metadata");
    if get(om, "deletionTimestamp").is_some() {
        let old_f: Vec<&str> = arr(om, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let extra: Vec<&str> = arr(nm, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .filter(|f| !old_f.contains(f))
            .collect();
        if !extra.is_empty() {
            let mut sorted = extra.clone();
            sorted.sort_unstable();
            sorted.dedup();
            let list: Vec<String> = sorted.iter().map(|f| go_quote(f)).collect();
            errs.push(forbidden(
                "metadata.finalizers",
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    list.join(", ")
                ),
            ));
        }
    }
    if let (Some(ng), Some(og)) = (int(nm, "generation"), int(om, "generation")) {
        if ng < og {
            errs.push(invalid_int(
                "metadata.generation",
                ng,
                "must not be decremented",
            ));
        }
    }
    for key in ["name", "namespace", "uid"] {
        let (n, o) = (s(nm, key), s(om, key));
        if n != o && !(key == "uid" && n.is_empty()) {
            errs.push(immutable(
                &format!("metadata.{key}"),
                BadValue::Str(n.to_string()),
            ));
        }
    }
    validate_labels(nm.get("labels"), "metadata.labels", errs);
    validate_annotations(nm.get("annotations"), "metadata.annotations", errs);
    validate_owner_references(nm, errs);
}

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

/// Validate an object about to be created. `obj` is defaulted JSON; `namespaced` is
/// the kind's scope. Returns the errors in kube's order, without repeats.
pub fn validate_create(group: &str, kind: &str, obj: &Value, namespaced: bool) -> Vec<FieldError> {
    if (group, kind) == ("", "Service") {
        let allocation = node_port_range_errors(obj);
        if !allocation.is_empty() {
            return allocation;
        }
    }
    let mut errs = Vec::new();
    let rule = name_rule(group, kind);
    validate_object_meta(obj, namespaced, rule, &mut errs);
    validate_kind(group, kind, obj, None, &mut errs);
    dedup(errs)
}

/// Validate an update of `old` (the stored object) to `new` (defaulted JSON).
pub fn validate_update(
    group: &str,
    kind: &str,
    new: &Value,
    old: &Value,
    namespaced: bool,
) -> Vec<FieldError> {
    if (group, kind) == ("", "Service") {
        let allocation = node_port_range_errors(new);
        if !allocation.is_empty() {
            return allocation;
        }
    }
    // Objects written before defaulting existed (or by skiff itself) compare as if
    // defaulted, so that a default is never mistaken for a change.
    let mut old_defaulted = old.clone();
    apply_defaults(group, kind, &mut old_defaulted);
    let old = &old_defaulted;
    let mut errs = Vec::new();
    let rule = name_rule(group, kind);
    validate_object_meta_update(new, old, rule, &mut errs);
    if rule != NameRule::Skip {
        validate_namespace_field(child(new, "metadata"), namespaced, &mut errs);
    }
    validate_kind(group, kind, new, Some(old), &mut errs);
    dedup(errs)
}

fn validate_kind(group: &str, kind: &str, obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    match (group, kind) {
        ("", "Pod") => {
            if old.is_none() {
                validate_pod_create(obj, errs);
            } else if let Some(old) = old {
                validate_pod_update(obj, old, errs);
            }
        }
        ("", "PodTemplate") => validate_pod_template_spec(child(obj, "template"), "template", errs),
        ("", "ReplicationController") => validate_replication_controller(obj, errs),
        ("", "Service") => {
            validate_service(obj, old.is_none(), errs);
            if let Some(old) = old {
                validate_service_update(obj, old, errs);
            }
        }
        ("", "ConfigMap") => {
            validate_config_map(obj, errs);
            if let Some(old) = old {
                validate_immutable_data(obj, old, &["data", "binaryData"], errs);
            }
        }
        ("", "Secret") => {
            validate_secret(obj, errs);
            if let Some(old) = old {
                let (nt, ot) = (s(obj, "type"), s(old, "type"));
                if nt != ot {
                    errs.push(immutable("type", BadValue::Str(nt.to_string())));
                }
                validate_immutable_data(obj, old, &["data"], errs);
            }
        }
        ("", "Namespace") => validate_namespace(obj, errs),
        ("", "PersistentVolumeClaim") => {
            validate_pvc_spec(child(obj, "spec"), "spec", errs);
            if let Some(old) = old {
                validate_pvc_update(obj, old, errs);
            }
        }
        ("", "PersistentVolume") => validate_pv(obj, errs),
        ("", "Endpoints") => validate_endpoints(obj, errs),
        ("apps", "Deployment") => {
            validate_replica_set_like(child(obj, "spec"), "deployment", errs);
            validate_deployment_extras(child(obj, "spec"), errs);
            if let Some(old) = old {
                selector_immutable(obj, old, errs);
            }
        }
        ("apps", "ReplicaSet") => {
            validate_replica_set_like(child(obj, "spec"), "deployment", errs);
            if let Some(old) = old {
                selector_immutable(obj, old, errs);
            }
        }
        ("apps", "DaemonSet") => {
            validate_daemon_set(child(obj, "spec"), errs);
            if let Some(old) = old {
                selector_immutable(obj, old, errs);
            }
        }
        ("apps", "StatefulSet") => {
            validate_stateful_set(child(obj, "spec"), errs);
            if let Some(old) = old {
                validate_stateful_set_update(obj, old, errs);
            }
        }
        ("apps", "ControllerRevision") => {
            if get(obj, "data").is_none() {
                errs.push(required("data", "data is mandatory"));
            }
            nonnegative(obj, "revision", "revision", errs);
            if let Some(old) = old {
                if obj.get("data") != old.get("data") {
                    errs.push(immutable("data", BadValue::Go(go_json(child(obj, "data")))));
                }
            }
        }
        ("batch", "Job") => {
            validate_job(obj, errs);
            if let Some(old) = old {
                validate_job_update(obj, old, errs);
            }
        }
        ("batch", "CronJob") => validate_cron_job(obj, old, errs),
        ("autoscaling", "HorizontalPodAutoscaler") => validate_hpa(child(obj, "spec"), errs),
        ("policy", "PodDisruptionBudget") => validate_pdb(child(obj, "spec"), errs),
        ("coordination.k8s.io", "Lease") => validate_lease(child(obj, "spec"), errs),
        ("discovery.k8s.io", "EndpointSlice") => {
            validate_endpoint_slice(obj, errs);
            if let Some(old) = old {
                let (n, o) = (s(obj, "addressType"), s(old, "addressType"));
                if n != o {
                    errs.push(immutable("addressType", BadValue::Str(n.to_string())));
                }
            }
        }
        ("networking.k8s.io", "Ingress") => validate_ingress(child(obj, "spec"), errs),
        ("networking.k8s.io", "IngressClass") => validate_ingress_class(obj, old, errs),
        ("networking.k8s.io", "NetworkPolicy") => validate_network_policy(child(obj, "spec"), errs),
        ("rbac.authorization.k8s.io", "Role") => validate_rules(obj, true, errs),
        ("rbac.authorization.k8s.io", "ClusterRole") => validate_rules(obj, false, errs),
        ("rbac.authorization.k8s.io", "RoleBinding") => validate_binding(obj, old, true, errs),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            validate_binding(obj, old, false, errs)
        }
        ("storage.k8s.io", "StorageClass") => validate_storage_class(obj, old, errs),
        ("scheduling.k8s.io", "PriorityClass") => validate_priority_class(obj, old, errs),
        _ => {}
    }
}

fn nonnegative(v: &Value, key: &str, path: &str, errs: &mut Errs) {
    if let Some(n) = int(v, key).filter(|n| *n < 0) {
        errs.push(invalid_int(path, n, IS_NEGATIVE));
    }
}

// ---------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const NOT_FOR_INIT: &str = "may not be set for init containers without restartPolicy=Always";

fn validate_pod_create(pod: &Value, errs: &mut Errs) {
    let spec = child(pod, "spec");
    validate_pod_spec(spec, "spec", errs);
    if !arr(spec, "ephemeralContainers").is_empty() {
        errs.push(forbidden(
            "spec.ephemeralContainers",
            "cannot be set on create",
        ));
    }
    if !s(spec, "nodeName").is_empty() && !arr(spec, "schedulingGates").is_empty() {
        errs.push(forbidden(
            "spec.nodeName",
            "cannot be set until all schedulingGates have been cleared",
        ));
    }
}

/// `ValidatePodTemplateSpec`: labels and annotations are reported at
/// `<path>.labels` / `<path>.annotations`, as kube does.
fn validate_pod_template_spec(t: &Value, path: &str, errs: &mut Errs) {
    let meta = child(t, "metadata");
    validate_labels(meta.get("labels"), &format!("{path}.labels"), errs);
    validate_annotations(
        meta.get("annotations"),
        &format!("{path}.annotations"),
        errs,
    );
    let spec = child(t, "spec");
    validate_pod_spec(spec, &format!("{path}.spec"), errs);
    if !arr(spec, "ephemeralContainers").is_empty() {
        errs.push(forbidden(
            &format!("{path}.spec.ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
}

/// The volume source fields in the order kube checks them, with the path kube names
/// when a second source is given (two are misspelt in kube).
const VOLUME_SOURCES: &[(&str, &str)] = &[
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

const HOST_PATH_TYPES: &[&str] = &[
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];

/// `ValidateVolumes`: returns the names of the volumes that validated.
fn validate_volumes(volumes: &[Value], path: &str, errs: &mut Errs) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, vol) in volumes.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let mut el = Vec::new();
        validate_volume_source(vol, &p, &mut el);
        let name = s(vol, "name");
        let name_path = format!("{p}.name");
        if name.is_empty() {
            el.push(required(&name_path, ""));
        } else {
            for m in is_dns1123_label(name) {
                el.push(invalid_str(&name_path, name, m));
            }
        }
        if names.contains(name) {
            el.push(duplicate(&name_path, BadValue::Str(name.to_string())));
        }
        if el.is_empty() {
            names.insert(name.to_string());
        } else {
            errs.extend(el);
        }
    }
    names
}

fn validate_volume_source(vol: &Value, path: &str, errs: &mut Errs) {
    let mut count = 0;
    for (key, forbidden_name) in VOLUME_SOURCES {
        let Some(src) = get(vol, key) else {
            continue;
        };
        if count > 0 {
            errs.push(forbidden(
                &format!("{path}.{forbidden_name}"),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        count += 1;
        let p = format!("{path}.{key}");
        match *key {
            "hostPath" => {
                let hp = s(src, "path");
                if hp.is_empty() {
                    errs.push(required(&format!("{p}.path"), ""));
                    continue;
                }
                if hp.split('/').any(|seg| seg == "..") {
                    errs.push(invalid_str(
                        &format!("{p}.path"),
                        hp,
                        "must not contain '..'",
                    ));
                }
                if let Some(t) = get(src, "type").map(value_text) {
                    if !HOST_PATH_TYPES.contains(&t.as_str()) {
                        errs.push(not_supported(
                            &format!("{p}.type"),
                            BadValue::Str(t),
                            HOST_PATH_TYPES,
                        ));
                    }
                }
            }
            "gitRepo" if s(src, "repository").is_empty() => {
                errs.push(required(&format!("{p}.repository"), ""));
            }
            "secret" => {
                if s(src, "secretName").is_empty() {
                    errs.push(required(&format!("{p}.secretName"), ""));
                }
                validate_default_mode(src, &p, errs);
            }
            "configMap" => {
                if s(src, "name").is_empty() {
                    errs.push(required(&format!("{p}.name"), ""));
                }
                validate_default_mode(src, &p, errs);
            }
            "persistentVolumeClaim" if s(src, "claimName").is_empty() => {
                errs.push(required(&format!("{p}.claimName"), ""));
            }
            "nfs" => {
                if s(src, "server").is_empty() {
                    errs.push(required(&format!("{p}.server"), ""));
                }
                let np = s(src, "path");
                if np.is_empty() {
                    errs.push(required(&format!("{p}.path"), ""));
                }
                if !np.starts_with('/') {
                    errs.push(invalid_str(
                        &format!("{p}.path"),
                        np,
                        "must be an absolute path",
                    ));
                }
            }
            "downwardAPI" | "projected" => validate_default_mode(src, &p, errs),
            _ => {}
        }
    }
    if count == 0 {
        errs.push(required(path, "must specify a volume type"));
    }
}

fn validate_default_mode(src: &Value, path: &str, errs: &mut Errs) {
    if let Some(m) = int(src, "defaultMode").filter(|m| !(0..=0o777).contains(m)) {
        errs.push(invalid_int(
            &format!("{path}.defaultMode"),
            m,
            "must be a number between 0 and 0777 (octal), both inclusive",
        ));
    }
}

/// `ValidatePodSpec`.
fn validate_pod_spec(spec: &Value, path: &str, errs: &mut Errs) {
    if get(spec, "terminationGracePeriodSeconds").is_none() {
        errs.push(required(
            &format!("{path}.terminationGracePeriodSeconds"),
            "",
        ));
    }
    let vols = validate_volumes(arr(spec, "volumes"), &format!("{path}.volumes"), errs);
    validate_containers(
        arr(spec, "containers"),
        &vols,
        &format!("{path}.containers"),
        errs,
    );
    validate_init_containers(
        arr(spec, "initContainers"),
        arr(spec, "containers"),
        &vols,
        &format!("{path}.initContainers"),
        errs,
    );
    let restart = s(spec, "restartPolicy");
    let rp = format!("{path}.restartPolicy");
    if restart.is_empty() {
        errs.push(required(&rp, ""));
    } else if !RESTART_POLICIES.contains(&restart) {
        errs.push(not_supported(
            &rp,
            BadValue::Str(restart.into()),
            RESTART_POLICIES,
        ));
    }
    let dns = s(spec, "dnsPolicy");
    let dp = format!("{path}.dnsPolicy");
    const DNS: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
    if dns.is_empty() {
        errs.push(required(&dp, ""));
    } else if !DNS.contains(&dns) {
        errs.push(not_supported(&dp, BadValue::Str(dns.into()), DNS));
    }
    validate_labels(
        spec.get("nodeSelector"),
        &format!("{path}.nodeSelector"),
        errs,
    );
    for (i, ips) in arr(spec, "imagePullSecrets").iter().enumerate() {
        if s(ips, "name").is_empty() {
            errs.push(required(&format!("{path}.imagePullSecrets[{i}].name"), ""));
        }
    }
    if dns == "None" && get(spec, "dnsConfig").is_none() {
        errs.push(required(
            &format!("{path}.dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ));
    }
    for (key, what) in [
        ("serviceAccountName", "serviceAccountName"),
        ("nodeName", "nodeName"),
    ] {
        let v = s(spec, key);
        if !v.is_empty() {
            for m in is_dns1123_subdomain(v) {
                errs.push(invalid_str(&format!("{path}.{what}"), v, m));
            }
        }
    }
    if let Some(ads) = int(spec, "activeDeadlineSeconds") {
        if !(1..=i64::from(i32::MAX)).contains(&ads) {
            errs.push(invalid_int(
                &format!("{path}.activeDeadlineSeconds"),
                ads,
                inclusive_range_error(1, i64::from(i32::MAX)),
            ));
        }
    }
    for key in ["hostname", "subdomain"] {
        let v = s(spec, key);
        if !v.is_empty() {
            for m in is_dns1123_label(v) {
                errs.push(invalid_str(&format!("{path}.{key}"), v, m));
            }
        }
    }
    validate_tolerations(
        arr(spec, "tolerations"),
        &format!("{path}.tolerations"),
        errs,
    );
    let pp = s(spec, "preemptionPolicy");
    if !pp.is_empty() && pp != "PreemptLowerPriority" && pp != "Never" {
        errs.push(not_supported(
            &format!("{path}.preemptionPolicy"),
            BadValue::Str(pp.into()),
            &["Never", "PreemptLowerPriority"],
        ));
    }
}

fn validate_containers(containers: &[Value], vols: &HashSet<String>, path: &str, errs: &mut Errs) {
    if containers.is_empty() {
        errs.push(required(path, ""));
        return;
    }
    let mut names = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let p = format!("{path}[{i}]");
        validate_container_common(c, vols, &p, errs);
        let name = s(c, "name");
        if !names.insert(name.to_string()) {
            errs.push(duplicate(&format!("{p}.name"), BadValue::Str(name.into())));
        }
        if let Some(lc) = get(c, "lifecycle") {
            validate_lifecycle(lc, &format!("{p}.lifecycle"), errs);
        }
        validate_probes(c, &p, errs);
        if get(c, "restartPolicy").is_some() {
            errs.push(forbidden(
                &format!("{p}.restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
}

fn validate_init_containers(
    inits: &[Value],
    regular: &[Value],
    vols: &HashSet<String>,
    path: &str,
    errs: &mut Errs,
) {
    let mut names: HashSet<String> = regular.iter().map(|c| s(c, "name").to_string()).collect();
    for (i, c) in inits.iter().enumerate() {
        let p = format!("{path}[{i}]");
        validate_container_common(c, vols, &p, errs);
        let mut restart_always = false;
        if let Some(rp) = get(c, "restartPolicy") {
            let rp = value_text(rp);
            if rp == "Always" {
                restart_always = true;
            } else {
                errs.push(not_supported(
                    &format!("{p}.restartPolicy"),
                    BadValue::Str(rp),
                    &["Always"],
                ));
            }
        }
        let name = s(c, "name");
        if names.contains(name) {
            errs.push(duplicate(&format!("{p}.name"), BadValue::Str(name.into())));
        } else if !name.is_empty() {
            names.insert(name.to_string());
        }
        if restart_always {
            if let Some(lc) = get(c, "lifecycle") {
                validate_lifecycle(lc, &format!("{p}.lifecycle"), errs);
            }
            validate_probes(c, &p, errs);
        } else {
            for key in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if get(c, key).is_some() {
                    errs.push(forbidden(&format!("{p}.{key}"), NOT_FOR_INIT));
                }
            }
        }
    }
}

fn validate_container_common(c: &Value, vols: &HashSet<String>, path: &str, errs: &mut Errs) {
    let name = s(c, "name");
    let np = format!("{path}.name");
    if name.is_empty() {
        errs.push(required(&np, ""));
    } else {
        for m in is_dns1123_label(name) {
            errs.push(invalid_str(&np, name, m));
        }
    }
    if s(c, "image").is_empty() {
        errs.push(required(&format!("{path}.image"), ""));
    }
    let tmp = s(c, "terminationMessagePolicy");
    let tp = format!("{path}.terminationMessagePolicy");
    match tmp {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(required(&tp, "must be 'File' or 'FallbackToLogsOnError'")),
        other => errs.push(not_supported(
            &tp,
            BadValue::Str(other.into()),
            &["File", "FallbackToLogsOnError"],
        )),
    }
    validate_container_ports(arr(c, "ports"), &format!("{path}.ports"), errs);
    validate_env(arr(c, "env"), &format!("{path}.env"), errs);
    validate_volume_mounts(
        arr(c, "volumeMounts"),
        vols,
        &format!("{path}.volumeMounts"),
        errs,
    );
    let pull = s(c, "imagePullPolicy");
    let pp = format!("{path}.imagePullPolicy");
    const PULL: &[&str] = &["Always", "IfNotPresent", "Never"];
    if pull.is_empty() {
        errs.push(required(&pp, ""));
    } else if !PULL.contains(&pull) {
        errs.push(not_supported(&pp, BadValue::Str(pull.into()), PULL));
    }
    validate_resources(child(c, "resources"), &format!("{path}.resources"), errs);
}

fn validate_container_ports(ports: &[Value], path: &str, errs: &mut Errs) {
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let name = s(port, "name");
        if !name.is_empty() {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(invalid_str(&format!("{p}.name"), name, m));
                }
            } else if !names.insert(name.to_string()) {
                errs.push(duplicate(&format!("{p}.name"), BadValue::Str(name.into())));
            }
        }
        let cp = int(port, "containerPort").unwrap_or(0);
        if cp == 0 {
            errs.push(required(&format!("{p}.containerPort"), ""));
        } else {
            for m in is_valid_port_num(cp) {
                errs.push(invalid_int(&format!("{p}.containerPort"), cp, m));
            }
        }
        if let Some(hp) = int(port, "hostPort").filter(|h| *h != 0) {
            for m in is_valid_port_num(hp) {
                errs.push(invalid_int(&format!("{p}.hostPort"), hp, m));
            }
        }
        validate_protocol(s(port, "protocol"), &format!("{p}.protocol"), errs);
    }
}

fn validate_protocol(proto: &str, path: &str, errs: &mut Errs) {
    if proto.is_empty() {
        errs.push(required(path, ""));
    } else if !PROTOCOLS.contains(&proto) {
        errs.push(not_supported(path, BadValue::Str(proto.into()), PROTOCOLS));
    }
}

fn validate_env(env: &[Value], path: &str, errs: &mut Errs) {
    for (i, e) in env.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let name = s(e, "name");
        if name.is_empty() {
            errs.push(required(&format!("{p}.name"), ""));
        }
        for m in is_relaxed_env_var_name(name) {
            errs.push(invalid_str(&format!("{p}.name"), name, m));
        }
        if let Some(vf) = get(e, "valueFrom") {
            let vp = format!("{p}.valueFrom");
            let sources = [
                "fieldRef",
                "resourceFieldRef",
                "configMapKeyRef",
                "secretKeyRef",
            ];
            let set: Vec<&str> = sources
                .iter()
                .copied()
                .filter(|k| get(vf, k).is_some())
                .collect();
            for key in &set {
                let src = child(vf, key);
                let sp = format!("{vp}.{key}");
                match *key {
                    "fieldRef" => {
                        if s(src, "fieldPath").is_empty() {
                            errs.push(required(&format!("{sp}.fieldPath"), ""));
                        }
                    }
                    "resourceFieldRef" => {
                        if s(src, "resource").is_empty() {
                            errs.push(required(&format!("{sp}.resource"), ""));
                        }
                    }
                    _ => {
                        if s(src, "key").is_empty() {
                            errs.push(required(&format!("{sp}.key"), ""));
                        } else {
                            for m in is_config_map_key(s(src, "key")) {
                                errs.push(invalid_str(&format!("{sp}.key"), s(src, "key"), m));
                            }
                        }
                    }
                }
            }
            if set.is_empty() {
                errs.push(invalid_str(
                    &vp,
                    "",
                    "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                ));
            } else if set.len() > 1 {
                errs.push(invalid_str(
                    &vp,
                    "",
                    "may not have more than one field specified at a time",
                ));
            }
            if !s(e, "value").is_empty() {
                errs.push(invalid_str(
                    &vp,
                    "",
                    "may not be specified when `value` is not empty",
                ));
            }
        }
    }
}

fn validate_volume_mounts(mounts: &[Value], vols: &HashSet<String>, path: &str, errs: &mut Errs) {
    let mut points = HashSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let name = s(m, "name");
        if name.is_empty() {
            errs.push(required(&format!("{p}.name"), ""));
        }
        if !vols.contains(name) {
            errs.push(not_found(&format!("{p}.name"), name));
        }
        let mp = s(m, "mountPath");
        if mp.is_empty() {
            errs.push(required(&format!("{p}.mountPath"), ""));
        }
        if !points.insert(mp.to_string()) {
            errs.push(invalid_str(&format!("{p}.mountPath"), mp, "must be unique"));
        }
        let sub = s(m, "subPath");
        if !sub.is_empty() {
            // kube reports this at `volumeMounts.subPath` (no index).
            validate_local_descending_path(sub, &format!("{path}.subPath"), errs);
        }
        if let Some(prop) = get(m, "mountPropagation").map(value_text) {
            const PROP: &[&str] = &["Bidirectional", "HostToContainer", "None"];
            if !PROP.contains(&prop.as_str()) {
                errs.push(not_supported(
                    &format!("{p}.mountPropagation"),
                    BadValue::Str(prop),
                    PROP,
                ));
            }
        }
    }
}

fn validate_local_descending_path(v: &str, path: &str, errs: &mut Errs) {
    if v.starts_with('/') {
        errs.push(invalid_str(path, v, "must be a relative path"));
    }
    if v.split(['/', '\\']).any(|seg| seg == "..") {
        errs.push(invalid_str(path, v, "must not contain '..'"));
    }
}

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn validate_resources(res: &Value, path: &str, errs: &mut Errs) {
    let lim_path = format!("{path}.limits");
    let req_path = format!("{path}.requests");
    let limits = map_of(res, "limits");
    for (section, p) in [("limits", &lim_path), ("requests", &req_path)] {
        let Some(m) = map_of(res, section) else {
            continue;
        };
        for (name, q) in m {
            let fp = format!("{p}[{name}]");
            for msg in is_qualified_name(name) {
                errs.push(invalid_str(&fp, name, msg));
            }
            if !name.contains('/') {
                let standard = matches!(name.as_ref(), "cpu" | "memory" | "ephemeral-storage")
                    || name.starts_with("hugepages-");
                if !standard {
                    errs.push(invalid_str(
                        &fp,
                        name,
                        "must be a standard resource for containers",
                    ));
                }
            }
            let parsed = quantity_of(q);
            if let Some(qv) = parsed.filter(|qv| qv.nano < 0) {
                errs.push(invalid_str(&fp, &qv.canonical(), IS_NEGATIVE));
            }
            if section == "requests" {
                let overcommit = is_native_resource(name) && !name.starts_with("hugepages-");
                match (
                    parsed,
                    limits.and_then(|l| l.get(name)).and_then(quantity_of),
                ) {
                    (Some(req), Some(lim)) => {
                        if req.nano != lim.nano && !overcommit {
                            errs.push(invalid_str(
                                &req_path,
                                &req.canonical(),
                                format!("must be equal to {name} limit of {}", lim.canonical()),
                            ));
                        } else if req.nano > lim.nano {
                            errs.push(invalid_str(
                                &req_path,
                                &req.canonical(),
                                format!(
                                    "must be less than or equal to {name} limit of {}",
                                    lim.canonical()
                                ),
                            ));
                        }
                    }
                    (_, None) if !overcommit => {
                        errs.push(required(
                            &lim_path,
                            "Limit must be set for non overcommitable resources",
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
}

fn validate_lifecycle(lc: &Value, path: &str, errs: &mut Errs) {
    for hook in ["postStart", "preStop"] {
        if let Some(h) = get(lc, hook) {
            validate_handler(h, &format!("{path}.{hook}"), true, errs);
        }
    }
}

fn validate_probes(c: &Value, path: &str, errs: &mut Errs) {
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = get(c, key) else {
            continue;
        };
        let p = format!("{path}.{key}");
        if key == "readinessProbe" {
            if get(probe, "terminationGracePeriodSeconds").is_some() {
                errs.push(invalid(
                    &format!("{p}.terminationGracePeriodSeconds"),
                    BadValue::Int(int(probe, "terminationGracePeriodSeconds").unwrap_or(0)),
                    "must not be set for readinessProbes",
                ));
            }
        } else if let Some(st) = int(probe, "successThreshold").filter(|v| *v != 1) {
            errs.push(invalid_int(
                &format!("{p}.successThreshold"),
                st,
                "must be 1",
            ));
        }
        validate_handler(probe, &p, false, errs);
        for f in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            nonnegative(probe, f, &format!("{p}.{f}"), errs);
        }
    }
}

fn validate_handler(h: &Value, path: &str, lifecycle: bool, errs: &mut Errs) {
    let mut n = 0;
    let kinds: &[&str] = if lifecycle {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    } else {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    };
    for kind in kinds {
        let Some(a) = get(h, kind) else {
            continue;
        };
        let p = format!("{path}.{kind}");
        if n > 0 {
            errs.push(forbidden(&p, "may not specify more than 1 handler type"));
            continue;
        }
        n += 1;
        match *kind {
            "exec" if arr(a, "command").is_empty() => {
                errs.push(required(&format!("{p}.command"), ""));
            }
            "httpGet" => {
                if s(a, "path").is_empty() {
                    errs.push(required(&format!("{p}.path"), ""));
                }
                validate_port_num_or_name(child(a, "port"), &format!("{p}.port"), errs);
                let scheme = s(a, "scheme");
                if !scheme.is_empty() && scheme != "HTTP" && scheme != "HTTPS" {
                    errs.push(not_supported(
                        &format!("{p}.scheme"),
                        BadValue::Str(scheme.into()),
                        &["HTTP", "HTTPS"],
                    ));
                }
            }
            "tcpSocket" => validate_port_num_or_name(child(a, "port"), &format!("{p}.port"), errs),
            "grpc" => {
                let port = int(a, "port").unwrap_or(0);
                for m in is_valid_port_num(port) {
                    errs.push(invalid_int(&format!("{p}.port"), port, m));
                }
            }
            _ => {}
        }
    }
    if n == 0 {
        errs.push(required(path, "must specify a handler type"));
    }
}

/// `ValidatePortNumOrName` for an `IntOrString` port.
fn validate_port_num_or_name(port: &Value, path: &str, errs: &mut Errs) {
    match port {
        Value::String(name) => {
            for m in is_valid_port_name(name) {
                errs.push(invalid_str(path, name, m));
            }
        }
        other => {
            let n = other.as_i64().unwrap_or(0);
            for m in is_valid_port_num(n) {
                errs.push(invalid_int(path, n, m));
            }
        }
    }
}

fn validate_tolerations(tols: &[Value], path: &str, errs: &mut Errs) {
    for (i, t) in tols.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let key = s(t, "key");
        let op = s(t, "operator");
        let effect = s(t, "effect");
        if !key.is_empty() {
            for m in is_qualified_name(key) {
                errs.push(invalid_str(&format!("{p}.key"), key, m));
            }
        }
        if key.is_empty() && op != "Exists" {
            errs.push(invalid_str(
                &format!("{p}.operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if get(t, "tolerationSeconds").is_some() && effect != "NoExecute" {
            errs.push(invalid_str(
                &format!("{p}.effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        let value = s(t, "value");
        match op {
            "Equal" | "" => {
                let msgs = is_valid_label_value(value);
                if !msgs.is_empty() {
                    errs.push(invalid_str(&format!("{p}.operator"), value, msgs.join(";")));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    let secs = match int(t, "tolerationSeconds") {
                        Some(_) => "(*int64)(0xc000000000)".to_string(),
                        None => "(*int64)(nil)".to_string(),
                    };
                    errs.push(invalid(
                        &format!("{p}.operator"),
                        BadValue::Go(format!(
                            "core.Toleration{{Key:{}, Operator:{}, Value:{}, Effect:{}, TolerationSeconds:{secs}}}",
                            go_quote(key),
                            go_quote(op),
                            go_quote(value),
                            go_quote(effect)
                        )),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(not_supported(
                &format!("{p}.operator"),
                BadValue::Str(other.into()),
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            errs.push(not_supported(
                &format!("{p}.effect"),
                BadValue::Str(effect.into()),
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
}

const POD_UPDATABLE: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodUpdate`.
fn validate_pod_update(new: &Value, old: &Value, errs: &mut Errs) {
    validate_object_meta(new, true, NameRule::Subdomain, errs);
    let ns = child(new, "spec");
    let os = child(old, "spec");
    validate_pod_spec(ns, "spec", errs);
    for key in ["containers", "initContainers"] {
        let (nc, oc) = (arr(ns, key), arr(os, key));
        let p = format!("spec.{key}");
        if nc.len() != oc.len() {
            errs.push(forbidden(
                &p,
                "pod updates may not add or remove containers",
            ));
            return;
        }
        for (i, c) in nc.iter().enumerate() {
            let image = s(c, "image");
            if image.is_empty() {
                errs.push(required(&format!("{p}[{i}].image"), ""));
            }
            if image.trim() != image {
                errs.push(invalid_str(
                    &format!("{p}[{i}].image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    match (
        int(ns, "activeDeadlineSeconds"),
        int(os, "activeDeadlineSeconds"),
    ) {
        (Some(n), old_ads) => {
            if !(0..=i64::from(i32::MAX)).contains(&n) {
                errs.push(invalid_int(
                    "spec.activeDeadlineSeconds",
                    n,
                    inclusive_range_error(0, i64::from(i32::MAX)),
                ));
                return;
            }
            if old_ads.is_some_and(|o| o < n) {
                errs.push(invalid_int(
                    "spec.activeDeadlineSeconds",
                    n,
                    "must be less than or equal to previous value",
                ));
                return;
            }
        }
        (None, Some(_)) => errs.push(invalid(
            "spec.activeDeadlineSeconds",
            BadValue::Str("null".into()),
            "must not update from a positive integer to nil value",
        )),
        (None, None) => {}
    }
    // Only additions to tolerations (tolerationSeconds may change).
    let new_tols = arr(ns, "tolerations");
    for ot in arr(os, "tolerations") {
        let found = new_tols.iter().any(|nt| {
            let mut a = ot.clone();
            if let Some(m) = a.as_object_mut() {
                m.remove("tolerationSeconds");
            }
            let mut b = nt.clone();
            if let Some(m) = b.as_object_mut() {
                m.remove("tolerationSeconds");
            }
            normalize(&a) == normalize(&b)
        });
        if !found {
            errs.push(forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            break;
        }
    }
    // Only removals of scheduling gates.
    let old_gates = arr(os, "schedulingGates");
    for (i, g) in arr(ns, "schedulingGates").iter().enumerate() {
        if !old_gates.contains(g) {
            errs.push(forbidden(
                &format!("spec.schedulingGates[{i}]"),
                "only deletion is allowed, but found new scheduling gate",
            ));
        }
    }
    // Everything else must be unchanged.
    let mut munged = ns.clone();
    for key in ["containers", "initContainers"] {
        if let (Some(nc), Some(oc)) = (
            munged.get_mut(key).and_then(Value::as_array_mut),
            os.get(key).and_then(Value::as_array),
        ) {
            for (n, o) in nc.iter_mut().zip(oc) {
                if let Some(m) = n.as_object_mut() {
                    match o.get("image") {
                        Some(img) => m.insert("image".into(), img.clone()),
                        None => m.remove("image"),
                    };
                }
            }
        }
    }
    if let Some(m) = munged.as_object_mut() {
        for key in ["activeDeadlineSeconds", "tolerations", "schedulingGates"] {
            match os.get(key) {
                Some(v) => m.insert(key.into(), v.clone()),
                None => m.remove(key),
            };
        }
        let old_grace = int(os, "terminationGracePeriodSeconds");
        if old_grace.is_some_and(|g| g < 0) && int(ns, "terminationGracePeriodSeconds") == Some(1) {
            if let Some(g) = os.get("terminationGracePeriodSeconds") {
                m.insert("terminationGracePeriodSeconds".into(), g.clone());
            }
        }
        // Bound by the scheduler through the binding subresource.
        if s(os, "nodeName").is_empty() {
            match os.get("nodeName") {
                Some(v) => m.insert("nodeName".into(), v.clone()),
                None => m.remove("nodeName"),
            };
        }
    }
    if normalize(&munged) != normalize(os) {
        errs.push(forbidden(
            "spec",
            format!(
                "{POD_UPDATABLE}\n{}",
                spec_diff("core.PodSpec", os, &munged)
            ),
        ));
    }
}

/// JSON with empty values dropped, so that `[]`, `{}`, `""` and missing compare equal
/// (kube compares with semantic equality on typed structs).
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), normalize(v)))
                .filter(|(_, v)| {
                    !is_empty_value(Some(v))
                        && *v != Value::Bool(false)
                        && v.as_i64().is_none_or(|n| n != 0)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

/// An abbreviated `cmp.Diff` of two specs: changed top-level fields, `-` old and `+`
/// new.
fn spec_diff(type_name: &str, old: &Value, new: &Value) -> String {
    let (o, n) = (normalize(old), normalize(new));
    let empty = Map::new();
    let om = o.as_object().unwrap_or(&empty);
    let nm = n.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = om.keys().chain(nm.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = format!("  {type_name}{{\n");
    let mut same = 0;
    for k in keys {
        let (a, b) = (om.get(k), nm.get(k));
        if a == b {
            same += 1;
            continue;
        }
        if same > 0 {
            out.push_str(&format!("  \t... // {same} identical fields\n"));
            same = 0;
        }
        let field = upper_first(k);
        if let Some(a) = a {
            out.push_str(&format!("- \t{field}: {},\n", go_json(a)));
        }
        if let Some(b) = b {
            out.push_str(&format!("+ \t{field}: {},\n", go_json(b)));
        }
    }
    if same > 0 {
        out.push_str(&format!("  \t... // {same} identical fields\n"));
    }
    out.push_str("  }\n");
    out
}

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";

fn template_labels(spec: &Value) -> Option<&Value> {
    spec.pointer("/template/metadata/labels")
        .filter(|l| l.is_object())
}

fn selector_of(spec: &Value) -> Option<&Value> {
    let sel = spec.get("selector");
    if selector_is_empty(sel) {
        None
    } else {
        sel
    }
}

/// Deployment and ReplicaSet specs (`ValidateDeploymentSpec` / `ValidateReplicaSetSpec`
/// with `ValidatePodTemplateSpecForReplicaSet`).
fn validate_replica_set_like(spec: &Value, what: &str, errs: &mut Errs) {
    nonnegative(spec, "replicas", "spec.replicas", errs);
    nonnegative(spec, "minReadySeconds", "spec.minReadySeconds", errs);
    let sel = selector_of(spec);
    match sel {
        None => errs.push(required("spec.selector", "")),
        Some(sel) => validate_label_selector(Some(sel), "spec.selector", errs),
    }
    if let Some(sel) = sel.filter(|s| !selector_converts(s)) {
        errs.push(invalid(
            "spec.selector",
            BadValue::Go(go_label_selector(Some(sel))),
            "invalid label selector",
        ));
        return;
    }
    let _ = what;
    if !selector_matches(sel, template_labels(spec)) {
        errs.push(invalid(
            "spec.template.metadata.labels",
            BadValue::Go(go_string_map(template_labels(spec))),
            SELECTOR_MISMATCH,
        ));
    }
    let t = child(spec, "template");
    validate_pod_template_spec(t, "spec.template", errs);
    template_restart_always(t, "ReplicaSet", errs);
}

fn template_restart_always(t: &Value, what: &str, errs: &mut Errs) {
    let ts = child(t, "spec");
    let rp = s(ts, "restartPolicy");
    if rp != "Always" {
        errs.push(not_supported(
            "spec.template.spec.restartPolicy",
            BadValue::Str(rp.into()),
            &["Always"],
        ));
    }
    if get(ts, "activeDeadlineSeconds").is_some() {
        errs.push(forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            format!("activeDeadlineSeconds in {what} is not Supported"),
        ));
    }
}

fn validate_deployment_extras(spec: &Value, errs: &mut Errs) {
    let strategy = child(spec, "strategy");
    let ty = s(strategy, "type");
    match ty {
        "Recreate" => {
            if get(strategy, "rollingUpdate").is_some() {
                errs.push(forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match get(strategy, "rollingUpdate") {
            None => errs.push(required(
                "spec.strategy.rollingUpdate",
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let p = "spec.strategy.rollingUpdate";
                let mu = child(ru, "maxUnavailable");
                let ms = child(ru, "maxSurge");
                validate_positive_int_or_percent(mu, &format!("{p}.maxUnavailable"), errs);
                validate_positive_int_or_percent(ms, &format!("{p}.maxSurge"), errs);
                if int_or_percent_value(mu) == 0 && int_or_percent_value(ms) == 0 {
                    errs.push(invalid(
                        &format!("{p}.maxUnavailable"),
                        BadValue::Go(go_int_or_string(mu)),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                not_more_than_100_percent(mu, &format!("{p}.maxUnavailable"), errs);
            }
        },
        other => errs.push(not_supported(
            "spec.strategy",
            BadValue::Go(format!(
                "apps.DeploymentStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}}",
                go_quote(other)
            )),
            &["Recreate", "RollingUpdate"],
        )),
    }
    nonnegative(
        spec,
        "revisionHistoryLimit",
        "spec.revisionHistoryLimit",
        errs,
    );
    if let Some(pds) = int(spec, "progressDeadlineSeconds") {
        if pds < 0 {
            errs.push(invalid_int(
                "spec.progressDeadlineSeconds",
                pds,
                IS_NEGATIVE,
            ));
        }
        if pds <= int(spec, "minReadySeconds").unwrap_or(0) {
            errs.push(invalid_int(
                "spec.progressDeadlineSeconds",
                pds,
                "must be greater than minReadySeconds",
            ));
        }
    }
}

fn percent_value(v: &Value) -> Option<i64> {
    let s = v.as_str()?;
    if !is_valid_percent(s).is_empty() {
        return None;
    }
    s.trim_end_matches('%').parse().ok()
}

fn int_or_percent_value(v: &Value) -> i64 {
    match v {
        Value::String(s) => percent_value(v).unwrap_or_else(|| s.parse().unwrap_or(0)),
        other => other.as_i64().unwrap_or(0),
    }
}

/// `ValidatePositiveIntOrPercent`.
fn validate_positive_int_or_percent(v: &Value, path: &str, errs: &mut Errs) {
    match v {
        Value::String(s) => {
            for m in is_valid_percent(s) {
                errs.push(invalid(path, BadValue::Go(go_int_or_string(v)), m));
            }
        }
        Value::Null => {}
        other => {
            let n = other.as_i64().unwrap_or(0);
            if n < 0 {
                errs.push(invalid_int(path, n, IS_NEGATIVE));
            }
        }
    }
}

fn not_more_than_100_percent(v: &Value, path: &str, errs: &mut Errs) {
    if percent_value(v).is_some_and(|p| p > 100) {
        errs.push(invalid(
            path,
            BadValue::Go(go_int_or_string(v)),
            "must not be greater than 100%",
        ));
    }
}

fn selector_immutable(new: &Value, old: &Value, errs: &mut Errs) {
    let ns = new.pointer("/spec/selector");
    let os = old.pointer("/spec/selector");
    if normalize(ns.unwrap_or(&NULL)) != normalize(os.unwrap_or(&NULL)) {
        errs.push(immutable(
            "spec.selector",
            BadValue::Go(go_label_selector(ns)),
        ));
    }
}

fn validate_daemon_set(spec: &Value, errs: &mut Errs) {
    let sel = selector_of(spec);
    validate_label_selector(sel, "spec.selector", errs);
    let converts = sel.is_none_or(selector_converts);
    if converts && !selector_matches(sel, template_labels(spec)) {
        errs.push(invalid(
            "spec.template.metadata.labels",
            BadValue::Go(go_string_map(template_labels(spec))),
            SELECTOR_MISMATCH,
        ));
    }
    let t = child(spec, "template");
    validate_pod_template_spec(t, "spec.template", errs);
    template_restart_always(t, "DaemonSet", errs);
    nonnegative(spec, "minReadySeconds", "spec.minReadySeconds", errs);
    let us = child(spec, "updateStrategy");
    match s(us, "type") {
        "OnDelete" => {}
        "RollingUpdate" => match get(us, "rollingUpdate") {
            None => errs.push(required("spec.updateStrategy.rollingUpdate", "")),
            Some(ru) => {
                let p = "spec.updateStrategy.rollingUpdate";
                let mu = child(ru, "maxUnavailable");
                let ms = child(ru, "maxSurge");
                validate_positive_int_or_percent(mu, &format!("{p}.maxUnavailable"), errs);
                validate_positive_int_or_percent(ms, &format!("{p}.maxSurge"), errs);
                not_more_than_100_percent(mu, &format!("{p}.maxUnavailable"), errs);
                not_more_than_100_percent(ms, &format!("{p}.maxSurge"), errs);
                let (hu, hs) = (int_or_percent_value(mu) != 0, int_or_percent_value(ms) != 0);
                if hu && hs {
                    errs.push(invalid(
                        &format!("{p}.maxSurge"),
                        BadValue::Go(go_int_or_string(ms)),
                        "may not be set when maxUnavailable is non-zero",
                    ));
                } else if !hu && !hs {
                    errs.push(required(&format!("{p}.maxUnavailable"), "cannot be 0 when maxSurge is 0"));
                }
            }
        },
        other => errs.push(not_supported(
            "spec.updateStrategy",
            BadValue::Go(format!(
                "apps.DaemonSetUpdateStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}}",
                go_quote(other)
            )),
            &["RollingUpdate", "OnDelete"],
        )),
    }
    nonnegative(
        spec,
        "revisionHistoryLimit",
        "spec.revisionHistoryLimit",
        errs,
    );
}

fn validate_stateful_set(spec: &Value, errs: &mut Errs) {
    match s(spec, "podManagementPolicy") {
        "" => errs.push(required("spec.podManagementPolicy", "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(invalid_str(
            "spec.podManagementPolicy",
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let us = child(spec, "updateStrategy");
    match s(us, "type") {
        "" => errs.push(required("spec.updateStrategy", "")),
        "OnDelete" => {
            if get(us, "rollingUpdate").is_some() {
                errs.push(invalid(
                    "spec.updateStrategy.rollingUpdate",
                    BadValue::Go(format!(
                        "apps.RollingUpdateStatefulSetStrategy{}",
                        go_json(child(us, "rollingUpdate"))
                    )),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = get(us, "rollingUpdate") {
                nonnegative(
                    ru,
                    "partition",
                    "spec.updateStrategy.rollingUpdate.partition",
                    errs,
                );
            }
        }
        _ => errs.push(invalid(
            "spec.updateStrategy",
            BadValue::Go(format!("apps.StatefulSetUpdateStrategy{}", go_json(us))),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(p) = get(spec, "persistentVolumeClaimRetentionPolicy") {
        for key in ["whenDeleted", "whenScaled"] {
            let v = s(p, key);
            if v != "Retain" && v != "Delete" {
                errs.push(not_supported(
                    &format!("spec.persistentVolumeClaimRetentionPolicy.{key}"),
                    BadValue::Str(v.into()),
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    nonnegative(spec, "replicas", "spec.replicas", errs);
    nonnegative(spec, "minReadySeconds", "spec.minReadySeconds", errs);
    let sel = selector_of(spec);
    match sel {
        None => errs.push(required("spec.selector", "")),
        Some(sel) => validate_label_selector(Some(sel), "spec.selector", errs),
    }
    if let Some(sel) = sel.filter(|s| !selector_converts(s)) {
        errs.push(invalid(
            "spec.selector",
            BadValue::Go(go_label_selector(Some(sel))),
            "",
        ));
    } else {
        if !selector_matches(sel, template_labels(spec)) {
            errs.push(invalid(
                "spec.template.metadata.labels",
                BadValue::Go(go_string_map(template_labels(spec))),
                SELECTOR_MISMATCH,
            ));
        }
        let meta = spec.pointer("/template/metadata").unwrap_or(&NULL);
        validate_labels(meta.get("labels"), "spec.template.labels", errs);
        validate_annotations(meta.get("annotations"), "spec.template.annotations", errs);
    }
    template_restart_always(child(spec, "template"), "StatefulSet", errs);
}

fn validate_stateful_set_update(new: &Value, old: &Value, errs: &mut Errs) {
    let strip = |v: &Value| {
        let mut spec = child(v, "spec").clone();
        if let Some(m) = spec.as_object_mut() {
            for key in [
                "replicas",
                "template",
                "updateStrategy",
                "minReadySeconds",
                "ordinals",
                "persistentVolumeClaimRetentionPolicy",
            ] {
                m.remove(key);
            }
        }
        normalize(&spec)
    };
    if strip(new) != strip(old) {
        errs.push(forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ));
    }
}

fn validate_replication_controller(obj: &Value, errs: &mut Errs) {
    let spec = child(obj, "spec");
    nonnegative(spec, "minReadySeconds", "spec.minReadySeconds", errs);
    let sel = map_of(spec, "selector").filter(|m| !m.is_empty());
    if sel.is_none() {
        errs.push(required("spec.selector", ""));
    }
    nonnegative(spec, "replicas", "spec.replicas", errs);
    let Some(t) = get(spec, "template") else {
        errs.push(required("spec.template", ""));
        return;
    };
    if let Some(sel) = sel {
        let labels = template_labels(spec);
        let matches = sel
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)).map(value_text) == Some(value_text(v)));
        if !matches {
            errs.push(invalid(
                "spec.template.metadata.labels",
                BadValue::Go(go_string_map(labels)),
                SELECTOR_MISMATCH,
            ));
        }
    }
    validate_pod_template_spec(t, "spec.template", errs);
    template_restart_always(t, "ReplicationController", errs);
}

// ---------------------------------------------------------------------------
// Jobs and CronJobs
// ---------------------------------------------------------------------------

/// `validateJobSpec` (shared by Jobs and CronJob job templates).
fn validate_job_spec_common(spec: &Value, path: &str, errs: &mut Errs) {
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        nonnegative(spec, key, &format!("{path}.{key}"), errs);
    }
    let mode = s(spec, "completionMode");
    if !mode.is_empty() && mode != "NonIndexed" && mode != "Indexed" {
        errs.push(not_supported(
            &format!("{path}.completionMode"),
            BadValue::Str(mode.into()),
            &["NonIndexed", "Indexed"],
        ));
    }
    if mode == "Indexed" && get(spec, "completions").is_none() {
        errs.push(required(
            &format!("{path}.completions"),
            "when completion mode is Indexed",
        ));
    }
    let t = child(spec, "template");
    validate_pod_template_spec(t, &format!("{path}.template"), errs);
    let rp = s(child(t, "spec"), "restartPolicy");
    let rpp = format!("{path}.template.spec.restartPolicy");
    if rp == "Always" || rp.is_empty() {
        errs.push(required(&rpp, "valid values: \"OnFailure\", \"Never\""));
    } else if rp != "OnFailure" && rp != "Never" {
        errs.push(not_supported(
            &rpp,
            BadValue::Str(rp.into()),
            &["OnFailure", "Never"],
        ));
    }
}

fn validate_job(obj: &Value, errs: &mut Errs) {
    let spec = child(obj, "spec");
    let manual = boolean(spec, "manualSelector") == Some(true);
    if !manual && template_labels(spec).is_none() {
        errs.push(required("spec.template.metadata.labels", ""));
    }
    validate_job_spec_common(spec, "spec", errs);
    let sel = selector_of(spec);
    match sel {
        None => errs.push(required("spec.selector", "")),
        Some(sel) => validate_label_selector(Some(sel), "spec.selector", errs),
    }
    if sel.is_none_or(selector_converts) && !selector_matches(sel, template_labels(spec)) {
        errs.push(invalid(
            "spec.template.metadata.labels",
            BadValue::Go(go_string_map(template_labels(spec))),
            SELECTOR_MISMATCH,
        ));
    }
}

fn validate_job_update(new: &Value, old: &Value, errs: &mut Errs) {
    let (ns, os) = (child(new, "spec"), child(old, "spec"));
    let indexed = s(ns, "completionMode") == "Indexed";
    let elastic = indexed && int(ns, "completions") == int(ns, "parallelism");
    if int(ns, "completions") != int(os, "completions") && !elastic {
        let v = match int(ns, "completions") {
            Some(n) => BadValue::Int(n),
            None => BadValue::Str("null".into()),
        };
        errs.push(immutable("spec.completions", v));
    }
    selector_immutable(new, old, errs);
    // The pod template is immutable, except scheduling directives while the Job is
    // suspended and has never started.
    let mutable_scheduling =
        boolean(ns, "suspend") == Some(true) && get(child(old, "status"), "startTime").is_none();
    let strip = |t: &Value| {
        let mut t = t.clone();
        if mutable_scheduling {
            if let Some(m) = t.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("labels");
                m.remove("annotations");
            }
            if let Some(m) = t.get_mut("spec").and_then(Value::as_object_mut) {
                for key in ["nodeSelector", "tolerations", "affinity", "schedulingGates"] {
                    m.remove(key);
                }
            }
        }
        normalize(&t)
    };
    let nt = child(ns, "template");
    if strip(nt) != strip(child(os, "template")) {
        errs.push(immutable(
            "spec.template",
            BadValue::Go(format!("core.PodTemplateSpec{}", go_json(nt))),
        ));
    }
    for key in [
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ] {
        if normalize(child(ns, key)) != normalize(child(os, key)) {
            let v = match ns.get(key) {
                Some(Value::String(s)) => BadValue::Str(s.clone()),
                Some(Value::Number(n)) => BadValue::Int(n.as_i64().unwrap_or(0)),
                Some(other) => BadValue::Go(go_json(other)),
                None => BadValue::Str("null".into()),
            };
            errs.push(immutable(&format!("spec.{key}"), v));
        }
    }
}

fn validate_cron_job(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = child(obj, "spec");
    let old_spec = old.map(|o| child(o, "spec"));
    let schedule = s(spec, "schedule");
    if schedule.is_empty() {
        errs.push(required("spec.schedule", ""));
    } else {
        if let Err(e) = parse_cron(schedule) {
            errs.push(invalid_str("spec.schedule", schedule, e));
        }
        let allow_tz = old_spec.is_some_and(|o| s(o, "schedule").contains("TZ"));
        if allow_tz && schedule.contains("TZ") && get(spec, "timeZone").is_some() {
            errs.push(invalid_str(
                "spec.schedule",
                schedule,
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            ));
        } else if !allow_tz && schedule.contains("TZ") {
            errs.push(invalid_str(
                "spec.schedule",
                schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    nonnegative(
        spec,
        "startingDeadlineSeconds",
        "spec.startingDeadlineSeconds",
        errs,
    );
    let tz_changed = old_spec.is_none_or(|o| o.get("timeZone") != spec.get("timeZone"));
    if let Some(tz) = get(spec, "timeZone").map(value_text).filter(|_| tz_changed) {
        let p = "spec.timeZone";
        let bad_part = tz.split('/').any(|part| {
            part == "."
                || part == ".."
                || part.starts_with('-')
                || part.is_empty()
                || !part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-+".contains(c))
        });
        if tz.is_empty() {
            errs.push(invalid_str(
                p,
                &tz,
                "timeZone must be nil or non-empty string",
            ));
        } else if bad_part {
            errs.push(invalid_str(p, &tz, format!("unknown time zone {tz}")));
        } else if tz.eq_ignore_ascii_case("local") {
            errs.push(invalid_str(
                p,
                &tz,
                "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
            ));
        } else if !is_valid_time_zone(&tz) {
            errs.push(invalid_str(p, &tz, format!("unknown time zone {tz}")));
        }
    }
    match s(spec, "concurrencyPolicy") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(required("spec.concurrencyPolicy", "")),
        other => errs.push(not_supported(
            "spec.concurrencyPolicy",
            BadValue::Str(other.into()),
            &["Allow", "Forbid", "Replace"],
        )),
    }
    let jt = child(spec, "jobTemplate");
    let js = child(jt, "spec");
    validate_job_spec_common(js, "spec.jobTemplate.spec", errs);
    if let Some(sel) = get(js, "selector") {
        errs.push(invalid(
            "spec.jobTemplate.spec.selector",
            BadValue::Go(go_label_selector(Some(sel))),
            "`selector` will be auto-generated",
        ));
    }
    if boolean(js, "manualSelector") == Some(true) {
        errs.push(not_supported(
            "spec.jobTemplate.spec.manualSelector",
            BadValue::Go("true".into()),
            &["nil", "false"],
        ));
    }
    nonnegative(
        spec,
        "successfulJobsHistoryLimit",
        "spec.successfulJobsHistoryLimit",
        errs,
    );
    nonnegative(
        spec,
        "failedJobsHistoryLimit",
        "spec.failedJobsHistoryLimit",
        errs,
    );
    if old.is_none() {
        let name = s(child(obj, "metadata"), "name");
        if name.len() > 52 {
            errs.push(invalid_str(
                "metadata.name",
                name,
                "must be no more than 52 characters",
            ));
        }
    }
}

fn is_valid_time_zone(tz: &str) -> bool {
    if tz.is_empty() || tz.eq_ignore_ascii_case("local") {
        return false;
    }
    if tz == "UTC" || tz == "GMT" {
        return true;
    }
    let path = std::path::Path::new("/usr/share/zoneinfo").join(tz);
    if tz.contains("..") || tz.starts_with('/') {
        return false;
    }
    if std::path::Path::new("/usr/share/zoneinfo").is_dir() {
        path.is_file()
    } else {
        tz.split('/').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-+".contains(c))
        })
    }
}

/// Names a cron field accepts (lower case) and the value of the first.
type CronNames = Option<(&'static [&'static str], u64)>;
/// A cron field's bounds and names.
type CronField = (u64, u64, CronNames);

/// Parse a cron schedule as robfig/cron's standard parser does (five fields or a
/// descriptor), returning its error text.
pub fn parse_cron(spec: &str) -> Result<(), String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut spec = spec;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let Some(i) = spec.find(' ') else {
            return Err(format!(
                "provided bad location {}: unknown time zone",
                &spec[spec.find('=').map_or(0, |e| e + 1)..]
            ));
        };
        let eq = spec.find('=').map_or(0, |e| e + 1);
        let loc = &spec[eq..i];
        if !is_valid_time_zone(loc) && !loc.eq_ignore_ascii_case("local") {
            return Err(format!(
                "provided bad location {loc}: unknown time zone {loc}"
            ));
        }
        spec = spec[i..].trim();
    }
    if spec.starts_with('@') {
        return match spec {
            "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight"
            | "@hourly" => Ok(()),
            _ => match spec.strip_prefix("@every ") {
                Some(d) => parse_go_duration(d)
                    .map(|_| ())
                    .map_err(|e| format!("failed to parse duration {spec}: {e}")),
                None => Err(format!("unrecognized descriptor: {spec}")),
            },
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    const MONTHS: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let bounds: [CronField; 5] = [
        (0, 59, None),
        (0, 23, None),
        (1, 31, None),
        (1, 12, Some((MONTHS, 1))),
        (0, 6, Some((DAYS, 0))),
    ];
    for (field, (min, max, names)) in fields.iter().zip(bounds) {
        for expr in field.split(',').filter(|e| !e.is_empty()) {
            cron_range(expr, min, max, names)?;
        }
    }
    Ok(())
}

fn cron_range(expr: &str, min: u64, max: u64, names: CronNames) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_high.len() == 1;
    let parse = |s: &str| -> Result<u64, String> {
        if let Some((list, offset)) = names {
            if let Some(i) = list.iter().position(|n| n.eq_ignore_ascii_case(s)) {
                return Ok(i as u64 + offset);
            }
        }
        cron_int(s)
    };
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        (min, max)
    } else {
        let start = parse(low_high[0])?;
        match low_high.len() {
            1 => (start, start),
            2 => (start, parse(low_high[1])?),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = cron_int(range_and_step[1])?;
            if single {
                end = max;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

fn cron_int(s: &str) -> Result<u64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "failed to parse int from {s}: strconv.Atoi: parsing {}: invalid syntax",
            go_quote(s)
        ));
    }
    let n: i128 = s.parse().map_err(|_| {
        format!(
            "failed to parse int from {s}: strconv.Atoi: parsing {}: value out of range",
            go_quote(s)
        )
    })?;
    if n > i128::from(i64::MAX) || n < i128::from(i64::MIN) {
        return Err(format!(
            "failed to parse int from {s}: strconv.Atoi: parsing {}: value out of range",
            go_quote(s)
        ));
    }
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {s}"));
    }
    Ok(n as u64)
}

/// Go's `time.ParseDuration`, returning nanoseconds.
fn parse_go_duration(orig: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(orig));
    let mut s = orig;
    let mut neg = false;
    if let Some(r) = s.strip_prefix('-') {
        neg = true;
        s = r;
    } else if let Some(r) = s.strip_prefix('+') {
        s = r;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !s.is_empty() {
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let num = &s[..num_end];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = num.parse().map_err(|_| invalid())?;
        s = &s[num_end..];
        let unit_end = s
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(s.len());
        let unit = &s[..unit_end];
        s = &s[unit_end..];
        let scale: f64 = match unit {
            "" => return Err(format!("time: missing unit in duration {}", go_quote(orig))),
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote(other),
                    go_quote(orig)
                ))
            }
        };
        total += value * scale;
    }
    if total > 9.223_372_036_854_775e18 {
        return Err(invalid());
    }
    let n = total as i128;
    Ok(if neg { -n } else { n })
}

// ---------------------------------------------------------------------------
// Services and endpoints
// ---------------------------------------------------------------------------

fn validate_service(obj: &Value, create: bool, errs: &mut Errs) {
    let spec = child(obj, "spec");
    let ty = s(spec, "type");
    let headless = s(spec, "clusterIP") == "None";
    let ports = arr(spec, "ports");
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(required("spec.ports", ""));
    }
    let first_ip = arr(spec, "clusterIPs")
        .first()
        .map(value_text)
        .unwrap_or_else(|| s(spec, "clusterIP").to_string());
    match ty {
        "LoadBalancer" | "NodePort" if headless => {
            errs.push(invalid_str(
                "spec.clusterIPs[0]",
                &first_ip,
                format!("may not be set to 'None' for {ty} services"),
            ));
        }
        "ExternalName" => {
            if create {
                if !arr(spec, "clusterIPs").is_empty() || !s(spec, "clusterIP").is_empty() {
                    errs.push(forbidden(
                        "spec.clusterIPs",
                        "may not be set for ExternalName services",
                    ));
                }
                if !arr(spec, "ipFamilies").is_empty() {
                    errs.push(forbidden(
                        "spec.ipFamilies",
                        "may not be set for ExternalName services",
                    ));
                }
                if get(spec, "ipFamilyPolicy").is_some() {
                    errs.push(forbidden(
                        "spec.ipFamilyPolicy",
                        "may not be set for ExternalName services",
                    ));
                }
            }
            let cname = s(spec, "externalName");
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                errs.push(required("spec.externalName", ""));
            } else {
                for m in is_dns1123_subdomain(cname) {
                    errs.push(invalid_str("spec.externalName", cname, m));
                }
            }
        }
        _ => {}
    }
    let require_name = ports.len() > 1;
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        let name = s(p, "name");
        if require_name && name.is_empty() {
            errs.push(required(&format!("{pp}.name"), ""));
        } else if !name.is_empty() {
            for m in is_dns1123_label(name) {
                errs.push(invalid_str(&format!("{pp}.name"), name, m));
            }
            if !names.insert(name.to_string()) {
                errs.push(duplicate(&format!("{pp}.name"), BadValue::Str(name.into())));
            }
        }
        let port = int(p, "port").unwrap_or(0);
        for m in is_valid_port_num(port) {
            errs.push(invalid_int(&format!("{pp}.port"), port, m));
        }
        validate_protocol(s(p, "protocol"), &format!("{pp}.protocol"), errs);
        validate_port_num_or_name(child(p, "targetPort"), &format!("{pp}.targetPort"), errs);
        if let Some(ap) = get(p, "appProtocol").map(value_text) {
            for m in is_qualified_name(&ap) {
                errs.push(invalid_str(&format!("{pp}.appProtocol"), &ap, m));
            }
        }
    }
    validate_labels(spec.get("selector"), "spec.selector", errs);
    let sa = s(spec, "sessionAffinity");
    if sa.is_empty() {
        errs.push(required("spec.sessionAffinity", ""));
    } else if sa != "ClientIP" && sa != "None" {
        errs.push(not_supported(
            "spec.sessionAffinity",
            BadValue::Str(sa.into()),
            &["ClientIP", "None"],
        ));
    }
    // Cluster IPs.
    if ty != "ExternalName" {
        for (i, ip) in arr(spec, "clusterIPs").iter().enumerate() {
            let ip = value_text(ip);
            if i == 0 && ip == "None" {
                continue;
            }
            if !is_valid_ip(&ip) {
                errs.push(invalid_str(&format!("spec.clusterIPs[{i}]"), &ip, IP_MSG));
            }
        }
    }
    for (i, ip) in arr(spec, "externalIPs").iter().enumerate() {
        let ip = value_text(ip);
        if !is_valid_ip(&ip) {
            errs.push(invalid_str(&format!("spec.externalIPs[{i}]"), &ip, IP_MSG));
        }
    }
    const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if ty.is_empty() {
        errs.push(required("spec.type", ""));
    } else if !TYPES.contains(&ty) {
        errs.push(not_supported("spec.type", BadValue::Str(ty.into()), TYPES));
    }
    // kube clears type-dependent fields when the type changes, so these two checks
    // only hold on create.
    if create && ty == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if int(p, "nodePort").unwrap_or(0) != 0 {
                errs.push(forbidden(
                    &format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let np = int(p, "nodePort").unwrap_or(0);
        if np == 0 {
            continue;
        }
        if !node_ports.insert((s(p, "protocol").to_string(), np)) {
            errs.push(duplicate(
                &format!("spec.ports[{i}].nodePort"),
                BadValue::Int(np),
            ));
        }
    }
    let mut seen = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let proto = s(p, "protocol");
        let port = int(p, "port").unwrap_or(0);
        if !seen.insert((proto.to_string(), port)) {
            errs.push(duplicate(
                &format!("spec.ports[{i}]"),
                BadValue::Go(format!(
                    "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                    go_quote(proto)
                )),
            ));
        }
    }
    let etp = s(spec, "externalTrafficPolicy");
    if create && !etp.is_empty() {
        if ty == "ClusterIP" && arr(spec, "externalIPs").is_empty() || ty == "ExternalName" {
            errs.push(invalid_str(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set for externally-accessible services",
            ));
        } else if etp != "Cluster" && etp != "Local" {
            errs.push(not_supported(
                "spec.externalTrafficPolicy",
                BadValue::Str(etp.into()),
                &["Cluster", "Local"],
            ));
        }
    }
}

/// The node-port allocator's range check (30000-32767). kube allocates before it
/// validates, so these errors are reported on their own.
fn node_port_range_errors(obj: &Value) -> Errs {
    let spec = child(obj, "spec");
    let mut errs = Vec::new();
    if matches!(s(spec, "type"), "NodePort" | "LoadBalancer") {
        for (i, p) in arr(spec, "ports").iter().enumerate() {
            let np = int(p, "nodePort").unwrap_or(0);
            if np != 0 && !(30000..=32767).contains(&np) {
                errs.push(invalid_int(
                    &format!("spec.ports[{i}].nodePort"),
                    np,
                    "provided port is not in the valid range. The range of valid ports is 30000-32767",
                ));
            }
        }
    }
    errs
}

fn validate_service_update(new: &Value, old: &Value, errs: &mut Errs) {
    let (ns, os) = (child(new, "spec"), child(old, "spec"));
    if s(ns, "type") == "ExternalName" || s(os, "type") == "ExternalName" {
        return;
    }
    let headless = |s2: &Value| s(s2, "clusterIP") == "None";
    if headless(ns) && headless(os) {
        return;
    }
    let new_ips: Vec<String> = arr(ns, "clusterIPs").iter().map(value_text).collect();
    let old_ips: Vec<String> = arr(os, "clusterIPs").iter().map(value_text).collect();
    // An update that leaves the cluster IP out keeps the allocated one.
    if new_ips.is_empty() && s(ns, "clusterIP").is_empty() {
        return;
    }
    let shown = BadValue::Go(go_string_slice(ns.get("clusterIPs")));
    if new_ips.len() == old_ips.len() {
        for (i, ip) in old_ips.iter().enumerate() {
            if *ip != new_ips[i] {
                errs.push(invalid(
                    &format!("spec.clusterIPs[{i}]"),
                    shown.clone(),
                    "may not change once set",
                ));
            }
        }
    } else if old_ips.len() > new_ips.len() {
        if !old_ips.is_empty() && !new_ips.is_empty() && new_ips[0] != old_ips[0] {
            errs.push(invalid(
                "spec.clusterIPs[0]",
                shown,
                "may not change once set",
            ));
        }
    } else if !old_ips.is_empty() && new_ips[0] != old_ips[0] {
        errs.push(invalid(
            "spec.clusterIPs[0]",
            shown,
            "may not change once set",
        ));
    }
}

fn validate_endpoints(obj: &Value, errs: &mut Errs) {
    for (i, subset) in arr(obj, "subsets").iter().enumerate() {
        let sp = format!("subsets[{i}]");
        for key in ["addresses", "notReadyAddresses"] {
            for (j, a) in arr(subset, key).iter().enumerate() {
                let ip = s(a, "ip");
                if !is_valid_ip(ip) {
                    errs.push(invalid_str(&format!("{sp}.{key}[{j}].ip"), ip, IP_MSG));
                }
            }
        }
        let ports = arr(subset, "ports");
        for (j, p) in ports.iter().enumerate() {
            let pp = format!("{sp}.ports[{j}]");
            let name = s(p, "name");
            if ports.len() > 1 && name.is_empty() {
                errs.push(required(&format!("{pp}.name"), ""));
            } else if !name.is_empty() {
                for m in is_dns1123_label(name) {
                    errs.push(invalid_str(&format!("{pp}.name"), name, m));
                }
            }
            let port = int(p, "port").unwrap_or(0);
            for m in is_valid_port_num(port) {
                errs.push(invalid_int(&format!("{pp}.port"), port, m));
            }
            validate_protocol(s(p, "protocol"), &format!("{pp}.protocol"), errs);
        }
    }
}

fn validate_endpoint_slice(obj: &Value, errs: &mut Errs) {
    let at = s(obj, "addressType");
    const TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
    if at.is_empty() {
        errs.push(required("addressType", ""));
    } else if !TYPES.contains(&at) {
        errs.push(not_supported(
            "addressType",
            BadValue::Str(at.into()),
            TYPES,
        ));
    }
    for (i, ep) in arr(obj, "endpoints").iter().enumerate() {
        let ap = format!("endpoints[{i}].addresses");
        let addrs = arr(ep, "addresses");
        if addrs.is_empty() {
            errs.push(required(&ap, "must contain at least 1 address"));
        } else if addrs.len() > 100 {
            errs.push(mk(
                &ap,
                ErrorKind::TooMany,
                BadValue::Int(addrs.len() as i64),
                "must have at most 100 items",
            ));
        }
        for (j, a) in addrs.iter().enumerate() {
            let a = value_text(a);
            let p = format!("{ap}[{j}]");
            match at {
                "IPv4" if a.parse::<std::net::Ipv4Addr>().is_err() && !parse_ipv4_sloppy(&a) => {
                    errs.push(invalid_str(&p, &a, "must be a valid IPv4 address"));
                }
                "IPv6" if a.parse::<std::net::Ipv6Addr>().is_err() => {
                    errs.push(invalid_str(&p, &a, "must be a valid IPv6 address"));
                }
                "FQDN" => {
                    for m in is_dns1123_subdomain(&a) {
                        errs.push(invalid_str(&p, &a, m));
                    }
                }
                _ => {}
            }
        }
    }
    let ports = arr(obj, "ports");
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = format!("ports[{i}]");
        let name = s(p, "name");
        if !name.is_empty() {
            for m in is_dns1123_label(name) {
                errs.push(invalid_str(&format!("{pp}.name"), name, m));
            }
        }
        if !names.insert(name.to_string()) {
            errs.push(duplicate(&format!("{pp}.name"), BadValue::Str(name.into())));
        }
        if let Some(port) = int(p, "port") {
            for m in is_valid_port_num(port) {
                errs.push(invalid_int(&format!("{pp}.port"), port, m));
            }
        }
        let proto = s(p, "protocol");
        if !proto.is_empty() && !PROTOCOLS.contains(&proto) {
            errs.push(not_supported(
                &format!("{pp}.protocol"),
                BadValue::Str(proto.into()),
                PROTOCOLS,
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// ConfigMaps, Secrets, Namespaces
// ---------------------------------------------------------------------------

const MAX_SECRET_SIZE: usize = 1024 * 1024;

fn validate_config_map(obj: &Value, errs: &mut Errs) {
    let mut total = 0usize;
    let binary = map_of(obj, "binaryData");
    if let Some(data) = map_of(obj, "data") {
        for (k, v) in data {
            let p = format!("data[{k}]");
            for m in is_config_map_key(k) {
                errs.push(invalid_str(&p, k, m));
            }
            if binary.is_some_and(|b| b.contains_key(k)) {
                errs.push(invalid_str(&p, k, "duplicate of key present in binaryData"));
            }
            total += value_text(v).len();
        }
    }
    if let Some(b) = binary {
        for (k, v) in b {
            for m in is_config_map_key(k) {
                errs.push(invalid_str(&format!("binaryData[{k}]"), k, m));
            }
            total += base64_decoded_len(&value_text(v));
        }
    }
    if total > MAX_SECRET_SIZE {
        errs.push(too_long("", MAX_SECRET_SIZE));
    }
}

fn base64_decoded_len(s: &str) -> usize {
    let t = s.trim_end_matches('=');
    t.len() * 3 / 4
}

fn validate_secret(obj: &Value, errs: &mut Errs) {
    let data = map_of(obj, "data");
    let mut total = 0usize;
    if let Some(data) = data {
        for (k, v) in data {
            for m in is_config_map_key(k) {
                errs.push(invalid_str(&format!("data[{k}]"), k, m));
            }
            total += base64_decoded_len(&value_text(v));
        }
    }
    if total > MAX_SECRET_SIZE {
        errs.push(too_long("data", MAX_SECRET_SIZE));
    }
    let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
    match s(obj, "type") {
        "kubernetes.io/service-account-token" => {
            let annotated = child(obj, "metadata")
                .pointer("/annotations/kubernetes.io~1service-account.name")
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty());
            if !annotated {
                errs.push(required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" if !has(".dockercfg") => {
            errs.push(required("data[.dockercfg]", ""));
        }
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
            errs.push(required("data[.dockerconfigjson]", ""));
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(required("data[username]", ""));
            errs.push(required("data[password]", ""));
        }
        "kubernetes.io/ssh-auth" => {
            let empty = data
                .and_then(|d| d.get("ssh-privatekey"))
                .is_none_or(|v| value_text(v).is_empty());
            if empty {
                errs.push(required("data[ssh-privatekey]", ""));
            }
        }
        "kubernetes.io/tls" => {
            if !has("tls.crt") {
                errs.push(required("data[tls.crt]", ""));
            }
            if !has("tls.key") {
                errs.push(required("data[tls.key]", ""));
            }
        }
        _ => {}
    }
}

/// ConfigMaps and Secrets marked `immutable: true` keep their data.
fn validate_immutable_data(new: &Value, old: &Value, fields: &[&str], errs: &mut Errs) {
    if boolean(old, "immutable") != Some(true) {
        return;
    }
    if boolean(new, "immutable") != Some(true) {
        errs.push(forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for f in fields {
        if normalize(child(new, f)) != normalize(child(old, f)) {
            errs.push(forbidden(f, "field is immutable when `immutable` is set"));
        }
    }
}

fn validate_namespace(obj: &Value, errs: &mut Errs) {
    for f in arr(child(obj, "spec"), "finalizers") {
        let f = value_text(f);
        let p = "spec.finalizers";
        for m in is_qualified_name(&f) {
            errs.push(invalid_str(p, &f, m));
        }
        if !f.contains('/') && !matches!(f.as_str(), "kubernetes" | "orphan" | "foregroundDeletion")
        {
            errs.push(invalid_str(
                p,
                &f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn validate_access_modes(spec: &Value, path: &str, required_detail: &str, errs: &mut Errs) {
    let modes = arr(spec, "accessModes");
    let p = format!("{path}.accessModes");
    if modes.is_empty() {
        errs.push(required(&p, required_detail));
    }
    let (mut rwop, mut other) = (false, false);
    for m in modes {
        let m = value_text(m);
        if !ACCESS_MODES.contains(&m.as_str()) {
            errs.push(not_supported(&p, BadValue::Str(m.clone()), ACCESS_MODES));
        }
        if m == "ReadWriteOncePod" {
            rwop = true;
        } else {
            other = true;
        }
    }
    if rwop && other {
        errs.push(forbidden(
            &p,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn validate_pvc_spec(spec: &Value, path: &str, errs: &mut Errs) {
    validate_access_modes(spec, path, "at least 1 access mode is required", errs);
    if let Some(sel) = get(spec, "selector") {
        validate_label_selector(Some(sel), &format!("{path}.selector"), errs);
    }
    let sp = format!("{path}.resources[storage]");
    match spec.pointer("/resources/requests/storage") {
        None => errs.push(required(&sp, "")),
        Some(q) => match quantity_of(q) {
            None => errs.push(invalid_str(
                &sp,
                &value_text(q),
                QuantityError::Format.to_string(),
            )),
            Some(q) if q.nano <= 0 => errs.push(invalid_str(
                &sp,
                &q.canonical(),
                "must be greater than zero",
            )),
            Some(_) => {}
        },
    }
    if let Some(sc) = get(spec, "storageClassName")
        .map(value_text)
        .filter(|c| !c.is_empty())
    {
        for m in is_dns1123_subdomain(&sc) {
            errs.push(invalid_str(&format!("{path}.storageClassName"), &sc, m));
        }
    }
    let vm = s(spec, "volumeMode");
    if !vm.is_empty() && vm != "Block" && vm != "Filesystem" {
        errs.push(not_supported(
            &format!("{path}.volumeMode"),
            BadValue::Str(vm.into()),
            &["Block", "Filesystem"],
        ));
    }
}

fn validate_pvc_update(new: &Value, old: &Value, errs: &mut Errs) {
    let bound = s(child(old, "status"), "phase") == "Bound";
    let strip = |v: &Value, other: &Value| {
        let mut spec = child(v, "spec").clone();
        if let Some(m) = spec.as_object_mut() {
            m.remove("volumeAttributesClassName");
            if bound {
                if let Some(r) = m.get_mut("resources").and_then(Value::as_object_mut) {
                    r.remove("requests");
                }
            }
            if s(child(other, "spec"), "volumeName").is_empty()
                || s(child(v, "spec"), "volumeName").is_empty()
            {
                m.remove("volumeName");
            }
        }
        normalize(&spec)
    };
    let (a, b) = (strip(new, old), strip(old, new));
    if a != b {
        errs.push(forbidden(
            "spec",
            format!(
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                spec_diff("core.PersistentVolumeClaimSpec", &b, &a)
            ),
        ));
    }
}

fn validate_pv(obj: &Value, errs: &mut Errs) {
    let spec = child(obj, "spec");
    validate_access_modes(spec, "spec", "", errs);
    let cap = map_of(spec, "capacity");
    if cap.is_none_or(Map::is_empty) {
        errs.push(required("spec.capacity", ""));
    }
    if cap.is_none_or(|c| !c.contains_key("storage") || c.len() > 1) {
        errs.push(not_supported(
            "spec.capacity",
            BadValue::Go(go_named_string_map(
                "core.ResourceList",
                spec.get("capacity"),
            )),
            &["storage"],
        ));
    }
    let sources = [
        "hostPath",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "glusterfs",
        "nfs",
        "rbd",
        "quobyte",
        "cephfs",
        "iscsi",
        "cinder",
        "fc",
        "flocker",
        "flexVolume",
        "azureFile",
        "vsphereVolume",
        "azureDisk",
        "photonPersistentDisk",
        "portworxVolume",
        "scaleIO",
        "local",
        "storageos",
        "csi",
    ];
    if !sources.iter().any(|k| get(spec, k).is_some()) {
        errs.push(required("spec", "must specify a volume type"));
    }
    let policy = s(spec, "persistentVolumeReclaimPolicy");
    if !policy.is_empty() && !matches!(policy, "Delete" | "Recycle" | "Retain") {
        errs.push(not_supported(
            "spec.persistentVolumeReclaimPolicy",
            BadValue::Str(policy.into()),
            &["Delete", "Recycle", "Retain"],
        ));
    }
}

fn validate_storage_class(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let prov = s(obj, "provisioner");
    if prov.is_empty() {
        errs.push(required("provisioner", ""));
    } else {
        for m in is_qualified_name(&prov.to_lowercase()) {
            errs.push(invalid_str("provisioner", &prov.to_lowercase(), m));
        }
    }
    let rp = s(obj, "reclaimPolicy");
    if !rp.is_empty() && rp != "Delete" && rp != "Retain" {
        errs.push(not_supported(
            "reclaimPolicy",
            BadValue::Str(rp.into()),
            &["Delete", "Retain"],
        ));
    }
    let vbm = s(obj, "volumeBindingMode");
    if vbm.is_empty() {
        errs.push(required("volumeBindingMode", ""));
    } else if vbm != "Immediate" && vbm != "WaitForFirstConsumer" {
        errs.push(not_supported(
            "volumeBindingMode",
            BadValue::Str(vbm.into()),
            &["Immediate", "WaitForFirstConsumer"],
        ));
    }
    let Some(old) = old else {
        return;
    };
    if normalize(child(obj, "parameters")) != normalize(child(old, "parameters")) {
        errs.push(forbidden(
            "parameters",
            "updates to parameters are forbidden.",
        ));
    }
    if prov != s(old, "provisioner") {
        errs.push(forbidden(
            "provisioner",
            "updates to provisioner are forbidden.",
        ));
    }
    if rp != s(old, "reclaimPolicy") {
        errs.push(forbidden(
            "reclaimPolicy",
            "updates to reclaimPolicy are forbidden.",
        ));
    }
    if vbm != s(old, "volumeBindingMode") {
        errs.push(immutable("volumeBindingMode", BadValue::Str(vbm.into())));
    }
}

// ---------------------------------------------------------------------------
// RBAC
// ---------------------------------------------------------------------------

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn validate_rules(obj: &Value, namespaced: bool, errs: &mut Errs) {
    for (i, rule) in arr(obj, "rules").iter().enumerate() {
        let p = format!("rules[{i}]");
        if arr(rule, "verbs").is_empty() {
            errs.push(required(
                &format!("{p}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = arr(rule, "nonResourceURLs");
        if !urls.is_empty() {
            let shown = BadValue::Go(go_string_slice(rule.get("nonResourceURLs")));
            if namespaced {
                errs.push(invalid(
                    &format!("{p}.nonResourceURLs"),
                    shown.clone(),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !arr(rule, "apiGroups").is_empty()
                || !arr(rule, "resources").is_empty()
                || !arr(rule, "resourceNames").is_empty()
            {
                errs.push(invalid(
                    &format!("{p}.nonResourceURLs"),
                    shown,
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if arr(rule, "apiGroups").is_empty() {
            errs.push(required(
                &format!("{p}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if arr(rule, "resources").is_empty() {
            errs.push(required(
                &format!("{p}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
}

fn go_role_ref(r: &Value) -> String {
    format!(
        "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
        go_quote(s(r, "apiGroup")),
        go_quote(s(r, "kind")),
        go_quote(s(r, "name"))
    )
}

fn validate_binding(obj: &Value, old: Option<&Value>, namespaced: bool, errs: &mut Errs) {
    let rr = child(obj, "roleRef");
    let group = s(rr, "apiGroup");
    if group != RBAC_GROUP {
        errs.push(not_supported(
            "roleRef.apiGroup",
            BadValue::Str(group.into()),
            &[RBAC_GROUP],
        ));
    }
    let kind = s(rr, "kind");
    if namespaced {
        if kind != "Role" && kind != "ClusterRole" {
            errs.push(not_supported(
                "roleRef.kind",
                BadValue::Str(kind.into()),
                &["Role", "ClusterRole"],
            ));
        }
    } else if kind != "ClusterRole" {
        errs.push(not_supported(
            "roleRef.kind",
            BadValue::Str(kind.into()),
            &["ClusterRole"],
        ));
    }
    let name = s(rr, "name");
    if name.is_empty() {
        errs.push(required("roleRef.name", ""));
    } else {
        for m in is_valid_path_segment_name(name, false) {
            errs.push(invalid_str("roleRef.name", name, m));
        }
    }
    for (i, subj) in arr(obj, "subjects").iter().enumerate() {
        let p = format!("subjects[{i}]");
        let sname = s(subj, "name");
        if sname.is_empty() {
            errs.push(required(&format!("{p}.name"), ""));
        }
        let sgroup = s(subj, "apiGroup");
        match s(subj, "kind") {
            "ServiceAccount" => {
                if !sname.is_empty() {
                    for m in is_dns1123_subdomain(sname) {
                        errs.push(invalid_str(&format!("{p}.name"), sname, m));
                    }
                }
                if !sgroup.is_empty() {
                    errs.push(not_supported(
                        &format!("{p}.apiGroup"),
                        BadValue::Str(sgroup.into()),
                        &[""],
                    ));
                }
                if !namespaced && s(subj, "namespace").is_empty() {
                    errs.push(required(&format!("{p}.namespace"), ""));
                }
            }
            "User" | "Group" => {
                if sgroup != RBAC_GROUP {
                    errs.push(not_supported(
                        &format!("{p}.apiGroup"),
                        BadValue::Str(sgroup.into()),
                        &[RBAC_GROUP],
                    ));
                }
            }
            other => errs.push(not_supported(
                &format!("{p}.kind"),
                BadValue::Str(other.into()),
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    if let Some(old) = old {
        let orr = child(old, "roleRef");
        let same = ["apiGroup", "kind", "name"]
            .iter()
            .all(|k| s(rr, k) == s(orr, k));
        if !same {
            errs.push(invalid(
                "roleRef",
                BadValue::Go(go_role_ref(rr)),
                "cannot change roleRef",
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// Scheduling, policy, autoscaling, coordination, networking
// ---------------------------------------------------------------------------

const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;

fn validate_priority_class(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let name = s(child(obj, "metadata"), "name");
    let value = int(obj, "value").unwrap_or(0);
    let global = boolean(obj, "globalDefault").unwrap_or(false);
    if name.starts_with("system-") {
        let known = match name {
            "system-node-critical" => Some(2_000_001_000),
            "system-cluster-critical" => Some(2_000_000_000),
            _ => None,
        };
        let problem = match known {
            None => Some(format!("{name} is not a known system priority class")),
            Some(v) if v != value => Some(format!("value of {name} PriorityClass must be {v}")),
            Some(_) if global => Some(format!(
                "globalDefault of {name} PriorityClass must be false"
            )),
            Some(_) => None,
        };
        if let Some(p) = problem {
            errs.push(forbidden(
                "metadata.name",
                format!("priority class names with 'system-' prefix are reserved for system use only. error: {p}"),
            ));
        }
    } else if value > HIGHEST_USER_PRIORITY {
        errs.push(forbidden(
            "value",
            format!("maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"),
        ));
    }
    let pp = s(obj, "preemptionPolicy");
    if !pp.is_empty() && pp != "PreemptLowerPriority" && pp != "Never" {
        errs.push(not_supported(
            "preemptionPolicy",
            BadValue::Str(pp.into()),
            &["Never", "PreemptLowerPriority"],
        ));
    }
    if let Some(old) = old {
        if value != int(old, "value").unwrap_or(0) {
            errs.push(forbidden("value", "may not be changed in an update."));
        }
        if pp != s(old, "preemptionPolicy") {
            errs.push(immutable("preemptionPolicy", BadValue::Str(pp.into())));
        }
    }
}

fn go_int_or_string_ptr(v: Option<&Value>) -> String {
    match v {
        Some(_) => "(*intstr.IntOrString)(0xc000000000)".into(),
        None => "(*intstr.IntOrString)(nil)".into(),
    }
}

fn validate_pdb(spec: &Value, errs: &mut Errs) {
    let min = get(spec, "minAvailable");
    let max = get(spec, "maxUnavailable");
    if min.is_some() && max.is_some() {
        let sel = match get(spec, "selector") {
            Some(_) => "(*v1.LabelSelector)(0xc000000000)",
            None => "(*v1.LabelSelector)(nil)",
        };
        let policy = match get(spec, "unhealthyPodEvictionPolicy") {
            Some(_) => "(*policy.UnhealthyPodEvictionPolicyType)(0xc000000000)",
            None => "(*policy.UnhealthyPodEvictionPolicyType)(nil)",
        };
        errs.push(invalid(
            "spec",
            BadValue::Go(format!(
                "policy.PodDisruptionBudgetSpec{{MinAvailable:{}, Selector:{sel}, MaxUnavailable:{}, UnhealthyPodEvictionPolicy:{policy}}}",
                go_int_or_string_ptr(min),
                go_int_or_string_ptr(max)
            )),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for (key, v) in [("minAvailable", min), ("maxUnavailable", max)] {
        if let Some(v) = v {
            let p = format!("spec.{key}");
            validate_positive_int_or_percent(v, &p, errs);
            not_more_than_100_percent(v, &p, errs);
        }
    }
    validate_label_selector(get(spec, "selector"), "spec.selector", errs);
    if let Some(p) = get(spec, "unhealthyPodEvictionPolicy").map(value_text) {
        if p != "AlwaysAllow" && p != "IfHealthyBudget" {
            errs.push(not_supported(
                "spec.unhealthyPodEvictionPolicy",
                BadValue::Str(p),
                &["AlwaysAllow", "IfHealthyBudget"],
            ));
        }
    }
}

fn validate_hpa(spec: &Value, errs: &mut Errs) {
    let min = int(spec, "minReplicas");
    let max = int(spec, "maxReplicas").unwrap_or(0);
    if let Some(m) = min.filter(|m| *m < 1) {
        errs.push(invalid_int(
            "spec.minReplicas",
            m,
            "must be greater than or equal to 1",
        ));
    }
    if max < 1 {
        errs.push(invalid_int(
            "spec.maxReplicas",
            max,
            "must be greater than 0",
        ));
    }
    if min.is_some_and(|m| max < m) {
        errs.push(invalid_int(
            "spec.maxReplicas",
            max,
            "must be greater than or equal to `minReplicas`",
        ));
    }
    let r = child(spec, "scaleTargetRef");
    for key in ["kind", "name"] {
        let v = s(r, key);
        let p = format!("spec.scaleTargetRef.{key}");
        if v.is_empty() {
            errs.push(required(&p, ""));
        } else {
            for m in is_valid_path_segment_name(v, false) {
                errs.push(invalid_str(&p, v, m));
            }
        }
    }
    const TYPES: &[&str] = &[
        "ContainerResource",
        "External",
        "Object",
        "Pods",
        "Resource",
    ];
    for (i, m) in arr(spec, "metrics").iter().enumerate() {
        let t = s(m, "type");
        let p = format!("spec.metrics[{i}].type");
        if t.is_empty() {
            errs.push(required(&p, "must specify a metric source type"));
        } else if !TYPES.contains(&t) {
            errs.push(not_supported(&p, BadValue::Str(t.into()), TYPES));
        }
    }
}

fn validate_lease(spec: &Value, errs: &mut Errs) {
    if let Some(d) = int(spec, "leaseDurationSeconds").filter(|d| *d <= 0) {
        errs.push(invalid_int(
            "spec.leaseDurationSeconds",
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = int(spec, "leaseTransitions").filter(|t| *t < 0) {
        errs.push(invalid_int("spec.leaseTransitions", t, IS_NEGATIVE));
    }
}

fn validate_ingress(spec: &Value, errs: &mut Errs) {
    let rules = arr(spec, "rules");
    if rules.is_empty() && get(spec, "defaultBackend").is_none() {
        errs.push(invalid(
            "spec",
            BadValue::Go("[]networking.IngressRule(nil)".into()),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = get(spec, "defaultBackend") {
        validate_ingress_backend(b, "spec.defaultBackend", errs);
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = format!("spec.rules[{i}]");
        let host = s(rule, "host");
        if !host.is_empty() {
            if is_valid_ip(host) {
                errs.push(invalid_str(
                    &format!("{rp}.host"),
                    host,
                    "must be a DNS name, not an IP address",
                ));
            }
            let msgs = if host.contains('*') {
                is_wildcard_dns1123_subdomain(host)
            } else {
                is_dns1123_subdomain(host)
            };
            for m in msgs {
                errs.push(invalid_str(&format!("{rp}.host"), host, m));
            }
        }
        let Some(http) = get(rule, "http") else {
            continue;
        };
        let paths = arr(http, "paths");
        if paths.is_empty() {
            errs.push(required(&format!("{rp}.http.paths"), ""));
        }
        for (j, path) in paths.iter().enumerate() {
            let pp = format!("{rp}.http.paths[{j}]");
            let p = s(path, "path");
            let pt = s(path, "pathType");
            match pt {
                "" => {
                    errs.push(required(
                        &format!("{pp}.pathType"),
                        "pathType must be specified",
                    ));
                    continue;
                }
                "Exact" | "Prefix" => {
                    if !p.starts_with('/') {
                        errs.push(invalid_str(
                            &format!("{pp}.path"),
                            p,
                            "must be an absolute path",
                        ));
                    }
                    if !p.is_empty() {
                        for seq in ["//", "/./", "/../", "%2f", "%2F"] {
                            if p.contains(seq) {
                                errs.push(invalid_str(
                                    &format!("{pp}.path"),
                                    p,
                                    format!("must not contain '{seq}'"),
                                ));
                            }
                        }
                        for suf in ["/..", "/."] {
                            if p.ends_with(suf) {
                                errs.push(invalid_str(
                                    &format!("{pp}.path"),
                                    p,
                                    format!("cannot end with '{suf}'"),
                                ));
                            }
                        }
                    }
                }
                "ImplementationSpecific" => {
                    if !p.is_empty() && !p.starts_with('/') {
                        errs.push(invalid_str(
                            &format!("{pp}.path"),
                            p,
                            "must be an absolute path",
                        ));
                    }
                }
                other => errs.push(not_supported(
                    &format!("{pp}.pathType"),
                    BadValue::Str(other.into()),
                    &["Exact", "ImplementationSpecific", "Prefix"],
                )),
            }
            validate_ingress_backend(child(path, "backend"), &format!("{pp}.backend"), errs);
        }
    }
    if let Some(class) = get(spec, "ingressClassName").map(value_text) {
        for m in is_dns1123_subdomain(&class) {
            errs.push(invalid_str("spec.ingressClassName", &class, m));
        }
    }
}

fn validate_ingress_backend(b: &Value, path: &str, errs: &mut Errs) {
    let (res, svc) = (get(b, "resource"), get(b, "service"));
    match (res, svc) {
        (Some(_), Some(_)) => errs.push(invalid_str(
            path,
            "",
            "cannot set both resource and service backends",
        )),
        (Some(r), None) => {
            for key in ["kind", "name"] {
                if s(r, key).is_empty() {
                    errs.push(required(&format!("{path}.resource.{key}"), ""));
                }
            }
        }
        (None, Some(svc)) => {
            let name = s(svc, "name");
            let np = format!("{path}.service.name");
            if name.is_empty() {
                errs.push(required(&np, ""));
            } else {
                for m in is_dns1035_label(name) {
                    errs.push(invalid_str(&np, name, m));
                }
            }
            let port = child(svc, "port");
            let pname = s(port, "name");
            let pnum = int(port, "number").unwrap_or(0);
            if !pname.is_empty() && pnum != 0 {
                errs.push(invalid_str(
                    path,
                    "",
                    "cannot set both port name & port number",
                ));
            } else if !pname.is_empty() {
                for m in is_valid_port_name(pname) {
                    errs.push(invalid_str(&format!("{path}.service.port.name"), pname, m));
                }
            } else if pnum != 0 {
                for m in is_valid_port_num(pnum) {
                    errs.push(invalid_int(&format!("{path}.service.port.number"), pnum, m));
                }
            } else {
                errs.push(required(path, "port name or number is required"));
            }
        }
        (None, None) => errs.push(invalid_str(
            path,
            "",
            "resource or service backend is required",
        )),
    }
}

fn validate_ingress_class(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = child(obj, "spec");
    let ctrl = s(spec, "controller");
    let p = "spec.controller";
    if ctrl.len() > 250 {
        errs.push(too_long(p, 250));
    }
    if ctrl.is_empty() {
        errs.push(required(p, ""));
    } else if let Some((domain, rest)) = ctrl.split_once('/') {
        for m in is_dns1123_subdomain(domain) {
            errs.push(invalid_str(p, domain, m));
        }
        let ok = !rest.is_empty()
            && rest
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&c));
        if !ok {
            errs.push(invalid_str(
                p,
                rest,
                regex_error(
                    "a valid HTTP path must consist of alphanumeric characters or one of the following characters: '/', '-', '_', '.', '~', '%', '!', '$', '&', ''', '(', ')', '*', '+', ',', ';', '=', ':'",
                    "[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+",
                    &["/", "/foo"],
                ),
            ));
        }
    } else {
        errs.push(invalid_str(
            p,
            ctrl,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        ));
    }
    if let Some(old) = old {
        let oc = s(child(old, "spec"), "controller");
        if ctrl != oc {
            errs.push(immutable(p, BadValue::Str(ctrl.into())));
        }
    }
}

fn validate_network_policy(spec: &Value, errs: &mut Errs) {
    validate_label_selector(get(spec, "podSelector"), "spec.podSelector", errs);
    for (dir, peers_key) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in arr(spec, dir).iter().enumerate() {
            let rp = format!("spec.{dir}[{i}]");
            for (j, port) in arr(rule, "ports").iter().enumerate() {
                let pp = format!("{rp}.ports[{j}]");
                let proto = s(port, "protocol");
                if !proto.is_empty() && !PROTOCOLS.contains(&proto) {
                    errs.push(not_supported(
                        &format!("{pp}.protocol"),
                        BadValue::Str(proto.into()),
                        PROTOCOLS,
                    ));
                }
                if let Some(p) = get(port, "port") {
                    validate_port_num_or_name(p, &format!("{pp}.port"), errs);
                }
            }
            for (j, peer) in arr(rule, peers_key).iter().enumerate() {
                let pp = format!("{rp}.{peers_key}[{j}]");
                let n = ["podSelector", "namespaceSelector", "ipBlock"]
                    .iter()
                    .filter(|k| get(peer, k).is_some())
                    .count();
                if n == 0 {
                    errs.push(required(&pp, "must specify a peer"));
                }
                validate_label_selector(
                    get(peer, "podSelector"),
                    &format!("{pp}.podSelector"),
                    errs,
                );
                validate_label_selector(
                    get(peer, "namespaceSelector"),
                    &format!("{pp}.namespaceSelector"),
                    errs,
                );
            }
        }
    }
    for (i, t) in arr(spec, "policyTypes").iter().enumerate() {
        let t = value_text(t);
        if t != "Ingress" && t != "Egress" {
            errs.push(not_supported(
                &format!("spec.policyTypes[{i}]"),
                BadValue::Str(t),
                &["Ingress", "Egress"],
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create(group: &str, kind: &str, mut obj: Value, namespaced: bool) -> Vec<String> {
        apply_defaults(group, kind, &mut obj);
        validate_create(group, kind, &obj, namespaced)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn update(
        group: &str,
        kind: &str,
        mut new: Value,
        mut old: Value,
        namespaced: bool,
    ) -> Vec<String> {
        apply_defaults(group, kind, &mut new);
        apply_defaults(group, kind, &mut old);
        validate_update(group, kind, &new, &old, namespaced)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": spec})
    }

    fn deployment(selector: Value, labels: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {
            "selector": selector,
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    }

    const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

    #[test]
    fn display_and_reasons() {
        let e = required("spec.containers[0].image", "");
        assert_eq!(e.to_string(), "spec.containers[0].image: Required value");
        assert_eq!(e.cause_reason(), "FieldValueRequired");
        let e = not_supported(
            "spec.ports[0].protocol",
            BadValue::Str("XYZ".into()),
            PROTOCOLS,
        );
        assert_eq!(
            e.to_string(),
            "spec.ports[0].protocol: Unsupported value: \"XYZ\": supported values: \"SCTP\", \"TCP\", \"UDP\""
        );
        assert_eq!(e.cause_reason(), "FieldValueNotSupported");
        assert_eq!(forbidden("x", "nope").to_string(), "x: Forbidden: nope");
        assert_eq!(
            too_long("data", 10).to_string(),
            "data: Too long: may not be more than 10 bytes"
        );
        assert_eq!(
            invalid_int("spec.replicas", -1, IS_NEGATIVE).to_string(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            duplicate("a", BadValue::Str("x".into())).cause_reason(),
            "FieldValueDuplicate"
        );
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\x01é\"");
    }

    #[test]
    fn metadata_name_rules() {
        let errs = create(
            "",
            "ConfigMap",
            json!({"metadata": {"name": "Foo", "namespace": "default"}}),
            true,
        );
        assert_eq!(
            errs,
            vec![format!(
                "metadata.name: Invalid value: \"Foo\": {SUBDOMAIN}"
            )]
        );
        let errs = create(
            "",
            "ConfigMap",
            json!({"metadata": {"namespace": "default"}}),
            true,
        );
        assert_eq!(
            errs,
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        let errs = create(
            "",
            "Service",
            json!({"metadata": {"name": "1svc", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}}),
            true,
        );
        assert_eq!(errs, vec!["metadata.name: Invalid value: \"1svc\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]);
        let errs = create("", "Namespace", json!({"metadata": {"name": "a.b"}}), false);
        assert_eq!(
            errs,
            vec!["metadata.name: Invalid value: \"a.b\": must not contain dots"]
        );
        let errs = create("", "Namespace", json!({"metadata": {"name": "A_b"}}), false);
        assert_eq!(errs, vec!["metadata.name: Invalid value: \"A_b\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]);
        let long = "a".repeat(254);
        let errs = create(
            "",
            "ConfigMap",
            json!({"metadata": {"name": long, "namespace": "default"}}),
            true,
        );
        assert_eq!(
            errs,
            vec![format!(
                "metadata.name: Invalid value: \"{long}\": must be no more than 253 characters"
            )]
        );
        let errs = create(
            "rbac.authorization.k8s.io",
            "Role",
            json!({"metadata": {"name": "a/b", "namespace": "default"}}),
            true,
        );
        assert_eq!(
            errs,
            vec!["metadata.name: Invalid value: \"a/b\": may not contain '/'"]
        );
        let errs = create(
            "rbac.authorization.k8s.io",
            "ClusterRole",
            json!({"metadata": {"name": "system:admin"}}),
            false,
        );
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn metadata_namespace_scope() {
        let errs = create("", "ConfigMap", json!({"metadata": {"name": "c"}}), true);
        assert_eq!(errs, vec!["metadata.namespace: Required value"]);
        let errs = create(
            "",
            "Namespace",
            json!({"metadata": {"name": "n", "namespace": "x"}}),
            false,
        );
        assert_eq!(
            errs,
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
    }

    #[test]
    fn labels_and_annotations() {
        let errs = create(
            "",
            "ConfigMap",
            json!({"metadata": {"name": "c", "namespace": "d",
            "labels": {"-bad": "ok", "app": "-bad", "a/b/c": "x"}, "annotations": {"Example.com/Key": "v", "_x": "y"}}}),
            true,
        );
        assert_eq!(errs, vec![
            "metadata.labels: Invalid value: \"-bad\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string(),
            "metadata.labels: Invalid value: \"-bad\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_string(),
            "metadata.labels: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".to_string(),
            "metadata.annotations: Invalid value: \"_x\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string(),
        ]);
        let errs = create(
            "",
            "ConfigMap",
            json!({"metadata": {"name": "c", "namespace": "d",
            "labels": {"Example.com/x": "v"}}}),
            true,
        );
        assert_eq!(
            errs,
            vec![format!(
                "metadata.labels: Invalid value: \"Example.com/x\": prefix part {SUBDOMAIN}"
            )]
        );
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE);
        let errs = create(
            "",
            "ConfigMap",
            json!({"metadata": {"name": "c", "namespace": "d", "annotations": {"k": big}}}),
            true,
        );
        assert_eq!(
            errs,
            vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
    }

    #[test]
    fn config_map_and_secret_keys() {
        let errs = create(
            "",
            "ConfigMap",
            json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a b": "1", "..x": "2", "ok.key": "3"}}),
            true,
        );
        assert_eq!(errs, vec![
            "data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            "data[..x]: Invalid value: \"..x\": must not start with '..'",
        ]);
        let errs = create(
            "",
            "Secret",
            json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}),
            true,
        );
        assert_eq!(errs, vec!["data[tls.key]: Required value"]);
    }

    #[test]
    fn immutable_config_and_secret() {
        let old = json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"a": "1"}});
        let new = json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"a": "2"}});
        assert_eq!(
            update("", "ConfigMap", new, old.clone(), true),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
        let new = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "1"}});
        assert_eq!(
            update("", "ConfigMap", new, old, true),
            vec!["immutable: Forbidden: field is immutable when `immutable` is set"]
        );
        let old = json!({"metadata": {"name": "s", "namespace": "d"}, "type": "Opaque"});
        let new = json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/basic-auth", "data": {"username": "eA=="}});
        assert_eq!(
            update("", "Secret", new, old, true),
            vec!["type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable"]
        );
    }

    #[test]
    fn valid_objects_pass() {
        let p = pod(
            json!({"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80, "name": "http"}],
            "env": [{"name": "A.B-c", "value": "1"}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            "livenessProbe": {"httpGet": {"port": "http"}}}],
            "volumes": [{"name": "data", "emptyDir": {}}]}),
        );
        assert_eq!(create("", "Pod", p, true), Vec::<String>::new());
        let d = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web", "tier": "fe"}),
        );
        assert_eq!(create("apps", "Deployment", d, true), Vec::<String>::new());
        let svc = json!({"metadata": {"name": "web", "namespace": "d"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        assert_eq!(create("", "Service", svc, true), Vec::<String>::new());
    }

    #[test]
    fn pod_containers() {
        let errs = create("", "Pod", pod(json!({"containers": []})), true);
        assert_eq!(errs, vec!["spec.containers: Required value"]);
        let errs = create(
            "",
            "Pod",
            pod(
                json!({"containers": [{"name": "c", "image": ""}, {"name": "c", "image": "x"}, {"name": "Bad_name", "image": "x"}]}),
            ),
            true,
        );
        assert_eq!(errs, vec![
            "spec.containers[0].image: Required value",
            "spec.containers[1].name: Duplicate value: \"c\"",
            "spec.containers[2].name: Invalid value: \"Bad_name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ]);
    }

    #[test]
    fn pod_ports_env_volumes() {
        let errs = create(
            "",
            "Pod",
            pod(json!({"containers": [{"name": "c", "image": "x",
            "ports": [{"containerPort": 70000}, {"containerPort": 80, "protocol": "XYZ"}, {"containerPort": 0}],
            "env": [{"name": ""}, {"name": "A=B"}],
            "volumeMounts": [{"name": "x", "mountPath": "/x"}, {"name": "v", "mountPath": "/x"}]}],
            "volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}],
            "restartPolicy": "Sometimes"})),
            true,
        );
        assert_eq!(errs, vec![
            "spec.volumes[1].name: Duplicate value: \"v\"",
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[1].protocol: Unsupported value: \"XYZ\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.containers[0].ports[2].containerPort: Required value",
            "spec.containers[0].env[0].name: Required value",
            "spec.containers[0].env[0].name: Invalid value: \"\": environment variable name must be non-empty",
            "spec.containers[0].env[1].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
            "spec.containers[0].volumeMounts[0].name: Not found: \"x\"",
            "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/x\": must be unique",
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ]);
    }

    #[test]
    fn pod_resources() {
        let errs = create(
            "",
            "Pod",
            pod(json!({"containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"cpu": "2", "memory": "2048Mi"}, "limits": {"cpu": "1000m", "memory": "1Gi"}}}]})),
            true,
        );
        assert_eq!(errs, vec![
            "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
            "spec.containers[0].resources.requests: Invalid value: \"2Gi\": must be less than or equal to memory limit of 1Gi",
        ]);
    }

    #[test]
    fn pod_update_rules() {
        let old = pod(json!({"containers": [{"name": "c", "image": "nginx:1"}]}));
        let new = pod(json!({"containers": [{"name": "c", "image": "nginx:2"}]}));
        assert_eq!(
            update("", "Pod", new, old.clone(), true),
            Vec::<String>::new()
        );
        let new = pod(
            json!({"containers": [{"name": "c", "image": "nginx:1"}], "restartPolicy": "Never"}),
        );
        let errs = update("", "Pod", new, old.clone(), true);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with(&format!(
                "spec: Forbidden: {POD_UPDATABLE}\n  core.PodSpec{{"
            )),
            "{}",
            errs[0]
        );
        assert!(
            errs[0].contains("- \tRestartPolicy: \"Always\",\n+ \tRestartPolicy: \"Never\","),
            "{}",
            errs[0]
        );
        let new = pod(
            json!({"containers": [{"name": "c", "image": "nginx:1"}, {"name": "d", "image": "x"}]}),
        );
        assert_eq!(
            update("", "Pod", new, old.clone(), true),
            vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]
        );
        let new = pod(json!({"containers": [{"name": "c", "image": "nginx:1"}],
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}], "activeDeadlineSeconds": 30}));
        assert_eq!(update("", "Pod", new, old, true), Vec::<String>::new());
    }

    #[test]
    fn workload_selector_rules() {
        let d = deployment(json!({"matchLabels": {"app": "x"}}), json!({"app": "y"}));
        assert_eq!(create("apps", "Deployment", d, true), vec![
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"y\"}: `selector` does not match template `labels`",
        ]);
        let d = deployment(json!({}), json!({"app": "x"}));
        assert_eq!(create("apps", "Deployment", d, true), vec![
            "spec.selector: Required value",
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`",
        ]);
        let mut rs = deployment(json!({"matchLabels": {"app": "x"}}), json!({"app": "x"}));
        rs["spec"]["replicas"] = json!(-1);
        rs["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        assert_eq!(create("apps", "ReplicaSet", rs, true), vec![
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
        ]);
        let old = deployment(
            json!({"matchLabels": {"app": "x"}}),
            json!({"app": "x", "v": "2"}),
        );
        let new = deployment(
            json!({"matchLabels": {"app": "x", "v": "2"}}),
            json!({"app": "x", "v": "2"}),
        );
        assert_eq!(update("apps", "Deployment", new, old, true), vec![
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"x\", \"v\":\"2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable",
        ]);
        let mut ds = deployment(
            json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["x"]}]}),
            json!({"app": "x"}),
        );
        ds["spec"]["template"]["spec"]["containers"][0]["image"] = json!("");
        assert_eq!(
            create("apps", "DaemonSet", ds, true),
            vec!["spec.template.spec.containers[0].image: Required value"]
        );
        let sts = json!({"metadata": {"name": "db", "namespace": "d"}, "spec": {"selector": {"matchLabels": {"app": "db"}},
            "serviceName": "db", "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        assert_eq!(
            create("apps", "StatefulSet", sts.clone(), true),
            Vec::<String>::new()
        );
        let mut sts2 = sts.clone();
        sts2["spec"]["serviceName"] = json!("other");
        assert_eq!(update("apps", "StatefulSet", sts2, sts, true), vec![
            "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ]);
    }

    #[test]
    fn jobs_and_cronjobs() {
        let job = json!({"metadata": {"name": "pi", "namespace": "d", "uid": "u1"}, "spec": {
            "template": {"spec": {"containers": [{"name": "c", "image": "perl"}]}}}});
        assert_eq!(create("batch", "Job", job, true), vec![
            "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
        ]);
        let job = json!({"metadata": {"name": "pi", "namespace": "d", "uid": "u1"}, "spec": {
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "perl"}]}}}});
        assert_eq!(
            create("batch", "Job", job.clone(), true),
            Vec::<String>::new()
        );
        let mut changed = job.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:2");
        let errs = update("batch", "Job", changed, job, true);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("spec.template: Invalid value: core.PodTemplateSpec{"),
            "{}",
            errs[0]
        );
        assert!(errs[0].ends_with(": field is immutable"));

        let cj = |schedule: &str| {
            json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {"schedule": schedule,
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "x"}]}}}}}})
        };
        assert_eq!(
            create("batch", "CronJob", cj("*/5 * * * *"), true),
            Vec::<String>::new()
        );
        assert_eq!(
            create("batch", "CronJob", cj("@hourly"), true),
            Vec::<String>::new()
        );
        assert_eq!(
            create("batch", "CronJob", cj("@every 1h30m"), true),
            Vec::<String>::new()
        );
        assert_eq!(
            create("batch", "CronJob", cj("* * *"), true),
            vec![
            "spec.schedule: Invalid value: \"* * *\": expected exactly 5 fields, found 3: [* * *]",
        ]
        );
        assert_eq!(create("batch", "CronJob", cj("60 * * * *"), true), vec![
            "spec.schedule: Invalid value: \"60 * * * *\": end of range (60) above maximum (59): 60",
        ]);
        assert_eq!(
            create("batch", "CronJob", cj("@sometimes"), true),
            vec![
                "spec.schedule: Invalid value: \"@sometimes\": unrecognized descriptor: @sometimes",
            ]
        );
        assert_eq!(create("batch", "CronJob", cj("x * * * *"), true), vec![
            "spec.schedule: Invalid value: \"x * * * *\": failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
        ]);
        assert!(parse_cron("0 0 * JAN-mar mon-fri").is_ok());
        assert!(parse_cron("0 0 * * 7").is_err());
    }

    #[test]
    fn services() {
        let svc = |spec: Value| json!({"metadata": {"name": "s", "namespace": "d"}, "spec": spec});
        assert_eq!(
            create("", "Service", svc(json!({"selector": {"a": "b"}})), true),
            vec!["spec.ports: Required value"]
        );
        assert_eq!(
            create("", "Service", svc(json!({"clusterIP": "None"})), true),
            Vec::<String>::new()
        );
        assert_eq!(
            create(
                "",
                "Service",
                svc(json!({"type": "ExternalName", "externalName": "example.com"})),
                true
            ),
            Vec::<String>::new()
        );
        let errs = create(
            "",
            "Service",
            svc(
                json!({"type": "Weird", "ports": [{"port": 80}, {"port": 70000, "protocol": "XYZ"}]}),
            ),
            true,
        );
        assert_eq!(errs, vec![
            "spec.ports[0].name: Required value",
            "spec.ports[1].name: Required value",
            "spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.ports[1].protocol: Unsupported value: \"XYZ\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.type: Unsupported value: \"Weird\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
        ]);
        let errs = create(
            "",
            "Service",
            svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]})),
            true,
        );
        assert_eq!(errs, vec!["spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"]);
        let errs = create(
            "",
            "Service",
            svc(json!({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 80}]})),
            true,
        );
        assert_eq!(errs, vec![
            "spec.ports[1].name: Duplicate value: \"a\"",
            "spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
        ]);
        let old = svc(json!({"clusterIP": "10.43.0.10", "ports": [{"port": 80}]}));
        let new = svc(json!({"clusterIP": "10.43.0.11", "ports": [{"port": 80}]}));
        assert_eq!(
            update("", "Service", new, old.clone(), true),
            vec![
            "spec.clusterIPs[0]: Invalid value: []string{\"10.43.0.11\"}: may not change once set",
        ]
        );
        let same = svc(json!({"ports": [{"port": 81}]}));
        assert_eq!(update("", "Service", same, old, true), Vec::<String>::new());
    }

    #[test]
    fn rbac() {
        let rb = |name: &str| {
            json!({"metadata": {"name": "b", "namespace": "d"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "default"}]})
        };
        assert_eq!(
            create("rbac.authorization.k8s.io", "RoleBinding", rb("r"), true),
            Vec::<String>::new()
        );
        assert_eq!(
            create("rbac.authorization.k8s.io", "RoleBinding", rb(""), true),
            vec!["roleRef.name: Required value"]
        );
        assert_eq!(update("rbac.authorization.k8s.io", "RoleBinding", rb("r2"), rb("r"), true), vec![
            "roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"Role\", Name:\"r2\"}: cannot change roleRef",
        ]);
        let crb = json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "x"}, {"kind": "Robot", "name": "y"}]});
        assert_eq!(create("rbac.authorization.k8s.io", "ClusterRoleBinding", crb, false), vec![
            "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
            "subjects[0].namespace: Required value",
            "subjects[1].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
        ]);
        let role = json!({"metadata": {"name": "r", "namespace": "d"}, "rules": [{"resources": ["pods"]}]});
        assert_eq!(
            create("rbac.authorization.k8s.io", "Role", role, true),
            vec![
            "rules[0].verbs: Required value: verbs must contain at least one value",
            "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
        ]
        );
    }

    #[test]
    fn storage_policy_and_others() {
        let pvc = json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {}});
        assert_eq!(
            create("", "PersistentVolumeClaim", pvc, true),
            vec![
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value",
            ]
        );
        let sc = json!({"metadata": {"name": "fast"}});
        assert_eq!(
            create("storage.k8s.io", "StorageClass", sc, false),
            vec!["provisioner: Required value"]
        );
        let pc = json!({"metadata": {"name": "high"}, "value": 1000});
        let pc2 = json!({"metadata": {"name": "high"}, "value": 2000});
        assert_eq!(
            update("scheduling.k8s.io", "PriorityClass", pc2, pc, false),
            vec!["value: Forbidden: may not be changed in an update."]
        );
        let pdb = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"minAvailable": 1, "maxUnavailable": "150%"}});
        let errs = create("policy", "PodDisruptionBudget", pdb, true);
        assert_eq!(errs.len(), 2);
        assert!(errs[0].starts_with("spec: Invalid value: policy.PodDisruptionBudgetSpec{"));
        assert!(errs[0].ends_with(": minAvailable and maxUnavailable cannot be both set"));
        assert_eq!(errs[1], "spec.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%");
        let hpa = json!({"metadata": {"name": "h", "namespace": "d"}, "spec": {"minReplicas": 5, "maxReplicas": 2,
            "scaleTargetRef": {"kind": "Deployment", "name": "web"}}});
        assert_eq!(
            create("autoscaling", "HorizontalPodAutoscaler", hpa, true),
            vec![
            "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`",
        ]
        );
        let es = json!({"metadata": {"name": "e", "namespace": "d"}, "endpoints": []});
        assert_eq!(
            create("discovery.k8s.io", "EndpointSlice", es, true),
            vec!["addressType: Required value"]
        );
        let lease =
            json!({"metadata": {"name": "l", "namespace": "d"}, "spec": {"holderIdentity": "x"}});
        assert_eq!(
            create("coordination.k8s.io", "Lease", lease, true),
            Vec::<String>::new()
        );
        let ing = json!({"metadata": {"name": "i", "namespace": "d"}, "spec": {}});
        assert_eq!(create("networking.k8s.io", "Ingress", ing, true), vec![
            "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified",
        ]);
    }

    /// Objects as `kubectl create …` builds them (after the typed round trip) must pass.
    #[test]
    fn kubectl_generated_objects_are_valid() {
        let md = |name: &str| json!({"name": name, "namespace": "default"});
        let cases: Vec<(&str, &str, Value, bool)> = vec![
            (
                "",
                "Pod",
                json!({"metadata": {"name": "nginx", "namespace": "default", "labels": {"run": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}],
                         "dnsPolicy": "ClusterFirst", "restartPolicy": "Always"}, "status": {}}),
                true,
            ),
            (
                "apps",
                "Deployment",
                json!({"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "strategy": {},
                         "template": {"metadata": {"labels": {"app": "web"}},
                                      "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27", "resources": {}, "ports": [{"containerPort": 80}]}]}}},
                "status": {}}),
                true,
            ),
            (
                "batch",
                "Job",
                json!({"metadata": {"name": "pi", "namespace": "default", "uid": "0b6c"},
                "spec": {"template": {"metadata": {}, "spec": {"containers": [{"name": "pi", "image": "perl", "command": ["perl"], "resources": {}}],
                                                             "restartPolicy": "Never"}}}}),
                true,
            ),
            (
                "batch",
                "CronJob",
                json!({"metadata": md("hello"), "spec": {"schedule": "*/1 * * * *",
                "jobTemplate": {"metadata": {"name": "hello"}, "spec": {"template": {"metadata": {},
                    "spec": {"containers": [{"name": "hello", "image": "busybox", "resources": {}}], "restartPolicy": "OnFailure"}}}}}}),
                true,
            ),
            (
                "",
                "Service",
                json!({"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
                "spec": {"ports": [{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}], "selector": {"app": "web"}, "type": "NodePort"}}),
                true,
            ),
            (
                "",
                "Service",
                json!({"metadata": md("ext"), "spec": {"type": "ExternalName", "externalName": "example.com."}}),
                true,
            ),
            (
                "",
                "Secret",
                json!({"metadata": md("reg"), "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}}),
                true,
            ),
            (
                "",
                "Secret",
                json!({"metadata": md("tls"), "type": "kubernetes.io/tls", "data": {"tls.crt": "eA==", "tls.key": "eA=="}}),
                true,
            ),
            (
                "",
                "ConfigMap",
                json!({"metadata": md("cfg"), "data": {"game.properties": "a=b", "UI_THEME": "dark"}}),
                true,
            ),
            ("", "ServiceAccount", json!({"metadata": md("sa")}), true),
            (
                "",
                "Namespace",
                json!({"metadata": {"name": "team-a"}}),
                false,
            ),
            (
                "",
                "ResourceQuota",
                json!({"metadata": md("q"), "spec": {"hard": {"pods": "10"}}}),
                true,
            ),
            (
                "",
                "PersistentVolumeClaim",
                json!({"metadata": md("data"), "spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}),
                true,
            ),
            (
                "",
                "PersistentVolume",
                json!({"metadata": {"name": "pv1"}, "spec": {"accessModes": ["ReadWriteOnce"],
                "capacity": {"storage": "1Gi"}, "hostPath": {"path": "/mnt/data"}}}),
                false,
            ),
            (
                "rbac.authorization.k8s.io",
                "Role",
                json!({"metadata": md("pod-reader"),
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]}),
                true,
            ),
            (
                "rbac.authorization.k8s.io",
                "ClusterRole",
                json!({"metadata": {"name": "viewer"},
                "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
                false,
            ),
            (
                "rbac.authorization.k8s.io",
                "RoleBinding",
                json!({"metadata": md("rb"),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "jane"},
                             {"kind": "ServiceAccount", "name": "sa", "namespace": "default"}]}),
                true,
            ),
            (
                "rbac.authorization.k8s.io",
                "ClusterRoleBinding",
                json!({"metadata": {"name": "crb"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "Group", "name": "devs"}]}),
                false,
            ),
            (
                "policy",
                "PodDisruptionBudget",
                json!({"metadata": md("pdb"), "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}}}),
                true,
            ),
            (
                "scheduling.k8s.io",
                "PriorityClass",
                json!({"metadata": {"name": "high"}, "value": 1000, "globalDefault": false, "description": "x"}),
                false,
            ),
            (
                "scheduling.k8s.io",
                "PriorityClass",
                json!({"metadata": {"name": "system-node-critical"}, "value": 2_000_001_000}),
                false,
            ),
            (
                "networking.k8s.io",
                "Ingress",
                json!({"metadata": md("ing"), "spec": {"rules": [{"host": "foo.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                {"path": "/api", "pathType": "Exact", "backend": {"service": {"name": "api", "port": {"name": "http"}}}}]}},
                {"host": "*.bar.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
                true,
            ),
            (
                "networking.k8s.io",
                "IngressClass",
                json!({"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}),
                false,
            ),
            (
                "networking.k8s.io",
                "NetworkPolicy",
                json!({"metadata": md("deny"), "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"a": "b"}}}], "ports": [{"port": 80}]}]}}),
                true,
            ),
            (
                "autoscaling",
                "HorizontalPodAutoscaler",
                json!({"metadata": md("web"), "spec": {"minReplicas": 2, "maxReplicas": 5,
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}}),
                true,
            ),
            (
                "storage.k8s.io",
                "StorageClass",
                json!({"metadata": {"name": "local-path"}, "provisioner": "rancher.io/local-path"}),
                false,
            ),
            (
                "discovery.k8s.io",
                "EndpointSlice",
                json!({"metadata": md("web-abc"), "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.42.0.5"]}], "ports": [{"name": "http", "port": 80}]}),
                true,
            ),
            (
                "",
                "Endpoints",
                json!({"metadata": md("web"), "subsets": [{"addresses": [{"ip": "10.42.0.5"}], "ports": [{"port": 80}]}]}),
                true,
            ),
            (
                "coordination.k8s.io",
                "Lease",
                json!({"metadata": md("l"), "spec": {"holderIdentity": "n", "leaseDurationSeconds": 40}}),
                true,
            ),
            (
                "apps",
                "ControllerRevision",
                json!({"metadata": md("web-1"), "data": {"spec": {}}, "revision": 1}),
                true,
            ),
            (
                "",
                "Event",
                json!({"metadata": md("web.17a"), "involvedObject": {"kind": "Pod", "name": "web"}, "reason": "Started"}),
                true,
            ),
            (
                "authorization.k8s.io",
                "SelfSubjectAccessReview",
                json!({"metadata": {}, "spec": {"resourceAttributes": {"verb": "get"}}}),
                false,
            ),
        ];
        for (group, kind, obj, namespaced) in cases {
            let errs = create(group, kind, obj.clone(), namespaced);
            assert!(errs.is_empty(), "{kind}: {errs:?}");
            let errs = update(group, kind, obj.clone(), obj, namespaced);
            assert!(errs.is_empty(), "{kind} update: {errs:?}");
        }
    }

    #[test]
    fn stored_objects_without_defaults_compare_as_defaulted() {
        let sc = json!({"metadata": {"name": "local"}, "provisioner": "rancher.io/local-path"});
        let mut new = sc.clone();
        apply_defaults("storage.k8s.io", "StorageClass", &mut new);
        assert!(validate_update("storage.k8s.io", "StorageClass", &new, &sc, false).is_empty());
        let svc = json!({"metadata": {"name": "kubernetes", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}});
        let mut new = svc.clone();
        apply_defaults("", "Service", &mut new);
        assert!(validate_update("", "Service", &new, &svc, true).is_empty());
        let mut changed = sc.clone();
        apply_defaults("storage.k8s.io", "StorageClass", &mut changed);
        changed["provisioner"] = json!("example.com/x");
        let errs: Vec<String> =
            validate_update("storage.k8s.io", "StorageClass", &changed, &sc, false)
                .iter()
                .map(ToString::to_string)
                .collect();
        assert_eq!(
            errs,
            vec!["provisioner: Forbidden: updates to provisioner are forbidden."]
        );
    }

    #[test]
    fn node_port_allocation_errors_stand_alone() {
        let svc = json!({"metadata": {"name": "Bad", "namespace": "d"},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 8080}]}});
        assert_eq!(create("", "Service", svc, true), vec![
            "spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767",
        ]);
    }

    #[test]
    fn volume_source_rules() {
        let errs = create(
            "",
            "Pod",
            pod(json!({"containers": [{"name": "c", "image": "x"}],
            "volumes": [{"name": "a", "emptyDir": {}, "hostPath": {"path": "/x"}},
                        {"name": "b", "hostPath": {"path": "/x", "type": "Weird"}},
                        {"name": "c", "nfs": {"server": "s", "path": ""}}]})),
            true,
        );
        assert_eq!(errs, vec![
            "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
            "spec.volumes[1].hostPath.type: Unsupported value: \"Weird\": supported values: \"\", \"BlockDevice\", \"CharDevice\", \"Directory\", \"DirectoryOrCreate\", \"File\", \"FileOrCreate\", \"Socket\"",
            "spec.volumes[2].nfs.path: Required value",
            "spec.volumes[2].nfs.path: Invalid value: \"\": must be an absolute path",
        ]);
    }
}
