//! The session's command handling, against a scripted application (a fake
//! [`Controller`]: the application side is the seam) over an in-memory
//! socket: a real node, hub, outgoing queue and writer, and a real
//! WebSocket client on the other end of a `tokio::io::duplex` pipe.

use super::*;
use crate::config::Config;
use crate::controller::{Controller, Reply, Request, StateChanges};
use crate::metrics::Metrics;
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::DuplexStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

/// A bound on waiting for something that should happen at once: only a
/// hang reaches it, however slow the machine.
const WAIT: Duration = Duration::from_secs(30);

type OnCommand = dyn Fn(&Command) -> CommandReply + Send + Sync;

/// The application: answers connect with `connect`, every command with
/// `on_command`, and records every call it gets.
struct FakeApp {
    stateful: bool,
    /// The client speaks the extended protocol.
    extended: bool,
    connect: ConnectReply,
    on_command: Box<OnCommand>,
    commands: Mutex<Vec<Command>>,
    disconnects: Mutex<Vec<DisconnectRequest>>,
}

impl FakeApp {
    fn new(on_command: impl Fn(&Command) -> CommandReply + Send + Sync + 'static) -> Self {
        let mut connect = ConnectReply::new(Status::Success);
        connect.identifiers = r#"{"user":"alice"}"#.into();
        FakeApp {
            stateful: false,
            extended: false,
            connect,
            on_command: Box::new(on_command),
            commands: Mutex::new(Vec::new()),
            disconnects: Mutex::new(Vec::new()),
        }
    }

    /// A stateful application, which sends its own welcome (Action Cable's,
    /// passed through as it is).
    fn stateful(mut self) -> Self {
        self.stateful = true;
        self.connect.transmissions = vec![r#"{"type":"welcome","sid":"from-the-app"}"#.into()];
        self
    }

    fn extended(mut self) -> Self {
        self.extended = true;
        self
    }

    fn connecting(mut self, reply: ConnectReply) -> Self {
        self.connect = reply;
        self
    }

    fn commands(&self) -> Vec<Command> {
        self.commands.lock().unwrap().clone()
    }
}

impl Controller for FakeApp {
    fn call(&self, _sid: &str, request: Request) -> BoxFuture<'static, Result<Reply, CallError>> {
        let reply = match request {
            Request::Connect(_) => Reply::Connect(self.connect.clone()),
            Request::Command(command) => {
                let reply = (self.on_command)(&command);
                self.commands.lock().unwrap().push(command);
                Reply::Command(reply)
            }
            Request::Stream(_) => Reply::Command(CommandReply::new(Status::Success)),
            Request::Disconnect(request) => {
                self.disconnects.lock().unwrap().push(request);
                Reply::Disconnect(Ok(()))
            }
        };
        Box::pin(async move { Ok(reply) })
    }

    fn stateful(&self) -> bool {
        self.stateful
    }
}

/// Success, with these transmissions.
fn success(transmissions: &[&str]) -> CommandReply {
    let mut reply = CommandReply::new(Status::Success);
    reply.transmissions = transmissions.iter().map(|t| t.to_string()).collect();
    reply
}

/// The client's end of the socket.
struct Client {
    ws: WebSocketStream<DuplexStream>,
}

impl Client {
    async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    async fn subscribe(&mut self, identifier: &str) {
        self.send(json!({"command": "subscribe", "identifier": identifier}))
            .await;
    }

    async fn perform(&mut self, identifier: &str, data: Value) {
        self.send(
            json!({"command": "message", "identifier": identifier, "data": data.to_string()}),
        )
        .await;
    }

    /// The next message (pings aside), or None once the socket closed.
    async fn next(&mut self) -> Option<Message> {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("the session answers")?
                .ok()?;
            match &message {
                Message::Text(t) if t.as_str().starts_with(r#"{"type":"ping""#) => continue,
                _ => return Some(message),
            }
        }
    }

