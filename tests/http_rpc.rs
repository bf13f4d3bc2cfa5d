//! HTTP RPC against an independent implementation: the binary (started as
//! a deployment would: an `http://` rpc_host, `rpc_impl=http`, a secret)
//! calls an application written with `@anycable/serverless-js`, AnyCable's
//! own JS HTTP RPC server side (tests/httprpc/server.mjs, on Node), which
//! broadcasts back through the binary's HTTP broadcast endpoint. Real
//! WebSocket clients; the app reports what it saw at `GET /events`.

mod common;

use common::*;
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// `node tests/httprpc/server.mjs`, requiring `secret` as the Bearer token.
struct NodeApp {
    child: tokio::process::Child,
    port: u16,
}

impl NodeApp {
    /// The app broadcasts to the binary's endpoint on `broadcast_port`, with
    /// `broadcast_key`.
    async fn start(secret: &str, broadcast_port: u16, broadcast_key: &str) -> NodeApp {
        NodeApp::start_on(0, secret, broadcast_port, broadcast_key).await
    }

    /// As [`NodeApp::start`], on `port` (0: the OS picks).
    async fn start_on(
        port: u16,
        secret: &str,
        broadcast_port: u16,
        broadcast_key: &str,
    ) -> NodeApp {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/httprpc");
        assert!(
            std::path::Path::new(dir)
                .join("node_modules/@anycable/serverless-js")
                .is_dir(),
            "tests/httprpc/node_modules is missing: run bin/setup (npm ci in tests/httprpc)"
        );
        let mut child = tokio::process::Command::new("node")
            .arg("server.mjs")
            .current_dir(dir)
            .env("HTTPRPC_SECRET", secret)
            .env("HTTPRPC_PORT", port.to_string())
            .env(
                "HTTPRPC_BROADCAST_URL",
                format!("http://127.0.0.1:{broadcast_port}/_broadcast"),
            )
            .env("HTTPRPC_BROADCAST_KEY", broadcast_key)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // A cold Node start on a busy machine may be slow: a generous bound.
        let line = tokio::time::timeout(WAIT * 6, lines.next_line())
            .await
            .expect("the Node app says it listens")
            .unwrap()
            .expect("the Node app exited before listening");
        let port = line
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        NodeApp { child, port }
    }

    fn rpc_host(&self) -> String {
        format!("http://127.0.0.1:{}/_anycable", self.port)
    }

