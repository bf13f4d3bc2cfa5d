//! The fast lane against real sockets: JWT identification, `$pubsub`
//! signed and public streams, Turbo Streams and whispers are answered by
//! the server, and the application (the real RPC contract, played by
//! `ChatApp`) hears nothing of them; bad tokens and signatures are refused
//! with the reasons anycable-go gives. The last test drives the binary.

mod common;

use common::*;
use ferrocable::fastlane::signed;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "fast-lane-secret";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn token(key: &str, ext: &str, exp_in: i64) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"ext": ext, "exp": now() + exp_in}),
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

fn connects(app: &AppServer) -> usize {
    app.app
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Connect { .. }))
        .count()
}

async fn open(url: &str, headers: &[(&str, &str)]) -> Client {
    let mut request = url.into_client_request().unwrap();
    for (k, v) in headers {
        let name =
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        request.headers_mut().insert(name, v.parse().unwrap());
    }
    let (ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("handshake timed out")
        .expect("handshake failed");
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    Client { ws, protocol }
}

/// The disconnect frame and close a refused connection gets.
async fn refused(mut client: Client) -> Value {
    let (frames, close) = client.recv_until_close().await;
    assert!(close.is_some(), "closed with a close frame");
    assert_eq!(frames.len(), 1, "{frames:?}");
    frames[0].clone()
}

async fn broadcast(server: &TestServer, stream: &str, data: Value) {
    let body = json!({"stream": stream, "data": data.to_string()}).to_string();
    let key = server.server.node.config.effective_broadcast_key();
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let (status, _) = http(
        server.broadcast_addr(),
        "POST",
        "/_broadcast",
        &headers,
        &body,
    )
    .await;
    assert!((200..300).contains(&status), "broadcast answered {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_identifies_without_the_application() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| c.secret = Some(SECRET.into()))).await;
    let ids = r#"{"user":"jwt-alice"}"#;
    let t = token(SECRET, ids, 60);

    // The query parameter, the X-JID header, the anycable-token subprotocol.
    let by_query = open(&format!("{}?jid={t}", server.url()), &[]).await;
    let by_header = open(&server.url(), &[("x-jid", &t)]).await;
    let subprotocols = format!("actioncable-v1-json, anycable-token.{t}");
    let by_subprotocol = open(&server.url(), &[("sec-websocket-protocol", &subprotocols)]).await;
    assert_eq!(
        by_subprotocol.protocol.as_deref(),
        Some("actioncable-v1-json")
    );
    for mut client in [by_query, by_header, by_subprotocol] {
        let welcome = client.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        // Identified: the application's channels see the token's identifiers.
        let room = chat_identifier("lobby");
        client.subscribe(&room).await;
        let hello = client.recv().await;
        assert_eq!(hello["identifier"], room.as_str(), "{hello}");
        assert_eq!(client.recv().await["type"], "confirm_subscription");
    }
    assert_eq!(connects(&app), 0, "no connect call for a valid token");
    let commands = app.app.commands();
    assert!(!commands.is_empty());
    for command in commands {
        assert_eq!(command.connection_identifiers, ids);
    }
    server.shutdown().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_anycable_go_reasons() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| c.jwt_secret = Some(SECRET.into()))).await;
    let url = server.url();

    let expired = open(&format!("{url}?jid={}", token(SECRET, "{}", -30)), &[]).await;
    assert_eq!(
        refused(expired).await,
        json!({"type": "disconnect", "reason": "token_expired", "reconnect": false})
    );
    let forged = open(
        &format!("{url}?jid={}", token("not-the-key", "{}", 60)),
        &[],
    )
    .await;
    let garbage = open(&url, &[("x-jid", "not.a.token")]).await;
    for client in [forged, garbage] {
        assert_eq!(
            refused(client).await,
            json!({"type": "disconnect", "reason": "unauthorized", "reconnect": false})
        );
    }
    assert_eq!(
        connects(&app),
        0,
        "refused tokens never reach the application"
    );

    // No token, not enforced: the application decides (its cookie check).
    let (_alice, _) = connect_user(&url, "alice").await;
    assert_eq!(connects(&app), 1);
    server.shutdown().await;

    let server = TestServer::start(config(app.addr, |c| {
        c.jwt_secret = Some(SECRET.into());
        c.enforce_jwt = true;
    }))
    .await;
    let client = connect_raw(&server.url(), Some("user=alice"), None).await;
    assert_eq!(
        refused(client).await,
        json!({"type": "disconnect", "reason": "unauthorized", "reconnect": false})
    );
    assert_eq!(connects(&app), 1, "enforce_jwt: no token, no connect call");
    server.shutdown().await;
    app.stop().await;
}

