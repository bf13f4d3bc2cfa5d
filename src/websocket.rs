//! WebSocket framing (RFC 6455 §5) for the server's sessions, after the
//! opening handshake (server.rs): client frames in, server frames out.
//!
//! Why ours and not tokio-tungstenite's stream (issue 15): an idle
//! connection is the common case, and tungstenite keeps a read buffer of
//! `read_buffer_size` per socket for its whole life, plus its state behind
//! the split's shared lock: ~1.6 KiB of the ~5.2 KiB an idle connection
//! held. Here a connection holds nothing between messages: bytes are read
//! into a per-thread scratch buffer ([`SCRATCH`]) and only a message that
//! arrives in pieces is kept, until it is whole. Frame headers are parsed
//! and formatted by tungstenite's [`FrameHeader`] (the wire details stay
//! with the crate that has them right); what is ours is where the bytes
//! live, the message assembly and the checks RFC 6455 asks of a server.
//!
//! What a server must refuse, and the close code it answers with:
//! unmasked client frames, reserved bits (no extension is negotiated),
//! reserved opcodes, fragmented or oversized (> 125 bytes) control frames,
//! a continuation with nothing to continue or a new message inside a
//! fragmented one, a close frame with a 1-byte payload or a code that may
//! not be sent: 1002. Text that is not UTF-8: 1007. A message over
//! `max_message_size`: 1009 ([`ReadError::TooLarge`], checked on the
//! frame's declared length, before its payload is read).

use std::cell::RefCell;
use std::io::Cursor;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

/// A message from the client.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    Text(Utf8Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    /// The client's close, with its code if it sent one.
    Close(Option<u16>),
}

