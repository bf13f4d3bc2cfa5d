//! Real components for the integration tests: a redis-server and a
//! nats-server on reserved ports, a gRPC application server speaking the
//! real `anycable.RPC` contract (it plays the Rails app), the Ferrocable server on 127.0.0.1:0, the
//! `ferrocable` binary as a child process, WebSocket clients, raw HTTP over
//! TCP, and readings of a process (RSS, descriptors, signals).
#![allow(dead_code)]

pub mod tls;

use ferrocable::config::{BroadcastListener, Config};
use ferrocable::metrics::Metrics;
use ferrocable::rpc::RpcController;
use ferrocable::rpc::pb;
use ferrocable::server::Server;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(5);

/// A port on 127.0.0.1 for a server that must be told its port before it
/// binds (a child process, a listener the server opens itself); where a
/// server can bind port 0 and say which port it got, prefer that.
///
/// Binding port 0, closing and passing the number on is racy: anything may
/// take the port in between. Instead a socket bound to the port with
/// SO_REUSEADDR, never listening, stays open until the test process exits:
/// the kernel gives the port to no other `bind(0)` and to no outgoing
/// connection, while the server's own listener (SO_REUSEADDR, as std, tokio,
/// Ferrocable and redis-server set it) binds it freely, as often as it
/// restarts.
pub fn reserve_port() -> u16 {
    use socket2::{Domain, Socket, Type};
    static HELD: Mutex<Vec<Socket>> = Mutex::new(Vec::new());
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    HELD.lock().unwrap().push(socket);
    port
}

// ---------------------------------------------------------------- Redis