    /// The next data frame, as JSON.
    async fn recv(&mut self) -> Value {
        match self.next().await {
            Some(Message::Text(t)) => serde_json::from_str(t.as_str()).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Frames until the close frame, and the close frame.
    async fn until_close(&mut self) -> (Vec<Value>, Option<CloseFrame>) {
        let mut frames = Vec::new();
        loop {
            match self.next().await {
                Some(Message::Text(t)) => frames.push(serde_json::from_str(t.as_str()).unwrap()),
                Some(Message::Close(close)) => return (frames, close),
                Some(_) => {}
                None => return (frames, None),
            }
        }
    }

    /// Nothing was sent to the client before the answer to a ping sent now
    /// (the session handles one frame at a time, in order).
    async fn nothing_before_pong(&mut self) {
        self.send(json!({"command": "ping"})).await;
        assert_eq!(self.recv().await, json!({"type": "pong"}));
    }
}

struct Harness {
    sid: String,
    node: Arc<Node>,
    app: Arc<FakeApp>,
    client: Client,
    session: tokio::task::JoinHandle<()>,
}

/// A node with `app` behind it and one session on an in-memory socket,
/// connected (the application asked after the upgrade, as a stateless one
/// is; a stateful one is asked before it, by the server, and its answer
/// handed over, as here).
async fn open(app: FakeApp) -> Harness {
    let mut config = Config::defaults();
    config.ping_interval = 3600;
    let app = Arc::new(app);
    let node = Node::start(Arc::new(config), app.clone(), Arc::new(Metrics::new()));
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let reservation = node.reserve_session();
    let sid = reservation.sid().to_owned();
    let connected = app
        .stateful
        .then(|| Ok::<_, CallError>(app.connect.clone()));
    let request = RequestInfo {
        url: "http://example.test/cable".into(),
        headers: StateMap::new(),
        extended: app.extended,
        restore_sid: None,
        ping_interval: None,
        ping_precision: None,
    };
    let session = tokio::spawn(run(
        node.clone(),
        server_io,
        request,
        reservation,
        connected,
        None,
    ));
    let ws = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
    Harness {
        sid,
        node,
        app,
        client: Client { ws },
        session,
    }
}

/// Opens a session and reads its welcome.
async fn welcomed(app: FakeApp) -> Harness {
    let mut h = open(app).await;
    assert_eq!(h.client.recv().await["type"], "welcome");
    h
}

const ROOM: &str = r#"{"channel":"RoomChannel","id":1}"#;

#[tokio::test]
async fn welcome_carries_the_session_id_and_comes_once() {
    // The application's own welcome is replaced by one with our sid.
    let mut connect = ConnectReply::new(Status::Success);
    connect.transmissions = vec![r#"{"type":"welcome"}"#.into()];
    let mut h = open(FakeApp::new(|_| success(&[])).connecting(connect)).await;
    assert_eq!(
        h.client.recv().await,
        json!({"type": "welcome", "sid": h.sid})
    );
    h.client.nothing_before_pong().await;
}

#[tokio::test]
async fn a_refused_connection_is_told_why_and_closed() {
    let refused = ConnectReply::new(Status::Failure);
    let mut h = open(FakeApp::new(|_| success(&[])).connecting(refused)).await;
    let (frames, close) = h.client.until_close().await;
    assert_eq!(
        frames,
        vec![json!({"type": "disconnect", "reason": "unauthorized", "reconnect": false})]
    );
    assert!(close.is_some());
    h.session.await.unwrap();
    assert!(
        h.app.disconnects.lock().unwrap().is_empty(),
        "it never connected"
    );
}

#[tokio::test]
async fn subscribe_is_confirmed_when_the_reply_has_no_confirmation() {
    let mut h = welcomed(FakeApp::new(|_| success(&[]))).await;
    h.client.subscribe(ROOM).await;
    assert_eq!(
        h.client.recv().await,
        json!({"type": "confirm_subscription", "identifier": ROOM})
    );
    let commands = h.app.commands();
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].kind, CommandKind::Subscribe);
    assert_eq!(commands[0].identifier, ROOM);
    assert_eq!(commands[0].connection_identifiers, r#"{"user":"alice"}"#);
}

#[tokio::test]
async fn a_confirmation_in_the_reply_is_not_repeated() {
    let confirm = protocol::confirm_subscription(ROOM);
    let mut h = welcomed(FakeApp::new(move |_| success(&[&confirm]))).await;
    h.client.subscribe(ROOM).await;
    assert_eq!(h.client.recv().await["type"], "confirm_subscription");
    h.client.nothing_before_pong().await;
}

#[tokio::test]
async fn a_refused_subscribe_is_rejected_once() {
    let mut h = welcomed(FakeApp::new(|c| {
        let mut reply = CommandReply::new(Status::Failure);
        // The second identifier's rejection comes from the application.
        if c.identifier.contains("2") {
            reply.transmissions = vec![protocol::reject_subscription(&c.identifier)];
        }
        reply
    }))
    .await;
    h.client.subscribe(ROOM).await;
    assert_eq!(
        h.client.recv().await,
        json!({"type": "reject_subscription", "identifier": ROOM})
    );
    let other = r#"{"channel":"RoomChannel","id":2}"#;
    h.client.subscribe(other).await;
    assert_eq!(
        h.client.recv().await,
        json!({"type": "reject_subscription", "identifier": other})
    );
    h.client.nothing_before_pong().await;
    // A rejected subscription is not held: subscribing again asks again.
    h.client.subscribe(ROOM).await;
    assert_eq!(h.client.recv().await["type"], "reject_subscription");
    assert_eq!(h.app.commands().len(), 3);
}

#[tokio::test]
async fn a_duplicate_subscribe_is_ignored() {
    let mut h = welcomed(FakeApp::new(|_| success(&[]))).await;
    h.client.subscribe(ROOM).await;
    assert_eq!(h.client.recv().await["type"], "confirm_subscription");
    h.client.subscribe(ROOM).await;
    h.client.nothing_before_pong().await;
    assert_eq!(
        h.app.commands().len(),
        1,
        "the duplicate never reached the application"
    );
    assert_eq!(h.node.metrics.client_message_failures.get(), 1);
}

#[tokio::test]
async fn commands_for_unknown_identifiers_are_ignored() {
    let mut h = welcomed(FakeApp::new(|_| success(&["{\"type\":\"unexpected\"}"]))).await;
    h.client.perform(ROOM, json!({"action": "speak"})).await;
    h.client
        .send(json!({"command": "unsubscribe", "identifier": ROOM}))
        .await;
    h.client.nothing_before_pong().await;
    assert!(h.app.commands().is_empty());
    assert_eq!(h.node.metrics.client_message_failures.get(), 2);
}

#[tokio::test]
async fn a_stateful_application_gets_every_command_and_nothing_is_added() {
    let mut h = welcomed(FakeApp::new(|_| success(&[])).stateful()).await;
    h.client.subscribe(ROOM).await;
    h.client.subscribe(ROOM).await;
    h.client
        .perform(r#"{"channel":"Unknown"}"#, json!({"action": "x"}))
        .await;
    h.client.nothing_before_pong().await;
    let kinds: Vec<_> = h.app.commands().iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        vec![
            CommandKind::Subscribe,
            CommandKind::Subscribe,
            CommandKind::Message
        ]
    );
    assert_eq!(h.node.metrics.client_message_failures.get(), 0);
}

#[tokio::test]
async fn transmissions_arrive_in_order_and_replies_in_the_clients_order() {
    let mut h = welcomed(FakeApp::new(|c| {
        if c.kind == CommandKind::Subscribe {
            return success(&[]);
        }
        let n: Value = serde_json::from_str(&c.data).unwrap();
        let n = n["n"].as_u64().unwrap();
        let frames: Vec<String> = (0..3)
            .map(|i| json!({"identifier": ROOM, "message": {"n": n, "i": i}}).to_string())
            .collect();
        let refs: Vec<&str> = frames.iter().map(String::as_str).collect();
        success(&refs)
    }))
    .await;
    h.client.subscribe(ROOM).await;
    assert_eq!(h.client.recv().await["type"], "confirm_subscription");
    for n in 0..3 {
        h.client.perform(ROOM, json!({"n": n})).await;
    }
    for n in 0..3 {
        for i in 0..3 {
            assert_eq!(h.client.recv().await["message"], json!({"n": n, "i": i}));
        }
    }
}

#[tokio::test]
async fn the_disconnect_flag_closes_after_the_transmissions() {
    let mut h = welcomed(FakeApp::new(|c| {
        if c.kind == CommandKind::Subscribe {
            return success(&[]);
        }
        let mut reply = success(&[r#"{"type":"goodbye"}"#]);
        reply.disconnect = true;
        reply
    }))
    .await;
    h.client.subscribe(ROOM).await;
    assert_eq!(h.client.recv().await["type"], "confirm_subscription");
    h.client.perform(ROOM, json!({"action": "leave"})).await;
    // Sent before the close is read, and never handled.
    h.client.perform(ROOM, json!({"action": "after"})).await;
    let (frames, close) = h.client.until_close().await;
    assert_eq!(frames, vec![json!({"type": "goodbye"})]);
    assert_eq!(u16::from(close.expect("a close frame").code), 1000);
    h.session.await.unwrap();
    assert_eq!(
        h.app.commands().len(),
        2,
        "nothing read after the disconnect"
    );
}

#[tokio::test]
async fn streams_are_started_and_stopped_as_replies_say() {
    let mut h = welcomed(FakeApp::new(|c| {
        let mut reply = success(&[]);
        match (c.kind, c.data.as_str()) {
            (CommandKind::Subscribe, _) => {
                reply.streams = vec!["a".into(), "b".into(), "c".into()];
            }
            (_, r#"{"stop":"b"}"#) => reply.stopped_streams = vec!["b".into()],
            (_, r#"{"stop":"all"}"#) => reply.stop_streams = true,
            _ => {}
        }
        reply
    }))
    .await;
    let hub = &h.node.hub;
    h.client.subscribe(ROOM).await;
    assert_eq!(h.client.recv().await["type"], "confirm_subscription");
    assert_eq!(["a", "b", "c"].map(|s| hub.subscriber_count(s)), [1, 1, 1]);
    h.node.deliver("a", r#"{"text":"hi"}"#, None);
    assert_eq!(
        h.client.recv().await,
        json!({"identifier": ROOM, "message": {"text": "hi"}})
    );

    h.client.perform(ROOM, json!({"stop": "b"})).await;
    h.client.nothing_before_pong().await;
    assert_eq!(["a", "b", "c"].map(|s| hub.subscriber_count(s)), [1, 0, 1]);

    h.client.perform(ROOM, json!({"stop": "all"})).await;
    h.client.nothing_before_pong().await;
    assert_eq!(hub.stream_count(), 0);
}

#[tokio::test]
async fn istate_and_cstate_are_carried_to_the_next_calls() {
    let mut connect = ConnectReply::new(Status::Success);
    connect.state.cstate = [("token".into(), "t1".into())].into();
    let mut h = welcomed(
        FakeApp::new(|c| {
            let mut reply = success(&[]);
            reply.state = match (c.kind, c.data.as_str()) {
                (CommandKind::Subscribe, _) => StateChanges {
                    istate: [("room".into(), "1".into())].into(),
                    cstate: [("seen".into(), "yes".into())].into(),
                },
                // An empty value deletes the key.
                (_, r#"{"forget":true}"#) => StateChanges {
                    istate: [("room".into(), "".into())].into(),
                    cstate: [("token".into(), "".into())].into(),
                },
                _ => StateChanges::default(),
            };
            reply
        })
        .connecting(connect),
    )
    .await;
    h.client.subscribe(ROOM).await;
    assert_eq!(h.client.recv().await["type"], "confirm_subscription");
    h.client.perform(ROOM, json!({"forget": true})).await;
    h.client.perform(ROOM, json!({"again": true})).await;
    h.client.nothing_before_pong().await;

    let commands = h.app.commands();
    let state = |i: usize| {
        (
            commands[i].env.istate.clone(),
            commands[i].env.cstate.clone(),
        )
    };
    let map = |pairs: &[(&str, &str)]| -> StateMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(state(0), (map(&[]), map(&[("token", "t1")])));
    assert_eq!(
        state(1),
        (
            map(&[("room", "1")]),
            map(&[("token", "t1"), ("seen", "yes")])
        )
    );
    assert_eq!(state(2), (map(&[]), map(&[("seen", "yes")])));
}

#[tokio::test]
async fn the_disconnect_call_gets_the_subscriptions_and_their_state() {
    let mut h = welcomed(FakeApp::new(|_| {
        let mut reply = success(&[]);
        reply.state.istate = [("room".into(), "1".into())].into();
        reply
    }))
    .await;
    h.client.subscribe(ROOM).await;
    assert_eq!(h.client.recv().await["type"], "confirm_subscription");
    h.client.ws.close(None).await.unwrap();
    h.session.await.unwrap();
    let node = h.node.clone();
    tokio::time::timeout(WAIT, node.shutdown()).await.unwrap();
    let disconnects = h.app.disconnects.lock().unwrap().clone();
    assert_eq!(disconnects.len(), 1);
    assert_eq!(disconnects[0].identifiers, r#"{"user":"alice"}"#);
    assert_eq!(disconnects[0].subscriptions, vec![ROOM.to_string()]);
    assert_eq!(
        disconnects[0].env.istate.get(ROOM).map(String::as_str),
        Some(r#"{"room":"1"}"#)
    );
}

#[tokio::test]
async fn malformed_frames_are_counted_and_ignored() {
    let mut h = welcomed(FakeApp::new(|_| success(&[]))).await;
    h.client.send_text("not json").await;
    h.client.send(json!({"command": "dance"})).await;
    h.client.send(json!({"command": "subscribe"})).await;
    h.client
        .send(json!({"command": "message", "identifier": ROOM, "data": {"not": "a string"}}))
        .await;
    h.client
        .ws
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .unwrap();
    // The session is still there, and the application heard none of it.
    h.client.nothing_before_pong().await;
    assert!(h.app.commands().is_empty());
    assert_eq!(h.node.metrics.client_message_failures.get(), 5);
    h.client.subscribe(ROOM).await;
    assert_eq!(h.client.recv().await["type"], "confirm_subscription");
}

#[tokio::test]
async fn history_replays_plain_streams_never_callback_ones() {
    let mut h = welcomed(
        FakeApp::new(|c| {
            let mut reply = success(&[]);
            if c.kind == CommandKind::Subscribe {
                reply.streams = vec!["plain".into(), "cb".into()];
                reply.callback_streams = vec!["cb".into()];
                reply.transmissions = vec![protocol::confirm_subscription(ROOM)];
            }
            reply
        })
        .stateful()
        .extended(),
    )
    .await;
    h.client.subscribe(ROOM).await;
    assert_eq!(h.client.recv().await["type"], "confirm_subscription");
    h.node.deliver("cb", r#"{"to":"callback"}"#, None);
    h.node.deliver("plain", r#"{"to":"client"}"#, None);
    let live = h.client.recv().await;
    assert_eq!(
        (
            live["message"].clone(),
            live["stream_id"].clone(),
            live["offset"].clone()
        ),
        (json!({"to": "client"}), json!("plain"), json!(1))
    );
    // Replayed from the start: the plain stream only, nothing twice.
    let epoch = live["epoch"].clone();
    h.client
        .send(json!({"command": "history", "identifier": ROOM,
            "history": {"since": 1, "streams": {"plain": {"epoch": epoch, "offset": 0}}}}))
        .await;
    assert_eq!(
        h.client.recv().await,
        json!({"type": "confirm_history", "identifier": ROOM})
    );
    h.client.nothing_before_pong().await;
}

/// What an idle connection holds for its whole life is its two tasks'
/// futures (on a real TCP socket): they stay small (issue 15, see
/// BENCHMARKS.md's memory budget). A change that puts a large value or a
/// rarely-live future inline in either grows them past these bounds.
#[tokio::test]
async fn an_idle_connections_futures_stay_small() {
    let node = Node::start(
        Arc::new(Config::defaults()),
        Arc::new(FakeApp::new(|_| success(&[]))),
        Arc::new(Metrics::new()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (socket, _) = listener.accept().await.unwrap();
    let request = RequestInfo {
        url: "http://example.test/cable".into(),
        headers: StateMap::new(),
        extended: false,
        restore_sid: None,
        ping_interval: None,
        ping_precision: None,
    };
    let reader = run(
        node.clone(),
        socket,
        request,
        node.reserve_session(),
        None,
        None,
    );
    let (handle, queue, _open) = node.open_session(node.reserve_session());
    let (_stream, sink) = crate::websocket::split(client, 1 << 16, 1024, 1024);
    let writer = write_loop(sink, queue, handle, Duration::from_secs(2));
    let (reader, writer) = (size_of_val(&reader), size_of_val(&writer));
    eprintln!("reader future: {reader} B, writer future: {writer} B");
    // 696 and 368 bytes with tokio 1.54 and our own framing (632 and 472
    // with tungstenite's stream; 1,312 and 712 before issue 15's second
    // pass), with room for a compiler's layout changes.
    assert!(reader <= 800, "reader future: {reader} B");
    assert!(writer <= 600, "writer future: {writer} B");
}
