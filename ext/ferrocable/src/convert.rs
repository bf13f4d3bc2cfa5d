//! Calls and replies between Rust and Ruby: owned Rust data in, plain Ruby
//! hashes (string keys) out, and back. Nothing here outlives the call.

use ferrocable::call_queue::Call;
use ferrocable::controller::{
    AppPresence, CallKind, CommandReply, ConnectReply, Env, HttpResponse, Reply, Request,
    StateChanges, StateMap, Status,
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

/// `{"id", "kind", "sid", ...}`: a connect adds `env`; a command `command`,
/// `identifier`, `data`; a stream message (kind `stream`) `identifier`,
/// `stream`, `data`; a disconnect `subscriptions`. Stateless calls (the RPC
/// server) also carry what AnyCable's contract passes around: a command's
/// `connection_identifiers` and `env`, a disconnect's `identifiers` and `env`. An
/// embedded (stateful) call carries only what its live connection object
/// does not already know: `env` only for a session that may be restored
/// (`$restorable`, `$restored_from` in its cstate, see
/// `ferrocable::session::RESTORED_FROM`).
pub fn call_to_hash(ruby: &Ruby, call: Call) -> Result<RHash, Error> {
    let h = ruby.hash_new();
    h.aset("id", call.id)?;
    h.aset("kind", call.request.kind().as_str())?;
    h.aset("sid", call.sid)?;
    match call.request {
        Request::Connect(env) => h.aset("env", env_hash(ruby, env)?)?,
        Request::Command(c) => {
            h.aset("command", c.kind.as_str())?;
            h.aset("identifier", c.identifier)?;
            h.aset("data", c.data)?;
            // A stateful session that may be restored says so in its
            // cstate (and, restored, brings what rebuilds its connection).
            if call.stateless || !c.env.cstate.is_empty() {
                h.aset("connection_identifiers", c.connection_identifiers)?;
                h.aset("env", env_hash(ruby, c.env)?)?;
            }
        }
        Request::Stream(m) => {
            h.aset("identifier", &*m.identifier)?;
            h.aset("stream", &*m.stream)?;
            h.aset("data", &*m.data)?;
        }
        Request::Disconnect(d) => {
            h.aset("subscriptions", d.subscriptions)?;
            if call.stateless || !d.env.cstate.is_empty() {
                h.aset("identifiers", d.identifiers)?;
                h.aset("env", env_hash(ruby, d.env)?)?;
            }
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

/// `"presence" => {"type" => "join" | "leave", "id" => ..., "info" => json}`:
/// the application's say on the subscription's presence (`join_presence`,
/// `leave_presence`), if any.
fn presence(h: RHash) -> Result<Option<AppPresence>, Error> {
    let Some(p) = opt::<RHash>(h, "presence")? else {
        return Ok(None);
    };
    Ok(Some(AppPresence {
        event: opt::<String>(p, "type")?.unwrap_or_default(),
        id: opt::<String>(p, "id")?.unwrap_or_default(),
        info: opt::<String>(p, "info")?.unwrap_or_default(),
    }))
}

/// A reply Hash, read and checked whatever call it answers.
pub struct ReplyHash {
    status: Status,
    error_msg: String,
    transmissions: Vec<String>,
    identifiers: String,
    state: StateChanges,
    handshake: Option<HttpResponse>,
    disconnect: bool,
    stop_streams: bool,
    streams: Vec<String>,
    stopped_streams: Vec<String>,
    broadcasts: Vec<(String, String)>,
    callback_streams: Vec<String>,
    presence: Option<AppPresence>,
}

impl ReplyHash {
    pub fn read(ruby: &Ruby, h: RHash) -> Result<Self, Error> {
        Ok(ReplyHash {
            status: status(ruby, h)?,
            error_msg: opt::<String>(h, "error_msg")?.unwrap_or_default(),
            transmissions: opt::<Vec<String>>(h, "transmissions")?.unwrap_or_default(),
            identifiers: opt::<String>(h, "identifiers")?.unwrap_or_default(),
            state: state(h)?,
            handshake: handshake(h)?,
            disconnect: opt::<bool>(h, "disconnect")?.unwrap_or(false),
            stop_streams: opt::<bool>(h, "stop_streams")?.unwrap_or(false),
            streams: opt::<Vec<String>>(h, "streams")?.unwrap_or_default(),
            stopped_streams: opt::<Vec<String>>(h, "stopped_streams")?.unwrap_or_default(),
            broadcasts: opt::<Vec<(String, String)>>(h, "broadcasts")?.unwrap_or_default(),
            callback_streams: opt::<Vec<String>>(h, "callback_streams")?.unwrap_or_default(),
            presence: presence(h)?,
        })
    }

    /// The reply to a call of `kind` (the call queue knows which).
    pub fn into_reply(self, kind: CallKind) -> Reply {
        match kind {
            CallKind::Connect => Reply::Connect(ConnectReply {
                status: self.status,
                identifiers: self.identifiers,
                transmissions: self.transmissions,
                error_msg: self.error_msg,
                state: self.state,
                handshake: self.handshake,
                disconnect_interest: true,
            }),
            CallKind::Command | CallKind::Stream => Reply::Command(CommandReply {
                status: self.status,
                disconnect: self.disconnect,
                stop_streams: self.stop_streams,
                streams: self.streams,
                stopped_streams: self.stopped_streams,
                transmissions: self.transmissions,
                error_msg: self.error_msg,
                state: self.state,
                broadcasts: self.broadcasts,
                callback_streams: self.callback_streams,
                presence: self.presence,
                disconnect_interest: true,
            }),
            CallKind::Disconnect => Reply::Disconnect(if self.status == Status::Error {
                Err(self.error_msg)
            } else {
                Ok(())
            }),
        }
    }
}
