//! The fast lane: what the server answers itself, without calling the
//! application, as anycable-go does (checked against anycable-go 1.6
//! identity/, streams/ and node/node.go):
//!
//! - JWT identification ([`jwt`]): a valid token is a welcome, with the
//!   identifiers its `ext` claim holds; a bad or expired one is refused. A
//!   stateful application (the gem) still builds its connection object,
//!   from the identifiers (`$jwt` in the connect call's state), without
//!   running its `connect`.
//! - Signed and public streams: subscriptions to the `$pubsub` channel with
//!   a `signed_stream_name` ([`signed`], verified with the streams key) or a
//!   `stream_name` (with `public_streams`), confirmed by the server.
//! - Turbo Streams: `Turbo::StreamsChannel` subscriptions, verified with
//!   the Turbo key, when `turbo_streams` is on.
//! - Whispers: a fast-lane subscription that may whisper gets the stream in
//!   its `$w` channel state, which is where the RPC contract says it too
//!   (anycable-rails' `stream_from ..., whisper: true`); the session
//!   delivers whispers itself.
//!
//! [`FastLane`] wraps the application's controller: what it does not serve
//! goes through unchanged. It sits outside `controller::Metered`, so the
//! application-call metrics count only calls the application received.

pub mod jwt;
pub mod signed;

use crate::client_log::{client_log, compact};
use crate::config::Config;
use crate::controller::{
    CallError, Command, CommandKind, CommandReply, ConnectReply, Controller, DisconnectRequest,
    Env, Reply, Request, Status,
};
use crate::protocol::{self, DisconnectReason};
use futures_util::future::BoxFuture;
use jwt::{Identity, Jwt};
use serde::Deserialize;
use std::sync::Arc;

/// The channel of signed and public streams (anycable-go's `pubsub_channel`).
pub const PUBSUB_CHANNEL: &str = "$pubsub";
/// turbo-rails' channel (`turbo_stream_from`).
pub const TURBO_CHANNEL: &str = "Turbo::StreamsChannel";
/// The connect call's state key carrying the identifiers a verified JWT
/// gave, for a stateful application to restore instead of running its
/// `connect` (never set from anything a client sends).
pub const JWT_IDENTIFIERS_STATE: &str = "$jwt";
/// The channel-state key naming the stream a subscription whispers on
/// (anycable-go's `WHISPER_STREAM_STATE`).
pub const WHISPER_STATE: &str = "$w";
/// The channel-state key naming a subscription's presence stream
/// (anycable-go's `PRESENCE_STREAM_STATE`), which the application or the
/// fast lane sets.
pub const PRESENCE_STATE: &str = "$p";

/// A fast-lane subscription request, as the identifier carries it.
#[derive(Deserialize, Default)]
struct StreamIdentifier {
    #[serde(default)]
    channel: String,
    #[serde(default)]
    stream_name: Option<String>,
    #[serde(default)]
    signed_stream_name: Option<String>,
}

/// Which fast-lane channel an identifier names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    PubSub,
    Turbo,
}

pub struct FastLane {
    inner: Arc<dyn Controller>,
    jwt: Option<Jwt>,
    /// Signed `$pubsub` streams' key (`streams_secret`), made ready once.
    streams_key: Option<signed::Verifier>,
    public_streams: bool,
    streams_whisper: bool,
    /// Signed `$pubsub` streams have presence (`streams_presence`).
    streams_presence: bool,
    /// The Turbo key, when `turbo_streams` is on, made ready once.
    turbo_key: Option<signed::Verifier>,
}

impl FastLane {
    pub fn new(inner: Arc<dyn Controller>, config: &Config) -> Self {
        FastLane {
            jwt: config
                .jwt_key()
                .map(|key| Jwt::new(&key, &config.jwt_param, config.enforce_jwt)),
            inner,
            streams_key: config
                .streams_key()
                .map(|key| signed::Verifier::new(key.as_bytes())),
            public_streams: config.public_streams,
            streams_whisper: config.streams_whisper,
            streams_presence: config.streams_presence,
            turbo_key: config
                .turbo_key()
                .filter(|_| config.turbo_streams)
                .map(|key| signed::Verifier::new(&key)),
        }
    }