/// A redis-server owned by the test, on its own port, without persistence.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// Options of its own after the defaults (TLS listeners, ...).
    options: Vec<String>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// One with more options (`--tls-port`, ...); it answers PING on `port`.
    pub fn start_with(options: &[String]) -> RedisServer {
        let mut server = RedisServer {
            port: reserve_port(),
            child: None,
            options: options.to_vec(),
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(&self.options)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (bin/setup)");
        self.child = Some(child);
        self.wait_ready();
    }

    /// A redis-server the test started itself (with options of its own),
    /// once it answers PING on `port`; not stopped on drop.
    pub fn on(port: u16) -> RedisServer {
        let server = RedisServer {
            port,
            child: None,
            options: Vec::new(),
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"PING\r\n");
                let mut buf = [0u8; 7];
                if s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Kills it abruptly (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn publish(&self, channel: &str, payload: &str) -> i64 {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    /// Waits until the server has `n` subscribers on `channel`.
    pub async fn wait_subscribers(&self, channel: &str, n: i64) {
        let client = redis::Client::open(self.url()).unwrap();
        let deadline = tokio::time::Instant::now() + WAIT * 2;
        loop {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(channel)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                if counts.first().map(|c| c.1) == Some(n) {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no subscriber on {channel}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl RedisServer {
    /// `XADD <stream> * <field> <value>`, as AnyCable's `redisx` publishers do
    /// (the field is `payload`).
    pub async fn xadd(&self, stream: &str, field: &str, value: &str) -> String {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg(field)
            .arg(value)
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    /// `XADD <stream> <id> payload <value>`: an entry with an id of our choosing.
    pub async fn xadd_with_id(&self, stream: &str, id: &str, value: &str) {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: String = redis::cmd("XADD")
            .arg(stream)
            .arg(id)
            .arg("payload")
            .arg(value)
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    pub async fn xlen(&self, stream: &str) -> usize {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("XLEN")
            .arg(stream)
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    /// The newest entry of `stream`: (id, field/value pairs).
    pub async fn xrevrange_one(&self, stream: &str) -> Vec<(String, Vec<(String, String)>)> {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("XREVRANGE")
            .arg(stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    /// Waits until `stream` has `n` consumer groups (one per redisx node).
    pub async fn wait_stream_groups(&self, stream: &str, n: usize) {
        let client = redis::Client::open(self.url()).unwrap();
        let deadline = tokio::time::Instant::now() + WAIT * 2;
        loop {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                let groups: Vec<redis::Value> = redis::cmd("XINFO")
                    .arg("GROUPS")
                    .arg(stream)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                if groups.len() == n {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{stream} never had {n} consumer groups"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------- NATS

/// A nats-server owned by the test, on its own reserved port, with its
/// monitoring endpoint on another (to count subscriptions).
pub struct NatsServer {
    pub port: u16,
    monitor_port: u16,
    child: Option<Child>,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        let mut server = NatsServer {
            port: reserve_port(),
            monitor_port: reserve_port(),
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same ports and waits until it greets clients.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-m",
                &self.monitor_port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed (bin/setup)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::Read;
                let mut buf = [0u8; 5];
                if s.read_exact(&mut buf).is_ok() && &buf == b"INFO " {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("nats-server did not start on port {}", self.port);
    }

    /// Kills it abruptly (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Publishes `payload` on `subject` and waits until the server has it.
    pub async fn publish(&self, subject: &str, payload: &str) {
        let client = async_nats::connect(self.url()).await.unwrap();
        client
            .publish(subject.to_owned(), payload.to_owned().into())
            .await
            .unwrap();
        client.flush().await.unwrap();
    }

    /// Waits until the server has `n` subscriptions on `subject`.
    pub async fn wait_subscribers(&self, subject: &str, n: usize) {
        let monitor = SocketAddr::from(([127, 0, 0, 1], self.monitor_port));
        let deadline = tokio::time::Instant::now() + WAIT * 2;
        loop {
            if TcpStream::connect(monitor).await.is_ok() {
                let (_, body) = http(
                    monitor,
                    "GET",
                    &format!("/subsz?subs=1&test={subject}"),
                    &[],
                    "",
                )
                .await;
                let subs: Value = serde_json::from_str(&body).unwrap_or_default();
                let count = subs["subscriptions_list"]
                    .as_array()
                    .map(|l| l.iter().filter(|s| s["subject"] == subject).count());
                if count == Some(n) {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never {n} subscribers on {subject}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------- the application (gRPC)

/// Every call the application received, with its metadata.
#[derive(Debug, Clone)]
pub enum Call {
    Connect {
        sid: String,
        protov: String,
        env: pb::Env,
    },
    Command {
        sid: String,
        protov: String,
        message: pb::CommandMessage,
    },
    Disconnect {
        sid: String,
        protov: String,
        request: pb::DisconnectRequest,
    },
}

/// A small chat application behind the real RPC contract:
/// - connect: cookie `user=<name>` → identifiers `{"user":"<name>"}`; no cookie → unauthorized; `user=boom` → ERROR.
/// - `ChatChannel` (`room`): streams `chat_<room>`, transmits a hello before the confirmation, istate `room`.
/// - `PresenceChannel` (`room`): streams `presence_<room>`, its presence stream (istate `$p`).
/// - `RejectChannel`: rejected (FAILURE). `SlowChannel`: answers after 10 s. Anything else: ERROR.
/// - actions: `echo` (returns data, istate, cstate), `follow` / `unfollow` (extra stream),
///   `stop` (stop_streams), `setstate` (cstate/istate changes from data), `kick` (disconnect).
#[derive(Clone, Default)]
pub struct ChatApp {
    pub calls: Arc<Mutex<Vec<Call>>>,
    /// Commands being served right now, and the most ever at once.
    pub in_flight: Arc<std::sync::atomic::AtomicUsize>,
    pub max_in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// When set, Disconnect answers only after 60 s (an application whose
    /// `disconnect` hangs); the most Disconnect calls served at once.
    pub hang_disconnects: Arc<std::sync::atomic::AtomicBool>,
    pub disconnects_in_flight: Arc<std::sync::atomic::AtomicUsize>,
    pub max_disconnects_in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// A slow application: every Disconnect answers after this many ms.
    pub disconnect_delay_ms: Arc<std::sync::atomic::AtomicU64>,
    /// While set, Disconnect calls wait (after being recorded) until
    /// [`ChatApp::release_disconnects`]: an application slower than the
    /// sessions closing, for as long as a test needs.
    pub hold_disconnects: Arc<std::sync::atomic::AtomicBool>,
    disconnects_released: Arc<tokio::sync::Notify>,
}

/// Counts a call in flight until dropped (also when the caller gives up).
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    fn enter(
        now: &Arc<std::sync::atomic::AtomicUsize>,
        max: &std::sync::atomic::AtomicUsize,
    ) -> InFlight {
        use std::sync::atomic::Ordering::SeqCst;
        max.fetch_max(now.fetch_add(1, SeqCst) + 1, SeqCst);
        InFlight(now.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn meta(req: &tonic::metadata::MetadataMap, key: &str) -> String {
    req.get(key)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

impl ChatApp {
    /// Lets the Disconnect calls held by `hold_disconnects` go on.
    pub fn release_disconnects(&self) {
        self.hold_disconnects
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.disconnects_released.notify_waiters();
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn disconnects(&self) -> Vec<(String, pb::DisconnectRequest)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Disconnect { sid, request, .. } => Some((sid, request)),
                _ => None,
            })
            .collect()
    }

    pub fn commands(&self) -> Vec<pb::CommandMessage> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Command { message, .. } => Some(message),
                _ => None,
            })
            .collect()
    }
}

fn env_response(cstate: &[(&str, &str)], istate: &[(&str, &str)]) -> Option<pb::EnvResponse> {
    let map = |kv: &[(&str, &str)]| {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    Some(pb::EnvResponse {
        cstate: map(cstate),
        istate: map(istate),
    })
}

#[tonic::async_trait]
impl pb::rpc_server::Rpc for ChatApp {
    async fn connect(
        &self,
        request: tonic::Request<pb::ConnectionRequest>,
    ) -> Result<tonic::Response<pb::ConnectionResponse>, tonic::Status> {
        let (sid, protov) = (
            meta(request.metadata(), "sid"),
            meta(request.metadata(), "protov"),
        );
        let env = request.into_inner().env.unwrap_or_default();
        self.calls.lock().unwrap().push(Call::Connect {
            sid,
            protov,
            env: env.clone(),
        });
        let cookie = env.headers.get("cookie").cloned().unwrap_or_default();
        let user = cookie
            .split(';')
            .find_map(|c| c.trim().strip_prefix("user="))
            .map(str::to_owned);
        let reply = match user.as_deref() {
            None => pb::ConnectionResponse {
                status: pb::Status::Failure as i32,
                transmissions: vec![
                    r#"{"type":"disconnect","reason":"unauthorized","reconnect":false}"#.into(),
                ],
                ..Default::default()
            },
            Some("slow") => {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                pb::ConnectionResponse {
                    status: pb::Status::Success as i32,
                    identifiers: json!({ "user": "slow" }).to_string(),
                    transmissions: vec![r#"{"type":"welcome"}"#.into()],
                    ..Default::default()
                }
            }
            Some("boom") => pb::ConnectionResponse {
                status: pb::Status::Error as i32,
                error_msg: "RuntimeError: boom".into(),
                ..Default::default()
            },
            Some(user) => pb::ConnectionResponse {
                status: pb::Status::Success as i32,
                identifiers: json!({ "user": user }).to_string(),
                transmissions: vec![r#"{"type":"welcome"}"#.into()],
                env: env_response(&[("user", user)], &[]),
                ..Default::default()
            },
        };
        Ok(tonic::Response::new(reply))
    }

    async fn command(
        &self,
        request: tonic::Request<pb::CommandMessage>,
    ) -> Result<tonic::Response<pb::CommandResponse>, tonic::Status> {
        let (sid, protov) = (
            meta(request.metadata(), "sid"),
            meta(request.metadata(), "protov"),
        );
        let message = request.into_inner();
        self.calls.lock().unwrap().push(Call::Command {
            sid,
            protov,
            message: message.clone(),
        });
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.max_in_flight.fetch_max(now, SeqCst);
        let reply = self.command_reply(message).await;
        self.in_flight.fetch_sub(1, SeqCst);
        Ok(tonic::Response::new(reply))
    }

    async fn disconnect(
        &self,
        request: tonic::Request<pb::DisconnectRequest>,
    ) -> Result<tonic::Response<pb::DisconnectResponse>, tonic::Status> {
        let (sid, protov) = (
            meta(request.metadata(), "sid"),
            meta(request.metadata(), "protov"),
        );
        let request = request.into_inner();
        self.calls.lock().unwrap().push(Call::Disconnect {
            sid,
            protov,
            request,
        });
        let _in_flight =
            InFlight::enter(&self.disconnects_in_flight, &self.max_disconnects_in_flight);
        if self
            .hang_disconnects
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        loop {
            // Created before the check, so a release in between is not missed.
            let released = self.disconnects_released.notified();
            if !self
                .hold_disconnects
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                break;
            }
            released.await;
        }
        let delay = self
            .disconnect_delay_ms
            .load(std::sync::atomic::Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        Ok(tonic::Response::new(pb::DisconnectResponse {
            status: pb::Status::Success as i32,
            error_msg: String::new(),
        }))
    }
}

impl ChatApp {
    async fn command_reply(&self, message: pb::CommandMessage) -> pb::CommandResponse {
        let id = message.identifier.clone();
        let params: Value = serde_json::from_str(&id).unwrap_or(Value::Null);
        let channel = params["channel"].as_str().unwrap_or_default().to_owned();
        let env = message.env.clone().unwrap_or_default();
        let ok = |streams: Vec<String>, transmissions: Vec<String>| pb::CommandResponse {
            status: pb::Status::Success as i32,
            streams,
            transmissions,
            ..Default::default()
        };
        match (message.command.as_str(), channel.as_str()) {
            ("subscribe", "ChatChannel") => {
                let room = params["room"].as_str().unwrap_or("lobby").to_owned();
                let hello = json!({"identifier": id, "message": {"hello": env.cstate.get("user")}})
                    .to_string();
                let confirm = json!({"type": "confirm_subscription", "identifier": id}).to_string();
                let mut r = ok(vec![format!("chat_{room}")], vec![hello, confirm]);
                r.env = env_response(&[], &[("room", &room)]);
                r
            }
            // Presence on stream `presence_<room>` (istate `$p`, as AnyCable's
            // join_presence sets it); the server adds the confirmation.
            ("subscribe", "PresenceChannel") => {
                let stream = format!("presence_{}", params["room"].as_str().unwrap_or("lobby"));
                let mut r = ok(vec![stream.clone()], vec![]);
                r.env = env_response(&[], &[("$p", &stream)]);
                r
            }
            // The application's say on presence (anycable-rails'
            // `join_presence`): streams `presence_<room>`, names it in `$p`
            // and joins as `u-<user>` with `{"name": user}`.
            ("subscribe", "AppPresenceChannel") => {
                let stream = format!("presence_{}", params["room"].as_str().unwrap_or("lobby"));
                let user = env.cstate.get("user").cloned().unwrap_or_default();
                let mut r = ok(vec![stream.clone()], vec![]);
                r.env = env_response(&[], &[("$p", &stream)]);
                r.presence = Some(pb::PresenceResponse {
                    r#type: "join".into(),
                    id: format!("u-{user}"),
                    info: json!({"name": user}).to_string(),
                    ttl: 0,
                });
                r
            }
            // Subscribes without transmitting a confirmation: the server adds it.
            ("subscribe", "QuietChannel") => {
                let hello = json!({"identifier": id, "message": "quiet hello"}).to_string();
                ok(vec!["quiet".into()], vec![hello])
            }
            ("subscribe", "RejectChannel") => pb::CommandResponse {
                status: pb::Status::Failure as i32,
                transmissions: vec![
                    json!({"type": "reject_subscription", "identifier": id}).to_string(),
                ],
                ..Default::default()
            },
            ("subscribe", "SlowChannel") => {
                tokio::time::sleep(Duration::from_secs(10)).await;
                ok(vec![], vec![])
            }
            ("subscribe", _) => pb::CommandResponse {
                status: pb::Status::Error as i32,
                error_msg: format!("Channel not found: {channel}"),
                ..Default::default()
            },
            ("unsubscribe", _) => ok(vec![], vec![]),
            ("message", _) => {
                let data: Value = serde_json::from_str(&message.data).unwrap_or(Value::Null);
                match data["action"].as_str().unwrap_or_default() {
                    "echo" => {
                        let reply = json!({"identifier": id, "message": {
                            "echo": data, "istate": env.istate, "cstate": env.cstate
                        }});
                        ok(vec![], vec![reply.to_string()])
                    }
                    "follow" => ok(vec!["extra".into()], vec![]),
                    "unfollow" => pb::CommandResponse {
                        status: pb::Status::Success as i32,
                        stopped_streams: vec!["extra".into()],
                        ..Default::default()
                    },
                    "restream" => pb::CommandResponse {
                        status: pb::Status::Success as i32,
                        stop_streams: true,
                        streams: vec!["fresh".into()],
                        ..Default::default()
                    },
                    "nap" => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        ok(
                            vec![],
                            vec![json!({"identifier": id, "message": "rested"}).to_string()],
                        )
                    }
                    "stop" => pb::CommandResponse {
                        status: pb::Status::Success as i32,
                        stop_streams: true,
                        ..Default::default()
                    },
                    "setstate" => {
                        let as_pairs = |v: &Value| -> HashMap<String, String> {
                            v.as_object()
                                .map(|o| {
                                    o.iter()
                                        .map(|(k, v)| {
                                            (k.clone(), v.as_str().unwrap_or("").to_owned())
                                        })
                                        .collect()
                                })
                                .unwrap_or_default()
                        };
                        pb::CommandResponse {
                            status: pb::Status::Success as i32,
                            env: Some(pb::EnvResponse {
                                cstate: as_pairs(&data["cstate"]),
                                istate: as_pairs(&data["istate"]),
                            }),
                            ..Default::default()
                        }
                    }
                    // AppPresenceChannel: `leave_presence`, and `join_presence`
                    // with `info` sent as the reply's info text as it is.
                    "leave_presence" => pb::CommandResponse {
                        status: pb::Status::Success as i32,
                        presence: Some(pb::PresenceResponse {
                            r#type: "leave".into(),
                            id: data["id"].as_str().unwrap_or_default().into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    "join_presence" => pb::CommandResponse {
                        status: pb::Status::Success as i32,
                        presence: Some(pb::PresenceResponse {
                            r#type: data["type"].as_str().unwrap_or("join").into(),
                            id: data["id"].as_str().unwrap_or_default().into(),
                            info: data["info"].as_str().unwrap_or_default().into(),
                            ttl: 0,
                        }),
                        ..Default::default()
                    },
                    "kick" => pb::CommandResponse {
                        status: pb::Status::Success as i32,
                        disconnect: true,
                        transmissions: vec![
                            r#"{"type":"disconnect","reason":"unauthorized","reconnect":false}"#
                                .into(),
                        ],
                        ..Default::default()
                    },
                    "fail" => pb::CommandResponse {
                        status: pb::Status::Error as i32,
                        error_msg: "NoMethodError".into(),
                        ..Default::default()
                    },
                    _ => pb::CommandResponse {
                        status: pb::Status::Error as i32,
                        ..Default::default()
                    },
                }
            }
            _ => pb::CommandResponse {
                status: pb::Status::Error as i32,
                ..Default::default()
            },
        }
    }
}

/// The application's gRPC server, on a port of its own.
pub struct AppServer {
    pub app: ChatApp,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl AppServer {
    pub async fn start() -> AppServer {
        Self::start_on(0, ChatApp::default()).await
    }

    pub async fn start_on(port: u16, app: ChatApp) -> AppServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let service = pb::rpc_server::RpcServer::new(app.clone());
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .unwrap();
        });
        AppServer {
            app,
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Graceful: stop accepting, finish in-flight calls, close connections.
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(WAIT, &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------- the server under test

pub struct TestServer {
    pub addr: SocketAddr,
    pub server: Arc<Server>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<bool>>,
}

pub fn config(rpc: SocketAddr, f: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::defaults();
    config.host = "127.0.0.1".into();
    config.rpc_host = rpc.to_string();
    config.broadcast_adapter = vec![ferrocable::config::BroadcastAdapter::Http];
    // Without a key, HTTP broadcasts have a port of their own (see broadcast_addr).
    config.http_broadcast_port = reserve_port();
    config.metrics_http = "/metrics".into();
    config.rpc_request_timeout = 2000;
    config.shutdown_timeout = 10;
    f(&mut config);
    config.validate().unwrap();
    config
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        if std::env::var_os("FERROCABLE_TEST_LOG").is_some() {
            let mut c = config.clone();
            c.log_level = ferrocable::config::LogLevel::Debug;
            ferrocable::logging::init(&c);
        }
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::new());
        let controller = RpcController::new(
            &config.rpc_host,
            config.rpc_concurrency,
            config.rpc_call_timeout(),
            metrics.clone(),
        )
        .unwrap();
        let server = Arc::new(
            Server::start(config, Arc::new(controller), metrics).expect("the server starts"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let s = server.clone();
        let task = tokio::spawn(async move {
            s.serve(listener, async {
                let _ = stopped.await;
            })
            .await
        });
        let server = TestServer {
            addr,
            server,
            stop: Some(stop),
            task: Some(task),
        };
        wait_listening(server.broadcast_addr()).await;
        server
    }

    /// Where HTTP broadcasts go: the main port with a key, else their own.
    pub fn broadcast_addr(&self) -> SocketAddr {
        match self.server.node.config.http_broadcast_listener() {
            Some(BroadcastListener::Port(port)) => SocketAddr::from(([127, 0, 0, 1], port)),
            _ => self.addr,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/cable", self.addr)
    }

    /// Graceful shutdown; returns whether it finished within the timeout.
    pub async fn shutdown(mut self) -> bool {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap()
    }

    pub fn metric(&self, name: &str) -> f64 {
        metric_value(&self.server.node.metrics.render(), name)
    }

    /// Waits until `f` holds, checking every 10 ms.
    pub async fn eventually(&self, what: &str, f: impl Fn(&TestServer) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !f(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Waits until something accepts connections on `addr`.
pub async fn wait_listening(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing listens on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} not found in:\n{text}"))
}

// ---------------------------------------------------------------- clients

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Client {
    pub ws: Ws,
    /// The subprotocol the server selected, if any.
    pub protocol: Option<String>,
}

pub async fn connect_raw(url: &str, cookie: Option<&str>, protocols: Option<&str>) -> Client {
    let mut request = url.into_client_request().unwrap();
    if let Some(c) = cookie {
        request.headers_mut().insert("cookie", c.parse().unwrap());
    }
    if let Some(p) = protocols {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", p.parse().unwrap());
    }
    handshake(request).await
}

/// Opens the WebSocket `request` describes (bounded wait).
async fn handshake(request: tokio_tungstenite::tungstenite::handshake::client::Request) -> Client {
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

/// Connects as `user` and returns the client after its welcome (and the sid).
pub async fn connect_user(url: &str, user: &str) -> (Client, String) {
    connect_user_from(url, user, None).await
}

/// As [`connect_user`], from a page at `origin` (the `Origin` header).
pub async fn connect_user_from(url: &str, user: &str, origin: Option<&str>) -> (Client, String) {
    let mut request = url.into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("cookie", format!("user={user}").parse().unwrap());
    headers.insert(
        "sec-websocket-protocol",
        "actioncable-v1-json".parse().unwrap(),
    );
    if let Some(origin) = origin {
        headers.insert("origin", origin.parse().unwrap());
    }
    let mut client = handshake(request).await;
    let welcome = client.recv().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let sid = welcome["sid"]
        .as_str()
        .expect("welcome has a sid")
        .to_owned();
    (client, sid)
}

pub fn chat_identifier(room: &str) -> String {
    json!({"channel": "ChatChannel", "room": room}).to_string()
}

/// The next presence frame's message, within 30 s (`recv` skips pings,
/// so its own per-frame bound never ends while pings come).
pub async fn presence(c: &mut Client) -> Value {
    let frame = tokio::time::timeout(Duration::from_secs(30), c.recv())
        .await
        .expect("no presence frame within 30 s");
    assert_eq!(frame["type"], "presence", "{frame}");
    frame["message"].clone()
}

/// Asks for the presence set of the channel `identifier` (the `presence`
/// command) and returns the `info` message.
pub async fn presence_info(c: &mut Client, identifier: &str) -> Value {
    c.send_json(json!({"command": "presence", "identifier": identifier}))
        .await;
    let m = presence(c).await;
    assert_eq!(m["type"], "info", "{m}");
    m
}

/// The extended protocol's name (`actioncable-v1-ext-json`).
pub const EXT: &str = "actioncable-v1-ext-json";

/// A client of `user` (its `user` cookie) on `protocol`, with `query` after
/// the URL and extra headers; returns it with its welcome, after checking
/// the server chose `protocol`.
pub async fn connect_on(
    url: &str,
    user: &str,
    protocol: &str,
    query: &str,
    headers: &[(&'static str, &str)],
) -> (Client, Value) {
    let mut request = format!("{url}{query}").into_client_request().unwrap();
    let h = request.headers_mut();
    h.insert("cookie", format!("user={user}").parse().unwrap());
    h.insert("sec-websocket-protocol", protocol.parse().unwrap());
    for (name, value) in headers {
        h.insert(*name, value.parse().unwrap());
    }
    let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
    let mut client = Client {
        ws,
        protocol: Some(protocol.into()),
    };
    let welcome = client.recv().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (client, welcome)
}

/// Broadcasts `{"n": n}` on `chat_1` (room 1's stream) from the node itself.
pub fn publish_n(server: &TestServer, n: u64) {
    use ferrocable::broadcast::{Publication, Publish};
    let data = json!({"n": n}).to_string();
    server
        .server
        .node
        .publish(Publication::broadcast("chat_1".into(), data));
}

impl Client {
    pub async fn send_json(&mut self, value: Value) {
        self.send_text(value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// The next non-ping message, as JSON.
    pub async fn recv(&mut self) -> Value {
        // One generous deadline for the whole wait: pings keep arriving, so a
        // timeout per frame would never end a wait for a message that never
        // comes (the test would hang instead of failing).
        let deadline = tokio::time::Instant::now() + WAIT * 6;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("timed out waiting for a message")
                .expect("connection ended")
                .expect("socket error");
            match msg {
                Message::Text(t) => {
                    let v: Value =
                        serde_json::from_str(t.as_str()).expect("server sent invalid JSON");
                    if v["type"] != "ping" {
                        return v;
                    }
                }
                Message::Close(frame) => panic!("closed while waiting for a message: {frame:?}"),
                _ => {}
            }
        }
    }

    /// The next message including pings.
    pub async fn recv_any(&mut self) -> Value {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out")
                .unwrap()
                .unwrap()
            {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    }

    /// Asserts nothing but pings arrives for `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    assert_eq!(v["type"], "ping", "unexpected message {v}");
                }
                Ok(other) => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Reads until the close frame; returns the text messages before it and the close frame.
    pub async fn recv_until_close(&mut self) -> (Vec<Value>, Option<CloseFrame>) {
        let mut before = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for close")
            {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] != "ping" {
                        before.push(v);
                    }
                }
                Some(Ok(Message::Close(frame))) => return (before, frame),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return (before, None),
            }
        }
    }

    pub async fn subscribe(&mut self, identifier: &str) {
        self.send_json(json!({"command": "subscribe", "identifier": identifier}))
            .await;
    }

    /// Subscribes to a chat room and reads through the confirmation.
    pub async fn join(&mut self, room: &str) -> String {
        let id = chat_identifier(room);
        self.subscribe(&id).await;
        let hello = self.recv().await;
        assert!(hello["message"]["hello"].is_string(), "{hello}");
        let confirm = self.recv().await;
        assert_eq!(confirm["type"], "confirm_subscription", "{confirm}");
        id
    }

    pub async fn perform(&mut self, identifier: &str, data: Value) {
        self.send_json(
            json!({"command": "message", "identifier": identifier, "data": data.to_string()}),
        )
        .await;
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Drain until the server's close arrives.
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}

// ---------------------------------------------------------------- raw HTTP

/// One HTTP/1.1 request over a fresh TCP connection; returns (status, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = http_request(&addr.to_string(), method, path, headers, body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    http_response(&response)
}

/// An HTTP/1.1 request that asks the server to close the connection after
/// answering.
pub fn http_request(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    request
}

/// An HTTP/1.1 response's status and body (status 0 when there is none).
pub fn http_response(response: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

// ---------------------------------------------------------------- the binary as deployments run it

/// The binary with `args` and `env` as a deployment gives them (in `dir`
/// when set: it reads ./anycable.toml there), stderr captured, killed when
/// dropped.
pub fn binary_command(
    dir: Option<&std::path::Path>,
    args: &[String],
    env: &[(&str, String)],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BINARY);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// What a child wrote to stderr, read to the end (it has exited or is
/// stopping).
pub async fn stderr_of(child: &mut tokio::process::Child) -> String {
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err).await;
    }
    err
}

/// Waits until `serving` says the started binary serves (generous bound: a
/// loaded machine may take a while to start a process); panics with its
/// stderr if it exits first.
pub async fn wait_serving<F, Fut>(child: &mut tokio::process::Child, what: &str, mut serving: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the binary exited with {status}: {}",
                stderr_of(child).await
            );
        }
        if serving().await {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the binary did not serve {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `path` on `addr` answers 200 over plain HTTP.
pub async fn answers_200(addr: SocketAddr, path: &str) -> bool {
    TcpStream::connect(addr).await.is_ok() && http(addr, "GET", path, &[], "").await.0 == 200
}

// ---------------------------------------------------------------- raw WebSocket

/// A WebSocket handshake by hand, for frames no client library would send.
pub async fn raw_ws(addr: SocketAddr) -> TcpStream {
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
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
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
pub async fn closed_by_server(mut s: TcpStream) -> bool {
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

// ---------------------------------------------------------------- processes

/// A process's resident memory (VmRSS), in KiB.
pub fn rss_kib(pid: u32) -> u64 {
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

/// How many file descriptors a process holds.
pub fn fds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Sends `signal` (e.g. `libc::SIGTERM`) to the process `pid`.
pub fn send_signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("a pid");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

// ---------------------------------------------------------------- the real binary

/// The `ferrocable` binary the integration tests run.
pub const BINARY: &str = env!("CARGO_BIN_EXE_ferrocable");

/// The address a server's log names in its `listening addr=…` line, once
/// it has written it.
pub fn listening_addr(logs: &str) -> Option<SocketAddr> {
    let rest = logs.split(" listening addr=").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The `ferrocable` binary on 127.0.0.1, for measuring its own memory,
/// descriptors and logs. Its stderr is drained as it is written (a full pipe
/// would stall the server), into [`Binary::logs`].
pub struct Binary {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    /// HTTP broadcasts: a port of their own (`--http_broadcast_port`).
    pub broadcast_addr: SocketAddr,
    logs: Arc<Mutex<Vec<u8>>>,
    drain: Option<tokio::task::JoinHandle<()>>,
}

impl Binary {
    /// Starts it with the HTTP broadcast adapter (no key, on a port of its
    /// own) plus `extra` flags, and waits until it accepts connections. It
    /// binds port 0 and its log says which port it got.
    pub async fn start(rpc: SocketAddr, extra: &[&str]) -> Binary {
        Binary::start_with(&rpc.to_string(), reserve_port(), extra).await
    }

    /// As [`Binary::start`], with `rpc_host` as given (an HTTP RPC URL) and
    /// HTTP broadcasts on `broadcast_port` (which the application was told).
    pub async fn start_with(rpc_host: &str, broadcast_port: u16, extra: &[&str]) -> Binary {
        let mut child = tokio::process::Command::new(BINARY)
            .args([
                "--host=127.0.0.1",
                "--port=0",
                &format!("--rpc_host={rpc_host}"),
                "--broadcast_adapter=http",
                &format!("--http_broadcast_port={broadcast_port}"),
            ])
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        let drain = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let text = |logs: &Arc<Mutex<Vec<u8>>>| {
            String::from_utf8_lossy(&logs.lock().unwrap()).into_owned()
        };
        // A cold start on a busy machine may be slow: a generous bound.
        let deadline = std::time::Instant::now() + WAIT * 6;
        let addr = loop {
            if let Some(addr) = listening_addr(&text(&logs)) {
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the binary exited with {status}:\n{}", text(&logs));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the binary did not say it listens:\n{}",
                text(&logs)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let broadcast_addr = SocketAddr::from(([127, 0, 0, 1], broadcast_port));
        wait_listening(broadcast_addr).await;
        Binary {
            child,
            addr,
            broadcast_addr,
            logs,
            drain: Some(drain),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    pub fn url(&self) -> String {
        format!("ws://{}/cable", self.addr)
    }

    /// Bytes it has written to stderr so far.
    pub fn log_len(&self) -> usize {
        self.logs.lock().unwrap().len()
    }

    /// Its stderr so far, lossily decoded.
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&self.logs.lock().unwrap()).into_owned()
    }

    /// A metric from its `/metrics` (started with `--metrics_http=/metrics`).
    pub async fn metric(&self, name: &str) -> f64 {
        metric_value(&http(self.addr, "GET", "/metrics", &[], "").await.1, name)
    }

    /// SIGTERM, then waits for the exit and the last of its logs.
    pub async fn stop(mut self) -> String {
        send_signal(self.pid(), libc::SIGTERM);
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the binary exits after SIGTERM")
            .unwrap();
        if let Some(drain) = self.drain.take() {
            let _ = tokio::time::timeout(WAIT, drain).await;
        }
        self.logs()
    }
}
