//! Bad input, limits and security: each gets a defined answer, and everyone
//! else keeps being served.

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A WebSocket handshake by hand, for frames no client library would send.
async fn raw_ws(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /cable HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: user=raw\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    s
}

/// One masked client frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len < 65536 {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mask = [1u8, 2, 3, 4];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads until the server closes the TCP connection; returns whether it did within 5 s.
async fn closed_by_server(mut s: TcpStream) -> bool {
    let mut buf = vec![0u8; 65536];
    tokio::time::timeout(WAIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn invalid_utf8_deep_json_and_huge_identifiers_get_defined_answers() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let (mut bystander, _) = connect_user(&server.url(), "bystander").await;
    let id = bystander.join("1").await;

    // Invalid UTF-8 in a text frame: the protocol is violated, that socket is closed.
    let mut raw = raw_ws(server.addr).await;
    raw.write_all(&frame(0x1, &[0x7b, 0xff, 0xfe, 0x7d]))
        .await
        .unwrap();
    assert!(
        closed_by_server(raw).await,
        "invalid UTF-8 closes the connection"
    );

    // JSON nested 10,000 deep (serde's recursion limit): malformed, counted, the socket lives on.
    let (mut deep, _) = connect_user(&server.url(), "deep").await;
    let before = server.metric("ferrocable_failed_client_msg_total");
    deep.send_text(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)))
        .await;
    server
        .eventually("deep JSON counted", |s| {
            s.metric("ferrocable_failed_client_msg_total") == before + 1.0
        })
        .await;
    deep.join("2").await;

    // A 1 MB identifier is over max_message_size (64 KiB): close 1009.
    let (mut huge, _) = connect_user(&server.url(), "huge").await;
    huge.subscribe(&format!(
        "{{\"channel\":\"ChatChannel\",\"room\":\"{}\"}}",
        "r".repeat(1 << 20)
    ))
    .await;
    let (_, close) = huge.recv_until_close().await;
    assert_eq!(u16::from(close.expect("close frame").code), 1009);

    bystander
        .perform(&id, json!({"action": "echo", "ok": 1}))
        .await;
    assert_eq!(bystander.recv().await["message"]["echo"]["ok"], 1);
}

#[tokio::test]
async fn header_floods_are_refused_at_the_handshake() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let headers: Vec<(String, String)> = (0..500)
        .map(|i| (format!("x-flood-{i}"), "y".repeat(100)))
        .collect();
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, _) = http(server.addr, "GET", "/cable", &refs, "").await;
    assert_eq!(status, 431, "too many headers");
    assert_eq!(http(server.addr, "GET", "/health", &[], "").await.0, 200);
}

#[tokio::test]
async fn max_conn_and_max_subscriptions_caps() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| {
        c.max_conn = 2;
        c.max_subscriptions = 2;
    }))
    .await;
    let (mut a, _) = connect_user(&server.url(), "a").await;
    let (b, _) = connect_user(&server.url(), "b").await;
    let refused = tokio_tungstenite::connect_async(server.url()).await;
    assert!(
        matches!(refused, Err(tokio_tungstenite::tungstenite::Error::Http(ref r)) if r.status() == 503),
        "{refused:?}"
    );
    b.close().await;
    server
        .eventually("a slot is free", |s| s.server.node.open_sessions() == 1)
        .await;
    let (_c, _) = connect_user(&server.url(), "c").await;

    a.join("1").await;
    a.join("2").await;
    let third = chat_identifier("3");
    a.subscribe(&third).await;
    assert_eq!(
        a.recv().await,
        json!({"type": "reject_subscription", "identifier": third})
    );
}

