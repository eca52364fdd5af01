//! Recording core/v1 Events (what `kubectl describe` and `kubectl get events` show) the
//! way client-go's recorder does: one Event per distinct (object, type, reason, message),
//! repeats raise its `count` and `lastTimestamp` instead of adding new Events. Like
//! client-go's aggregator, once an object has had [`SIMILAR_LIMIT`] Events of one type and
//! reason with different messages within [`SIMILAR_WINDOW`] (a ReplicaSet's "Created pod:
//! …" for each of its pods), further ones go to one Event whose message starts with
//! "(combined from similar events): " and whose count grows. Recording is best effort: a
//! failure is logged, never returned to the loop.
//!
//! kube-rs has a recorder too, but it writes `events.k8s.io/v1` Events, which skiff stores
//! apart from core/v1 ones, and kubectl reads core/v1.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

/// Events remembered for aggregation; beyond this the memory starts over.
const REMEMBERED: usize = 4096;
/// Distinct messages of one object, type and reason before they are combined
/// (client-go's `maxEvents`).
const SIMILAR_LIMIT: usize = 10;
/// How long similar messages count together (client-go's `maxIntervalInSeconds`).
const SIMILAR_WINDOW: Duration = Duration::from_secs(600);
const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// Whether an event reports normal operation or a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Writes Events on behalf of one component (`deployment-controller`, `default-scheduler`).
pub struct Recorder {
    client: kube::Client,
    component: String,
    seen: Mutex<HashMap<String, (String, i32)>>,
    similar: Mutex<Similar>,
}

/// The distinct messages seen per object, type and reason (client-go's EventAggregator).
#[derive(Default)]
struct Similar {
    groups: HashMap<String, SimilarGroup>,
}

struct SimilarGroup {
    messages: HashSet<String>,
    last: Instant,
}

impl Similar {
    /// Observe `message` under `group` at `now`: `Some(combined message)` once the group
    /// has [`SIMILAR_LIMIT`] distinct messages in the window.
    fn observe(&mut self, group: &str, message: &str, now: Instant) -> Option<String> {
        if self.groups.len() >= REMEMBERED && !self.groups.contains_key(group) {
            self.groups.clear();
        }
        let g = self
            .groups
            .entry(group.to_string())
            .or_insert_with(|| SimilarGroup {
                messages: HashSet::new(),
                last: now,
            });
        if now.duration_since(g.last) > SIMILAR_WINDOW {
            g.messages.clear();
        }
        g.last = now;
        if g.messages.contains(message) {
            return None;
        }
        if g.messages.len() + 1 < SIMILAR_LIMIT {
            g.messages.insert(message.to_string());
            return None;
        }
        // The set stays at the first ones, as client-go keeps it below the limit.
        Some(format!("{COMBINED_PREFIX}{message}"))
    }
}

impl Recorder {
    pub fn new(client: kube::Client, component: impl Into<String>) -> Recorder {
        Recorder {
            client,
            component: component.into(),
            seen: Mutex::new(HashMap::new()),
            similar: Mutex::new(Similar::default()),
        }
    }

    /// Record that `reason` happened to `object`, with a human `message`.
    pub async fn record(
        &self,
        object: &ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let namespace = object.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let group = format!(
            "{}/{}/{}/{}",
            object.uid.as_deref().unwrap_or_default(),
            object.name.as_deref().unwrap_or_default(),
            kind.as_str(),
            reason,
        );
        let combined = self
            .similar
            .lock()
            .ok()
            .and_then(|mut s| s.observe(&group, message, Instant::now()));
        // A combined message goes to the group's one Event; others to their own.
        let (key, message) = match &combined {
            Some(m) => (format!("{group}/{COMBINED_PREFIX}"), m.as_str()),
            None => (format!("{group}/{message}"), message),
        };
        let now = Utc::now();
        let repeat = self.remembered(&key);
        if let Some((name, count)) = repeat {
            let patch = serde_json::json!({
                "count": count + 1,
                "message": message,
                "lastTimestamp": Time(now),
            });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.remember(key, name, count + 1);
                    return;
                }
                // The Event expired or was deleted: write a new one.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    tracing::debug!(component = %self.component, error = %e, "updating event");
                    return;
                }
            }
        }
        let name = format!(
            "{}.{:x}",
            object.name.as_deref().unwrap_or("object"),
            now.timestamp_nanos_opt().unwrap_or_default()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                ..Default::default()
            },
            involved_object: object.clone(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(kind.as_str().to_string()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: None::<MicroTime>,
            count: Some(1),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => self.remember(key, name, 1),
            Err(e) => tracing::debug!(component = %self.component, error = %e, "recording event"),
        }
    }

    fn remembered(&self, key: &str) -> Option<(String, i32)> {
        self.seen.lock().ok()?.get(key).cloned()
    }

    fn remember(&self, key: String, name: String, count: i32) {
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= REMEMBERED {
                seen.clear();
            }
            seen.insert(key, (name, count));
        }
    }
}

/// The reference an Event (or a binding) uses for `obj`.
pub fn reference<K>(obj: &K) -> ObjectReference
where
    K: kube::Resource<DynamicType = ()>,
{
    obj.object_ref(&())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similar_messages_are_combined_after_ten() {
        let mut s = Similar::default();
        let t0 = Instant::now();
        for i in 0..9 {
            assert_eq!(
                s.observe(
                    "rs/Normal/SuccessfulCreate",
                    &format!("Created pod: p{i}"),
                    t0
                ),
                None
            );
        }
        // The same message again is a repeat, not a new one.
        assert_eq!(
            s.observe("rs/Normal/SuccessfulCreate", "Created pod: p0", t0),
            None
        );
        // The tenth distinct message is the first combined one, and so are those after it.
        assert_eq!(
            s.observe("rs/Normal/SuccessfulCreate", "Created pod: p9", t0)
                .as_deref(),
            Some("(combined from similar events): Created pod: p9")
        );
        assert_eq!(
            s.observe("rs/Normal/SuccessfulCreate", "Created pod: p10", t0)
                .as_deref(),
            Some("(combined from similar events): Created pod: p10")
        );
        // Another reason or object counts apart.
        assert_eq!(
            s.observe("rs/Normal/SuccessfulDelete", "Deleted pod: p0", t0),
            None
        );
        // After ten quiet minutes the count starts over.
        let later = t0 + SIMILAR_WINDOW + Duration::from_secs(1);
        assert_eq!(
            s.observe("rs/Normal/SuccessfulCreate", "Created pod: p11", later),
            None
        );
    }
}
