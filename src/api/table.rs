//! `meta.k8s.io/v1` Table responses (what `kubectl get` prints), built from the
//! registry's per-kind columns.

use chrono::Utc;
use serde_json::{json, Value};

use crate::registry::{resources::ResourceInfo, table};

/// Column definitions in Table form.
pub fn column_definitions(r: &ResourceInfo) -> Value {
    Value::Array(
        table::columns(r.group, r.kind)
            .into_iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.type_,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

/// One row: the cells and the embedded object (metadata only unless `includeObject=Object`).
pub fn row(r: &ResourceInfo, obj: &Value, include_object: Option<&str>) -> Value {
    let cells = table::cells(r.group, r.kind, obj, Utc::now());
    let object = match include_object {
        Some("Object") => obj.clone(),
        Some("None") => Value::Null,
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
    };
    let mut row = json!({"cells": cells});
    if !object.is_null() {
        row["object"] = object;
    }
    row
}

/// A whole Table.
pub fn table<'a>(
    r: &ResourceInfo,
    objects: impl Iterator<Item = &'a Value>,
    resource_version: i64,
    continue_token: Option<&str>,
    include_object: Option<&str>,
    with_columns: bool,
) -> Value {
    let rows: Vec<Value> = objects.map(|o| row(r, o, include_object)).collect();
    let mut metadata = json!({"resourceVersion": resource_version.to_string()});
    if let Some(c) = continue_token {
        metadata["continue"] = json!(c);
    }
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": if with_columns { column_definitions(r) } else { Value::Null },
        "rows": rows,
    });
    if !with_columns {
        if let Some(o) = t.as_object_mut() {
            o.remove("columnDefinitions");
        }
    }
    t
}
