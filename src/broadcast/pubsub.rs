//! The bus between nodes (anycable-go's `pubsub`): what one node says to
//! the others about the streams. Transient messages (whispers, presence
//! joins and leaves), which reach no broadcast transport since they start
//! on a node, not in the application; and the publications that entered
//! one node only (HTTP `/_broadcast`, the gem's in-process broadcasts:
//! [`Reach::ThisNode`](super::Reach)), passed on as that node delivered
//! them: a broadcast at the position its broker gave it, a remote
//! disconnect.
//!
//! Checked against anycable-go 1.6 node/node.go `Whisper`,
//! `broadcastPresenceEvent` and `HandleBroadcast` (a `StreamMessage`, with
//! `meta.transient` and `meta.broadcast_type = "presence"` for presence,
//! or a `RemoteCommandMessage`, handed to the broker, whose
//! `HandleBroadcast` positions a broadcast and gives it to the pub/sub,
//! pubsub/redis.go and pubsub/nats.go, for every node; a node delivers what
//! the pub/sub brings as is). The message here is the same JSON, on one
//! channel or subject, `__anycable_internal__` (anycable-go's
//! `redis_pubsub.channel` default), plus the sending node's id: a node
//! delivers its own messages at once and skips them when they come back.
//! (anycable-go publishes stream messages on a channel per stream; nodes of
//! the two servers do not share a bus.)
//!
//! Everything on the bus (a broadcast, a remote disconnect, a whisper, a
//! presence event) travels signed: `relayed` holds its JSON (anycable-go's
//! form, with `epoch` and `offset` for a positioned broadcast), `sig` the
//! HMAC-SHA256 of the node id and that JSON under a key derived from the
//! broadcast key ([`super::key::derive_bus_key`]). A node with a key takes
//! only what that key signed, so the bus is no way around `/_broadcast`'s
//! key (a forged whisper would reach clients as a broadcast does); a node
//! without one (its own `/_broadcast` takes anything) takes them unsigned,
//! and says so at start. A signed message carries its node's sequence
//! number (`seq`, in the signature), and a node takes each once: a replay
//! of a message it took, or one older than the last 64 of its node, is
//! refused and counted as a failed broadcast authentication, so whoever can
//! read and publish on the bus cannot send a captured message again. Nodes
//! send in order; a message overtaken by at most 63 later ones is still
//! taken.
//!
//! A message that cannot be sent (Redis or NATS away, the outbox full) is
//! dropped and counted in the log: the sending node's own subscribers got
//! it, the other nodes' miss it (as with anycable-go's pub/sub; a client on
//! the extended protocol gets it back from history, `broker=redis`).

use super::redis::RedisTarget;
use super::{Publication, Publish, Relayed, Transient};
use crate::client_log::client_log;
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

/// The channel (Redis) or subject (NATS) of the bus.
pub const CHANNEL: &str = "__anycable_internal__";

/// Messages waiting to be sent before new ones are dropped.
const OUTBOX: usize = 16 * 1024;

/// How many sending nodes a node remembers the sequence numbers of (the
/// least recently heard is forgotten first: a node restarts under a new id).
const SENDERS: usize = 1024;

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
    /// What signs (and checks) broadcasts and remote disconnects on the
    /// bus; none without a broadcast key.
    key: Option<String>,
    /// The last sequence number this node signed.
    seq: AtomicU64,
    outbox: Option<mpsc::Sender<String>>,
    pending: Mutex<Option<mpsc::Receiver<String>>>,
}

impl Bus {
    /// A bus: `enabled` when the node has other nodes to tell (a
    /// [`Transport`] that [`run`] will serve); else sending does nothing.
    /// `broadcast_key`: the key `/_broadcast` requires, from which the key
    /// that signs what is passed on is derived.
    pub fn new(enabled: bool, broadcast_key: Option<&str>) -> Bus {
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
            key: broadcast_key.map(super::key::derive_bus_key),
            seq: AtomicU64::new(0),
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
        if !self.is_enabled() {
            return;
        }
        self.put(
            self.signed(message.to_json(&[])),
            &message.stream,
            "a transient message",
        );
    }

