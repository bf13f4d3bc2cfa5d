//! The one contract between a session and its application, shaped like
//! AnyCable's RPC: `connect`, `command`, `disconnect`.
//!
//! The binary implements it with a gRPC client ([`crate::rpc`]); the gem
//! implements it in-process with Ruby worker threads. Sessions only ever see
//! this trait, so every mode shares the same session semantics. All values
//! are owned Rust data: nothing here may hold a Ruby object.

use crate::metrics::Metrics;
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Arc;

pub type StateMap = HashMap<String, String>;

/// What the application learns about the request behind a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    /// The absolute request URL.
    pub url: String,
    /// Allow-listed request headers (lower-case names) plus `REMOTE_ADDR`.
    pub headers: StateMap,
    /// Connection state.
    pub cstate: StateMap,
    /// Channel state: of one subscription on `command`; on `disconnect`, each
    /// subscription identifier mapped to its state as a JSON object string.
    pub istate: StateMap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The call failed (see `error_msg`).
    Error,
    Success,
    /// The application refused (unauthorized, rejected subscription).
    Failure,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateChanges {
    /// Only changed keys; an empty value deletes the key.
    pub cstate: StateMap,
    pub istate: StateMap,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectReply {
    pub status: Status,
    pub identifiers: String,
    pub transmissions: Vec<String>,
    pub error_msg: String,
    pub state: StateChanges,
    /// The application refused the WebSocket handshake itself (its Rack
    /// middleware answered, or Rails' origin check failed): this HTTP
    /// response goes to the client instead of the upgrade. Only a
    /// [`Controller::stateful`] controller, which is asked before the
    /// upgrade, can answer this; the gRPC contract has no such field.
    pub handshake: Option<HttpResponse>,
    /// Whether the application wants a Disconnect call for this session
    /// (anycable-go's `DisconnectInterest`): true for the application's own
    /// replies, false for what the fast lane answered itself (a JWT).
    pub disconnect_interest: bool,
}

impl ConnectReply {
    pub fn new(status: Status) -> Self {
        ConnectReply {
            status,
            identifiers: String::new(),
            transmissions: Vec::new(),
            error_msg: String::new(),
            state: StateChanges::default(),
            handshake: None,
            disconnect_interest: true,
        }
    }
}

/// An HTTP response the application gives instead of a WebSocket upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandReply {
    pub status: Status,
    pub disconnect: bool,
    pub stop_streams: bool,
    pub streams: Vec<String>,
    pub stopped_streams: Vec<String>,
    pub transmissions: Vec<String>,
    pub error_msg: String,
    pub state: StateChanges,
    /// Broadcasts (stream, data) the application made while handling the
    /// command, published after the reply is applied, so a channel that
    /// broadcasts in `subscribed` reaches its own new stream too. Only the
    /// in-process controller fills it; the gRPC contract has no such field.
    pub broadcasts: Vec<(String, String)>,
    /// Streams among `streams` whose messages the application handles itself
    /// (Action Cable's `stream_from` with a callback or a coder): each message
    /// on them is handed to [`Controller::stream_message`] for this
    /// subscription instead of being sent to the socket as it is.
    pub callback_streams: Vec<String>,
    /// The application's say on the subscription's presence (the RPC
    /// contract's `presence` field, anycable-rails' `join_presence` /
    /// `leave_presence`), applied by the session after the reply.
    pub presence: Option<AppPresence>,
    /// Whether the application wants a Disconnect call for this session
    /// (as [`ConnectReply::disconnect_interest`]; a fast-lane subscription
    /// does not).
    pub disconnect_interest: bool,
}

/// A presence change the application asks for in a command reply
/// (anycable-go's `PresenceEvent` in a `CommandResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPresence {
    /// `join` or `leave` (anything else is refused, logged, by the session).
    pub event: String,
    pub id: String,
    /// The info, JSON (or any text, kept as a JSON string); empty: none.
    pub info: String,
}

impl CommandReply {
    pub fn new(status: Status) -> Self {
        CommandReply {
            status,
            disconnect: false,
            stop_streams: false,
            streams: Vec::new(),
            stopped_streams: Vec::new(),
            transmissions: Vec::new(),
            error_msg: String::new(),
            state: StateChanges::default(),
            broadcasts: Vec::new(),
            callback_streams: Vec::new(),
            presence: None,
            disconnect_interest: true,
        }
    }
}

