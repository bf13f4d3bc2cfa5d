//! The Redis pub/sub broadcast subscriber: `SUBSCRIBE <redis_channel>` and
//! every message is a publication payload.
//!
//! Redis going away is normal (restarts, failovers): the subscriber logs it,
//! retries with capped exponential backoff, and resubscribes when Redis is
//! back. Only an invalid URL stops it, since no retry can fix that.

use super::Publish;
use futures_util::StreamExt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A connection that stops answering (a partition, a NAT dropping it) sends
/// no FIN; a PING every few seconds finds it out.
const PING_EVERY: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs until `stop` resolves.
pub async fn run(
    to: Arc<dyn Publish>,
    url: String,
    channel: String,
    stop: impl Future<Output = ()>,
) {
    tokio::select! {
        _ = stop => {}
        _ = subscribe_forever(&*to, url, channel) => {}
    }
}

async fn subscribe_forever(to: &dyn Publish, url: String, channel: String) {
    let client = match redis::Client::open(url.as_str()) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "invalid redis_url; Redis broadcasts are disabled");
            return;
        }
    };
    let mut backoff = FIRST_BACKOFF;
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    info!(channel = %channel, "subscribed to Redis broadcasts");
                    backoff = FIRST_BACKOFF;
                    let (mut sink, mut messages) = pubsub.split();
                    let mut ping = tokio::time::interval(PING_EVERY);
                    ping.tick().await;
                    loop {
                        tokio::select! {
                            message = messages.next() => match message {
                                Some(message) => {
                                    let _ = to.publish_payload(message.get_payload_bytes(), "redis");
                                }
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
