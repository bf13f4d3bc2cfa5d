//! Session restore on the extended protocol (binary mode, a stateless gRPC
//! application): a client coming back with its previous sid (`?sid=` or
//! `X-ANYCABLE-RESTORE-SID`) is welcomed with `restored: true`, has its
//! subscriptions and streams back and catches up with `history`, and the
//! application is not called. Memory broker, and Redis across nodes and a
//! server restart.

mod common;

use common::*;
use ferrocable::broadcast::{Publication, Publish};
use ferrocable::config::BrokerAdapter;
use serde_json::{Value, json};

/// Connect and subscribe calls the application has seen.
fn app_calls(app: &AppServer) -> (usize, usize) {
    let calls = app.app.calls.lock().unwrap();
    let connects = calls
        .iter()
        .filter(|c| matches!(c, Call::Connect { .. }))
        .count();
    let subscribes = calls
        .iter()
        .filter(|c| matches!(c, Call::Command { message, .. } if message.command == "subscribe"))
        .count();
    (connects, subscribes)
}

/// Alice on the extended protocol in room 1, then away: returns her sid,
/// the epoch and the offset of the last message she got (1).
async fn alice_then_away(server: &TestServer) -> (String, String) {
    let (mut alice, welcome) = connect_on(&server.url(), "alice", EXT, "", &[]).await;
    alice.join("1").await;
    publish_n(server, 1);
    let m = alice.recv().await;
    assert_eq!(m["offset"], 1, "{m}");
    alice.close().await;
    (
        welcome["sid"].as_str().unwrap().to_owned(),
        m["epoch"].as_str().unwrap().to_owned(),
    )
}

/// The client is restored: its welcome, then the missed messages on
/// `history` from offset 1, then live ones.
async fn expect_restored(
    server: &TestServer,
    client: &mut Client,
    welcome: &Value,
    old: &str,
    epoch: &str,
) {
    let id = chat_identifier("1");
    assert_eq!(welcome["restored"], true, "{welcome}");
    assert_eq!(welcome["restored_ids"], json!([id]));
    assert_ne!(
        welcome["sid"], old,
        "a restored session has a sid of its own"
    );
    client
        .send_json(json!({"command": "history", "identifier": id,
            "history": {"streams": {"chat_1": {"epoch": epoch, "offset": 1}}}}))
        .await;
    for n in 2..=3 {
        let m = client.recv().await;
        assert_eq!(
            (m["message"]["n"].clone(), m["offset"].clone()),
            (json!(n), json!(n)),
            "{m}"
        );
    }
    assert_eq!(client.recv().await["type"], "confirm_history");
    publish_n(server, 4);
    assert_eq!(client.recv().await["message"]["n"], 4);
}

#[tokio::test]
async fn a_client_back_with_its_sid_is_restored_without_calling_the_application() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let (old, epoch) = alice_then_away(&server).await;
    publish_n(&server, 2);
    publish_n(&server, 3);
    let before = app_calls(&app);

    let (mut alice, welcome) =
        connect_on(&server.url(), "alice", EXT, &format!("?sid={old}"), &[]).await;
    expect_restored(&server, &mut alice, &welcome, &old, &epoch).await;
    assert_eq!(app_calls(&app), before, "no connect, no subscribe");

    // Restored again from the new sid, by header this time.
    let new = welcome["sid"].as_str().unwrap().to_owned();
    alice.close().await;
    let (_, welcome) = connect_on(
        &server.url(),
        "alice",
        EXT,
        "",
        &[("x-anycable-restore-sid", new.as_str())],
    )
    .await;
    assert_eq!(welcome["restored"], true, "{welcome}");
    assert_eq!(app_calls(&app), before);
}

#[tokio::test]
async fn unknown_sids_other_credentials_the_base_protocol_and_sessions_ttl_0_connect_as_usual() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let (old, _) = alice_then_away(&server).await;
    for (protocol, query) in [
        (EXT, "?sid=NoSuchSession0000000".to_owned()),
        ("actioncable-v1-json", format!("?sid={old}")),
    ] {
        let before = app_calls(&app).0;
        let (_, welcome) = connect_on(&server.url(), "alice", protocol, &query, &[]).await;
        assert!(welcome.get("restored").is_none(), "{welcome}");
        assert_eq!(
            app_calls(&app).0,
            before + 1,
            "connected by the application"
        );
    }

    // Another user's cookie with alice's sid: not alice's session.
    let before = app_calls(&app).0;
    let (_, welcome) = connect_on(&server.url(), "mallory", EXT, &format!("?sid={old}"), &[]).await;
    assert!(welcome.get("restored").is_none(), "{welcome}");
    assert_eq!(
        app_calls(&app).0,
        before + 1,
        "connected by the application"
    );

    let server = TestServer::start(config(app.addr, |c| c.sessions_ttl = 0)).await;
    let (old, _) = alice_then_away(&server).await;
    let (_, welcome) = connect_on(&server.url(), "alice", EXT, &format!("?sid={old}"), &[]).await;
    assert!(welcome.get("restored").is_none(), "{welcome}");
}

