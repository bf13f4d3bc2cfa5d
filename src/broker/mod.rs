//! The broker: stream positions, stream history and stored sessions, the
//! state that outlives one socket (anycable-go's `broker`, checked against
//! anycable-go 1.6 broker/broker.go and broker/memory.go).
//!
//! Every broadcast on a stream gets a [`Position`]: an `epoch` naming one
//! history of the stream (a new one when that history is lost) and an
//! `offset` counting from 1 in it. The last `history_limit` messages of a
//! stream, none older than `history_ttl`, can be read again from a position
//! ([`Broker::history_from`]) or from a time ([`Broker::history_since`]).
//! A closed session's state is kept for `sessions_ttl` under its sid so a
//! client coming back with it is restored without asking the application.
//!
//! [`memory::Memory`] keeps all of it in this process (one node; lost on a
//! restart); [`redis::Redis`] keeps it in Redis (a cluster shares it; it
//! survives restarts). Both pass the same suite (tests/stream_broker.rs).
//!
//! Positions are assigned once per publication for the whole cluster. A
//! transport that hands the same publication to every node (Redis pub/sub,
//! redisx, NATS) gives it a [publication key](crate::broadcast::Publish::publish_payload_from)
//! that every node derives the same way; the broker assigns a keyed
//! publication's position once and answers every later registration under
//! that key with the same position. Unkeyed publications (HTTP, the gem's
//! in-process broadcasts) reach one node only and are positioned there.

pub mod memory;
pub mod presence;
pub mod redis;

use futures_util::future::BoxFuture;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use presence::{PresenceError, PresenceEvent, PresenceInfo};

pub use crate::broadcast::KEY_TTL;

/// Where a message sits in its stream's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub epoch: String,
    pub offset: u64,
}

/// What [`Broker::publish_many`] positions: `data` on `stream`, under a
/// publication key or not.
#[derive(Debug, Clone)]
pub struct Publication {
    pub stream: String,
    pub data: String,
    pub key: Option<String>,
}

/// One message read back from a stream's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub epoch: String,
    pub offset: u64,
    pub data: String,
    /// When it was published (Unix seconds).
    pub at: u64,
}

/// The limits of what is kept (anycable-go's names and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Messages kept per stream (`history_limit`, 100).
    pub history_limit: usize,
    /// How long a message is kept (`history_ttl`, 300 s).
    pub history_ttl: Duration,
    /// How long a closed session is kept (`sessions_ttl`, 300 s).
    pub sessions_ttl: Duration,
    /// How long a session's presence records outlive its last touch
    /// (`presence_ttl`, 15 s).
    pub presence_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            history_limit: 100,
            history_ttl: Duration::from_secs(300),
            sessions_ttl: Duration::from_secs(300),
            presence_ttl: Duration::from_secs(15),
        }
    }
}

/// Why history could not be given: the client is told `reject_history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryError {
    /// The stream has no history here (never published, or expired).
    UnknownStream,
    /// The epoch is not the stream's current one (its history was lost).
    UnknownEpoch { current: String },
    /// The offset is past the stream's last one.
    UnknownOffset { last: u64 },
    /// Messages after the offset were evicted (`history_limit`, `history_ttl`).
    Evicted { lowest: u64 },
    /// The store did not answer (Redis down).
    Unavailable(String),
}

impl std::fmt::Display for HistoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HistoryError::UnknownStream => write!(f, "no history for this stream"),
            HistoryError::UnknownEpoch { current } => {
                write!(f, "unknown epoch (current: {current})")
            }
            HistoryError::UnknownOffset { last } => write!(f, "offset past the last one ({last})"),
            HistoryError::Evicted { lowest } => {
                write!(f, "requested messages evicted (lowest kept: {lowest})")
            }
            HistoryError::Unavailable(e) => write!(f, "history store unavailable: {e}"),
        }
    }
}

/// The store did not answer (Redis down, timed out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "broker unavailable: {}", self.0)
    }
}

impl From<Unavailable> for HistoryError {
    fn from(e: Unavailable) -> Self {
        HistoryError::Unavailable(e.0)
    }
}

/// The broker contract, one for every store. Methods never block a
/// thread; a store that is away answers [`Unavailable`] (in bounded time),
/// and the caller carries on without positions, history or restore.
pub trait Broker: Send + Sync {
    /// What it is, for the start-up log.
    fn describe(&self) -> String;

    /// Assigns the next position of `stream` to `data` and keeps it in the
    /// history. With a `key`, a publication registered before under the
    /// same key gets its position again (and is not stored twice).
    fn publish<'a>(
        &'a self,
        stream: &'a str,
        data: &'a str,
        key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Position, Unavailable>>;

