//! Recording core/v1 Events (what `kubectl describe` and `kubectl get events` show) the
//! way client-go's recorder does: one Event per distinct (object, type, reason, message),
//! repeats raise its `count` and `lastTimestamp` instead of adding new Events. Recording is
//! best effort: a failure is logged, never returned to the loop.
//!
//! kube-rs has a recorder too, but it writes `events.k8s.io/v1` Events, which skiff stores
//! apart from core/v1 ones, and kubectl reads core/v1.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::Utc;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

/// Events remembered for aggregation; beyond this the memory starts over.
const REMEMBERED: usize = 4096;

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
}

impl Recorder {
    pub fn new(client: kube::Client, component: impl Into<String>) -> Recorder {
        Recorder {
            client,
            component: component.into(),
            seen: Mutex::new(HashMap::new()),
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
        let key = format!(
            "{}/{}/{}/{}/{}",
            object.uid.as_deref().unwrap_or_default(),
            object.name.as_deref().unwrap_or_default(),
            kind.as_str(),
            reason,
            message
        );
        let now = Utc::now();
        let repeat = self.remembered(&key);
        if let Some((name, count)) = repeat {
            let patch = serde_json::json!({
                "count": count + 1,
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
