//! WATCH: newline-delimited JSON events from the watch cache, with selector transitions
//! (an object leaving a selector is DELETED for that watcher), bookmarks, initial
//! events, Table-shaped objects for `kubectl get -w`, and 410 Expired for revisions that
//! left the window.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderValue, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::body::Body;
use super::cache::{CacheEvent, CacheEventKind, CachedObject};
use super::objects::list_prefix;
use super::request::{Accept, Query, ResourcePath};
use super::selector::LabelSelector;
use super::status::{ApiError, ApiResult};
use super::{table, ApiServer};
use crate::registry::convert;
use crate::registry::fields::FieldSelector;
use crate::registry::resources::ResourceInfo;

/// How often an idle watch with bookmarks enabled gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);
/// Default watch length when the client sets none (kube picks 30–60 min).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct Filter {
    prefix: String,
    name: Option<String>,
    label: Option<LabelSelector>,
    field: Option<FieldSelector>,
    resource: &'static ResourceInfo,
}

impl Filter {
    fn matches(&self, key: &str, obj: &CachedObject) -> bool {
        if !key.starts_with(&self.prefix) {
            return false;
        }
        // Keys end in the object's name.
        if let Some(n) = &self.name {
            if key.rsplit('/').next() != Some(n.as_str()) {
                return false;
            }
        }
        if let Some(l) = &self.label {
            if !l.matches(obj.labels()) {
                return false;
            }
        }
        if let Some(f) = &self.field {
            if !f
                .matches_set(self.resource.group, self.resource.kind, obj.fields())
                .unwrap_or(false)
            {
                return false;
            }
        }
        true
    }
}

struct Encoder {
    resource: &'static ResourceInfo,
    /// The version the client asked for (objects are converted to it when it differs).
    served: &'static ResourceInfo,
    table: bool,
    include_object: Option<String>,
    sent_columns: bool,
}

impl Encoder {
    fn line(&mut self, kind: &str, obj: &Value) -> Bytes {
        let object = if self.table && kind != "BOOKMARK" && kind != "ERROR" {
            let rv = obj["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let t = table::table(
                self.resource,
                std::iter::once(obj),
                rv,
                None,
                self.include_object.as_deref(),
                !self.sent_columns,
            );
            self.sent_columns = true;
            t
        } else if kind != "BOOKMARK" && kind != "ERROR" && convert::needs_conversion(self.served) {
            convert::from_storage(self.served, obj)
        } else {
            obj.clone()
        };
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    /// The line for a cached object: its stored JSON copied in as it is, unless the
    /// client wants a Table or another version.
    fn object_line(&mut self, kind: &str, obj: &CachedObject) -> Bytes {
        if self.table || convert::needs_conversion(self.served) {
            return self.line(kind, &obj.value());
        }
        let mut line = Vec::with_capacity(obj.json.len() + 40);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(kind.as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        line.extend_from_slice(&obj.json);
        line.extend_from_slice(b"}\n");
        Bytes::from(line)
    }

    fn bookmark(&mut self, rev: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.served.kind, "apiVersion": self.served.api_version(), "metadata": meta});
        self.line("BOOKMARK", &obj)
    }
}

fn expired(requested: i64, oldest: i64) -> Value {
    ApiError::Expired(format!("too old resource version: {requested} ({oldest})")).to_status()
}

impl ApiServer {
    pub(crate) async fn watch(
        self: &Arc<Self>,
        p: &ResourcePath,
        q: &Query,
        accept: Accept,
    ) -> ApiResult<Response<Body>> {
        self.watch_as(p, p.resource, q, accept).await
    }

