//! Split mode end to end, without Ruby: the server's gRPC client talks to our
//! own `anycable.RPC` server, whose calls are answered by plain worker
//! threads through the call queue (the gem puts Ruby there).

mod common;

use common::*;
use ferrocable::call_queue::{Call, CallQueue, QueueOptions};
use ferrocable::controller::{CommandReply, ConnectReply, Reply, Request, StateChanges, Status};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A worker thread playing the application: accepts everyone as `{"user":"w"}`,
/// subscribes to stream `s`, records every call.
fn spawn_worker(queue: Arc<CallQueue>, seen: Arc<Mutex<Vec<Call>>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !queue.is_closed() {
            let Some(call) = queue.next_call(Duration::from_millis(200)) else {
                continue;
            };
            seen.lock().unwrap().push(call.clone());
            let reply = match &call.request {
                Request::Connect(_) => Reply::Connect(ConnectReply {
                    status: Status::Success,
                    identifiers: r#"{"user":"w"}"#.into(),
                    transmissions: vec![r#"{"type":"welcome"}"#.into()],
                    error_msg: String::new(),
                    state: StateChanges::default(),
                    handshake: None,
                    disconnect_interest: true,
                }),
                Request::Command(c) => {
                    let mut r = CommandReply::new(Status::Success);
                    r.streams = vec!["s".into()];
                    r.transmissions = vec![
                        json!({"type": "confirm_subscription", "identifier": c.identifier})
                            .to_string(),
                    ];
                    Reply::Command(r)
                }
                Request::Disconnect(_) => Reply::Disconnect(Ok(())),
                Request::Stream(m) => panic!("the RPC server makes no stream calls: {m:?}"),
            };
            queue.reply(call.id, reply);
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_side_through_our_rpc_server_to_worker_threads() {
    let queue = CallQueue::new(QueueOptions::new(Some(Duration::from_secs(2)), 1024));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..2)
        .map(|_| spawn_worker(queue.clone(), seen.clone()))
        .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rpc_addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let rpc = tokio::spawn(ferrocable::rpc::server::serve(
        listener,
        queue.clone(),
        async {
            let _ = stopped.await;
        },
    ));

    let server = TestServer::start(config(rpc_addr, |_| {})).await;
    let (mut client, sid) = connect_user(&server.url(), "ignored").await;
    let id = json!({"channel": "C"}).to_string();
    client.subscribe(&id).await;
    assert_eq!(client.recv().await["type"], "confirm_subscription");
    let body = json!({"stream": "s", "data": "{\"x\":1}"}).to_string();
    assert_eq!(
        http(server.broadcast_addr(), "POST", "/_broadcast", &[], &body)
            .await
            .0,
        201
    );
    assert_eq!(client.recv().await["message"], json!({"x": 1}));
    client.close().await;
    server
        .eventually("Disconnect reached a worker", |_| {
            seen.lock()
                .unwrap()
                .iter()
                .any(|c| matches!(c.request, Request::Disconnect(_)))
        })
        .await;

    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 3);
    for call in &calls {
        assert!(call.stateless, "gRPC calls are stateless");
        assert_eq!(call.sid, sid, "the session id travels in metadata");
    }
    let Request::Disconnect(d) = &calls[2].request else {
        panic!()
    };
    assert_eq!(d.identifiers, r#"{"user":"w"}"#);
    assert_eq!(d.subscriptions, vec![id]);

    let _ = stop.send(());
    rpc.await.unwrap().unwrap();
    queue.close();
    for w in workers {
        w.join().unwrap();
    }
}

#[tokio::test]
async fn rpc_server_without_workers_answers_deadline_and_clients_are_told_to_reconnect() {
    let queue = CallQueue::new(QueueOptions::new(Some(Duration::from_millis(300)), 1024));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rpc_addr = listener.local_addr().unwrap();
    tokio::spawn(ferrocable::rpc::server::serve(
        listener,
        queue.clone(),
        std::future::pending(),
    ));
    let server = TestServer::start(config(rpc_addr, |_| {})).await;
    let mut client = connect_raw(&server.url(), Some("user=a"), None).await;
    let (frames, _) = client.recv_until_close().await;
    assert_eq!(
        frames,
        vec![json!({"type": "disconnect", "reason": "server_restart", "reconnect": true})]
    );
}
