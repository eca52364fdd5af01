//! Label selectors, as the `labelSelector` query parameter and `metav1.LabelSelector`
//! objects express them.
//!
//! The grammar and the error texts follow apimachinery's `labels` package, so that a
//! client such as kubectl sees the same `400 BadRequest` messages it would get from
//! kube-apiserver:
//!
//! ```text
//! selector    := requirement ( ',' requirement )*
//! requirement := [!] key | key ( '=' | '==' | '!=' ) value
//!              | key ( 'in' | 'notin' ) '(' value ( ',' value )* ')'
//!              | key ( '>' | '<' ) integer
//! ```
//!
//! Keys must be qualified names (`[prefix/]name`) and values valid label values; a
//! parsed selector keeps its requirements ordered by key, which is also how it prints.

use std::collections::BTreeSet;
use std::fmt;

use crate::registry::validation::{self, go_quote};
use serde_json::{Map, Value};
use thiserror::Error;

/// A selector that could not be parsed or built; the message is kube-apiserver's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct SelectorError {
    /// The text kube-apiserver would put in the `Status` message.
    pub message: String,
}

impl SelectorError {
    fn new(message: impl Into<String>) -> Self {
        SelectorError {
            message: message.into(),
        }
    }
}

/// How a requirement compares a label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value`
    Equals,
    /// `key==value`
    DoubleEquals,
    /// `key!=value`
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)`
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>3`
    GreaterThan,
    /// `key<3`
    LessThan,
}

