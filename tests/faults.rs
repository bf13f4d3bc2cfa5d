//! Bad input, limits and security: each gets a defined answer, and everyone
//! else keeps being served.

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

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
    let metrics_port = reserve_port();
    let server = TestServer::start(config(app.addr, |c| {
        c.metrics_port = metrics_port;
        c.metrics_host = "127.0.0.1".into();
    }))
    .await;
    let metrics_addr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    wait_listening(metrics_addr).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_dropped_with_rst_are_all_cleaned_up() {
    // FAULTS_RST_CLIENTS=10000 for the full-size run (RELIABILITY.md).
    let n: usize = std::env::var("FAULTS_RST_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let app = AppServer::start().await;
    // Disconnect calls unpaced: this measures how fast everything is cleaned
    // up; their pacing (disconnect_rate) is tested in tests/hardening.rs.
    // The default backlog (65,536) holds every session closing at once, so
    // none is dropped (what a full backlog does is tested there too).
    let binary = Binary::start(
        app.addr,
        &["--metrics_http=/metrics", "--disconnect_rate=0"],
    )
    .await;
    let (pid, addr) = (binary.pid(), binary.addr);
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
    // Sockets are closed as their sessions end: wait for the count to come
    // back (generous bound; the assertion below says what was left).
    let deadline = Instant::now() + Duration::from_secs(30);
    while fds_of(pid) > fds_before + 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    // Once the sessions are gone, the freed memory goes back to the OS (at
    // least half of what the spike took), rather than staying at the peak.
    if n >= 1000 && cfg!(all(target_os = "linux", target_env = "gnu")) {
        let spike = second.saturating_sub(rss_before);
        let deadline = Instant::now() + Duration::from_secs(30);
        while rss_kib(pid) > rss_before + spike / 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let trimmed = rss_kib(pid);
        eprintln!("RSS after the spike: {second} -> {trimmed} KiB (baseline {rss_before})");
        assert!(
            trimmed <= rss_before + spike / 2,
            "memory returned to the OS after the spike: {rss_before} -> {second} -> {trimmed} KiB"
        );
    }
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let app = AppServer::start().await;
    let binary = Binary::start(
        app.addr,
        &[
            "--secret=SUPERSECRET-abc123",
            "--broadcast_key=BROADCASTKEY-xyz789",
            "--log_level=trace",
        ],
    )
    .await;
    let addr = binary.broadcast_addr;
    let (mut c, _) = connect_user(&binary.url(), "alice").await;
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
    let help = std::process::Command::new(BINARY)
        .arg("--help")
        .env("ANYCABLE_SECRET", "ENVSECRET-456")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&help.stdout).contains("ENVSECRET-456"),
        "--help hides secret values"
    );
    let logs = binary.stop().await;
    assert!(logs.len() > 200, "trace logs were written");
    for secret in ["SUPERSECRET-abc123", "BROADCASTKEY-xyz789"] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
    let _ = c.ws.next().await;
}
