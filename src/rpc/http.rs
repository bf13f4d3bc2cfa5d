//! The HTTP RPC controller: the [`Controller`] contract spoken to an
//! application over HTTP/1.1, as anycable-go's `rpc_impl=http` does (for
//! hosts without HTTP/2: the gem's Rack endpoint, `@anycable/serverless-js`,
//! AnyCable's Rails integration).
//!
//! Each call is a `POST` of the message in JSON ([`super::json`]) to
//! `<rpc_host>/connect`, `/command` or `/disconnect`, with
//! `Authorization: Bearer <http_rpc_secret>` when a secret is set and the
//! session id and protocol version as `x-anycable-meta-sid` and
//! `x-anycable-meta-protov`. A 200 carries the reply in JSON. As in
//! anycable-go, a server that cannot be reached is retried (the policy the
//! gRPC client has: slots, backoff, one deadline); a 401 (a wrong secret), a
//! 400 or 422 (a request it refused) or any other status is an error at once.
//!
//! An `https://` `rpc_host` is called over TLS (rustls, HTTP/1.1): the
//! server's certificate is checked against the system's CAs, or
//! `rpc_tls_root_ca`; `rpc_tls_verify=false` skips the check (checked
//! against anycable-go 1.6 rpc/http.go: its HTTP client uses the RPC TLS
//! configuration, which an https:// URL needs no `rpc_enable_tls` for).
//!
//! An application that stops answering trips the circuit breaker
//! ([`super::breaker`]): for a few seconds calls fail at once instead of
//! each waiting out its deadline.

use crate::controller::{CallError, Controller, Reply, Request};
use crate::metrics::Metrics;
use crate::tls::ClientTls;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::rustls::pki_types::ServerName;
use tonic::codegen::Service;

use super::breaker::{Breaker, Ticket};
use super::client::{Attempt, PROTOCOL_VERSION, with_retries};
use super::json::{self, Json};
use super::{disconnect_outcome, pb};

/// Bytes of an error response shown in the error.
const ERROR_BODY_SHOWN: usize = 200;

#[derive(Clone)]
pub struct HttpRpcController {
    client: Client<Connector, Full<Bytes>>,
    /// `rpc_host` without a trailing slash: the methods are below it.
    base: String,
    authorization: Option<HeaderValue>,
    slots: Arc<Semaphore>,
    timeout: Duration,
    breaker: Arc<Breaker>,
    metrics: Arc<Metrics>,
}

/// A request the breaker let through; counted as a failure unless it got
/// an answer (also when its deadline drops it).
struct Outcome {
    breaker: Arc<Breaker>,
    ticket: Ticket,
    reached: bool,
}

impl Drop for Outcome {
    fn drop(&mut self) {
        self.breaker
            .record(self.ticket, self.reached, std::time::Instant::now());
    }
}

