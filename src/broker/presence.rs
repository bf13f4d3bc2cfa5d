//! Presence records, kept by the broker next to stream positions (checked
//! against anycable-go 1.6 broker/broker.go, broker/memory.go and
//! common/common.go).
//!
//! A stream's presence set maps a presence id (`pid`, given by the client
//! or the application) to its `info` (any JSON). Several sessions (tabs)
//! may join with one id: the id joins with the first of them and leaves
//! with the last, so subscribers see one `join` and one `leave` per id.
//! A session joins a stream under one id only (another id is refused).
//!
//! A session's records live until it leaves, or until `presence_ttl` after
//! it was last touched ([`Broker::touch_presence`]): a live session is
//! touched while it is open, a closed one once more, so a client that
//! reconnects within the TTL causes no leave/join burst, and the sessions
//! of a node that died expire on the other nodes' sweeps
//! ([`Broker::expire_presence`], whose leaves they broadcast).
//!
//! [`Broker::touch_presence`]: super::Broker::touch_presence
//! [`Broker::expire_presence`]: super::Broker::expire_presence

use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// A change of a stream's presence set, as subscribers get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceEvent {
    /// The first session with this id joined.
    Join { id: String, info: Option<Value> },
    /// The last session with this id left (or expired).
    Leave { id: String },
}

impl PresenceEvent {
    /// The event's JSON (`{"type":"join","id":..,"info":..}` or
    /// `{"type":"leave","id":..}`), the `message` of a `presence` frame.
    pub fn to_json(&self) -> String {
        let value = match self {
            PresenceEvent::Join { id, info } => {
                let mut m = serde_json::Map::new();
                m.insert("type".into(), "join".into());
                m.insert("id".into(), id.clone().into());
                if let Some(info) = info.as_ref().filter(|i| !i.is_null()) {
                    m.insert("info".into(), info.clone());
                }
                Value::Object(m)
            }
            PresenceEvent::Leave { id } => serde_json::json!({"type": "leave", "id": id}),
        };
        value.to_string()
    }
}

/// A stream's presence set: how many ids and, when asked, their records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PresenceInfo {
    pub total: usize,
    /// `(id, info)`, sorted by id; empty when records were not asked for.
    pub records: Vec<(String, Option<Value>)>,
}

impl PresenceInfo {
    /// `{"type":"info","total":N,"records":[{"id":..,"info":..}]}`, the
    /// `message` of the answer to a `presence` command.
    pub fn to_json(&self, with_records: bool) -> String {
        let mut m = serde_json::Map::new();
        m.insert("type".into(), "info".into());
        m.insert("total".into(), self.total.into());
        if with_records {
            let records = self
                .records
                .iter()
                .map(|(id, info)| {
                    let mut r = serde_json::Map::new();
                    r.insert("id".into(), id.clone().into());
                    if let Some(info) = info.as_ref().filter(|i| !i.is_null()) {
                        r.insert("info".into(), info.clone());
                    }
                    Value::Object(r)
                })
                .collect();
            m.insert("records".into(), Value::Array(records));
        }
        Value::Object(m).to_string()
    }
}

/// Why a join was not recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceError {
    /// This session already joined the stream under another id.
    IdMismatch,
    /// The store did not answer.
    Unavailable(String),
}

impl std::fmt::Display for PresenceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PresenceError::IdMismatch => write!(f, "presence ID mismatch"),
            PresenceError::Unavailable(e) => write!(f, "presence store unavailable: {e}"),
        }
    }
}

impl From<super::Unavailable> for PresenceError {
    fn from(e: super::Unavailable) -> Self {
        PresenceError::Unavailable(e.0)
    }
}

/// An id's record in one stream: its sessions and its info.
struct Record {
    sessions: HashSet<String>,
    info: Option<Value>,
}

/// A session's joins: stream → id, and when they expire.
struct SessionJoins {
    streams: HashMap<String, String>,
    deadline: Instant,
}

