//! The Action Cable client protocol: the one place that parses what clients
//! send and encodes what the server sends back.
//!
//! Everything here is pure (no I/O), so the decoders can be fuzzed and the
//! encoders are shared by the session (per-client frames) and the hub (one
//! encoding per broadcast, reused for every subscriber).

use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Subprotocol names a client may offer in `Sec-WebSocket-Protocol`.
pub const PROTOCOL_V1_JSON: &str = "actioncable-v1-json";
pub const PROTOCOL_V1_EXT_JSON: &str = "actioncable-v1-ext-json";
pub const SUPPORTED_PROTOCOLS: &[&str] = &[PROTOCOL_V1_JSON, PROTOCOL_V1_EXT_JSON];

/// Picks the first supported subprotocol the client offered, in the client's
/// order. `None` means the client offered none we know (or none at all): it is
/// then served the base protocol with no subprotocol in the response.
pub fn select_subprotocol<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    offered
        .into_iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .find_map(|p| SUPPORTED_PROTOCOLS.iter().find(|s| **s == p).copied())
}

/// A command a client sent, decoded from one text frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    Subscribe {
        identifier: String,
        /// Extended protocol: missed messages to replay once subscribed.
        history: Option<HistoryRequest>,
    },
    Unsubscribe {
        identifier: String,
    },
    Message {
        identifier: String,
        data: String,
    },
    /// Extended protocol: the client checks the server is alive.
    Ping,
    /// Extended protocol: the client answers a server ping.
    Pong,
    /// Extended protocol: missed messages since a stream position.
    History {
        identifier: String,
        history: Option<HistoryRequest>,
    },
    /// Extended protocol: client-to-client messages on a stream. `data` is
    /// the JSON value as the client sent it (delivered without re-encoding).
    Whisper {
        identifier: String,
        data: String,
    },
    /// Extended protocol: join the subscription's presence set as `presence`
    /// (`{"id":..,"info":..}`; none: refused by the session).
    Join {
        identifier: String,
        presence: Option<PresenceArg>,
    },
    /// Extended protocol: leave the subscription's presence set.
    Leave {
        identifier: String,
    },
    /// Extended protocol: the subscription's presence set (`data`
    /// `{"return_records": false}` asks for the count only).
    Presence {
        identifier: String,
        return_records: bool,
    },
}

/// The `presence` field of a `join` (anycable-go's `PresenceEvent`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PresenceArg {
    pub id: String,
    #[serde(default)]
    pub info: Option<serde_json::Value>,
}

/// What a client asks to replay (extended protocol): for each stream it
/// has a position in, the messages after it; for the others, the messages
/// published since `since` (Unix seconds; 0: none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HistoryRequest {
    #[serde(default)]
    pub since: u64,
    #[serde(default)]
    pub streams: HashMap<String, StreamPosition>,
}

/// The last position a client got on a stream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StreamPosition {
    pub epoch: String,
    pub offset: u64,
}

impl HistoryRequest {
    /// Whether it asks for anything.
    pub fn is_empty(&self) -> bool {
        self.since == 0 && self.streams.is_empty()
    }
}

/// Why a client frame could not be turned into a command. Each is logged and
/// counted by the session; none ends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Not a JSON object of the expected shape.
    Malformed(String),
    /// A well-formed frame with a command we do not know.
    UnknownCommand(String),
    /// A known command without its identifier (or data, for `message`).
    MissingField(&'static str),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Malformed(e) => write!(f, "malformed frame: {e}"),
            FrameError::UnknownCommand(c) => write!(f, "unknown command {c:?}"),
            FrameError::MissingField(name) => write!(f, "missing field {name:?}"),
        }
    }
}

impl std::error::Error for FrameError {}

#[derive(Deserialize)]
struct RawFrame {
    command: String,
    #[serde(default)]
    identifier: Option<String>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    history: Option<Box<RawValue>>,
    #[serde(default)]
    presence: Option<Box<RawValue>>,
}

