//! Stream positions and history on the extended protocol, through real
//! sockets against the server (gRPC application, memory and Redis brokers,
//! a real redis-server): positioned messages for `actioncable-v1-ext-json`
//! clients only, replay in order without duplicates, refusals, a Redis
//! outage, and two nodes agreeing on positions.

mod common;

use common::*;
use ferrocable::config::{BroadcastAdapter, BrokerAdapter};
use serde_json::{Value, json};

/// An extended-protocol client of `user`, after its welcome.
async fn connect_ext(url: &str, user: &str) -> (Client, Value) {
    connect_on(url, user, EXT, "", &[]).await
}

/// Subscribes to room 1 with a history request; reads through the hello
/// and the confirmation.
async fn join_with_history(client: &mut Client, history: Value) -> String {
    let id = chat_identifier("1");
    client
        .send_json(json!({"command": "subscribe", "identifier": id, "history": history}))
        .await;
    assert!(client.recv().await["message"]["hello"].is_string());
    assert_eq!(client.recv().await["type"], "confirm_subscription");
    id
}

/// The next message, which must be `n` at `offset`; returns its epoch.
async fn expect_message(client: &mut Client, n: u64, offset: u64) -> String {
    let m = client.recv().await;
    assert_eq!(m["message"], json!({"n": n}), "{m}");
    assert_eq!(m["stream_id"], "chat_1", "{m}");
    assert_eq!(m["offset"], offset, "{m}");
    m["epoch"].as_str().expect("an epoch").to_owned()
}

#[tokio::test]
async fn a_client_that_comes_back_gets_what_it_missed_in_order_once() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    assert_eq!(server.server.node.config.broker(), BrokerAdapter::Memory);

    let (mut alice, _) = connect_ext(&server.url(), "alice").await;
    let id = alice.join("1").await;
    let (mut bob, _) = connect_user(&server.url(), "bob").await;
    bob.join("1").await;

    publish_n(&server, 1);
    let epoch = expect_message(&mut alice, 1, 1).await;
    // The base protocol's frame, exactly as without a broker.
    assert_eq!(
        bob.recv().await,
        json!({"identifier": id, "message": {"n": 1}})
    );
    alice.close().await;

    publish_n(&server, 2);
    publish_n(&server, 3);
    assert_eq!(bob.recv().await["message"]["n"], 2);
    assert_eq!(bob.recv().await["message"]["n"], 3);

    // Back, from its last position: 2 and 3, then the confirmation, then live.
    let (mut alice, _) = connect_ext(&server.url(), "alice").await;
    let history = json!({"streams": {"chat_1": {"epoch": epoch, "offset": 1}}});
    join_with_history(&mut alice, history.clone()).await;
    expect_message(&mut alice, 2, 2).await;
    expect_message(&mut alice, 3, 3).await;
    assert_eq!(
        alice.recv().await,
        json!({"type": "confirm_history", "identifier": id})
    );
    publish_n(&server, 4);
    expect_message(&mut alice, 4, 4).await;

    // Asking again: this connection has them all already, none comes twice.
    alice
        .send_json(json!({"command": "history", "identifier": id, "history": history}))
        .await;
    assert_eq!(alice.recv().await["type"], "confirm_history");
    publish_n(&server, 5);
    expect_message(&mut alice, 5, 5).await;

    // Since a time: everything kept from then on.
    let (mut carol, _) = connect_ext(&server.url(), "carol").await;
    join_with_history(&mut carol, json!({"since": 1})).await;
    for n in 1..=5 {
        expect_message(&mut carol, n, n).await;
    }
    assert_eq!(carol.recv().await["type"], "confirm_history");

    // Unknown epoch, offset past the end, a base-protocol client: refused.
    for bad in [
        json!({"streams": {"chat_1": {"epoch": "other", "offset": 1}}}),
        json!({"streams": {"chat_1": {"epoch": epoch, "offset": 99}}}),
    ] {
        carol
            .send_json(json!({"command": "history", "identifier": id, "history": bad}))
            .await;
        assert_eq!(
            carol.recv().await,
            json!({"type": "reject_history", "identifier": id})
        );
    }
    for n in 4..=5 {
        assert_eq!(bob.recv().await["message"]["n"], n);
    }
    bob.send_json(json!({"command": "history", "identifier": id, "history": history}))
        .await;
    assert_eq!(bob.recv().await["type"], "reject_history");
    // The session goes on.
    publish_n(&server, 6);
    expect_message(&mut carol, 6, 6).await;
    assert_eq!(
        bob.recv().await,
        json!({"identifier": id, "message": {"n": 6}})
    );
}

#[tokio::test]
async fn evicted_history_is_refused_and_the_client_carries_on() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| c.history_limit = 2)).await;
    let (mut alice, _) = connect_ext(&server.url(), "alice").await;
    let id = alice.join("1").await;
    publish_n(&server, 1);
    let epoch = expect_message(&mut alice, 1, 1).await;
    alice.close().await;
    for n in 2..=4 {
        publish_n(&server, n);
    }
    let (mut alice, _) = connect_ext(&server.url(), "alice").await;
    join_with_history(
        &mut alice,
        json!({"streams": {"chat_1": {"epoch": epoch, "offset": 1}}}),
    )
    .await;
    assert_eq!(
        alice.recv().await,
        json!({"type": "reject_history", "identifier": id})
    );
    publish_n(&server, 5);
    expect_message(&mut alice, 5, 5).await;
}

