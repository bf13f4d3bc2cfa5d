//! Publications, end to end: what the application (or another node) sends
//! us to fan out, from every transport to the streams.
//!
//! The transports are the Redis subscribers ([`redis`]: pub/sub, [`redisx`]:
//! a stream), the NATS subscriber ([`nats`]), the HTTP endpoint
//! ([`http`]: `/_broadcast`, its key check), the gem's in-process calls
//! (`broadcast`, `publish`) and the broadcasts an application makes during
//! a call ([`Publish::publish_deferred`]). A payload is read by [`decode`]
//! and every publication is routed by [`Publish::publish`], so all
//! transports share one meaning. This module never sees the node: it
//! reaches the sessions through the [`Publish`] trait, which the node
//! implements.
//!
//! Every transport says which nodes it reaches ([`Reach`], anycable-go's
//! `Broadcaster::IsFanout`). Redis pub/sub, NATS, redisx (a consumer group
//! per node) and, in the gem, the application's `cable.yml` adapter hand
//! each publication to every node, and each node delivers it to its own
//! subscribers ([`Reach::EveryNode`], anycable-go's `HandlePubSub`). HTTP
//! `/_broadcast` and the gem's in-process broadcasts reach one node: that
//! node positions a broadcast once (with a broker), delivers it, and passes
//! it on, at that position, to the other nodes over the bus ([`pubsub`],
//! signed with a key derived from the broadcast key), as it does a remote
//! disconnect ([`Reach::ThisNode`], anycable-go's `HandleBroadcast`). So
//! every subscriber gets each broadcast once, at one position, whichever
//! transport brought it.

pub mod http;
pub mod key;
pub mod nats;
pub mod pubsub;
pub mod redis;
pub mod redisx;

use crate::client_log::{client_log, compact};
use crate::metrics::Metrics;
use serde::Deserialize;
use serde_json::value::RawValue;
use tracing::debug;

/// One thing a publication asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publication {
    /// Send `data` to every subscriber of `stream`, except the session whose
    /// id is `exclude_socket`.
    Broadcast {
        stream: String,
        data: String,
        exclude_socket: Option<String>,
    },
    /// A message of the moment (anycable-go's `transient` stream messages):
    /// never positioned nor kept in history. Whispers and presence events.
    Transient(Transient),
    /// Close every session whose connection identifiers equal `identifiers`.
    Disconnect {
        identifiers: String,
        reconnect: bool,
    },
}

/// What kind of frame a transient message becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransientKind {
    /// The data frame of a broadcast (`{"identifier":..,"message":..}`):
    /// a whisper.
    Message,
    /// A `presence` frame (`{"type":"presence","identifier":..,"message":..}`):
    /// a join or leave (anycable-go's `broadcast_type: "presence"`).
    Presence,
}

/// A transient message for the subscribers of `stream`, except the session
/// `exclude_socket` (a whisper's sender).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transient {
    pub stream: String,
    pub data: String,
    pub exclude_socket: Option<String>,
    pub kind: TransientKind,
}

impl Transient {
    /// Its JSON as anycable-go writes a `StreamMessage` with metadata
    /// (common/common.go `StreamMessageMetadata`: `exclude_socket`,
    /// `broadcast_type`, `transient`), with `extra` fields added.
    pub fn to_json(&self, extra: &[(&str, &str)]) -> String {
        let mut meta = serde_json::Map::new();
        if let Some(sid) = &self.exclude_socket {
            meta.insert("exclude_socket".into(), sid.clone().into());
        }
        if self.kind == TransientKind::Presence {
            meta.insert("broadcast_type".into(), "presence".into());
        }
        meta.insert("transient".into(), true.into());
        let mut m = serde_json::Map::new();
        m.insert("stream".into(), self.stream.clone().into());
        m.insert("data".into(), self.data.clone().into());
        m.insert("meta".into(), serde_json::Value::Object(meta));
        for (k, v) in extra {
            m.insert((*k).into(), (*v).into());
        }
        serde_json::Value::Object(m).to_string()
    }
}

