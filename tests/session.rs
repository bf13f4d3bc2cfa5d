//! The client protocol against a real server and a real gRPC application:
//! handshake, welcome, pings, subscriptions, performs, state, bad input.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn welcome_subprotocols_and_pings() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| c.ping_interval = 1)).await;

    // The base protocol is selected when offered first or alone.
    let (mut client, sid) = connect_user(&server.url(), "alice").await;
    assert_eq!(client.protocol.as_deref(), Some("actioncable-v1-json"));
    assert_eq!(sid.len(), 20);
    let ping = client.recv_any().await;
    assert_eq!(ping["type"], "ping");
    assert!(ping["message"].as_u64().unwrap() > 1_600_000_000);

    // Extended protocol offered first: selected.
    let c = connect_raw(
        &server.url(),
        Some("user=bob"),
        Some("actioncable-v1-ext-json, actioncable-v1-json"),
    )
    .await;
    assert_eq!(c.protocol.as_deref(), Some("actioncable-v1-ext-json"));
    // No subprotocol offered: served, with no subprotocol header.
    let mut c = connect_raw(&server.url(), Some("user=carol"), None).await;
    assert_eq!(c.protocol, None);
    assert_eq!(c.recv().await["type"], "welcome");

    // Every call carried sid and protov=v1 metadata.
    for call in app.app.calls() {
        if let Call::Connect { sid, protov, env } = call {
            assert_eq!(protov, "v1");
            assert_eq!(sid.len(), 20);
            assert!(
                env.url
                    .starts_with(&format!("http://{}/cable", server.addr)),
                "{}",
                env.url
            );
            assert_eq!(
                env.headers.get("REMOTE_ADDR").map(String::as_str),
                Some("127.0.0.1")
            );
            assert!(env.headers.contains_key("cookie"));
            assert!(
                !env.headers.contains_key("host"),
                "only allow-listed headers travel"
            );
        }
    }
    client.close().await;
}

#[tokio::test]
async fn subscribe_transmissions_come_before_confirmation_and_identifier_is_echoed_exactly() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let (mut client, _) = connect_user(&server.url(), "alice").await;

    // Odd spacing, key order and unicode: the identifier must come back byte for byte.
    let id = r#"{ "room":"ünï 1",  "channel":"ChatChannel" }"#;
    client.subscribe(id).await;
    let hello = client.recv().await;
    assert_eq!(hello["identifier"], id);
    assert_eq!(hello["message"]["hello"], "alice");
    let confirm = client.recv().await;
    assert_eq!(
        confirm,
        json!({"type": "confirm_subscription", "identifier": id})
    );

    // Broadcasts to the room's stream reach the subscriber with that identifier.
    let (status, _) = http(
        server.broadcast_addr(),
        "POST",
        "/_broadcast",
        &[],
        &json!({"stream": "chat_ünï 1", "data": "{\"text\":\"hi\"}"}).to_string(),
    )
    .await;
    assert_eq!(status, 201);
    let data = client.recv().await;
    assert_eq!(data, json!({"identifier": id, "message": {"text": "hi"}}));
}

#[tokio::test]
async fn rejected_unknown_and_failing_subscriptions() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let (mut client, _) = connect_user(&server.url(), "alice").await;

    let reject = json!({"channel": "RejectChannel"}).to_string();
    client.subscribe(&reject).await;
    assert_eq!(
        client.recv().await,
        json!({"type": "reject_subscription", "identifier": reject})
    );

    // ERROR from the application (e.g. unknown channel) is answered with a rejection too.
    let unknown = json!({"channel": "NoSuchChannel"}).to_string();
    client.subscribe(&unknown).await;
    assert_eq!(
        client.recv().await,
        json!({"type": "reject_subscription", "identifier": unknown})
    );

    // A rejected subscription is not a subscription: messages to it are ignored.
    client.perform(&reject, json!({"action": "echo"})).await;
    // The connection keeps working.
    client.join("1").await;
}

