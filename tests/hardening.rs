//! Hostile clients against the real binary on 127.0.0.1: each attack of
//! issue 16 rerun with its bound asserted (memory, log bytes, close codes,
//! statuses), and a well-behaved client alongside that must keep being
//! served. The figures are printed (`-- --nocapture`) for RELIABILITY.md.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Sends ping frames as fast as the socket takes them and never reads, until
/// the server drops the connection. Returns the bytes sent, or None if the
/// server still took pings after `limit`.
async fn ping_flood(addr: std::net::SocketAddr, limit: Duration) -> Option<u64> {
    let mut s = raw_ws(addr).await;
    let batch: Vec<u8> = (0..64).flat_map(|_| frame(0x9, &[b'p'; 125])).collect();
    let mut sent = 0u64;
    let flood = async {
        while s.write_all(&batch).await.is_ok() {
            sent += batch.len() as u64;
        }
    };
    tokio::time::timeout(limit, flood).await.ok()?;
    Some(sent)
}

/// Broadcasts over HTTP and waits for `client` to receive it; the latency.
async fn round_trip(binary: &Binary, client: &mut Client, n: u64) -> Duration {
    keyed_round_trip(binary, client, n, &[]).await
}

async fn keyed_round_trip(
    binary: &Binary,
    client: &mut Client,
    n: u64,
    headers: &[(&str, &str)],
) -> Duration {
    let body = json!({"stream": "chat_1", "data": json!({"n": n}).to_string()}).to_string();
    let started = Instant::now();
    assert_eq!(
        http(binary.broadcast_addr, "POST", "/_broadcast", headers, &body)
            .await
            .0,
        201
    );
    let message = client.recv().await;
    assert_eq!(message["message"]["n"], n, "{message}");
    started.elapsed()
}

