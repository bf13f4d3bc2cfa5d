//! Micro-benchmarks of ferrocable's hot paths, all in memory (no sockets, no
//! runtime, no Redis):
//!
//! - `hub_fanout`: one broadcast queued to thousands of subscribers, the cost
//!   a publication pays before any writer task runs;
//! - `encode`: the server frames built per broadcast and per connection;
//! - `decode`: the parsers every client frame and every publication go
//!   through.
//!
//! Run with `cargo bench --bench hot_paths` (add a filter such as
//! `-- hub_fanout` to run one group). Every group uses a short warm-up and
//! measurement time so the whole file runs in a few minutes on a small
//! machine; the figures are for comparing changes on one machine, not for
//! quoting as absolute capacity.

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use ferrocable::broadcast;
use ferrocable::hub::{Delivery, Hub, Via};
use ferrocable::metrics::Metrics;
use ferrocable::outgoing::{Outgoing, Receiver, SessionHandle};
use ferrocable::protocol;
use ferrocable::write_budget::WriteBudget;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The channel identifier every bench subscription uses, as the official
/// client sends it (a JSON object serialised into a string).
const IDENTIFIER: &str = r#"{"channel":"BenchmarkChannel"}"#;

/// A typical ~100-byte chat-style broadcast, already JSON (the common case:
/// Rails' `broadcast_to` sends `data` as a JSON string holding JSON).
const JSON_PAYLOAD: &str = r#"{"action":"broadcast","user_id":4217,"room":"lobby","text":"Hello from the benchmark client!"}"#;

/// The same size of payload that is *not* JSON, so it has to be escaped into
/// a JSON string instead of being embedded verbatim.
const TEXT_PAYLOAD: &str = "Hello from the benchmark client! \"Quoted\" words, a tab\tand a newline\n: roughly one hundred bytes of text.";

/// Write budget of every bench session, in bytes. The frames drained
/// between iterations never reach a socket, so the budget never sees them
/// written: it must outlast every iteration, and is checked below (a session
/// marked too_slow fails the bench). The check itself is still measured.
const WRITE_BUDGET: usize = usize::MAX;

/// Shared settings: short runs, enough samples for a stable median.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
}

// ---------------------------------------------------------------------------
// hub_fanout
// ---------------------------------------------------------------------------

/// A hub with `identifiers * per_identifier` sessions subscribed to stream
/// "all", and the receiving ends of their outgoing queues (what each
/// session's writer task would own).
struct Fanout {
    hub: Hub,
    sessions: Vec<Arc<SessionHandle>>,
    receivers: Vec<Receiver>,
}

impl Fanout {
    fn new(identifiers: usize, per_identifier: usize) -> Self {
        let metrics = Arc::new(Metrics::new());
        let hub = Hub::new(metrics.clone());
        let total = identifiers * per_identifier;
        let mut sessions = Vec::with_capacity(total);
        let mut receivers = Vec::with_capacity(total);
        for i in 0..identifiers {
            let identifier: Arc<str> = if identifiers == 1 {
                Arc::from(IDENTIFIER)
            } else {
                Arc::from(format!(r#"{{"channel":"BenchmarkChannel","room":"{i}"}}"#))
            };
            for j in 0..per_identifier {
                let id = (i * per_identifier + j) as u64;
                let sid = format!("sid-{id:08}");
                let budget = WriteBudget::new(WRITE_BUDGET);
                let (session, rx) = SessionHandle::new(id, sid.into(), budget, metrics.clone());
                hub.subscribe("all", &identifier, &session, Via::Socket);
                sessions.push(session);
                receivers.push(rx);
            }
        }
        assert_eq!(hub.subscriber_count("all"), total);
        Fanout {
            hub,
            sessions,
            receivers,
        }
    }

    /// Takes the one frame each iteration queued to every session, so the
    /// next iteration starts from empty queues (untimed).
    fn drain(&mut self) {
        for rx in &mut self.receivers {
            match rx.try_recv() {
                Some(Outgoing::Frame(frame)) => drop(frame),
                other => panic!("expected exactly one queued frame, got {other:?}"),
            }
            assert!(rx.try_recv().is_none(), "more than one frame queued");
        }
    }

    fn assert_none_too_slow(&self) {
        assert!(
            self.sessions.iter().all(|s| s.close_request().is_none()),
            "a bench session was disconnected as too slow: raise WRITE_BUDGET"
        );
    }
}

/// `hub_fanout`: the time `Hub::broadcast` takes to queue one ~100-byte JSON
/// broadcast to every subscriber of a stream. This is the per-publication
/// cost on the broadcast path: shard lookup, one JSON check of the payload,
/// one encoding per channel identifier, then a non-blocking `try_send` of the
/// shared (reference-counted) frame into each session's bounded queue.
///
/// Only the `broadcast` call is timed (`iter_custom`): after each call the
/// queues are drained outside the timer, which also means the writer side
/// (dequeue, socket write) and the final drop of the frame are not part of
/// the figure. Throughput is in subscribers (frames queued) per second.
///
/// - `10k_subscribers`: one identifier, 10,000 sessions (one encoding);
/// - `10x1k_subscribers`: ten identifiers x 1,000 sessions (ten encodings),
///   what a stream shared by several channels/params looks like;
/// - `1_subscriber`: the fixed per-broadcast cost, for reference.
fn hub_fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("hub_fanout");
    configure(&mut group);

    for (name, identifiers, per_identifier) in [
        ("1_subscriber", 1, 1),
        ("10k_subscribers", 1, 10_000),
        ("10x1k_subscribers", 10, 1_000),
    ] {
        let mut fixture = Fanout::new(identifiers, per_identifier);
        let total = identifiers * per_identifier;
        let expected = Delivery {
            queued: total,
            encoded: identifiers,
        };
        group.throughput(Throughput::Elements(total as u64));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let delivery =
                        fixture
                            .hub
                            .broadcast(black_box("all"), black_box(JSON_PAYLOAD), None);
                    timed += start.elapsed();
                    assert_eq!(delivery, expected);
                    fixture.drain();
                }
                timed
            });
        });
        fixture.assert_none_too_slow();
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// encode
// ---------------------------------------------------------------------------