/// The presence sets of `broker=memory`.
#[derive(Default)]
pub(crate) struct Table {
    streams: HashMap<String, HashMap<String, Record>>,
    sessions: HashMap<String, SessionJoins>,
}

impl Table {
    pub(crate) fn add(
        &mut self,
        stream: &str,
        sid: &str,
        pid: &str,
        info: Option<Value>,
        ttl: Duration,
    ) -> Result<Option<PresenceEvent>, PresenceError> {
        let joins = self
            .sessions
            .entry(sid.to_owned())
            .or_insert_with(|| SessionJoins {
                streams: HashMap::new(),
                deadline: Instant::now() + ttl,
            });
        if joins.streams.get(stream).is_some_and(|old| old != pid) {
            return Err(PresenceError::IdMismatch);
        }
        joins.streams.insert(stream.to_owned(), pid.to_owned());
        joins.deadline = Instant::now() + ttl;
        let records = self.streams.entry(stream.to_owned()).or_default();
        let new = !records.contains_key(pid);
        let record = records.entry(pid.to_owned()).or_insert_with(|| Record {
            sessions: HashSet::new(),
            info: None,
        });
        record.sessions.insert(sid.to_owned());
        record.info = info.clone();
        Ok(new.then(|| PresenceEvent::Join {
            id: pid.to_owned(),
            info,
        }))
    }

    pub(crate) fn remove(&mut self, stream: &str, sid: &str) -> Option<PresenceEvent> {
        let joins = self.sessions.get_mut(sid)?;
        let pid = joins.streams.remove(stream)?;
        if joins.streams.is_empty() {
            self.sessions.remove(sid);
        }
        self.drop_session(stream, sid, pid)
    }

    /// Takes `sid` out of `pid`'s record in `stream`: the leave when it
    /// was the id's last session.
    fn drop_session(&mut self, stream: &str, sid: &str, pid: String) -> Option<PresenceEvent> {
        let records = self.streams.get_mut(stream)?;
        let record = records.get_mut(&pid)?;
        record.sessions.remove(sid);
        if !record.sessions.is_empty() {
            return None;
        }
        records.remove(&pid);
        if records.is_empty() {
            self.streams.remove(stream);
        }
        Some(PresenceEvent::Leave { id: pid })
    }

    pub(crate) fn info(&self, stream: &str, with_records: bool) -> PresenceInfo {
        let Some(records) = self.streams.get(stream) else {
            return PresenceInfo::default();
        };
        let mut list: Vec<_> = match with_records {
            true => records
                .iter()
                .map(|(id, r)| (id.clone(), r.info.clone()))
                .collect(),
            false => Vec::new(),
        };
        list.sort_by(|a, b| a.0.cmp(&b.0));
        PresenceInfo {
            total: records.len(),
            records: list,
        }
    }

    pub(crate) fn touch(&mut self, sid: &str, ttl: Duration) {
        if let Some(joins) = self.sessions.get_mut(sid) {
            joins.deadline = Instant::now() + ttl;
        }
    }

    pub(crate) fn expire(&mut self) -> Vec<(String, PresenceEvent)> {
        let now = Instant::now();
        let expired: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, j)| j.deadline <= now)
            .map(|(sid, _)| sid.clone())
            .collect();
        let mut leaves = Vec::new();
        for sid in expired {
            let Some(joins) = self.sessions.remove(&sid) else {
                continue;
            };
            for (stream, pid) in joins.streams {
                if let Some(leave) = self.drop_session(&stream, &sid, pid) {
                    leaves.push((stream, leave));
                }
            }
        }
        leaves
    }
}

/// Info as stored in Redis: its JSON text, or empty for none.
pub(crate) fn info_text(info: &Option<Value>) -> String {
    match info {
        Some(v) if !v.is_null() => v.to_string(),
        _ => String::new(),
    }
}

/// Info read back from Redis.
pub(crate) fn info_value(text: &str) -> Option<Value> {
    match text {
        "" => None,
        t => serde_json::from_str(t).ok(),
    }
}
