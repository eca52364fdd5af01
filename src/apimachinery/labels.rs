//! Label selectors on typed objects (`metav1.LabelSelector` against a label map), with
//! `LabelSelectorAsSelector`'s rules: a missing selector selects nothing, an empty one
//! selects everything, and an unknown operator makes the selector select nothing.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `selector` selects an object carrying `labels`.
pub fn selector_matches(
    selector: Option<&LabelSelector>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    match selector {
        None => false,
        Some(sel) => matches(sel, labels),
    }
}

/// Whether a present selector selects `labels` (empty selects everything).
pub fn matches(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k));
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| get(k) == Some(v));
    labels_ok
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Whether the selector has neither `matchLabels` nor `matchExpressions` (selects all).
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

/// The selector as the `labelSelector=` query string (`k=v,k2 in (a,b),!k3`), so the API
/// server filters what [`matches`] would. `None` when an operator is unknown: such a
/// selector selects nothing, and there is no query string for that.
pub fn to_query(selector: &LabelSelector) -> Option<String> {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            _ => return None,
        });
    }
    Some(parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn missing_selects_nothing_empty_selects_everything() {
        let l = labels(&[("app", "web")]);
        assert!(!selector_matches(None, Some(&l)));
        assert!(selector_matches(Some(&LabelSelector::default()), Some(&l)));
        assert!(selector_matches(Some(&LabelSelector::default()), None));
    }

    #[test]
    fn match_labels_and_expressions() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                req("tier", "In", &["front", "edge"]),
                req("canary", "DoesNotExist", &[]),
                req("zone", "NotIn", &["b"]),
            ]),
        };
        assert!(matches(
            &sel,
            Some(&labels(&[("app", "web"), ("tier", "edge")]))
        ));
        assert!(!matches(
            &sel,
            Some(&labels(&[("app", "web"), ("tier", "back")]))
        ));
        assert!(!matches(
            &sel,
            Some(&labels(&[
                ("app", "web"),
                ("tier", "front"),
                ("canary", "1")
            ]))
        ));
        assert!(!matches(
            &sel,
            Some(&labels(&[("app", "web"), ("tier", "front"), ("zone", "b")]))
        ));
        assert!(!matches(
            &sel,
            Some(&labels(&[("app", "db"), ("tier", "front")]))
        ));
        assert!(!matches(&sel, None));
        let bad = LabelSelector {
            match_expressions: Some(vec![req("a", "Like", &[])]),
            ..Default::default()
        };
        assert!(!matches(&bad, Some(&labels(&[("a", "x")]))));
        assert_eq!(to_query(&bad), None);
    }

    #[test]
    fn query_string_round_trips_through_the_api_parser() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                req("tier", "In", &["a", "b"]),
                req("x", "DoesNotExist", &[]),
            ]),
        };
        let q = to_query(&sel).expect("known operators");
        assert_eq!(q, "app=web,tier in (a,b),!x");
        let parsed = crate::api::selector::LabelSelector::parse(&q).expect("parses");
        let obj = serde_json::json!({"metadata": {"labels": {"app": "web", "tier": "b"}}});
        assert!(parsed.matches_object(&obj));
    }
}