/// `subscribe`, `unsubscribe` or `message` (a perform) as the RPC names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    Subscribe,
    Unsubscribe,
    Message,
}

impl CommandKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Subscribe => "subscribe",
            CommandKind::Unsubscribe => "unsubscribe",
            CommandKind::Message => "message",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub kind: CommandKind,
    pub identifier: String,
    pub connection_identifiers: String,
    /// The perform payload; empty for subscribe / unsubscribe.
    pub data: String,
    pub env: Env,
}

/// A broadcast on a callback stream, for one subscription of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMessage {
    pub identifier: Arc<str>,
    pub stream: Arc<str>,
    pub data: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisconnectRequest {
    pub identifiers: String,
    pub subscriptions: Vec<String>,
    pub env: Env,
}

/// Why a call did not produce a reply at all (as opposed to an ERROR reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The application could not be reached (RPC down, workers stopped).
    Unavailable(String),
    /// No answer within the configured time.
    Timeout,
    /// Anything else (a protocol violation, an internal failure).
    Internal(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unavailable(e) => write!(f, "application unavailable: {e}"),
            CallError::Timeout => write!(f, "application call timed out"),
            CallError::Internal(e) => write!(f, "application call failed: {e}"),
        }
    }
}

impl std::error::Error for CallError {}

/// One application call: what the application is asked to do. Every
/// controller receives calls in this form, whatever carries them (a gRPC
/// request, the in-process call queue), and answers with a [`Reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Connect(Env),
    Command(Command),
    /// A message on a callback stream (stateful controllers only).
    Stream(StreamMessage),
    Disconnect(DisconnectRequest),
}

/// The kind of a [`Request`], and so of the [`Reply`] it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Connect,
    Command,
    Stream,
    Disconnect,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Connect => "connect",
            CallKind::Command => "command",
            CallKind::Stream => "stream",
            CallKind::Disconnect => "disconnect",
        }
    }
}

impl Request {
    pub fn kind(&self) -> CallKind {
        match self {
            Request::Connect(_) => CallKind::Connect,
            Request::Command(_) => CallKind::Command,
            Request::Stream(_) => CallKind::Stream,
            Request::Disconnect(_) => CallKind::Disconnect,
        }
    }

    /// What the call is about, for logs (client-supplied text truncated).
    pub fn describe(&self) -> String {
        let about = match self {
            Request::Command(c) => format!("{} {}", c.kind.as_str(), c.identifier),
            Request::Stream(m) => format!("{} {}", m.stream, m.identifier),
            _ => String::new(),
        };
        let mut about: String = about.chars().take(120).collect();
        about.retain(|c| !c.is_control());
        about
    }
}

/// The application's answer to a [`Request`]: a stream message is answered
/// like a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Connect(ConnectReply),
    Command(CommandReply),
    /// `Err` carries the application's error message.
    Disconnect(Result<(), String>),
}

impl Reply {
    /// Whether this reply answers a call of `kind`.
    pub fn answers(&self, kind: CallKind) -> bool {
        matches!(
            (self, kind),
            (Reply::Connect(_), CallKind::Connect)
                | (Reply::Command(_), CallKind::Command | CallKind::Stream)
                | (Reply::Disconnect(_), CallKind::Disconnect)
        )
    }

    /// Whether the application answered ERROR (or a Disconnect failed).
    pub fn is_error(&self) -> bool {
        match self {
            Reply::Connect(r) => r.status == Status::Error,
            Reply::Command(r) => r.status == Status::Error,
            Reply::Disconnect(r) => r.is_err(),
        }
    }
}

fn mismatch(expected: CallKind, got: &Reply) -> CallError {
    CallError::Internal(format!(
        "expected a {} reply, got {got:?}",
        expected.as_str()
    ))
}