#[tokio::test]
async fn unauthorized_connection_gets_disconnect_then_close_and_no_disconnect_call() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let mut client = connect_raw(&server.url(), None, Some("actioncable-v1-json")).await;
    let (frames, close) = client.recv_until_close().await;
    assert_eq!(
        frames,
        vec![json!({"type": "disconnect", "reason": "unauthorized", "reconnect": false})]
    );
    assert!(close.is_some(), "a close frame follows the disconnect");

    // An application error on connect asks the client to come back later.
    let mut client = connect_raw(&server.url(), Some("user=boom"), None).await;
    let (frames, _) = client.recv_until_close().await;
    assert_eq!(
        frames,
        vec![json!({"type": "disconnect", "reason": "server_restart", "reconnect": true})]
    );

    server
        .eventually("sessions closed", |s| s.metric("ferrocable_clients") == 0.0)
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        app.app.disconnects().is_empty(),
        "Disconnect is only for sessions that connected"
    );
}

#[tokio::test]
async fn perform_carries_state_and_replies_apply_in_order() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let (mut client, _) = connect_user(&server.url(), "alice").await;
    let id = client.join("7").await;

    client.perform(&id, json!({"action": "echo", "n": 1})).await;
    let echo = client.recv().await;
    assert_eq!(echo["message"]["echo"]["n"], 1);
    assert_eq!(
        echo["message"]["istate"],
        json!({"room": "7"}),
        "istate from subscribe travels"
    );
    assert_eq!(
        echo["message"]["cstate"],
        json!({"user": "alice"}),
        "cstate from connect travels"
    );

    // Changed keys only; an empty value deletes.
    client
        .perform(&id, json!({"action": "setstate", "cstate": {"user": "", "mood": "happy"}, "istate": {"page": "2"}}))
        .await;
    client.perform(&id, json!({"action": "echo"})).await;
    let echo = client.recv().await;
    assert_eq!(echo["message"]["cstate"], json!({"mood": "happy"}));
    assert_eq!(echo["message"]["istate"], json!({"room": "7", "page": "2"}));

    // streams / stopped_streams / stop_streams.
    client.perform(&id, json!({"action": "follow"})).await;
    server
        .eventually("extra stream", |s| {
            s.server.node.hub.subscriber_count("extra") == 1
        })
        .await;
    client.perform(&id, json!({"action": "unfollow"})).await;
    server
        .eventually("extra stopped", |s| {
            s.server.node.hub.subscriber_count("extra") == 0
        })
        .await;
    assert_eq!(server.server.node.hub.subscriber_count("chat_7"), 1);
    client.perform(&id, json!({"action": "follow"})).await;
    client.perform(&id, json!({"action": "stop"})).await;
    server
        .eventually("all streams stopped", |s| {
            s.server.node.hub.subscriber_count("chat_7") == 0
                && s.server.node.hub.subscriber_count("extra") == 0
        })
        .await;

    // An ERROR reply to a perform is logged; the connection keeps serving.
    client.perform(&id, json!({"action": "fail"})).await;
    client.perform(&id, json!({"action": "echo", "n": 2})).await;
    assert_eq!(client.recv().await["message"]["echo"]["n"], 2);

    // Unsubscribe drops streams and state; messages to it are then ignored.
    client.perform(&id, json!({"action": "follow"})).await;
    client
        .send_json(json!({"command": "unsubscribe", "identifier": id}))
        .await;
    server
        .eventually("unsubscribed", |s| s.server.node.hub.stream_count() == 0)
        .await;
    let before = server.metric("ferrocable_failed_client_msg_total");
    client.perform(&id, json!({"action": "echo"})).await;
    server
        .eventually("ignored perform counted", |s| {
            s.metric("ferrocable_failed_client_msg_total") == before + 1.0
        })
        .await;
}

#[tokio::test]
async fn application_disconnect_flag_sends_transmissions_then_closes() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let (mut client, sid) = connect_user(&server.url(), "alice").await;
    let id = client.join("1").await;
    client.perform(&id, json!({"action": "kick"})).await;
    let (frames, close) = client.recv_until_close().await;
    assert_eq!(
        frames,
        vec![json!({"type": "disconnect", "reason": "unauthorized", "reconnect": false})]
    );
    assert!(close.is_some());
    server
        .eventually("session gone", |s| s.metric("ferrocable_clients") == 0.0)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let disconnects = app.app.disconnects();
    assert_eq!(disconnects.len(), 1);
    assert_eq!(disconnects[0].0, sid);
}

