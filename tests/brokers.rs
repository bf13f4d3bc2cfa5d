//! The broker transports against real servers: `redisx` (Redis Streams, a
//! consumer group per node) over a real redis-server, `nats` over a real
//! nats-server. Two nodes each, every broadcast delivered once on each node,
//! also across a restart of the broker; clients stay served meanwhile.

mod common;

use common::*;
use ferrocable::config::BroadcastAdapter;
use serde_json::json;

const STREAM: &str = "__anycable__";

fn broadcast(n: i64) -> String {
    json!({"stream": "chat_1", "data": n.to_string()}).to_string()
}

/// The next message's `message` (`Client::recv` alone would wait through
/// pings forever).
async fn message(client: &mut Client) -> serde_json::Value {
    tokio::time::timeout(WAIT * 2, client.recv())
        .await
        .expect("no broadcast arrived")["message"]
        .clone()
}

async fn health(server: &TestServer) -> u16 {
    http(server.addr, "GET", "/health", &[], "").await.0
}

/// Alice on node `one`, Bob on node `two`, both in chat room 1.
async fn alice_and_bob_in_room_1(one: &TestServer, two: &TestServer) -> (Client, Client) {
    let (mut a, _) = connect_user(&one.url(), "alice").await;
    let (mut b, _) = connect_user(&two.url(), "bob").await;
    a.join("1").await;
    b.join("1").await;
    (a, b)
}

async fn redisx_node(app: &AppServer, redis: &RedisServer) -> TestServer {
    TestServer::start(config(app.addr, |c| {
        c.broadcast_adapter = vec![BroadcastAdapter::Redisx];
        c.redis_url = redis.url();
    }))
    .await
}

#[tokio::test]
async fn redisx_every_node_gets_every_entry_once() {
    let redis = RedisServer::start();
    let app = AppServer::start().await;
    let one = redisx_node(&app, &redis).await;
    let two = redisx_node(&app, &redis).await;
    redis.wait_stream_groups(STREAM, 2).await;

    let (mut a, mut b) = alice_and_bob_in_room_1(&one, &two).await;

    for n in 1..=3 {
        redis.xadd(STREAM, "payload", &broadcast(n)).await;
    }
    // In order, and nothing twice: each next message is the next entry.
    for client in [&mut a, &mut b] {
        for n in 1..=3 {
            assert_eq!(message(client).await, n);
        }
    }

    // An entry without a payload field is counted, and skipped.
    redis.xadd(STREAM, "data", &broadcast(4)).await;
    redis.xadd(STREAM, "payload", &broadcast(5)).await;
    for (client, node) in [(&mut a, &one), (&mut b, &two)] {
        assert_eq!(message(client).await, 5);
        assert_eq!(node.metric("ferrocable_broadcast_errors_total"), 1.0);
    }

    // A node that stops removes its group; the other keeps reading.
    drop(b);
    assert!(two.shutdown().await);
    redis.wait_stream_groups(STREAM, 1).await;
    redis.xadd(STREAM, "payload", &broadcast(6)).await;
    assert_eq!(message(&mut a).await, 6);
}

#[tokio::test]
async fn redisx_redis_restart_loses_nothing_and_repeats_nothing() {
    let mut redis = RedisServer::start();
    let app = AppServer::start().await;
    let one = redisx_node(&app, &redis).await;
    let two = redisx_node(&app, &redis).await;
    redis.wait_stream_groups(STREAM, 2).await;
    let (mut a, mut b) = alice_and_bob_in_room_1(&one, &two).await;
    redis.xadd(STREAM, "payload", &broadcast(1)).await;
    assert_eq!(message(&mut a).await, 1);
    assert_eq!(message(&mut b).await, 1);

    // Redis goes away: the nodes keep serving (health, new clients).
    redis.kill();
    assert_eq!(health(&one).await, 200);
    assert_eq!(health(&two).await, 200);
    let (mut c, _) = connect_user(&one.url(), "carol").await;
    c.join("1").await;

    // It comes back empty (no persistence) and an entry is added at once,
    // most likely before the nodes are back: they make their groups again
    // where they were, so they still read it, once.
    redis.restart();
    redis.xadd(STREAM, "payload", &broadcast(2)).await;
    for client in [&mut a, &mut b, &mut c] {
        assert_eq!(message(client).await, 2);
    }
    redis.wait_stream_groups(STREAM, 2).await;
    redis.xadd(STREAM, "payload", &broadcast(3)).await;
    for client in [&mut a, &mut b, &mut c] {
        assert_eq!(message(client).await, 3);
    }
    assert_eq!(health(&one).await, 200);
}

async fn nats_node(app: &AppServer, nats: &NatsServer) -> TestServer {
    TestServer::start(config(app.addr, |c| {
        c.broadcast_adapter = vec![BroadcastAdapter::Nats];
        c.nats_servers = nats.url();
    }))
    .await
}

#[tokio::test]
async fn nats_every_node_gets_every_message_once_across_a_restart() {
    let mut nats = NatsServer::start();
    let app = AppServer::start().await;
    let one = nats_node(&app, &nats).await;
    let two = nats_node(&app, &nats).await;
    nats.wait_subscribers(STREAM, 2).await;
    let (mut a, mut b) = alice_and_bob_in_room_1(&one, &two).await;

    nats.publish(STREAM, &broadcast(1)).await;
    nats.publish(
        STREAM,
        &json!([{"stream": "chat_1", "data": "2"}]).to_string(),
    )
    .await;
    for client in [&mut a, &mut b] {
        assert_eq!(message(client).await, 1);
        assert_eq!(message(client).await, 2);
    }
    // Another subject is not ours.
    nats.publish("other", &broadcast(99)).await;

    // nats-server goes away: the nodes keep serving; back, they subscribe
    // again by themselves.
    nats.kill();
    assert_eq!(health(&one).await, 200);
    assert_eq!(health(&two).await, 200);
    let (mut c, _) = connect_user(&two.url(), "carol").await;
    c.join("1").await;
    nats.restart();
    nats.wait_subscribers(STREAM, 2).await;
    nats.publish(STREAM, &broadcast(3)).await;
    for client in [&mut a, &mut b, &mut c] {
        assert_eq!(message(client).await, 3);
    }
    assert_eq!(health(&one).await, 200);
}

#[tokio::test]
async fn redisx_trims_entries_older_than_the_retention() {
    let redis = RedisServer::start();
    // 300 entries from long ago (explicit ids: 1970), before any node reads.
    for seq in 1..=300 {
        redis
            .xadd_with_id(STREAM, &format!("1-{seq}"), &broadcast(0))
            .await;
    }
    assert_eq!(redis.xlen(STREAM).await, 300);
    let app = AppServer::start().await;
    let node = redisx_node(&app, &redis).await;
    redis.wait_stream_groups(STREAM, 1).await;
    let (mut a, _) = connect_user(&node.url(), "alice").await;
    a.join("1").await;
    // A node starts at the stream's end: the old entries are not published.
    redis.xadd(STREAM, "payload", &broadcast(1)).await;
    assert_eq!(message(&mut a).await, 1);
    // Reading a current entry trims the old ones (whole blocks: Redis trims
    // approximately), never the current one.
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    while redis.xlen(STREAM).await > 100 {
        assert!(tokio::time::Instant::now() < deadline, "never trimmed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let newest: Vec<(String, Vec<(String, String)>)> = redis.xrevrange_one(STREAM).await;
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].1, vec![("payload".to_owned(), broadcast(1))]);
}