/// One term of a selector: a key, an operator and the values it compares against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Build a requirement, validating key and values as apimachinery's
    /// `NewRequirement` does (field paths `key`, `values[i][key]`).
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        build_requirement(key, operator, values)
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn has_value(&self, value: &str) -> bool {
        self.values.iter().any(|v| v == value)
    }

    /// Whether a label set satisfies this requirement.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let found = labels.and_then(|l| l.get(&self.key)).map(label_text);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                found.is_some_and(|v| self.has_value(&v))
            }
            Operator::NotIn | Operator::NotEquals => found.is_none_or(|v| !self.has_value(&v)),
            Operator::Exists => found.is_some(),
            Operator::DoesNotExist => found.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(have) = found.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [want] = self.values.as_slice() else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        f.write_str(op)?;
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        let mut sorted: Vec<&str> = self.values.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        f.write_str(&sorted.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A parsed label selector. The default value selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object (an empty selector).
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// The selector that matches no object (what a missing `metav1.LabelSelector`
    /// converts to).
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parse the string form (`app=web,tier in (a,b),!canary`).
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let tokens = lex(selector);
        let mut parser = Parser { tokens, pos: 0 };
        let mut requirements = parser.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// A selector requiring `key=value` for every entry of a plain label map, as a
    /// Service's or ReplicationController's `selector` is read. An empty map selects
    /// everything.
    pub fn from_map(set: &Map<String, Value>) -> Result<Self, SelectorError> {
        let mut requirements = Vec::with_capacity(set.len());
        for (key, value) in set {
            requirements.push(Requirement::new(
                key,
                Operator::Equals,
                vec![label_text(value)],
            )?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Convert a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`).
    /// `null` selects nothing, `{}` everything, as `LabelSelectorAsSelector` does.
    pub fn from_label_selector_json(sel: &Value) -> Result<Self, SelectorError> {
        let obj = match sel {
            Value::Null => return Ok(LabelSelector::nothing()),
            Value::Object(obj) => obj,
            other => {
                return Err(SelectorError::new(format!(
                    "invalid label selector: expected an object, got {other}"
                )))
            }
        };
        let match_labels = match obj.get("matchLabels") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                return Err(SelectorError::new(
                    "invalid label selector: matchLabels must be an object",
                ))
            }
        };
        let expressions: &[Value] = match obj.get("matchExpressions") {
            None | Some(Value::Null) => &[],
            Some(Value::Array(a)) => a,
            Some(_) => {
                return Err(SelectorError::new(
                    "invalid label selector: matchExpressions must be a list",
                ))
            }
        };
        if match_labels.is_none_or(Map::is_empty) && expressions.is_empty() {
            return Ok(LabelSelector::everything());
        }
        let mut requirements = Vec::new();
        if let Some(labels) = match_labels {
            let mut keys: Vec<&String> = labels.keys().collect();
            keys.sort();
            for key in keys {
                let value = labels.get(key).map(label_text).unwrap_or_default();
                requirements.push(Requirement::new(key, Operator::Equals, vec![value])?);
            }
        }
        for expr in expressions {
            let key = expr.get("key").and_then(Value::as_str).unwrap_or("");
            let op_text = expr.get("operator").and_then(Value::as_str).unwrap_or("");
            let op = match op_text {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::new(format!(
                        "{} is not a valid label selector operator",
                        go_quote(other)
                    )))
                }
            };
            let values: Vec<String> = expr
                .get("values")
                .and_then(Value::as_array)
                .map(|vs| vs.iter().map(label_text).collect())
                .unwrap_or_default();
            requirements.push(Requirement::new(key, op, values)?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// True for the select-everything selector (no requirements).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True for the select-nothing selector.
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether an object with these `metadata.labels` is selected.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Convenience: match against an object's `metadata.labels`.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches(
            obj.get("metadata")
                .and_then(|m| m.get("labels"))
                .and_then(Value::as_object),
        )
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// `k1=v1,k2=v2` for a label map, keys sorted; `<none>` when empty (kube's
/// `labels.FormatLabels`).
pub fn format_labels(set: Option<&Map<String, Value>>) -> String {
    let Some(set) = set.filter(|s| !s.is_empty()) else {
        return "<none>".to_string();
    };
    let mut pairs: Vec<(&String, String)> = set.iter().map(|(k, v)| (k, label_text(v))).collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The printed form of a `metav1.LabelSelector`: `<none>` when it selects everything
/// or nothing, `<error>` when it is invalid (kube's `metav1.FormatLabelSelector`).
pub fn format_label_selector(sel: Option<&Value>) -> String {
    match LabelSelector::from_label_selector_json(sel.unwrap_or(&Value::Null)) {
        Ok(s) => {
            let text = s.to_string();
            if text.is_empty() {
                "<none>".to_string()
            } else {
                text
            }
        }
        Err(_) => "<error>".to_string(),
    }
}

fn label_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Error texts (key and value syntax is checked by registry::validation)
// ---------------------------------------------------------------------------

fn invalid(path: &str, bad_value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {}: {detail}", go_quote(bad_value))
}

fn validate_key(key: &str, path: &str) -> Option<String> {
    let errs = validation::is_qualified_name(key);
    if errs.is_empty() {
        None
    } else {
        Some(invalid(path, key, &errs.join("; ")))
    }
}

fn aggregate(errs: Vec<String>) -> Option<SelectorError> {
    let mut seen: Vec<String> = Vec::new();
    for e in errs {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    match seen.len() {
        0 => None,
        1 => seen.pop().map(SelectorError::new),
        _ => Some(SelectorError::new(format!("[{}]", seen.join(", ")))),
    }
}

fn go_string_slice(values: &[String]) -> String {
    let inner: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("[]string{{{}}}", inner.join(", "))
}

fn build_requirement(
    key: &str,
    operator: Operator,
    values: Vec<String>,
) -> Result<Requirement, SelectorError> {
    let mut errs = Vec::new();
    if let Some(e) = validate_key(key, "key") {
        errs.push(e);
    }
    let values_path = "values";
    match operator {
        Operator::In | Operator::NotIn => {
            if values.is_empty() {
                errs.push(format!(
                    "{values_path}: Invalid value: {}: for 'in', 'notin' operators, values set can't be empty",
                    go_string_slice(&values)
                ));
            }
        }
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
            if values.len() != 1 {
                errs.push(format!(
                    "{values_path}: Invalid value: {}: exact-match compatibility requires one single value",
                    go_string_slice(&values)
                ));
            }
        }
        Operator::Exists | Operator::DoesNotExist => {
            if !values.is_empty() {
                errs.push(format!(
                    "{values_path}: Invalid value: {}: values set must be empty for exists and does not exist",
                    go_string_slice(&values)
                ));
            }
        }
        Operator::GreaterThan | Operator::LessThan => {
            if values.len() != 1 {
                errs.push(format!(
                    "{values_path}: Invalid value: {}: for 'Gt', 'Lt' operators, exactly one value is required",
                    go_string_slice(&values)
                ));
            }
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errs.push(invalid(
                        &format!("{values_path}[{i}]"),
                        v,
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
        }
    }
    for (i, v) in values.iter().enumerate() {
        let verrs = validation::is_valid_label_value(v);
        if !verrs.is_empty() {
            errs.push(invalid(
                &format!("{values_path}[{i}][{key}]"),
                v,
                &verrs.join("; "),
            ));
        }
    }
    match aggregate(errs) {
        Some(e) => Err(e),
        None => Ok(Requirement {
            key: key.to_string(),
            operator,
            values,
        }),
    }
}

// ---------------------------------------------------------------------------
// Lexer and parser
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Error,
    End,
    ClosedPar,
    Comma,
    Not,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &str) -> Option<Tok> {
    Some(match s {
        ")" => Tok::ClosedPar,
        "," => Tok::Comma,
        "!" => Tok::Not,
        "==" => Tok::DoubleEquals,
        "=" => Tok::Equals,
        ">" => Tok::GreaterThan,
        "in" => Tok::In,
        "<" => Tok::LessThan,
        "!=" => Tok::NotEquals,
        "notin" => Tok::NotIn,
        "(" => Tok::OpenPar,
        _ => return None,
    })
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Split a selector into tokens, always ending with `Tok::End`.
fn lex(input: &str) -> Vec<(Tok, String)> {
    let chars: Vec<char> = input.chars().collect();
    let mut pos = 0;
    let mut out = Vec::new();
    let at = |i: usize| -> char { chars.get(i).copied().unwrap_or('\0') };
    loop {
        while is_space(at(pos)) {
            pos += 1;
        }
        let c = at(pos);
        if c == '\0' {
            out.push((Tok::End, String::new()));
            return out;
        }
        if is_special(c) {
            let mut buffer = String::new();
            let mut last: Option<(Tok, String)> = None;
            while is_special(at(pos)) {
                buffer.push(at(pos));
                if let Some(t) = keyword(&buffer) {
                    last = Some((t, buffer.clone()));
                    pos += 1;
                } else if last.is_some() {
                    break;
                } else {
                    pos += 1;
                }
            }
            match last {
                Some(item) => out.push(item),
                None => out.push((
                    Tok::Error,
                    format!("error expected: keyword found '{buffer}'"),
                )),
            }
        } else {
            let mut buffer = String::new();
            while at(pos) != '\0' && !is_special(at(pos)) && !is_space(at(pos)) {
                buffer.push(at(pos));
                pos += 1;
            }
            let tok = keyword(&buffer).unwrap_or(Tok::Identifier);
            out.push((tok, buffer));
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    tokens: Vec<(Tok, String)>,
    pos: usize,
}

const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

impl Parser {
    fn peek(&self, ctx: Context) -> (Tok, String) {
        let (tok, lit) = self
            .tokens
            .get(self.pos)
            .cloned()
            .unwrap_or((Tok::End, String::new()));
        let tok = match (ctx, tok) {
            (Context::Values, Tok::In | Tok::NotIn) => Tok::Identifier,
            (_, t) => t,
        };
        (tok, lit)
    }

    fn next(&mut self, ctx: Context) -> (Tok, String) {
        let item = self.peek(ctx);
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.peek(Context::Values);
            match tok {
                Tok::Identifier | Tok::Not => {
                    let r = self.requirement().map_err(|e| {
                        SelectorError::new(format!("unable to parse requirement: {e}"))
                    })?;
                    requirements.push(r);
                    let (t, l) = self.next(Context::Values);
                    match t {
                        Tok::End => return Ok(requirements),
                        Tok::Comma => {
                            let (t2, l2) = self.peek(Context::Values);
                            if t2 != Tok::Identifier && t2 != Tok::Not {
                                return Err(SelectorError::new(format!(
                                    "found '{l2}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(SelectorError::new(format!(
                                "found '{l}', expected: ',' or 'end of string'"
                            )))
                        }
                    }
                }
                Tok::End => return Ok(requirements),
                _ => {
                    return Err(SelectorError::new(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    )))
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (key, inferred) = self.key_and_inferred_operator()?;
        if let Some(op) = inferred {
            return build_requirement(&key, op, Vec::new());
        }
        let op = self.operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => self.exact_value()?,
        };
        build_requirement(&key, op, values.into_iter().collect())
    }

    fn key_and_inferred_operator(&mut self) -> Result<(String, Option<Operator>), SelectorError> {
        let mut op = None;
        let (mut tok, mut lit) = self.next(Context::Values);
        if tok == Tok::Not {
            op = Some(Operator::DoesNotExist);
            (tok, lit) = self.next(Context::Values);
        }
        if tok != Tok::Identifier {
            return Err(SelectorError::new(format!(
                "found '{lit}', expected: identifier"
            )));
        }
        // kube's parser validates the key with a nil field path, printed `<nil>`.
        if let Some(e) = validate_key(&lit, "<nil>") {
            return Err(SelectorError::new(e));
        }
        let (next, _) = self.peek(Context::Values);
        if (next == Tok::End || next == Tok::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        Ok((lit, op))
    }

    fn operator(&mut self) -> Result<Operator, SelectorError> {
        let (tok, lit) = self.next(Context::KeyAndOperator);
        Ok(match tok {
            Tok::In => Operator::In,
            Tok::Equals => Operator::Equals,
            Tok::DoubleEquals => Operator::DoubleEquals,
            Tok::GreaterThan => Operator::GreaterThan,
            Tok::LessThan => Operator::LessThan,
            Tok::NotIn => Operator::NotIn,
            Tok::NotEquals => Operator::NotEquals,
            _ => {
                return Err(SelectorError::new(format!(
                    "found '{lit}', expected: {BINARY_OPERATORS}"
                )))
            }
        })
    }

    fn value_set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let (tok, lit) = self.next(Context::Values);
        if tok != Tok::OpenPar {
            return Err(SelectorError::new(format!("found '{lit}' expected: '('")));
        }
        let (tok, lit) = self.peek(Context::Values);
        match tok {
            Tok::Identifier | Tok::Comma => {
                let set = self.identifier_list()?;
                let (close, _) = self.next(Context::Values);
                if close != Tok::ClosedPar {
                    return Err(SelectorError::new(format!("found '{lit}', expected: ')'")));
                }
                Ok(set)
            }
            Tok::ClosedPar => {
                self.next(Context::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(SelectorError::new(format!(
                "found '{lit}', expected: ',', ')' or identifier"
            ))),
        }
    }

    fn identifier_list(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let mut set = BTreeSet::new();
        loop {
            let (tok, lit) = self.next(Context::Values);
            match tok {
                Tok::Identifier => {
                    set.insert(lit);
                    let (t2, l2) = self.peek(Context::Values);
                    match t2 {
                        Tok::Comma => continue,
                        Tok::ClosedPar => return Ok(set),
                        _ => {
                            return Err(SelectorError::new(format!(
                                "found '{l2}', expected: ',' or ')'"
                            )))
                        }
                    }
                }
                Tok::Comma => {
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    let (t2, _) = self.peek(Context::Values);
                    if t2 == Tok::ClosedPar {
                        set.insert(String::new());
                        return Ok(set);
                    }
                    if t2 == Tok::Comma {
                        self.next(Context::Values);
                        set.insert(String::new());
                    }
                }
                _ => {
                    return Err(SelectorError::new(format!(
                        "found '{lit}', expected: ',', or identifier"
                    )))
                }
            }
        }
    }

    fn exact_value(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let (tok, _) = self.peek(Context::Values);
        if tok == Tok::End || tok == Tok::Comma {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (tok, lit) = self.next(Context::Values);
        if tok == Tok::Identifier {
            Ok(BTreeSet::from([lit]))
        } else {
            Err(SelectorError::new(format!(
                "found '{lit}', expected: identifier"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn sel(s: &str) -> LabelSelector {
        match LabelSelector::parse(s) {
            Ok(sel) => sel,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn err(s: &str) -> String {
        match LabelSelector::parse(s) {
            Ok(sel) => panic!("{s} parsed as {sel}"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn equality_operators() {
        let l = labels(json!({"app": "web", "tier": "front"}));
        assert!(sel("app=web").matches(Some(&l)));
        assert!(sel("app==web").matches(Some(&l)));
        assert!(!sel("app=db").matches(Some(&l)));
        assert!(sel("app!=db").matches(Some(&l)));
        assert!(!sel("app!=web").matches(Some(&l)));
        assert!(sel("missing!=x").matches(Some(&l)));
        assert!(!sel("missing=x").matches(Some(&l)));
        assert!(sel(" app = web , tier==front ").matches(Some(&l)));
        assert!(!sel("app=web,tier=back").matches(Some(&l)));
        assert_eq!(
            sel("tier==front, app=web").to_string(),
            "app=web,tier==front"
        );
        assert!(sel("app=").matches(Some(&labels(json!({"app": ""})))));
    }

    #[test]
    fn set_operators() {
        let l = labels(json!({"env": "prod"}));
        assert!(sel("env in (prod, staging)").matches(Some(&l)));
        assert!(!sel("env in (dev)").matches(Some(&l)));
        assert!(sel("env notin (dev,qa)").matches(Some(&l)));
        assert!(!sel("env notin (prod)").matches(Some(&l)));
        assert!(sel("other notin (prod)").matches(Some(&l)));
        assert!(!sel("other in (prod)").matches(Some(&l)));
        assert_eq!(sel("env in (b,a,b)").to_string(), "env in (a,b)");
        assert_eq!(sel("in in (notin)").to_string(), "in in (notin)");
    }

    #[test]
    fn existence_operators() {
        let l = labels(json!({"canary": "true"}));
        assert!(sel("canary").matches(Some(&l)));
        assert!(!sel("!canary").matches(Some(&l)));
        assert!(sel("!stable").matches(Some(&l)));
        assert!(!sel("stable").matches(None));
        assert!(sel("!stable").matches(None));
        assert_eq!(sel("!b,a").to_string(), "a,!b");
    }

    #[test]
    fn numeric_operators() {
        let l = labels(json!({"n": "5"}));
        assert!(sel("n>3").matches(Some(&l)));
        assert!(!sel("n<3").matches(Some(&l)));
        assert!(err("n>x").contains("the value must be an integer"));
    }

    #[test]
    fn empty_selects_everything() {
        let s = sel("");
        assert!(s.is_empty());
        assert!(s.matches(None));
        assert!(sel("  ").is_empty());
        assert!(!LabelSelector::nothing().matches(None));
        assert!(!LabelSelector::nothing().is_empty());
    }

    #[test]
    fn parse_errors_match_apimachinery() {
        assert_eq!(
            err("app=web extra"),
            "found 'extra', expected: ',' or 'end of string'"
        );
        assert_eq!(err("app=web,"), "found '', expected: identifier after ','");
        assert_eq!(
            err("=web"),
            "found '=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            err("app web"),
            "unable to parse requirement: found 'web', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(
            err("env in prod"),
            "unable to parse requirement: found 'prod' expected: '('"
        );
        assert_eq!(
            err("env in (a b)"),
            "unable to parse requirement: found 'b', expected: ',' or ')'"
        );
        assert_eq!(
            err("a/b/c"),
            "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        );
        assert_eq!(
            err("app=-bad"),
            "unable to parse requirement: values[0][app]: Invalid value: \"-bad\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        );
        assert!(err("Example.com/x=y").starts_with(
            "unable to parse requirement: <nil>: Invalid value: \"Example.com/x\": prefix part a lowercase RFC 1123 subdomain"
        ));
        assert!(err("!a=b").contains("expected: ',' or 'end of string'"));
    }

    #[test]
    fn label_selector_json() {
        let s = LabelSelector::from_label_selector_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "Exists"},
                {"key": "env", "operator": "NotIn", "values": ["dev"]}
            ]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.to_string(),
            "app=web,!canary,env notin (dev),tier in (edge,front),zone"
        );
        let l = labels(json!({"app": "web", "tier": "edge", "zone": "a"}));
        assert!(s.matches(Some(&l)));
        let l = labels(json!({"app": "web", "tier": "edge", "zone": "a", "canary": "1"}));
        assert!(!s.matches(Some(&l)));

        let every = LabelSelector::from_label_selector_json(&json!({}));
        assert!(every.is_ok_and(|s| s.is_empty()));
        let none = LabelSelector::from_label_selector_json(&Value::Null);
        assert!(none.is_ok_and(|s| s.is_nothing()));

        let bad = LabelSelector::from_label_selector_json(&json!({
            "matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]
        }));
        assert_eq!(
            bad.map_err(|e| e.message),
            Err("\"Gt\" is not a valid label selector operator".to_string())
        );
        let empty_in = LabelSelector::from_label_selector_json(&json!({
            "matchExpressions": [{"key": "a", "operator": "In", "values": []}]
        }));
        assert_eq!(
            empty_in.map_err(|e| e.message),
            Err("values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty".to_string())
        );
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(format_labels(None), "<none>");
        let l = labels(json!({"b": "2", "a": "1"}));
        assert_eq!(format_labels(Some(&l)), "a=1,b=2");
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(
            format_label_selector(Some(&json!({"matchLabels": {"app": "x"}}))),
            "app=x"
        );
        let from_map = LabelSelector::from_map(&l).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_map.to_string(), "a=1,b=2");
    }
}