/// Why a client's bytes are not a message.
#[derive(Debug)]
pub enum ReadError {
    /// A message over `max_message_size` (close with 1009).
    TooLarge {
        size: u64,
        max: usize,
    },
    /// A frame RFC 6455 does not allow: close with this code.
    Violation {
        code: u16,
        why: &'static str,
    },
    Io(std::io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge { size, max } => {
                write!(f, "message of {size} bytes, over max_message_size ({max})")
            }
            ReadError::Violation { why, .. } => f.write_str(why),
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl ReadError {
    /// The close code the server answers with (None: the socket failed).
    pub fn close_code(&self) -> Option<u16> {
        match self {
            ReadError::TooLarge { .. } => Some(1009),
            ReadError::Violation { code, .. } => Some(*code),
            ReadError::Io(_) => None,
        }
    }
}

/// Reads a client's bytes handed over in `pieces`, as a session reads its
/// socket: the messages, in order, and the error that ended them, if one
/// did. The same bytes give the same answer however they are cut (the
/// fuzz target `ws_frames` checks that).
pub fn read_all(pieces: &[&[u8]], max_message: usize) -> (Vec<Incoming>, Option<ReadError>) {
    let mut reader = FrameReader::new(&[][..], max_message, 1024);
    let mut messages = Vec::new();
    for piece in pieces {
        reader.pending.extend_from_slice(piece);
        loop {
            match reader.parse() {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(e) => return (messages, Some(e)),
            }
        }
    }
    (messages, None)
}

fn violation(code: u16, why: &'static str) -> ReadError {
    ReadError::Violation { code, why }
}

thread_local! {
    /// Where every connection served by this thread reads its socket into
    /// (see the module's comment): `read_buffer_size` bytes at a time.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The most the reader sets aside ahead of a frame's bytes (they may never
/// come).
const RESERVE: usize = 64 * 1024;

/// A message arriving in several frames: its kind and what came so far.
#[derive(Debug)]
struct Fragments {
    text: bool,
    data: Vec<u8>,
}

/// The reading side of a server's WebSocket.
pub(crate) struct FrameReader<R> {
    io: R,
    /// Bytes read and not yet parsed: empty (unallocated) between messages.
    pending: Vec<u8>,
    /// A fragmented message being assembled (boxed: rare, and this struct
    /// lives in every idle connection's future).
    fragments: Option<Box<Fragments>>,
    max_message: usize,
    read_chunk: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// `max_message`: `max_message_size`; `read_chunk`: `read_buffer_size`
    /// (bytes read from the socket at a time).
    pub(crate) fn new(io: R, max_message: usize, read_chunk: usize) -> Self {
        FrameReader {
            io,
            pending: Vec::new(),
            fragments: None,
            max_message,
            read_chunk: read_chunk.max(64),
        }
    }

    /// The next message; None when the client's side of the socket ended.
    /// Cancel safe: what was read stays in the reader.
    pub(crate) async fn next(&mut self) -> Option<Result<Incoming, ReadError>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Incoming, ReadError>>> {
        loop {
            match self.parse() {
                Ok(Some(message)) => return Poll::Ready(Some(Ok(message))),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
            let read = SCRATCH.with_borrow_mut(|scratch| {
                if scratch.len() < self.read_chunk {
                    scratch.resize(self.read_chunk, 0);
                }
                let mut buf = ReadBuf::new(&mut scratch[..self.read_chunk]);
                match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => {
                        self.pending.extend_from_slice(buf.filled());
                        Poll::Ready(Ok(buf.filled().len()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            });
            match ready!(read) {
                // The end of the stream, in or between messages.
                Ok(0) => return Poll::Ready(None),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(ReadError::Io(e)))),
            }
        }
    }

    /// Takes the next whole message out of what was read, if it is there.
    fn parse(&mut self) -> Result<Option<Incoming>, ReadError> {
        loop {
            let Some(message) = self.parse_frame()? else {
                return Ok(None);
            };
            if let Some(message) = message {
                return Ok(Some(message));
            }
            // A fragment that did not finish its message: on to the next.
        }
    }

    /// One frame out of `pending`: None when it is not all there yet,
    /// Some(None) for a fragment that does not finish a message.
    fn parse_frame(&mut self) -> Result<Option<Option<Incoming>>, ReadError> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let mut cursor = Cursor::new(&self.pending[..]);
        let (header, length) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(None),
            Err(_) => return Err(violation(1002, "reserved opcode")),
        };
        let start = cursor.position() as usize;
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(violation(
                1002,
                "reserved bits set (no extension was negotiated)",
            ));
        }
        let Some(mask) = header.mask else {
            return Err(violation(1002, "unmasked frame from a client"));
        };
        let control = matches!(header.opcode, OpCode::Control(_));
        if control && (length > 125 || !header.is_final) {
            return Err(violation(
                1002,
                "control frame fragmented or over 125 bytes",
            ));
        }
        let so_far = self.fragments.as_ref().map_or(0, |f| f.data.len()) as u64;
        if !control && length.saturating_add(so_far) > self.max_message as u64 {
            return Err(ReadError::TooLarge {
                size: length.saturating_add(so_far),
                max: self.max_message,
            });
        }
        let end = start + length as usize;
        if self.pending.len() < end {
            // Room for the frame (its length was checked), up to RESERVE
            // ahead: a header alone does not make the server set aside
            // `max_message_size`.
            self.pending
                .reserve((end - self.pending.len()).min(RESERVE));
            return Ok(None);
        }
        let mut payload = self.pending[start..end].to_vec();
        unmask(&mut payload, mask);
        // What follows the frame is kept in a buffer of its own size, so
        // the room a large frame took is not kept after it.
        self.pending = self.pending.split_off(end);
        self.message(header.opcode, header.is_final, payload)
            .map(Some)
    }

    /// What a complete frame means, given the fragments before it.
    fn message(
        &mut self,
        opcode: OpCode,
        is_final: bool,
        payload: Vec<u8>,
    ) -> Result<Option<Incoming>, ReadError> {
        let (text, data) = match opcode {
            OpCode::Control(Control::Ping) => return Ok(Some(Incoming::Ping(payload.into()))),
            OpCode::Control(Control::Pong) => return Ok(Some(Incoming::Pong)),
            OpCode::Control(Control::Close) => return close(&payload).map(Some),
            OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                return Err(violation(1002, "reserved opcode"));
            }
            OpCode::Data(Data::Continue) => {
                let Some(mut fragments) = self.fragments.take() else {
                    return Err(violation(
                        1002,
                        "continuation frame with nothing to continue",
                    ));
                };
                fragments.data.extend_from_slice(&payload);
                if !is_final {
                    self.fragments = Some(fragments);
                    return Ok(None);
                }
                let Fragments { text, data } = *fragments;
                (text, data)
            }
            OpCode::Data(kind) => {
                if self.fragments.is_some() {
                    return Err(violation(1002, "a new message inside a fragmented one"));
                }
                let text = kind == Data::Text;
                if !is_final {
                    self.fragments = Some(Box::new(Fragments {
                        text,
                        data: payload,
                    }));
                    return Ok(None);
                }
                (text, payload)
            }
        };
        if text {
            Utf8Bytes::try_from(data)
                .map(|text| Some(Incoming::Text(text)))
                .map_err(|_| violation(1007, "text message that is not UTF-8"))
        } else {
            Ok(Some(Incoming::Binary(data.into())))
        }
    }
}

/// A close frame's payload: nothing, or a code that may be sent and a
/// UTF-8 reason.
fn close(payload: &[u8]) -> Result<Incoming, ReadError> {
    match payload {
        [] => Ok(Incoming::Close(None)),
        [_] => Err(violation(1002, "close frame with a 1-byte payload")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !CloseCode::from(code).is_allowed() {
                return Err(violation(1002, "close code that may not be sent"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(violation(1007, "close reason that is not UTF-8"));
            }
            Ok(Incoming::Close(Some(code)))
        }
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let value = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i];
    }
}

/// A server frame's opcode.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Text,
    Pong,
    Close,
}

/// Appends a server frame (unmasked, not fragmented) to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, kind: Kind, payload: &[u8]) {
    let opcode = match kind {
        Kind::Text => OpCode::Data(Data::Text),
        Kind::Pong => OpCode::Control(Control::Pong),
        Kind::Close => OpCode::Control(Control::Close),
    };
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    out.reserve(header.len(payload.len() as u64) + payload.len());
    header
        .format(payload.len() as u64, out)
        .expect("writing to a Vec cannot fail");
    out.extend_from_slice(payload);
}