    /// [`Broker::publish`] of several publications, in order: one round
    /// trip for all of them where the store allows (Redis pipelines them).
    fn publish_many<'a>(
        &'a self,
        publications: &'a [Publication],
    ) -> BoxFuture<'a, Vec<Result<Position, Unavailable>>> {
        Box::pin(async move {
            let mut positions = Vec::with_capacity(publications.len());
            for p in publications {
                positions.push(self.publish(&p.stream, &p.data, p.key.as_deref()).await);
            }
            positions
        })
    }

    /// [`Broker::publish`] without waiting, for a store in this process:
    /// `None` when this store has to wait (Redis). Lets a node deliver
    /// such broadcasts at once, in the caller's order, as without a broker.
    fn publish_now(&self, stream: &str, data: &str, key: Option<&str>) -> Option<Position> {
        let _ = (stream, data, key);
        None
    }

    /// The messages after `offset` in `epoch`, in order. An empty list when
    /// nothing came after it.
    fn history_from<'a>(
        &'a self,
        stream: &'a str,
        epoch: &'a str,
        offset: u64,
    ) -> BoxFuture<'a, Result<Vec<Entry>, HistoryError>>;

    /// The messages published at `since` (Unix seconds) or later, in order.
    fn history_since<'a>(
        &'a self,
        stream: &'a str,
        since: u64,
    ) -> BoxFuture<'a, Result<Vec<Entry>, HistoryError>>;

    /// Keeps a session's state under `sid` for `sessions_ttl`.
    fn store_session<'a>(
        &'a self,
        sid: &'a str,
        state: &'a str,
    ) -> BoxFuture<'a, Result<(), Unavailable>>;

    /// The state stored under `sid`, if it has not expired.
    fn session<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<Option<String>, Unavailable>>;

    /// Deletes the state stored under `sid` if it is still `state` (read
    /// before with [`Broker::session`]), in one step: true for the one
    /// caller that took it, so a stored session is restored once.
    fn take_session<'a>(
        &'a self,
        sid: &'a str,
        state: &'a str,
    ) -> BoxFuture<'a, Result<bool, Unavailable>>;

    /// Whether stored sessions outlive this process (Redis), so another
    /// process may restore them; the memory broker's go with it.
    fn sessions_outlive_process(&self) -> bool;

    /// The limits it keeps to.
    fn limits(&self) -> Limits;

    /// Records that session `sid` is in `stream`'s presence set as `pid`:
    /// the `join` to broadcast when `pid` is new there (else `None`; its
    /// info is updated). The session's records expire `presence_ttl`
    /// after this unless touched.
    fn presence_add<'a>(
        &'a self,
        stream: &'a str,
        sid: &'a str,
        pid: &'a str,
        info: Option<serde_json::Value>,
    ) -> BoxFuture<'a, Result<Option<PresenceEvent>, PresenceError>>;

    /// Takes session `sid` out of `stream`'s presence set: the `leave` to
    /// broadcast when it was its id's last session there.
    fn presence_remove<'a>(
        &'a self,
        stream: &'a str,
        sid: &'a str,
    ) -> BoxFuture<'a, Result<Option<PresenceEvent>, Unavailable>>;

    /// `stream`'s presence set: the number of ids, and their records when
    /// `with_records`.
    fn presence_info<'a>(
        &'a self,
        stream: &'a str,
        with_records: bool,
    ) -> BoxFuture<'a, Result<PresenceInfo, Unavailable>>;

    /// Keeps session `sid`'s presence records another `presence_ttl`.
    fn touch_presence<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<(), Unavailable>>;

    /// Drops the records of sessions not touched for `presence_ttl` (in
    /// Redis: of every node's sessions): the leaves to broadcast, with
    /// their streams.
    fn expire_presence(&self) -> BoxFuture<'_, Result<Vec<(String, PresenceEvent)>, Unavailable>>;
}

/// Unix seconds now.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A new epoch: 8 alphanumerics from the OS's random source.
pub(crate) fn new_epoch() -> String {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % 62] as char)
        .collect()
}

/// What [`Broker::history_from`] answers, from a stream's current epoch
/// and last offset and the entries it still has after `offset` (in order,
/// expired ones already dropped). One rule for every store.
pub(crate) fn entries_after(
    current_epoch: &str,
    last: u64,
    epoch: &str,
    offset: u64,
    kept: Vec<Entry>,
) -> Result<Vec<Entry>, HistoryError> {
    if current_epoch != epoch {
        return Err(HistoryError::UnknownEpoch {
            current: current_epoch.to_owned(),
        });
    }
    if offset > last {
        return Err(HistoryError::UnknownOffset { last });
    }
    let after: Vec<Entry> = kept.into_iter().filter(|e| e.offset > offset).collect();
    let lowest = after.first().map_or(last + 1, |e| e.offset);
    if lowest != offset + 1 {
        return Err(HistoryError::Evicted { lowest });
    }
    Ok(after)
}