#[tokio::test]
async fn a_redis_outage_costs_history_never_live_broadcasts() {
    let mut redis = RedisServer::start();
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| {
        c.broker = Some(BrokerAdapter::Redis);
        c.redis_url = redis.url();
    }))
    .await;
    let (mut alice, _) = connect_ext(&server.url(), "alice").await;
    let id = alice.join("1").await;
    publish_n(&server, 1);
    let epoch = expect_message(&mut alice, 1, 1).await;

    redis.kill();
    publish_n(&server, 2);
    let m = alice.recv().await;
    assert_eq!(m["message"], json!({"n": 2}));
    assert!(m.get("offset").is_none(), "no position without Redis: {m}");
    let history = json!({"streams": {"chat_1": {"epoch": epoch, "offset": 0}}});
    alice
        .send_json(json!({"command": "history", "identifier": id, "history": history}))
        .await;
    assert_eq!(alice.recv().await["type"], "reject_history");

    // Redis back (empty): positions again, in a new epoch.
    redis.restart();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut n = 3;
    loop {
        publish_n(&server, n);
        let m = alice.recv().await;
        assert_eq!(m["message"], json!({"n": n}));
        if m.get("offset").is_some() {
            assert_ne!(m["epoch"], epoch.as_str());
            assert_eq!(m["offset"], 1);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no positions after Redis came back"
        );
        n += 1;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_burst_through_the_redis_broker_keeps_its_order() {
    let redis = RedisServer::start();
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| c.redis_url = redis.url())).await;
    assert_eq!(server.server.node.config.broker(), BrokerAdapter::Redis);
    let (mut alice, _) = connect_ext(&server.url(), "alice").await;
    alice.join("1").await;
    // Published faster than Redis answers: positioned in batches, in order.
    for n in 1..=500 {
        publish_n(&server, n);
    }
    for n in 1..=500 {
        expect_message(&mut alice, n, n).await;
    }
}

#[tokio::test]
async fn two_nodes_report_the_same_positions_for_redisx_broadcasts() {
    let redis = RedisServer::start();
    let app = AppServer::start().await;
    let node = || {
        config(app.addr, |c| {
            c.broadcast_adapter = vec![BroadcastAdapter::Redisx];
            c.redis_url = redis.url();
        })
    };
    let a = TestServer::start(node()).await;
    let b = TestServer::start(node()).await;
    assert_eq!(a.server.node.config.broker(), BrokerAdapter::Redis);
    redis.wait_stream_groups("__anycable__", 2).await;
    let (mut on_a, _) = connect_ext(&a.url(), "alice").await;
    let (mut on_b, _) = connect_ext(&b.url(), "bob").await;
    let id = on_a.join("1").await;
    on_b.join("1").await;

    // The same payload twice is two messages, each positioned once.
    let payload = json!({"stream": "chat_1", "data": "{\"n\":1}"}).to_string();
    redis.xadd("__anycable__", "payload", &payload).await;
    redis.xadd("__anycable__", "payload", &payload).await;
    let mut seen = Vec::new();
    for client in [&mut on_a, &mut on_b] {
        let first = client.recv().await;
        let second = client.recv().await;
        seen.push((
            first["epoch"].clone(),
            first["offset"].clone(),
            second["offset"].clone(),
        ));
    }
    assert_eq!(seen[0], seen[1], "both nodes agree");
    assert_eq!((seen[0].1.clone(), seen[0].2.clone()), (json!(1), json!(2)));

    // History kept by the cluster: a client of node B catches up on what
    // was published while it was away, from its position on node A.
    let epoch = seen[0].0.as_str().unwrap().to_owned();
    on_a.close().await;
    redis
        .xadd(
            "__anycable__",
            "payload",
            &json!({"stream": "chat_1", "data": "{\"n\":3}"}).to_string(),
        )
        .await;
    assert_eq!(on_b.recv().await["offset"], 3);
    let (mut back_on_b, _) = connect_ext(&b.url(), "alice").await;
    join_with_history(
        &mut back_on_b,
        json!({"streams": {"chat_1": {"epoch": epoch, "offset": 2}}}),
    )
    .await;
    expect_message(&mut back_on_b, 3, 3).await;
    assert_eq!(
        back_on_b.recv().await,
        json!({"type": "confirm_history", "identifier": id})
    );
}

/// Redis pub/sub hands every broadcast to every node: with it, the default
/// broker is the node's own memory, and a shared Redis broker is refused.
#[test]
fn a_fan_out_transport_keeps_the_broker_in_memory() {
    let with = |adapters: &[BroadcastAdapter], broker: Option<BrokerAdapter>| {
        let mut c = ferrocable::config::Config::defaults();
        c.redis_url = "redis://10.0.0.9:6379".into();
        c.broadcast_adapter = adapters.to_vec();
        c.broker = broker;
        c
    };
    assert_eq!(
        with(&[BroadcastAdapter::Redisx], None).broker(),
        BrokerAdapter::Redis
    );
    assert_eq!(
        with(&[BroadcastAdapter::Http], None).broker(),
        BrokerAdapter::Redis
    );
    for fanout in [BroadcastAdapter::Redis, BroadcastAdapter::Nats] {
        assert_eq!(
            with(&[BroadcastAdapter::Http, fanout], None).broker(),
            BrokerAdapter::Memory
        );
        let err = with(&[fanout], Some(BrokerAdapter::Redis))
            .validate()
            .unwrap_err();
        assert!(err.0.contains("broker=redis"), "{}", err.0);
        assert!(
            with(&[fanout], Some(BrokerAdapter::Memory))
                .validate()
                .is_ok()
        );
    }
}
