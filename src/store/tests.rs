//! Behavioural tests of the store, driven through the [`Store`] trait against [`SledStore`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::store::writer::stage;
use crate::store::{
    compaction_target, start_compactor, CompactorConfig, Event, EventKind, KeyValue, SledOptions,
    SledStore, Store, StoreError,
};

fn open(dir: &Path) -> Arc<SledStore> {
    SledStore::open(dir, SledOptions::default()).expect("open store")
}

fn val(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn keys(items: &[KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

async fn next_event(
    stream: &mut futures::stream::BoxStream<'static, Result<Event, StoreError>>,
) -> Option<Result<Event, StoreError>> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("watch stream stalled")
}

#[tokio::test]
async fn create_update_and_cas_conflicts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    assert_eq!(store.current_revision(), 0, "empty store is at revision 0");

    let a = store.create("/a", val("1")).await.expect("create");
    assert_eq!((a.create_revision, a.mod_revision), (1, 1));
    assert!(matches!(
        store.create("/a", val("again")).await,
        Err(StoreError::AlreadyExists { key }) if key == "/a"
    ));

    let a2 = store.update("/a", val("2"), 1).await.expect("update");
    assert_eq!((a2.create_revision, a2.mod_revision), (1, 2));
    match store.update("/a", val("stale"), 1).await {
        Err(StoreError::Conflict { key, current }) => {
            assert_eq!(key, "/a");
            assert_eq!(current, a2, "conflict reports the current version");
        }
        other => panic!("expected conflict, got {other:?}"),
    }
    assert!(matches!(
        store.update("/missing", val("x"), 1).await,
        Err(StoreError::NotFound { key }) if key == "/missing"
    ));
    assert!(matches!(
        store.create("", val("x")).await,
        Err(StoreError::InvalidKey { .. })
    ));

    assert_eq!(store.get("/a").expect("get"), Some(a2));
    assert_eq!(store.get("/nope").expect("get"), None);
    assert_eq!(
        store.current_revision(),
        2,
        "failed writes consume no revision"
    );
}

#[tokio::test]
async fn delete_semantics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.create("/d", val("v1")).await.expect("create");
    let v2 = store.update("/d", val("v2"), 1).await.expect("update");

    assert!(matches!(
        store.delete("/d", Some(1)).await,
        Err(StoreError::Conflict { current, .. }) if current == v2
    ));
    let deleted = store.delete("/d", Some(2)).await.expect("delete");
    assert_eq!(
        deleted,
        KeyValue {
            key: "/d".into(),
            value: val("v2"),
            create_revision: 1,
            mod_revision: 3,
        },
        "delete returns the last value at the deletion's revision"
    );
    assert_eq!(store.get("/d").expect("get"), None);
    assert!(matches!(
        store.delete("/d", None).await,
        Err(StoreError::NotFound { .. })
    ));

    let again = store.create("/d", val("new")).await.expect("recreate");
    assert_eq!(again.create_revision, 4, "a new incarnation");
    let gone = store
        .delete("/d", None)
        .await
        .expect("unconditional delete");
    assert_eq!((gone.mod_revision, gone.value), (5, val("new")));
}