impl Publication {
    /// A broadcast of `data` to every subscriber of `stream`.
    pub fn broadcast(stream: String, data: String) -> Self {
        Publication::Broadcast {
            stream,
            data,
            exclude_socket: None,
        }
    }
}

/// Which nodes a transport hands a publication to (anycable-go's
/// `Broadcaster::IsFanout`, checked against anycable-go 1.6
/// broadcast/*.go and node/node.go `HandleBroadcast` / `HandlePubSub`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach<'a> {
    /// Every node (Redis pub/sub, NATS, redisx with a group per node, the
    /// application's `cable.yml` adapter in the gem): each delivers it to
    /// its own subscribers only. `key` names it the same way on every node
    /// (see [`FanoutKeys`]), so a broker positions it once for the cluster.
    EveryNode { key: Option<&'a str> },
    /// This node only (HTTP `/_broadcast`, the gem's in-process
    /// broadcasts): it is positioned and delivered here, then passed on to
    /// the other nodes over the bus ([`pubsub`]) at that position.
    ThisNode,
}

/// A broadcast that entered one node ([`Reach::ThisNode`]), as that node
/// passes it on to the others: at the position its broker gave it (epoch,
/// offset), which every node delivers as is, so a restore on any node
/// reads the same history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub stream: String,
    pub data: String,
    pub exclude_socket: Option<String>,
    pub position: Option<(String, u64)>,
}

/// The sessions publications reach: implemented by the node (its hub and
/// its registry of identifiers). The provided methods are the one path
/// every transport takes; implementors only supply the deliveries.
pub trait Publish: Send + Sync {
    /// Queues `data` to every subscriber of `stream` here, except the
    /// session whose id is `exclude_socket`. Returns how many were queued.
    fn deliver(&self, stream: &str, data: &str, exclude_socket: Option<&str>) -> usize;

    /// Queues a transient message (a whisper, a presence event) to the
    /// subscribers of its stream here: unpositioned, as a frame to every
    /// subscriber's socket (no application callback sees it). Returns how
    /// many were queued.
    fn deliver_transient(&self, message: &Transient) -> usize;

    /// [`Publish::deliver`] of a publication a transport brought (see
    /// [`Reach`]): a node with a broker positions it (once for the cluster
    /// under an [`Reach::EveryNode`] key), and passes one that entered
    /// here only on to the other nodes.
    fn deliver_from(
        &self,
        stream: &str,
        data: &str,
        exclude_socket: Option<&str>,
        reach: Reach<'_>,
    ) -> usize {
        let _ = reach;
        self.deliver(stream, data, exclude_socket)
    }

    /// Delivers a broadcast another node passed on ([`Reach::ThisNode`]
    /// there), at the position that node gave it: never positioned nor
    /// passed on again.
    fn deliver_relayed(&self, message: &Relayed) -> usize {
        self.deliver(
            &message.stream,
            &message.data,
            message.exclude_socket.as_deref(),
        )
    }

    /// Closes every session here whose connection identifiers equal
    /// `identifiers`, telling them whether to reconnect. Returns how many.
    fn remote_disconnect(&self, identifiers: &str, reconnect: bool) -> usize;

    /// [`Publish::remote_disconnect`] of a publication a transport brought:
    /// one that entered here only is passed on to the other nodes too.
    fn remote_disconnect_from(
        &self,
        identifiers: &str,
        reconnect: bool,
        reach: Reach<'_>,
    ) -> usize {
        let _ = reach;
        self.remote_disconnect(identifiers, reconnect)
    }

    /// Where publications are counted.
    fn metrics(&self) -> &Metrics;

    /// Routes one publication that entered this node only (HTTP, the gem's
    /// in-process calls): a broadcast to its stream's subscribers, a remote
    /// disconnect to the sessions it names, on every node.
    fn publish(&self, publication: Publication) {
        self.publish_from(publication, Reach::ThisNode)
    }

