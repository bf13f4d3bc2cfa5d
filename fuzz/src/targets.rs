//! One function per fuzz target. Each takes the fuzzer's bytes, runs the
//! parser the way the server does, and checks what must hold whatever the
//! input (no panic; what is accepted encodes back into valid JSON frames).
//! Shared with `tests/fuzz_corpus.rs` (included by path), so it uses only
//! crates the core depends on.

use bytes::Bytes;
use ferrocable::broadcast::{self, Publication, Publish};
use ferrocable::metrics::Metrics;
use ferrocable::protocol::{self, ClientCommand};
use ferrocable::rpc::{json, pb};
use ferrocable::{config, controller, handshake, origin};
use http_body_util::Full;
use hyper::{Method, Request, StatusCode, header::HeaderValue};
use prost::Message;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A frame the server writes must be one JSON value, by JSON's grammar
/// (RFC 8259), which is what a client's `JSON.parse` takes. Checked as raw
/// JSON, not decoded into a `Value`: a number past f64 (`1e555`) and a
/// `\u` escape of an unpaired surrogate (`"\ud888"`, which a whisper's data
/// may carry as sent: JavaScript strings hold them) are valid JSON text
/// that serde_json only refuses to decode.
fn assert_json(frame: &str) {
    if let Err(e) = serde_json::from_str::<Box<serde_json::value::RawValue>>(frame) {
        panic!("server frame is not JSON ({e}): {frame:?}");
    }
}

/// The client frame decoder (`protocol::decode_client_frame`): a text frame
/// as a session reads it; an accepted identifier echoes into valid frames.
pub fn client_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // tungstenite refuses a text frame that is not UTF-8
    };
    let Ok(command) = protocol::decode_client_frame(text) else {
        return;
    };
    match command {
        ClientCommand::Subscribe { identifier, .. }
        | ClientCommand::Unsubscribe { identifier }
        | ClientCommand::History { identifier, .. }
        | ClientCommand::Join { identifier, .. }
        | ClientCommand::Leave { identifier }
        | ClientCommand::Presence { identifier, .. } => {
            assert_json(&protocol::confirm_subscription(&identifier));
            assert_json(&protocol::reject_subscription(&identifier));
            assert_json(&protocol::confirm_history(&identifier));
        }
        ClientCommand::Message { identifier, data }
        | ClientCommand::Whisper { identifier, data } => {
            assert_json(&protocol::data_message(&identifier, &data));
        }
        ClientCommand::Ping | ClientCommand::Pong => {}
    }
}

/// The publication decoder (`broadcast::decode`): a payload from Redis,
/// NATS or `/_broadcast`; every broadcast it yields encodes into a frame.
pub fn publication(data: &[u8]) {
    let Ok(publications) = broadcast::decode(data) else {
        return;
    };
    for p in publications {
        if let Publication::Broadcast { stream, data, .. } = p {
            assert_json(&protocol::data_message(&stream, &data));
            // The hub's frame: data as the raw JSON value when it is one.
            assert_json(&protocol::data_message_with(
                "{}",
                &data,
                protocol::is_json(&data),
            ));
        }
    }
}

/// Counts what the HTTP broadcast endpoint routes (the fuzz target has no
/// node; the routing itself is `Publish`'s provided methods, run for real).
struct Counting {
    metrics: Metrics,
    delivered: AtomicUsize,
}

impl Publish for Counting {
    fn deliver(&self, _stream: &str, _data: &str, _exclude: Option<&str>) -> usize {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        0
    }

    fn deliver_transient(&self, _message: &ferrocable::broadcast::Transient) -> usize {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        0
    }