#[tokio::test]
async fn list_pages_with_start_after_and_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    for i in 0..25 {
        store
            .create(&format!("/p/{i:02}"), val("x"))
            .await
            .expect("create");
    }
    store.create("/o/1", val("x")).await.expect("create");
    store.create("/q/1", val("x")).await.expect("create");
    store.create("/p", val("x")).await.expect("create");

    let all = store.list("/p/", None, 0, None).expect("list");
    assert_eq!(all.items.len(), 25);
    assert!(!all.more);
    assert_eq!(all.revision, 28);
    let expected: Vec<String> = (0..25).map(|i| format!("/p/{i:02}")).collect();
    assert_eq!(keys(&all.items), expected);

    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store
            .list("/p/", after.as_deref(), 10, Some(all.revision))
            .expect("page");
        pages += 1;
        assert_eq!(page.revision, all.revision);
        after = page.items.last().map(|kv| kv.key.clone());
        let more = page.more;
        paged.extend(page.items);
        if !more {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(paged, all.items);

    let exact = store.list("/p/", Some("/p/14"), 10, None).expect("list");
    assert_eq!(exact.items.len(), 10);
    assert!(!exact.more, "exactly the last 10 keys: no more");
    let before_prefix = store.list("/p/", Some("/a"), 2, None).expect("list");
    assert_eq!(keys(&before_prefix.items), ["/p/00", "/p/01"]);
    let past_prefix = store.list("/p/", Some("/p0"), 0, None).expect("list");
    assert!(past_prefix.items.is_empty());
}

#[tokio::test]
async fn list_at_a_past_revision_sees_the_past() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    for k in ["a", "b", "c"] {
        store
            .create(&format!("/r/{k}"), val(&format!("{k}1")))
            .await
            .expect("create");
    }
    let then = store.list("/r/", None, 0, None).expect("list");
    assert_eq!(then.revision, 3);

    store.update("/r/a", val("a2"), 1).await.expect("update");
    store.delete("/r/b", None).await.expect("delete");
    store.create("/r/d", val("d1")).await.expect("create");
    store.update("/r/a", val("a3"), 4).await.expect("update");

    let past = store.list("/r/", None, 0, Some(3)).expect("list past");
    assert_eq!(past, then, "state as of revision 3");
    let now = store.list("/r/", None, 0, None).expect("list now");
    assert_eq!(keys(&now.items), ["/r/a", "/r/c", "/r/d"]);
    assert_eq!(now.items[0].value, val("a3"));

    let mid = store.list("/r/", None, 0, Some(5)).expect("list mid");
    assert_eq!(keys(&mid.items), ["/r/a", "/r/c"]);
    assert_eq!(mid.items[0].value, val("a2"));

    let page = store.list("/r/", Some("/r/a"), 1, Some(3)).expect("page");
    assert_eq!(keys(&page.items), ["/r/b"]);
    assert!(page.more);

    assert!(matches!(
        store.list("/r/", None, 0, Some(99)),
        Err(StoreError::FutureRevision {
            requested: 99,
            current: 7
        })
    ));
}