    /// Passes a broadcast that entered this node only on to the others, at
    /// its position (this node delivered it already).
    pub fn relay(&self, message: &Relayed) {
        if !self.is_enabled() {
            return;
        }
        let mut meta = serde_json::Map::new();
        if let Some(sid) = &message.exclude_socket {
            meta.insert("exclude_socket".into(), sid.clone().into());
        }
        let mut m = serde_json::Map::new();
        m.insert("stream".into(), message.stream.clone().into());
        m.insert("data".into(), message.data.clone().into());
        if !meta.is_empty() {
            m.insert("meta".into(), serde_json::Value::Object(meta));
        }
        if let Some((epoch, offset)) = &message.position {
            m.insert("epoch".into(), epoch.clone().into());
            m.insert("offset".into(), (*offset).into());
        }
        let relayed = serde_json::Value::Object(m).to_string();
        self.put(self.signed(relayed), &message.stream, "a broadcast");
    }

    /// Passes a remote disconnect that entered this node only on to the
    /// others (this node closed its own sessions already).
    pub fn relay_disconnect(&self, identifiers: &str, reconnect: bool) {
        if !self.is_enabled() {
            return;
        }
        let relayed = serde_json::json!({
            "command": "disconnect",
            "payload": {"identifier": identifiers, "reconnect": reconnect},
        })
        .to_string();
        self.put(self.signed(relayed), identifiers, "a remote disconnect");
    }

    /// The bus message carrying `relayed`, signed with the next sequence
    /// number when there is a key.
    fn signed(&self, relayed: String) -> String {
        let mut m = serde_json::Map::new();
        m.insert("node".into(), self.node.clone().into());
        if let Some(key) = &self.key {
            let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
            m.insert("seq".into(), seq.into());
            m.insert(
                "sig".into(),
                hex::encode(sign(key, &self.node, seq, &relayed)).into(),
            );
        }
        m.insert("relayed".into(), relayed.into());
        serde_json::Value::Object(m).to_string()
    }

    fn put(&self, message: String, about: &str, what: &str) {
        let Some(outbox) = &self.outbox else {
            return;
        };
        if outbox.try_send(message).is_err() {
            warn!(about = %crate::client_log::compact(about), "pub/sub outbox full or closed; {what} reaches this node only");
        }
    }

    /// What [`run`] needs: this node's inbox and its outbox (once).
    fn take(&self) -> Option<(Inbox, mpsc::Receiver<String>)> {
        let rx = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        Some((Inbox::new(&self.node, self.key.clone()), rx))
    }
}

