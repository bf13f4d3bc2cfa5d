//! Calls and replies between Rust and Ruby: owned Rust data in, plain Ruby
//! hashes (string keys) out, and back. Nothing here outlives the call.

use ferrocable::call_queue::Call;
use ferrocable::controller::{
    CommandReply, ConnectReply, Env, HttpResponse, Reply, Request, StateChanges, StateMap, Status,
};
use magnus::{Error, RHash, Ruby};

fn env_hash(ruby: &Ruby, env: Env) -> Result<RHash, Error> {
    let h = ruby.hash_new();
    h.aset("url", env.url)?;
    h.aset("headers", env.headers)?;
    h.aset("cstate", env.cstate)?;
    h.aset("istate", env.istate)?;
    Ok(h)
}

/// `{"id", "kind", "sid", "stateless", "env", ...}`; commands add `command`,
/// `identifier`, `connection_identifiers`, `data`; stream messages (kind
/// `stream`) `identifier`, `stream`, `data`; disconnects add `identifiers`
/// and `subscriptions`.
pub fn call_to_hash(ruby: &Ruby, call: Call) -> Result<RHash, Error> {
    let h = ruby.hash_new();
    h.aset("id", call.id)?;
    h.aset("kind", call.request.kind().as_str())?;
    h.aset("sid", call.sid)?;
    h.aset("stateless", call.stateless)?;
    match call.request {
        Request::Connect(env) => h.aset("env", env_hash(ruby, env)?)?,
        Request::Command(c) => {
            h.aset("command", c.kind.as_str())?;
            h.aset("identifier", c.identifier)?;
            h.aset("connection_identifiers", c.connection_identifiers)?;
            h.aset("data", c.data)?;
            h.aset("env", env_hash(ruby, c.env)?)?;
        }
        Request::Stream(m) => {
            h.aset("identifier", &*m.identifier)?;
            h.aset("stream", &*m.stream)?;
            h.aset("data", &*m.data)?;
        }
        Request::Disconnect(d) => {
            h.aset("identifiers", d.identifiers)?;
            h.aset("subscriptions", d.subscriptions)?;
            h.aset("env", env_hash(ruby, d.env)?)?;
        }
    }
    Ok(h)
}

fn opt<T: magnus::TryConvert>(h: RHash, key: &str) -> Result<Option<T>, Error> {
    h.lookup::<_, Option<T>>(key)
}

fn status(ruby: &Ruby, h: RHash) -> Result<Status, Error> {
    match opt::<String>(h, "status")?.as_deref() {
        Some("success") => Ok(Status::Success),
        Some("failure") => Ok(Status::Failure),
        Some("error") => Ok(Status::Error),
        other => Err(Error::new(
            ruby.exception_arg_error(),
            format!("reply status must be \"success\", \"failure\" or \"error\", got {other:?}"),
        )),
    }
}

fn state(h: RHash) -> Result<StateChanges, Error> {
    Ok(StateChanges {
        cstate: opt::<StateMap>(h, "cstate")?.unwrap_or_default(),
        istate: opt::<StateMap>(h, "istate")?.unwrap_or_default(),
    })
}

/// `"handshake" => [status, {name => value}, body]`: the Rack response that
/// refused the WebSocket handshake, if any.
fn handshake(h: RHash) -> Result<Option<HttpResponse>, Error> {
    let Some((status, headers, body)) =
        opt::<(u16, Vec<(String, String)>, magnus::RString)>(h, "handshake")?
    else {
        return Ok(None);
    };
    // SAFETY: the bytes are copied at once, while `body` is alive on the stack.
    let body = unsafe { body.as_slice().to_vec() };
    Ok(Some(HttpResponse {
        status,
        headers,
        body,
    }))
}

/// Builds the reply of the kind `kind` from a Ruby hash.
pub fn reply_from_hash(ruby: &Ruby, kind: &str, h: RHash) -> Result<Reply, Error> {
    let status = status(ruby, h)?;
    let error_msg = opt::<String>(h, "error_msg")?.unwrap_or_default();
    let transmissions = opt::<Vec<String>>(h, "transmissions")?.unwrap_or_default();
    Ok(match kind {
        "connect" => Reply::Connect(ConnectReply {
            status,
            identifiers: opt::<String>(h, "identifiers")?.unwrap_or_default(),
            transmissions,
            error_msg,
            state: state(h)?,
            handshake: handshake(h)?,
        }),
        "command" | "stream" => Reply::Command(CommandReply {
            status,
            disconnect: opt::<bool>(h, "disconnect")?.unwrap_or(false),
            stop_streams: opt::<bool>(h, "stop_streams")?.unwrap_or(false),
            streams: opt::<Vec<String>>(h, "streams")?.unwrap_or_default(),
            stopped_streams: opt::<Vec<String>>(h, "stopped_streams")?.unwrap_or_default(),
            transmissions,
            error_msg,
            state: state(h)?,
            broadcasts: opt::<Vec<(String, String)>>(h, "broadcasts")?.unwrap_or_default(),
            callback_streams: opt::<Vec<String>>(h, "callback_streams")?.unwrap_or_default(),
        }),
        "disconnect" => Reply::Disconnect(if status == Status::Error {
            Err(error_msg)
        } else {
            Ok(())
        }),
        other => {
            return Err(Error::new(
                ruby.exception_arg_error(),
                format!("unknown call kind {other:?}"),
            ));
        }
    })
}
