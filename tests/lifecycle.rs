//! Failures and endings: the RPC server absent or going away, slow clients,
//! graceful shutdown.

mod common;

use common::*;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[tokio::test]
async fn rpc_absent_then_present() {
    let port = reserve_port();
    let rpc = format!("127.0.0.1:{port}").parse().unwrap();
    let server = TestServer::start(config(rpc, |c| c.rpc_request_timeout = 1000)).await;

    let started = Instant::now();
    let mut client = connect_raw(
        &server.url(),
        Some("user=alice"),
        Some("actioncable-v1-json"),
    )
    .await;
    let (frames, close) = client.recv_until_close().await;
    assert_eq!(
        frames,
        vec![json!({"type": "disconnect", "reason": "server_restart", "reconnect": true})]
    );
    assert!(close.is_some());
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "answered within the timeout: {:?}",
        started.elapsed()
    );
    assert!(
        server.metric("ferrocable_rpc_retries_total") >= 1.0,
        "Unavailable was retried"
    );
    assert_eq!(http(server.addr, "GET", "/health", &[], "").await.0, 200);

    // The application comes up: new clients are served, no restart needed.
    let app = AppServer::start_on(port, ChatApp::default()).await;
    let (mut client, _) = connect_user(&server.url(), "alice").await;
    client.join("1").await;
    assert!(!app.app.calls().is_empty());
}

#[tokio::test]
async fn established_sessions_survive_an_rpc_outage() {
    let port = reserve_port();
    let app = AppServer::start_on(port, ChatApp::default()).await;
    let server = TestServer::start(config(app.addr, |c| c.rpc_request_timeout = 1000)).await;
    let (mut client, _) = connect_user(&server.url(), "alice").await;
    let id = client.join("1").await;

    app.stop().await;
    // Streams keep flowing without the application.
    let body = json!({"stream": "chat_1", "data": "1"}).to_string();
    assert_eq!(
        http(server.broadcast_addr(), "POST", "/_broadcast", &[], &body)
            .await
            .0,
        201
    );
    assert_eq!(client.recv().await["message"], 1);
    // A perform fails (logged); the socket stays open.
    client.perform(&id, json!({"action": "echo", "n": 1})).await;
    client.expect_silence(Duration::from_millis(1500)).await;

    let app = AppServer::start_on(port, ChatApp::default()).await;
    client.perform(&id, json!({"action": "echo", "n": 2})).await;
    assert_eq!(client.recv().await["message"]["echo"]["n"], 2);
    drop(app);
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_is_disconnected_too_slow_with_bounded_memory() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| c.ws_max_pending_size = 1 << 20)).await;
    let (mut stuck, _) = connect_user(&server.url(), "stuck").await;
    stuck.join("1").await;
    let (mut reader, _) = connect_user(&server.url(), "reader").await;
    reader.join("1").await;

    const N: usize = 2000;
    // The reader is sent a batch that fits its budget, then the next once
    // it has read that one: it keeps up however slow the machine is, while
    // the stuck client's queue goes past the limit.
    const BATCH: usize = 16;
    let payload = "x".repeat(32 * 1024);
    let received = Arc::new(AtomicUsize::new(0));
    let reading = tokio::spawn({
        let received = received.clone();
        async move {
            for _ in 0..N {
                let m = reader.recv().await;
                assert_eq!(m["message"].as_str().map(str::len), Some(32 * 1024));
                received.fetch_add(1, Ordering::Release);
            }
            reader
        }
    });
    let rss_before = rss_bytes();
    let mut peak = rss_before;
    for batch in 0..N / BATCH {
        for _ in 0..BATCH {
            let delivery = server.server.node.hub.broadcast("chat_1", &payload, None);
            assert!(delivery.queued >= 1);
        }
        peak = peak.max(rss_bytes());
        let sent = (batch + 1) * BATCH;
        tokio::time::timeout(WAIT, async {
            while received.load(Ordering::Acquire) < sent {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the reader did not get message {sent} within {WAIT:?}"));
    }
    let mut reader = tokio::time::timeout(WAIT, reading).await.unwrap().unwrap();
    let growth = peak.saturating_sub(rss_before);
    eprintln!(
        "broadcast {} MiB to a stuck client; RSS grew by {} KiB",
        N * payload.len() / 1024 / 1024,
        growth / 1024
    );
    assert!(
        growth < 32 * 1024 * 1024,
        "memory grew by {growth} bytes: the queue is not bounded"
    );
    server
        .eventually("too_slow counted", |s| {
            s.metric("ferrocable_slow_client_disconnects_total") == 1.0
        })
        .await;
    server
        .eventually("stuck session gone", |s| {
            s.metric("ferrocable_clients") == 1.0
        })
        .await;
    assert_eq!(server.server.node.hub.subscriber_count("chat_1"), 1);
    // The stuck client, reading at last, finds the connection closed.
    let closed = tokio::time::timeout(WAIT, async {
        use futures_util::StreamExt;
        while let Some(Ok(m)) = stuck.ws.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok());
    // The reading client is still served.
    let body = json!({"stream": "chat_1", "data": "after"}).to_string();
    assert_eq!(
        http(server.broadcast_addr(), "POST", "/_broadcast", &[], &body)
            .await
            .0,
        201
    );
    assert_eq!(reader.recv().await["message"], "after");
}

/// `ws_write_timeout` (anycable-go's write deadline): with no byte limit
/// (`ws_max_pending_size=0`), a client that does not read is still cut once
/// a write has waited that long, and counted under both names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_past_ws_write_timeout_disconnects_the_client() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| {
        c.ws_max_pending_size = 0;
        c.ws_write_timeout = 1;
    }))
    .await;
    let (mut stuck, _) = connect_user(&server.url(), "stuck").await;
    stuck.join("1").await;
    let payload = "x".repeat(64 * 1024);
    // Enough to fill the socket buffers on both sides; then writes wait.
    for _ in 0..200 {
        server.server.node.hub.broadcast("chat_1", &payload, None);
    }
    server
        .eventually("the write timeout counted", |s| {
            s.metric("ferrocable_write_timeouts_total") == 1.0
                && s.metric("anycable_go_timeout_server_msg_total") == 1.0
        })
        .await;
    server
        .eventually("the stuck session gone", |s| {
            s.metric("ferrocable_clients") == 0.0
        })
        .await;
}