fn pubsub(signed_name: Option<&str>, public: Option<&str>) -> String {
    let mut id = json!({"channel": "$pubsub"});
    if let Some(s) = signed_name {
        id["signed_stream_name"] = s.into();
    }
    if let Some(p) = public {
        id["stream_name"] = p.into();
    }
    id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_and_public_streams_are_served_by_the_server() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| {
        c.secret = Some("app-secret".into());
        c.streams_secret = Some(SECRET.into());
    }))
    .await;
    let (mut alice, _) = connect_user(&server.url(), "alice").await;

    let good = pubsub(Some(&signed::sign(SECRET.as_bytes(), "posts:1")), None);
    alice.subscribe(&good).await;
    assert_eq!(
        alice.recv().await,
        json!({"type": "confirm_subscription", "identifier": good})
    );
    server
        .eventually("the signed stream is subscribed", |s| {
            s.server.node.hub.subscriber_count("posts:1") == 1
        })
        .await;
    broadcast(&server, "posts:1", json!({"text": "hi"})).await;
    assert_eq!(
        alice.recv().await,
        json!({"identifier": good, "message": {"text": "hi"}})
    );

    // Signed with another key (here: `secret`, which streams_secret overrides),
    // not signed at all, or a public stream while public_streams is off.
    for bad in [
        pubsub(Some(&signed::sign(b"app-secret", "posts:1")), None),
        pubsub(Some("InBvc3RzOjEi--00"), None),
        pubsub(None, Some("posts:1")),
        pubsub(None, None),
    ] {
        alice.subscribe(&bad).await;
        assert_eq!(
            alice.recv().await,
            json!({"type": "reject_subscription", "identifier": bad})
        );
    }
    alice
        .send_json(json!({"command": "unsubscribe", "identifier": good}))
        .await;
    server
        .eventually("unsubscribed", |s| {
            s.server.node.hub.subscriber_count("posts:1") == 0
        })
        .await;
    assert!(
        app.app.commands().is_empty(),
        "the application never hears of $pubsub"
    );
    drop(alice);
    server
        .eventually("the session is gone", |s| {
            s.server.node.open_sessions() == 0
        })
        .await;
    for (_, request) in app.app.disconnects() {
        assert!(
            request.subscriptions.is_empty(),
            "{:?}",
            request.subscriptions
        );
    }
    server.shutdown().await;

    let server = TestServer::start(config(app.addr, |c| c.public_streams = true)).await;
    let (mut bob, _) = connect_user(&server.url(), "bob").await;
    let public = pubsub(None, Some("lobby"));
    bob.subscribe(&public).await;
    assert_eq!(bob.recv().await["type"], "confirm_subscription");
    // Without any key, signed names are rejected.
    let signed_id = pubsub(Some(&signed::sign(SECRET.as_bytes(), "x")), None);
    bob.subscribe(&signed_id).await;
    assert_eq!(bob.recv().await["type"], "reject_subscription");
    server.shutdown().await;
    app.stop().await;
}

