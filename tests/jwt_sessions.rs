//! Disconnect calls for JWT-identified sessions (anycable-go's
//! `disconnect_mode`, checked against anycable-go 1.6.16 node/node.go
//! `markDisconnectable`): with `auto` (the default), a session the
//! application never heard of (a JWT, fast-lane subscriptions only) gets no
//! Disconnect call; one with a subscription the application served does;
//! with `always`, every session does. The real gRPC application (`ChatApp`)
//! records the calls it receives.

mod common;

use common::*;
use ferrocable::config::DisconnectMode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::time::Duration;

const SECRET: &str = "jwt-sessions-secret";

fn token(ids: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"ext": ids, "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A JWT-identified client (`?jid=`), after its welcome.
async fn jwt_client(server: &TestServer, user: &str) -> Client {
    let ids = json!({"user": user}).to_string();
    let url = format!("{}?jid={}", server.url(), token(&ids));
    let mut c = connect_raw(&url, None, Some("actioncable-v1-json")).await;
    assert_eq!(c.recv().await["type"], "welcome");
    c
}

async fn public_stream(c: &mut Client, stream: &str) {
    let id = json!({"channel": "$pubsub", "stream_name": stream}).to_string();
    c.subscribe(&id).await;
    assert_eq!(c.recv().await["type"], "confirm_subscription");
}

fn disconnected(app: &AppServer, user: &str) -> bool {
    let ids = json!({"user": user}).to_string();
    app.app
        .disconnects()
        .iter()
        .any(|(_, r)| r.identifiers == ids)
}

/// Waits (30 s at most) until `user`'s Disconnect call has arrived.
async fn wait_disconnect(app: &AppServer, user: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !disconnected(app, user) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Disconnect call for {user}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn server(app: &AppServer, mode: DisconnectMode) -> TestServer {
    TestServer::start(config(app.addr, |c| {
        c.secret = Some(SECRET.into());
        c.public_streams = true;
        c.disconnect_mode = mode;
        // One call at a time: calls are made in the order sessions closed.
        c.rpc_concurrency = 4;
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_session_on_the_fast_lane_makes_no_disconnect_call() {
    let app = AppServer::start().await;
    let server = server(&app, DisconnectMode::Auto).await;

    // Only the fast lane: no call at all, Disconnect included.
    let mut lone = jwt_client(&server, "jwt-lone").await;
    public_stream(&mut lone, "news").await;
    lone.close().await;
    // A subscription the application served: its Disconnect is owed.
    let mut mixed = jwt_client(&server, "jwt-mixed").await;
    public_stream(&mut mixed, "news").await;
    mixed.subscribe(&chat_identifier("lobby")).await;
    let _hello = mixed.recv().await;
    assert_eq!(mixed.recv().await["type"], "confirm_subscription");
    mixed.close().await;
    // An ordinary connect, closed last: once its call has come, the calls
    // queued before it (one at a time, in order) have come too.
    let (cookie, _) = connect_user(&server.url(), "bob").await;
    // A session leaves the node's count after queueing its call.
    server
        .eventually("the JWT sessions finished", |s| {
            s.server.node.open_sessions() == 1
        })
        .await;
    cookie.close().await;
    wait_disconnect(&app, "jwt-mixed").await;
    wait_disconnect(&app, "bob").await;
    assert!(
        !disconnected(&app, "jwt-lone"),
        "{:?}",
        app.app.disconnects()
    );
    let connects = app
        .app
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Connect { .. }))
        .count();
    assert_eq!(connects, 1, "only bob's connect reached the application");
    server.shutdown().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_mode_always_calls_for_every_session() {
    let app = AppServer::start().await;
    let server = server(&app, DisconnectMode::Always).await;
    let mut lone = jwt_client(&server, "jwt-lone").await;
    public_stream(&mut lone, "news").await;
    lone.close().await;
    wait_disconnect(&app, "jwt-lone").await;
    server.shutdown().await;
    app.stop().await;
}
