//! The `anycable` messages in JSON, as HTTP RPC carries them. anycable-go
//! writes them with Go's `encoding/json` over the protobuf structs: the
//! proto field names (`error_msg`), empty values left out, `status` as its
//! number; that is what [`Json::to_json`] writes. A reader takes what
//! AnyCable's servers may send besides (the proto3 JSON mapping): the
//! lowerCamelCase names (`errorMsg`), an enum by name (`"SUCCESS"`), and
//! `null` for a default value. The mapping to the contract's calls and
//! replies is the protobuf one ([`super`]); this is only its encoding.

use super::pb;
use crate::controller::{Command, Reply, Request};
use serde_json::{Map, Value};
use std::collections::HashMap;

type Object = Map<String, Value>;

/// A message that travels as JSON.
pub trait Json: Sized {
    fn to_json(&self) -> Value;
    fn from_json(object: &Object) -> Result<Self, String>;
}

/// The request body (or response body) for `message`.
pub fn encode<T: Json>(message: &T) -> Vec<u8> {
    serde_json::to_vec(&message.to_json()).expect("JSON values serialize")
}

/// A message from a body; the error says what is wrong with it.
pub fn decode<T: Json>(body: &[u8]) -> Result<T, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => T::from_json(&object),
        Ok(other) => Err(format!("expected a JSON object, got {other}")),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// A call served over HTTP RPC (the gem's endpoint): the body of a POST to
/// `/connect`, `/command` or `/disconnect` (`method`) as the contract's call.
pub fn decode_request(method: &str, body: &[u8]) -> Result<Request, String> {
    Ok(match method {
        "connect" => Request::Connect(decode::<pb::ConnectionRequest>(body)?.into()),
        "command" => Request::Command(
            Command::try_from(decode::<pb::CommandMessage>(body)?)
                .map_err(|c| format!("unknown command {c:?}"))?,
        ),
        "disconnect" => Request::Disconnect(decode::<pb::DisconnectRequest>(body)?.into()),
        other => return Err(format!("unknown RPC method {other:?}")),
    })
}

/// The response body for the application's reply.
pub fn encode_reply(reply: Reply) -> Vec<u8> {
    match reply {
        Reply::Connect(r) => encode(&pb::ConnectionResponse::from(r)),
        Reply::Command(r) => encode(&pb::CommandResponse::from(r)),
        Reply::Disconnect(r) => encode(&pb::DisconnectResponse::from(r)),
    }
}

/// An object being written, Go's `omitempty` way.
struct Writer(Object);

impl Writer {
    fn new() -> Self {
        Writer(Object::new())
    }

    fn string(mut self, name: &str, value: &str) -> Self {
        if !value.is_empty() {
            self.0.insert(name.into(), value.into());
        }
        self
    }

    fn flag(mut self, name: &str, value: bool) -> Self {
        if value {
            self.0.insert(name.into(), true.into());
        }
        self
    }

    fn status(mut self, value: i32) -> Self {
        if value != 0 {
            self.0.insert("status".into(), value.into());
        }
        self
    }

    fn list(mut self, name: &str, value: &[String]) -> Self {
        if !value.is_empty() {
            self.0.insert(name.into(), value.into());
        }
        self
    }

    fn map(mut self, name: &str, value: &HashMap<String, String>) -> Self {
        if !value.is_empty() {
            let object = value
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            self.0.insert(name.into(), Value::Object(object));
        }
        self
    }

    /// A message field: written when present, even empty (a Go pointer).
    fn message<T: Json>(mut self, name: &str, value: Option<&T>) -> Self {
        if let Some(value) = value {
            self.0.insert(name.into(), value.to_json());
        }
        self
    }

    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

/// `stop_streams` → `stopStreams`, proto3 JSON's other name for a field.
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

/// A field's value under either name; `null` is the default, so absent.
fn field<'a>(object: &'a Object, name: &str) -> Option<&'a Value> {
    object
        .get(name)
        .or_else(|| object.get(&camel(name)))
        .filter(|v| !v.is_null())
}

fn wrong(name: &str, expected: &str, got: &Value) -> String {
    format!("field {name:?} must be {expected}, got {got}")
}

fn string(object: &Object, name: &str) -> Result<String, String> {
    match field(object, name) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(wrong(name, "a string", other)),
    }
}

fn flag(object: &Object, name: &str) -> Result<bool, String> {
    match field(object, name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(wrong(name, "true or false", other)),
    }
}

fn list(object: &Object, name: &str) -> Result<Vec<String>, String> {
    match field(object, name) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(wrong(name, "a list of strings", other)),
            })
            .collect(),
        Some(other) => Err(wrong(name, "a list of strings", other)),
    }
}

fn map(object: &Object, name: &str) -> Result<HashMap<String, String>, String> {
    match field(object, name) {
        None => Ok(HashMap::new()),
        Some(Value::Object(entries)) => entries
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(wrong(name, "an object of strings", other)),
            })
            .collect(),
        Some(other) => Err(wrong(name, "an object of strings", other)),
    }
}

