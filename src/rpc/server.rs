//! The RPC server side of `anycable.RPC`: gRPC requests from a WebSocket
//! server (the `ferrocable` binary, anycable-go) become stateless calls on a
//! [`CallQueue`], answered by the host's worker threads (the gem's Ruby
//! handler). This is what `rake ferrocable:rpc` serves.

use super::pb;
use crate::call_queue::CallQueue;
use crate::controller::{CallError, Command, Reply, Request};
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

fn unexpected(reply: Reply) -> tonic::Status {
    warn!(
        ?reply,
        "the application answered with the wrong kind of reply"
    );
    tonic::Status::internal("wrong reply kind")
}

impl RpcService {
    async fn call(&self, sid: String, request: Request) -> Result<Reply, tonic::Status> {
        self.queue
            .submit(&sid, true, request)
            .await
            .map_err(status_of)
    }
}

#[tonic::async_trait]
impl pb::rpc_server::Rpc for RpcService {
    async fn connect(
        &self,
        request: tonic::Request<pb::ConnectionRequest>,
    ) -> Result<tonic::Response<pb::ConnectionResponse>, tonic::Status> {
        let sid = sid_of(&request);
        let request = Request::Connect(request.into_inner().into());
        match self.call(sid, request).await? {
            Reply::Connect(r) => Ok(tonic::Response::new(r.into())),
            other => Err(unexpected(other)),
        }
    }

    async fn command(
        &self,
        request: tonic::Request<pb::CommandMessage>,
    ) -> Result<tonic::Response<pb::CommandResponse>, tonic::Status> {
        let sid = sid_of(&request);
        let command = Command::try_from(request.into_inner()).map_err(|other| {
            tonic::Status::invalid_argument(format!("unknown command {other:?}"))
        })?;
        match self.call(sid, Request::Command(command)).await? {
            Reply::Command(r) => Ok(tonic::Response::new(r.into())),
            other => Err(unexpected(other)),
        }
    }

    async fn disconnect(
        &self,
        request: tonic::Request<pb::DisconnectRequest>,
    ) -> Result<tonic::Response<pb::DisconnectResponse>, tonic::Status> {
        let sid = sid_of(&request);
        let request = Request::Disconnect(request.into_inner().into());
        match self.call(sid, request).await? {
            Reply::Disconnect(outcome) => Ok(tonic::Response::new(outcome.into())),
            other => Err(unexpected(other)),
        }
    }
}