fn turbo(signed_name: &str) -> String {
    json!({"channel": "Turbo::StreamsChannel", "signed_stream_name": signed_name}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turbo_streams_are_verified_with_the_turbo_key() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| {
        c.turbo_streams = true;
        c.turbo_streams_secret = Some("turbo-key".into());
        c.secret = Some(SECRET.into());
    }))
    .await;
    let (mut alice, _) = connect_user(&server.url(), "alice").await;
    let good = turbo(&signed::sign(b"turbo-key", "gid://app/Board/1"));
    alice.subscribe(&good).await;
    assert_eq!(alice.recv().await["type"], "confirm_subscription");
    server
        .eventually("subscribed", |s| {
            s.server.node.hub.subscriber_count("gid://app/Board/1") == 1
        })
        .await;
    let html = "<turbo-stream action=\"append\"></turbo-stream>";
    broadcast(&server, "gid://app/Board/1", json!(html)).await;
    assert_eq!(
        alice.recv().await,
        json!({"identifier": good, "message": html})
    );
    let bad = turbo(&signed::sign(SECRET.as_bytes(), "gid://app/Board/1"));
    alice.subscribe(&bad).await;
    assert_eq!(alice.recv().await["type"], "reject_subscription");
    assert!(app.app.commands().is_empty());
    server.shutdown().await;

    // turbo-rails' default key is binary (from secret_key_base): the gem
    // hands it over as hex, and it wins over the text secrets.
    let binary_key: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(37) ^ 0xa5).collect();
    let server = TestServer::start(config(app.addr, |c| {
        c.turbo_streams = true;
        c.turbo_streams_secret = Some("turbo-key".into());
        c.turbo_streams_key_hex = Some(hex::encode(&binary_key));
    }))
    .await;
    let (mut carol, _) = connect_user(&server.url(), "carol").await;
    let by_rails = turbo(&signed::sign(&binary_key, "gid://app/Board/1"));
    carol.subscribe(&by_rails).await;
    assert_eq!(carol.recv().await["type"], "confirm_subscription");
    let by_text = turbo(&signed::sign(b"turbo-key", "gid://app/Board/1"));
    carol.subscribe(&by_text).await;
    assert_eq!(carol.recv().await["type"], "reject_subscription");
    server.shutdown().await;

    // turbo_streams off: the application's own Turbo::StreamsChannel
    // answers (ChatApp has none: an error, so a rejection).
    let server = TestServer::start(config(app.addr, |c| c.secret = Some(SECRET.into()))).await;
    let (mut bob, _) = connect_user(&server.url(), "bob").await;
    let id = turbo(&signed::sign(SECRET.as_bytes(), "gid://app/Board/1"));
    bob.subscribe(&id).await;
    assert_eq!(bob.recv().await["type"], "reject_subscription");
    assert_eq!(app.app.commands().len(), 1, "asked the application");
    server.shutdown().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whispers_reach_the_other_subscribers_only() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| {
        c.public_streams = true;
        c.streams_secret = Some(SECRET.into());
    }))
    .await;
    let url = server.url();
    let (mut alice, _) = connect_user(&url, "alice").await;
    let (mut bob, _) = connect_user(&url, "bob").await;
    let (mut carol, _) = connect_user(&url, "carol").await;
    let room = pubsub(None, Some("room:1"));
    let other = pubsub(None, Some("room:2"));
    for (client, id) in [(&mut alice, &room), (&mut bob, &room), (&mut carol, &other)] {
        client.subscribe(id).await;
        assert_eq!(client.recv().await["type"], "confirm_subscription");
    }
    server
        .eventually("both in room:1", |s| {
            s.server.node.hub.subscriber_count("room:1") == 2
        })
        .await;
    // Data as the client sent it (spacing kept: not re-encoded).
    alice
        .send_text(format!(
            r#"{{"command":"whisper","identifier":{},"data":{{"event":"typing", "user":"alice"}}}}"#,
            serde_json::to_string(&room).unwrap()
        ))
        .await;
    let got = bob.recv().await;
    assert_eq!(
        got,
        json!({"identifier": room, "message": {"event": "typing", "user": "alice"}})
    );
    alice.expect_silence(Duration::from_millis(300)).await;
    carol.expect_silence(Duration::from_millis(300)).await;

    // A signed stream may not whisper unless streams_whisper.
    let signed_id = pubsub(Some(&signed::sign(SECRET.as_bytes(), "room:1")), None);
    carol.subscribe(&signed_id).await;
    assert_eq!(carol.recv().await["type"], "confirm_subscription");
    server
        .eventually("carol in room:1", |s| {
            s.server.node.hub.subscriber_count("room:1") == 3
        })
        .await;
    carol
        .send_json(json!({"command": "whisper", "identifier": signed_id, "data": {"x": 1}}))
        .await;
    bob.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(server.server.node.metrics.client_message_failures.get(), 1);
    server.shutdown().await;
    app.stop().await;
}