    fn remote_disconnect(&self, _identifiers: &str, _reconnect: bool) -> usize {
        0
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

/// The HTTP broadcast request (`broadcast::http::handle`): the first line
/// is the `Authorization` header, the rest the body. The key is `secret`:
/// the answer is 401 unless the header is `Bearer secret`, else 201 when
/// the body decodes and 422 when it does not.
pub fn http_broadcast(data: &[u8]) {
    static TO: OnceLock<Counting> = OnceLock::new();
    let to = TO.get_or_init(|| Counting {
        metrics: Metrics::new(),
        delivered: AtomicUsize::new(0),
    });
    let (auth, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let mut request = Request::builder().method(Method::POST).uri("/_broadcast");
    // A value HTTP cannot carry (control bytes) is no header at all.
    let sent = HeaderValue::from_bytes(auth).is_ok();
    if sent {
        request = request.header(hyper::header::AUTHORIZATION, auth);
    }
    let Ok(request) = request.body(Full::new(Bytes::copy_from_slice(body))) else {
        return;
    };
    let (status, _) = runtime().block_on(broadcast::http::handle(request, Some("secret"), to));
    let authorized =
        sent && auth.strip_prefix(b"Bearer ").map(<[u8]>::trim_ascii) == Some(b"secret");
    let expected = if !authorized {
        StatusCode::UNAUTHORIZED
    } else if broadcast::decode(body).is_ok() {
        StatusCode::CREATED
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    assert_eq!(status, expected, "auth {auth:?}");
}

/// The handshake request (`handshake::validate`, `origin::origin_allowed`,
/// the subprotocol choice): the first line is `METHOD TARGET`, each next
/// line a `name: value` header.
pub fn handshake(data: &[u8]) {
    let mut lines = data.split(|&b| b == b'\n');
    let first = lines.next().unwrap_or_default();
    let mut parts = first.splitn(2, |&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or(b"/cable");
    let Ok(method) = Method::from_bytes(method) else {
        return;
    };
    let mut request = Request::builder().method(method).uri(target);
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        request = request.header(&line[..colon], value);
    }
    let Ok(request) = request.body(()) else {
        return;
    };
    let accepted = handshake::validate(&request);
    if let Ok(key) = &accepted {
        assert!(!key.is_empty(), "an accepted handshake has a key");
    }
    let origin = request.headers().get(hyper::header::ORIGIN);
    let allowed = [
        "example.com".to_owned(),
        "*.example.org".to_owned(),
        "http://localhost:3000".to_owned(),
    ];
    origin::origin_allowed(&allowed, origin);
    assert!(
        origin::origin_allowed(&[], origin),
        "an empty list allows all"
    );
    let offered = request
        .headers()
        .get_all(hyper::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    protocol::select_subprotocol(offered);
}

/// The configuration file parser (`config::file::parse`): TOML text, both
/// anycable-go's sections and the flat form.
pub fn config_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(values) = config::file::parse(Path::new("fuzz.toml"), text) {
        for value in values.values {
            assert!(
                !value.flag.is_empty() && value.flag.trim() == value.flag,
                "a value without a flag name: {value:?}"
            );
        }
    }
}

/// The RPC replies (`rpc`'s mapping): the first byte picks the message
/// and the encoding (protobuf, as gRPC carries it; JSON, as HTTP RPC does),
/// the rest is the message; a decoded reply maps to the contract's reply
/// and back. Requests the gem's HTTP RPC endpoint decodes are included.
pub fn rpc_reply(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 8 {
        0 => {
            if let Ok(m) = pb::ConnectionResponse::decode(body) {
                let reply = controller::ConnectReply::from(m);
                json::encode_reply(controller::Reply::Connect(reply));
            }
        }
        1 => {
            if let Ok(m) = pb::CommandResponse::decode(body) {
                let reply = controller::CommandReply::from(m);
                json::encode_reply(controller::Reply::Command(reply));
            }
        }
        2 => {
            if let Ok(m) = pb::DisconnectResponse::decode(body) {
                let _ = ferrocable::rpc::disconnect_outcome(m);
            }
        }
        3 => {
            if let Ok(m) = json::decode::<pb::ConnectionResponse>(body) {
                let reply = controller::ConnectReply::from(m);
                json::encode_reply(controller::Reply::Connect(reply));
            }
        }
        4 => {
            if let Ok(m) = json::decode::<pb::CommandResponse>(body) {
                let reply = controller::CommandReply::from(m);
                json::encode_reply(controller::Reply::Command(reply));
            }
        }
        5 => {
            if let Ok(m) = json::decode::<pb::DisconnectResponse>(body) {
                let _ = ferrocable::rpc::disconnect_outcome(m);
            }
        }
        6 => {
            for method in ["connect", "command", "disconnect"] {
                let _ = json::decode_request(method, body);
            }
        }
        _ => {
            if let Ok(m) = pb::CommandMessage::decode(body) {
                let _ = controller::Command::try_from(m);
            }
        }
    }
}

/// The WebSocket frame reader (`websocket::read_all`): a client's bytes,
/// whole and cut into pieces of the first byte's size, give the same
/// messages and end the same way (a session reads whatever the socket
/// hands it); no message is over the limit.
pub fn ws_frames(data: &[u8]) {
    use ferrocable::websocket::{Incoming, read_all};
    const MAX: usize = 300;
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let (whole, whole_end) = read_all(&[stream], MAX);
    let pieces: Vec<&[u8]> = stream.chunks(usize::from(cut).max(1)).collect();
    let (cut_up, cut_end) = read_all(&pieces, MAX);
    assert_eq!(whole, cut_up, "cut into pieces of {cut}");
    assert_eq!(
        whole_end.as_ref().and_then(|e| e.close_code()),
        cut_end.as_ref().and_then(|e| e.close_code())
    );
    for message in &whole {
        match message {
            Incoming::Text(text) => assert!(text.len() <= MAX),
            Incoming::Binary(bytes) => assert!(bytes.len() <= MAX),
            Incoming::Ping(payload) => assert!(payload.len() <= 125),
            Incoming::Pong | Incoming::Close(_) => {}
        }
    }
}
