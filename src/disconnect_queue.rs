//! The Disconnect queue: every session that connected ends with one
//! Disconnect call to the application, made here, paced.
//!
//! A bounded channel of `disconnect_backlog_size` calls, drained at
//! `disconnect_rate` calls per second by at most a quarter of
//! `rpc_concurrency`, as anycable-go paces them, so Disconnects that hang
//! never starve connects and commands. On shutdown
//! ([`DisconnectQueue::hurry`]) no new sessions need that capacity: the
//! calls go at full concurrency and without the rate, within
//! `shutdown_timeout`.
//!
//! When the backlog is full (an application slower than the sockets
//! closing), a stateless application's call is dropped at once, counted
//! (`ferrocable_disconnect_dropped_total`) and logged: the closing session
//! ends and frees its memory and its `max_conn` place, so the memory is
//! the backlog's and new clients are served. anycable-go 1.6
//! (node/disconnect_queue.go `Enqueue`) blocks the closing session's
//! goroutine on the full channel instead, with no bound: every session
//! closed behind a hung application stays in memory, counted as a client.
//! A stateful application (the gem) is never dropped from: its Disconnect
//! releases the connection object it keeps per socket, so a drop would
//! leak that object for good; its session waits for room as before (and
//! its calls are unpaced, `disconnect_rate = 0`). During shutdown nothing
//! is dropped either: a session waits for room (the calls go at full
//! speed then, and `shutdown_timeout` bounds the wait), as anycable-go
//! makes them inline once shutting down (node/node.go `Disconnect`).
//!
//! Every call counts from the moment it is queued until it has returned
//! (a [`TaskTracker`] token travels with it), so shutdown can wait for the
//! ones still to be made.

use crate::client_log::{client_log, compact};
use crate::config::{Config, DisconnectMode};
use crate::controller::{Controller, DisconnectRequest};
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::warn;

/// One Disconnect call to make, and its place in the count.
struct Job {
    sid: Arc<str>,
    request: DisconnectRequest,
    tracked: TaskTrackerToken,
}

pub(crate) struct DisconnectQueue {
    jobs: mpsc::Sender<Job>,
    /// Calls queued or running.
    calls: TaskTracker,
    /// Cancelled on shutdown: the worker drops its rate and share.
    hurry: CancellationToken,
    /// `disconnect_mode = never`: no call is made at all.
    enabled: bool,
    /// A stateful application: a call is never dropped (see the module).
    never_drop: bool,
    metrics: Arc<Metrics>,
}

impl DisconnectQueue {
    /// Creates the queue and starts its worker; must be called inside a
    /// tokio runtime.
    pub(crate) fn start(
        config: &Config,
        controller: Arc<dyn Controller>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (jobs, queue) = mpsc::channel(config.disconnect_backlog);
        let hurry = CancellationToken::new();
        let never_drop = controller.stateful();
        tokio::spawn(worker(
            queue,
            controller,
            metrics.clone(),
            hurry.clone(),
            config.rpc_concurrency,
            config.disconnect_rate,
        ));
        DisconnectQueue {
            jobs,
            calls: TaskTracker::new(),
            hurry,
            enabled: config.disconnect_mode != DisconnectMode::Never,
            never_drop,
            metrics,
        }
    }

    /// Queues the Disconnect call for a session that connected. When the
    /// backlog is full the call is dropped and counted (a stateless
    /// application, not shutting down), else this waits for room; see the
    /// module for why.
    pub(crate) async fn enqueue(&self, sid: Arc<str>, request: DisconnectRequest) {
        if !self.enabled {
            return;
        }
        let job = Job {
            sid,
            request,
            tracked: self.calls.token(),
        };
        self.metrics.disconnect_queue.inc();
        let closed = if self.never_drop || self.hurry.is_cancelled() {
            self.jobs.send(job).await.is_err()
        } else {
            match self.jobs.try_send(job) {
                Ok(()) => false,
                Err(TrySendError::Closed(_)) => true,
                Err(TrySendError::Full(job)) => {
                    self.metrics.disconnect_queue.dec();
                    self.metrics.disconnect_dropped.inc();
                    client_log!(
                        WARN,
                        sid = %job.sid,
                        backlog = self.jobs.max_capacity(),
                        "Disconnect backlog full (disconnect_backlog_size): the application is slower than sessions close; Disconnect call dropped"
                    );
                    return;
                }
            }
        };
        if closed {
            self.metrics.disconnect_queue.dec();
            self.metrics.disconnect_dropped.inc();
            warn!("Disconnect queue closed; call dropped");
        }
    }

    /// Shutdown: the calls still to come go at full concurrency, unpaced.
    pub(crate) fn hurry(&self) {
        self.hurry.cancel();
    }

    /// Calls queued or running.
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }

    /// Waits until every call queued (now or later) has been made; meant for
    /// shutdown, after the sessions that could queue more have ended.
    pub(crate) async fn drained(&self) {
        self.calls.close();
        self.calls.wait().await;
    }
}

/// Makes the queued Disconnect calls: at most `rate` started per second (0:
/// no limit) and a quarter of `concurrency` in flight (at least one), until
/// `hurry` is cancelled; then at full concurrency and without the rate.
async fn worker(
    mut queue: mpsc::Receiver<Job>,
    controller: Arc<dyn Controller>,
    metrics: Arc<Metrics>,
    hurry: CancellationToken,
    concurrency: usize,
    rate: u32,
) {
    let share = (concurrency / 4).max(1);
    let slots = Arc::new(Semaphore::new(share));
    let mut widened = false;
    let mut pace = (rate > 0).then(|| {
        let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    while let Some(job) = queue.recv().await {
        let shutting_down = hurry.is_cancelled();
        if shutting_down && !widened {
            slots.add_permits(concurrency.saturating_sub(share));
            widened = true;
        }
        if let (false, Some(pace)) = (shutting_down, pace.as_mut()) {
            pace.tick().await;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (controller, metrics) = (controller.clone(), metrics.clone());
        let Job {
            sid,
            request,
            tracked,
        } = job;
        tokio::spawn(async move {
            metrics.disconnect_queue.dec();
            if let Err(e) = controller.disconnect(&sid, request).await {
                client_log!(WARN, sid = %sid, error = %compact(e.to_string()), "Disconnect call failed");
            }
            // The call is done: it leaves the count, and frees its slot.
            drop(tracked);
            drop(slot);
        });
    }
}