/// Decodes one client text frame. The identifier is kept byte for byte as the
/// client sent it (after JSON string unescaping), so replies echo it exactly.
pub fn decode_client_frame(text: &str) -> Result<ClientCommand, FrameError> {
    let frame: RawFrame =
        serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let identifier = || {
        frame
            .identifier
            .clone()
            .ok_or(FrameError::MissingField("identifier"))
    };
    match frame.command.as_str() {
        "subscribe" => Ok(ClientCommand::Subscribe {
            identifier: identifier()?,
            history: history(&frame)?,
        }),
        "unsubscribe" => Ok(ClientCommand::Unsubscribe {
            identifier: identifier()?,
        }),
        "message" => {
            let raw = frame
                .data
                .as_ref()
                .ok_or(FrameError::MissingField("data"))?;
            // The perform payload is a JSON string holding JSON, as clients send it.
            let data: String = serde_json::from_str(raw.get())
                .map_err(|_| FrameError::Malformed("\"data\" must be a string".into()))?;
            Ok(ClientCommand::Message {
                identifier: identifier()?,
                data,
            })
        }
        "ping" => Ok(ClientCommand::Ping),
        "pong" => Ok(ClientCommand::Pong),
        "history" => Ok(ClientCommand::History {
            identifier: identifier()?,
            history: history(&frame)?,
        }),
        "whisper" => Ok(ClientCommand::Whisper {
            identifier: identifier()?,
            data: frame
                .data
                .as_ref()
                .ok_or(FrameError::MissingField("data"))?
                .get()
                .to_owned(),
        }),
        "join" => Ok(ClientCommand::Join {
            identifier: identifier()?,
            presence: match &frame.presence {
                Some(raw) if raw.get() != "null" => Some(
                    serde_json::from_str(raw.get())
                        .map_err(|e| FrameError::Malformed(format!("\"presence\": {e}")))?,
                ),
                _ => None,
            },
        }),
        "leave" => Ok(ClientCommand::Leave {
            identifier: identifier()?,
        }),
        "presence" => Ok(ClientCommand::Presence {
            identifier: identifier()?,
            // anycable-go reads `data` as its PresenceInfoOptions (records
            // unless `return_records` is false); `data` may be a JSON string.
            return_records: !frame.data.as_ref().is_some_and(|raw| {
                let value: serde_json::Value = serde_json::from_str(raw.get()).unwrap_or_default();
                let value = match value {
                    serde_json::Value::String(s) => serde_json::from_str(&s).unwrap_or_default(),
                    v => v,
                };
                value["return_records"] == serde_json::Value::Bool(false)
            }),
        }),
        _ => Err(FrameError::UnknownCommand(frame.command)),
    }
}

/// The `history` field of a frame, if it has one (`null` is none).
fn history(frame: &RawFrame) -> Result<Option<HistoryRequest>, FrameError> {
    match &frame.history {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => serde_json::from_str(raw.get())
            .map(Some)
            .map_err(|e| FrameError::Malformed(format!("\"history\": {e}"))),
    }
}

/// Disconnect reasons the clients know (PROTOCOL.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    Unauthorized,
    ServerRestart,
    Remote,
    TooSlow,
    NoPong,
    InvalidRequest,
    TokenExpired,
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::Unauthorized => "unauthorized",
            DisconnectReason::ServerRestart => "server_restart",
            DisconnectReason::Remote => "remote",
            DisconnectReason::TooSlow => "too_slow",
            DisconnectReason::NoPong => "no_pong",
            DisconnectReason::InvalidRequest => "invalid_request",
            DisconnectReason::TokenExpired => "token_expired",
        }
    }

    /// Whether the client should reconnect, unless the caller says otherwise
    /// (a remote disconnect carries its own flag).
    pub fn default_reconnect(self) -> bool {
        matches!(
            self,
            DisconnectReason::ServerRestart
                | DisconnectReason::Remote
                | DisconnectReason::TooSlow
                | DisconnectReason::NoPong
        )
    }

    /// The WebSocket close code sent after the disconnect frame.
    pub fn close_code(self) -> u16 {
        match self {
            DisconnectReason::ServerRestart => 1001,
            DisconnectReason::TooSlow => 1008,
            DisconnectReason::InvalidRequest => 1008,
            _ => 1000,
        }
    }
}

fn push_json_string(out: &mut String, s: &str) {
    // serde_json's string escaper: the identifier is echoed exactly once decoded.
    out.push_str(&serde_json::to_string(s).expect("strings always serialize"));
}