/// The application, as a session sees it. A controller implements
/// [`Controller::call`]; sessions use the typed entry points (`connect`,
/// `command`, `stream_message`, `disconnect`), which are that one call with
/// the reply's kind checked. Every call carries the session id (gRPC
/// metadata `sid`).
pub trait Controller: Send + Sync + 'static {
    fn call(&self, sid: &str, request: Request) -> BoxFuture<'static, Result<Reply, CallError>>;

    /// True when the application keeps live connection objects and speaks
    /// the protocol itself, as Action Cable's server does (the embedded gem):
    /// it is asked to `connect` before the handshake is answered (so its
    /// middleware and origin check can refuse it), it sends its own welcome,
    /// confirmations and rejections, and every client command is passed to
    /// it as it came (duplicates and unknown identifiers included), the
    /// session adding nothing. False for a stateless RPC application, for
    /// which the session keeps AnyCable's rules.
    fn stateful(&self) -> bool {
        false
    }

    fn connect(&self, sid: &str, env: Env) -> BoxFuture<'static, Result<ConnectReply, CallError>> {
        let reply = self.call(sid, Request::Connect(env));
        Box::pin(async move {
            match reply.await? {
                Reply::Connect(r) => Ok(r),
                other => Err(mismatch(CallKind::Connect, &other)),
            }
        })
    }

    fn command(
        &self,
        sid: &str,
        command: Command,
    ) -> BoxFuture<'static, Result<CommandReply, CallError>> {
        let reply = self.call(sid, Request::Command(command));
        Box::pin(async move {
            match reply.await? {
                Reply::Command(r) => Ok(r),
                other => Err(mismatch(CallKind::Command, &other)),
            }
        })
    }

    /// Runs the application's callback for a message on a callback stream
    /// (see [`CommandReply::callback_streams`]); the reply is applied like a
    /// command's. Only stateful controllers have callbacks.
    fn stream_message(
        &self,
        sid: &str,
        message: StreamMessage,
    ) -> BoxFuture<'static, Result<CommandReply, CallError>> {
        let reply = self.call(sid, Request::Stream(message));
        Box::pin(async move {
            match reply.await? {
                Reply::Command(r) => Ok(r),
                other => Err(mismatch(CallKind::Stream, &other)),
            }
        })
    }

    fn disconnect(
        &self,
        sid: &str,
        request: DisconnectRequest,
    ) -> BoxFuture<'static, Result<(), CallError>> {
        let reply = self.call(sid, Request::Disconnect(request));
        Box::pin(async move {
            match reply.await? {
                Reply::Disconnect(r) => {
                    r.map_err(|e| CallError::Internal(format!("Disconnect returned ERROR: {e}")))
                }
                other => Err(mismatch(CallKind::Disconnect, &other)),
            }
        })
    }
}

/// Counts every application call around any controller, so the call
/// metrics (`ferrocable_rpc_call`, `ferrocable_rpc_error`) mean the same in
/// every mode: a call that failed or was answered ERROR is an error.
/// Transport details (retries, calls waiting for a slot) are the gRPC
/// client's to count.
pub struct Metered {
    inner: Arc<dyn Controller>,
    metrics: Arc<Metrics>,
}

impl Metered {
    pub fn new(inner: Arc<dyn Controller>, metrics: Arc<Metrics>) -> Self {
        Metered { inner, metrics }
    }
}

impl Controller for Metered {
    fn call(&self, sid: &str, request: Request) -> BoxFuture<'static, Result<Reply, CallError>> {
        self.metrics.rpc_calls.inc();
        let reply = self.inner.call(sid, request);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let reply = reply.await;
            if reply.as_ref().map_or(true, Reply::is_error) {
                metrics.rpc_errors.inc();
            }
            reply
        })
    }

    fn stateful(&self) -> bool {
        self.inner.stateful()
    }
}

/// Applies reply state changes: changed keys only, an empty value deletes.
pub fn merge_state(state: &mut StateMap, changes: StateMap) {
    for (k, v) in changes {
        if v.is_empty() {
            state.remove(&k);
        } else {
            state.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_deletes_on_empty_and_keeps_untouched() {
        let mut state: StateMap = [("a".into(), "1".into()), ("b".into(), "2".into())].into();
        merge_state(
            &mut state,
            [("a".into(), "".into()), ("c".into(), "3".into())].into(),
        );
        assert_eq!(
            state,
            [("b".into(), "2".into()), ("c".into(), "3".into())].into()
        );
    }
}