    /// The fast-lane channel `identifier` names, if any (a cheap check
    /// before any JSON is parsed).
    fn lane(&self, identifier: &str) -> Option<(Lane, StreamIdentifier)> {
        // A name spelled with JSON escapes misses this check and goes to the
        // application, which has no such channel (or verifies it itself).
        let maybe = identifier.contains(PUBSUB_CHANNEL)
            || (self.turbo_key.is_some() && identifier.contains(TURBO_CHANNEL));
        if !maybe {
            return None;
        }
        let parsed: StreamIdentifier = serde_json::from_str(identifier).ok()?;
        match parsed.channel.as_str() {
            PUBSUB_CHANNEL => Some((Lane::PubSub, parsed)),
            TURBO_CHANNEL if self.turbo_key.is_some() => Some((Lane::Turbo, parsed)),
            _ => None,
        }
    }

    /// A connect the server answers itself: `None` to ask the application.
    fn identify(&self, sid: &str, env: &Env) -> Option<ConnectReply> {
        let jwt = self.jwt.as_ref()?;
        let token = jwt.token(&env.url, env.headers.get(jwt.header()).map(String::as_str));
        let refused = |reason: DisconnectReason| {
            let mut reply = ConnectReply::new(Status::Failure);
            reply.transmissions = vec![protocol::disconnect(reason, false)];
            reply
        };
        let Some(token) = token else {
            if jwt.enforce {
                client_log!(
                    INFO,
                    sid,
                    "connection without a token refused (enforce_jwt)"
                );
                return Some(refused(DisconnectReason::Unauthorized));
            }
            return None;
        };
        Some(match jwt.identify(&token) {
            Identity::Identified(identifiers) => {
                let mut reply = ConnectReply::new(Status::Success);
                // No application call, so no Disconnect call is owed
                // (anycable-go 1.6.16 identity/identity.go: interest -1).
                reply.disconnect_interest = false;
                reply.identifiers = identifiers;
                reply.transmissions = vec![protocol::welcome(sid)];
                reply
            }
            Identity::Expired => {
                client_log!(INFO, sid, "connection with an expired token refused");
                refused(DisconnectReason::TokenExpired)
            }
            Identity::Invalid(why) => {
                client_log!(WARN, sid, error = %compact(why), "connection with an invalid token refused");
                refused(DisconnectReason::Unauthorized)
            }
        })
    }

    /// A command on a fast-lane channel, answered here.
    fn command(
        &self,
        sid: &str,
        command: &Command,
        lane: Lane,
        request: StreamIdentifier,
    ) -> CommandReply {
        let identifier = command.identifier.as_str();
        let mut reply = self.lane_reply(sid, command, identifier, lane, request);
        // The application never heard of this subscription (anycable-go
        // 1.6.16 streams/controller.go: interest -1).
        reply.disconnect_interest = false;
        reply
    }

    fn lane_reply(
        &self,
        sid: &str,
        command: &Command,
        identifier: &str,
        lane: Lane,
        request: StreamIdentifier,
    ) -> CommandReply {
        match command.kind {
            CommandKind::Subscribe => match self.verified(lane, request) {
                Ok((stream, whisper, presence)) => {
                    let mut reply = CommandReply::new(Status::Success);
                    reply.transmissions = vec![protocol::confirm_subscription(identifier)];
                    if whisper {
                        reply
                            .state
                            .istate
                            .insert(WHISPER_STATE.into(), stream.clone());
                    }
                    if presence {
                        reply
                            .state
                            .istate
                            .insert(PRESENCE_STATE.into(), stream.clone());
                    }
                    reply.streams = vec![stream];
                    reply
                }
                Err(why) => {
                    client_log!(INFO, sid, identifier = %compact(identifier), error = %why, "fast-lane subscription rejected");
                    let mut reply = CommandReply::new(Status::Failure);
                    reply.transmissions = vec![protocol::reject_subscription(identifier)];
                    reply
                }
            },
            CommandKind::Unsubscribe => {
                let mut reply = CommandReply::new(Status::Success);
                reply.stop_streams = true;
                reply
            }
            CommandKind::Message => {
                let mut reply = CommandReply::new(Status::Error);
                reply.error_msg = "fast-lane channels have no actions".into();
                reply
            }
        }
    }

