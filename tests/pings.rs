//! Pings on the extended protocol: `pong_timeout` disconnects a silent
//! client with `no_pong` (any message answers a ping), the base protocol is
//! never asked for pongs, `?pi=` and `?ptp=` set a client's own ping
//! interval and timestamp precision, `ping_timestamp_precision` everyone's.

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const EXT: &str = "actioncable-v1-ext-json";
/// Bound on waiting for what is due within a few seconds.
const LONG: Duration = Duration::from_secs(30);

async fn connect(url: &str, protocol: &str) -> Client {
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", "user=alice".parse().unwrap());
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut client = Client {
        ws,
        protocol: Some(protocol.into()),
    };
    assert_eq!(client.recv().await["type"], "welcome");
    client
}

/// The next text frame within [`LONG`], or None once the socket closed.
async fn next(client: &mut Client) -> Option<Value> {
    loop {
        match tokio::time::timeout(LONG, client.ws.next())
            .await
            .expect("nothing came")
        {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_silent_extended_client_is_disconnected_with_no_pong() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| {
        c.ping_interval = 1;
        c.pong_timeout = 1;
    }))
    .await;

    // Silent: pinged, then told no_pong (reconnect) and closed.
    let mut silent = connect(&server.url(), EXT).await;
    assert_eq!(next(&mut silent).await.unwrap()["type"], "ping");
    let mut last = None;
    while let Some(frame) = next(&mut silent).await {
        last = Some(frame);
    }
    assert_eq!(
        last.unwrap(),
        json!({"type": "disconnect", "reason": "no_pong", "reconnect": true})
    );

    // Answering every ping: still here after four of them.
    let mut lively = connect(&server.url(), EXT).await;
    // On the base protocol nobody asks for pongs.
    let mut base = connect(&server.url(), "actioncable-v1-json").await;
    for _ in 0..4 {
        let ping = next(&mut lively).await.expect("still connected");
        assert_eq!(ping["type"], "ping");
        lively.send_json(json!({"command": "pong"})).await;
        assert_eq!(
            next(&mut base).await.expect("still connected")["type"],
            "ping"
        );
    }
}

#[tokio::test]
async fn pi_and_ptp_give_a_client_its_own_pings() {
    let app = AppServer::start().await;
    let server = TestServer::start(config(app.addr, |c| {
        c.ping_interval = 3600;
        c.ping_timestamp_precision = ferrocable::config::TimestampPrecision::Ns;
    }))
    .await;
    // A ping interval past a day (here u64::MAX, which would overflow the
    // timer's deadline, panicking the session after its welcome) is
    // ignored: the session goes on serving its client.
    let mut huge = connect(&format!("{}?pi=18446744073709551615", server.url()), EXT).await;
    huge.join("1").await;
    // Every second, in milliseconds, while the others wait an hour.
    let mut own = connect(&format!("{}?pi=1&ptp=ms", server.url()), EXT).await;
    let mut stamps = Vec::new();
    for _ in 0..2 {
        let ping = next(&mut own).await.unwrap();
        assert_eq!(ping["type"], "ping");
        stamps.push(ping["message"].as_u64().unwrap());
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        stamps.iter().all(|s| s.abs_diff(now_ms) < 60_000),
        "{stamps:?} vs {now_ms}"
    );
    assert!(stamps[1] - stamps[0] >= 500, "{stamps:?}");

    // ping_timestamp_precision for everyone else: nanoseconds.
    let server = TestServer::start(config(app.addr, |c| {
        c.ping_interval = 1;
        c.ping_timestamp_precision = ferrocable::config::TimestampPrecision::Ns;
    }))
    .await;
    let mut plain = connect(&server.url(), "actioncable-v1-json").await;
    let ping = next(&mut plain).await.unwrap();
    let stamp = ping["message"].as_f64().unwrap();
    assert!(stamp > 1e18, "{ping}");
    // pi=0: no pings at all, while the others get theirs.
    let mut none = connect(&format!("{}?pi=0", server.url()), EXT).await;
    for _ in 0..2 {
        assert_eq!(next(&mut plain).await.unwrap()["type"], "ping");
    }
    // Two seconds went by: anything sent to it is waiting to be read.
    let waiting = tokio::time::timeout(Duration::from_millis(100), none.ws.next()).await;
    assert!(waiting.is_err(), "pi=0 got {waiting:?}");
}
