//! `broker=memory`: positions, history and sessions in this process. For
//! one node: another node (or this one after a restart) has other epochs,
//! so a client coming back there is told `reject_history` and its session
//! is not found (it connects afresh).

use super::presence::Table;
use super::{
    Broker, Entry, HistoryError, KEY_TTL, Limits, Position, PresenceError, PresenceEvent,
    PresenceInfo, Unavailable,
};
use futures_util::future::{BoxFuture, ready};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A stream's history here.
struct Stream {
    epoch: String,
    last: u64,
    entries: VecDeque<Entry>,
    /// When it was last published to: an idle stream is forgotten after
    /// ten times `history_ttl` (as anycable-go does), its offset with it.
    touched: Instant,
}

#[derive(Default)]
struct State {
    streams: HashMap<String, Stream>,
    sessions: HashMap<String, (String, Instant)>,
    keys: HashMap<String, (Position, Instant)>,
    swept: Option<Instant>,
    presence: Table,
}

pub struct Memory {
    limits: Limits,
    state: Mutex<State>,
}

/// How often expired sessions, keys and idle streams are swept away.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Memory {
    pub fn new(limits: Limits) -> Self {
        Memory {
            limits,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish_now(&self, stream: &str, data: &str, key: Option<&str>) -> Position {
        let now = Instant::now();
        let mut state = self.state();
        self.sweep(&mut state, now);
        if let Some(key) = key
            && let Some((position, _)) = state.keys.get(key)
        {
            return position.clone();
        }
        let stream = state
            .streams
            .entry(stream.to_owned())
            .or_insert_with(|| Stream {
                epoch: super::new_epoch(),
                last: 0,
                entries: VecDeque::new(),
                touched: now,
            });
        stream.last += 1;
        stream.touched = now;
        let position = Position {
            epoch: stream.epoch.clone(),
            offset: stream.last,
        };
        stream.entries.push_back(Entry {
            epoch: stream.epoch.clone(),
            offset: stream.last,
            data: data.to_owned(),
            at: super::now(),
        });
        while stream.entries.len() > self.limits.history_limit {
            stream.entries.pop_front();
        }
        if let Some(key) = key {
            state.keys.insert(key.to_owned(), (position.clone(), now));
        }
        position
    }

    /// Drops what has expired, at most once per [`SWEEP_EVERY`].
    fn sweep(&self, state: &mut State, now: Instant) {
        if state
            .swept
            .is_some_and(|t| now.duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        state.swept = Some(now);
        let idle = self.limits.history_ttl * 10;
        let oldest = super::now().saturating_sub(self.limits.history_ttl.as_secs());
        state.streams.retain(|_, s| {
            // Expired messages go now, not with their stream: a stream
            // keeps its offset (and epoch) ten times longer than its history.
            while s.entries.front().is_some_and(|e| e.at < oldest) {
                s.entries.pop_front();
            }
            now.duration_since(s.touched) < idle
        });
        state.sessions.retain(|_, (_, expires)| *expires > now);
        state
            .keys
            .retain(|_, (_, at)| now.duration_since(*at) < KEY_TTL);
    }

    /// The entries of `stream` not yet expired.
    fn kept(&self, stream: &Stream) -> Vec<Entry> {
        let oldest = super::now().saturating_sub(self.limits.history_ttl.as_secs());
        stream
            .entries
            .iter()
            .filter(|e| e.at >= oldest)
            .cloned()
            .collect()
    }

    fn history_from_now(
        &self,
        stream: &str,
        epoch: &str,
        offset: u64,
    ) -> Result<Vec<Entry>, HistoryError> {
        let state = self.state();
        let Some(s) = state.streams.get(stream) else {
            return Err(HistoryError::UnknownStream);
        };
        super::entries_after(&s.epoch, s.last, epoch, offset, self.kept(s))
    }

    fn history_since_now(&self, stream: &str, since: u64) -> Vec<Entry> {
        let state = self.state();
        state.streams.get(stream).map_or_else(Vec::new, |s| {
            let mut kept = self.kept(s);
            kept.retain(|e| e.at >= since);
            kept
        })
    }
}

impl Broker for Memory {
    fn describe(&self) -> String {
        format!(
            "memory broker (history limit: {}, history ttl: {}s, sessions ttl: {}s, presence ttl: {}s)",
            self.limits.history_limit,
            self.limits.history_ttl.as_secs(),
            self.limits.sessions_ttl.as_secs(),
            self.limits.presence_ttl.as_secs()
        )
    }

    fn publish<'a>(
        &'a self,
        stream: &'a str,
        data: &'a str,
        key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Position, Unavailable>> {
        Box::pin(ready(Ok(self.publish_now(stream, data, key))))
    }

    fn publish_now(&self, stream: &str, data: &str, key: Option<&str>) -> Option<Position> {
        Some(Memory::publish_now(self, stream, data, key))
    }

    fn history_from<'a>(
        &'a self,
        stream: &'a str,
        epoch: &'a str,
        offset: u64,
    ) -> BoxFuture<'a, Result<Vec<Entry>, HistoryError>> {
        Box::pin(ready(self.history_from_now(stream, epoch, offset)))
    }

    fn history_since<'a>(
        &'a self,
        stream: &'a str,
        since: u64,
    ) -> BoxFuture<'a, Result<Vec<Entry>, HistoryError>> {
        Box::pin(ready(Ok(self.history_since_now(stream, since))))
    }

    fn store_session<'a>(
        &'a self,
        sid: &'a str,
        state: &'a str,
    ) -> BoxFuture<'a, Result<(), Unavailable>> {
        let now = Instant::now();
        let mut s = self.state();
        self.sweep(&mut s, now);
        s.sessions.insert(
            sid.to_owned(),
            (state.to_owned(), now + self.limits.sessions_ttl),
        );
        Box::pin(ready(Ok(())))
    }

    fn session<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<Option<String>, Unavailable>> {
        let now = Instant::now();
        let state = self.state();
        let found = state
            .sessions
            .get(sid)
            .filter(|(_, expires)| *expires > now)
            .map(|(s, _)| s.clone());
        Box::pin(ready(Ok(found)))
    }

    fn take_session<'a>(
        &'a self,
        sid: &'a str,
        state: &'a str,
    ) -> BoxFuture<'a, Result<bool, Unavailable>> {
        let now = Instant::now();
        let mut s = self.state();
        let taken = s
            .sessions
            .get(sid)
            .is_some_and(|(stored, expires)| stored == state && *expires > now);
        if taken {
            s.sessions.remove(sid);
        }
        Box::pin(ready(Ok(taken)))
    }

    fn sessions_outlive_process(&self) -> bool {
        false
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    fn presence_add<'a>(
        &'a self,
        stream: &'a str,
        sid: &'a str,
        pid: &'a str,
        info: Option<serde_json::Value>,
    ) -> BoxFuture<'a, Result<Option<PresenceEvent>, PresenceError>> {
        let ttl = self.limits.presence_ttl;
        let added = self.state().presence.add(stream, sid, pid, info, ttl);
        Box::pin(ready(added))
    }

    fn presence_remove<'a>(
        &'a self,
        stream: &'a str,
        sid: &'a str,
    ) -> BoxFuture<'a, Result<Option<PresenceEvent>, Unavailable>> {
        Box::pin(ready(Ok(self.state().presence.remove(stream, sid))))
    }

    fn presence_info<'a>(
        &'a self,
        stream: &'a str,
        with_records: bool,
    ) -> BoxFuture<'a, Result<PresenceInfo, Unavailable>> {
        Box::pin(ready(Ok(self.state().presence.info(stream, with_records))))
    }

    fn touch_presence<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<(), Unavailable>> {
        let ttl = self.limits.presence_ttl;
        self.state().presence.touch(sid, ttl);
        Box::pin(ready(Ok(())))
    }

    fn expire_presence(&self) -> BoxFuture<'_, Result<Vec<(String, PresenceEvent)>, Unavailable>> {
        Box::pin(ready(Ok(self.state().presence.expire())))
    }
}