    async fn events(&self) -> Vec<Value> {
        let addr = ([127, 0, 0, 1], self.port).into();
        let (status, body) = http(addr, "GET", "/events", &[], "").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Waits (generously) until the app has recorded `expected`.
    async fn wait_event(&self, expected: Value) {
        let deadline = tokio::time::Instant::now() + WAIT * 6;
        loop {
            let events = self.events().await;
            if events.contains(&expected) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {expected} among {events:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serverless_js_application_over_http_rpc() {
    // The token both sides derive from the application secret.
    let token = ferrocable::broadcast::key::derive_rpc_secret("app-secret");
    let broadcast_port = reserve_port();
    let broadcast_key = ferrocable::broadcast::key::derive("app-secret");
    let app = NodeApp::start(&token, broadcast_port, &broadcast_key).await;
    // HTTP RPC inferred from the http:// rpc_host, as anycable-go does.
    let binary =
        Binary::start_with(&app.rpc_host(), broadcast_port, &["--secret=app-secret"]).await;
    let url = binary.url();

    let (mut alice, sid) = connect_user(&url, "alice").await;
    // The session id reached the application (x-anycable-meta-sid).
    app.wait_event(json!(["connect", "alice", sid])).await;
    let (mut bob, _) = connect_user(&url, "bob").await;
    let room = chat_identifier("lobby");
    for client in [&mut alice, &mut bob] {
        client.subscribe(&room).await;
        assert_eq!(
            client.recv().await,
            json!({"identifier": room, "type": "confirm_subscription"})
        );
    }
    alice
        .perform(&room, json!({"action": "speak", "text": "over http"}))
        .await;
    for client in [&mut alice, &mut bob] {
        assert_eq!(
            client.recv().await,
            json!({"identifier": room, "message": {"text": "over http", "from": "alice"}})
        );
    }

    let secret_room = chat_identifier("secret");
    bob.subscribe(&secret_room).await;
    assert_eq!(bob.recv().await["type"], "reject_subscription");

    let mut stranger = connect_raw(&url, Some("user=nobody"), Some("actioncable-v1-json")).await;
    let (before, _) = stranger.recv_until_close().await;
    assert_eq!(
        before.last().unwrap()["reason"],
        "unauthorized",
        "{before:?}"
    );

    alice.close().await;
    app.wait_event(json!(["unsubscribed", "alice", "lobby"]))
        .await;
    app.wait_event(json!(["disconnect", "alice"])).await;
    bob.close().await;
    app.wait_event(json!(["disconnect", "bob"])).await;

    let logs = binary.stop().await;
    assert!(!logs.contains("panicked"), "{logs}");
    let events = app.events().await;
    assert!(
        !events
            .iter()
            .any(|e| e[0] == "unauthorized" || e[0] == "error"),
        "{events:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_refused_and_no_one_is_connected() {
    let broadcast_port = reserve_port();
    let app = NodeApp::start("the-right-token", broadcast_port, "").await;
    let binary = Binary::start_with(
        &app.rpc_host(),
        broadcast_port,
        &["--rpc_impl=http", "--http_rpc_secret=a-wrong-token"],
    )
    .await;
    let mut client = connect_raw(
        &binary.url(),
        Some("user=alice"),
        Some("actioncable-v1-json"),
    )
    .await;
    let (before, _) = client.recv_until_close().await;
    assert!(
        before.iter().all(|m| m["type"] != "welcome"),
        "welcomed with a wrong secret: {before:?}"
    );
    app.wait_event(json!(["unauthorized", "/_anycable/connect"]))
        .await;
    assert!(
        !app.events().await.iter().any(|e| e[0] == "connect"),
        "the application ran connect"
    );
    let logs = binary.stop().await;
    assert!(logs.contains("401"), "the log names the refusal: {logs}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_that_is_down_is_retried_and_recovers() {
    let app_port = reserve_port();
    let broadcast_port = reserve_port();
    let binary = Binary::start_with(
        &format!("http://127.0.0.1:{app_port}/_anycable"),
        broadcast_port,
        &[
            "--http_rpc_secret=t",
            "--rpc_request_timeout=1000",
            "--metrics_http=/metrics",
        ],
    )
    .await;
    // Nothing listens yet: the call is retried until its deadline, then the
    // client is told to come back.
    let mut early = connect_raw(
        &binary.url(),
        Some("user=alice"),
        Some("actioncable-v1-json"),
    )
    .await;
    let (before, _) = early.recv_until_close().await;
    assert_eq!(
        before.last().unwrap(),
        &json!({"type": "disconnect", "reason": "server_restart", "reconnect": true})
    );
    assert!(binary.metric("ferrocable_rpc_retries_total").await >= 1.0);

    let app = NodeApp::start_on(app_port, "t", broadcast_port, "").await;
    let (client, sid) = connect_user(&binary.url(), "alice").await;
    app.wait_event(json!(["connect", "alice", sid])).await;
    client.close().await;
    app.wait_event(json!(["disconnect", "alice"])).await;
    binary.stop().await;
    app.stop().await;
}

/// HTTP RPC over `https://` (the scheme alone turns TLS on, as in
/// anycable-go): the serverless-js application behind a TLS front with a
/// certificate made for the test. Trusted through `rpc_tls_root_ca`, the
/// calls go over TLS; checked against another CA, no handshake completes
/// and the application sees no call; `rpc_tls_verify=false` accepts it
/// with a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_rpc_checks_the_certificate() {
    use common::tls::{Certificate, TlsFront};
    let cert = Certificate::new("httprpc");
    let other = Certificate::new("httprpc-other");
    let app = NodeApp::start("t", reserve_port(), "").await;
    let front = TlsFront::start(&cert, ([127, 0, 0, 1], app.port).into()).await;
    let rpc_host = format!("https://localhost:{}/_anycable", front.addr.port());
    let ca = |c: &Certificate| format!("--rpc_tls_root_ca={}", c.cert().display());

    let trusted = ca(&cert);
    let binary = Binary::start_with(
        &rpc_host,
        reserve_port(),
        &["--http_rpc_secret=t", &trusted],
    )
    .await;
    let (client, sid) = connect_user(&binary.url(), "alice").await;
    app.wait_event(json!(["connect", "alice", sid])).await;
    assert!(front.handshakes() >= 1);
    client.close().await;
    app.wait_event(json!(["disconnect", "alice"])).await;
    binary.stop().await;

    let handshakes = front.handshakes();
    let untrusted = ca(&other);
    let binary = Binary::start_with(
        &rpc_host,
        reserve_port(),
        &[
            "--http_rpc_secret=t",
            &untrusted,
            "--rpc_request_timeout=1000",
        ],
    )
    .await;
    let mut refused =
        connect_raw(&binary.url(), Some("user=bob"), Some("actioncable-v1-json")).await;
    let (before, _) = refused.recv_until_close().await;
    assert!(
        before.iter().all(|m| m["type"] != "welcome"),
        "welcomed through an untrusted server: {before:?}"
    );
    let logs = binary.stop().await;
    assert!(logs.to_lowercase().contains("certificate"), "{logs}");
    assert_eq!(front.handshakes(), handshakes);
    assert!(!app.events().await.iter().any(|e| e[1] == "bob"));

    let binary = Binary::start_with(
        &rpc_host,
        reserve_port(),
        &["--http_rpc_secret=t", "--rpc_tls_verify=false"],
    )
    .await;
    let (client, sid) = connect_user(&binary.url(), "carol").await;
    app.wait_event(json!(["connect", "carol", sid])).await;
    client.close().await;
    let logs = binary.stop().await;
    assert!(logs.contains("rpc_tls_verify is false"), "{logs}");
    app.stop().await;
}

/// The HTTP RPC circuit breaker (anycable-go 1.6's): calls to an
/// application that is gone trip it (10 requests, 80% unanswered), and once
/// the application is back, calls reach it again after the open period and
/// five answers close it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_opens_while_the_application_is_gone() {
    let app_port = reserve_port();
    let broadcast_port = reserve_port();
    let binary = Binary::start_with(
        &format!("http://127.0.0.1:{app_port}/_anycable"),
        broadcast_port,
        &["--http_rpc_secret=t"],
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT * 6;
    while !binary.logs().contains("circuit breaker is open") {
        assert!(tokio::time::Instant::now() < deadline, "{}", binary.logs());
        let mut client = connect_raw(
            &binary.url(),
            Some("user=alice"),
            Some("actioncable-v1-json"),
        )
        .await;
        let (before, _) = client.recv_until_close().await;
        assert!(before.iter().all(|m| m["type"] != "welcome"), "{before:?}");
    }

    let app = NodeApp::start_on(app_port, "t", broadcast_port, "").await;
    // After the open period, a call is let through and welcomed.
    let deadline = tokio::time::Instant::now() + WAIT * 6;
    loop {
        let mut client = connect_raw(
            &binary.url(),
            Some("user=alice"),
            Some("actioncable-v1-json"),
        )
        .await;
        if client.recv().await["type"] == "welcome" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never welcomed again"
        );
    }
    // Half-open lets five calls through at a time, the Disconnect calls of
    // closed clients included, and refuses more until they are answered; five
    // answered close it. So connect until it says it is closed (a client may
    // be refused meanwhile, as anycable-go's breaker refuses it), then every
    // client is welcomed.
    let deadline = tokio::time::Instant::now() + WAIT * 6;
    while !binary.logs().contains("circuit breaker is closed") {
        assert!(tokio::time::Instant::now() < deadline, "{}", binary.logs());
        let mut client = connect_raw(
            &binary.url(),
            Some("user=alice"),
            Some("actioncable-v1-json"),
        )
        .await;
        client.recv().await;
        client.close().await;
    }
    for n in 0..5 {
        let (client, _) = connect_user(&binary.url(), &format!("user{n}")).await;
        client.close().await;
    }
    let logs = binary.stop().await;
    assert!(logs.contains("circuit breaker is closed"), "{logs}");
    app.stop().await;
}