fn summary(mut latencies: Vec<Duration>) -> String {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    format!(
        "{} round trips, p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        at(0.5),
        at(0.99),
        latencies.last().unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood_that_never_reads_is_disconnected_with_bounded_memory() {
    let app = AppServer::start().await;
    let binary = Binary::start(app.addr, &["--metrics_http=/metrics"]).await;
    let (mut good, _) = connect_user(&binary.url(), "good").await;
    good.join("1").await;
    let mut latencies = vec![round_trip(&binary, &mut good, 0).await];
    let rss_before = rss_kib(binary.pid());

    // Two clients flood pings and never read: the pongs fill a socket
    // nobody drains. A pong waiting in the queue is replaced by the next
    // (one pong held per client, whatever the pings), and the writer, stuck
    // on the full socket, disconnects the client when `ws_write_timeout`
    // passes (or the 1 MiB write budget, if that comes first).
    let flooders: Vec<_> = (0..2)
        .map(|_| tokio::spawn(ping_flood(binary.addr, Duration::from_secs(60))))
        .collect();
    let mut peak = rss_before;
    let mut n = 1;
    while !flooders.iter().all(|f| f.is_finished()) {
        latencies.push(round_trip(&binary, &mut good, n).await);
        peak = peak.max(rss_kib(binary.pid()));
        n += 1;
    }
    let mut sent = Vec::new();
    for flooder in flooders {
        sent.push(
            flooder
                .await
                .unwrap()
                .expect("the flooder was disconnected within 60 s"),
        );
    }
    assert_eq!(
        binary
            .metric("ferrocable_slow_client_disconnects_total")
            .await,
        2.0,
        "both flooders disconnected as too_slow"
    );
    for _ in 0..20 {
        latencies.push(round_trip(&binary, &mut good, n).await);
        n += 1;
    }
    let growth = peak.saturating_sub(rss_before);
    eprintln!(
        "ping flood: 2 clients sent {} MiB of pings before being disconnected; binary RSS {} -> peak {} KiB (+{} KiB); well-behaved client: {}",
        sent.iter().sum::<u64>() >> 20,
        rss_before,
        peak,
        growth,
        summary(latencies)
    );
    // 1 MiB budget each, plus what the allocator keeps: far from the
    // gigabytes the unbounded write buffer reached.
    assert!(growth < 48 * 1024, "RSS grew by {growth} KiB");
}

#[tokio::test]
async fn a_batch_of_many_small_publications_reaches_every_subscriber() {
    // ws_max_pending_size counts bytes (anycable-go's meaning): 300 tiny
    // publications in one batch are 13 KB, far under the 1 MiB budget. As a
    // count of messages (256) they disconnected every subscriber as too_slow.
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let mut clients = Vec::new();
    for i in 0..3 {
        let (mut c, _) = connect_user(&server.url(), &format!("u{i}")).await;
        c.join("1").await;
        clients.push(c);
    }
    let batch: Vec<_> = (0..300)
        .map(|n| json!({"stream": "chat_1", "data": n.to_string()}))
        .collect();
    let body = serde_json::Value::from(batch).to_string();
    assert_eq!(
        http(server.broadcast_addr(), "POST", "/_broadcast", &[], &body)
            .await
            .0,
        201
    );
    for c in &mut clients {
        for n in 0..300 {
            assert_eq!(c.recv().await["message"], n);
        }
    }
    assert_eq!(
        server.metric("ferrocable_slow_client_disconnects_total"),
        0.0
    );
}

/// Sends `frames` text frames on one connection as fast as it can (reading
/// nothing: none of them has an answer).
async fn send_frames(url: String, user: &'static str, frames: Vec<String>) {
    let (mut c, _) = connect_user(&url, user).await;
    for f in frames {
        c.send_text(f).await;
    }
    // Everything sent has been read by the server once it answers this.
    c.join("done").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_huge_identifiers_and_wrong_keys_write_a_bounded_log() {
    const KEY: &str = "the-broadcast-key";
    const HUGE: usize = 1_000;
    const TINY: usize = 50_000;
    const WRONG_KEYS: usize = 1_000;
    let app = AppServer::start().await;
    let binary = Binary::start(
        app.addr,
        &["--metrics_http=/metrics", &format!("--broadcast_key={KEY}")],
    )
    .await;
    let auth = format!("Bearer {KEY}");
    let authorized = [("Authorization", auth.as_str())];
    let (mut good, _) = connect_user(&binary.url(), "good").await;
    good.join("1").await;
    let log_before = binary.log_len();
    let started = Instant::now();

    // 60 KB identifiers in unsubscribe frames (each was a 60 KB line), 1-byte
    // malformed frames, identifiers that try to forge a line and paint the
    // terminal, and HTTP broadcasts with a wrong key (no WebSocket needed).
    let huge = json!({"command": "unsubscribe", "identifier": "i".repeat(60_000)}).to_string();
    let forged = json!({"command": "message", "data": "{}",
        "identifier": "x\nFORGED ERROR ferrocable: owned\u{1b}[2J\u{1b}[31m"})
    .to_string();
    let attacks = vec![
        tokio::spawn(send_frames(binary.url(), "huge", vec![huge; HUGE])),
        tokio::spawn(send_frames(binary.url(), "tiny", vec!["x".into(); TINY])),
        tokio::spawn(send_frames(binary.url(), "forger", vec![forged; 100])),
        tokio::spawn({
            let addr = binary.broadcast_addr;
            async move {
                let body = json!({"stream": "chat_1", "data": "forged"}).to_string();
                for _ in 0..WRONG_KEYS {
                    let wrong = [("Authorization", "Bearer wrong")];
                    assert_eq!(
                        http(addr, "POST", "/_broadcast", &wrong, &body).await.0,
                        401
                    );
                }
            }
        }),
    ];
    let mut latencies = Vec::new();
    let mut n = 0;
    while !attacks.iter().all(|a| a.is_finished()) {
        latencies.push(keyed_round_trip(&binary, &mut good, n, &authorized).await);
        n += 1;
    }
    for attack in attacks {
        attack.await.unwrap();
    }
    let took = started.elapsed();
    let logs = binary.logs()[log_before..].to_owned();
    eprintln!(
        "log flood: {HUGE} x 60 KB identifiers, {TINY} malformed frames, 100 forging identifiers, {WRONG_KEYS} wrong keys in {took:?} wrote {} log bytes in {} lines ({} suppressed); well-behaved client: {}",
        logs.len(),
        logs.lines().count(),
        binary.metric("ferrocable_log_lines_suppressed_total").await,
        summary(latencies)
    );
    // Every event is counted, even when its line is left out.
    let failed = binary.metric("ferrocable_failed_client_msg_total").await;
    assert_eq!(failed as usize, HUGE + TINY + 100);
    assert_eq!(
        binary
            .metric("ferrocable_broadcast_auth_failures_total")
            .await as usize,
        WRONG_KEYS
    );
    // The log: a few lines per second per kind of event, none long, none forged.
    let kinds = [
        "unsubscribe from a channel not subscribed",
        "client frame ignored",
        "HTTP broadcast refused",
        "message for a channel not subscribed",
    ];
    let seconds = took.as_secs() as usize + 2;
    for kind in kinds {
        let lines = logs.lines().filter(|l| l.contains(kind)).count();
        assert!(lines >= 1, "{kind:?} is still logged");
        assert!(
            lines <= 10 * seconds,
            "{lines} lines of {kind:?} in {seconds} s"
        );
    }
    assert!(logs.lines().all(|l| l.len() < 600), "a line over 600 bytes");
    assert!(logs.len() < 10 * seconds * kinds.len() * 600);
    assert!(
        !logs.contains('\u{1b}'),
        "a terminal escape reached the log"
    );
    assert!(
        logs.lines().all(|l| !l.starts_with("FORGED")),
        "a client forged a log line"
    );
    assert!(
        logs.contains("x\\nFORGED"),
        "the forging identifier is shown escaped"
    );
}

/// A WebSocket handshake with these extra headers; the response status.
async fn handshake(addr: std::net::SocketAddr, extra: &[(&str, &str)]) -> u16 {
    let mut headers = vec![
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    headers.extend_from_slice(extra);
    http(addr, "GET", "/cable", &headers, "").await.0
}

#[tokio::test]
async fn allowed_origins_compare_host_and_port_and_refuse_a_missing_origin() {
    let app = AppServer::start().await;
    let binary = Binary::start(
        app.addr,
        &["--allowed_origins=example.com,*.rails.dev,localhost:3000"],
    )
    .await;
    let addr = binary.addr;
    let origin = |o: &'static str| async move { handshake(addr, &[("Origin", o)]).await };
    // Allowed: the host (and port) as listed, any scheme; subdomains of a wildcard.
    assert_eq!(origin("https://example.com").await, 101);
    assert_eq!(origin("http://localhost:3000").await, 101);
    assert_eq!(origin("https://app.rails.dev").await, 101);
    // Refused: another port of an allowed host (cookies are not scoped by
    // port), the bare domain of a wildcard, no Origin, a non-ASCII one.
    assert_eq!(origin("https://example.com:8443").await, 403);
    assert_eq!(origin("http://localhost:4000").await, 403);
    assert_eq!(origin("https://rails.dev").await, 403);
    assert_eq!(origin("https://example.com.evil.com").await, 403);
    assert_eq!(origin("null").await, 403);
    assert_eq!(origin("https://exämple.com").await, 403);
    assert_eq!(handshake(binary.addr, &[]).await, 403);
    // A signed-in page on the allowed origin is served.
    let (mut c, _) = connect_user_from(&binary.url(), "alice", Some("https://example.com")).await;
    c.join("1").await;
}

#[tokio::test]
async fn a_cookie_with_non_ascii_bytes_reaches_the_application() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    // UTF-8 (as browsers send it) arrives intact; other bytes, lossily.
    for (sent, seen) in [
        (
            &b"user=alice; pref=Jos\xc3\xa9"[..],
            "user=alice; pref=José",
        ),
        (&b"user=bob; pref=Jos\xe9"[..], "user=bob; pref=Jos\u{fffd}"),
    ] {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut request = format!(
            "GET /cable HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: ",
            server.addr
        )
        .into_bytes();
        request.extend_from_slice(sent);
        request.extend_from_slice(b"\r\n\r\n");
        s.write_all(&request).await.unwrap();
        server
            .eventually("the application saw the cookie", |_| {
                app.app.calls().iter().any(|c| {
                    matches!(c, Call::Connect { env, .. }
                        if env.headers.get("cookie").map(String::as_str) == Some(seen))
                })
            })
            .await;
    }
}

#[tokio::test]
async fn a_keyless_broadcast_endpoint_is_never_on_the_websocket_port() {
    let app = AppServer::start().await;
    let body = json!({"stream": "chat_1", "data": "1"}).to_string();
    // Without a key: 404 on the public port (no forged messages, no remote
    // disconnects from anyone who can open a socket), 201 on its own port.
    let keyless = Binary::start(app.addr, &[]).await;
    let (mut alice, _) = connect_user(&keyless.url(), "alice").await;
    alice.join("1").await;
    let kick = json!({"command": "disconnect",
        "payload": {"identifier": "{\"user\":\"alice\"}", "reconnect": false}})
    .to_string();
    for payload in [&body, &kick] {
        assert_eq!(
            http(keyless.addr, "POST", "/_broadcast", &[], payload)
                .await
                .0,
            404
        );
    }
    assert_eq!(
        http(keyless.broadcast_addr, "POST", "/_broadcast", &[], &body)
            .await
            .0,
        201
    );
    assert_eq!(alice.recv().await["message"], 1);
    // A keyless endpoint asked for on the WebSocket port: refused at start.
    let port = reserve_port();
    let refused = std::process::Command::new(BINARY)
        .args([
            "--host=127.0.0.1",
            &format!("--port={port}"),
            "--broadcast_adapter=http",
            &format!("--http_broadcast_port={port}"),
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("without a key"), "{stderr}");
    // With a key, the endpoint is on the WebSocket port unless told otherwise.
    let server = TestServer::start(config(app.addr, |c| {
        c.broadcast_key = Some("k".into());
        c.http_broadcast_port = 0;
    }))
    .await;
    assert_eq!(server.broadcast_addr(), server.addr);
    let auth = [("Authorization", "Bearer k")];
    assert_eq!(
        http(server.addr, "POST", "/_broadcast", &auth, &body)
            .await
            .0,
        201
    );
    assert_eq!(
        http(server.addr, "POST", "/_broadcast", &[], &body).await.0,
        401
    );
}

#[tokio::test]
async fn subscriptions_with_huge_identifiers_stop_at_the_session_state_budget() {
    const LIMIT: usize = 512 * 1024;
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    assert_eq!(server.server.node.config.max_session_state_size, LIMIT);

    // 30 identifiers of 60 KB: 1.8 MB of state asked for. (1,000 of them
    // held 175 MiB and made a 60 MB Disconnect call that the application
    // refused: gRPC's 4 MB limit; `unsubscribed` never ran.)
    let (mut c, sid) = connect_user(&server.url(), "hoarder").await;
    let (mut confirmed, mut rejected) = (0, 0);
    for i in 0..30 {
        let pad = format!("{i:02}{}", "p".repeat(60_000));
        c.subscribe(&json!({"channel": "QuietChannel", "pad": pad}).to_string())
            .await;
        loop {
            match c.recv().await["type"].as_str() {
                Some("confirm_subscription") => confirmed += 1,
                Some("reject_subscription") => rejected += 1,
                _ => continue, // the channel's hello
            }
            break;
        }
    }
    assert_eq!((confirmed, rejected), (8, 22), "8 x 60 KB fit in 512 KiB");
    // Rejected before reaching the application.
    let subscribes = |app: &AppServer| {
        app.app
            .commands()
            .iter()
            .filter(|m| m.command == "subscribe")
            .count()
    };
    assert_eq!(subscribes(&app), confirmed);
    // The session keeps working, and its Disconnect call is made, bounded.
    let id = c.join("small").await;
    c.perform(&id, json!({"action": "echo", "ok": 1})).await;
    assert_eq!(c.recv().await["message"]["echo"]["ok"], 1);
    c.close().await;
    server
        .eventually("Disconnect made", |_| app.app.disconnects().len() == 1)
        .await;
    let (call_sid, request) = app.app.disconnects().remove(0);
    assert_eq!(call_sid, sid);
    assert_eq!(request.subscriptions.len(), confirmed + 1);
    let size: usize = request.subscriptions.iter().map(String::len).sum();
    assert!(size <= LIMIT);

    // State the application adds from client data (here a 60 KB stream and
    // istate per room) cannot be refused beforehand: the session that
    // passes the budget is closed (invalid_request), its Disconnect made.
    let (mut c, _) = connect_user(&server.url(), "grower").await;
    let mut closed = None;
    for i in 0..30 {
        c.subscribe(&chat_identifier(&format!("{i:02}{}", "r".repeat(60_000))))
            .await;
        let (before, close) = loop {
            match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut c.ws))
                .await
                .expect("an answer")
            {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                    let m: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                    if m["type"] == "confirm_subscription" || m["type"] == "disconnect" {
                        break (m, None);
                    }
                }
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(f))) => {
                    break (serde_json::Value::Null, f);
                }
                _ => {}
            }
        };
        if before["type"] == "disconnect" {
            assert_eq!(
                before,
                json!({"type": "disconnect", "reason": "invalid_request", "reconnect": false})
            );
            closed = Some(i);
            break;
        }
        assert!(close.is_none());
    }
    let closed = closed.expect("the growing session was closed");
    server
        .eventually("its Disconnect made", |_| app.app.disconnects().len() == 2)
        .await;
    eprintln!(
        "session state budget (512 KiB): {confirmed} of 30 subscriptions with 60 KB identifiers accepted, {rejected} rejected before the application; Disconnect carried {size} bytes of identifiers; a session whose replies grew its state past the budget closed after {closed} subscriptions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_panics_is_cleaned_up_like_any_other() {
    // The reproduction from the issue: an absurd request timeout, which
    // validation now refuses at start, set here behind its back so that the
    // real gRPC controller panics (Instant overflow) inside the session.
    let app = AppServer::start().await;
    let mut c = config(app.addr, |c| c.max_conn = 1);
    c.rpc_command_timeout = u64::MAX;
    c.rpc_request_timeout = 0;
    assert!(c.validate().is_err(), "refused at start");
    let server = TestServer::start(c).await;
    for _ in 0..3 {
        // max_conn = 1: a session left counted would make this a 503.
        let mut client = connect_raw(&server.url(), Some("user=alice"), None).await;
        let (_, close) = client.recv_until_close().await;
        assert_eq!(u16::from(close.expect("a close frame").code), 1011);
        server
            .eventually("the session is no longer counted", |s| {
                s.server.node.open_sessions() == 0 && s.metric("ferrocable_clients") == 0.0
            })
            .await;
    }
    assert_eq!(server.metric("ferrocable_session_panics_total"), 3.0);
    let started = Instant::now();
    assert!(server.shutdown().await, "shutdown does not wait for them");
    eprintln!(
        "3 panicking sessions cleaned up; shutdown took {:?}",
        started.elapsed()
    );
}