/// `encode`: building the frames the server sends. `data_message` runs once
/// per (broadcast, identifier) in the hub, so its cost is multiplied by the
/// number of identifiers on a stream, never by subscribers; `welcome` and
/// `confirm_subscription` run once per connection / subscription, which
/// matters during reconnect storms.
///
/// - `data_message/json`: payload embedded verbatim (after an `is_json` parse);
/// - `data_message/text`: payload escaped into a JSON string;
/// - `welcome`, `confirm_subscription`: small fixed frames with one escaped
///   string each.
fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    configure(&mut group);

    group.bench_function("data_message/json", |b| {
        b.iter(|| protocol::data_message(black_box(IDENTIFIER), black_box(JSON_PAYLOAD)))
    });
    group.bench_function("data_message/text", |b| {
        b.iter(|| protocol::data_message(black_box(IDENTIFIER), black_box(TEXT_PAYLOAD)))
    });
    group.bench_function("welcome", |b| {
        b.iter(|| protocol::welcome(black_box("b3f1a2c4-5d6e-4f70-8a9b-0c1d2e3f4a5b")))
    });
    group.bench_function("confirm_subscription", |b| {
        b.iter(|| protocol::confirm_subscription(black_box(IDENTIFIER)))
    });
    group.finish();
}

// ---------------------------------------------------------------------------
// decode
// ---------------------------------------------------------------------------

/// `decode`: the parsers on the inbound paths, reported in input bytes per
/// second. `decode_client_frame` runs for every frame a client sends;
/// `broadcast::decode` runs for every publication from Redis, HTTP or the
/// gem, before the fan-out above.
///
/// - `client_frame/subscribe`, `client_frame/message`: the two commands the
///   official client sends most (a `message` carries its perform payload as a
///   JSON string holding JSON, which is unescaped);
/// - `publication/single`, `publication/batch_10`: one broadcast, and a batch
///   array of ten (the batch path parses twice: the array into raw values,
///   then each element);
/// - `publication/disconnect`: a remote disconnect command.
fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    configure(&mut group);

    let identifier = r#"{"channel":"ChatChannel","room":"lobby"}"#;
    let subscribe =
        serde_json::json!({"command": "subscribe", "identifier": identifier}).to_string();
    let message = serde_json::json!({
        "command": "message",
        "identifier": identifier,
        "data": r#"{"action":"speak","text":"Hello everyone, this is a chat message of moderate length."}"#,
    })
    .to_string();
    for (name, frame) in [
        ("client_frame/subscribe", &subscribe),
        ("client_frame/message", &message),
    ] {
        assert!(
            protocol::decode_client_frame(frame).is_ok(),
            "{name}: {frame}"
        );
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| protocol::decode_client_frame(black_box(frame)))
        });
    }

    let publication = |n: usize| {
        serde_json::json!({
            "stream": format!("chat_room_{n}"),
            "data": JSON_PAYLOAD,
        })
    };
    let single = publication(0).to_string().into_bytes();
    let batch = serde_json::Value::Array((0..10).map(publication).collect())
        .to_string()
        .into_bytes();
    let disconnect = serde_json::json!({
        "command": "disconnect",
        "payload": {"identifier": r#"{"current_user":"gid://app/User/4217"}"#, "reconnect": false},
    })
    .to_string()
    .into_bytes();
    for (name, payload, count) in [
        ("publication/single", &single, 1),
        ("publication/batch_10", &batch, 10),
        ("publication/disconnect", &disconnect, 1),
    ] {
        assert_eq!(
            broadcast::decode(payload).map(|p| p.len()),
            Ok(count),
            "{name}"
        );
        group.throughput(Throughput::Bytes(payload.len() as u64));
        group.bench_function(name, |b| b.iter(|| broadcast::decode(black_box(payload))));
    }
    group.finish();
}

criterion_group!(benches, hub_fanout, encode, decode);
criterion_main!(benches);
