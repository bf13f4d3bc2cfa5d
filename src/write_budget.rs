//! The write side of one socket, in bytes: everything accepted for a client
//! and not yet taken by its socket, data frames and automatic control replies
//! together, against one budget (`ws_max_pending_size`, anycable-go's option
//! of the same name and meaning).
//!
//! Why a module of its own: the bytes waiting for a client live in two
//! places, the session's outgoing queue and the batch its writer is writing,
//! and some frames are no data frame (pongs to the client's pings, the
//! goodbye). Counting data frames only let a client that sends pings and
//! never reads grow what is held for it without limit. So this counts
//! bytes at both ends: what is accepted (each data frame as it is queued,
//! each control reply as its ping is read) and what the kernel took (a
//! wrapper around the socket, [`MeteredIo`]). The difference is exactly what
//! the process holds for that client, wherever it sits.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// anycable-go's default `ws_max_pending_size`, and the cap on control
/// replies when the option is 0 (no limit for data frames): a client's pings
/// are never a reason to hold more than this.
pub const DEFAULT_LIMIT: u64 = 1024 * 1024;

/// Bytes accepted for one socket and bytes its kernel buffer took.
#[derive(Debug)]
pub struct WriteBudget {
    /// `ws_max_pending_size`; 0 means no limit for data frames.
    limit: u64,
    accepted: AtomicU64,
    written: AtomicU64,
}

/// The size of a server frame on the wire (servers do not mask): the
/// payload plus a 2, 4 or 10 byte header.
pub fn wire_len(payload: usize) -> u64 {
    let header = match payload {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    };
    (payload + header) as u64
}

impl WriteBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(WriteBudget {
            limit: limit as u64,
            accepted: AtomicU64::new(0),
            written: AtomicU64::new(0),
        })
    }

    /// Bytes accepted for the client that its socket has not taken yet.
    /// `ws_max_pending_size`; 0 means no limit for data frames.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn pending(&self) -> u64 {
        // `written` first: a write racing this read can only make the
        // result larger than the truth, never wrap below zero.
        let written = self.written.load(Ordering::Acquire);
        self.accepted
            .load(Ordering::Acquire)
            .saturating_sub(written)
    }

    /// Accounts a data frame of `payload` bytes about to be queued. False
    /// when the client already had its whole budget pending: the frame must
    /// not be queued and the client is too slow. As in anycable-go the check
    /// comes before the frame, so one frame larger than the budget still
    /// reaches a client that keeps up.
    pub fn admit_frame(&self, payload: usize) -> bool {
        if self.limit > 0 && self.pending() >= self.limit {
            return false;
        }
        self.account(payload);
        true
    }

    /// Accounts a control reply (the pong to a client's ping; it is queued
    /// whatever the answer) and `held`, what it takes in memory while it
    /// waits beyond its bytes on the wire (given back with [`Self::release`]
    /// once the writer takes it: an empty ping's pong is 2 bytes on the wire
    /// and a queue slot of some 40). False when the client was already over
    /// budget: it sends pings faster than it reads the answers.
    pub fn admit_control(&self, payload: usize, held: usize) -> bool {
        let limit = if self.limit == 0 {
            DEFAULT_LIMIT
        } else {
            self.limit
        };
        let before = self.pending();
        self.account(payload);
        self.accepted.fetch_add(held as u64, Ordering::AcqRel);
        before < limit
    }

    /// Gives back what [`Self::admit_control`] held for a reply.
    pub fn release(&self, held: usize) {
        self.accepted.fetch_sub(held as u64, Ordering::AcqRel);
    }

    /// Accounts frames written on the way out (the goodbye), never refused.
    pub fn account(&self, payload: usize) {
        self.accepted.fetch_add(wire_len(payload), Ordering::AcqRel);
    }

    /// Wraps the socket so every byte the kernel takes is counted.
    pub fn meter<S>(self: &Arc<Self>, io: S) -> MeteredIo<S> {
        MeteredIo {
            io,
            budget: self.clone(),
        }
    }
}

/// A socket that counts the bytes written to it into its [`WriteBudget`].
#[derive(Debug)]
pub struct MeteredIo<S> {
    io: S,
    budget: Arc<WriteBudget>,
}

impl<S> MeteredIo<S> {
    fn wrote(&self, result: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = result {
            self.budget.written.fetch_add(*n as u64, Ordering::AcqRel);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for MeteredIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for MeteredIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn frame_sizes_on_the_wire() {
        assert_eq!(wire_len(0), 2);
        assert_eq!(wire_len(125), 127);
        assert_eq!(wire_len(126), 130);
        assert_eq!(wire_len(65535), 65539);
        assert_eq!(wire_len(65536), 65546);
    }

    #[test]
    fn refuses_once_the_budget_is_pending() {
        let budget = WriteBudget::new(100);
        assert!(budget.admit_frame(60)); // 0 pending before it
        assert!(budget.admit_frame(1000)); // 62 < 100 before it
        assert!(!budget.admit_frame(1));
        assert!(!budget.admit_control(0, 0));
    }

    #[test]
    fn zero_means_no_limit_for_data_but_not_for_control_replies() {
        let budget = WriteBudget::new(0);
        assert!(budget.admit_frame(DEFAULT_LIMIT as usize * 4));
        assert!(budget.admit_frame(1));
        assert!(!budget.admit_control(0, 0));
    }

    #[tokio::test]
    async fn written_bytes_release_the_budget() {
        let budget = WriteBudget::new(10);
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut server = budget.meter(server);
        let mut client = client;
        assert!(budget.admit_frame(20));
        assert_eq!(budget.pending(), 22);
        assert!(!budget.admit_frame(1));
        server.write_all(&[0u8; 22]).await.unwrap();
        let mut buf = [0u8; 22];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(budget.pending(), 0);
        assert!(budget.admit_frame(1));
    }
}