#[tokio::test]
async fn bad_input_is_logged_counted_and_the_connection_keeps_working() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let (mut client, _) = connect_user(&server.url(), "alice").await;
    let id = client.join("1").await;

    let before = server.metric("ferrocable_failed_client_msg_total");
    client.send_text("this is not json".into()).await;
    client.send_text("[1,2,3]".into()).await;
    client
        .send_json(json!({"command": "dance", "identifier": id}))
        .await;
    client.send_json(json!({"command": "subscribe"})).await;
    client
        .perform(&chat_identifier("never-joined"), json!({"action": "echo"}))
        .await;
    client.subscribe(&id).await; // duplicate
    client.ws.send_binary_for_test().await;
    server
        .eventually("7 failures counted", |s| {
            s.metric("ferrocable_failed_client_msg_total") == before + 7.0
        })
        .await;

    client
        .perform(&id, json!({"action": "echo", "still": "here"}))
        .await;
    assert_eq!(client.recv().await["message"]["echo"]["still"], "here");
    // The duplicate subscribe did not add a second subscription.
    assert_eq!(server.server.node.hub.subscriber_count("chat_1"), 1);
}

#[tokio::test]
async fn oversized_message_closes_with_1009_and_others_are_unaffected() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| c.max_message_size = 1024)).await;
    let (mut big, _) = connect_user(&server.url(), "alice").await;
    let (mut other, _) = connect_user(&server.url(), "bob").await;
    let id = other.join("1").await;
    big.send_text("x".repeat(4096)).await;
    let (_, close) = big.recv_until_close().await;
    assert_eq!(u16::from(close.expect("close frame").code), 1009);
    other
        .perform(&id, json!({"action": "echo", "ok": true}))
        .await;
    assert_eq!(other.recv().await["message"]["echo"]["ok"], true);
}

#[tokio::test]
async fn disconnect_call_carries_identifiers_subscriptions_and_state() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let (mut client, sid) = connect_user(&server.url(), "alice").await;
    let room1 = client.join("1").await;
    let room2 = client.join("2").await;
    client.close().await;
    server
        .eventually("Disconnect made", |_| app.app.disconnects().len() == 1)
        .await;
    let (call_sid, request) = app.app.disconnects().remove(0);
    assert_eq!(call_sid, sid);
    assert_eq!(request.identifiers, r#"{"user":"alice"}"#);
    let mut subs = request.subscriptions.clone();
    subs.sort();
    let mut expected = vec![room1.clone(), room2.clone()];
    expected.sort();
    assert_eq!(subs, expected);
    let env = request.env.unwrap();
    assert_eq!(env.cstate.get("user").map(String::as_str), Some("alice"));
    let istate: serde_json::Value = serde_json::from_str(&env.istate[&room1]).unwrap();
    assert_eq!(istate, json!({"room": "1"}));
    assert_eq!(server.server.node.hub.stream_count(), 0);
}

#[tokio::test]
async fn health_metrics_origins_and_unknown_paths() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| {
        c.allowed_origins = vec!["*.example.com".into()]
    }))
    .await;
    assert_eq!(
        http(server.addr, "GET", "/health", &[], "").await,
        (200, "OK".into())
    );
    assert_eq!(http(server.addr, "GET", "/nope", &[], "").await.0, 404);
    let (_client, _) =
        connect_user_from(&server.url(), "alice", Some("https://app.example.com")).await;
    let (status, body) = http(server.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    for name in [
        "ferrocable_clients 1",
        "ferrocable_rpc_call_total",
        "ferrocable_broadcast_msg_total",
        "ferrocable_data_sent_bytes_total",
        "ferrocable_slow_client_disconnects_total",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics:\n{body}");
    }

    let upgrade = |origin: &'static str| {
        let addr = server.addr;
        async move {
            http(
                addr,
                "GET",
                "/cable",
                &[
                    ("Connection", "Upgrade"),
                    ("Upgrade", "websocket"),
                    ("Sec-WebSocket-Version", "13"),
                    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                    ("Origin", origin),
                ],
                "",
            )
            .await
            .0
        }
    };
    assert_eq!(upgrade("https://evil.com").await, 403);
    assert_eq!(upgrade("https://app.example.com").await, 101);
    // Not an upgrade at all.
    assert_eq!(http(server.addr, "GET", "/cable", &[], "").await.0, 400);
}

