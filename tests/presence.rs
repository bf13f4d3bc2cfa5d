//! Presence on the extended protocol against the `ferrocable` binary, with
//! raw WebSocket clients and the gRPC application (`PresenceChannel` names
//! its presence stream in istate `$p`): join / leave / presence commands,
//! one join and one leave per id across tabs, leave on unsubscribe and,
//! `presence_ttl` after a disconnect, the base protocol served too; two binary
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

async fn info(c: &mut Client, n: &str) -> Value {
    presence_info(c, &room(n)).await
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

    // The base protocol has presence too (anycable-go's JSON decoder
    // reads `presence` whatever the protocol).
    let mut base = client(&url, "carol", "actioncable-v1-json").await;
    subscribe(&mut base, "1").await;
    join(&mut base, "1", "u-carol", json!(null)).await;
    let carol = json!({"type": "join", "id": "u-carol"});
    assert_eq!(presence(&mut base).await, carol);
    assert_eq!(presence(&mut tab).await, carol);
    assert_eq!(info(&mut base, "1").await["total"], 1);
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
    assert_eq!(
        presence(&mut on_a).await["id"],
        "u-bob",
        "B's join reaches A"
    );
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

/// The bus between nodes (`pubsub`).
const BUS: &str = "__anycable_internal__";

/// Presence across two nodes on one real redis-server (broker=redis; the
/// bus between nodes is Redis pub/sub by default): a join or leave on one
/// node reaches the stream's subscribers on the other, `presence` is the
/// same on both, one id with sessions on both nodes joins and leaves once,
/// and a node killed with SIGKILL has its presences expired by the other
/// node, whose subscribers get the leaves.
#[tokio::test]
async fn presence_events_cross_nodes_and_a_killed_nodes_presences_leave() {
    let app = AppServer::start().await;
    let redis = RedisServer::start();
    let args = [
        "--broker=redis".to_owned(),
        format!("--redis_url={}", redis.url()),
        "--presence_ttl=1".to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut a = Node::start(&app, &args).await;
    let b = Node::start(&app, &args).await;
    redis.wait_subscribers(BUS, 2).await;

    let mut alice = client(&a.url(), "alice", EXT).await;
    let mut bob_tab = client(&a.url(), "bob", EXT).await;
    let mut bob = client(&b.url(), "bob", EXT).await;
    let mut carol = client(&b.url(), "carol", EXT).await;
    for c in [&mut alice, &mut bob_tab, &mut bob, &mut carol] {
        subscribe(c, "1").await;
    }

    // A join on A reaches B's subscribers (and A's).
    join(&mut alice, "1", "u-alice", json!({"name": "Alice"})).await;
    let alice_joined = json!({"type": "join", "id": "u-alice", "info": {"name": "Alice"}});
    for c in [&mut alice, &mut bob_tab, &mut bob, &mut carol] {
        assert_eq!(presence(c).await, alice_joined);
    }
    // A join on B reaches A's subscribers.
    join(&mut bob, "1", "u-bob", json!(null)).await;
    let bob_joined = json!({"type": "join", "id": "u-bob"});
    for c in [&mut alice, &mut bob_tab, &mut bob, &mut carol] {
        assert_eq!(presence(c).await, bob_joined);
    }
    // Bob's second tab, on A, with the same id: no second join (its next
    // frame is the answer to its own `presence`, sent after the join).
    join(&mut bob_tab, "1", "u-bob", json!(null)).await;
    let both = json!({"type": "info", "total": 2, "records": [
        {"id": "u-alice", "info": {"name": "Alice"}}, {"id": "u-bob"}]});
    assert_eq!(info(&mut bob_tab, "1").await, both);
    assert_eq!(info(&mut carol, "1").await, both, "node B agrees");
    assert_eq!(info(&mut alice, "1").await, both, "node A agrees");

    // The tab on A leaves: Bob is still here (on B), no leave.
    bob_tab
        .send_json(json!({"command": "leave", "identifier": room("1")}))
        .await;
    assert_eq!(info(&mut bob_tab, "1").await["total"], 2);
    // Bob on B unsubscribes: one leave, on both nodes.
    bob.send_json(json!({"command": "unsubscribe", "identifier": room("1")}))
        .await;
    let bob_left = json!({"type": "leave", "id": "u-bob"});
    for c in [&mut alice, &mut bob_tab, &mut carol] {
        assert_eq!(presence(c).await, bob_left);
    }

    // Node A is killed (SIGKILL): Alice's presence expires on B's sweep
    // (presence_ttl) and Carol, on B, gets the leave (the next presence
    // frame: no second leave of Bob's came before it).
    a.child.kill().await.unwrap();
    drop((alice, bob_tab));
    assert_eq!(
        presence(&mut carol).await,
        json!({"type": "leave", "id": "u-alice"})
    );
    assert_eq!(
        info(&mut carol, "1").await,
        json!({"type": "info", "total": 0, "records": []})
    );
    drop(b);
    app.stop().await;
}

fn public_stream(name: &str) -> String {
    json!({"channel": "$pubsub", "stream_name": name}).to_string()
}

async fn subscribe_public(c: &mut Client, name: &str) {
    c.send_json(json!({"command": "subscribe", "identifier": public_stream(name)}))
        .await;
    let confirm = c.recv().await;
    assert_eq!(confirm["type"], "confirm_subscription", "{confirm}");
}

/// Whispers across two nodes over the bus (`pubsub`, NATS and Redis): a
/// whisper on node A reaches the stream's subscribers on node B and on A,
/// never the sender, never another stream's subscribers.
async fn whispers_cross_nodes(args: &[&str], bus_ready: impl AsyncFnOnce()) {
    let app = AppServer::start().await;
    let mut args = args.to_vec();
    args.push("--public_streams");
    let a = Node::start(&app, &args).await;
    let b = Node::start(&app, &args).await;
    bus_ready().await;
    let mut alice = client(&a.url(), "alice", "actioncable-v1-json").await;
    let mut ann = client(&a.url(), "ann", "actioncable-v1-json").await;
    let mut bob = client(&b.url(), "bob", "actioncable-v1-json").await;
    let mut other = client(&b.url(), "carol", "actioncable-v1-json").await;
    for c in [&mut alice, &mut ann, &mut bob] {
        subscribe_public(c, "room:1").await;
    }
    subscribe_public(&mut other, "room:2").await;
    // Data as sent (spacing kept: not re-encoded).
    alice
        .send_text(format!(
            r#"{{"command":"whisper","identifier":{},"data":{{"event":"typing", "user":"alice"}}}}"#,
            serde_json::to_string(&public_stream("room:1")).unwrap()
        ))
        .await;
    let expected = json!({"identifier": public_stream("room:1"),
        "message": {"event": "typing", "user": "alice"}});
    assert_eq!(bob.recv().await, expected, "the other node's subscriber");
    assert_eq!(ann.recv().await, expected, "this node's subscriber");
    // A whisper back from B: A's subscribers get it, its sender does not,
    // and neither the sender nor the other stream ever got Alice's.
    bob.send_json(
        json!({"command": "whisper", "identifier": public_stream("room:1"), "data": "hi"}),
    )
    .await;
    let hi = json!({"identifier": public_stream("room:1"), "message": "hi"});
    assert_eq!(alice.recv().await, hi, "the sender got its own whisper?");
    assert_eq!(ann.recv().await, hi);
    bob.expect_silence(Duration::from_millis(300)).await;
    other.expect_silence(Duration::from_millis(300)).await;
    drop((a, b));
    app.stop().await;
}

#[tokio::test]
async fn whispers_cross_nodes_over_redis() {
    let redis = RedisServer::start();
    let url = format!("--redis_url={}", redis.url());
    whispers_cross_nodes(&[&url, "--broker=memory", "--pubsub=redis"], || {
        redis.wait_subscribers(BUS, 2)
    })
    .await;
}

#[tokio::test]
async fn whispers_cross_nodes_over_nats() {
    let nats = NatsServer::start();
    let servers = format!("--nats_servers={}", nats.url());
    whispers_cross_nodes(&["--broadcast_adapter=nats", &servers], || {
        nats.wait_subscribers(BUS, 2)
    })
    .await;
}

/// `$pubsub` streams have presence in the server itself, as anycable-go's
/// streams controller gives it (`$p`: public streams always, signed ones
/// with `streams_presence`, on by default), across two nodes; the client
/// names its presence id (anycable-go takes the `join`'s id as sent).
#[tokio::test]
async fn public_streams_have_presence_without_the_application() {
    let app = AppServer::start().await;
    let redis = RedisServer::start();
    let url = format!("--redis_url={}", redis.url());
    let args = [url.as_str(), "--broker=redis", "--public_streams"];
    let a = Node::start(&app, &args).await;
    let b = Node::start(&app, &args).await;
    redis.wait_subscribers(BUS, 2).await;
    let calls = app.app.calls().len();
    let mut alice = client(&a.url(), "alice", EXT).await;
    let mut bob = client(&b.url(), "bob", EXT).await;
    let id = public_stream("lobby");
    for c in [&mut alice, &mut bob] {
        subscribe_public(c, "lobby").await;
    }
    alice
        .send_json(
            json!({"command": "join", "identifier": id, "presence": {"id": "a1", "info": "Alice"}}),
        )
        .await;
    let joined = json!({"type": "join", "id": "a1", "info": "Alice"});
    assert_eq!(presence(&mut alice).await, joined);
    assert_eq!(presence(&mut bob).await, joined);
    bob.send_json(json!({"command": "presence", "identifier": id}))
        .await;
    assert_eq!(
        presence(&mut bob).await,
        json!({"type": "info", "total": 1, "records": [{"id": "a1", "info": "Alice"}]})
    );
    alice
        .send_json(json!({"command": "unsubscribe", "identifier": id}))
        .await;
    assert_eq!(
        presence(&mut bob).await,
        json!({"type": "leave", "id": "a1"})
    );
    // Only the connects reached the application (the cookie connects).
    assert_eq!(app.app.calls().len(), calls + 2, "{:?}", app.app.calls());
    drop((a, b));
    app.stop().await;
}
