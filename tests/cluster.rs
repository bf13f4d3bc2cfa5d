//! A cluster of two `ferrocable` binaries behind the HTTP broadcast adapter
//! (issue #14): a broadcast or a remote disconnect POSTed to one node's
//! `/_broadcast` reaches the clients of both, once each, passed on over the
//! bus (`pubsub`: a real redis-server or nats-server); with a broker, at
//! the one position the receiving node gave it. What is passed on is
//! signed: a forged relay on the bus reaches nobody.

mod common;

use common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const BUS: &str = "__anycable_internal__";
const KEY: &str = "cluster-key";
const EXT: &str = "actioncable-v1-ext-json";

/// Two nodes on `args`, their bus ready (`bus_ready`), with the HTTP
/// broadcast adapter and key [`KEY`].
async fn two_nodes(app: &AppServer, args: &[&str]) -> (Binary, Binary) {
    let mut args = args.to_vec();
    let key = format!("--broadcast_key={KEY}");
    args.push(&key);
    args.push("--metrics_http=/metrics");
    let a = Binary::start(app.addr, &args).await;
    let b = Binary::start(app.addr, &args).await;
    (a, b)
}

/// POSTs `payload` to a node's `/_broadcast`, with the key.
async fn broadcast(to: SocketAddr, payload: &Value) {
    let auth = format!("Bearer {KEY}");
    let (status, body) = http(
        to,
        "POST",
        "/_broadcast",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &payload.to_string(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

fn chat(n: u64) -> Value {
    json!({"stream": "chat_lobby", "data": json!({"n": n}).to_string()})
}

/// The next message `client` gets: broadcast `n` on the lobby.
async fn expect_n(client: &mut Client, n: u64, who: &str) -> Value {
    let m = client.recv().await;
    assert_eq!(m["identifier"], chat_identifier("lobby"), "{who}: {m}");
    assert_eq!(m["message"], json!({"n": n}), "{who}: {m}");
    m
}

/// HTTP broadcasts to either node reach a subscriber on each, exactly once
/// (the next broadcast is the fence: a duplicate would arrive before it),
/// and a remote disconnect POSTed to one node closes the user's session on
/// the other. A relay on the bus that the broadcast key did not sign
/// reaches nobody.
async fn http_broadcasts_reach_every_node_once(
    args: &[&str],
    bus_ready: impl AsyncFnOnce(),
    forge: impl AsyncFnOnce(String),
) {
    let app = AppServer::start().await;
    let (a, b) = two_nodes(&app, args).await;
    bus_ready().await;
    let (mut alice, _) = connect_user(&a.url(), "alice").await;
    let (mut bob, _) = connect_user(&b.url(), "bob").await;
    alice.join("lobby").await;
    bob.join("lobby").await;

    broadcast(a.broadcast_addr, &chat(1)).await;
    expect_n(&mut alice, 1, "alice, on the receiving node").await;
    expect_n(&mut bob, 1, "bob, on the other node").await;
    // The other way, and the fence for the first: a copy of 1 would come
    // before 2.
    broadcast(b.broadcast_addr, &chat(2)).await;
    expect_n(&mut alice, 2, "alice").await;
    expect_n(&mut bob, 2, "bob").await;
    // A batch, to node A.
    broadcast(a.broadcast_addr, &json!([chat(3), chat(4)])).await;
    for n in [3, 4] {
        expect_n(&mut alice, n, "alice").await;
        expect_n(&mut bob, n, "bob").await;
    }

    // A relay signed with another key, straight on the bus: nobody gets it
    // (the next real broadcast comes first).
    let forged = json!({
        "node": "forger",
        "relayed": chat(666).to_string(),
        "sig": "00".repeat(32),
    });
    forge(forged.to_string()).await;
    broadcast(a.broadcast_addr, &chat(5)).await;
    expect_n(&mut alice, 5, "alice, after a forged relay").await;
    expect_n(&mut bob, 5, "bob, after a forged relay").await;

    // A remote disconnect POSTed to A closes bob's session on B.
    let kick = json!({"command": "disconnect",
        "payload": {"identifier": json!({"user": "bob"}).to_string(), "reconnect": false}});
    broadcast(a.broadcast_addr, &kick).await;
    let (messages, _) = bob.recv_until_close().await;
    assert!(
        messages
            .iter()
            .any(|m| m["type"] == "disconnect" && m["reason"] == "remote"),
        "bob was not disconnected remotely: {messages:?}"
    );
    broadcast(b.broadcast_addr, &chat(6)).await;
    expect_n(&mut alice, 6, "alice, still connected").await;
    // Each node counts the cluster's six broadcasts, whichever node they
    // entered (the relay is counted before it is delivered); the forged
    // one is not among them.
    for (node, name) in [(&a, "A"), (&b, "B")] {
        let counted = node.metric("ferrocable_broadcast_msg_total").await;
        assert_eq!(counted, 6.0, "broadcast_msg_total on node {name}");
    }
    let logs = a.stop().await;
    assert!(!logs.contains("reaches this node's clients only"), "{logs}");
    drop(b);
    app.stop().await;
}

#[tokio::test]
async fn http_broadcasts_reach_every_node_once_over_redis() {
    let redis = RedisServer::start();
    let url = format!("--redis_url={}", redis.url());
    http_broadcasts_reach_every_node_once(
        &[&url, "--pubsub=redis", "--broker=none"],
        || redis.wait_subscribers(BUS, 2),
        async |forged| {
            assert_eq!(redis.publish(BUS, &forged).await, 2);
        },
    )
    .await;
}

#[tokio::test]
async fn http_broadcasts_reach_every_node_once_over_nats() {
    let nats = NatsServer::start();
    let servers = format!("--nats_servers={}", nats.url());
    http_broadcasts_reach_every_node_once(
        &[&servers, "--pubsub=nats", "--broker=none"],
        || nats.wait_subscribers(BUS, 2),
        async |forged| nats.publish(BUS, &forged).await,
    )
    .await;
}

/// An extended-protocol client as `user`, after its welcome.
async fn ext_client(url: &str, user: &str) -> Client {
    let mut request = url.into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("cookie", format!("user={user}").parse().unwrap());
    headers.insert("sec-websocket-protocol", EXT.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut client = Client {
        ws,
        protocol: Some(EXT.into()),
    };
    assert_eq!(client.recv().await["type"], "welcome");
    client
}

/// With a broker, the receiving node positions a broadcast once and both
/// nodes deliver it at that position (same epoch, offsets one apart), so a
/// restore reads the same history wherever the client reconnects.
async fn both_nodes_deliver_one_position(broker: &str) {
    let app = AppServer::start().await;
    let redis = RedisServer::start();
    let url = format!("--redis_url={}", redis.url());
    let (a, b) = two_nodes(&app, &[&url, "--pubsub=redis", broker]).await;
    redis.wait_subscribers(BUS, 2).await;
    let mut alice = ext_client(&a.url(), "alice").await;
    let mut bob = ext_client(&b.url(), "bob").await;
    alice.join("lobby").await;
    bob.join("lobby").await;

    let mut positions = Vec::new();
    for (n, to) in [
        (1, a.broadcast_addr),
        (2, a.broadcast_addr),
        (3, b.broadcast_addr),
    ] {
        broadcast(to, &chat(n)).await;
        let on_a = expect_n(&mut alice, n, "alice").await;
        let on_b = expect_n(&mut bob, n, "bob").await;
        for key in ["stream_id", "epoch", "offset"] {
            assert_eq!(
                on_a[key], on_b[key],
                "{key} differs ({broker}): {on_a} / {on_b}"
            );
        }
        assert!(on_a["offset"].is_u64(), "not positioned ({broker}): {on_a}");
        positions.push((on_a["epoch"].clone(), on_a["offset"].as_u64().unwrap()));
    }
    // Once each: the offsets the broker gave follow one another; with
    // the shared Redis broker, whichever node received the broadcast.
    assert_eq!(positions[1].1, positions[0].1 + 1, "{positions:?}");
    assert_eq!(positions[0].0, positions[1].0);
    if broker == "--broker=redis" {
        assert_eq!(positions[2].1, positions[1].1 + 1, "{positions:?}");
        assert_eq!(positions[2].0, positions[1].0);
    }
    drop((a, b));
    app.stop().await;
}

#[tokio::test]
async fn both_nodes_deliver_the_redis_brokers_one_position() {
    both_nodes_deliver_one_position("--broker=redis").await;
}

#[tokio::test]
async fn both_nodes_deliver_the_receiving_nodes_memory_position() {
    both_nodes_deliver_one_position("--broker=memory").await;
}

/// With no pubsub an HTTP broadcast reaches the receiving node only, and
/// the node says so at start.
#[tokio::test]
async fn without_pubsub_the_node_says_broadcasts_reach_it_only() {
    let app = AppServer::start().await;
    let node = Binary::start(app.addr, &["--pubsub=none", "--broadcast_key=k"]).await;
    let logs = node.stop().await;
    assert!(
        logs.contains("reaches this node's clients only"),
        "no warning at start:\n{logs}"
    );
    app.stop().await;
}

/// A signed relay read on the bus and published there again reaches
/// nobody: each node takes each of a sender's sequence numbers once.
#[tokio::test]
async fn a_relay_replayed_on_the_bus_reaches_nobody() {
    let redis = RedisServer::start();
    let url = format!("--redis_url={}", redis.url());
    let app = AppServer::start().await;
    let (a, b) = two_nodes(&app, &[&url, "--pubsub=redis", "--broker=none"]).await;
    redis.wait_subscribers(BUS, 2).await;
    // A listener on the bus, as whoever can read it.
    let mut listener = redis::Client::open(redis.url())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    listener.subscribe(BUS).await.unwrap();
    redis.wait_subscribers(BUS, 3).await;
    let (mut bob, _) = connect_user(&b.url(), "bob").await;
    bob.join("lobby").await;

    broadcast(a.broadcast_addr, &chat(1)).await;
    expect_n(&mut bob, 1, "bob, on the other node").await;
    let captured: String = {
        use futures_util::StreamExt;
        let message = listener.on_message().next().await.unwrap();
        message.get_payload().unwrap()
    };
    assert!(captured.contains(r#""seq":"#), "{captured}");
    assert_eq!(redis.publish(BUS, &captured).await, 3);
    // The fence: a second copy of 1 would come before 2.
    broadcast(a.broadcast_addr, &chat(2)).await;
    expect_n(&mut bob, 2, "bob, after the replay").await;
    assert_eq!(
        b.metric("ferrocable_broadcast_auth_failures_total").await,
        1.0
    );
    drop(a);
    drop(b);
    app.stop().await;
}
