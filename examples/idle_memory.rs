//! Measures what an idle connection costs the `ferrocable` binary: resident
//! memory (VmRSS from /proc) before and after N clients connect, subscribe
//! and sit idle, divided by N. It runs the release binary twice, with
//! the buffer defaults (1 KiB reads and writes) and with tungstenite's
//! (128 KiB), and prints both side by side: since the server frames its
//! WebSockets itself (src/websocket.rs) neither size is kept per
//! connection, so the two should hold about the same (with tungstenite's
//! stream the second held 136 KiB per connection against 9.3).
//!
//! cargo build --release && cargo run --release --example idle_memory -- [N]
//!
//! The application behind the binary is the small one below (every
//! connection welcome, every subscription confirmed on a stream), served
//! over the real `anycable.RPC` contract in this process.

use ferrocable::rpc::pb;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long the binary may take to start.
const START: Duration = Duration::from_secs(30);

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn measure(label: &str, extra: &[&str], n: usize, rpc: SocketAddr) -> f64 {
    let bin = concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/ferrocable");
    // Port 0: the binary's `listening addr=…` log line says which it got.
    let mut child = tokio::process::Command::new(bin)
        .args([
            "--host=127.0.0.1",
            "--port=0",
            &format!("--rpc_host={rpc}"),
            "--broadcast_adapter=http",
        ])
        .args(["--log_level=info", "--rpc_concurrency=64"])
        .args(extra)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("build the release binary first: cargo build --release");
    let pid = child.id().unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(START, async {
        while let Some(line) = log.next_line().await.unwrap() {
            if let Some(addr) = line.split(" listening addr=").nth(1) {
                return addr.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("the binary exited before listening");
    })
    .await
    .expect("the binary did not start");
    // The rest of the log: warnings and errors only, to our stderr.
    tokio::spawn(async move {
        while let Ok(Some(line)) = log.next_line().await {
            if line.contains("WARN") || line.contains("ERROR") {
                eprintln!("{line}");
            }
        }
    });
    let url = format!("ws://{addr}/cable");
    // Warm up (runtime threads, RPC channel) before the baseline reading.
    let mut warm = connect(&url).await;
    warm.close(None).await.ok();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);

    let mut clients = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let mut ws = connect(&url).await;
        let id = json!({"channel": "ChatChannel", "room": (i % 10).to_string()}).to_string();
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

async fn connect(url: &str) -> Ws {
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
    let app = App::start().await;
    println!("idle connections, each subscribed to one channel (RSS of the server process, KiB)");
    println!(
        "{:<44} {:>7} {:>12} {:>12} {:>10}",
        "configuration", "clients", "rss before", "rss after", "KiB/conn"
    );
    let ours = measure("defaults (1 KiB reads and writes)", &[], n, app).await;
    let baseline = measure(
        "tungstenite's defaults (128 KiB)",
        &["--read_buffer_size=131072", "--write_buffer_size=131072"],
        n,
        app,
    )
    .await;
    println!("128 KiB / defaults: {:.2}x", baseline / ours.max(0.001));
}

/// The application: every connection welcome, every subscription to a room
/// confirmed and streamed (`room_<room>`), as a chat would.
struct App;

impl App {
    /// Serves it on 127.0.0.1, on a port the OS picks; returns the address.
    async fn start() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(pb::rpc_server::RpcServer::new(App))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        addr
    }
}

#[tonic::async_trait]
impl pb::rpc_server::Rpc for App {
    async fn connect(
        &self,
        _: tonic::Request<pb::ConnectionRequest>,
    ) -> Result<tonic::Response<pb::ConnectionResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::ConnectionResponse {
            status: pb::Status::Success as i32,
            identifiers: json!({"user": "idle"}).to_string(),
            transmissions: vec![r#"{"type":"welcome"}"#.into()],
            ..Default::default()
        }))
    }

    async fn command(
        &self,
        request: tonic::Request<pb::CommandMessage>,
    ) -> Result<tonic::Response<pb::CommandResponse>, tonic::Status> {
        let message = request.into_inner();
        let params: Value = serde_json::from_str(&message.identifier).unwrap_or(Value::Null);
        let room = params["room"].as_str().unwrap_or("lobby");
        let confirm =
            json!({"type": "confirm_subscription", "identifier": message.identifier}).to_string();
        Ok(tonic::Response::new(match message.command.as_str() {
            "subscribe" => pb::CommandResponse {
                status: pb::Status::Success as i32,
                streams: vec![format!("room_{room}")],
                transmissions: vec![confirm],
                ..Default::default()
            },
            _ => pb::CommandResponse {
                status: pb::Status::Success as i32,
                ..Default::default()
            },
        }))
    }

    async fn disconnect(
        &self,
        _: tonic::Request<pb::DisconnectRequest>,
    ) -> Result<tonic::Response<pb::DisconnectResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::DisconnectResponse {
            status: pb::Status::Success as i32,
            error_msg: String::new(),
        }))
    }
}
