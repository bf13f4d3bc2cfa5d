//! Presence on the extended protocol: the `join`, `leave` and `presence`
//! commands of a subscription, the events its stream's subscribers get,
//! and the upkeep of the records (checked against anycable-go 1.6
//! node/node.go `Presence`, `PresenceJoin`, `PresenceLeave`,
//! `handlePresenceReply`, `broadcastPresenceEvent`).
//!
//! A subscription has presence when the application put its presence
//! stream in the subscription's istate under `$p` (AnyCable's
//! `PRESENCE_STREAM_STATE`). The records are the broker's
//! ([`crate::broker::presence`]); this module turns commands into broker
//! calls and broker answers into `presence` frames
//! (`{"type":"presence","identifier":..,"message":{"type":"join",..}}`)
//! for the stream's subscribers on this node.
//!
//! Upkeep: a session with records touches them every half `presence_ttl`
//! while open, and once more when it closes; the node's sweep (every half
//! `presence_ttl`) drops the records of sessions no longer touched (in
//! Redis, those of every node, so a dead node's presences expire) and
//! sends their leaves.

use crate::broadcast::{Transient, TransientKind};
use crate::broker::{Broker, PresenceEvent};
use crate::controller::AppPresence;
use crate::node::Node;
use crate::protocol::{self, PresenceArg};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tracing::{debug, warn};

/// The istate key naming a subscription's presence stream.
pub const PRESENCE_STREAM_STATE: &str = crate::fastlane::PRESENCE_STATE;

/// Sends `event` to the subscribers of `stream` on every node (the others
/// through the bus, `pubsub`; anycable-go 1.6 node.go
/// `broadcastPresenceEvent`).
pub fn announce(node: &Node, stream: &str, event: &PresenceEvent) {
    node.spread(Transient {
        stream: stream.to_owned(),
        data: event.to_json(),
        exclude_socket: None,
        kind: TransientKind::Presence,
    });
}

/// Why a presence command was not carried out (logged by the session).
pub type Refusal = String;

/// `join`: session `sid` enters `stream`'s presence set as `presence`; the
/// join goes to the stream's subscribers when the id is new there.
pub async fn join(
    node: &Node,
    broker: &Arc<dyn Broker>,
    sid: &str,
    stream: &str,
    presence: Option<PresenceArg>,
) -> Result<(), Refusal> {
    let presence = presence.ok_or("presence data is missing")?;
    if presence.id.is_empty() {
        return Err("presence id is empty".into());
    }
    match broker
        .presence_add(stream, sid, &presence.id, presence.info)
        .await
    {
        Ok(Some(event)) => announce(node, stream, &event),
        Ok(None) => {}
        Err(e) => return Err(e.to_string()),
    }
    Ok(())
}

/// `leave` (and unsubscribing): session `sid` leaves `stream`'s presence
/// set; the leave goes out when it was its id's last session.
pub async fn leave(node: &Node, broker: &Arc<dyn Broker>, sid: &str, stream: &str) {
    match broker.presence_remove(stream, sid).await {
        Ok(Some(event)) => announce(node, stream, &event),
        Ok(None) => {}
        Err(e) => warn!(sid, stream, error = %e, "presence leave failed"),
    }
}

/// The application's say (a command reply's `presence`) for session
/// `sid` on `stream`: a `join` with its id and info, or a `leave` (of the
/// session, whatever id it names, as anycable-go's `PresenceRemove`).
/// Returns whether the session joined. The info is JSON, or else taken as
/// a string (checked against anycable-go 1.6.16 protocol/protocol.go
/// `ParseCommandResponse`, node/node.go `handlePresenceReply`).
pub async fn apply(
    node: &Node,
    broker: &Arc<dyn Broker>,
    sid: &str,
    stream: &str,
    presence: AppPresence,
) -> Result<bool, Refusal> {
    match presence.event.as_str() {
        "join" => {
            let info = match presence.info.as_str() {
                "" => None,
                text => Some(
                    serde_json::from_str(text)
                        .unwrap_or_else(|_| serde_json::Value::String(text.to_owned())),
                ),
            };
            let arg = PresenceArg {
                id: presence.id,
                info,
            };
            join(node, broker, sid, stream, Some(arg)).await?;
            Ok(true)
        }
        "leave" => {
            leave(node, broker, sid, stream).await;
            Ok(false)
        }
        other => Err(format!("unknown presence event {other:?}")),
    }
}

/// `presence`: the frame answering it (an `error` message when the
/// broker is away).
pub async fn info(
    broker: &Arc<dyn Broker>,
    identifier: &str,
    stream: &str,
    with_records: bool,
) -> String {
    match broker.presence_info(stream, with_records).await {
        Ok(info) => protocol::presence_message(identifier, &info.to_json(with_records)),
        Err(e) => {
            warn!(stream, error = %e, "presence info failed");
            protocol::presence_message(identifier, r#"{"type":"error"}"#)
        }
    }
}

/// Half the TTL: how often records are touched and swept.
fn upkeep_interval(broker: &Arc<dyn Broker>) -> Duration {
    (broker.limits().presence_ttl / 2).max(Duration::from_millis(100))
}

/// A session's touching of its records; stops when dropped.
pub struct KeepAlive(tokio::task::JoinHandle<()>);

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Touches session `sid`'s records every half `presence_ttl` until the
/// returned [`KeepAlive`] is dropped (the session holds it while open,
/// once it joined something).
pub fn keep_alive(broker: Arc<dyn Broker>, sid: String) -> KeepAlive {
    KeepAlive(tokio::spawn(async move {
        let every = upkeep_interval(&broker);
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = broker.touch_presence(&sid).await {
                debug!(sid, error = %e, "presence touch failed");
            }
        }
    }))
}

/// Starts the node's sweep of expired presence records (none without a
/// broker); it ends with the node.
pub fn start_sweep(node: &Arc<Node>) {
    let Some(broker) = node.broker.clone() else {
        return;
    };
    let node: Weak<Node> = Arc::downgrade(node);
    tokio::spawn(async move {
        let every = upkeep_interval(&broker);
        loop {
            tokio::time::sleep(every).await;
            let Some(node) = node.upgrade() else {
                return;
            };
            match broker.expire_presence().await {
                Ok(leaves) => {
                    for (stream, event) in leaves {
                        announce(&node, &stream, &event);
                    }
                }
                Err(e) => debug!(error = %e, "presence sweep failed"),
            }
        }
    });
}