#[tokio::test]
async fn shutdown_sends_server_restart_and_makes_one_disconnect_per_session() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |_| {})).await;
    let mut clients = Vec::new();
    let mut sids = HashSet::new();
    for i in 0..20 {
        let (mut c, sid) = connect_user(&server.url(), &format!("user{i}")).await;
        c.join("1").await;
        clients.push(c);
        sids.insert(sid);
    }
    // One rejected connection: it never connected, so no Disconnect for it.
    let mut rejected = connect_raw(&server.url(), None, None).await;
    let _ = rejected.recv_until_close().await;

    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| tokio::spawn(async move { c.recv_until_close().await }))
        .collect();
    let started = Instant::now();
    assert!(
        server.shutdown().await,
        "shutdown finished within shutdown_timeout"
    );
    eprintln!("shutdown of 20 sessions took {:?}", started.elapsed());
    for reader in readers {
        let (frames, close) = reader.await.unwrap();
        assert_eq!(
            frames,
            vec![json!({"type": "disconnect", "reason": "server_restart", "reconnect": true})]
        );
        assert_eq!(u16::from(close.expect("close frame").code), 1001);
    }
    let disconnects = app.app.disconnects();
    assert_eq!(
        disconnects.len(),
        20,
        "exactly one Disconnect per connected session"
    );
    let called: HashSet<_> = disconnects.iter().map(|(sid, _)| sid.clone()).collect();
    assert_eq!(called, sids);
}

#[tokio::test]
async fn shutdown_is_bounded_when_the_application_is_gone() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| {
        c.shutdown_timeout = 2;
        c.rpc_command_timeout = 5000;
    }))
    .await;
    let (_client, _) = connect_user(&server.url(), "alice").await;
    app.stop().await;
    let started = Instant::now();
    server.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
}

/// A client that stops reading once the socket buffers are full, with fewer
/// bytes pending than ws_max_pending_size (the server is started with
/// [`STALL_BUDGET`]): its writer is blocked mid-write.
const STALL_BUDGET: usize = 64 << 20;

async fn stalled_client(server: &TestServer) -> Client {
    let (mut stuck, _) = connect_user(&server.url(), "stuck").await;
    stuck.join("1").await;
    let payload = "y".repeat(512 * 1024);
    for _ in 0..48 {
        server.server.node.hub.broadcast("chat_1", &payload, None);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stuck
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_and_remote_disconnect_do_not_wait_for_a_client_that_stopped_reading() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| {
        c.shutdown_timeout = 10;
        c.ws_max_pending_size = STALL_BUDGET;
    }))
    .await;
    let _stuck = stalled_client(&server).await;
    let cmd = json!({"command": "disconnect", "payload": {"identifier": "{\"user\":\"stuck\"}"}});
    assert_eq!(
        http(
            server.broadcast_addr(),
            "POST",
            "/_broadcast",
            &[],
            &cmd.to_string()
        )
        .await
        .0,
        201
    );
    server
        .eventually("remote disconnect took effect", |s| {
            s.metric("ferrocable_clients") == 0.0
        })
        .await;

    let _stuck2 = stalled_client(&server).await;
    let started = Instant::now();
    assert!(
        server.shutdown().await,
        "shutdown finished within shutdown_timeout"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        app.app.disconnects().len(),
        2,
        "one Disconnect per session, stalled or not"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_still_says_goodbye_to_everyone() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| c.shutdown_timeout = 10)).await;
    let mut sids = HashSet::new();
    let mut readers = Vec::new();
    for i in 0..50 {
        let (mut c, sid) = connect_user(&server.url(), &format!("busy{i}")).await;
        c.join("load").await;
        sids.insert(sid);
        readers.push(tokio::spawn(async move { c.recv_until_close().await }));
    }
    // Broadcasts keep flowing while the server shuts down.
    let node = server.server.node.clone();
    let load = tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            node.hub
                .broadcast("chat_load", &format!("{{\"n\":{n}}}"), None);
            n += 1;
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    assert!(server.shutdown().await);
    let took = started.elapsed();
    load.abort();
    for reader in readers {
        let (frames, close) = reader.await.unwrap();
        assert!(frames.len() > 1, "data was flowing");
        assert_eq!(
            frames.last().unwrap(),
            &json!({"type": "disconnect", "reason": "server_restart", "reconnect": true})
        );
        assert_eq!(u16::from(close.expect("close frame").code), 1001);
    }
    let called: HashSet<_> = app
        .app
        .disconnects()
        .into_iter()
        .map(|(sid, _)| sid)
        .collect();
    assert_eq!(called, sids);
    assert_eq!(app.app.disconnects().len(), 50);
    eprintln!("shutdown of 50 sessions under a broadcast every 0.5 ms took {took:?}");
}
