//! Types of the generated schema table in [`super::schema`].

/// The value type of a field (or of the elements of a repeated field, or of
/// the values of a map field; map keys are always strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    /// `string` → JSON string.
    Str,
    /// `bool` → JSON bool.
    Bool,
    /// `int32` (varint) → JSON number.
    I32,
    /// `int64` (varint) → JSON number.
    I64,
    /// `double` (fixed64) → JSON number.
    F64,
    /// `bytes` → base64 JSON string (Go's `[]byte` JSON form).
    Bytes,
    /// A message: index into [`super::schema::TYPES`].
    M(u16),
}

/// How a field is carried and rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Card {
    /// Singular field; rendered whenever present on the wire, zero values
    /// included (Go pointer fields, and non-pointer fields without
    /// `omitempty`, e.g. `containerPort`).
    Opt,
    /// Singular scalar whose zero value is dropped: a non-pointer Go field
    /// tagged `omitempty` (go-to-protobuf always writes it, JSON omits it).
    OmitZero,
    /// Repeated field → JSON array; omitted when empty.
    Rep,
    /// `map<string, Ty>` → JSON object; omitted when empty.
    Map,
    /// Go embedded struct with `json:",inline"`: the message's JSON fields are
    /// merged into the parent object (e.g. `Volume.volumeSource`).
    Inline,
}

/// One field: protobuf tag, JSON name, value type, cardinality.
#[derive(Debug)]
pub(crate) struct Field(pub u32, pub &'static str, pub Ty, pub Card);

/// Messages whose JSON form is not simply an object of their fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Special {
    /// Ordinary message → JSON object.
    None,
    /// meta/v1 Time {seconds=1, nanos=2} → RFC 3339 seconds string; empty → null.
    Time,
    /// meta/v1 MicroTime → RFC 3339 string with microseconds; empty → null.
    MicroTime,
    /// meta/v1 Duration {duration=1 (ns)} → Go duration string (`1h0m0s`).
    Duration,
    /// meta/v1 FieldsV1 / apiextensions JSON {raw=1} → the embedded JSON value.
    RawJson,
    /// runtime.RawExtension {raw=1} → the embedded JSON value (or a nested
    /// `k8s\0` protobuf envelope).
    RawExtension,
    /// resource.Quantity {string=1} → JSON string.
    Quantity,
    /// intstr.IntOrString {type=1, intVal=2, strVal=3} → number or string.
    IntOrString,
    /// apiextensions JSONSchemaPropsOrArray {schema=1, jSONSchemas=2}.
    SchemaOrArray,
    /// apiextensions JSONSchemaPropsOrBool {allows=1, schema=2}.
    SchemaOrBool,
    /// apiextensions JSONSchemaPropsOrStringArray {schema=1, property=2}.
    SchemaOrStringArray,
    /// `{repeated string items = 1}` wrappers (meta/v1 Verbs, ExtraValue) →
    /// a JSON array of strings.
    StringList,
}

/// A message type: full proto name (`k8s.io.api.apps.v1.Deployment`), JSON
/// rendering, and fields sorted by tag.
#[derive(Debug)]
pub(crate) struct Msg {
    pub name: &'static str,
    pub special: Special,
    pub fields: &'static [Field],
}
