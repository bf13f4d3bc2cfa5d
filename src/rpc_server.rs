//! The RPC server side of `anycable.RPC`: gRPC requests from a WebSocket
//! server (the `ferrocable` binary, anycable-go) become stateless calls on a
//! [`CallQueue`], answered by the host's worker threads (the gem's Ruby
//! handler). This is what `rake ferrocable:rpc` serves.

use crate::controller::{CallError, Command, CommandKind, DisconnectRequest, Env, Status};
use crate::embedded::{CallQueue, Reply, Request};
use crate::rpc::pb;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::{info, warn};

#[derive(Clone)]
pub struct RpcService {
    queue: Arc<CallQueue>,
}

/// Serves `anycable.RPC` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    queue: Arc<CallQueue>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "serving anycable.RPC");
    }
    tonic::transport::Server::builder()
        .add_service(pb::rpc_server::RpcServer::new(RpcService { queue }))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
}

fn sid_of<T>(request: &tonic::Request<T>) -> String {
    request
        .metadata()
        .get("sid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn status_of(e: CallError) -> tonic::Status {
    match e {
        CallError::Unavailable(m) => tonic::Status::unavailable(m),
        CallError::Timeout => {
            tonic::Status::deadline_exceeded("the application did not answer in time")
        }
        CallError::Internal(m) => tonic::Status::internal(m),
    }
}

fn pb_status(status: Status) -> i32 {
    match status {
        Status::Error => pb::Status::Error as i32,
        Status::Success => pb::Status::Success as i32,
        Status::Failure => pb::Status::Failure as i32,
    }
}

fn env_of(env: Option<pb::Env>) -> Env {
    let env = env.unwrap_or_default();
    Env {
        url: env.url,
        headers: env.headers,
        cstate: env.cstate,
        istate: env.istate,
    }
}

fn unexpected(reply: Reply) -> tonic::Status {
    warn!(
        ?reply,
        "the application answered with the wrong kind of reply"
    );
    tonic::Status::internal("wrong reply kind")
}

#[tonic::async_trait]
impl pb::rpc_server::Rpc for RpcService {
    async fn connect(
        &self,
        request: tonic::Request<pb::ConnectionRequest>,
    ) -> Result<tonic::Response<pb::ConnectionResponse>, tonic::Status> {
        let sid = sid_of(&request);
        let env = env_of(request.into_inner().env);
        match self
            .queue
            .call(&sid, true, Request::Connect(env))
            .await
            .map_err(status_of)?
        {
            Reply::Connect(r) => Ok(tonic::Response::new(pb::ConnectionResponse {
                status: pb_status(r.status),
                identifiers: r.identifiers,
                transmissions: r.transmissions,
                error_msg: r.error_msg,
                env: Some(pb::EnvResponse {
                    cstate: r.state.cstate,
                    istate: r.state.istate,
                }),
            })),
            other => Err(unexpected(other)),
        }
    }

    async fn command(
        &self,
        request: tonic::Request<pb::CommandMessage>,
    ) -> Result<tonic::Response<pb::CommandResponse>, tonic::Status> {
        let sid = sid_of(&request);
        let message = request.into_inner();
        let kind = match message.command.as_str() {
            "subscribe" => CommandKind::Subscribe,
            "unsubscribe" => CommandKind::Unsubscribe,
            "message" => CommandKind::Message,
            other => {
                return Err(tonic::Status::invalid_argument(format!(
                    "unknown command {other:?}"
                )));
            }
        };
        let command = Command {
            kind,
            identifier: message.identifier,
            connection_identifiers: message.connection_identifiers,
            data: message.data,
            env: env_of(message.env),
        };
        match self
            .queue
            .call(&sid, true, Request::Command(command))
            .await
            .map_err(status_of)?
        {
            Reply::Command(r) => Ok(tonic::Response::new(pb::CommandResponse {
                status: pb_status(r.status),
                disconnect: r.disconnect,
                stop_streams: r.stop_streams,
                streams: r.streams,
                transmissions: r.transmissions,
                error_msg: r.error_msg,
                env: Some(pb::EnvResponse {
                    cstate: r.state.cstate,
                    istate: r.state.istate,
                }),
                stopped_streams: r.stopped_streams,
                presence: None,
            })),
            other => Err(unexpected(other)),
        }
    }

    async fn disconnect(
        &self,
        request: tonic::Request<pb::DisconnectRequest>,
    ) -> Result<tonic::Response<pb::DisconnectResponse>, tonic::Status> {
        let sid = sid_of(&request);
        let message = request.into_inner();
        let request = DisconnectRequest {
            identifiers: message.identifiers,
            subscriptions: message.subscriptions,
            env: env_of(message.env),
        };
        match self
            .queue
            .call(&sid, true, Request::Disconnect(request))
            .await
            .map_err(status_of)?
        {
            Reply::Disconnect(Ok(())) => Ok(tonic::Response::new(pb::DisconnectResponse {
                status: pb_status(Status::Success),
                error_msg: "".into(),
            })),
            Reply::Disconnect(Err(e)) => Ok(tonic::Response::new(pb::DisconnectResponse {
                status: pb_status(Status::Error),
                error_msg: e,
            })),
            other => Err(unexpected(other)),
        }
    }
}