/// The next frame the server sends on a raw socket: (opcode, payload), or
/// None when the connection ends first.
async fn server_frame(s: &mut tokio::net::TcpStream) -> Option<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await.ok()?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            s.read_exact(&mut ext).await.ok()?;
            u16::from_be_bytes(ext) as usize
        }
        127 => {
            let mut ext = [0u8; 8];
            s.read_exact(&mut ext).await.ok()?;
            u64::from_be_bytes(ext) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.ok()?;
    Some((head[0] & 0x0f, payload))
}

/// Reads past data frames to the server's close frame; its code, or None
/// when the connection ended without one (what clients report as 1006).
async fn close_code(s: &mut tokio::net::TcpStream) -> Option<u16> {
    tokio::time::timeout(WAIT, async {
        while let Some((opcode, payload)) = server_frame(s).await {
            if opcode == 0x8 {
                return payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            }
        }
        None
    })
    .await
    .expect("the server answers within 5 s")
}

#[tokio::test]
async fn closes_are_answered_and_protocol_violations_get_their_codes() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    // A client's close is answered with a close frame (its code echoed).
    let mut s = raw_ws(server.addr).await;
    s.write_all(&frame(0x8, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut s).await, Some(1000));
    let mut s = raw_ws(server.addr).await;
    s.write_all(&frame(0x8, &4001u16.to_be_bytes()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut s).await, Some(4001));
    // Text that is not UTF-8: 1007.
    let mut s = raw_ws(server.addr).await;
    s.write_all(&frame(0x1, &[0x7b, 0xff, 0xfe, 0x7d]))
        .await
        .unwrap();
    assert_eq!(close_code(&mut s).await, Some(1007));
    // Reserved bits, an unmasked frame, an unknown opcode: 1002.
    let mut rsv = frame(0x1, b"{}");
    rsv[0] |= 0x40;
    let unmasked = vec![0x81, 0x02, b'{', b'}'];
    let unknown = frame(0x3, b"x");
    for bad in [rsv, unmasked, unknown] {
        let mut s = raw_ws(server.addr).await;
        s.write_all(&bad).await.unwrap();
        assert_eq!(close_code(&mut s).await, Some(1002), "{bad:?}");
    }
    // Everyone else is still served.
    let (mut c, _) = connect_user(&server.url(), "bystander").await;
    c.join("1").await;
}