    /// [`Publish::publish`] of a publication `reach` says who else got.
    fn publish_from(&self, publication: Publication, reach: Reach<'_>) {
        match publication {
            Publication::Broadcast {
                stream,
                data,
                exclude_socket,
            } => {
                self.metrics().broadcasts.inc();
                let queued = self.deliver_from(&stream, &data, exclude_socket.as_deref(), reach);
                debug!(stream = %compact(stream.as_str()), queued, "broadcast");
            }
            Publication::Transient(message) => {
                let queued = self.deliver_transient(&message);
                debug!(stream = %compact(message.stream.as_str()), queued, kind = ?message.kind, "transient message");
            }
            Publication::Disconnect {
                identifiers,
                reconnect,
            } => {
                let sessions = self.remote_disconnect_from(&identifiers, reconnect, reach);
                client_log!(INFO, identifiers = %compact(identifiers.as_str()), sessions, "remote disconnect");
            }
        }
    }

    /// Decodes a publication payload that entered this node only (HTTP, the
    /// gem; the transport is named in the log) and publishes it. A payload
    /// that does not decode publishes nothing and is counted and logged.
    fn publish_payload(&self, payload: &[u8], transport: &str) -> Result<(), DecodeError> {
        self.publish_payload_from(payload, transport, Reach::ThisNode)
    }

    /// [`Publish::publish_payload`] from a transport that reaches `reach`.
    /// For one that hands the same payload to every node (Redis pub/sub,
    /// redisx, NATS), the key names this payload the same way on every node
    /// (redisx: its entry id; see [`FanoutKeys`]), so a broker positions
    /// each of its publications once for the whole cluster (the n-th of a
    /// batch is `<key>:<n>`).
    fn publish_payload_from(
        &self,
        payload: &[u8],
        transport: &str,
        reach: Reach<'_>,
    ) -> Result<(), DecodeError> {
        match decode(payload) {
            Ok(publications) => {
                for (n, publication) in publications.into_iter().enumerate() {
                    match reach {
                        Reach::EveryNode { key: Some(k) } => {
                            let key = format!("{k}:{n}");
                            self.publish_from(publication, Reach::EveryNode { key: Some(&key) });
                        }
                        reach => self.publish_from(publication, reach),
                    }
                }
                Ok(())
            }
            Err(e) => {
                self.metrics().broadcast_errors.inc();
                client_log!(WARN, transport, error = %compact(e.to_string()), "publication rejected");
                Err(e)
            }
        }
    }

    /// Publishes the broadcasts (stream, data) an application made while a
    /// call was running, once its reply has been applied: so a channel that
    /// broadcasts in `subscribed` reaches its own new stream too (see
    /// [`crate::controller::CommandReply::broadcasts`]).
    fn publish_deferred(&self, broadcasts: Vec<(String, String)>) {
        for (stream, data) in broadcasts {
            self.publish(Publication::broadcast(stream, data));
        }
    }
}

/// How long a broker remembers a publication key: every node registers a
/// keyed publication within this time of the first (later, it would be
/// positioned again).
pub const KEY_TTL: std::time::Duration = std::time::Duration::from_secs(120);

/// Publication keys for a fan-out transport without ids of its own (Redis
/// pub/sub, NATS): the payload's SHA-256 and how many times this node has
/// seen that same payload. Every node receives the channel's messages in
/// the same order, so the n-th identical payload has the same key on every
/// node. A count is forgotten only after the broker has forgotten the key
/// ([`KEY_TTL`]), so a key is never reused for a new message.
#[derive(Default)]
pub struct FanoutKeys {
    seen: std::collections::HashMap<[u8; 32], (u64, std::time::Instant)>,
    swept: Option<std::time::Instant>,
}