impl HttpRpcController {
    /// `rpc_host` is an `http://` or `https://` URL (its path is where the
    /// methods are mounted, e.g. `http://app:3000/_anycable`); `secret` is
    /// sent as a Bearer token; `tls` is how an `https://` server is checked
    /// (default: against the system's CAs).
    pub fn new(
        rpc_host: &str,
        secret: Option<&str>,
        concurrency: usize,
        timeout: Duration,
        tls: Option<&ClientTls>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let uri: hyper::Uri = rpc_host
            .parse()
            .map_err(|e| format!("invalid rpc_host {rpc_host:?}: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => None,
            Some("https") => {
                let system = ClientTls {
                    ca_option: "rpc_tls_root_ca",
                    ca: None,
                    verify: true,
                };
                let config = tls
                    .unwrap_or(&system)
                    .config(&[b"http/1.1"])
                    .map_err(|e| e.to_string())?;
                Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
            }
            _ => {
                return Err(format!(
                    "rpc_host {rpc_host:?} must be an http:// or https:// URL for HTTP RPC"
                ));
            }
        };
        if uri.query().is_some() {
            return Err(format!(
                "rpc_host {rpc_host:?}: a query string is not supported"
            ));
        }
        let authorization = secret
            .map(|s| HeaderValue::try_from(format!("Bearer {s}")))
            .transpose()
            .map_err(|_| "http_rpc_secret must be printable ASCII".to_owned())?
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout.min(Duration::from_secs(1))));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(Connector { http, tls });
        Ok(HttpRpcController {
            client,
            base: rpc_host.trim_end_matches('/').to_owned(),
            authorization,
            slots: Arc::new(Semaphore::new(concurrency)),
            timeout,
            breaker: Arc::new(Breaker::default()),
            metrics,
        })
    }

    async fn send<Req: Json, Resp: Json>(
        &self,
        sid: &str,
        method: &str,
        message: Req,
    ) -> Result<Resp, CallError> {
        let body = Bytes::from(json::encode(&message));
        let uri = format!("{}/{method}", self.base);
        with_retries(&self.slots, self.timeout, &self.metrics, sid, |_| {
            let mut request = hyper::Request::post(&uri)
                .header(CONTENT_TYPE, "application/json")
                .header("x-anycable-meta-protov", PROTOCOL_VERSION);
            if let Ok(sid) = HeaderValue::try_from(sid) {
                request = request.header("x-anycable-meta-sid", sid);
            }
            if let Some(authorization) = &self.authorization {
                request = request.header(AUTHORIZATION, authorization.clone());
            }
            let request = request.body(Full::new(body.clone()));
            let client = self.client.clone();
            let breaker = self.breaker.clone();
            async move {
                let request = match request {
                    Ok(r) => r,
                    Err(e) => return Attempt::Failed(CallError::Internal(e.to_string())),
                };
                let Some(ticket) = breaker.allow(std::time::Instant::now()) else {
                    return Attempt::Failed(CallError::Unavailable(format!(
                        "HTTP RPC {method}: the application has not been answering; calls fail \
                         at once for a few seconds (circuit breaker open)"
                    )));
                };
                let mut outcome = Outcome {
                    breaker,
                    ticket,
                    reached: false,
                };
                let response = match client.request(request).await {
                    Ok(r) => {
                        outcome.reached = true;
                        r
                    }
                    // Not reached or refused: the server never had the call.
                    Err(e) if e.is_connect() => {
                        return Attempt::Retry("unreachable".into(), error_chain(&e));
                    }
                    // Sent, then the connection failed: the app may have run
                    // the call, and a command is not idempotent (a message
                    // posted twice), so it is not sent again.
                    Err(e) => {
                        return Attempt::Failed(CallError::Unavailable(format!(
                            "HTTP RPC {method}: {}",
                            error_chain(&e)
                        )));
                    }
                };
                let status = response.status();
                let body = match response.into_body().collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) => {
                        return Attempt::Failed(CallError::Internal(format!(
                            "HTTP RPC {method}: reading the response: {e}"
                        )));
                    }
                };
                match status {
                    StatusCode::OK => match json::decode::<Resp>(&body) {
                        Ok(reply) => Attempt::Done(reply),
                        Err(e) => Attempt::Failed(CallError::Internal(format!(
                            "HTTP RPC {method}: invalid response: {e}"
                        ))),
                    },
                    StatusCode::UNAUTHORIZED => Attempt::Failed(CallError::Internal(format!(
                        "HTTP RPC {method}: 401 Unauthorized (does http_rpc_secret, or secret, match the application's?)"
                    ))),
                    other => Attempt::Failed(CallError::Internal(format!(
                        "HTTP RPC {method}: {other}: {}",
                        shown(&body)
                    ))),
                }
            }
        })
        .await
    }
}

/// Opens the connections to the application: TCP, then TLS for an
/// `https://` rpc_host (the certificate checked for the URL's host).
#[derive(Clone)]
struct Connector {
    http: HttpConnector,
    tls: Option<tokio_rustls::TlsConnector>,
}

type ConnectError = Box<dyn std::error::Error + Send + Sync>;

impl Service<hyper::Uri> for Connector {
    type Response = Stream;
    type Error = ConnectError;
    type Future = BoxFuture<'static, Result<Stream, ConnectError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        let connecting = self.http.call(uri.clone());
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = connecting.await?;
            let Some(tls) = tls else {
                return Ok(Stream::Plain(tcp));
            };
            let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
            let name = ServerName::try_from(host.to_owned())
                .map_err(|_| format!("rpc_host {uri}: {host:?} is not a host name"))?;
            let stream = tls.connect(name, tcp.into_inner()).await?;
            Ok(Stream::Tls(Box::new(TokioIo::new(stream))))
        })
    }
}

/// A connection to the application, plaintext or TLS.
enum Stream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(s) => s.connected(),
            Stream::Tls(_) => Connected::new(),
        }
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The start of an error response's body, printable.
fn shown(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_SHOWN)]);
    let mut text: String = text.chars().filter(|c| !c.is_control()).collect();
    if body.len() > ERROR_BODY_SHOWN {
        text.push_str("...");
    }
    text
}

/// An error with its causes (hyper's own message is only the outermost).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Controller for HttpRpcController {
    fn call(&self, sid: &str, request: Request) -> BoxFuture<'static, Result<Reply, CallError>> {
        let this = self.clone();
        let sid = sid.to_owned();
        Box::pin(async move {
            Ok(match request {
                Request::Connect(env) => {
                    let message = pb::ConnectionRequest::from(env);
                    let reply: pb::ConnectionResponse = this.send(&sid, "connect", message).await?;
                    Reply::Connect(reply.into())
                }
                Request::Command(command) => {
                    let message = pb::CommandMessage::from(command);
                    let reply: pb::CommandResponse = this.send(&sid, "command", message).await?;
                    Reply::Command(reply.into())
                }
                Request::Disconnect(request) => {
                    let message = pb::DisconnectRequest::from(request);
                    let reply: pb::DisconnectResponse =
                        this.send(&sid, "disconnect", message).await?;
                    Reply::Disconnect(disconnect_outcome(reply))
                }
                Request::Stream(message) => {
                    return Err(CallError::Internal(format!(
                        "stream {} has an application callback, which the RPC contract cannot run",
                        message.stream
                    )));
                }
            })
        })
    }
}