/// One raw request; the status line and headers of the answer.
async fn raw_request(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(WAIT, s.read(&mut buf)).await.unwrap() {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn handshakes_are_validated_per_rfc_6455() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let addr = server.addr;
    let handshake = |version: &str, host: &str, extra: &str| {
        format!(
            "GET /cable {version}\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Cookie: user=alice\r\n{extra}\r\n"
        )
    };
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let v13 = "Sec-WebSocket-Version: 13\r\n";
    let ok = raw_request(
        addr,
        &handshake("HTTP/1.1", &addr.to_string(), &format!("{key}{v13}")),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");
    for (what, request, status) in [
        (
            "no key",
            handshake("HTTP/1.1", &addr.to_string(), v13),
            "400",
        ),
        (
            "empty key",
            handshake(
                "HTTP/1.1",
                &addr.to_string(),
                &format!("Sec-WebSocket-Key: \r\n{v13}"),
            ),
            "400",
        ),
        (
            "short key",
            handshake(
                "HTTP/1.1",
                &addr.to_string(),
                &format!("Sec-WebSocket-Key: c2hvcnQ=\r\n{v13}"),
            ),
            "400",
        ),
        (
            "two keys",
            handshake(
                "HTTP/1.1",
                &addr.to_string(),
                &format!("{key}Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n{v13}"),
            ),
            "400",
        ),
        (
            "version 8",
            handshake(
                "HTTP/1.1",
                &addr.to_string(),
                &format!("{key}Sec-WebSocket-Version: 8\r\n"),
            ),
            "426",
        ),
        (
            "no version",
            handshake("HTTP/1.1", &addr.to_string(), key),
            "426",
        ),
        (
            "HTTP/1.0",
            handshake("HTTP/1.0", &addr.to_string(), &format!("{key}{v13}")),
            "400",
        ),
        (
            "malformed Host",
            handshake("HTTP/1.1", "exa mple.com", &format!("{key}{v13}")),
            "400",
        ),
    ] {
        let answer = raw_request(addr, &request).await;
        assert_eq!(answer.split(' ').nth(1), Some(status), "{what}: {answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("sec-websocket-version: 13"),
            "{what}: the answer names the version spoken: {answer}"
        );
    }
    // None of them reached the application: only the good handshake connected.
    let connects = app
        .app
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Connect { .. }))
        .count();
    assert_eq!(connects, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_calls_that_hang_never_starve_connects() {
    use std::sync::atomic::Ordering::SeqCst;
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| c.rpc_command_timeout = 5000)).await;
    let concurrency = server.server.node.config.rpc_concurrency;
    let mut leaving = Vec::new();
    for i in 0..300 {
        leaving.push(connect_user(&server.url(), &format!("leaving{i}")).await.0);
    }
    // The application's `disconnect` now hangs; 300 sessions close at once.
    app.app.hang_disconnects.store(true, SeqCst);
    drop(leaving);
    server
        .eventually("Disconnect calls under way", |_| {
            app.app.disconnects_in_flight.load(SeqCst) >= 1
        })
        .await;
    // Newcomers are welcomed meanwhile (before: every RPC slot held by a
    // hanging Disconnect, each connect waited for one and timed out into
    // `server_restart`).
    let mut latencies = Vec::new();
    for i in 0..20 {
        let started = Instant::now();
        let (mut c, _) = connect_user(&server.url(), &format!("newcomer{i}")).await;
        latencies.push(started.elapsed());
        c.join("1").await;
    }
    let most = app.app.max_disconnects_in_flight.load(SeqCst);
    eprintln!(
        "300 hanging Disconnect calls: at most {most} of {concurrency} RPC slots; newcomers' welcome: {}",
        summary(latencies)
    );
    assert!(most <= concurrency / 4, "{most} Disconnects at once");
}