/// A group the writer has applied to sled but not yet flushed must not be visible.
#[tokio::test]
async fn writes_applied_but_not_yet_durable_are_invisible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    for k in ["a", "b", "c"] {
        store
            .create(&format!("/x/{k}"), val(k))
            .await
            .expect("create");
    }
    let before = store.list("/x/", None, 0, None).expect("list");

    // Stage what the writer would: delete b, update a, create d, at revisions 4..=6.
    let shared = store.shared();
    let mut batch = sled::Batch::default();
    let kv = |key: &str, value: &str, create: i64, rev: i64| KeyValue {
        key: key.into(),
        value: val(value),
        create_revision: create,
        mod_revision: rev,
    };
    stage(&mut batch, EventKind::Delete, &kv("/x/b", "b", 2, 4));
    stage(&mut batch, EventKind::Update, &kv("/x/a", "a2", 1, 5));
    stage(&mut batch, EventKind::Create, &kv("/x/d", "d", 6, 6));
    shared.applied.store(6, std::sync::atomic::Ordering::SeqCst);
    shared.tree.apply_batch(batch).expect("apply");

    assert_eq!(store.current_revision(), 3);
    assert_eq!(
        store.get("/x/b").expect("get").map(|kv| kv.mod_revision),
        Some(2)
    );
    assert_eq!(
        store.get("/x/a").expect("get").map(|kv| kv.value),
        Some(val("a"))
    );
    assert_eq!(store.get("/x/d").expect("get"), None);
    assert_eq!(store.list("/x/", None, 0, None).expect("list"), before);
    let first = store.list("/x/", None, 1, None).expect("list");
    assert_eq!((keys(&first.items), first.more), (vec!["/x/a"], true));
    let second = store.list("/x/", Some("/x/a"), 1, None).expect("list");
    assert_eq!((keys(&second.items), second.more), (vec!["/x/b"], true));
    let third = store.list("/x/", Some("/x/b"), 1, None).expect("list");
    assert_eq!((keys(&third.items), third.more), (vec!["/x/c"], false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_stay_consistent_under_concurrent_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for i in 0..600usize {
                let key = format!("/c/{:02}", (i * 7) % 16);
                match store.get(&key).expect("get") {
                    None => store.create(&key, val("0")).await.map(drop),
                    Some(kv) if i % 3 == 0 => {
                        store.delete(&key, Some(kv.mod_revision)).await.map(drop)
                    }
                    Some(kv) => store
                        .update(&key, val(&i.to_string()), kv.mod_revision)
                        .await
                        .map(drop),
                }
                .expect("single writer never conflicts");
            }
        })
    };
    let mut checks = 0;
    while !writer.is_finished() || checks < 5 {
        let listed = store.list("/c/", None, 0, None).expect("list");
        let (history, _) = store
            .shared()
            .list_history("/c/", None, 0, listed.revision)
            .expect("history");
        assert_eq!(listed.items, history, "at revision {}", listed.revision);
        // Paging at the first page's revision reassembles the same snapshot.
        let mut paged = Vec::new();
        let mut at = None;
        let mut after: Option<String> = None;
        loop {
            let page = store.list("/c/", after.as_deref(), 3, at).expect("page");
            at = Some(page.revision);
            after = page.items.last().map(|kv| kv.key.clone());
            paged.extend(page.items);
            if !page.more {
                break;
            }
        }
        let (snapshot, _) = store
            .shared()
            .list_history("/c/", None, 0, at.expect("one page"))
            .expect("history");
        assert_eq!(paged, snapshot);
        checks += 1;
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer");
    assert_eq!(store.current_revision(), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_replays_history_then_follows_live_writes_without_gaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());

    // Some history of every kind, under the watched prefix and outside it.
    async fn churn(store: &SledStore, round: usize, pass: usize) -> Vec<i64> {
        let mut watched_revisions = Vec::new();
        for i in 0..40usize {
            // Each round owns its keys, so concurrent rounds never conflict.
            let key = format!("/w/{round}/{}", (i * 3) % 10);
            let rev = match store.get(&key).expect("get") {
                None => store.create(&key, val(&format!("{round}-{i}"))).await,
                Some(_) if i % 4 == 0 => store.delete(&key, None).await,
                Some(kv) => {
                    store
                        .update(&key, val(&format!("{round}-{i}")), kv.mod_revision)
                        .await
                }
            }
            .expect("write")
            .mod_revision;
            watched_revisions.push(rev);
            store
                .create(&format!("/other/{round}-{pass}-{i}"), val("noise"))
                .await
                .expect("noise");
        }
        watched_revisions
    }
    let mut expected = churn(&store, 0, 0).await;
    let from = expected[10];
    expected.retain(|rev| *rev > from);

    // Writers race with the watch being established and replayed.
    let writers: Vec<_> = (1..=3)
        .map(|round| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut revs = Vec::new();
                for pass in 0..2 {
                    revs.extend(churn(&store, round, pass).await);
                }
                revs
            })
        })
        .collect();
    let mut stream = store.watch("/w/", from).expect("watch");
    let mut live_writes = Vec::new();
    for writer in writers {
        live_writes.extend(writer.await.expect("writer"));
    }
    expected.extend(live_writes);
    expected.sort_unstable();
    let last = *expected.last().expect("events");

    // Replay the events onto the state at `from`: every event must be consistent with the
    // model (kind, prev), and the result must equal the state at the end.
    let mut model: BTreeMap<String, KeyValue> = store
        .list("/w/", None, 0, Some(from))
        .expect("list at from")
        .items
        .into_iter()
        .map(|kv| (kv.key.clone(), kv))
        .collect();
    let mut seen = Vec::new();
    while seen.last() != Some(&last) {
        let event = next_event(&mut stream)
            .await
            .expect("stream open")
            .expect("event");
        assert!(event.kv.key.starts_with("/w/"));
        let current = model.get(&event.kv.key).cloned();
        match event.kind {
            EventKind::Create => {
                assert_eq!(current, None);
                assert_eq!(event.prev, None);
                model.insert(event.kv.key.clone(), event.kv.clone());
            }
            EventKind::Update => {
                assert_eq!(event.prev, current);
                model.insert(event.kv.key.clone(), event.kv.clone());
            }
            EventKind::Delete => {
                assert_eq!(event.prev, current);
                let prev = current.expect("deleting an existing key");
                assert_eq!(event.kv.value, prev.value);
                model.remove(&event.kv.key);
            }
        }
        seen.push(event.revision());
    }
    assert_eq!(seen, expected, "every event once, in order, no gap");
    let end = store.list("/w/", None, 0, Some(last)).expect("list at end");
    assert_eq!(model.into_values().collect::<Vec<_>>(), end.items);
}