impl FanoutKeys {
    pub fn key(&mut self, payload: &[u8]) -> String {
        use sha2::Digest;
        let now = std::time::Instant::now();
        let forget_after = KEY_TTL * 2;
        if self
            .swept
            .is_none_or(|t| now.duration_since(t) > std::time::Duration::from_secs(10))
        {
            self.seen
                .retain(|_, (_, at)| now.duration_since(*at) < forget_after);
            self.swept = Some(now);
        }
        let digest: [u8; 32] = sha2::Sha256::digest(payload).into();
        let entry = self.seen.entry(digest).or_insert((0, now));
        if now.duration_since(entry.1) >= forget_after {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = now;
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("p:{hex}:{}", entry.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid publication: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

#[derive(Deserialize)]
struct RawMessage {
    stream: Option<String>,
    data: Option<Box<RawValue>>,
    meta: Option<RawMeta>,
    command: Option<String>,
    payload: Option<RawPayload>,
}

#[derive(Deserialize)]
struct RawMeta {
    exclude_socket: Option<String>,
    broadcast_type: Option<String>,
    #[serde(default)]
    transient: bool,
}

#[derive(Deserialize)]
struct RawPayload {
    identifier: Option<String>,
    #[serde(default = "default_true")]
    reconnect: bool,
}

fn default_true() -> bool {
    true
}

/// Decodes a payload: one object, or a JSON array of them (a batch). A batch
/// is all-or-nothing: one bad element rejects it, so a 422 loses nothing
/// silently.
pub fn decode(payload: &[u8]) -> Result<Vec<Publication>, DecodeError> {
    let text = std::str::from_utf8(payload).map_err(|_| DecodeError("not UTF-8".into()))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let batch: Vec<Box<RawValue>> =
            serde_json::from_str(text).map_err(|e| DecodeError(e.to_string()))?;
        batch.iter().map(|raw| decode_one(raw.get())).collect()
    } else {
        decode_one(text).map(|p| vec![p])
    }
}

fn decode_one(text: &str) -> Result<Publication, DecodeError> {
    let msg: RawMessage = serde_json::from_str(text).map_err(|e| DecodeError(e.to_string()))?;
    if let Some(command) = msg.command {
        return match command.as_str() {
            "disconnect" => {
                let payload = msg
                    .payload
                    .ok_or_else(|| DecodeError("disconnect without payload".into()))?;
                let identifiers = payload
                    .identifier
                    .ok_or_else(|| DecodeError("disconnect without payload.identifier".into()))?;
                Ok(Publication::Disconnect {
                    identifiers,
                    reconnect: payload.reconnect,
                })
            }
            other => Err(DecodeError(format!("unknown command {other:?}"))),
        };
    }
    let stream = msg
        .stream
        .ok_or_else(|| DecodeError("missing \"stream\"".into()))?;
    let raw = msg
        .data
        .ok_or_else(|| DecodeError("missing \"data\"".into()))?;
    // `data` is normally a string holding JSON; a client library that sends
    // an object instead is served too, with the object's JSON text as data.
    let data = match serde_json::from_str::<String>(raw.get()) {
        Ok(s) => s,
        Err(_) => raw.get().to_owned(),
    };
    let meta = msg.meta;
    // anycable-go: `broadcast_type` names the frame's type (only
    // "presence" is one clients know), `transient` keeps the message out
    // of history (checked against anycable-go 1.6 hub/gate.go
    // `buildMessage`, broker/memory.go `HandleBroadcast`).
    // anycable-go's own whispers between nodes say "whisper"; any other
    // type is delivered as a broadcast (transient if flagged), never
    // refused: one unknown type must not cost a batch its publications.
    let transient = meta.as_ref().is_some_and(|m| m.transient);
    let kind = match meta.as_ref().and_then(|m| m.broadcast_type.as_deref()) {
        Some("presence") => Some(TransientKind::Presence),
        Some("whisper") => Some(TransientKind::Message),
        _ => transient.then_some(TransientKind::Message),
    };
    let exclude_socket = meta
        .and_then(|m| m.exclude_socket)
        .filter(|s| !s.is_empty());
    if let Some(kind) = kind {
        return Ok(Publication::Transient(Transient {
            stream,
            data,
            exclude_socket,
            kind,
        }));
    }
    Ok(Publication::Broadcast {
        stream,
        data,
        exclude_socket,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_single_batch_and_meta() {
        let one = br#"{"stream":"chat_1","data":"{\"text\":\"hi\"}"}"#;
        assert_eq!(
            decode(one).unwrap(),
            vec![Publication::Broadcast {
                stream: "chat_1".into(),
                data: r#"{"text":"hi"}"#.into(),
                exclude_socket: None
            }]
        );
        let batch = br#"[{"stream":"a","data":"1"},{"stream":"b","data":"2","meta":{"exclude_socket":"s1"}}]"#;
        let got = decode(batch).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1],
            Publication::Broadcast {
                stream: "b".into(),
                data: "2".into(),
                exclude_socket: Some("s1".into())
            }
        );
    }

    #[test]
    fn decodes_remote_disconnect() {
        let cmd = br#"{"command":"disconnect","payload":{"identifier":"{\"user\":\"1\"}","reconnect":false}}"#;
        assert_eq!(
            decode(cmd).unwrap(),
            vec![Publication::Disconnect {
                identifiers: r#"{"user":"1"}"#.into(),
                reconnect: false
            }]
        );
    }

    #[test]
    fn remote_disconnect_reconnects_unless_told_otherwise() {
        let cmd = br#"{"command":"disconnect","payload":{"identifier":"u"}}"#;
        assert_eq!(
            decode(cmd).unwrap(),
            vec![Publication::Disconnect {
                identifiers: "u".into(),
                reconnect: true
            }]
        );
    }

    #[test]
    fn transient_messages_round_trip() {
        let whisper = Transient {
            stream: "room".into(),
            data: r#"{"typing":true}"#.into(),
            exclude_socket: Some("s1".into()),
            kind: TransientKind::Message,
        };
        let presence = Transient {
            stream: "room".into(),
            data: r#"{"type":"leave","id":"u1"}"#.into(),
            exclude_socket: None,
            kind: TransientKind::Presence,
        };
        for t in [whisper, presence] {
            let json = t.to_json(&[("node", "n1")]);
            assert_eq!(
                decode(json.as_bytes()).unwrap(),
                vec![Publication::Transient(t)]
            );
        }
        // anycable-go's own form.
        let go =
            br#"{"stream":"s","data":"{}","meta":{"broadcast_type":"presence","transient":true}}"#;
        assert!(matches!(
            &decode(go).unwrap()[0],
            Publication::Transient(Transient {
                kind: TransientKind::Presence,
                ..
            })
        ));
        assert!(matches!(
            &decode(br#"{"stream":"s","data":"x","meta":{"broadcast_type":"whisper"}}"#).unwrap()
                [0],
            Publication::Transient(Transient {
                kind: TransientKind::Message,
                ..
            })
        ));
        // An unknown type is an ordinary broadcast, and costs a batch nothing.
        let batch = br#"[{"stream":"s","data":"x","meta":{"broadcast_type":"bogus"}},{"stream":"t","data":"y"}]"#;
        let decoded = decode(batch).unwrap();
        assert_eq!(decoded.len(), 2);
        assert!(matches!(&decoded[0], Publication::Broadcast { .. }));
    }

    #[test]
    fn rejects_bad_payloads() {
        assert!(decode(b"").is_err());
        assert!(decode(b"{").is_err());
        assert!(decode(br#"{"data":"x"}"#).is_err());
        assert!(decode(br#"{"stream":"x"}"#).is_err());
        assert!(decode(br#"{"command":"explode"}"#).is_err());
        assert!(decode(br#"[{"stream":"a","data":"1"}, 5]"#).is_err());
        assert!(decode(&[0xff, 0xfe]).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn arbitrary_json_like_text_never_panics(s in r#"[\[\]{}",:a-z0-9 \\]{0,200}"#) {
            let _ = decode(s.as_bytes());
        }
    }
}
