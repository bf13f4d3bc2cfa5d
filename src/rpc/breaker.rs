//! The HTTP RPC client's circuit breaker, as anycable-go 1.6 has it
//! (checked against anycable-go 1.6 rpc/http.go: gobreaker's two-step
//! breaker with MaxRequests 5, Interval 10 s, Timeout 5 s, tripping at 10
//! requests with 80% failures).
//!
//! A failure is a request that got no HTTP answer (the application could
//! not be reached, the connection broke); any answer, an error status
//! included, is a success: the application is there. Closed, the counts
//! start again every 10 s; at 10 requests of which 80% failed it opens, and
//! for 5 s calls fail at once instead of waiting on an application that is
//! gone. Then it lets 5 requests through (half-open): one failure opens it
//! again, 5 successes close it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_secs(10);
const OPEN_FOR: Duration = Duration::from_secs(5);
const HALF_OPEN_REQUESTS: u32 = 5;
const MIN_REQUESTS: u32 = 10;
const FAILURE_RATIO: f64 = 0.8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Results from an earlier generation (before a state change or a new
    /// interval) are not counted.
    generation: u64,
    /// When the current generation ends: the interval (closed), the open
    /// period (open).
    until: Option<Instant>,
    requests: u32,
    failures: u32,
    successes: u32,
}

/// A request let through: report its outcome with [`Breaker::record`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

#[derive(Debug)]
pub struct Breaker {
    inner: Mutex<Inner>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            inner: Mutex::new(Inner {
                state: State::Closed,
                generation: 0,
                until: None,
                requests: 0,
                failures: 0,
                successes: 0,
            }),
        }
    }
}

impl Breaker {
    /// Lets a request through, or refuses it (open, or half-open with its
    /// requests taken).
    pub fn allow(&self, now: Instant) -> Option<Ticket> {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        b.advance(now);
        match b.state {
            State::Open => None,
            State::HalfOpen if b.requests >= HALF_OPEN_REQUESTS => None,
            _ => {
                b.requests += 1;
                Some(Ticket(b.generation))
            }
        }
    }

    /// The outcome of a request let through: `reached` when the application
    /// answered (whatever the status).
    pub fn record(&self, ticket: Ticket, reached: bool, now: Instant) {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        b.advance(now);
        if ticket.0 != b.generation {
            return;
        }
        match (b.state, reached) {
            (State::Closed, true) => b.successes += 1,
            (State::Closed, false) => {
                b.failures += 1;
                if b.requests >= MIN_REQUESTS
                    && f64::from(b.failures) / f64::from(b.requests) >= FAILURE_RATIO
                {
                    b.enter(State::Open, now);
                    tracing::warn!(
                        "HTTP RPC circuit breaker is open: calls fail at once for {} s",
                        OPEN_FOR.as_secs()
                    );
                }
            }
            (State::HalfOpen, true) => {
                b.successes += 1;
                if b.successes >= HALF_OPEN_REQUESTS {
                    b.enter(State::Closed, now);
                    tracing::info!("HTTP RPC circuit breaker is closed");
                }
            }
            (State::HalfOpen, false) => {
                b.enter(State::Open, now);
                tracing::warn!("HTTP RPC circuit breaker is open again");
            }
            (State::Open, _) => {}
        }
    }

    #[cfg(test)]
    fn is_open(&self, now: Instant) -> bool {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        b.advance(now);
        b.state == State::Open
    }
}

impl Inner {
    fn advance(&mut self, now: Instant) {
        match (self.state, self.until) {
            (State::Closed, None) => self.until = Some(now + INTERVAL),
            (State::Closed, Some(end)) if now >= end => self.enter(State::Closed, now),
            (State::Open, Some(end)) if now >= end => self.enter(State::HalfOpen, now),
            _ => {}
        }
    }

    fn enter(&mut self, state: State, now: Instant) {
        self.state = state;
        self.generation += 1;
        self.requests = 0;
        self.failures = 0;
        self.successes = 0;
        self.until = match state {
            State::Closed => Some(now + INTERVAL),
            State::Open => Some(now + OPEN_FOR),
            State::HalfOpen => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(b: &Breaker, now: Instant, reached: bool, n: usize) {
        for _ in 0..n {
            let t = b.allow(now).expect("let through");
            b.record(t, reached, now);
        }
    }

    #[test]
    fn opens_at_ten_requests_with_eighty_percent_failures() {
        let b = Breaker::default();
        let t0 = Instant::now();
        run(&b, t0, true, 2);
        run(&b, t0, false, 7);
        assert!(!b.is_open(t0), "9 requests: not yet");
        run(&b, t0, false, 1);
        assert!(b.is_open(t0), "10 requests, 8 failed");
        assert!(b.allow(t0 + Duration::from_secs(4)).is_none());
    }

    #[test]
    fn answers_are_successes_and_counts_restart_every_interval() {
        let b = Breaker::default();
        let t0 = Instant::now();
        run(&b, t0, false, 7);
        run(&b, t0, true, 3);
        run(&b, t0, false, 4);
        assert!(!b.is_open(t0), "11 of 14 failed: under 80%");
        run(&b, t0, false, 1);
        assert!(b.is_open(t0), "12 of 15 failed");
        let b = Breaker::default();
        run(&b, t0, false, 9);
        // A new interval: the 9 failures are forgotten.
        let t1 = t0 + INTERVAL;
        run(&b, t1, false, 1);
        assert!(!b.is_open(t1));
    }

    #[test]
    fn half_open_lets_five_through_then_closes_or_opens_again() {
        let b = Breaker::default();
        let t0 = Instant::now();
        run(&b, t0, false, 10);
        let t1 = t0 + OPEN_FOR;
        let tickets: Vec<_> = (0..5).map(|_| b.allow(t1).expect("half-open")).collect();
        assert!(b.allow(t1).is_none(), "only 5 in half-open");
        for t in tickets {
            b.record(t, true, t1);
        }
        assert!(!b.is_open(t1));
        assert!(b.allow(t1).is_some(), "closed again");

        let b = Breaker::default();
        run(&b, t0, false, 10);
        let t = b.allow(t1).unwrap();
        b.record(t, false, t1);
        assert!(b.is_open(t1), "a failure in half-open opens it again");
        // A result from before the state changed is not counted.
        let stale = Ticket(0);
        b.record(stale, true, t1);
        assert!(b.is_open(t1));
    }
}