#[tokio::test]
async fn watch_from_the_future_and_prefix_filtering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.create("/f/a", val("1")).await.expect("create");
    let mut stream = store.watch("/f/", 3).expect("watch");
    store.create("/f/b", val("2")).await.expect("rev 2");
    store.create("/g/x", val("3")).await.expect("rev 3");
    store.create("/f/c", val("4")).await.expect("rev 4");
    let event = next_event(&mut stream).await.expect("open").expect("event");
    assert_eq!(
        (event.kind, event.kv.key.as_str(), event.revision()),
        (EventKind::Create, "/f/c", 4)
    );
}

#[tokio::test]
async fn compaction_expires_old_revisions_and_keeps_each_keys_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.create("/k/a", val("a1")).await.expect("create"); // 1
    store.create("/k/b", val("b1")).await.expect("create"); // 2
    store.create("/k/c", val("c1")).await.expect("create"); // 3
    store.update("/k/a", val("a2"), 1).await.expect("update"); // 4
    store.update("/k/a", val("a3"), 4).await.expect("update"); // 5
    store.delete("/k/b", None).await.expect("delete"); // 6
    store.create("/k/d", val("d1")).await.expect("create"); // 7
    let mid = 7;
    let snapshot = store.list("/k/", None, 0, Some(mid)).expect("snapshot");
    store.update("/k/a", val("a4"), 5).await.expect("update"); // 8
    store.delete("/k/c", None).await.expect("delete"); // 9
    let now = store.list("/k/", None, 0, None).expect("now");

    store.compact(mid).await.expect("compact");
    assert_eq!(store.compacted_revision(), mid);
    assert!(matches!(
        store.list("/k/", None, 0, Some(mid - 1)),
        Err(StoreError::Expired {
            requested: 6,
            compacted: 7
        })
    ));
    assert_eq!(
        store.list("/k/", None, 0, Some(mid)).expect("at mid"),
        snapshot
    );
    assert_eq!(store.list("/k/", None, 0, None).expect("now"), now);
    assert!(matches!(
        store.watch("/k/", mid - 1).map(drop),
        Err(StoreError::Expired {
            requested: 6,
            compacted: 7
        })
    ));

    // Watching from the compaction point still replays with full `prev`s.
    let mut stream = store.watch("/k/", mid).expect("watch at compaction point");
    let update = next_event(&mut stream).await.expect("open").expect("event");
    assert_eq!(update.kind, EventKind::Update);
    assert_eq!(
        update.prev.map(|kv| (kv.value, kv.mod_revision)),
        Some((val("a3"), 5))
    );
    let delete = next_event(&mut stream).await.expect("open").expect("event");
    assert_eq!(
        (delete.kind, delete.kv.value.clone(), delete.revision()),
        (EventKind::Delete, val("c1"), 9)
    );

    // Garbage is really gone: /k/a keeps one version at or below 7, /k/b none, no log <= 7.
    let tree = &store.shared().tree;
    let versions = |key: &str| {
        tree.range(
            crate::store::encoding::history_key(key, 0)
                ..=crate::store::encoding::history_key(key, i64::MAX),
        )
        .count()
    };
    assert_eq!(versions("/k/a"), 2, "a3 (kept as of 7) and a4");
    assert_eq!(versions("/k/b"), 0, "deleted before the compaction point");
    assert_eq!(versions("/k/c"), 2, "c1 and its tombstone at 9");
    let log: Vec<i64> = tree
        .scan_prefix([crate::store::encoding::LOG])
        .map(|entry| {
            let (raw_key, _) = entry.expect("log entry");
            crate::store::encoding::decode_log_key(&raw_key).expect("log key")
        })
        .collect();
    assert_eq!(
        log,
        [3, 5, 7, 8, 9],
        "c1, a3, d1 (values as of 7), then 8 and 9"
    );

    assert!(matches!(
        store.compact(100).await,
        Err(StoreError::FutureRevision {
            requested: 100,
            current: 9
        })
    ));
    store
        .compact(3)
        .await
        .expect("compacting to an older revision is a no-op");
    assert_eq!(store.compacted_revision(), mid);

    drop(stream);
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.compacted_revision(), mid);
    assert_eq!(store.current_revision(), 9);
    assert!(matches!(
        store.list("/k/", None, 0, Some(5)),
        Err(StoreError::Expired { .. })
    ));
    assert_eq!(
        store.list("/k/", None, 0, Some(mid)).expect("at mid"),
        snapshot
    );
}