/// Sends one binary frame (a client mistake the server must survive).
trait SendBinary {
    async fn send_binary_for_test(&mut self);
}

impl SendBinary for Ws {
    async fn send_binary_for_test(&mut self) {
        use futures_util::SinkExt;
        self.send(tokio_tungstenite::tungstenite::Message::Binary(
            vec![1u8, 2, 3].into(),
        ))
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn extended_protocol_commands_get_defined_answers() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let mut client = connect_raw(
        &server.url(),
        Some("user=alice"),
        Some("actioncable-v1-ext-json"),
    )
    .await;
    assert_eq!(client.protocol.as_deref(), Some("actioncable-v1-ext-json"));
    assert_eq!(client.recv().await["type"], "welcome");
    let id = client.join("1").await;
    let failures = server.metric("ferrocable_failed_client_msg_total");

    client.send_json(json!({"command": "ping"})).await;
    assert_eq!(client.recv().await, json!({"type": "pong"}));
    client.send_json(json!({"command": "pong"})).await;
    client
        .send_json(json!({"command": "history", "identifier": id, "history": {"since": 1}}))
        .await;
    // Nothing was broadcast since: an empty history (tests/history.rs has more).
    assert_eq!(
        client.recv().await,
        json!({"type": "confirm_history", "identifier": id})
    );
    assert_eq!(
        server.metric("ferrocable_failed_client_msg_total"),
        failures,
        "pong and history are not failures"
    );
    client.perform(&id, json!({"action": "echo", "n": 1})).await;
    assert_eq!(client.recv().await["message"]["echo"]["n"], 1);
}

#[tokio::test]
async fn server_confirms_after_the_applications_transmissions_when_it_did_not() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let (mut client, _) = connect_user(&server.url(), "alice").await;
    let id = json!({"channel": "QuietChannel"}).to_string();
    client.subscribe(&id).await;
    assert_eq!(
        client.recv().await,
        json!({"identifier": id, "message": "quiet hello"})
    );
    assert_eq!(
        client.recv().await,
        json!({"type": "confirm_subscription", "identifier": id})
    );
}

#[tokio::test]
async fn stop_streams_applies_before_new_streams_in_one_reply() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let (mut client, _) = connect_user(&server.url(), "alice").await;
    let id = client.join("1").await;
    client.perform(&id, json!({"action": "restream"})).await;
    server
        .eventually("fresh stream", |s| {
            s.server.node.hub.subscriber_count("fresh") == 1
        })
        .await;
    assert_eq!(server.server.node.hub.subscriber_count("chat_1"), 0);
}

#[tokio::test]
async fn welcome_is_the_first_message_even_when_connect_is_slower_than_a_ping() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| c.ping_interval = 1)).await;
    let mut client = connect_raw(&server.url(), Some("user=slow"), None).await;
    let first = client.recv_any().await;
    assert_eq!(first["type"], "welcome", "got {first} before the welcome");
    assert_eq!(client.recv_any().await["type"], "ping");
}

#[tokio::test]
async fn a_command_the_application_does_not_answer_in_time_is_rejected() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| c.rpc_request_timeout = 500)).await;
    let (mut client, _) = connect_user(&server.url(), "alice").await;
    let slow = json!({"channel": "SlowChannel"}).to_string();
    let started = std::time::Instant::now();
    client.subscribe(&slow).await;
    assert_eq!(
        client.recv().await,
        json!({"type": "reject_subscription", "identifier": slow})
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    client.join("1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_concurrency_caps_calls_in_flight() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| c.rpc_concurrency = 2)).await;
    let mut clients = Vec::new();
    for i in 0..6 {
        let (mut c, _) = connect_user(&server.url(), &format!("u{i}")).await;
        let id = c.join("1").await;
        clients.push((c, id));
    }
    for (c, id) in clients.iter_mut() {
        c.perform(id, json!({"action": "nap"})).await;
    }
    for (c, _) in clients.iter_mut() {
        assert_eq!(c.recv().await["message"], "rested");
    }
    let max = app
        .app
        .max_in_flight
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(max, 2, "at most rpc_concurrency calls at once");
}
