//! The gRPC controller: the [`Controller`] contract spoken to an
//! AnyCable-compatible RPC server (`anycable.RPC`), as the binary does.
//!
//! Calls carry `sid` and `protov=v1` metadata, wait for one of
//! `rpc_concurrency` slots, and are retried with backoff on Unavailable and
//! ResourceExhausted until `rpc_request_timeout` runs out. The channel is
//! lazy: the server starts (and keeps serving) while the RPC server is down,
//! and recovers by itself when it comes back.

use crate::controller::{
    CallError, Command, CommandReply, ConnectReply, Controller, DisconnectRequest, Env,
    StateChanges, Status,
};
use crate::metrics::Metrics;
use futures_util::future::BoxFuture;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tracing::debug;

/// The generated `anycable` protobuf types, client and server.
pub mod pb {
    tonic::include_proto!("anycable");
}

use pb::rpc_client::RpcClient;

const PROTOCOL_VERSION: &str = "v1";
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_millis(800);

#[derive(Clone)]
pub struct RpcController {
    client: RpcClient<Channel>,
    slots: Arc<Semaphore>,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl RpcController {
    /// `rpc_host` is `host:port` or a full `http://` URL.
    pub fn new(
        rpc_host: &str,
        concurrency: usize,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let url = if rpc_host.contains("://") {
            rpc_host.to_owned()
        } else {
            format!("http://{rpc_host}")
        };
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| format!("invalid rpc_host {rpc_host:?}: {e}"))?
            .connect_timeout(timeout.min(Duration::from_secs(1)))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        Ok(RpcController {
            client: RpcClient::new(endpoint.connect_lazy()),
            slots: Arc::new(Semaphore::new(concurrency)),
            timeout,
            metrics,
        })
    }

    /// Runs one call with a concurrency slot, metadata, retries and the
    /// overall deadline.
    async fn call<Req, Resp, F, Fut>(
        &self,
        sid: &str,
        message: Req,
        send: F,
    ) -> Result<Resp, CallError>
    where
        Req: Clone,
        F: Fn(RpcClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.timeout;
        self.metrics.rpc_pending.inc();
        let slot = tokio::time::timeout_at(deadline, self.slots.acquire()).await;
        self.metrics.rpc_pending.dec();
        let _slot = match slot {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(CallError::Internal("RPC client closed".into())),
            Err(_) => {
                self.metrics.rpc_errors.inc();
                return Err(CallError::Timeout);
            }
        };
        let mut backoff = FIRST_BACKOFF;
        loop {
            self.metrics.rpc_calls.inc();
            let mut request = tonic::Request::new(message.clone());
            let remaining = deadline.saturating_duration_since(Instant::now());
            request.set_timeout(remaining);
            if let Ok(v) = sid.parse() {
                request.metadata_mut().insert("sid", v);
            }
            request.metadata_mut().insert(
                "protov",
                tonic::metadata::MetadataValue::from_static(PROTOCOL_VERSION),
            );
            let outcome =
                tokio::time::timeout_at(deadline, send(self.client.clone(), request)).await;
            let status = match outcome {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) => status,
                Err(_) => {
                    self.metrics.rpc_errors.inc();
                    return Err(CallError::Timeout);
                }
            };
            self.metrics.rpc_errors.inc();
            let retryable = matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::ResourceExhausted
            );
            if !retryable {
                return Err(match status.code() {
                    tonic::Code::DeadlineExceeded => CallError::Timeout,
                    _ => CallError::Internal(format!("{}: {}", status.code(), status.message())),
                });
            }
            if Instant::now() + backoff >= deadline {
                return Err(CallError::Unavailable(status.message().to_owned()));
            }
            debug!(sid, code = ?status.code(), backoff_ms = backoff.as_millis() as u64, "RPC call retried");
            self.metrics.rpc_retries.inc();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

impl Controller for RpcController {
    fn connect(&self, sid: &str, env: Env) -> BoxFuture<'static, Result<ConnectReply, CallError>> {
        let this = self.clone();
        let sid = sid.to_owned();
        Box::pin(async move {
            let message = pb::ConnectionRequest {
                env: Some(env.into()),
            };
            let reply = this
                .call(&sid, message, |mut c, r| async move { c.connect(r).await })
                .await?;
            let status = status_from(reply.status);
            if status == Status::Error {
                this.metrics.rpc_errors.inc();
            }
            Ok(ConnectReply {
                status,
                identifiers: reply.identifiers,
                transmissions: reply.transmissions,
                error_msg: reply.error_msg,
                state: reply.env.map(Into::into).unwrap_or_default(),
                handshake: None,
            })
        })
    }

    fn command(
        &self,
        sid: &str,
        command: Command,
    ) -> BoxFuture<'static, Result<CommandReply, CallError>> {
        let this = self.clone();
        let sid = sid.to_owned();
        Box::pin(async move {
            let message = pb::CommandMessage {
                command: command.kind.as_str().to_owned(),
                identifier: command.identifier,
                connection_identifiers: command.connection_identifiers,
                data: command.data,
                env: Some(command.env.into()),
            };
            let reply = this
                .call(&sid, message, |mut c, r| async move { c.command(r).await })
                .await?;
            let status = status_from(reply.status);
            if status == Status::Error {
                this.metrics.rpc_errors.inc();
            }
            Ok(CommandReply {
                status,
                disconnect: reply.disconnect,
                stop_streams: reply.stop_streams,
                streams: reply.streams,
                stopped_streams: reply.stopped_streams,
                transmissions: reply.transmissions,
                error_msg: reply.error_msg,
                state: reply.env.map(Into::into).unwrap_or_default(),
                broadcasts: Vec::new(),
                callback_streams: Vec::new(),
            })
        })
    }

    fn disconnect(
        &self,
        sid: &str,
        request: DisconnectRequest,
    ) -> BoxFuture<'static, Result<(), CallError>> {
        let this = self.clone();
        let sid = sid.to_owned();
        Box::pin(async move {
            let message = pb::DisconnectRequest {
                identifiers: request.identifiers,
                subscriptions: request.subscriptions,
                env: Some(request.env.into()),
            };
            let reply = this
                .call(
                    &sid,
                    message,
                    |mut c, r| async move { c.disconnect(r).await },
                )
                .await?;
            match status_from(reply.status) {
                Status::Error => {
                    this.metrics.rpc_errors.inc();
                    Err(CallError::Internal(format!(
                        "Disconnect returned ERROR: {}",
                        reply.error_msg
                    )))
                }
                _ => Ok(()),
            }
        })
    }
}

fn status_from(code: i32) -> Status {
    match pb::Status::try_from(code) {
        Ok(pb::Status::Success) => Status::Success,
        Ok(pb::Status::Failure) => Status::Failure,
        _ => Status::Error,
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

impl From<pb::EnvResponse> for StateChanges {
    fn from(env: pb::EnvResponse) -> Self {
        StateChanges {
            cstate: env.cstate,
            istate: env.istate,
        }
    }
}
