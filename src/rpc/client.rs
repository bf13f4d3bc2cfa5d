//! The gRPC controller: the [`Controller`] contract spoken to an
//! AnyCable-compatible RPC server (`anycable.RPC`), as the binary does.
//!
//! Calls carry `sid` and `protov=v1` metadata, wait for one of
//! `rpc_concurrency` slots, and are retried with backoff on Unavailable and
//! ResourceExhausted until the call's deadline (`Config::rpc_call_timeout`:
//! `rpc_command_timeout`, `rpc_request_timeout`) runs out. The channel is
//! lazy: the server starts (and keeps serving) while the RPC server is down,
//! and recovers by itself when it comes back. With `rpc_enable_tls` (or
//! `rpc_tls_root_ca`) the connection is TLS (rustls, ALPN `h2`), the server's
//! certificate checked against the system's CAs or the one given.

use crate::config::Config;
use crate::controller::{CallError, Controller, Reply, Request};
use crate::metrics::Metrics;
use crate::tls::ClientTls;
use futures_util::future::BoxFuture;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint};
use tracing::debug;

use super::{disconnect_outcome, pb};
use pb::rpc_client::RpcClient;

pub(super) const PROTOCOL_VERSION: &str = "v1";
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
    /// The controller `config` describes: `rpc_host`, `rpc_concurrency`,
    /// the call deadline (`rpc_command_timeout`, `rpc_request_timeout`) and the TLS options (`rpc_enable_tls`,
    /// `rpc_tls_verify`, `rpc_tls_root_ca`). Fails, naming the option, on a
    /// bad host or CA.
    pub fn from_config(config: &Config, metrics: Arc<Metrics>) -> Result<Self, String> {
        Self::with_tls(
            &config.rpc_host,
            config.rpc_concurrency,
            config.rpc_call_timeout(),
            config.rpc_tls().as_ref(),
            metrics,
        )
    }

    /// `rpc_host` is `host:port` or a full `http://` URL; plaintext.
    pub fn new(
        rpc_host: &str,
        concurrency: usize,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        Self::with_tls(rpc_host, concurrency, timeout, None, metrics)
    }

    /// [`RpcController::new`], over TLS when `tls` is given.
    pub fn with_tls(
        rpc_host: &str,
        concurrency: usize,
        timeout: Duration,
        tls: Option<&ClientTls>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = if rpc_host.contains("://") {
            rpc_host.to_owned()
        } else {
            format!("{scheme}://{rpc_host}")
        };
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| format!("invalid rpc_host {rpc_host:?}: {e}"))?
            .connect_timeout(timeout.min(Duration::from_secs(1)))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let channel = match tls {
            None => endpoint.connect_lazy(),
            Some(tls) => {
                let config = tls.config(&[b"h2"]).map_err(|e| e.to_string())?;
                endpoint.connect_with_connector_lazy(TlsConnector(
                    tokio_rustls::TlsConnector::from(Arc::new(config)),
                ))
            }
        };
        Ok(RpcController {
            client: RpcClient::new(channel),
            slots: Arc::new(Semaphore::new(concurrency)),
            timeout,
            metrics,
        })
    }

    /// Runs one call with a concurrency slot, metadata, retries and the
    /// overall deadline.
    async fn send<Req, Resp, F, Fut>(
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
        with_retries(&self.slots, self.timeout, &self.metrics, sid, |remaining| {
            let mut request = tonic::Request::new(message.clone());
            request.set_timeout(remaining);
            if let Ok(v) = sid.parse() {
                request.metadata_mut().insert("sid", v);
            }
            request.metadata_mut().insert(
                "protov",
                tonic::metadata::MetadataValue::from_static(PROTOCOL_VERSION),
            );
            let call = send(self.client.clone(), request);
            async move {
                match call.await {
                    Ok(response) => Attempt::Done(response.into_inner()),
                    Err(status) => match status.code() {
                        tonic::Code::Unavailable | tonic::Code::ResourceExhausted => {
                            Attempt::Retry(
                                format!("{:?}", status.code()),
                                status.message().to_owned(),
                            )
                        }
                        tonic::Code::DeadlineExceeded => Attempt::Failed(CallError::Timeout),
                        code => Attempt::Failed(CallError::Internal(format!(
                            "{code}: {}",
                            status.message()
                        ))),
                    },
                }
            }
        })
        .await
    }
}