/// The HMAC-SHA256 of a relayed publication, the node that sent it and
/// its sequence number there.
fn mac(key: &str, node: &str, seq: u64, relayed: &str) -> Hmac<sha2::Sha256> {
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(node.as_bytes());
    mac.update(b"\n");
    mac.update(seq.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(relayed.as_bytes());
    mac
}

fn sign(key: &str, node: &str, seq: u64, relayed: &str) -> Vec<u8> {
    mac(key, node, seq, relayed)
        .finalize()
        .into_bytes()
        .to_vec()
}

#[derive(serde::Deserialize)]
struct Envelope {
    node: Option<String>,
    seq: Option<u64>,
    relayed: Option<String>,
    sig: Option<String>,
}

/// The sequence numbers taken from one sending node: the highest, and
/// which of the 64 below it (bit `i`: `highest - i`), as IPsec's
/// anti-replay window keeps them.
struct Window {
    highest: u64,
    taken: u64,
    /// When this node last heard from the sender (a tick of [`Inbox`]).
    heard: u64,
}

impl Window {
    /// Takes `seq` unless it was taken or is older than the window.
    fn take(&mut self, seq: u64) -> bool {
        if seq > self.highest {
            let shift = seq - self.highest;
            self.taken = if shift >= 64 { 0 } else { self.taken << shift };
            self.taken |= 1;
            self.highest = seq;
            return true;
        }
        let behind = self.highest - seq;
        if behind >= 64 || self.taken & (1 << behind) != 0 {
            return false;
        }
        self.taken |= 1 << behind;
        true
    }
}

/// A node's receiving end of the bus: its id (its own messages come back),
/// the key messages must be signed with, and the sequence numbers taken
/// from each other node.
struct Inbox {
    node: String,
    key: Option<String>,
    senders: Mutex<(u64, HashMap<String, Window>)>,
}

impl Inbox {
    fn new(node: &str, key: Option<String>) -> Inbox {
        Inbox {
            node: node.to_owned(),
            key,
            senders: Mutex::new((0, HashMap::new())),
        }
    }

    /// Whether `seq` from `from` is new here (and now taken).
    fn first_time(&self, from: &str, seq: u64) -> bool {
        let mut guard = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        let (tick, senders) = &mut *guard;
        *tick += 1;
        if !senders.contains_key(from) && senders.len() >= SENDERS {
            let forgotten = senders
                .iter()
                .min_by_key(|(_, w)| w.heard)
                .map(|(node, _)| node.clone());
            if let Some(node) = forgotten {
                senders.remove(&node);
            }
        }
        let window = senders.entry(from.to_owned()).or_insert(Window {
            highest: 0,
            taken: 0,
            heard: 0,
        });
        window.heard = *tick;
        window.take(seq)
    }
}

/// A relayed broadcast's position (anycable-go's `StreamMessage` fields).
#[derive(serde::Deserialize)]
struct RelayedPosition {
    epoch: Option<String>,
    offset: Option<u64>,
}

/// A message from the bus: delivered here unless this node sent it.
/// Everything in a `relayed` envelope, signed by a holder of the broadcast
/// key when this node has one: the bus is no way around `/_broadcast`'s
/// key. Bare transient messages (whispers, presence events, as nodes sent
/// them before they were signed) only on a node without a key.
fn receive(to: &dyn Publish, inbox: &Inbox, payload: &[u8]) {
    let envelope = serde_json::from_slice::<Envelope>(payload).ok();
    let from = envelope.as_ref().and_then(|e| e.node.as_deref());
    if from == Some(inbox.node.as_str()) {
        return;
    }
    if let Some(Envelope {
        relayed: Some(relayed),
        sig,
        seq,
        ..
    }) = &envelope
    {
        let from = from.unwrap_or_default();
        if !signed_once(to, inbox, from, *seq, relayed, sig.as_deref()) {
            return;
        }
        return receive_relayed(to, relayed);
    }
    if inbox.key.is_some() {
        to.metrics().broadcast_auth_failures.inc();
        client_log!(
            WARN,
            "an unsigned message on the pub/sub while this node has a broadcast key; ignored"
        );
        return;
    }
    match super::decode(payload) {
        Ok(publications) => {
            for publication in publications {
                match publication {
                    Publication::Transient(message) => {
                        to.deliver_transient(&message);
                    }
                    _ => debug!(
                        "a message on the bus that is neither transient nor relayed; ignored"
                    ),
                }
            }
        }
        Err(e) => debug!(error = %e, "undecodable message on the bus; ignored"),
    }
}

/// Whether a relayed message may be delivered: on a node with a key, signed
/// with it (with its sender's id and sequence number), and not taken
/// before; on a node without one, always. A refusal is counted and logged.
fn signed_once(
    to: &dyn Publish,
    inbox: &Inbox,
    from: &str,
    seq: Option<u64>,
    relayed: &str,
    sig: Option<&str>,
) -> bool {
    let Some(key) = inbox.key.as_deref() else {
        return true;
    };
    let valid = seq
        .zip(sig.and_then(|s| hex::decode(s).ok()))
        .is_some_and(|(seq, given)| mac(key, from, seq, relayed).verify_slice(&given).is_ok());
    if !valid {
        to.metrics().broadcast_auth_failures.inc();
        client_log!(
            WARN,
            "a publication on the pub/sub not signed with this node's broadcast key; ignored"
        );
        return false;
    }
    if !inbox.first_time(from, seq.unwrap_or_default()) {
        to.metrics().broadcast_auth_failures.inc();
        client_log!(
            WARN,
            "a signed publication on the pub/sub that this node took before (a replay), or older than its node's last 64; ignored"
        );
        return false;
    }
    true
}

fn receive_relayed(to: &dyn Publish, relayed: &str) {
    let publication = match super::decode(relayed.as_bytes()) {
        Ok(mut publications) if publications.len() == 1 => publications.remove(0),
        _ => {
            debug!("an unreadable relayed publication on the bus; ignored");
            return;
        }
    };
    match publication {
        Publication::Broadcast {
            stream,
            data,
            exclude_socket,
        } => {
            let position = serde_json::from_str::<RelayedPosition>(relayed)
                .ok()
                .and_then(|p| p.epoch.zip(p.offset));
            let message = Relayed {
                stream,
                data,
                exclude_socket,
                position,
            };
            // Counted where it arrives too, as anycable-go counts what
            // its pub/sub brings: every node's broadcast_msg_total is the
            // cluster's broadcasts.
            to.metrics().broadcasts.inc();
            let queued = to.deliver_relayed(&message);
            debug!(stream = %crate::client_log::compact(message.stream.as_str()), queued, "relayed broadcast");
        }
        Publication::Disconnect {
            identifiers,
            reconnect,
        } => {
            let sessions = to.remote_disconnect(&identifiers, reconnect);
            debug!(sessions, "relayed remote disconnect");
        }
        Publication::Transient(message) => {
            to.deliver_transient(&message);
        }
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
    let Some((inbox, outbox)) = bus.take() else {
        return;
    };
    let serve = async {
        match transport {
            Transport::Redis(target) => {
                tokio::join!(
                    super::redis::receive_forever(&target, CHANNEL, "pub/sub", |payload| {
                        receive(&*to, &inbox, payload)
                    }),
                    redis_send(&target, outbox),
                );
            }
            Transport::Nats(options) => nats(&*to, &inbox, options, outbox).await,
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
    inbox: &Inbox,
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
                Some(message) => receive(to, inbox, &message.payload),
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
        relayed: Mutex<Vec<Relayed>>,
    }

    impl Publish for Seen {
        fn deliver(&self, _: &str, _: &str, _: Option<&str>) -> usize {
            self.broadcasts.fetch_add(1, Ordering::Relaxed);
            0
        }
        fn deliver_relayed(&self, message: &Relayed) -> usize {
            self.relayed.lock().unwrap().push(message.clone());
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

    /// What `bus` put in its outbox.
    fn sent(bus: &Bus) -> Vec<String> {
        let (_, mut outbox) = bus.take().unwrap();
        std::iter::from_fn(|| outbox.try_recv().ok()).collect()
    }

    #[test]
    fn the_bus_takes_other_nodes_transient_messages_and_signed_relays_only() {
        let seen = Seen::default();
        let whisper = Transient {
            stream: "room".into(),
            data: "{}".into(),
            exclude_socket: Some("s1".into()),
            kind: TransientKind::Message,
        };
        let key = Some(super::super::key::derive_bus_key("k"));
        let inbox = Inbox::new("n1", key.clone());
        let open = Inbox::new("n1", None);
        receive(&seen, &inbox, whisper.to_json(&[("node", "n2")]).as_bytes());
        receive(&seen, &inbox, whisper.to_json(&[("node", "n1")]).as_bytes());
        // A whisper, a broadcast or a remote disconnect on the bus not
        // relayed and signed by a node that holds the broadcast key skips
        // /_broadcast's key: ignored (the whisper from n2 counted, n1's
        // own skipped).
        assert_eq!(seen.transients.load(Ordering::Relaxed), 0);
        assert_eq!(seen.metrics.broadcast_auth_failures.get(), 1);
        receive(&seen, &inbox, br#"{"stream":"room","data":"x"}"#);
        receive(
            &seen,
            &inbox,
            br#"{"command":"disconnect","payload":{"identifier":"u"}}"#,
        );
        let forger = Bus::new(true, Some("not the key"));
        let unsigned = Bus::new(true, None);
        let sender = Bus::new(true, Some("k"));
        let message = Relayed {
            stream: "room".into(),
            data: r#"{"n":1}"#.into(),
            exclude_socket: Some("s9".into()),
            position: Some(("e1".into(), 7)),
        };
        for bus in [&forger, &unsigned, &sender] {
            bus.relay(&message);
            bus.relay_disconnect("u", false);
            bus.send(&whisper);
        }
        let (forged, unsigned, good) = (sent(&forger), sent(&unsigned), sent(&sender));
        for payload in forged.iter().chain(&unsigned) {
            receive(&seen, &inbox, payload.as_bytes());
        }
        assert!(seen.relayed.lock().unwrap().is_empty());
        assert_eq!(seen.transients.load(Ordering::Relaxed), 0);
        assert_eq!(seen.metrics.broadcast_auth_failures.get(), 1 + 2 + 6);
        // A signature is for its node id: another id in the envelope fails.
        let moved = good[0].replace(&sender.node, &forger.node);
        receive(&seen, &inbox, moved.as_bytes());
        assert!(seen.relayed.lock().unwrap().is_empty());
        // Its own relay coming back is skipped; another node's is taken, at
        // its position.
        receive(
            &seen,
            &Inbox::new(&sender.node, key.clone()),
            good[0].as_bytes(),
        );
        for payload in &good {
            receive(&seen, &inbox, payload.as_bytes());
        }
        assert_eq!(*seen.relayed.lock().unwrap(), vec![message.clone()]);
        assert_eq!(seen.transients.load(Ordering::Relaxed), 1);
        assert_eq!(seen.broadcasts.load(Ordering::Relaxed), 0);
        assert_eq!(seen.disconnects.load(Ordering::Relaxed), 1);
        // A node without a key (its /_broadcast takes anything) takes an
        // unsigned relay, an unsigned whisper and a bare one.
        receive(&seen, &open, unsigned[0].as_bytes());
        assert_eq!(seen.relayed.lock().unwrap().len(), 2);
        receive(&seen, &open, unsigned[2].as_bytes());
        receive(&seen, &open, whisper.to_json(&[("node", "n2")]).as_bytes());
        assert_eq!(seen.transients.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_signed_message_is_taken_once_even_out_of_order() {
        let seen = Seen::default();
        let key = Some(super::super::key::derive_bus_key("k"));
        let inbox = Inbox::new("n1", key);
        let sender = Bus::new(true, Some("k"));
        let message = |n: u64| Relayed {
            stream: "room".into(),
            data: format!(r#"{{"n":{n}}}"#),
            exclude_socket: None,
            position: None,
        };
        for n in 1..=100 {
            sender.relay(&message(n));
        }
        let sent = sent(&sender);
        let taken = |order: &[usize]| {
            for &i in order {
                receive(&seen, &inbox, sent[i].as_bytes());
            }
            let relayed = seen.relayed.lock().unwrap();
            relayed.iter().map(|m| m.data.clone()).collect::<Vec<_>>()
        };
        // Overtaken by later ones (seq 3 after 4 and 5): taken; again: not.
        assert_eq!(
            taken(&[0, 1, 3, 4, 2, 2, 4, 0]),
            ["1", "2", "4", "5", "3"].map(|n| format!(r#"{{"n":{n}}}"#))
        );
        assert_eq!(seen.metrics.broadcast_auth_failures.get(), 3);
        // 64 behind the highest (seq 6 after 70) is too old to tell: refused.
        taken(&[69, 5]);
        assert_eq!(seen.relayed.lock().unwrap().len(), 6);
        assert_eq!(seen.metrics.broadcast_auth_failures.get(), 4);
        // 63 behind (seq 7 after 70): taken once.
        taken(&[6, 6]);
        assert_eq!(seen.relayed.lock().unwrap().len(), 7);
        // The sequence number is signed: changed, the signature fails.
        let moved = sent[99].replace(r#""seq":100"#, r#""seq":101"#);
        assert_ne!(moved, sent[99]);
        taken(&[]);
        receive(&seen, &inbox, moved.as_bytes());
        assert_eq!(seen.relayed.lock().unwrap().len(), 7);
        assert_eq!(seen.metrics.broadcast_auth_failures.get(), 6);
        // Without a sequence number: refused on a node with a key.
        let bare = sent[99].replace(r#""seq":100,"#, "");
        assert_ne!(bare, sent[99]);
        receive(&seen, &inbox, bare.as_bytes());
        assert_eq!(seen.metrics.broadcast_auth_failures.get(), 7);
        receive(&seen, &inbox, sent[99].as_bytes());
        assert_eq!(seen.relayed.lock().unwrap().len(), 8);
    }

    #[test]
    fn the_least_recently_heard_sender_is_forgotten_first() {
        let inbox = Inbox::new("n1", None);
        for node in 0..SENDERS {
            assert!(inbox.first_time(&format!("n{node}"), 1));
        }
        assert!(!inbox.first_time("n0", 1), "n0 is heard again");
        assert!(inbox.first_time("new", 1), "n1, the least recent, goes");
        let senders = &inbox.senders.lock().unwrap().1;
        assert_eq!(senders.len(), SENDERS);
        assert!(senders.contains_key("n0") && !senders.contains_key("n1"));
    }
}