/// A close frame's payload: the code, no reason.
pub(crate) fn close_payload(code: u16) -> [u8; 2] {
    code.to_be_bytes()
}

/// The writing side of a server's WebSocket: frames are encoded into a
/// buffer ([`FrameWriter::push`]) that goes out in writes of
/// `write_buffer_size` bytes or more (see `write_batch` in outgoing.rs)
/// and is freed once written. What a write has sent is remembered here, so
/// a write given up half-way (its future dropped by an urgent close) leaves
/// the rest of its frames for the next one: a frame is never cut in two.
pub(crate) struct FrameWriter<W> {
    io: W,
    chunk: usize,
    out: Vec<u8>,
    /// How much of `out` the socket took.
    sent: usize,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub(crate) fn new(io: W, write_chunk: usize) -> Self {
        FrameWriter {
            io,
            chunk: write_chunk.max(1),
            out: Vec::new(),
            sent: 0,
        }
    }

    /// Bytes of frames to gather before a write.
    pub(crate) fn chunk(&self) -> usize {
        self.chunk
    }

    /// Adds a frame to the buffer.
    pub(crate) fn push(&mut self, kind: Kind, payload: &[u8]) {
        encode(&mut self.out, kind, payload);
    }

    /// Bytes buffered and not yet taken by the socket.
    pub(crate) fn buffered(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Writes what is buffered, then frees the buffer. Cancel safe: each
    /// write's progress is kept, the rest goes with the next call.
    pub(crate) async fn write_buffered(&mut self) -> std::io::Result<()> {
        while self.sent < self.out.len() {
            let n = self.io.write(&self.out[self.sent..]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.sent += n;
        }
        self.out = Vec::new();
        self.sent = 0;
        Ok(())
    }

    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        self.io.flush().await
    }
}

/// The socket's two halves: a session reads in its task and writes in its
/// writer's.
pub(crate) fn split<S>(
    io: S,
    max_message: usize,
    read_chunk: usize,
    write_chunk: usize,
) -> (
    FrameReader<tokio::io::ReadHalf<S>>,
    FrameWriter<tokio::io::WriteHalf<S>>,
)
where
    S: AsyncRead + AsyncWrite,
{
    let (read, write) = tokio::io::split(io);
    (
        FrameReader::new(read, max_message, read_chunk),
        FrameWriter::new(write, write_chunk),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: masked, as a client must.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![first];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn reader(bytes: &[u8], max: usize) -> FrameReader<&'static [u8]> {
        let mut r = FrameReader::new(&[][..], max, 1024);
        r.pending = bytes.to_vec();
        r
    }

    fn code(bytes: &[u8]) -> Option<u16> {
        read_all(&[bytes], 100).1.and_then(|e| e.close_code())
    }

    #[test]
    fn messages_come_whole_in_order_and_nothing_is_kept_after_them() {
        let mut bytes = client_frame(0x81, b"{\"a\":1}");
        bytes.extend(client_frame(0x89, b"hi"));
        // A fragmented text message with a ping between its fragments.
        bytes.extend(client_frame(0x01, "héllo, ".as_bytes()));
        bytes.extend(client_frame(0x8A, b""));
        bytes.extend(client_frame(0x80, "wörld".as_bytes()));
        let big = "x".repeat(70_000);
        bytes.extend(client_frame(0x81, big.as_bytes()));
        bytes.extend(client_frame(0x82, &[0, 1, 2]));
        bytes.extend(client_frame(0x88, &[0x03, 0xe8, b'o', b'k']));
        let (got, error) = read_all(&[&bytes], 1 << 20);
        assert!(error.is_none(), "{error:?}");
        assert_eq!(
            got,
            vec![
                Incoming::Text("{\"a\":1}".into()),
                Incoming::Ping(Bytes::from_static(b"hi")),
                Incoming::Pong,
                Incoming::Text("héllo, wörld".into()),
                Incoming::Text(big.as_str().into()),
                Incoming::Binary(Bytes::from_static(&[0, 1, 2])),
                Incoming::Close(Some(1000)),
            ]
        );
        let pieces: Vec<&[u8]> = bytes.chunks(7).collect();
        assert_eq!(read_all(&pieces, 1 << 20).0, got, "the same in pieces");
        let mut r = reader(&client_frame(0x81, b"x"), 100);
        assert!(r.parse().unwrap().is_some());
        assert_eq!(r.pending.capacity(), 0, "nothing kept between messages");
    }

    #[test]
    fn a_message_split_anywhere_waits_for_its_rest() {
        let frame = client_frame(0x81, "a message in pieces".as_bytes());
        for cut in 0..frame.len() {
            let mut r = reader(&frame[..cut], 100);
            assert!(r.parse().unwrap().is_none(), "cut at {cut}");
            r.pending.extend_from_slice(&frame[cut..]);
            assert_eq!(
                r.parse().unwrap(),
                Some(Incoming::Text("a message in pieces".into()))
            );
        }
    }

    #[test]
    fn what_rfc_6455_forbids_gets_its_close_code() {
        let ok = client_frame(0x81, b"{}");
        assert_eq!(code(&ok), None);
        let unmasked = vec![0x81, 0x02, b'{', b'}'];
        assert_eq!(code(&unmasked), Some(1002), "unmasked");
        assert_eq!(code(&client_frame(0xC1, b"{}")), Some(1002), "rsv1");
        assert_eq!(code(&client_frame(0x83, b"{}")), Some(1002), "opcode 3");
        assert_eq!(code(&client_frame(0x8B, b"")), Some(1002), "opcode 0xB");
        assert_eq!(
            code(&client_frame(0x09, b"")),
            Some(1002),
            "fragmented ping"
        );
        assert_eq!(
            code(&client_frame(0x89, &[0; 126])),
            Some(1002),
            "long ping"
        );
        assert_eq!(
            code(&client_frame(0x80, b"x")),
            Some(1002),
            "lone continuation"
        );
        let mut twice = client_frame(0x01, b"a");
        twice.extend(client_frame(0x81, b"b"));
        assert_eq!(
            code(&twice),
            Some(1002),
            "new message inside a fragmented one"
        );
        assert_eq!(
            code(&client_frame(0x81, &[0xff, 0xfe])),
            Some(1007),
            "not UTF-8"
        );
        assert_eq!(code(&client_frame(0x88, &[3])), Some(1002), "1-byte close");
        assert_eq!(
            code(&client_frame(0x88, &[0x03, 0xed])),
            Some(1002),
            "close 1005"
        );
        assert_eq!(code(&client_frame(0x88, &[0x03, 0xe8, 0xff])), Some(1007));
        assert_eq!(
            code(&client_frame(0x81, &[b'x'; 101])),
            Some(1009),
            "one frame"
        );
        let mut pieces = client_frame(0x01, &[b'x'; 60]);
        pieces.extend(client_frame(0x80, &[b'x'; 41]));
        assert_eq!(code(&pieces), Some(1009), "over the limit in fragments");
        // The limit is checked on the declared length, before the payload
        // is read: a header claiming 2^62 bytes is refused at once.
        let mut huge = vec![0x81, 0x80 | 127];
        huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
        huge.extend_from_slice(&[0; 4]);
        assert_eq!(code(&huge), Some(1009));
    }

    #[test]
    fn server_frames_are_what_a_client_reads() {
        let mut out = Vec::new();
        encode(&mut out, Kind::Text, b"hi");
        encode(&mut out, Kind::Text, &[b'y'; 300]);
        encode(&mut out, Kind::Pong, b"p");
        encode(&mut out, Kind::Close, &close_payload(1000));
        assert_eq!(&out[..4], &[0x81, 2, b'h', b'i']);
        assert_eq!(&out[4..8], &[0x81, 126, 1, 44]);
        let rest = &out[8 + 300..];
        assert_eq!(rest, &[0x8A, 1, b'p', 0x88, 2, 0x03, 0xe8]);
    }

    #[test]
    fn a_large_frame_leaves_no_room_behind_and_a_header_alone_reserves_little() {
        let mut bytes = client_frame(0x81, &[b'x'; 60_000]);
        let next = client_frame(0x81, b"next");
        bytes.extend_from_slice(&next[..3]);
        let mut r = reader(&bytes, 1 << 20);
        assert!(matches!(r.parse(), Ok(Some(Incoming::Text(_)))));
        assert_eq!(r.pending.len(), 3);
        assert!(r.pending.capacity() < 64, "{}", r.pending.capacity());
        // A header claiming 1 MiB: at most RESERVE set aside for it.
        let mut header = vec![0x81, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 20).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        let mut r = reader(&header, 1 << 21);
        assert!(r.parse().unwrap().is_none());
        assert!(r.pending.capacity() <= header.len() + RESERVE);
    }

    /// A write given up half-way (an urgent close drops its future) leaves
    /// the rest of its frames to the next write: the client reads whole
    /// frames, then the goodbye.
    #[tokio::test]
    async fn a_write_cut_short_finishes_its_frame_before_the_next() {
        use tokio::io::AsyncReadExt;
        let (mut client, server) = tokio::io::duplex(100);
        let mut w = FrameWriter::new(server, 1024);
        let big = vec![b'a'; 1000];
        w.push(Kind::Text, &big);
        let cut =
            tokio::time::timeout(std::time::Duration::from_millis(10), w.write_buffered()).await;
        assert!(cut.is_err(), "the pipe takes 100 bytes: the write waits");
        assert!(w.buffered() < 1004 && w.buffered() > 0);
        w.push(Kind::Close, &close_payload(1000));
        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        w.write_buffered().await.unwrap();
        assert_eq!(w.buffered(), 0);
        drop(w);
        let mut expected = Vec::new();
        encode(&mut expected, Kind::Text, &big);
        encode(&mut expected, Kind::Close, &close_payload(1000));
        assert!(reading.await.unwrap() == expected, "whole frames, in order");
    }

    #[tokio::test]
    async fn reads_from_a_socket_a_chunk_at_a_time() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut r = FrameReader::new(server, 1 << 20, 64);
        let text = "z".repeat(5_000);
        let frame = client_frame(0x81, text.as_bytes());
        let writer = tokio::spawn(async move {
            client.write_all(&frame).await.unwrap();
            client.write_all(&client_frame(0x88, &[])).await.unwrap();
        });
        assert_eq!(
            r.next().await.unwrap().unwrap(),
            Incoming::Text(text.as_str().into())
        );
        assert_eq!(r.next().await.unwrap().unwrap(), Incoming::Close(None));
        writer.await.unwrap();
        assert!(r.next().await.is_none(), "the stream ended");
    }
}