#[tokio::test]
async fn metrics_can_live_on_their_own_port() {
    let app = AppServer::start().await;
    let metrics_port = free_port();
    let server = TestServer::start(config(app.addr, |c| {
        c.metrics_port = metrics_port;
        c.metrics_host = "127.0.0.1".into();
    }))
    .await;
    let metrics_addr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(metrics_addr).await.is_err() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = http(metrics_addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(body.contains("ferrocable_clients"));
    assert_eq!(
        http(metrics_addr, "GET", "/cable", &[], "").await.0,
        404,
        "no WebSocket on the metrics port"
    );
    assert_eq!(
        http(server.addr, "GET", "/metrics", &[], "").await.0,
        404,
        "no metrics on the public port"
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

fn fds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The real binary, for measuring its own memory and descriptors.
async fn spawn_binary(
    rpc: std::net::SocketAddr,
    extra: &[&str],
) -> (tokio::process::Child, std::net::SocketAddr) {
    let port = free_port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferrocable"))
        .args([
            "--host=127.0.0.1",
            &format!("--port={port}"),
            &format!("--rpc_host={rpc}"),
            "--broadcast_adapter=http",
        ])
        .args(extra)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "the binary did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_dropped_with_rst_are_all_cleaned_up() {
    // FAULTS_RST_CLIENTS=10000 for the full-size run (RELIABILITY.md).
    let n: usize = std::env::var("FAULTS_RST_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let app = AppServer::start().await;
    let (child, addr) = spawn_binary(app.addr, &["--metrics_http=/metrics"]).await;
    let pid = child.id().unwrap();
    let url = format!("ws://{addr}/cable");
    let metric = |name: &'static str| async move {
        metric_value(&http(addr, "GET", "/metrics", &[], "").await.1, name)
    };
    let (warm, _) = connect_user(&url, "warm").await;
    warm.close().await;
    let (fds_before, rss_before) = (fds_of(pid), rss_kib(pid));
    let mut peaks = Vec::new();
    let mut disconnected = 1;
    // Two rounds: the second reuses what the first freed (no leak).
    for round in 0..2 {
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let (mut c, _) = connect_user(&url, &format!("r{round}u{i}")).await;
            c.join("rst").await;
            clients.push(c);
        }
        peaks.push((fds_of(pid), rss_kib(pid)));
        let started = Instant::now();
        for c in clients {
            // Abortive close: SO_LINGER 0, so the kernel sends RST and no close frame.
            if let tokio_tungstenite::MaybeTlsStream::Plain(s) = c.ws.get_ref() {
                socket2::SockRef::from(s)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
            drop(c);
        }
        disconnected += n;
        let deadline = Instant::now() + Duration::from_secs(30);
        while (metric("ferrocable_clients").await > 0.0
            || app.app.disconnects().len() < disconnected)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "round {round}: {n} RST drops cleaned up in {:?}",
            started.elapsed()
        );
        assert_eq!(
            metric("ferrocable_clients").await,
            0.0,
            "every session cleaned up"
        );
        assert_eq!(
            metric("ferrocable_streams").await,
            0.0,
            "no stream left in the hub"
        );
        assert_eq!(
            app.app.disconnects().len(),
            disconnected,
            "one Disconnect per session"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fds_after, rss_after) = (fds_of(pid), rss_kib(pid));
    eprintln!(
        "RST drop of 2 x {n} sessions: fds {fds_before} -> {:?} -> {fds_after}; RSS {rss_before} -> {:?} -> {rss_after} KiB",
        peaks.iter().map(|p| p.0).collect::<Vec<_>>(),
        peaks.iter().map(|p| p.1).collect::<Vec<_>>()
    );
    assert!(
        fds_after <= fds_before + 4,
        "file descriptors back to the baseline"
    );
    let (first, second) = (peaks[0].1, peaks[1].1);
    assert!(
        second < first + (first - rss_before) / 4,
        "the second round reuses the first's memory: {first} -> {second}"
    );
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let app = AppServer::start().await;
    let (mut child, addr) = spawn_binary(
        app.addr,
        &[
            "--secret=SUPERSECRET-abc123",
            "--broadcast_key=BROADCASTKEY-xyz789",
            "--log_level=trace",
        ],
    )
    .await;
    let url = format!("ws://{addr}/cable");
    let (mut c, _) = connect_user(&url, "alice").await;
    c.join("1").await;
    let body = json!({"stream": "chat_1", "data": "1"}).to_string();
    assert_eq!(
        http(
            addr,
            "POST",
            "/_broadcast",
            &[("Authorization", "Bearer wrong")],
            &body
        )
        .await
        .0,
        401
    );
    assert_eq!(
        http(
            addr,
            "POST",
            "/_broadcast",
            &[("Authorization", "Bearer BROADCASTKEY-xyz789")],
            &body
        )
        .await
        .0,
        201
    );
    assert_eq!(c.recv().await["message"], 1);
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_ferrocable"))
        .arg("--help")
        .env("ANYCABLE_SECRET", "ENVSECRET-456")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&help.stdout).contains("ENVSECRET-456"),
        "--help hides secret values"
    );
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .await
        .unwrap();
    assert!(logs.len() > 200, "trace logs were written");
    for secret in ["SUPERSECRET-abc123", "BROADCASTKEY-xyz789"] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
    let _ = c.ws.next().await;
}
