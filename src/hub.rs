//! The hub: which sessions listen to which stream, and the fan-out of one
//! broadcast to all of them.
//!
//! A broadcast is encoded once per (stream, channel identifier) and the same
//! reference-counted bytes are queued to every subscriber of that pair: no
//! per-subscriber JSON work, no per-subscriber copies. Streams are spread over
//! shards so subscribing on one stream does not wait for a large fan-out on
//! another.
//!
//! A subscription whose stream has an application callback (Action Cable's
//! `stream_from name do |message| ... end`, embedded mode) gets the raw
//! message handed to its session's application queue instead: the callback
//! decides what, if anything, the client receives. Streams without one never
//! touch the application.

use crate::broker::Position;
use crate::controller::StreamMessage;
use crate::metrics::Metrics;
use crate::outgoing::SessionHandle;
use crate::protocol;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, RwLock};
use tokio_tungstenite::tungstenite::Utf8Bytes;

const SHARDS: usize = 64;

/// Subscribers of one stream, grouped by the channel identifier they
/// subscribed with (the identifier is part of every data frame).
type StreamSubscribers = HashMap<Arc<str>, HashMap<u64, Subscriber>>;

/// How a subscription receives a stream's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The data frame goes to the socket (the fast path).
    Socket,
    /// The message goes to the application's stream callback.
    Callback,
}

struct Subscriber {
    session: Arc<SessionHandle>,
    via: Via,
}

pub struct Hub {
    shards: Vec<RwLock<HashMap<String, StreamSubscribers>>>,
    hasher: RandomState,
    metrics: Arc<Metrics>,
}

