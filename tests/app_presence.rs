//! The application's say on presence through the RPC contract (the
//! `presence` field of a command reply, anycable-rails' `join_presence` /
//! `leave_presence`), with a real gRPC application (`ChatApp`'s
//! `AppPresenceChannel`) and raw WebSocket clients on both protocols: the
//! join on subscribe with its id and info, a leave and a join from actions,
//! info that is not JSON, an unknown event refused, the leave on
//! unsubscribe. The JSON form (HTTP RPC) is checked in `rpc::json`'s tests.

mod common;

use common::*;
use ferrocable::config::BrokerAdapter;
use serde_json::{Value, json};
use std::time::Duration;

fn room(n: &str) -> String {
    json!({"channel": "AppPresenceChannel", "room": n}).to_string()
}

async fn info(c: &mut Client, n: &str) -> Value {
    presence_info(c, &room(n)).await
}

async fn ext_client(url: &str, user: &str) -> Client {
    let mut c = connect_raw(
        url,
        Some(&format!("user={user}")),
        Some("actioncable-v1-ext-json"),
    )
    .await;
    assert_eq!(c.recv().await["type"], "welcome");
    c
}

/// Subscribes to room `n`: the confirmation, then its own join.
async fn subscribe(c: &mut Client, n: &str, user: &str) {
    c.subscribe(&room(n)).await;
    let confirm = c.recv().await;
    assert_eq!(confirm["type"], "confirm_subscription", "{confirm}");
    assert_eq!(
        presence(c).await,
        json!({"type": "join", "id": format!("u-{user}"), "info": {"name": user}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applications_presence_is_applied() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| {
        c.broker = Some(BrokerAdapter::Memory);
    }))
    .await;
    let url = server.url();

    // Subscribing joins, with the application's id and info.
    let mut alice = ext_client(&url, "alice").await;
    subscribe(&mut alice, "1", "alice").await;
    // The base protocol gets the events too (as anycable-go sends them):
    // Action Cable's client hands them to the channel's `received`.
    let (mut bob, _) = connect_user(&url, "bob").await;
    subscribe(&mut bob, "1", "bob").await;
    assert_eq!(
        presence(&mut alice).await,
        json!({"type": "join", "id": "u-bob", "info": {"name": "bob"}})
    );
    let now = info(&mut alice, "1").await;
    assert_eq!(now["total"], 2, "{now}");

    // An action leaves (the session, whatever id it names) ...
    bob.perform(
        &room("1"),
        json!({"action": "leave_presence", "id": "u-bob"}),
    )
    .await;
    let left = json!({"type": "leave", "id": "u-bob"});
    assert_eq!(presence(&mut alice).await, left);
    assert_eq!(presence(&mut bob).await, left);
    // ... and joins again, with info that is not JSON (kept as a string).
    bob.perform(
        &room("1"),
        json!({"action": "join_presence", "id": "u-bob", "info": "typing…"}),
    )
    .await;
    let joined = json!({"type": "join", "id": "u-bob", "info": "typing…"});
    assert_eq!(presence(&mut alice).await, joined);
    assert_eq!(presence(&mut bob).await, joined);

    // An unknown event is refused (logged), nothing changes.
    bob.perform(
        &room("1"),
        json!({"action": "join_presence", "type": "wave", "id": "u-bob"}),
    )
    .await;
    bob.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(info(&mut alice, "1").await["total"], 2);

    // Unsubscribing leaves.
    alice
        .send_json(json!({"command": "unsubscribe", "identifier": room("1")}))
        .await;
    assert_eq!(
        presence(&mut bob).await,
        json!({"type": "leave", "id": "u-alice"})
    );
    server.shutdown().await;
    app.stop().await;
}