/// How one attempt at a call went.
pub(super) enum Attempt<T> {
    Done(T),
    /// The server could not take it (unreachable, overloaded): tried again
    /// after a backoff while the deadline allows. (why, message)
    Retry(String, String),
    Failed(CallError),
}

/// The RPC clients' call policy (gRPC and HTTP alike, as in anycable-go):
/// wait for one of `rpc_concurrency` slots, run `attempt` (given the time
/// left), retry with backoff what the server could not take, all within
/// `timeout` from the start.
pub(super) async fn with_retries<T, F, Fut>(
    slots: &Semaphore,
    timeout: Duration,
    metrics: &Metrics,
    sid: &str,
    mut attempt: F,
) -> Result<T, CallError>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let deadline = Instant::now() + timeout;
    metrics.rpc_pending.inc();
    let slot = tokio::time::timeout_at(deadline, slots.acquire()).await;
    metrics.rpc_pending.dec();
    let _slot = match slot {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) => return Err(CallError::Internal("RPC client closed".into())),
        Err(_) => return Err(CallError::Timeout),
    };
    let mut backoff = FIRST_BACKOFF;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let (why, message) = match tokio::time::timeout_at(deadline, attempt(remaining)).await {
            Ok(Attempt::Done(reply)) => return Ok(reply),
            Ok(Attempt::Failed(e)) => return Err(e),
            Ok(Attempt::Retry(why, message)) => (why, message),
            Err(_) => return Err(CallError::Timeout),
        };
        if Instant::now() + backoff >= deadline {
            return Err(CallError::Unavailable(message));
        }
        debug!(sid, code = %why, error = %message, backoff_ms = backoff.as_millis() as u64, "RPC call retried");
        metrics.rpc_retries.inc();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Opens TLS connections to the RPC server for the gRPC channel: TCP to the
/// URI's host and port, then the handshake, the certificate checked for
/// that host name.
#[derive(Clone)]
struct TlsConnector(tokio_rustls::TlsConnector);

impl tonic::codegen::Service<tonic::codegen::http::Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, std::io::Result<Self::Response>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: tonic::codegen::http::Uri) -> Self::Future {
        let connector = self.0.clone();
        Box::pin(async move {
            let invalid = |what: &str| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("rpc_host {uri}: {what}"),
                )
            };
            let host = uri
                .host()
                .ok_or_else(|| invalid("no host"))?
                .trim_matches(['[', ']'])
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let name =
                ServerName::try_from(host.clone()).map_err(|_| invalid("not a host name"))?;
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            Ok(TokioIo::new(connector.connect(name, tcp).await?))
        })
    }
}

impl Controller for RpcController {
    fn call(&self, sid: &str, request: Request) -> BoxFuture<'static, Result<Reply, CallError>> {
        let this = self.clone();
        let sid = sid.to_owned();
        Box::pin(async move {
            let reply = match request {
                Request::Connect(env) => {
                    let message = pb::ConnectionRequest::from(env);
                    let send = |mut c: RpcClient<Channel>, r| async move { c.connect(r).await };
                    Reply::Connect(this.send(&sid, message, send).await?.into())
                }
                Request::Command(command) => {
                    let message = pb::CommandMessage::from(command);
                    let send = |mut c: RpcClient<Channel>, r| async move { c.command(r).await };
                    Reply::Command(this.send(&sid, message, send).await?.into())
                }
                Request::Disconnect(request) => {
                    let message = pb::DisconnectRequest::from(request);
                    let send = |mut c: RpcClient<Channel>, r| async move { c.disconnect(r).await };
                    Reply::Disconnect(disconnect_outcome(this.send(&sid, message, send).await?))
                }
                Request::Stream(message) => {
                    return Err(CallError::Internal(format!(
                        "stream {} has an application callback, which the RPC contract cannot run",
                        message.stream
                    )));
                }
            };
            Ok(reply)
        })
    }
}
