//! The bus between nodes (anycable-go's `pubsub`): what one node says to
//! the others about the streams, here transient messages (whispers,
//! presence joins and leaves), which reach no broadcast transport since
//! they start on a node, not in the application.
//!
//! Checked against anycable-go 1.6 node/node.go `Whisper` and
//! `broadcastPresenceEvent` (a `StreamMessage` with `meta.transient`, and
//! `meta.broadcast_type = "presence"` for presence) handed to the broker,
//! whose `HandleBroadcast` gives it to the pub/sub (pubsub/redis.go,
//! pubsub/nats.go) for every node. The message here is the same JSON, on
//! one channel or subject, `__anycable_internal__` (anycable-go's
//! `redis_pubsub.channel` default), plus the sending node's id: a node
//! delivers its own messages at once and skips them when they come back.
//! (anycable-go publishes stream messages on a channel per stream; nodes of
//! the two servers do not share a bus.)
//!
//! A message that cannot be sent (Redis or NATS away, the outbox full) is
//! dropped and counted in the log, as a transient message may be: the
//! sending node's own subscribers got it.

use super::redis::RedisTarget;
use super::{Publication, Publish, Transient};
use futures_util::StreamExt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

/// The channel (Redis) or subject (NATS) of the bus.
pub const CHANNEL: &str = "__anycable_internal__";

/// Messages waiting to be sent before new ones are dropped.
const OUTBOX: usize = 16 * 1024;

/// How the nodes reach each other.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Redis pub/sub (`pubsub=redis`, at `redis_url`).
    Redis(RedisTarget),
    /// NATS (`pubsub=nats`, at `nats_servers`).
    Nats(super::nats::Options),
}

/// A node's end of the bus: what it sends to the others.
pub struct Bus {
    node: String,
    outbox: Option<mpsc::Sender<String>>,
    pending: Mutex<Option<mpsc::Receiver<String>>>,
}

impl Bus {
    /// A bus: `enabled` when the node has other nodes to tell (a
    /// [`Transport`] that [`run`] will serve); else sending does nothing.
    pub fn new(enabled: bool) -> Bus {
        let mut bytes = [0u8; 12];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        let node = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let (outbox, pending) = match enabled {
            true => {
                let (tx, rx) = mpsc::channel(OUTBOX);
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        Bus {
            node,
            outbox,
            pending: Mutex::new(pending),
        }
    }

    /// Whether messages go to other nodes.
    pub fn is_enabled(&self) -> bool {
        self.outbox.is_some()
    }

    /// Tells the other nodes (this one delivers it itself).
    pub fn send(&self, message: &Transient) {
        let Some(outbox) = &self.outbox else {
            return;
        };
        if outbox
            .try_send(message.to_json(&[("node", &self.node)]))
            .is_err()
        {
            warn!(stream = %crate::client_log::compact(message.stream.as_str()), "pub/sub outbox full or closed; a transient message reaches this node only");
        }
    }

    /// What [`run`] needs: this node's id and its outbox (once).
    fn take(&self) -> Option<(String, mpsc::Receiver<String>)> {
        let rx = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        Some((self.node.clone(), rx))
    }
}

#[derive(serde::Deserialize)]
struct Envelope {
    node: Option<String>,
}

/// A message from the bus: delivered here unless this node sent it. Only
/// transient messages (whispers, presence events) are taken: the bus is no
/// way around `/_broadcast`'s key for broadcasts or remote disconnects.
fn receive(to: &dyn Publish, node: &str, payload: &[u8]) {
    let from = serde_json::from_slice::<Envelope>(payload)
        .ok()
        .and_then(|e| e.node);
    if from.as_deref() == Some(node) {
        return;
    }
    match super::decode(payload) {
        Ok(publications) => {
            for publication in publications {
                match publication {
                    Publication::Transient(message) => {
                        to.deliver_transient(&message);
                    }
                    _ => debug!("a message on the bus that is not transient; ignored"),
                }
            }
        }
        Err(e) => debug!(error = %e, "undecodable message on the bus; ignored"),
    }
}

/// Serves `bus` over `transport` (sending its outbox, receiving the other
/// nodes' messages) until `stop` resolves.
pub async fn run(
    to: Arc<dyn Publish>,
    bus: &Bus,
    transport: Transport,
    stop: impl Future<Output = ()>,
) {
    let Some((node, outbox)) = bus.take() else {
        return;
    };
    let serve = async {
        match transport {
            Transport::Redis(target) => {
                tokio::join!(
                    super::redis::receive_forever(&target, CHANNEL, "pub/sub", |payload| {
                        receive(&*to, &node, payload)
                    }),
                    redis_send(&target, outbox),
                );
            }
            Transport::Nats(options) => nats(&*to, &node, options, outbox).await,
        }
    };
    tokio::select! {
        _ = stop => {}
        _ = serve => {}
    }
}

async fn redis_send(target: &RedisTarget, mut outbox: mpsc::Receiver<String>) {
    let client = match target.client() {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "invalid redis_url; pub/sub between nodes disabled");
            return;
        }
    };
    let mut connection = None;
    while let Some(message) = outbox.recv().await {
        if connection.is_none() {
            match tokio::time::timeout(
                Duration::from_secs(5),
                client.get_multiplexed_async_connection(),
            )
            .await
            {
                Ok(Ok(c)) => connection = Some(c),
                Ok(Err(e)) => {
                    warn!(error = %e, "pub/sub: cannot connect to Redis; message dropped")
                }
                Err(_) => warn!("pub/sub: Redis connect timed out; message dropped"),
            }
        }
        let Some(c) = connection.as_mut() else {
            continue;
        };
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(CHANNEL).arg(message);
        let sent = publish.query_async::<i64>(c);
        match tokio::time::timeout(Duration::from_secs(5), sent).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                warn!(error = %e, "pub/sub: Redis PUBLISH failed; message dropped");
                connection = None;
            }
            Err(_) => {
                warn!("pub/sub: Redis PUBLISH timed out; message dropped");
                connection = None;
            }
        }
    }
}