pub fn welcome(sid: &str) -> String {
    let mut out = String::with_capacity(40 + sid.len());
    out.push_str(r#"{"type":"welcome","sid":"#);
    push_json_string(&mut out, sid);
    out.push('}');
    out
}

pub fn ping(unix_seconds: u64) -> String {
    format!(r#"{{"type":"ping","message":{unix_seconds}}}"#)
}

/// The unit of the timestamp in pings (`ping_timestamp_precision`, a
/// client's `?ptp=`), as anycable-go 1.6 node/session.go `newPingMessage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimestampPrecision {
    #[default]
    S,
    Ms,
    Ns,
}

impl TimestampPrecision {
    /// A client's `ptp`: anything but `ms` and `ns` is seconds (anycable-go).
    pub fn from_param(value: &str) -> Self {
        match value {
            "ms" => TimestampPrecision::Ms,
            "ns" => TimestampPrecision::Ns,
            _ => TimestampPrecision::S,
        }
    }

    /// A ping frame stamped now.
    pub fn ping_now(self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let stamp = match self {
            TimestampPrecision::S => now.as_secs() as u128,
            TimestampPrecision::Ms => now.as_millis(),
            TimestampPrecision::Ns => now.as_nanos(),
        };
        format!(r#"{{"type":"ping","message":{stamp}}}"#)
    }
}

fn typed_with_identifier(kind: &str, identifier: &str) -> String {
    let mut out = String::with_capacity(40 + identifier.len());
    let _ = write!(out, r#"{{"type":"{kind}","identifier":"#);
    push_json_string(&mut out, identifier);
    out.push('}');
    out
}

/// A `presence` frame (extended protocol): `message` is an event or the
/// answer to a `presence` command, already JSON.
pub fn presence_message(identifier: &str, message: &str) -> String {
    let mut out = String::with_capacity(48 + identifier.len() + message.len());
    out.push_str(r#"{"type":"presence","identifier":"#);
    push_json_string(&mut out, identifier);
    let _ = write!(out, r#","message":{message}}}"#);
    out
}

pub fn confirm_subscription(identifier: &str) -> String {
    typed_with_identifier("confirm_subscription", identifier)
}

pub fn reject_subscription(identifier: &str) -> String {
    typed_with_identifier("reject_subscription", identifier)
}

pub fn reject_history(identifier: &str) -> String {
    typed_with_identifier("reject_history", identifier)
}

pub fn confirm_history(identifier: &str) -> String {
    typed_with_identifier("confirm_history", identifier)
}

/// The welcome of a restored session (extended protocol): its new sid and
/// the identifiers of the subscriptions it has back.
pub fn restored_welcome(sid: &str, restored_ids: &[&str]) -> String {
    serde_json::json!({"type": "welcome", "sid": sid, "restored": true, "restored_ids": restored_ids})
        .to_string()
}

pub fn pong() -> &'static str {
    r#"{"type":"pong"}"#
}

pub fn disconnect(reason: DisconnectReason, reconnect: bool) -> String {
    format!(
        r#"{{"type":"disconnect","reason":"{}","reconnect":{reconnect}}}"#,
        reason.as_str()
    )
}

/// The data frame for one broadcast to one subscription. `data` is embedded
/// as-is when it is JSON, or as a JSON string when it is not; this runs once
/// per (stream, identifier), never per subscriber.
pub fn data_message(identifier: &str, data: &str) -> String {
    data_message_with(identifier, data, is_json(data))
}

/// [`data_message`] when the caller already knows whether `data` is JSON
/// (the hub checks once per broadcast, not once per identifier).
pub fn data_message_with(identifier: &str, data: &str, data_is_json: bool) -> String {
    let mut out = String::with_capacity(32 + identifier.len() + data.len());
    out.push_str(r#"{"identifier":"#);
    push_json_string(&mut out, identifier);
    out.push_str(r#","message":"#);
    if data_is_json {
        out.push_str(data.trim());
    } else {
        push_json_string(&mut out, data);
    }
    out.push('}');
    out
}

/// [`data_message_with`] for an extended-protocol client: the message's
/// stream and its position in it (`stream_id`, `epoch`, `offset`, as
/// anycable-go 1.6 common/common.go `Reply` names them).
pub fn data_message_positioned(
    identifier: &str,
    data: &str,
    data_is_json: bool,
    stream: &str,
    epoch: &str,
    offset: u64,
) -> String {
    let mut out = data_message_with(identifier, data, data_is_json);
    out.pop();
    out.push_str(r#","stream_id":"#);
    push_json_string(&mut out, stream);
    out.push_str(r#","epoch":"#);
    push_json_string(&mut out, epoch);
    let _ = write!(out, r#","offset":{offset}}}"#);
    out
}

pub fn is_json(data: &str) -> bool {
    serde_json::from_str::<&RawValue>(data).is_ok()
}

/// Whether a transmission (a frame the application asked to send verbatim)
/// is of the given `type`, e.g. the app already rejected a subscription.
pub fn transmission_type(frame: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    serde_json::from_str::<Typed>(frame)
        .ok()
        .and_then(|t| t.kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_commands() {
        let id = r#"{"channel":"ChatChannel","room":"a"}"#;
        let frame = serde_json::json!({"command":"subscribe","identifier":id}).to_string();
        assert_eq!(
            decode_client_frame(&frame),
            Ok(ClientCommand::Subscribe {
                identifier: id.into(),
                history: None,
            })
        );
        let frame = serde_json::json!({"command":"subscribe","identifier":id,
            "history":{"since":1700000000,"streams":{"chat_1":{"epoch":"e1","offset":7}}}})
        .to_string();
        let Ok(ClientCommand::Subscribe {
            history: Some(history),
            ..
        }) = decode_client_frame(&frame)
        else {
            panic!("subscribe with history not decoded");
        };
        assert_eq!(history.since, 1_700_000_000);
        assert_eq!(
            history.streams["chat_1"],
            StreamPosition {
                epoch: "e1".into(),
                offset: 7
            }
        );
        let frame = serde_json::json!({"command":"history","identifier":id,"history":{"streams":{"s":{"epoch":"e","offset":"x"}}}})
            .to_string();
        assert!(matches!(
            decode_client_frame(&frame),
            Err(FrameError::Malformed(e)) if e.contains("history")
        ));
        let frame = serde_json::json!({"command":"message","identifier":id,"data":"{\"action\":\"speak\"}"})
            .to_string();
        assert_eq!(
            decode_client_frame(&frame),
            Ok(ClientCommand::Message {
                identifier: id.into(),
                data: r#"{"action":"speak"}"#.into()
            })
        );
        let frame = serde_json::json!({"command":"unsubscribe","identifier":id}).to_string();
        assert!(matches!(
            decode_client_frame(&frame),
            Ok(ClientCommand::Unsubscribe { .. })
        ));
    }

    #[test]
    fn rejects_bad_frames_with_reasons() {
        assert!(matches!(
            decode_client_frame("not json"),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode_client_frame("[1,2]"),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode_client_frame(r#"{"command":"dance","identifier":"x"}"#),
            Err(FrameError::UnknownCommand(c)) if c == "dance"
        ));
        assert_eq!(
            decode_client_frame(r#"{"command":"subscribe"}"#),
            Err(FrameError::MissingField("identifier"))
        );
        assert_eq!(
            decode_client_frame(r#"{"command":"message","identifier":"x"}"#),
            Err(FrameError::MissingField("data"))
        );
        // An identifier must be a string, as the official clients send it.
        assert!(matches!(
            decode_client_frame(r#"{"command":"subscribe","identifier":{"channel":"X"}}"#),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn selects_first_supported_subprotocol_in_client_order() {
        assert_eq!(
            select_subprotocol(["actioncable-v1-json, actioncable-unsupported"]),
            Some(PROTOCOL_V1_JSON)
        );
        assert_eq!(
            select_subprotocol(["actioncable-v1-ext-json", "actioncable-v1-json"]),
            Some(PROTOCOL_V1_EXT_JSON)
        );
        assert_eq!(select_subprotocol(["foo"]), None);
        assert_eq!(select_subprotocol(std::iter::empty()), None);
    }

    #[test]
    fn encodes_server_messages() {
        assert_eq!(welcome("abc"), r#"{"type":"welcome","sid":"abc"}"#);
        assert_eq!(ping(17), r#"{"type":"ping","message":17}"#);
        let id = r#"{"channel":"ChatChannel"}"#;
        let confirm: serde_json::Value = serde_json::from_str(&confirm_subscription(id)).unwrap();
        assert_eq!(confirm["type"], "confirm_subscription");
        assert_eq!(confirm["identifier"], id);
        assert_eq!(
            disconnect(DisconnectReason::Unauthorized, false),
            r#"{"type":"disconnect","reason":"unauthorized","reconnect":false}"#
        );
    }

    #[test]
    fn positioned_data_adds_the_stream_and_its_position() {
        let id = r#"{"channel":"C"}"#;
        let frame = data_message_positioned(id, r#"{"n":1}"#, true, "chat \"1\"", "ep", 42);
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"identifier": id, "message": {"n": 1},
                "stream_id": "chat \"1\"", "epoch": "ep", "offset": 42})
        );
        let welcome: serde_json::Value =
            serde_json::from_str(&restored_welcome("new", &["a", "b"])).unwrap();
        assert_eq!(
            welcome,
            serde_json::json!({"type":"welcome","sid":"new","restored":true,"restored_ids":["a","b"]})
        );
    }

    #[test]
    fn data_embeds_json_and_quotes_text() {
        let id = r#"{"channel":"C"}"#;
        let json: serde_json::Value =
            serde_json::from_str(&data_message(id, r#"{"text":"hi"}"#)).unwrap();
        assert_eq!(json["message"]["text"], "hi");
        assert_eq!(json["identifier"], id);
        let text: serde_json::Value =
            serde_json::from_str(&data_message(id, "plain \"words\"")).unwrap();
        assert_eq!(text["message"], "plain \"words\"");
        let num: serde_json::Value = serde_json::from_str(&data_message(id, " 42 ")).unwrap();
        assert_eq!(num["message"], 42);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_frame_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = decode_client_frame(&text);
            let _ = transmission_type(&text);
        }

        #[test]
        fn data_message_is_always_valid_json(id in ".{0,40}", data in ".{0,80}") {
            let out = data_message(&id, &data);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            prop_assert_eq!(v["identifier"].as_str().unwrap(), id.as_str());
        }
    }
}