/// Waits until `f` holds, checking every 10 ms, for at most `bound`.
async fn wait_until(what: &str, bound: Duration, f: impl Fn() -> bool) {
    let deadline = Instant::now() + bound;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A slow application (its Disconnect held, then 20 ms each) and 60 sessions
/// closing at once into a backlog of 8: the calls beyond the backlog are
/// dropped and counted, the closing sessions end (their `max_conn` places
/// free, so 20 newcomers fit in 64 beside 60 closed), the queued calls are
/// all made; at shutdown nothing is dropped and every call is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_application_overflows_the_disconnect_backlog_without_blocking_anyone() {
    use std::sync::atomic::Ordering::SeqCst;
    const BACKLOG: usize = 8;
    const LEAVING: usize = 60;
    const NEWCOMERS: usize = 20;
    let bound = Duration::from_secs(60);
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| {
        c.rpc_concurrency = 4; // a quarter: one Disconnect at a time
        c.disconnect_backlog = BACKLOG;
        c.disconnect_rate = 0;
        c.max_conn = 64;
        c.shutdown_timeout = 60;
    }))
    .await;
    let metrics = server.server.node.metrics.clone();
    let metric = |name: &str| metric_value(&metrics.render(), name) as usize;
    let mut leaving = Vec::new();
    for i in 0..LEAVING {
        leaving.push(connect_user(&server.url(), &format!("leaving{i}")).await.0);
    }
    app.app.hold_disconnects.store(true, SeqCst);
    drop(leaving);
    // Every session is gone, and each of its calls is either in the
    // application (held), waiting in the queue, or dropped.
    let arrived = || app.app.disconnects().len();
    wait_until(
        "the leaving sessions to end and their calls settle",
        bound,
        || {
            metric("ferrocable_clients") == 0
                && arrived()
                    + metric("ferrocable_disconnect_queue")
                    + metric("ferrocable_disconnect_dropped_total")
                    == LEAVING
        },
    )
    .await;
    let dropped = metric("ferrocable_disconnect_dropped_total");
    // Held: one call in the application, one taken by the queue's worker
    // waiting for its slot, the backlog full; the rest dropped.
    assert_eq!(dropped, LEAVING - BACKLOG - 2, "dropped");
    assert_eq!(
        metric("anycable_go_disconnect_queue_size"),
        BACKLOG + 1,
        "queued"
    );
    // Served meanwhile: newcomers connect (within max_conn: the closed
    // sessions hold no place), subscribe and get their replies.
    let mut newcomers = Vec::new();
    for i in 0..NEWCOMERS {
        let (mut c, _) = connect_user(&server.url(), &format!("newcomer{i}")).await;
        c.join("1").await;
        newcomers.push(c);
    }
    assert_eq!(metric("ferrocable_clients"), NEWCOMERS);
    // The application catches up (slowly): every queued call is made.
    app.app.disconnect_delay_ms.store(20, SeqCst);
    app.app.release_disconnects();
    wait_until("the queued Disconnect calls", bound, || {
        arrived() == LEAVING - dropped && metric("ferrocable_disconnect_queue") == 0
    })
    .await;
    let sids: std::collections::HashSet<_> = app
        .app
        .disconnects()
        .into_iter()
        .map(|(sid, _)| sid)
        .collect();
    assert_eq!(
        sids.len(),
        LEAVING - dropped,
        "one call per session, none twice"
    );
    // Shutdown with the application held again: 20 sessions close at once
    // into the backlog of 8, and wait for room instead of being dropped.
    app.app.hold_disconnects.store(true, SeqCst);
    let shutdown = tokio::spawn(server.shutdown());
    for mut c in newcomers {
        let (_, close) = c.recv_until_close().await;
        assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    }
    // All 20 are in the application or queued (8 in the backlog, the
    // rest waiting for room): none dropped.
    wait_until("the newcomers' calls under way or waiting", bound, || {
        arrived() + metric("ferrocable_disconnect_queue") == LEAVING - dropped + NEWCOMERS
    })
    .await;
    assert_eq!(metric("ferrocable_disconnect_dropped_total"), dropped);
    app.app.release_disconnects();
    assert!(shutdown.await.unwrap(), "shutdown within shutdown_timeout");
    assert_eq!(arrived(), LEAVING - dropped + NEWCOMERS, "every call made");
    assert_eq!(metric("ferrocable_disconnect_dropped_total"), dropped);
    eprintln!(
        "backlog {BACKLOG}, {LEAVING} closed at once behind a held application: {dropped} dropped, \
         {} made; {NEWCOMERS} newcomers served meanwhile; {NEWCOMERS} closed at shutdown, all made",
        LEAVING - dropped
    );
}
