//! Publications over a real redis-server and over HTTP: single, batch,
//! exclude_socket, remote disconnect, keys, and Redis restarts.

mod common;

use common::*;
use ferrocable::broadcast::Publish;
use ferrocable::config::BroadcastAdapter;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn redis_single_batch_exclude_and_remote_disconnect() {
    let redis = RedisServer::start();
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| {
        c.broadcast_adapter = vec![BroadcastAdapter::Redis];
        c.redis_url = redis.url();
    }))
    .await;
    redis.wait_subscribers("__anycable__", 1).await;

    let (mut alice, alice_sid) = connect_user(&server.url(), "alice").await;
    let (mut bob, _) = connect_user(&server.url(), "bob").await;
    let id = alice.join("1").await;
    bob.join("1").await;

    redis
        .publish(
            "__anycable__",
            &json!({"stream": "chat_1", "data": "{\"n\":1}"}).to_string(),
        )
        .await;
    assert_eq!(
        alice.recv().await,
        json!({"identifier": id, "message": {"n": 1}})
    );
    assert_eq!(bob.recv().await["message"], json!({"n": 1}));

    // A batch, in order; a non-JSON data string arrives as a string.
    let batch = json!([
        {"stream": "chat_1", "data": "{\"n\":2}"},
        {"stream": "chat_1", "data": "plain text"},
    ]);
    redis.publish("__anycable__", &batch.to_string()).await;
    for client in [&mut alice, &mut bob] {
        assert_eq!(client.recv().await["message"], json!({"n": 2}));
        assert_eq!(client.recv().await["message"], "plain text");
    }

    // exclude_socket skips the sender's own session.
    let excluded =
        json!({"stream": "chat_1", "data": "{\"n\":3}", "meta": {"exclude_socket": alice_sid}});
    redis.publish("__anycable__", &excluded.to_string()).await;
    assert_eq!(bob.recv().await["message"], json!({"n": 3}));
    alice.expect_silence(Duration::from_millis(300)).await;

    // A malformed publication is counted and nothing else is affected.
    redis.publish("__anycable__", "{not json").await;
    server
        .eventually("bad publication counted", |s| {
            s.metric("ferrocable_broadcast_errors_total") == 1.0
        })
        .await;

    // Remote disconnect closes every session of that user (two tabs), nobody else.
    let (mut alice2, _) = connect_user(&server.url(), "alice").await;
    let cmd = json!({"command": "disconnect", "payload": {"identifier": "{\"user\":\"alice\"}", "reconnect": false}});
    redis.publish("__anycable__", &cmd.to_string()).await;
    for client in [&mut alice, &mut alice2] {
        let (frames, close) = client.recv_until_close().await;
        assert_eq!(
            frames,
            vec![json!({"type": "disconnect", "reason": "remote", "reconnect": false})]
        );
        assert_eq!(u16::from(close.unwrap().code), 1000);
    }
    redis
        .publish(
            "__anycable__",
            &json!({"stream": "chat_1", "data": "{\"n\":4}"}).to_string(),
        )
        .await;
    assert_eq!(bob.recv().await["message"], json!({"n": 4}));
}

#[tokio::test]
async fn redis_killed_and_restarted_broadcasts_resume() {
    let mut redis = RedisServer::start();
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| {
        c.broadcast_adapter = vec![BroadcastAdapter::Redis, BroadcastAdapter::Http];
        c.redis_url = redis.url();
    }))
    .await;
    redis.wait_subscribers("__anycable__", 1).await;
    let (mut client, _) = connect_user(&server.url(), "alice").await;
    client.join("1").await;
    redis
        .publish(
            "__anycable__",
            &json!({"stream": "chat_1", "data": "1"}).to_string(),
        )
        .await;
    assert_eq!(client.recv().await["message"], 1);

    redis.kill();
    // Clients keep being served while Redis is down.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _) = http(
        server.broadcast_addr(),
        "POST",
        "/_broadcast",
        &[],
        &json!({"stream": "chat_1", "data": "2"}).to_string(),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(client.recv().await["message"], 2);

    let down_at = std::time::Instant::now();
    redis.restart();
    redis.wait_subscribers("__anycable__", 1).await;
    let gap = down_at.elapsed();
    eprintln!("resubscribed {gap:?} after Redis came back");
    assert!(gap < Duration::from_secs(4), "resubscribe took {gap:?}");
    redis
        .publish(
            "__anycable__",
            &json!({"stream": "chat_1", "data": "3"}).to_string(),
        )
        .await;
    assert_eq!(client.recv().await["message"], 3);
}