/// `status`: the enum's number or its name.
fn status(object: &Object) -> Result<i32, String> {
    let value = match field(object, "status") {
        None => return Ok(pb::Status::Error as i32),
        Some(v) => v,
    };
    let known = match value {
        Value::Number(n) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .filter(|n| pb::Status::try_from(*n).is_ok()),
        Value::String(s) => pb::Status::from_str_name(s).map(|s| s as i32),
        _ => None,
    };
    known.ok_or_else(|| wrong("status", "0, 1, 2 or ERROR, SUCCESS, FAILURE", value))
}

fn message<T: Json>(object: &Object, name: &str) -> Result<Option<T>, String> {
    match field(object, name) {
        None => Ok(None),
        Some(Value::Object(inner)) => T::from_json(inner).map(Some),
        Some(other) => Err(wrong(name, "an object", other)),
    }
}

impl Json for pb::Env {
    fn to_json(&self) -> Value {
        Writer::new()
            .string("url", &self.url)
            .map("headers", &self.headers)
            .map("cstate", &self.cstate)
            .map("istate", &self.istate)
            .done()
    }

    fn from_json(o: &Object) -> Result<Self, String> {
        Ok(pb::Env {
            url: string(o, "url")?,
            headers: map(o, "headers")?,
            cstate: map(o, "cstate")?,
            istate: map(o, "istate")?,
        })
    }
}

/// `ttl` is not read or written (anycable-go does not use it either).
impl Json for pb::PresenceResponse {
    fn to_json(&self) -> Value {
        Writer::new()
            .string("type", &self.r#type)
            .string("id", &self.id)
            .string("info", &self.info)
            .done()
    }

    fn from_json(o: &Object) -> Result<Self, String> {
        Ok(pb::PresenceResponse {
            r#type: string(o, "type")?,
            id: string(o, "id")?,
            info: string(o, "info")?,
            ttl: 0,
        })
    }
}

impl Json for pb::EnvResponse {
    fn to_json(&self) -> Value {
        Writer::new()
            .map("cstate", &self.cstate)
            .map("istate", &self.istate)
            .done()
    }

    fn from_json(o: &Object) -> Result<Self, String> {
        Ok(pb::EnvResponse {
            cstate: map(o, "cstate")?,
            istate: map(o, "istate")?,
        })
    }
}

impl Json for pb::ConnectionRequest {
    fn to_json(&self) -> Value {
        Writer::new().message("env", self.env.as_ref()).done()
    }

    fn from_json(o: &Object) -> Result<Self, String> {
        Ok(pb::ConnectionRequest {
            env: message(o, "env")?,
        })
    }
}

impl Json for pb::ConnectionResponse {
    fn to_json(&self) -> Value {
        Writer::new()
            .status(self.status)
            .string("identifiers", &self.identifiers)
            .list("transmissions", &self.transmissions)
            .string("error_msg", &self.error_msg)
            .message("env", self.env.as_ref())
            .done()
    }

    fn from_json(o: &Object) -> Result<Self, String> {
        Ok(pb::ConnectionResponse {
            status: status(o)?,
            identifiers: string(o, "identifiers")?,
            transmissions: list(o, "transmissions")?,
            error_msg: string(o, "error_msg")?,
            env: message(o, "env")?,
        })
    }
}

impl Json for pb::CommandMessage {
    fn to_json(&self) -> Value {
        Writer::new()
            .string("command", &self.command)
            .string("identifier", &self.identifier)
            .string("connection_identifiers", &self.connection_identifiers)
            .string("data", &self.data)
            .message("env", self.env.as_ref())
            .done()
    }

    fn from_json(o: &Object) -> Result<Self, String> {
        Ok(pb::CommandMessage {
            command: string(o, "command")?,
            identifier: string(o, "identifier")?,
            connection_identifiers: string(o, "connection_identifiers")?,
            data: string(o, "data")?,
            env: message(o, "env")?,
        })
    }
}

impl Json for pb::CommandResponse {
    fn to_json(&self) -> Value {
        Writer::new()
            .status(self.status)
            .flag("disconnect", self.disconnect)
            .flag("stop_streams", self.stop_streams)
            .list("streams", &self.streams)
            .list("transmissions", &self.transmissions)
            .string("error_msg", &self.error_msg)
            .message("env", self.env.as_ref())
            .list("stopped_streams", &self.stopped_streams)
            .message("presence", self.presence.as_ref())
            .done()
    }

    fn from_json(o: &Object) -> Result<Self, String> {
        Ok(pb::CommandResponse {
            status: status(o)?,
            disconnect: flag(o, "disconnect")?,
            stop_streams: flag(o, "stop_streams")?,
            streams: list(o, "streams")?,
            transmissions: list(o, "transmissions")?,
            error_msg: string(o, "error_msg")?,
            env: message(o, "env")?,
            stopped_streams: list(o, "stopped_streams")?,
            presence: message(o, "presence")?,
        })
    }
}

impl Json for pb::DisconnectRequest {
    fn to_json(&self) -> Value {
        Writer::new()
            .string("identifiers", &self.identifiers)
            .list("subscriptions", &self.subscriptions)
            .message("env", self.env.as_ref())
            .done()
    }