    /// The stream a fast-lane subscription may stream, whether it may
    /// whisper on it and whether it has presence there (anycable-go 1.6
    /// streams/controller.go `NewStreamsController` resolver: public
    /// streams always, signed ones with `streams_whisper` and
    /// `streams_presence`; Turbo streams neither).
    fn verified(
        &self,
        lane: Lane,
        request: StreamIdentifier,
    ) -> Result<(String, bool, bool), String> {
        let signed = request.signed_stream_name.filter(|s| !s.is_empty());
        let public = request.stream_name.filter(|s| !s.is_empty());
        match (lane, signed, public) {
            (Lane::Turbo, Some(signed), _) => {
                let key = self.turbo_key.as_ref().expect("turbo lane has a key");
                let stream = key.verify(&signed).map_err(|e| e.to_string())?;
                Ok((stream, false, false))
            }
            (Lane::Turbo, None, _) => Err("no signed_stream_name".into()),
            (Lane::PubSub, Some(signed), _) => {
                let key = self
                    .streams_key
                    .as_ref()
                    .ok_or("signed streams need streams_secret (or secret)")?;
                let stream = key.verify(&signed).map_err(|e| e.to_string())?;
                Ok((stream, self.streams_whisper, self.streams_presence))
            }
            (Lane::PubSub, None, Some(stream)) if self.public_streams => Ok((stream, true, true)),
            (Lane::PubSub, None, Some(_)) => {
                Err("public streams are not allowed (public_streams)".into())
            }
            (Lane::PubSub, None, None) => Err("no stream_name or signed_stream_name".into()),
        }
    }

    /// The application does not hear of fast-lane subscriptions.
    fn without_fast_lane(&self, mut request: DisconnectRequest) -> DisconnectRequest {
        request.subscriptions.retain(|id| self.lane(id).is_none());
        request.env.istate.retain(|id, _| self.lane(id).is_none());
        request
    }
}

impl Controller for FastLane {
    fn stateful(&self) -> bool {
        self.inner.stateful()
    }

    fn call(&self, sid: &str, request: Request) -> BoxFuture<'static, Result<Reply, CallError>> {
        let answered = match &request {
            Request::Connect(env) => match self.identify(sid, env) {
                // A stateful application (the gem) keeps a connection object
                // per socket, which only it can make: it is asked to, with
                // the verified identifiers in place of its `connect`.
                Some(reply) if reply.status == Status::Success && self.inner.stateful() => {
                    let Request::Connect(mut env) = request else {
                        unreachable!()
                    };
                    env.cstate
                        .insert(JWT_IDENTIFIERS_STATE.into(), reply.identifiers);
                    return self.inner.call(sid, Request::Connect(env));
                }
                answer => answer.map(Reply::Connect),
            },
            Request::Command(command) => self
                .lane(&command.identifier)
                .map(|(lane, parsed)| Reply::Command(self.command(sid, command, lane, parsed))),
            _ => None,
        };
        if let Some(reply) = answered {
            return Box::pin(std::future::ready(Ok(reply)));
        }
        let request = match request {
            Request::Disconnect(d) => Request::Disconnect(self.without_fast_lane(d)),
            other => other,
        };
        self.inner.call(sid, request)
    }
}