/// What one broadcast did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Frames queued to sessions.
    pub queued: usize,
    /// Distinct frames encoded (one per identifier).
    pub encoded: usize,
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Hub {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            metrics,
        }
    }

    fn shard(&self, stream: &str) -> &RwLock<HashMap<String, StreamSubscribers>> {
        &self.shards[(self.hasher.hash_one(stream) as usize) % SHARDS]
    }

    /// Adds (or updates) the subscription of `session` through `identifier`.
    pub fn subscribe(
        &self,
        stream: &str,
        identifier: &Arc<str>,
        session: &Arc<SessionHandle>,
        via: Via,
    ) {
        let mut shard = self
            .shard(stream)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let subscribers = match shard.entry(stream.to_owned()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                self.metrics.streams.inc();
                e.insert(HashMap::new())
            }
        };
        subscribers.entry(identifier.clone()).or_default().insert(
            session.id,
            Subscriber {
                session: session.clone(),
                via,
            },
        );
    }

    pub fn unsubscribe(&self, stream: &str, identifier: &str, session_id: u64) {
        let mut shard = self
            .shard(stream)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let Some(subscribers) = shard.get_mut(stream) else {
            return;
        };
        if let Some(sessions) = subscribers.get_mut(identifier) {
            sessions.remove(&session_id);
            if sessions.is_empty() {
                subscribers.remove(identifier);
            }
        }
        if subscribers.is_empty() {
            shard.remove(stream);
            self.metrics.streams.dec();
        }
    }

    /// Queues `data` to every subscriber of `stream`, except the session with
    /// id `exclude_sid`. Never blocks: a full queue disconnects that client.
    pub fn broadcast(&self, stream: &str, data: &str, exclude_sid: Option<&str>) -> Delivery {
        self.broadcast_at(stream, data, exclude_sid, None)
    }

    /// Queues a frame made per identifier (`encode(identifier)`) to every
    /// subscriber of `stream` but the session `exclude_sid`, straight to
    /// its socket, whether or not its subscription has an application
    /// callback for the stream: transient messages (whispers, presence
    /// events) are between clients and the server, never application data
    /// (AnyCable has no stream callbacks; every subscriber gets the frame).
    /// Returns how many were queued.
    pub fn send_event(
        &self,
        stream: &str,
        exclude_sid: Option<&str>,
        encode: impl Fn(&str) -> String,
    ) -> usize {
        let shard = self.shard(stream).read().unwrap_or_else(|e| e.into_inner());
        let Some(subscribers) = shard.get(stream) else {
            return 0;
        };
        let mut queued = 0;
        for (identifier, sessions) in subscribers {
            let mut frame: Option<Utf8Bytes> = None;
            for subscriber in sessions.values() {
                if exclude_sid.is_some_and(|sid| sid == subscriber.session.sid.as_ref()) {
                    continue;
                }
                let frame = frame.get_or_insert_with(|| Utf8Bytes::from(encode(identifier)));
                if subscriber.session.send(frame.clone()) {
                    queued += 1;
                }
            }
        }
        queued
    }

    /// [`Hub::broadcast`] of a message at `position` of its stream (a
    /// broker assigned it): extended-protocol sessions get a frame that
    /// says so (`stream_id`, `epoch`, `offset`), and never the same
    /// position twice; the others get exactly the base protocol's frame.
    pub fn broadcast_at(
        &self,
        stream: &str,
        data: &str,
        exclude_sid: Option<&str>,
        position: Option<&Position>,
    ) -> Delivery {
        let shard = self.shard(stream).read().unwrap_or_else(|e| e.into_inner());
        let Some(subscribers) = shard.get(stream) else {
            return Delivery::default();
        };
        let mut delivery = Delivery::default();
        let data_is_json = protocol::is_json(data);
        // Shared by every callback subscriber; made on the first one.
        let mut message: Option<(Arc<str>, Arc<str>)> = None;
        for (identifier, sessions) in subscribers {
            let mut frame: Option<Utf8Bytes> = None;
            let mut positioned: Option<Utf8Bytes> = None;
            for subscriber in sessions.values() {
                let session = &subscriber.session;
                if exclude_sid.is_some_and(|sid| sid == session.sid.as_ref()) {
                    continue;
                }
                let queued = match subscriber.via {
                    Via::Socket if position.is_some() && session.tracks_positions() => {
                        let position = position.expect("checked above");
                        let frame = positioned.get_or_insert_with(|| {
                            delivery.encoded += 1;
                            Utf8Bytes::from(protocol::data_message_positioned(
                                identifier,
                                data,
                                data_is_json,
                                stream,
                                &position.epoch,
                                position.offset,
                            ))
                        });
                        session.send_positioned(identifier, stream, position, frame.clone())
                    }
                    Via::Socket => {
                        let frame = frame.get_or_insert_with(|| {
                            delivery.encoded += 1;
                            Utf8Bytes::from(protocol::data_message_with(
                                identifier,
                                data,
                                data_is_json,
                            ))
                        });
                        session.send(frame.clone())
                    }
                    Via::Callback => {
                        let (stream, data) =
                            message.get_or_insert_with(|| (Arc::from(stream), Arc::from(data)));
                        session.send_to_app(StreamMessage {
                            identifier: identifier.clone(),
                            stream: stream.clone(),
                            data: data.clone(),
                        })
                    }
                };
                if queued {
                    delivery.queued += 1;
                }
            }
        }
        delivery
    }

    pub fn stream_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn subscriber_count(&self, stream: &str) -> usize {
        let shard = self.shard(stream).read().unwrap_or_else(|e| e.into_inner());
        shard
            .get(stream)
            .map_or(0, |s| s.values().map(HashMap::len).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outgoing::{Outgoing, SessionHandle};

    fn session(
        id: u64,
        sid: &str,
        budget: usize,
    ) -> (Arc<SessionHandle>, crate::outgoing::Receiver) {
        let budget = crate::write_budget::WriteBudget::new(budget);
        SessionHandle::new(id, sid.into(), budget, Arc::new(Metrics::new()))
    }

    fn text(o: Outgoing) -> String {
        match o {
            Outgoing::Frame(b) => b.as_str().to_owned(),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn fans_out_once_per_identifier_and_honours_exclude() {
        let hub = Hub::new(Arc::new(Metrics::new()));
        let a: Arc<str> = Arc::from(r#"{"channel":"A"}"#);
        let b: Arc<str> = Arc::from(r#"{"channel":"B"}"#);
        let (s1, mut r1) = session(1, "s1", 1024);
        let (s2, mut r2) = session(2, "s2", 1024);
        let (s3, mut r3) = session(3, "s3", 1024);
        hub.subscribe("room", &a, &s1, Via::Socket);
        hub.subscribe("room", &a, &s2, Via::Socket);
        hub.subscribe("room", &b, &s3, Via::Socket);
        let d = hub.broadcast("room", r#"{"n":1}"#, Some("s2"));
        assert_eq!(
            d,
            Delivery {
                queued: 2,
                encoded: 2
            }
        );
        assert_eq!(
            text(r1.try_recv().unwrap()),
            r#"{"identifier":"{\"channel\":\"A\"}","message":{"n":1}}"#
        );
        assert!(r2.try_recv().is_none());
        assert!(text(r3.try_recv().unwrap()).contains(r#"\"B\""#));
        assert_eq!(hub.stream_count(), 1);
        hub.unsubscribe("room", &a, 1);
        hub.unsubscribe("room", &a, 2);
        hub.unsubscribe("room", &b, 3);
        assert_eq!(hub.stream_count(), 0);
        assert_eq!(hub.broadcast("room", "x", None).queued, 0);
    }

    #[test]
    fn transient_frames_go_to_sockets_even_with_a_callback() {
        let hub = Hub::new(Arc::new(Metrics::new()));
        let id: Arc<str> = Arc::from("i");
        let (sender, mut from_sender) = session(1, "s1", 1024);
        let (with_callback, mut to_callback) = session(2, "s2", 1024);
        hub.subscribe("room", &id, &sender, Via::Socket);
        hub.subscribe("room", &id, &with_callback, Via::Callback);
        let queued = hub.send_event("room", Some("s1"), |i| {
            protocol::data_message_with(i, r#"{"typing":1}"#, true)
        });
        assert_eq!(queued, 1);
        assert_eq!(
            text(to_callback.try_recv().unwrap()),
            r#"{"identifier":"i","message":{"typing":1}}"#,
            "a whisper is a frame for the socket, not a message for the callback"
        );
        assert!(from_sender.try_recv().is_none(), "never back to the sender");
    }

    #[test]
    fn full_queue_marks_session_too_slow() {
        let hub = Hub::new(Arc::new(Metrics::new()));
        let id: Arc<str> = Arc::from("i");
        // Each frame is 34 bytes on the wire: two fit under 40 pending bytes.
        let (s, _r) = session(1, "s", 40);
        hub.subscribe("x", &id, &s, Via::Socket);
        assert_eq!(hub.broadcast("x", "1", None).queued, 1);
        assert_eq!(hub.broadcast("x", "2", None).queued, 1);
        assert_eq!(hub.broadcast("x", "3", None).queued, 0);
        assert_eq!(
            s.close_request().map(|c| c.reason),
            Some(Some(protocol::DisconnectReason::TooSlow))
        );
    }
}