#[tokio::test]
async fn revision_never_goes_backwards_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        for i in 0..5 {
            store
                .create(&format!("/m/{i}"), val("x"))
                .await
                .expect("create");
        }
        for i in 0..5 {
            store
                .delete(&format!("/m/{i}"), None)
                .await
                .expect("delete");
        }
        // Compacting everything empties the log: the counter must survive anyway.
        store.compact(10).await.expect("compact");
    }
    let store = open(dir.path());
    assert_eq!(store.current_revision(), 10);
    assert!(store
        .list("/", None, 0, None)
        .expect("list")
        .items
        .is_empty());
    let kv = store.create("/m/0", val("y")).await.expect("create");
    assert_eq!(kv.mod_revision, 11);
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.current_revision(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_flushes_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 400;
    {
        let store = open(dir.path());
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.create(&format!("/g/{i:04}"), val("v")).await })
            })
            .collect();
        let mut revisions = Vec::new();
        for task in tasks {
            revisions.push(task.await.expect("task").expect("create").mod_revision);
        }
        revisions.sort_unstable();
        assert_eq!(revisions, (1..=n).collect::<Vec<i64>>());
        let stats = store.stats();
        assert_eq!(stats.writes, n as u64);
        assert!(
            stats.commits * 4 <= stats.writes,
            "writes must be batched into shared flushes: {stats:?}"
        );
        assert!(stats.largest_group > 1, "{stats:?}");
    }
    let store = open(dir.path());
    assert_eq!(store.current_revision(), n);
    assert_eq!(
        store.list("/g/", None, 0, None).expect("list").items.len(),
        n as usize
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_is_ended_instead_of_blocking_writers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = SledOptions {
        watch_buffer: 8,
        ..SledOptions::default()
    };
    let store = SledStore::open(dir.path(), options).expect("open");
    let mut slow = store.watch("/s/", 0).expect("watch");
    for i in 0..50 {
        tokio::time::timeout(
            Duration::from_secs(10),
            store.create(&format!("/s/{i:02}"), val("x")),
        )
        .await
        .expect("a stalled watcher must not block writers")
        .expect("create");
    }
    let mut delivered = Vec::new();
    let error = loop {
        match next_event(&mut slow)
            .await
            .expect("ends with an error, not silently")
        {
            Ok(event) => delivered.push(event.revision()),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(error, StoreError::WatcherTooSlow { capacity: 8 }),
        "{error:?}"
    );
    assert_eq!(
        delivered,
        (1..=8).collect::<Vec<i64>>(),
        "buffered events come first"
    );
    assert!(next_event(&mut slow).await.is_none());
    assert_eq!(
        crate::store::sled_backend::lock(&store.shared().watchers).len(),
        0
    );

    // Re-watching from the last revision seen resumes exactly where it stopped.
    let mut again = store.watch("/s/", 8).expect("re-watch");
    for rev in 9..=50 {
        let event = next_event(&mut again).await.expect("open").expect("event");
        assert_eq!(event.revision(), rev);
    }
}

#[tokio::test]
async fn watch_streams_end_when_the_store_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut stream = store.watch("/", 0).expect("watch");
    drop(store);
    assert!(matches!(
        next_event(&mut stream).await,
        Some(Err(StoreError::Closed))
    ));
    assert!(next_event(&mut stream).await.is_none());
    // The database was released: it can be opened again.
    drop(open(dir.path()));
}

