//! Presence on the extended protocol against the `ferrocable` binary, with
//! raw WebSocket clients and the gRPC application (`PresenceChannel` names
//! its presence stream in istate `$p`): join / leave / presence commands,
//! one join and one leave per id across tabs, leave on unsubscribe and,
//! `presence_ttl` after a disconnect, the base protocol refused; two binary
//! nodes on one real redis-server sharing the set, one node killed.

mod common;

use common::*;
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const BIN: &str = env!("CARGO_BIN_EXE_ferrocable");
const EXT: &str = "actioncable-v1-ext-json";

/// A binary node; killed when dropped.
struct Node {
    child: tokio::process::Child,
    port: u16,
}

impl Node {
    async fn start(app: &AppServer, args: &[&str]) -> Node {
        let port = reserve_port();
        let child = tokio::process::Command::new(BIN)
            .arg("--host=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--rpc_host={}", app.addr))
            .arg("--broadcast_adapter=http")
            .arg(format!("--http_broadcast_port={}", reserve_port()))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let _ = s
                    .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await;
                let mut out = String::new();
                let _ = s.read_to_string(&mut out).await;
                if out.starts_with("HTTP/1.1 200") {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "node on {port} never healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Node { child, port }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/cable", self.port)
    }
}

async fn client(url: &str, user: &str, protocol: &str) -> Client {
    let mut request = url.into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("cookie", format!("user={user}").parse().unwrap());
    headers.insert("sec-websocket-protocol", protocol.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut client = Client {
        ws,
        protocol: Some(protocol.into()),
    };
    assert_eq!(client.recv().await["type"], "welcome");
    client
}

fn room(n: &str) -> String {
    json!({"channel": "PresenceChannel", "room": n}).to_string()
}

/// Subscribes to room `n`; through the confirmation.
async fn subscribe(c: &mut Client, n: &str) {
    c.send_json(json!({"command": "subscribe", "identifier": room(n)}))
        .await;
    let confirm = c.recv().await;
    assert_eq!(confirm["type"], "confirm_subscription", "{confirm}");
}

async fn join(c: &mut Client, n: &str, id: &str, info: Value) {
    c.send_json(
        json!({"command": "join", "identifier": room(n), "presence": {"id": id, "info": info}}),
    )
    .await;
}

/// The next presence frame's message, within 30 s (`recv` skips pings,
/// so its own per-frame bound never ends while pings come).
async fn presence(c: &mut Client) -> Value {
    let frame = tokio::time::timeout(Duration::from_secs(30), c.recv())
        .await
        .expect("no presence frame within 30 s");
    assert_eq!(frame["type"], "presence", "{frame}");
    frame["message"].clone()
}

async fn info(c: &mut Client, n: &str) -> Value {
    c.send_json(json!({"command": "presence", "identifier": room(n)}))
        .await;
    let m = presence(c).await;
    assert_eq!(m["type"], "info", "{m}");
    m
}

#[tokio::test]
async fn presence_on_one_node() {
    let app = AppServer::start().await;
    let node = Node::start(&app, &["--broker=memory", "--presence_ttl=1"]).await;
    let url = node.url();
    let (mut alice, mut bob) = (
        client(&url, "alice", EXT).await,
        client(&url, "bob", EXT).await,
    );
    subscribe(&mut alice, "1").await;
    subscribe(&mut bob, "1").await;

    // A join reaches every subscriber, the joiner too.
    join(&mut alice, "1", "u-alice", json!({"name": "Alice"})).await;
    let joined = json!({"type": "join", "id": "u-alice", "info": {"name": "Alice"}});
    assert_eq!(presence(&mut alice).await, joined);
    assert_eq!(presence(&mut bob).await, joined);

    // A second tab of Alice's: no second join.
    let mut tab = client(&url, "alice", EXT).await;
    subscribe(&mut tab, "1").await;
    join(&mut tab, "1", "u-alice", json!({"name": "Alice"})).await;
    join(&mut bob, "1", "u-bob", json!(null)).await;
    let bob_joined = json!({"type": "join", "id": "u-bob"});
    assert_eq!(presence(&mut alice).await, bob_joined);
    assert_eq!(presence(&mut tab).await, bob_joined);
    assert_eq!(presence(&mut bob).await, bob_joined);

    assert_eq!(
        info(&mut bob, "1").await,
        json!({"type": "info", "total": 2, "records": [
            {"id": "u-alice", "info": {"name": "Alice"}}, {"id": "u-bob"}]})
    );
    bob.send_json(
        json!({"command": "presence", "identifier": room("1"), "data": {"return_records": false}}),
    )
    .await;
    assert_eq!(
        presence(&mut bob).await,
        json!({"type": "info", "total": 2})
    );

    // One tab leaves: Alice is still here; the other unsubscribes: her leave.
    tab.send_json(json!({"command": "leave", "identifier": room("1")}))
        .await;
    assert_eq!(info(&mut bob, "1").await["total"], 2);
    alice
        .send_json(json!({"command": "unsubscribe", "identifier": room("1")}))
        .await;
    let left = json!({"type": "leave", "id": "u-alice"});
    assert_eq!(presence(&mut bob).await, left);
    assert_eq!(presence(&mut tab).await, left);

    // Bob disconnects: his leave comes after presence_ttl.
    drop(bob);
    assert_eq!(
        presence(&mut tab).await,
        json!({"type": "leave", "id": "u-bob"})
    );
    assert_eq!(info(&mut tab, "1").await["total"], 0);

    // The base protocol has no presence: the command is ignored.
    let mut base = client(&url, "carol", "actioncable-v1-json").await;
    subscribe(&mut base, "1").await;
    join(&mut base, "1", "u-carol", json!(null)).await;
    base.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(info(&mut tab, "1").await["total"], 0);
    drop(node);
    app.stop().await;
}

#[tokio::test]
async fn two_nodes_share_presence_and_a_dead_nodes_presence_expires() {
    let app = AppServer::start().await;
    let redis = RedisServer::start();
    let args = [
        "--broker=redis".to_owned(),
        format!("--redis_url={}", redis.url()),
        "--presence_ttl=1".to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let a = Node::start(&app, &args).await;
    let mut b = Node::start(&app, &args).await;

    let mut on_a = client(&a.url(), "alice", EXT).await;
    subscribe(&mut on_a, "1").await;
    let mut on_b = client(&b.url(), "bob", EXT).await;
    subscribe(&mut on_b, "1").await;
    join(&mut on_b, "1", "u-bob", json!({"n": 1})).await;
    assert_eq!(presence(&mut on_b).await["type"], "join");
    // The same user on node A joins nothing new; A sees B's record.
    let mut bob_on_a = client(&a.url(), "bob", EXT).await;
    subscribe(&mut bob_on_a, "1").await;
    join(&mut bob_on_a, "1", "u-bob", json!({"n": 1})).await;
    join(&mut on_a, "1", "u-alice", json!(null)).await;
    assert_eq!(
        presence(&mut on_a).await,
        json!({"type": "join", "id": "u-alice"})
    );
    assert_eq!(info(&mut on_a, "1").await["total"], 2);

    // Node B dies and Bob leaves on A: his two sessions go (B's expired by
    // A's sweep, whichever goes last) with one leave.
    b.child.kill().await.unwrap();
    drop(on_b);
    bob_on_a
        .send_json(json!({"command": "leave", "identifier": room("1")}))
        .await;
    assert_eq!(
        presence(&mut on_a).await,
        json!({"type": "leave", "id": "u-bob"})
    );
    assert_eq!(
        info(&mut on_a, "1").await,
        json!({"type": "info", "total": 1, "records": [{"id": "u-alice"}]})
    );
    drop(a);
    app.stop().await;
}