    fn from_json(o: &Object) -> Result<Self, String> {
        Ok(pb::DisconnectRequest {
            identifiers: string(o, "identifiers")?,
            subscriptions: list(o, "subscriptions")?,
            env: message(o, "env")?,
        })
    }
}

impl Json for pb::DisconnectResponse {
    fn to_json(&self) -> Value {
        Writer::new()
            .status(self.status)
            .string("error_msg", &self.error_msg)
            .done()
    }

    fn from_json(o: &Object) -> Result<Self, String> {
        Ok(pb::DisconnectResponse {
            status: status(o)?,
            error_msg: string(o, "error_msg")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_written_as_anycable_go_writes_them() {
        let message = pb::CommandMessage {
            command: "subscribe".into(),
            identifier: "{\"channel\":\"C\"}".into(),
            connection_identifiers: String::new(),
            data: String::new(),
            env: Some(pb::Env {
                url: "ws://h/cable".into(),
                headers: [("cookie".into(), "a=1".into())].into(),
                ..Default::default()
            }),
        };
        assert_eq!(
            message.to_json(),
            json!({"command": "subscribe", "identifier": "{\"channel\":\"C\"}",
                   "env": {"url": "ws://h/cable", "headers": {"cookie": "a=1"}}})
        );
        let empty = pb::ConnectionRequest {
            env: Some(pb::Env::default()),
        };
        assert_eq!(empty.to_json(), json!({"env": {}}));
    }

    #[test]
    fn replies_are_read_in_every_form_servers_send() {
        let go: pb::CommandResponse = decode(
            br#"{"status":1,"stop_streams":true,"streams":["s"],"env":{"istate":{"k":"v"}}}"#,
        )
        .unwrap();
        let proto3: pb::CommandResponse = decode(
            br#"{"status":"SUCCESS","stopStreams":true,"streams":["s"],"stoppedStreams":null,
                 "errorMsg":null,"env":{"istate":{"k":"v"},"cstate":null}}"#,
        )
        .unwrap();
        assert_eq!(go, proto3);
        assert!(go.stop_streams);
        assert_eq!(go.env.unwrap().istate["k"], "v");
        let failure: pb::ConnectionResponse = decode(br#"{"status":2}"#).unwrap();
        assert_eq!(failure.status, pb::Status::Failure as i32);
        let error: pb::DisconnectResponse = decode(br#"{"error_msg":"boom"}"#).unwrap();
        assert_eq!(error.status, pb::Status::Error as i32);
    }

    #[test]
    fn presence_travels_both_ways() {
        // As anycable-rails' RPC server writes it (anycable-go 1.6.16
        // rpc/http_test.go reads the same).
        let body =
            br#"{"status":1,"presence":{"type":"join","id":"42","info":"{\"name\":\"Dexter\"}"}}"#;
        let reply: pb::CommandResponse = decode(body).unwrap();
        let presence = reply.presence.clone().unwrap();
        assert_eq!(
            (presence.r#type.as_str(), presence.id.as_str()),
            ("join", "42")
        );
        assert_eq!(presence.info, r#"{"name":"Dexter"}"#);
        let written = reply.to_json();
        assert_eq!(
            written["presence"],
            json!({"type": "join", "id": "42", "info": "{\"name\":\"Dexter\"}"})
        );
        let e = decode::<pb::CommandResponse>(br#"{"presence":{"id":7}}"#).unwrap_err();
        assert!(e.contains("id"), "{e}");
    }

    #[test]
    fn malformed_bodies_are_errors_naming_the_field() {
        let e = decode::<pb::ConnectionResponse>(br#"{"status":7}"#).unwrap_err();
        assert!(e.contains("status"), "{e}");
        let e = decode::<pb::CommandResponse>(br#"{"streams":"s"}"#).unwrap_err();
        assert!(e.contains("streams"), "{e}");
        assert!(decode::<pb::CommandResponse>(b"[]").is_err());
        assert!(decode::<pb::CommandResponse>(b"<html>").is_err());
    }

    #[test]
    fn served_calls_round_trip_through_the_contract() {
        let body = br#"{"command":"message","identifier":"i","connection_identifiers":"u",
                        "data":"{}","env":{"url":"ws://h/cable","istate":{"a":"b"}}}"#;
        let Request::Command(c) = decode_request("command", body).unwrap() else {
            panic!("a command")
        };
        assert_eq!(c.kind, crate::controller::CommandKind::Message);
        assert_eq!(c.connection_identifiers, "u");
        assert_eq!(c.env.istate["a"], "b");
        assert!(decode_request("command", br#"{"command":"dance"}"#).is_err());
        assert!(decode_request("stream", b"{}").is_err());
        let body = encode_reply(Reply::Disconnect(Err("boom".into())));
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            json!({"error_msg": "boom"})
        );
    }
}
