//! Discovery documents: `/api`, `/apis` (legacy and aggregated v2), per group-version
//! resource lists, and `/version`. All are derived from the resource catalogue.

use serde_json::{json, Value};

use crate::registry::resources::{group_versions, ResourceInfo, RESOURCES};

/// The Kubernetes version skiff speaks.
pub const KUBE_VERSION: (&str, &str) = ("1", "32");
pub use crate::apimachinery::GIT_VERSION;

pub fn version() -> Value {
    json!({
        "major": KUBE_VERSION.0,
        "minor": KUBE_VERSION.1,
        "gitVersion": GIT_VERSION,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": concat!("rust (skiff ", env!("CARGO_PKG_VERSION"), ")"),
        "compiler": "rustc",
        "platform": format!("linux/{}", std::env::consts::ARCH),
    })
}

/// `/api`: the legacy core group versions.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn named_groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for (g, v) in group_versions() {
        if g.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(name, _)| *name == g) {
            Some((_, versions)) => versions.push(v),
            None => out.push((g, vec![v])),
        }
    }
    out
}

fn group_json(name: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "name": name,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/apis` (legacy): APIGroupList.
pub fn group_list() -> Value {
    let mut groups: Vec<Value> = named_groups()
        .iter()
        .map(|(g, v)| group_json(g, v))
        .collect();
    groups.push(super::metrics::group_json());
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`: APIGroup.
pub fn group(name: &str) -> Option<Value> {
    let (g, v) = named_groups().into_iter().find(|(g, _)| *g == name)?;
    let mut doc = group_json(g, &v);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn resources_of(group: &str, version: &str) -> Vec<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect()
}

/// `/api/v1`, `/apis/<g>/<v>`: APIResourceList, with subresources as `pods/status` rows.
pub fn resource_list(group: &str, version: &str) -> Value {
    let mut rows = Vec::new();
    for r in resources_of(group, version) {
        let mut row = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            row["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            row["categories"] = json!(r.categories);
        }
        rows.push(row);
        for s in r.subresources {
            let mut sub = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if s.group != r.group || s.version != r.version {
                sub["group"] = json!(s.group);
                sub["version"] = json!(s.version);
            }
            rows.push(sub);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": rows})
}

fn discovery_version(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = resources_of(group, version)
        .into_iter()
        .map(|r| {
            let mut row = json!({
                "resource": r.plural,
                "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": r.singular,
                "verbs": r.verbs,
            });
            if !r.short_names.is_empty() {
                row["shortNames"] = json!(r.short_names);
            }
            if !r.categories.is_empty() {
                row["categories"] = json!(r.categories);
            }
            if !r.subresources.is_empty() {
                row["subresources"] = Value::Array(
                    r.subresources
                        .iter()
                        .map(|s| {
                            json!({
                                "subresource": s.name,
                                "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                                "verbs": s.verbs,
                            })
                        })
                        .collect(),
                );
            }
            row
        })
        .collect();
    json!({"version": version, "resources": resources, "freshness": "Current"})
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2` APIGroupDiscoveryList): for `/api`
/// (core only) or `/apis` (every named group).
pub fn aggregated(core: bool) -> Value {
    let mut items: Vec<Value> = if core {
        vec![json!({"metadata": {"name": ""}, "versions": [discovery_version("", "v1")]})]
    } else {
        named_groups()
            .iter()
            .map(|(g, versions)| {
                json!({
                    "metadata": {"name": g},
                    "versions": versions.iter().map(|v| discovery_version(g, v)).collect::<Vec<_>>(),
                })
            })
            .collect()
    };
    if !core {
        items.push(super::metrics::aggregated_group());
    }
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_core_list_has_eviction_for_drain() {
        let l = resource_list("", "v1");
        let ev = l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods/eviction")
            .unwrap();
        assert_eq!(ev["group"], "policy");
        assert_eq!(ev["version"], "v1");
        assert_eq!(ev["kind"], "Eviction");
    }

    #[test]
    fn deployments_scale_is_autoscaling_v1() {
        let l = resource_list("apps", "v1");
        let s = l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(s["group"], "autoscaling");
        assert_eq!(s["kind"], "Scale");
    }

    #[test]
    fn aggregated_core_is_named_empty() {
        let a = aggregated(true);
        assert_eq!(a["items"][0]["metadata"]["name"], "");
        assert!(aggregated(false)["items"].as_array().unwrap().len() > 5);
    }
}