    /// Watch `p` (a stored version) and send objects as `served`.
    pub(crate) async fn watch_as(
        self: &Arc<Self>,
        p: &ResourcePath,
        served: &'static ResourceInfo,
        q: &Query,
        accept: Accept,
    ) -> ApiResult<Response<Body>> {
        let r = p.resource;
        let label = match q.label_selector.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => {
                Some(LabelSelector::parse(s).map_err(|e| ApiError::BadRequest(e.to_string()))?)
            }
            None => None,
        };
        let field = super::objects::parse_field_selector(r, q)?;
        let filter = Filter {
            prefix: list_prefix(r, p.namespace.as_deref()),
            name: p.name.clone(),
            label,
            field,
            resource: r,
        };
        let mut enc = Encoder {
            resource: r,
            served,
            table: accept == Accept::Table,
            include_object: q.include_object.clone(),
            sent_columns: false,
        };
        let rv_param = q.resource_version.clone().unwrap_or_default();
        let initial = rv_param.is_empty() || rv_param == "0" || q.send_initial_events;
        let bookmarks = q.allow_watch_bookmarks;
        let timeout = q
            .timeout_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TIMEOUT);

        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let server = self.clone();
        let send_initial_end = q.send_initial_events && bookmarks;
        tokio::spawn(async move {
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            // Establish the starting point.
            let (start, replay, mut live) = if initial {
                if rv_param.is_empty() {
                    server.cache.sync().await;
                }
                let (items, rev) = server.cache.list(&filter.prefix, None);
                let Some((replay, live)) = server.cache.subscribe(rev) else {
                    let _ = tx
                        .send(enc.line("ERROR", &expired(rev, server.cache.window_start())))
                        .await;
                    return;
                };
                for (key, obj) in items {
                    if filter.matches(&key, &obj)
                        && tx.send(enc.object_line("ADDED", &obj)).await.is_err()
                    {
                        return;
                    }
                }
                if send_initial_end && tx.send(enc.bookmark(rev, true)).await.is_err() {
                    return;
                }
                (rev, replay, live)
            } else {
                let Ok(from) = rv_param.parse::<i64>() else {
                    let e = ApiError::BadRequest(format!("invalid resource version: {rv_param:?}"));
                    let _ = tx.send(enc.line("ERROR", &e.to_status())).await;
                    return;
                };
                match server.cache.subscribe(from) {
                    Some((replay, live)) => (from, replay, live),
                    // Older than the cache's window: replay from the store's history.
                    None => {
                        store_watch(&server, &filter, &mut enc, from, &tx, &mut deadline).await;
                        return;
                    }
                }
            };
            let mut last = start;
            for ev in replay {
                if ev.revision <= last {
                    continue;
                }
                last = ev.revision;
                if let Some(line) = event_line(&filter, &mut enc, &ev) {
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
            }
            let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = &mut deadline => return,
                    _ = tx.closed() => return,
                    _ = ticker.tick(), if bookmarks => {
                        let rev = server.cache.revision().max(last);
                        if tx.send(enc.bookmark(rev, false)).await.is_err() {
                            return;
                        }
                    }
                    ev = live.recv() => match ev {
                        Ok(ev) => {
                            if ev.revision <= last {
                                continue;
                            }
                            last = ev.revision;
                            if let Some(line) = event_line(&filter, &mut enc, &ev) {
                                if tx.send(line).await.is_err() {
                                    return;
                                }
                            }
                        }
                        // Too slow: end the stream; the client re-watches from its last revision.
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::debug!(prefix = %filter.prefix, last, missed, "watcher too slow; its watch ends");
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, std::io::Error>(Frame::data(b)), rx))
        });
        let mut resp = Response::new(StreamBody::new(stream.boxed()).boxed_unsync());
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, private"),
        );
        Ok(resp)
    }
}

/// Serve a watch from the store's history (for revisions older than the cache window),
/// until the deadline or the store ends the stream.
async fn store_watch(
    server: &Arc<ApiServer>,
    filter: &Filter,
    enc: &mut Encoder,
    from: i64,
    tx: &mpsc::Sender<Bytes>,
    deadline: &mut std::pin::Pin<&mut tokio::time::Sleep>,
) {
    let mut stream = match server.store.watch(&filter.prefix, from) {
        Ok(s) => s,
        Err(crate::store::StoreError::Expired {
            requested,
            compacted,
        }) => {
            let _ = tx
                .send(enc.line("ERROR", &expired(requested, compacted)))
                .await;
            return;
        }
        Err(e) => {
            let _ = tx
                .send(enc.line("ERROR", &ApiError::Internal(e.to_string()).to_status()))
                .await;
            return;
        }
    };
    loop {
        tokio::select! {
            _ = deadline.as_mut() => return,
            _ = tx.closed() => return,
            ev = stream.next() => {
                let Some(Ok(ev)) = ev else { return };
                let Ok(cache_event) = CacheEvent::from_store(ev.kind, &ev.kv, ev.prev.as_ref()) else {
                    continue;
                };
                if let Some(line) = event_line(filter, enc, &cache_event) {
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// What one cache event means for one watcher.
fn event_line(filter: &Filter, enc: &mut Encoder, ev: &CacheEvent) -> Option<Bytes> {
    let now = filter.matches(&ev.key, &ev.object);
    let before = ev.prev.as_ref().is_some_and(|p| filter.matches(&ev.key, p));
    let kind = match ev.kind {
        CacheEventKind::Deleted => now.then_some("DELETED")?,
        CacheEventKind::Added => now.then_some("ADDED")?,
        CacheEventKind::Modified => match (before, now) {
            (true, true) => "MODIFIED",
            (false, true) => "ADDED",
            (true, false) => "DELETED",
            (false, false) => return None,
        },
    };
    Some(enc.object_line(kind, &ev.object))
}
