//! One suite for every broker (broker=memory and broker=redis, against a
//! real redis-server): stream positions, history from a position or a
//! time, its limits, publication keys, stored sessions. Redis also across
//! two broker instances (two nodes) and through a Redis crash.

mod common;

use common::RedisServer;
use ferrocable::broadcast::redis::RedisTarget;
use ferrocable::broker::memory::Memory;
use ferrocable::broker::redis::Redis;
use ferrocable::broker::{
    Broker, HistoryError, Limits, Position, PresenceError, PresenceEvent, Publication,
};
use serde_json::json;
use std::time::Duration;

/// Bound on waiting for an expiry that is due within seconds.
const WAIT: Duration = Duration::from_secs(30);

fn limits(history_limit: usize, ttl_s: u64) -> Limits {
    Limits {
        history_limit,
        history_ttl: Duration::from_secs(ttl_s),
        sessions_ttl: Duration::from_secs(ttl_s),
        presence_ttl: Duration::from_secs(ttl_s),
    }
}

fn redis(server: &RedisServer, limits: Limits) -> Redis {
    let target = RedisTarget {
        url: server.url(),
        ..Default::default()
    };
    Redis::new(&target, limits).unwrap()
}

/// What every broker must do; `b` keeps 3 messages per stream for 300 s.
async fn positions_and_history(b: &dyn Broker) {
    let p1 = b.publish("s1", "one", None).await.unwrap();
    let p2 = b.publish("s1", r#"{"n":2}"#, None).await.unwrap();
    let other = b.publish("s2", "x", None).await.unwrap();
    assert_eq!((p1.offset, p2.offset, other.offset), (1, 2, 1));
    assert_eq!(p1.epoch, p2.epoch);
    assert!(!p1.epoch.is_empty());

    // After a position: the rest, in order; nothing after the last.
    let after = b.history_from("s1", &p1.epoch, 0).await.unwrap();
    let data: Vec<_> = after.iter().map(|e| (e.offset, e.data.as_str())).collect();
    assert_eq!(data, [(1, "one"), (2, r#"{"n":2}"#)]);
    assert!(after.iter().all(|e| e.epoch == p1.epoch));
    assert_eq!(b.history_from("s1", &p1.epoch, 1).await.unwrap().len(), 1);
    assert!(b.history_from("s1", &p1.epoch, 2).await.unwrap().is_empty());

    // Refusals.
    assert!(matches!(
        b.history_from("s1", "not-the-epoch", 1).await,
        Err(HistoryError::UnknownEpoch { .. })
    ));
    assert!(matches!(
        b.history_from("s1", &p1.epoch, 9).await,
        Err(HistoryError::UnknownOffset { last: 2 })
    ));
    assert_eq!(
        b.history_from("never", "e", 1).await,
        Err(HistoryError::UnknownStream)
    );

    // history_limit: the oldest go; asking from before them is refused.
    for n in 3..=5 {
        b.publish("s1", &n.to_string(), None).await.unwrap();
    }
    assert_eq!(
        b.history_from("s1", &p1.epoch, 1).await,
        Err(HistoryError::Evicted { lowest: 3 })
    );
    let kept: Vec<u64> = b
        .history_from("s1", &p1.epoch, 2)
        .await
        .unwrap()
        .iter()
        .map(|e| e.offset)
        .collect();
    assert_eq!(kept, [3, 4, 5]);

    // Since a time (Unix seconds): everything kept published then or later.
    let since: Vec<u64> = b
        .history_since("s1", 0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.offset)
        .collect();
    assert_eq!(since, [3, 4, 5]);
    let future = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    assert!(b.history_since("s1", future).await.unwrap().is_empty());
    assert!(b.history_since("never", 0).await.unwrap().is_empty());

    // A keyed publication is positioned once, whoever registers it again.
    let k1 = b.publish("s3", "same", Some("k:1")).await.unwrap();
    let again = b.publish("s3", "same", Some("k:1")).await.unwrap();
    let k2 = b.publish("s3", "same", Some("k:2")).await.unwrap();
    assert_eq!(k1, again);
    assert_eq!(k2.offset, 2);
    assert_eq!(b.history_since("s3", 0).await.unwrap().len(), 2);

    // Several at once (one round trip for Redis): in order, keys honoured.
    let publication = |stream: &str, data: &str, key: Option<&str>| Publication {
        stream: stream.into(),
        data: data.into(),
        key: key.map(str::to_owned),
    };
    let many = b
        .publish_many(&[
            publication("s4", "a", None),
            publication("s4", "b", Some("k:3")),
            publication("s3", "same", Some("k:1")),
            publication("s4", "c", Some("k:3")),
        ])
        .await;
    let offsets: Vec<u64> = many.into_iter().map(|p| p.unwrap().offset).collect();
    assert_eq!(offsets, [1, 2, 1, 2]);
    let data: Vec<String> = b
        .history_since("s4", 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(data, ["a", "b"]);

    // Sessions.
    b.store_session("sid-1", r#"{"ids":"alice"}"#)
        .await
        .unwrap();
    assert_eq!(
        b.session("sid-1").await.unwrap().as_deref(),
        Some(r#"{"ids":"alice"}"#)
    );
    assert_eq!(b.session("sid-unknown").await.unwrap(), None);

    // A stored session is taken once, and only as it was read: one
    // rewritten since (its session stored it again) stays.
    b.store_session("sid-2", "v1").await.unwrap();
    assert!(!b.take_session("sid-2", "v0").await.unwrap());
    assert!(b.take_session("sid-2", "v1").await.unwrap());
    assert!(!b.take_session("sid-2", "v1").await.unwrap());
    assert_eq!(b.session("sid-2").await.unwrap(), None);
    assert!(!b.take_session("sid-unknown", "v1").await.unwrap());
}

/// With 1-second limits: messages and sessions expire.
async fn expiry(b: &dyn Broker) {
    let p = b.publish("e", "old", None).await.unwrap();
    b.store_session("sid-e", "state").await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let history = b.history_from("e", &p.epoch, 0).await;
        let session = b.session("sid-e").await.unwrap();
        // Expired history: evicted, or the whole stream gone (Redis).
        let gone = matches!(
            history,
            Err(HistoryError::Evicted { .. } | HistoryError::UnknownStream)
        );
        if gone && session.is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing expired: {history:?} {session:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(b.history_since("e", 0).await.unwrap().is_empty());
}

fn join(id: &str, info: serde_json::Value) -> Option<PresenceEvent> {
    Some(PresenceEvent::Join {
        id: id.into(),
        info: Some(info),
    })
}

fn leave(id: &str) -> Option<PresenceEvent> {
    Some(PresenceEvent::Leave { id: id.into() })
}

/// Presence sets: one join and one leave per id whatever its sessions,
/// one id per session and stream, counts and records, streams apart.
async fn presence(b: &dyn Broker) {
    let bart = json!({"name": "Bart"});
    assert_eq!(
        b.presence_add("room", "s1", "2024", Some(bart.clone()))
            .await
            .unwrap(),
        join("2024", bart.clone())
    );
    // A second tab of the same user: no new join; the same session again: none.
    assert_eq!(
        b.presence_add("room", "s2", "2024", Some(bart.clone()))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        b.presence_add("room", "s1", "2024", Some(bart.clone()))
            .await
            .unwrap(),
        None
    );
    // One id per session and stream.
    assert_eq!(
        b.presence_add("room", "s1", "other", None).await,
        Err(PresenceError::IdMismatch)
    );
    assert_eq!(
        b.presence_add("room", "s3", "2025", None).await.unwrap(),
        Some(PresenceEvent::Join {
            id: "2025".into(),
            info: None
        })
    );
    // Another stream is another set (the same session may be in both).
    assert_eq!(
        b.presence_add("hall", "s1", "x", Some(json!(1)))
            .await
            .unwrap(),
        join("x", json!(1))
    );

    let info = b.presence_info("room", true).await.unwrap();
    assert_eq!(info.total, 2);
    assert_eq!(
        info.records,
        [
            ("2024".to_owned(), Some(bart.clone())),
            ("2025".to_owned(), None)
        ]
    );
    assert_eq!(
        info.to_json(true),
        r#"{"records":[{"id":"2024","info":{"name":"Bart"}},{"id":"2025"}],"total":2,"type":"info"}"#
    );
    let counted = b.presence_info("room", false).await.unwrap();
    assert_eq!((counted.total, counted.records.len()), (2, 0));
    assert_eq!(b.presence_info("nobody", true).await.unwrap().total, 0);

    // The first tab leaves: the id stays; the last one: its leave.
    assert_eq!(b.presence_remove("room", "s1").await.unwrap(), None);
    assert_eq!(b.presence_remove("room", "s1").await.unwrap(), None);
    assert_eq!(
        b.presence_remove("room", "s2").await.unwrap(),
        leave("2024")
    );
    assert_eq!(b.presence_remove("room", "s2").await.unwrap(), None);
    assert_eq!(b.presence_info("room", true).await.unwrap().total, 1);
    // s1 is still in the hall.
    assert_eq!(b.presence_info("hall", true).await.unwrap().total, 1);
    // Left, a session may join under another id.
    assert_eq!(
        b.presence_add("room", "s1", "again", None)
            .await
            .unwrap()
            .map(|e| e.to_json()),
        Some(r#"{"id":"again","type":"join"}"#.to_owned())
    );
    assert_eq!(
        leave("again").unwrap().to_json(),
        r#"{"id":"again","type":"leave"}"#
    );
}

/// With `presence_ttl` 1 s: a session that is touched stays; one that is
/// not expires, with one leave per id (only when its last session goes).
async fn presence_expiry(b: &dyn Broker) {
    b.presence_add("r", "alive", "a", None).await.unwrap();
    b.presence_add("r", "dead1", "d", None).await.unwrap();
    b.presence_add("r", "dead2", "d", None).await.unwrap();
    b.presence_add("q", "dead2", "q", None).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut leaves = Vec::new();
    loop {
        b.touch_presence("alive").await.unwrap();
        leaves.extend(b.expire_presence().await.unwrap());
        if leaves.len() >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing expired: {leaves:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    leaves.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        leaves,
        [
            ("q".to_owned(), leave("q").unwrap()),
            ("r".to_owned(), leave("d").unwrap())
        ]
    );
    let info = b.presence_info("r", true).await.unwrap();
    assert_eq!(info.total, 1);
    assert_eq!(info.records[0].0, "a");
    assert!(b.expire_presence().await.unwrap().is_empty());
}

#[tokio::test]
async fn memory_broker() {
    positions_and_history(&Memory::new(limits(3, 300))).await;
    expiry(&Memory::new(limits(3, 1))).await;
    presence(&Memory::new(limits(3, 300))).await;
    presence_expiry(&Memory::new(limits(3, 1))).await;
    assert!(!Memory::new(limits(3, 1)).sessions_outlive_process());
}

#[tokio::test]
async fn redis_broker() {
    let server = RedisServer::start();
    positions_and_history(&redis(&server, limits(3, 300))).await;
    expiry(&redis(&server, limits(3, 1))).await;
    presence(&redis(&server, limits(3, 300))).await;
    presence_expiry(&redis(&server, limits(3, 1))).await;
    assert!(redis(&server, limits(3, 1)).sessions_outlive_process());
}

/// Two nodes on one Redis: one presence set; the node that dies stops
/// touching its sessions, and the live node's sweep expires them.
#[tokio::test]
async fn redis_presence_across_nodes_and_a_dead_node() {
    let server = RedisServer::start();
    let (a, dead) = (
        redis(&server, limits(100, 1)),
        redis(&server, limits(100, 1)),
    );
    assert!(
        a.presence_add("room", "a1", "u1", None)
            .await
            .unwrap()
            .is_some()
    );
    // The same user on the other node: no second join.
    assert_eq!(
        dead.presence_add("room", "d1", "u1", None).await.unwrap(),
        None
    );
    assert!(
        dead.presence_add("room", "d2", "u2", None)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(dead.presence_info("room", false).await.unwrap().total, 2);
    drop(dead);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut leaves = Vec::new();
    while leaves.is_empty() {
        a.touch_presence("a1").await.unwrap();
        leaves = a.expire_presence().await.unwrap();
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead node's presence never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // u1 is still here through a1: only u2 leaves.
    assert_eq!(leaves, [("room".to_owned(), leave("u2").unwrap())]);
    let info = a.presence_info("room", true).await.unwrap();
    assert_eq!(info.records, [("u1".to_owned(), None)]);
}

#[tokio::test]
async fn redis_broker_nodes_share_positions_history_and_sessions() {
    let server = RedisServer::start();
    let (a, b) = (
        redis(&server, limits(100, 300)),
        redis(&server, limits(100, 300)),
    );
    // The same fan-out publication registered by both nodes: one position.
    let from_a = a.publish("room", "hi", Some("p:abc:1")).await.unwrap();
    let from_b = b.publish("room", "hi", Some("p:abc:1")).await.unwrap();
    assert_eq!(from_a, from_b);
    let next = b.publish("room", "second", None).await.unwrap();
    assert_eq!(next.offset, 2);
    let read_on_a = a.history_from("room", &from_b.epoch, 0).await.unwrap();
    assert_eq!(
        read_on_a
            .iter()
            .map(|e| e.data.as_str())
            .collect::<Vec<_>>(),
        ["hi", "second"]
    );
    a.store_session("s", "state").await.unwrap();
    assert_eq!(b.session("s").await.unwrap().as_deref(), Some("state"));

    // Concurrent publishers never share an offset.
    let mut tasks = Vec::new();
    for broker in [a, b] {
        tasks.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            for n in 0..50 {
                offsets.push(
                    broker
                        .publish("busy", &n.to_string(), None)
                        .await
                        .unwrap()
                        .offset,
                );
            }
            offsets
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=100).collect::<Vec<u64>>());
}

#[tokio::test]
async fn redis_broker_through_a_crash() {
    let mut server = RedisServer::start();
    let b = redis(&server, limits(100, 300));
    let before: Position = b.publish("room", "before", None).await.unwrap();

    server.kill();
    let started = std::time::Instant::now();
    assert!(b.publish("room", "lost", None).await.is_err());
    assert!(matches!(
        b.history_from("room", &before.epoch, 0).await,
        Err(HistoryError::Unavailable(_))
    ));
    assert!(b.session("s").await.is_err());
    assert!(
        started.elapsed() < WAIT,
        "calls to a dead Redis must not hang"
    );

    // Back (empty: no persistence): a new epoch; the old one is unknown.
    server.restart();
    let deadline = tokio::time::Instant::now() + WAIT;
    let after = loop {
        match b.publish("room", "after", None).await {
            Ok(p) => break p,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "Redis never came back: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(after.offset, 1);
    assert_ne!(after.epoch, before.epoch);
    assert!(matches!(
        b.history_from("room", &before.epoch, 1).await,
        Err(HistoryError::UnknownEpoch { .. })
    ));
}

/// What one stored session costs in Redis: a session of one user with two
/// subscriptions (one stream each, a little istate), as the session stores
/// it. Printed with `-- --nocapture`; bounded so a regression shows.
#[tokio::test]
async fn a_stored_session_costs_little_in_redis() {
    const SESSIONS: usize = 10_000;
    let server = RedisServer::start();
    let b = redis(&server, limits(100, 300));
    let client = ::redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let used = |info: String| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let before = used(
        ::redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .unwrap(),
    );
    let state = serde_json::json!({
        "identifiers": r#"{"current_user":"gid://app/User/12345"}"#,
        "cstate": {},
        "subscriptions": {
            r#"{"channel":"ChatChannel","room":"42"}"#: [["chat_42"], {"room": "42"}],
            r#"{"channel":"NotificationsChannel"}"#: [["notifications:gid://app/User/12345"], {}],
        }
    })
    .to_string();
    for n in 0..SESSIONS {
        b.store_session(&format!("{n:020}"), &state).await.unwrap();
    }
    let after = used(
        ::redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .unwrap(),
    );
    let per_session = (after - before) / SESSIONS as u64;
    println!(
        "stored session: {} bytes of JSON, {per_session} bytes of Redis memory each ({SESSIONS} sessions)",
        state.len()
    );
    assert!(per_session < 1024, "{per_session} bytes per stored session");
}
