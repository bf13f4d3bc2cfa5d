//! The Redis pub/sub broadcast subscriber: `SUBSCRIBE <redis_channel>` and
//! every message is a publication payload.
//!
//! Redis going away is normal (restarts, failovers): the subscriber logs it,
//! retries with capped exponential backoff, and resubscribes when Redis is
//! back. Only an invalid URL stops it, since no retry can fix that.
//!
//! A `rediss://` URL is TLS, with anycable-go's `redis_tls_*` options
//! ([`RedisTarget`]): the server's certificate checked only with
//! `redis_tls_verify` (against the system's CAs or `redis_tls_ca_cert_path`),
//! a client certificate for mutual TLS.

use super::{Publish, Reach};
use crate::tls::{self, TlsError};
use futures_util::StreamExt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A connection that stops answering (a partition, a NAT dropping it) sends
/// no FIN; a PING every few seconds finds it out.
const PING_EVERY: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Where Redis is and how to reach it: `redis_url` and, for a `rediss://`
/// URL, the `redis_tls_*` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTarget {
    pub url: String,
    /// Check the server's certificate (`redis_tls_verify`; anycable-go's
    /// default is not to).
    pub tls_verify: bool,
    /// The CA to check it with (`redis_tls_ca_cert_path`), else the system's.
    pub ca_cert_path: Option<String>,
    /// The client's certificate and key files (mutual TLS).
    pub client_cert: Option<(String, String)>,
}

impl RedisTarget {
    /// Whether the URL asks for TLS.
    pub fn is_tls(&self) -> bool {
        self.url.starts_with("rediss://")
    }

    /// What a deployment should know about its Redis TLS settings.
    pub fn warnings(&self) -> Vec<String> {
        let set = self.tls_verify || self.ca_cert_path.is_some() || self.client_cert.is_some();
        match self.is_tls() {
            true if !self.tls_verify => vec![
                "redis_url is rediss:// but redis_tls_verify is off (anycable-go's default): the Redis server's certificate is not checked; set redis_tls_verify=true"
                    .into(),
            ],
            false if set => vec![
                "redis_tls_* options are set but redis_url is not rediss://: the Redis connection is plaintext and they are not used"
                    .into(),
            ],
            _ => Vec::new(),
        }
    }

    /// Reads the TLS files (errors name the option and the file): done at
    /// start, so a bad path stops it rather than every reconnect failing.
    pub fn certificates(&self) -> Result<Option<redis::TlsCertificates>, TlsError> {
        if !self.is_tls() {
            return Ok(None);
        }
        let root_cert = match &self.ca_cert_path {
            Some(path) if self.tls_verify => {
                tls::certificates("redis_tls_ca_cert_path", Path::new(path))?;
                Some(read("redis_tls_ca_cert_path", path)?)
            }
            _ => None,
        };
        let client_tls = match &self.client_cert {
            Some((cert, key)) => {
                tls::certificates("redis_tls_client_cert_path", Path::new(cert))?;
                tls::private_key("redis_tls_client_key_path", Path::new(key))?;
                Some(redis::ClientTlsConfig {
                    client_cert: read("redis_tls_client_cert_path", cert)?,
                    client_key: read("redis_tls_client_key_path", key)?,
                })
            }
            None => None,
        };
        Ok(Some(redis::TlsCertificates {
            client_tls,
            root_cert,
        }))
    }

    /// The client for this target.
    pub fn client(&self) -> Result<redis::Client, String> {
        let certificates = self.certificates().map_err(|e| e.to_string())?;
        let Some(certificates) = certificates else {
            return redis::Client::open(self.url.as_str()).map_err(|e| e.to_string());
        };
        // The redis crate turns verification off with this URL fragment.
        let url = match self.tls_verify {
            true => self.url.clone(),
            false => format!(
                "{}#insecure",
                self.url.split('#').next().unwrap_or_default()
            ),
        };
        redis::Client::build_with_tls(url.as_str(), certificates).map_err(|e| e.to_string())
    }
}

fn read(option: &str, path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError(format!("{option} {path}: cannot read it ({e})")))
}

/// Runs until `stop` resolves.
pub async fn run(
    to: Arc<dyn Publish>,
    target: RedisTarget,
    channel: String,
    stop: impl Future<Output = ()>,
) {
    tokio::select! {
        _ = stop => {}
        _ = subscribe_forever(&*to, target, channel) => {}
    }
}

async fn subscribe_forever(to: &dyn Publish, target: RedisTarget, channel: String) {
    let mut keys = super::FanoutKeys::default();
    receive_forever(&target, &channel, "broadcasts", |payload| {
        let key = keys.key(payload);
        let _ = to.publish_payload_from(payload, "redis", Reach::EveryNode { key: Some(&key) });
    })
    .await
}

/// Subscribes to `channel` and hands every message to `on_message`, through
/// Redis restarts; returns only when the URL is unusable. `what` names
/// the messages in the logs.
pub(super) async fn receive_forever(
    target: &RedisTarget,
    channel: &str,
    what: &str,
    mut on_message: impl FnMut(&[u8]),
) {
    let client = match target.client() {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, what, "invalid redis_url; Redis subscription disabled");
            return;
        }
    };
    let mut backoff = FIRST_BACKOFF;
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(channel).await {
                Ok(()) => {
                    info!(channel = %channel, what, "subscribed to Redis");
                    backoff = FIRST_BACKOFF;
                    let (mut sink, mut messages) = pubsub.split();
                    let mut ping = tokio::time::interval(PING_EVERY);
                    ping.tick().await;
                    loop {
                        tokio::select! {
                            message = messages.next() => match message {
                                Some(message) => on_message(message.get_payload_bytes()),
                                None => break,
                            },
                            _ = ping.tick() => {
                                let answered = tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await;
                                if !matches!(answered, Ok(Ok(_))) {
                                    warn!("Redis did not answer PING");
                                    break;
                                }
                            }
                        }
                    }
                    warn!("Redis connection lost; reconnecting");
                }
                Err(e) => warn!(error = %e, "Redis SUBSCRIBE failed; retrying"),
            },
            Err(e) => {
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot connect to Redis; retrying")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