#[tokio::test]
async fn with_redis_a_session_is_restored_on_another_node_and_after_a_restart() {
    let redis = RedisServer::start();
    let app = AppServer::start().await;
    let node = || config(app.addr, |c| c.redis_url = redis.url());
    let a = TestServer::start(node()).await;
    assert_eq!(a.server.node.config.broker(), BrokerAdapter::Redis);
    let (old, epoch) = alice_then_away(&a).await;
    publish_n(&a, 2);
    publish_n(&a, 3);

    // Another node of the cluster.
    let b = TestServer::start(node()).await;
    let before = app_calls(&app);
    let (mut alice, welcome) =
        connect_on(&b.url(), "alice", EXT, &format!("?sid={old}"), &[]).await;
    expect_restored(&b, &mut alice, &welcome, &old, &epoch).await;
    assert_eq!(app_calls(&app), before);
    let last = welcome["sid"].as_str().unwrap().to_owned();
    alice.close().await;

    // Every node restarted (a deploy): the session and history are in Redis.
    assert!(a.shutdown().await);
    assert!(b.shutdown().await);
    let c = TestServer::start(node()).await;
    let (mut alice, welcome) =
        connect_on(&c.url(), "alice", EXT, &format!("?sid={last}"), &[]).await;
    assert_eq!(welcome["restored"], true, "{welcome}");
    publish_n(&c, 5);
    let m = alice.recv().await;
    assert_eq!(
        (m["message"]["n"].clone(), m["offset"].clone()),
        (json!(5), json!(5))
    );
    assert_eq!(
        app_calls(&app).0,
        before.0,
        "no connect after the restart either"
    );
}

/// The offsets of chat messages up to `confirm_history`.
async fn until_confirmed(client: &mut Client) -> Vec<u64> {
    let mut offsets = Vec::new();
    loop {
        let m = client.recv().await;
        if m["type"] == "confirm_history" {
            return offsets;
        }
        assert!(m["message"].is_object(), "{m}");
        offsets.push(m["offset"].as_u64().unwrap());
    }
}

/// A message broadcast between the restored welcome and the client's
/// `history` request neither moves the client past what it missed (it lost
/// those before) nor comes twice; a restored client that never asks for
/// history still gets what it missed and the live messages; and a stored
/// session is restored once.
#[tokio::test]
async fn a_restore_loses_nothing_before_the_history_request_never_waits_for_it_and_happens_once() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let (old, epoch) = alice_then_away(&server).await;
    publish_n(&server, 2);
    publish_n(&server, 3);
    let (mut alice, welcome) =
        connect_on(&server.url(), "alice", EXT, &format!("?sid={old}"), &[]).await;
    assert_eq!(welcome["restored"], true, "{welcome}");
    // Broadcast before the client's history request reaches the server.
    publish_n(&server, 4);
    let id = chat_identifier("1");
    alice
        .send_json(json!({"command": "history", "identifier": id,
            "history": {"streams": {"chat_1": {"epoch": epoch, "offset": 1}}}}))
        .await;
    assert_eq!(until_confirmed(&mut alice).await, [2, 3, 4]);
    publish_n(&server, 5);
    assert_eq!(alice.recv().await["offset"], 5);

    // Restored once: the old sid again is an ordinary connect.
    let before = app_calls(&app).0;
    let (_, again) = connect_on(&server.url(), "alice", EXT, &format!("?sid={old}"), &[]).await;
    assert!(again.get("restored").is_none(), "{again}");
    assert_eq!(
        app_calls(&app).0,
        before + 1,
        "connected by the application"
    );

    // Away again; back without ever sending `history`.
    let new = welcome["sid"].as_str().unwrap().to_owned();
    alice.close().await;
    publish_n(&server, 6);
    let (mut alice, welcome) =
        connect_on(&server.url(), "alice", EXT, &format!("?sid={new}"), &[]).await;
    assert_eq!(welcome["restored"], true, "{welcome}");
    publish_n(&server, 7);
    for n in [6, 7] {
        let m = alice.recv().await;
        assert_eq!(
            (m["message"]["n"].clone(), m["offset"].clone()),
            (json!(n), json!(n)),
            "{m}"
        );
    }
}

/// A kick (a remote disconnect of the user's identifiers) is final: the
/// session's state is taken back at the close, so the kicked client coming
/// back with its sid is connected by the application, not restored.
#[tokio::test]
async fn a_kicked_session_is_not_restored() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let (mut alice, welcome) = connect_on(&server.url(), "alice", EXT, "", &[]).await;
    alice.join("1").await;
    let old = welcome["sid"].as_str().unwrap().to_owned();
    server.server.node.publish(Publication::Disconnect {
        identifiers: r#"{"user":"alice"}"#.into(),
        reconnect: true,
    });
    let (before_close, _) = alice.recv_until_close().await;
    assert!(
        before_close
            .iter()
            .any(|m| m["type"] == "disconnect" && m["reason"] == "remote"),
        "{before_close:?}"
    );
    server
        .eventually("the kicked session gone", |s| {
            s.metric("ferrocable_clients") == 0.0
        })
        .await;
    let before = app_calls(&app).0;
    let (_, welcome) = connect_on(&server.url(), "alice", EXT, &format!("?sid={old}"), &[]).await;
    assert!(
        welcome.get("restored").is_none(),
        "restored after a kick: {welcome}"
    );
    assert_eq!(
        app_calls(&app).0,
        before + 1,
        "connected by the application"
    );
}