#[tokio::test]
async fn http_broadcast_keys_and_bodies() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| {
        c.broadcast_key = Some("sekret".into())
    }))
    .await;
    let (mut client, _) = connect_user(&server.url(), "alice").await;
    client.join("1").await;
    let body = json!({"stream": "chat_1", "data": "{\"ok\":true}"}).to_string();

    assert_eq!(
        http(server.broadcast_addr(), "POST", "/_broadcast", &[], &body)
            .await
            .0,
        401
    );
    assert_eq!(
        http(
            server.broadcast_addr(),
            "POST",
            "/_broadcast",
            &[("Authorization", "Bearer wrong")],
            &body
        )
        .await
        .0,
        401
    );
    let auth = [("Authorization", "Bearer sekret")];
    assert_eq!(
        http(
            server.broadcast_addr(),
            "POST",
            "/_broadcast",
            &auth,
            "{bad"
        )
        .await
        .0,
        422
    );
    assert_eq!(
        http(
            server.broadcast_addr(),
            "POST",
            "/_broadcast",
            &auth,
            r#"{"data":"x"}"#
        )
        .await
        .0,
        422
    );
    assert_eq!(
        http(server.broadcast_addr(), "GET", "/_broadcast", &auth, "")
            .await
            .0,
        405
    );
    assert_eq!(
        http(server.broadcast_addr(), "POST", "/_broadcast", &auth, &body)
            .await
            .0,
        201
    );
    assert_eq!(client.recv().await["message"], json!({"ok": true}));
    // Nothing from the refused requests reached the client.
    client.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn http_broadcast_key_derived_from_secret() {
    let app = AppServer::start().await;
    let server =
        TestServer::start(config(app.addr, |c| c.secret = Some("app-secret".into()))).await;
    let key = server.server.node.config.effective_broadcast_key().unwrap();
    let body = json!({"stream": "s", "data": "1"}).to_string();
    assert_eq!(
        http(server.broadcast_addr(), "POST", "/_broadcast", &[], &body)
            .await
            .0,
        401
    );
    let auth = format!("Bearer {key}");
    assert_eq!(
        http(
            server.broadcast_addr(),
            "POST",
            "/_broadcast",
            &[("Authorization", &auth)],
            &body
        )
        .await
        .0,
        201
    );
}

#[tokio::test]
async fn http_broadcast_is_off_unless_selected() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| c.broadcast_adapter = vec![])).await;
    let body = json!({"stream": "s", "data": "1"}).to_string();
    assert_eq!(
        http(server.broadcast_addr(), "POST", "/_broadcast", &[], &body)
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_from_threads_outside_the_runtime() {
    // The gem publishes from Ruby threads, which are not tokio threads.
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let (mut alice, _) = connect_user(&server.url(), "alice").await;
    alice.join("1").await;
    let node = server.server.node.clone();
    std::thread::spawn(move || {
        node.publish_payload(
            br#"{"stream":"chat_1","data":"{\"from\":\"thread\"}"}"#,
            "test",
        )
        .unwrap();
        node.publish_payload(
            br#"{"command":"disconnect","payload":{"identifier":"{\"user\":\"alice\"}"}}"#,
            "test",
        )
        .unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(alice.recv().await["message"], json!({"from": "thread"}));
    let (frames, _) = alice.recv_until_close().await;
    assert_eq!(
        frames,
        vec![json!({"type": "disconnect", "reason": "remote", "reconnect": true})]
    );
}