/// The binary, configured as anycable-go is (environment variables), with
/// no RPC server at all: JWT connections and signed streams need none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_the_fast_lane_without_an_rpc_server() {
    let port = reserve_port();
    let rpc = reserve_port();
    let env = [
        ("ANYCABLE_HOST", "127.0.0.1".to_owned()),
        ("ANYCABLE_PORT", port.to_string()),
        ("ANYCABLE_RPC_HOST", format!("127.0.0.1:{rpc}")),
        ("ANYCABLE_SECRET", SECRET.to_owned()),
        ("ANYCABLE_ENFORCE_JWT", "true".to_owned()),
        ("ANYCABLE_BROADCAST_ADAPTER", "http".to_owned()),
    ];
    let mut child = binary_command(None, &["--ignore-config-path".into()], &env)
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_serving(&mut child, "health", || answers_200(addr, "/health")).await;
    let url = format!("ws://{addr}/cable");

    let mut client = open(
        &format!("{url}?jid={}", token(SECRET, r#"{"user":"x"}"#, 60)),
        &[],
    )
    .await;
    assert_eq!(client.recv().await["type"], "welcome");
    let id = pubsub(Some(&signed::sign(SECRET.as_bytes(), "news")), None);
    client.subscribe(&id).await;
    assert_eq!(client.recv().await["type"], "confirm_subscription");
    let body = json!({"stream": "news", "data": "{\"n\":1}"}).to_string();
    let auth = format!(
        "Bearer {}",
        ferrocable::broadcast::key::resolve(None, None, Some(SECRET)).unwrap()
    );
    // The subscription is applied before the confirmation is sent, so the
    // broadcast finds it.
    let (status, _) = http(
        addr,
        "POST",
        "/_broadcast",
        &[("Authorization", &auth)],
        &body,
    )
    .await;
    assert!((200..300).contains(&status), "{status}");
    assert_eq!(
        client.recv().await,
        json!({"identifier": id, "message": {"n": 1}})
    );

    let expired = open(&format!("{url}?jid={}", token(SECRET, "{}", -5)), &[]).await;
    assert_eq!(refused(expired).await["reason"], "token_expired");
    let none = open(&url, &[]).await;
    assert_eq!(refused(none).await["reason"], "unauthorized");
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

/// Reads a handshake's answer and the frame after it off a plain socket;
/// returns them and how many packets with data the socket received
/// (`tcpi_data_segs_in`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn answer_and_first_frame(addr: SocketAddr, path: &str, headers: &str) -> (String, Value, u32) {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        socket,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{headers}\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let (head, frame) = loop {
        let mut chunk = [0u8; 4096];
        let n = socket.read(&mut chunk).expect("the answer and a frame");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let rest = &got[end + 4..];
        // An unmasked text frame shorter than 126 bytes.
        if rest.len() >= 2 && rest.len() >= 2 + (rest[1] & 0x7f) as usize {
            assert_eq!(rest[0], 0x81, "a text frame");
            let payload = &rest[2..2 + rest[1] as usize];
            break (
                String::from_utf8_lossy(&got[..end]).into_owned(),
                serde_json::from_slice(payload).unwrap(),
            );
        }
    };
    // SAFETY: TCP_INFO fills at most `len` bytes of a `tcp_info`.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let done = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(done, 0, "TCP_INFO");
    (head, frame, info.tcpi_data_segs_in)
}

/// A fast-lane connection's handshake answer waits for its welcome and
/// both reach the client in one packet (each side woken once, not twice);
/// a connection the application answers later gets its answer alone,
/// before the application is asked.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_lane_welcome_shares_the_handshake_answers_packet() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| c.secret = Some(SECRET.into()))).await;
    let addr = server.addr;
    let path = format!("/cable?jid={}", token(SECRET, r#"{"user":"1"}"#, 60));
    let (head, welcome, packets) =
        tokio::task::spawn_blocking(move || answer_and_first_frame(addr, &path, ""))
            .await
            .unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(packets, 1, "the answer and the welcome in one packet");
    assert_eq!(connects(&app), 0);

    let (head, welcome, packets) = tokio::task::spawn_blocking(move || {
        answer_and_first_frame(addr, "/cable", "Cookie: user=alice\r\n")
    })
    .await
    .unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(packets, 2, "the answer, then the application's welcome");
    assert_eq!(connects(&app), 1);
    server.shutdown().await;
    app.stop().await;
}
