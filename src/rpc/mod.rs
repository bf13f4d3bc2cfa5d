//! The call contract over the network (`anycable.RPC`): the generated
//! protobuf types and their mapping to and from [`crate::controller`]'s
//! calls and replies, in both directions; [`json`] their JSON form for HTTP
//! RPC. [`client`] speaks gRPC to an RPC server and [`http`] HTTP RPC (the
//! binary); [`server`] serves gRPC from this process's worker threads
//! (`rake ferrocable:rpc`).

mod breaker;
pub mod client;
pub mod http;
pub mod json;
pub mod server;

pub use client::RpcController;
pub use http::HttpRpcController;

use crate::controller::{
    AppPresence, Command, CommandKind, CommandReply, ConnectReply, DisconnectRequest, Env,
    StateChanges, Status,
};

/// The generated `anycable` protobuf types, client and server.
pub mod pb {
    tonic::include_proto!("anycable");
}

pub fn status_from(code: i32) -> Status {
    match pb::Status::try_from(code) {
        Ok(pb::Status::Success) => Status::Success,
        Ok(pb::Status::Failure) => Status::Failure,
        _ => Status::Error,
    }
}

pub fn pb_status(status: Status) -> i32 {
    match status {
        Status::Error => pb::Status::Error as i32,
        Status::Success => pb::Status::Success as i32,
        Status::Failure => pb::Status::Failure as i32,
    }
}

impl From<Env> for pb::Env {
    fn from(env: Env) -> Self {
        pb::Env {
            url: env.url,
            headers: env.headers,
            cstate: env.cstate,
            istate: env.istate,
        }
    }
}

impl From<pb::Env> for Env {
    fn from(env: pb::Env) -> Self {
        Env {
            url: env.url,
            headers: env.headers,
            cstate: env.cstate,
            istate: env.istate,
        }
    }
}

impl From<pb::EnvResponse> for StateChanges {
    fn from(env: pb::EnvResponse) -> Self {
        StateChanges {
            cstate: env.cstate,
            istate: env.istate,
        }
    }
}

impl From<StateChanges> for pb::EnvResponse {
    fn from(state: StateChanges) -> Self {
        pb::EnvResponse {
            cstate: state.cstate,
            istate: state.istate,
        }
    }
}

impl From<Env> for pb::ConnectionRequest {
    fn from(env: Env) -> Self {
        pb::ConnectionRequest {
            env: Some(env.into()),
        }
    }
}

impl From<pb::ConnectionRequest> for Env {
    fn from(request: pb::ConnectionRequest) -> Self {
        request.env.unwrap_or_default().into()
    }
}

impl From<Command> for pb::CommandMessage {
    fn from(command: Command) -> Self {
        pb::CommandMessage {
            command: command.kind.as_str().to_owned(),
            identifier: command.identifier,
            connection_identifiers: command.connection_identifiers,
            data: command.data,
            env: Some(command.env.into()),
        }
    }
}

impl TryFrom<pb::CommandMessage> for Command {
    /// The unknown command name.
    type Error = String;

    fn try_from(message: pb::CommandMessage) -> Result<Self, String> {
        let kind = match message.command.as_str() {
            "subscribe" => CommandKind::Subscribe,
            "unsubscribe" => CommandKind::Unsubscribe,
            "message" => CommandKind::Message,
            _ => return Err(message.command),
        };
        Ok(Command {
            kind,
            identifier: message.identifier,
            connection_identifiers: message.connection_identifiers,
            data: message.data,
            env: message.env.unwrap_or_default().into(),
        })
    }
}

impl From<DisconnectRequest> for pb::DisconnectRequest {
    fn from(request: DisconnectRequest) -> Self {
        pb::DisconnectRequest {
            identifiers: request.identifiers,
            subscriptions: request.subscriptions,
            env: Some(request.env.into()),
        }
    }
}

impl From<pb::DisconnectRequest> for DisconnectRequest {
    fn from(message: pb::DisconnectRequest) -> Self {
        DisconnectRequest {
            identifiers: message.identifiers,
            subscriptions: message.subscriptions,
            env: message.env.unwrap_or_default().into(),
        }
    }
}

impl From<pb::ConnectionResponse> for ConnectReply {
    fn from(reply: pb::ConnectionResponse) -> Self {
        ConnectReply {
            status: status_from(reply.status),
            identifiers: reply.identifiers,
            transmissions: reply.transmissions,
            error_msg: reply.error_msg,
            state: reply.env.map(Into::into).unwrap_or_default(),
            handshake: None,
            disconnect_interest: true,
        }
    }
}

impl From<ConnectReply> for pb::ConnectionResponse {
    fn from(reply: ConnectReply) -> Self {
        pb::ConnectionResponse {
            status: pb_status(reply.status),
            identifiers: reply.identifiers,
            transmissions: reply.transmissions,
            error_msg: reply.error_msg,
            env: Some(reply.state.into()),
        }
    }
}

impl From<pb::CommandResponse> for CommandReply {
    fn from(reply: pb::CommandResponse) -> Self {
        CommandReply {
            status: status_from(reply.status),
            disconnect: reply.disconnect,
            stop_streams: reply.stop_streams,
            streams: reply.streams,
            stopped_streams: reply.stopped_streams,
            transmissions: reply.transmissions,
            error_msg: reply.error_msg,
            state: reply.env.map(Into::into).unwrap_or_default(),
            broadcasts: Vec::new(),
            callback_streams: Vec::new(),
            presence: reply.presence.map(Into::into),
            disconnect_interest: true,
        }
    }
}

/// The reply's `presence` (checked against anycable-go 1.6.16
/// protocol/protocol.go `ParseCommandResponse`: type, id and info taken as
/// they are; the TTL is not used).
impl From<pb::PresenceResponse> for AppPresence {
    fn from(presence: pb::PresenceResponse) -> Self {
        AppPresence {
            event: presence.r#type,
            id: presence.id,
            info: presence.info,
        }
    }
}

impl From<AppPresence> for pb::PresenceResponse {
    fn from(presence: AppPresence) -> Self {
        pb::PresenceResponse {
            r#type: presence.event,
            id: presence.id,
            info: presence.info,
            ttl: 0,
        }
    }
}

impl From<CommandReply> for pb::CommandResponse {
    fn from(reply: CommandReply) -> Self {
        pb::CommandResponse {
            status: pb_status(reply.status),
            disconnect: reply.disconnect,
            stop_streams: reply.stop_streams,
            streams: reply.streams,
            transmissions: reply.transmissions,
            error_msg: reply.error_msg,
            env: Some(reply.state.into()),
            stopped_streams: reply.stopped_streams,
            presence: reply.presence.map(Into::into),
        }
    }
}

/// A Disconnect's outcome: `Err` with the application's message on ERROR.
pub fn disconnect_outcome(reply: pb::DisconnectResponse) -> Result<(), String> {
    match status_from(reply.status) {
        Status::Error => Err(reply.error_msg),
        _ => Ok(()),
    }
}

impl From<Result<(), String>> for pb::DisconnectResponse {
    fn from(outcome: Result<(), String>) -> Self {
        match outcome {
            Ok(()) => pb::DisconnectResponse {
                status: pb_status(Status::Success),
                error_msg: String::new(),
            },
            Err(error_msg) => pb::DisconnectResponse {
                status: pb_status(Status::Error),
                error_msg,
            },
        }
    }
}