#[test]
fn compaction_target_keeps_a_window_and_a_minimum() {
    // One interval ago we were at 5000, now at 5400: keep 1000 → 4400.
    assert_eq!(compaction_target(5000, 5400, 0, 1000), Some(4400));
    // Slow writes: the time window dominates.
    assert_eq!(compaction_target(3000, 9000, 0, 1000), Some(3000));
    // Nothing new to compact.
    assert_eq!(compaction_target(3000, 9000, 3000, 1000), None);
    assert_eq!(compaction_target(500, 900, 0, 1000), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_compactor_compacts_behind_a_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let config = CompactorConfig {
        interval: Duration::from_millis(150),
        min_retain: 10,
    };
    for i in 0..50 {
        store
            .create(&format!("/bg/{i}"), val("x"))
            .await
            .expect("create");
    }
    // First tick records revision 50; the next compacts to min(50, 50 - 10).
    let handle = start_compactor(&store, config);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.compacted_revision() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        store.compacted_revision(),
        40,
        "50 revisions minus 10 retained"
    );
    drop(store);
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("compactor stops once the store is gone")
        .expect("compactor task");
}

const CRASH_DIR_ENV: &str = "SKIFF_STORE_CRASH_DIR";

/// Child half of `kill_9_loses_no_acknowledged_write`: writes until killed, printing each
/// acknowledged write.
#[test]
#[ignore = "run as a child process by kill_9_loses_no_acknowledged_write"]
fn crash_writer_child() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let store = open(Path::new(&dir));
        let tasks: Vec<_> = (0..8)
            .map(|w| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for i in 0.. {
                        let key = format!("/crash/{w}/{i}");
                        let kv = store.create(&key, val(&key)).await.expect("create");
                        println!("ACK {} {}", kv.key, kv.mod_revision);
                    }
                })
            })
            .collect();
        futures::future::join_all(tasks).await;
    });
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest);
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            &format!("{module}::crash_writer_child"),
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut acked: Vec<(String, i64)> = Vec::new();
    let parse = |line: &str| {
        let mut parts = line.strip_prefix("ACK ")?.split(' ');
        Some((parts.next()?.to_owned(), parts.next()?.parse::<i64>().ok()?))
    };
    for line in lines.by_ref() {
        if let Some(ack) = parse(&line.expect("read child")) {
            acked.push(ack);
            if acked.len() == 300 {
                break;
            }
        }
    }
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap child");
    // Acks printed before the kill are still in the pipe.
    acked.extend(lines.map_while(Result::ok).filter_map(|line| parse(&line)));
    assert!(
        acked.len() >= 300,
        "child acknowledged only {} writes",
        acked.len()
    );

    let store = open(dir.path());
    let max_acked = acked.iter().map(|(_, rev)| *rev).max().expect("acks");
    assert!(store.current_revision() >= max_acked);
    for (key, rev) in &acked {
        let kv = store.get(key).expect("get");
        assert_eq!(
            kv.map(|kv| kv.mod_revision),
            Some(*rev),
            "acked write of {key} lost"
        );
    }
    let next = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(store.create("/crash/after", val("x")))
        .expect("write after recovery");
    assert!(next.mod_revision > max_acked);
}