async fn nats(
    to: &dyn Publish,
    node: &str,
    options: super::nats::Options,
    mut outbox: mpsc::Receiver<String>,
) {
    let servers = match super::nats::parse_servers(&options.servers) {
        Ok(servers) => servers,
        Err(e) => {
            error!(error = %e, "invalid nats_servers; pub/sub between nodes disabled");
            return;
        }
    };
    let mut connect = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None);
    if options.in_order {
        connect = connect.retain_servers_order();
    }
    let client = match connect.connect(servers).await {
        Ok(client) => client,
        Err(e) => {
            error!(error = %e, "cannot start the NATS client; pub/sub between nodes disabled");
            return;
        }
    };
    let mut messages = match client.subscribe(CHANNEL).await {
        Ok(messages) => messages,
        Err(e) => {
            error!(error = %e, "NATS subscribe refused; pub/sub between nodes disabled");
            return;
        }
    };
    info!(subject = CHANNEL, "pub/sub between nodes over NATS");
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(message) => receive(to, node, &message.payload),
                None => break,
            },
            out = outbox.recv() => match out {
                Some(out) => {
                    if let Err(e) = client.publish(CHANNEL, out.into()).await {
                        warn!(error = %e, "pub/sub: NATS publish failed; message dropped");
                    }
                }
                None => break,
            },
        }
    }
    warn!("NATS pub/sub ended");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::TransientKind;
    use crate::metrics::Metrics;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Seen {
        metrics: Metrics,
        broadcasts: AtomicUsize,
        transients: AtomicUsize,
        disconnects: AtomicUsize,
    }

    impl Publish for Seen {
        fn deliver(&self, _: &str, _: &str, _: Option<&str>) -> usize {
            self.broadcasts.fetch_add(1, Ordering::Relaxed);
            0
        }
        fn deliver_transient(&self, _: &Transient) -> usize {
            self.transients.fetch_add(1, Ordering::Relaxed);
            0
        }
        fn remote_disconnect(&self, _: &str, _: bool) -> usize {
            self.disconnects.fetch_add(1, Ordering::Relaxed);
            0
        }
        fn metrics(&self) -> &Metrics {
            &self.metrics
        }
    }

    #[test]
    fn the_bus_takes_only_other_nodes_transient_messages() {
        let seen = Seen::default();
        let whisper = Transient {
            stream: "room".into(),
            data: "{}".into(),
            exclude_socket: Some("s1".into()),
            kind: TransientKind::Message,
        };
        receive(&seen, "n1", whisper.to_json(&[("node", "n2")]).as_bytes());
        receive(&seen, "n1", whisper.to_json(&[("node", "n1")]).as_bytes());
        // A broadcast or a remote disconnect on the bus skips /_broadcast's
        // key: ignored.
        receive(&seen, "n1", br#"{"stream":"room","data":"x"}"#);
        receive(
            &seen,
            "n1",
            br#"{"command":"disconnect","payload":{"identifier":"u"}}"#,
        );
        assert_eq!(seen.transients.load(Ordering::Relaxed), 1);
        assert_eq!(seen.broadcasts.load(Ordering::Relaxed), 0);
        assert_eq!(seen.disconnects.load(Ordering::Relaxed), 0);
    }
}
