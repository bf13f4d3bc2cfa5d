//! Measures what an idle connection costs the `ferrocable` binary: resident
//! memory (VmRSS from /proc) before and after N clients connect, subscribe
//! and sit idle, divided by N. It runs the release binary twice, with
//! Ferrocable's buffer defaults and with tungstenite's defaults (128 KiB
//! read and write buffers) as the baseline, and prints both side by side.
//!
//! cargo build --release && cargo run --release --example idle_memory -- [N]

#[path = "../tests/common/mod.rs"]
mod common;

use common::{AppServer, WAIT, chat_identifier, free_port};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn measure(label: &str, extra: &[&str], n: usize, rpc: std::net::SocketAddr) -> f64 {
    let port = free_port();
    let bin = concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/ferrocable");
    let mut child = tokio::process::Command::new(bin)
        .args([
            "--host=127.0.0.1",
            &format!("--port={port}"),
            &format!("--rpc_host={rpc}"),
            "--broadcast_adapter=http",
        ])
        .args(["--log_level=warn", "--rpc_concurrency=64"])
        .args(extra)
        .kill_on_drop(true)
        .spawn()
        .expect("build the release binary first: cargo build --release");
    let pid = child.id().unwrap();
    let url = format!("ws://127.0.0.1:{port}/cable");
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Warm up (runtime threads, RPC channel) before the baseline reading.
    let mut warm = connect(&url).await;
    warm.close(None).await.ok();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);

    let mut clients = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let mut ws = connect(&url).await;
        let id = chat_identifier(&(i % 10).to_string());
        ws.send(Message::Text(
            json!({"command": "subscribe", "identifier": id})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
        clients.push(ws);
        if (i + 1) % 1000 == 0 {
            eprintln!(
                "  {label}: {} clients connected ({:.1?})",
                i + 1,
                started.elapsed()
            );
        }
    }
    // Read each client through its confirmation, then let everything settle.
    for ws in clients.iter_mut() {
        loop {
            let m = ws.next().await.unwrap().unwrap();
            if m.to_text().unwrap_or("").contains("confirm_subscription") {
                break;
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    let per_conn = (after.saturating_sub(before)) as f64 / n as f64;
    println!("{label:<44} {n:>7} {before:>12} {after:>12} {per_conn:>10.2}");
    drop(clients);
    child.kill().await.ok();
    per_conn
}

async fn connect(url: &str) -> common::Ws {
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", "user=idle".parse().unwrap());
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "actioncable-v1-json".parse().unwrap(),
    );
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), false)
        .await
        .unwrap();
    let welcome = ws.next().await.unwrap().unwrap();
    assert!(
        welcome.to_text().unwrap_or("").contains("welcome"),
        "expected a welcome, got {welcome:?}"
    );
    ws
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let app = AppServer::start().await;
    println!("idle connections, each subscribed to one channel (RSS of the server process, KiB)");
    println!(
        "{:<44} {:>7} {:>12} {:>12} {:>10}",
        "configuration", "clients", "rss before", "rss after", "KiB/conn"
    );
    let ours = measure("ferrocable defaults (1 KiB buffers)", &[], n, app.addr).await;
    let baseline = measure(
        "tungstenite defaults (128 KiB buffers)",
        &["--read_buffer_size=131072", "--write_buffer_size=131072"],
        n,
        app.addr,
    )
    .await;
    println!("baseline / ferrocable: {:.1}x", baseline / ours.max(0.001));
}