#[tokio::test]
async fn unusual_keys_list_in_byte_order_at_every_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sled_store = open(dir.path());
    let store: Arc<dyn Store> = sled_store.clone();
    let mut names = [
        "/n/a",
        "/n/a\0b",
        "/n/a\u{1}",
        "/n/a/",
        "/n/\u{e4}",
        "/n/a\0",
    ];
    for name in names {
        store.create(name, val(name)).await.expect("create");
    }
    names.sort_unstable();
    let before = store.list("/n/", None, 0, None).expect("list");
    assert_eq!(keys(&before.items), names);
    let from_a = store.list("/n/", Some("/n/a"), 0, None).expect("list");
    assert_eq!(keys(&from_a.items), names[1..]);
    let within = store.list("/n/a\0", None, 0, None).expect("list");
    assert_eq!(keys(&within.items), ["/n/a\0", "/n/a\0b"]);

    store.delete("/n/a\0", None).await.expect("delete");
    store.update("/n/a", val("new"), 1).await.expect("update");
    assert_eq!(
        store
            .list("/n/", None, 0, Some(before.revision))
            .expect("past"),
        before
    );
    let (history, _) = sled_store
        .shared()
        .list_history("/n/", None, 0, store.current_revision())
        .expect("history");
    assert_eq!(
        store.list("/n/", None, 0, None).expect("now").items,
        history
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_racing_reads_and_writes_never_corrupts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    for i in 0..8 {
        store
            .create(&format!("/z/{i}"), val("0"))
            .await
            .expect("create");
    }
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for i in 0..400usize {
                let key = format!("/z/{}", i % 8);
                let kv = store.get(&key).expect("get").expect("present");
                store
                    .update(&key, val(&i.to_string()), kv.mod_revision)
                    .await
                    .expect("update");
                if i % 20 == 0 {
                    store
                        .compact(store.current_revision() - 3)
                        .await
                        .expect("compact");
                }
            }
        })
    };
    let mut stream = store.watch("/z/", store.current_revision()).expect("watch");
    let mut last_seen = store.current_revision();
    while !writer.is_finished() {
        let now = store
            .list("/z/", None, 0, None)
            .expect("current list never fails");
        assert_eq!(now.items.len(), 8);
        for i in 0..8 {
            assert!(store.get(&format!("/z/{i}")).expect("get").is_some());
        }
        match store.list("/z/", None, 0, Some(now.revision - 2)) {
            // All 8 keys exist from revision 8 on.
            Ok(past) => assert_eq!(past.items.len(), (past.revision.min(8)) as usize),
            Err(StoreError::Expired { .. }) => {}
            Err(e) => panic!("past list: {e}"),
        }
        while let Some(Some(event)) = futures::FutureExt::now_or_never(stream.next()) {
            let event = event.expect("live watch keeps up");
            assert_eq!(event.revision(), last_seen + 1, "no gap");
            last_seen = event.revision();
        }
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer");
    assert_eq!(store.current_revision(), 408);
    assert!(store.stats().compactions >= 10);
}
