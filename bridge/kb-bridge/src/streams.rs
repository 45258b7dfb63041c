//! Streams: bulk data in binary frames, with back-pressure both ways.
//!
//! - **Upload** (client → server): the connection's reader routes each binary frame to
//!   its stream's bounded channel. While a request reads the stream, a full channel makes
//!   the reader wait — it stops reading the socket, and TCP pushes back on the client.
//!   Frames that arrive before any request reads the stream are buffered up to
//!   `max_unclaimed_upload_bytes`; beyond that the stream fails (`5011`), because
//!   waiting would stall the very connection that must bring the request.
//! - **Download** (server → client): a request writes through a [`DownloadWriter`],
//!   which cuts `max_chunk_bytes` frames and hands them to the connection's bounded
//!   outgoing queue; a client that does not read makes the writer wait, and one that
//!   stops reading altogether is disconnected by the send timeout.
//!
//! Bytes are copied as little as the `Read` / `Write` interfaces allow: an upload
//! frame's payload travels to its reader as a view of the received message, and a
//! download frame is filled in place behind room for its header, then moved whole to
//! the connection's writer, and its buffer comes back for a later frame once it is on
//! the socket ([`FramePool`]).
//!
//! Workers are blocking code (`std::io::Read` / `Write` for kb-pki's streaming CMS),
//! run on tokio's blocking pool.

use crate::activity::{RequestState, Stop};
use crate::error::fail;
use kb_bridge_protocol::frame::{FLAG_ABORT, FLAG_FIN, Frame, HEADER_LEN, Sequencer};
use kb_bridge_protocol::{ErrorObject, Event, Id, Notification, StreamDirection, StreamId};
use kb_types::ErrorCode;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Bytes;

/// What the connection's writer task sends.
#[derive(Debug)]
pub enum Outgoing {
    /// A JSON text frame.
    Text(String),
    /// A binary stream frame (header and payload).
    Binary(Bytes),
    /// Close the connection with this WebSocket close code and reason.
    Close(u16, String),
}

/// The connection's outgoing queue.
pub type OutTx = mpsc::Sender<Outgoing>;

/// Frame buffers a stream reuses: a sent frame's buffer comes back once the WebSocket
/// layer has copied it out, so a long stream does not allocate (and the OS fault in)
/// fresh memory for every frame. Holds at most [`FramePool::KEEP`] idle buffers; the
/// frames in flight are bounded by the queues they travel through.
#[derive(Clone, Debug, Default)]
pub(crate) struct FramePool(Arc<Mutex<Vec<Vec<u8>>>>);

impl FramePool {
    const KEEP: usize = 4;

    /// An empty buffer with room for `capacity` bytes.
    pub(crate) fn take(&self, capacity: usize) -> Vec<u8> {
        let reused = self.0.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match reused {
            Some(mut b) if b.capacity() >= capacity => {
                b.clear();
                b
            }
            _ => Vec::with_capacity(capacity),
        }
    }

    /// `buf` as a message payload; the buffer returns here when the message is dropped.
    pub(crate) fn send(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled { buf, pool: self.clone() })
    }
}

/// A buffer on its way to the socket, back to its pool when dropped.
struct Pooled {
    buf: Vec<u8>,
    pool: FramePool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut idle = self.pool.0.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < FramePool::KEEP {
            idle.push(std::mem::take(&mut self.buf));
        }
    }
}

/// A chunk travelling to an upload reader.
#[derive(Debug)]
enum Chunk {
    /// A payload: a view of the received message, not a copy.
    Data(Bytes),
    End,
    Fail(ErrorObject),
}

/// How a method reaches the connection's streams.
pub trait StreamIo: Send + Sync {
    /// Take an upload stream for reading (only one request may read a stream).
    fn upload(&self, id: StreamId, state: Arc<RequestState>, progress: Progress) -> Result<UploadReader, ErrorObject>;
    /// Take a download stream for writing.
    fn download(&self, id: StreamId, state: Arc<RequestState>, progress: Progress) -> Result<DownloadWriter, ErrorObject>;
    /// A stream's declared length, if the client gave one.
    fn declared_length(&self, id: StreamId) -> Option<u64>;
}

/// No streams (in-process calls without a connection).
#[derive(Debug, Default)]
pub struct NoStreams;

impl StreamIo for NoStreams {
    fn upload(&self, id: StreamId, _: Arc<RequestState>, _: Progress) -> Result<UploadReader, ErrorObject> {
        Err(fail(ErrorCode::UnknownStream, format!("stream {} is not open", id.0)))
    }
    fn download(&self, id: StreamId, _: Arc<RequestState>, _: Progress) -> Result<DownloadWriter, ErrorObject> {
        Err(fail(ErrorCode::UnknownStream, format!("stream {} is not open", id.0)))
    }
    fn declared_length(&self, _: StreamId) -> Option<u64> {
        None
    }
}

/// Progress events for one request: at most every 250 ms or 1 MiB.
#[derive(Clone, Debug)]
pub struct Progress {
    inner: Option<Arc<Mutex<ProgressInner>>>,
}

#[derive(Debug)]
struct ProgressInner {
    out: OutTx,
    request: Id,
    total: Option<u64>,
    done: u64,
    sent_at: Instant,
    sent_bytes: u64,
}

const PROGRESS_EVERY: Duration = Duration::from_millis(250);
const PROGRESS_BYTES: u64 = 1 << 20;

impl Progress {
    /// Reports nothing.
    pub fn none() -> Self {
        Progress { inner: None }
    }

    /// Reports to a connection for a request.
    pub fn to(out: OutTx, request: Id, total: Option<u64>) -> Self {
        Progress {
            inner: Some(Arc::new(Mutex::new(ProgressInner {
                out,
                request,
                total,
                done: 0,
                sent_at: Instant::now(),
                sent_bytes: 0,
            }))),
        }
    }

    /// `n` more bytes done.
    pub fn add(&self, n: u64) {
        let Some(inner) = &self.inner else { return };
        let mut p = inner.lock().unwrap_or_else(|e| e.into_inner());
        p.done += n;
        if p.sent_at.elapsed() >= PROGRESS_EVERY || p.done - p.sent_bytes >= PROGRESS_BYTES {
            let ev = Notification::from(Event::Progress { request: p.request.clone(), done: p.done, total: p.total });
            if let Ok(text) = serde_json::to_string(&ev) {
                // Queued like a stream frame (it waits for room rather than being lost
                // when the client reads slowly); at most four a second, so it costs
                // nothing. Workers are blocking threads: waiting here is allowed.
                let _ = p.out.blocking_send(Outgoing::Text(text));
            }
            p.sent_at = Instant::now();
            p.sent_bytes = p.done;
        }
    }
}

/// Reads an upload stream (blocking).
#[derive(Debug)]
pub struct UploadReader {
    rx: mpsc::Receiver<Chunk>,
    buf: Bytes,
    pos: usize,
    ended: bool,
    state: Arc<RequestState>,
    progress: Progress,
    failure: Arc<Mutex<Option<ErrorObject>>>,
}

/// The io::Error a stream failure travels in through kb-pki; the method looks the
/// real error up with [`failure_of`].
fn stream_io_error(e: &ErrorObject) -> io::Error {
    io::Error::other(format!("stream: {}", e.data.detail))
}

impl UploadReader {
    /// The recorded failure, if reading failed (to report it with its own code).
    pub fn failure(&self) -> Arc<Mutex<Option<ErrorObject>>> {
        Arc::clone(&self.failure)
    }

    fn stopped_error(&self) -> Option<ErrorObject> {
        self.state.stopped().map(stop_error)
    }

    fn record(&self, e: ErrorObject) -> io::Error {
        let err = stream_io_error(&e);
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        err
    }
}

/// The error for a stopped request.
pub fn stop_error(s: Stop) -> ErrorObject {
    match s {
        Stop::Cancelled => fail(ErrorCode::RequestCancelled, "the request was cancelled"),
        Stop::TimedOut => fail(ErrorCode::RequestTimeout, "no progress within the request timeout"),
    }
}

impl UploadReader {
    /// The next chunk, waking every 200 ms to notice a stop.
    fn recv(&mut self) -> io::Result<Option<Chunk>> {
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return Ok(self.rx.blocking_recv()) };
        loop {
            if let Some(e) = self.stopped_error() {
                return Err(self.record(e));
            }
            if let Ok(c) = handle.block_on(tokio::time::timeout(Duration::from_millis(200), self.rx.recv())) {
                return Ok(c);
            }
        }
    }
}

impl Read for UploadReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = self.stopped_error() {
            return Err(self.record(e));
        }
        while self.pos == self.buf.len() {
            if self.ended {
                return Ok(0);
            }
            match self.recv()? {
                Some(Chunk::Data(d)) => {
                    self.state.progress();
                    self.progress.add(d.len() as u64);
                    self.buf = d;
                    self.pos = 0;
                }
                Some(Chunk::End) => self.ended = true,
                Some(Chunk::Fail(e)) => return Err(self.record(e)),
                None => {
                    let failed = failure_of(&self.failure);
                    let e = self
                        .stopped_error()
                        .or(failed)
                        .unwrap_or_else(|| fail(ErrorCode::RequestCancelled, "the upload stream was closed"));
                    return Err(self.record(e));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes a download stream (blocking): frames of at most `chunk` bytes, FIN on
/// [`DownloadWriter::finish`].
#[derive(Debug)]
pub struct DownloadWriter {
    id: StreamId,
    out: OutTx,
    chunk: usize,
    /// The frame being filled: room for the header, then its payload so far. Sent as
    /// it is (the header written in front) once full, so each byte is copied once.
    frame: Vec<u8>,
    pool: FramePool,
    seq: u32,
    bytes: u64,
    state: Arc<RequestState>,
    progress: Progress,
    failure: Arc<Mutex<Option<ErrorObject>>>,
    finished: bool,
}

impl Drop for DownloadWriter {
    /// A request that fails after it started writing ends its download stream with
    /// ABORT, so a client reading the stream stops waiting (the response says why).
    fn drop(&mut self) {
        if !self.finished {
            let frame = Frame { stream: self.id, sequence: self.seq, flags: FLAG_ABORT, payload: &[] }.encode();
            let _ = self.out.try_send(Outgoing::Binary(frame.into()));
        }
    }
}

impl DownloadWriter {
    /// An empty frame: room for the header, capacity for a full payload.
    fn new_frame(&self) -> Vec<u8> {
        let mut f = self.pool.take(HEADER_LEN + self.chunk);
        f.resize(HEADER_LEN, 0);
        f
    }

    /// Send the frame filled so far (its payload may be empty) with `flags`.
    fn send(&mut self, flags: u8) -> io::Result<()> {
        if let Some(s) = self.state.stopped() {
            let e = stop_error(s);
            let err = stream_io_error(&e);
            *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            return Err(err);
        }
        let mut frame = std::mem::take(&mut self.frame);
        frame.resize(frame.len().max(HEADER_LEN), 0);
        let payload_len = frame.len() - HEADER_LEN;
        frame[..HEADER_LEN].copy_from_slice(&Frame { stream: self.id, sequence: self.seq, flags, payload: &[] }.header());
        self.seq = self.seq.wrapping_add(1);
        self.out.blocking_send(Outgoing::Binary(self.pool.send(frame))).map_err(|_| {
            let e = fail(ErrorCode::RequestCancelled, "the connection closed");
            let err = stream_io_error(&e);
            *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            err
        })?;
        self.state.progress();
        self.progress.add(payload_len as u64);
        Ok(())
    }

    /// The stream written.
    pub fn stream_id(&self) -> StreamId {
        self.id
    }

    /// Send what is buffered with FIN. Returns the stream's total bytes.
    pub fn finish(mut self) -> io::Result<u64> {
        self.send(FLAG_FIN)?;
        self.finished = true;
        Ok(self.bytes)
    }

    /// The recorded failure, if writing failed.
    pub fn failure(&self) -> Arc<Mutex<Option<ErrorObject>>> {
        Arc::clone(&self.failure)
    }
}

impl Write for DownloadWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let full = HEADER_LEN + self.chunk;
        let mut rest = data;
        while !rest.is_empty() {
            if self.frame.len() < HEADER_LEN {
                self.frame = self.new_frame(); // the last one was sent
            }
            let take = (full - self.frame.len()).min(rest.len());
            self.frame.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.frame.len() == full {
                self.send(0)?;
            }
        }
        self.bytes += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One open stream.
#[derive(Debug)]
struct Slot {
    direction: StreamDirection,
    declared: Option<u64>,
    seq: Sequencer,
    tx: Option<mpsc::Sender<Chunk>>,
    rx: Option<mpsc::Receiver<Chunk>>,
    claimed: bool,
    /// A request naming the stream is in flight and will read it soon: its frames wait
    /// for room (back-pressure) instead of counting against the unclaimed budget.
    reserved: bool,
    /// Payload bytes buffered before any request read the stream (counted against the
    /// connection's budget until a request claims the stream or it closes).
    unclaimed_bytes: usize,
    /// Set when frames broke the rules.
    failed: Option<ErrorObject>,
    /// The same failure, shared with the request reading the stream: it learns why
    /// even when its queue was too full to take the failure as a chunk.
    failure: Arc<Mutex<Option<ErrorObject>>>,
}

/// Where a frame went.
#[derive(Debug)]
pub enum Routed {
    /// Delivered (or buffered).
    Ok,
    /// No such stream: dropped, counted as a failure.
    UnknownStream,
    /// The frame broke the stream's rules; the stream failed with this error.
    Failed(ErrorObject),
}

/// A connection's streams.
#[derive(Debug)]
pub struct StreamTable {
    slots: Mutex<HashMap<StreamId, Slot>>,
    next: Mutex<u32>,
    out: OutTx,
    max_chunk: usize,
    buffered_chunks: usize,
    max_streams: usize,
    /// Bytes buffered for unclaimed streams, all streams of the connection together: a
    /// page that opens many streams and fills them without ever sending a request
    /// (possible before consent) holds at most this much memory.
    unclaimed_total: Mutex<usize>,
    max_unclaimed: usize,
}

impl StreamTable {
    /// A table for one connection.
    pub fn new(out: OutTx, max_chunk: usize, max_unclaimed_bytes: usize, max_streams: usize) -> Self {
        StreamTable {
            slots: Mutex::new(HashMap::new()),
            next: Mutex::new(1),
            out,
            max_chunk: max_chunk.max(1),
            buffered_chunks: (max_unclaimed_bytes / max_chunk.max(1)).max(2),
            max_streams,
            unclaimed_total: Mutex::new(0),
            max_unclaimed: max_unclaimed_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<StreamId, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `stream.open`.
    pub fn open(&self, direction: StreamDirection, declared: Option<u64>) -> Result<StreamId, ErrorObject> {
        let mut slots = self.lock();
        if slots.len() >= self.max_streams {
            return Err(fail(ErrorCode::TooManyRequests, format!("at most {} open streams per connection", self.max_streams)));
        }
        let id = {
            let mut n = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let id = StreamId(*n);
            *n = n.checked_add(1).unwrap_or(1).max(1);
            id
        };
        let (tx, rx) = match direction {
            StreamDirection::Upload => {
                // One more than the budget's chunks: the FIN marker always has room.
                let (tx, rx) = mpsc::channel(self.buffered_chunks + 1);
                (Some(tx), Some(rx))
            }
            StreamDirection::Download => (None, None),
        };
        slots.insert(
            id,
            Slot {
                direction,
                declared,
                seq: Sequencer::default(),
                tx,
                rx,
                claimed: false,
                reserved: false,
                unclaimed_bytes: 0,
                failed: None,
                failure: Arc::default(),
            },
        );
        Ok(id)
    }

    /// `stream.close` (and the end of the request using it): frees the stream. A
    /// request still reading it sees the stream end early and fails with `5009`.
    pub fn close(&self, id: StreamId) -> Result<u64, ErrorObject> {
        let slot =
            self.lock().remove(&id).ok_or_else(|| fail(ErrorCode::UnknownStream, format!("stream {} is not open", id.0)))?;
        self.release_unclaimed(slot.unclaimed_bytes);
        Ok(slot.seq.bytes())
    }

    /// Route one binary message (a frame). Waits (back-pressure) only when a request
    /// reads the stream. A malformed frame whose header still names an upload stream
    /// fails the request reading it at once, not at its idle timeout.
    pub async fn route(&self, message: Bytes) -> Routed {
        let frame = match Frame::decode(&message, self.max_chunk) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::debug!(detail = e.0, "bad binary frame");
                let err = fail(ErrorCode::StreamFrameInvalid, e.0);
                if let Some(stream) = Frame::stream_of(&message) {
                    self.fail_stream(stream, err.clone());
                }
                return Routed::Failed(err);
            }
        };
        let (tx, claimed) = {
            let mut slots = self.lock();
            let Some(slot) = slots.get_mut(&frame.stream) else { return Routed::UnknownStream };
            if slot.direction != StreamDirection::Upload {
                return Routed::Failed(fail(ErrorCode::StreamFrameInvalid, "frame sent on a download stream"));
            }
            if let Some(e) = &slot.failed {
                return Routed::Failed(e.clone());
            }
            if let Err(e) = slot.seq.accept(&frame) {
                let e = fail(ErrorCode::StreamFrameInvalid, e.0);
                return Routed::Failed(Self::fail_slot(slot, e));
            }
            let Some(tx) = slot.tx.clone() else { return Routed::UnknownStream };
            let waits = slot.claimed || slot.reserved;
            if !waits && !frame.is_abort() {
                let mut total = self.unclaimed_total.lock().unwrap_or_else(|e| e.into_inner());
                if *total + frame.payload.len() > self.max_unclaimed {
                    drop(total);
                    let err = fail(
                        ErrorCode::StreamFrameInvalid,
                        "too many frames before a request read the stream: send the request first, then the frames",
                    );
                    return Routed::Failed(Self::fail_slot(slot, err));
                }
                *total += frame.payload.len();
                slot.unclaimed_bytes += frame.payload.len();
            }
            (tx, waits)
        };
        let mut chunks = Vec::with_capacity(2);
        if frame.is_abort() {
            chunks.push(Chunk::Fail(fail(ErrorCode::RequestCancelled, "the client aborted the upload stream")));
        } else {
            if !frame.payload.is_empty() {
                chunks.push(Chunk::Data(message.slice(HEADER_LEN..)));
            }
            if frame.is_fin() {
                chunks.push(Chunk::End);
            }
        }
        for c in chunks {
            if claimed {
                // The reader is there: wait for room (back-pressure on the socket).
                if tx.send(c).await.is_err() {
                    return Routed::Ok; // the request ended; nothing more to deliver
                }
            } else if let Err(e) = tx.try_send(c) {
                let full = matches!(e, mpsc::error::TrySendError::Full(_));
                let verdict = {
                    let mut slots = self.lock();
                    match slots.get_mut(&frame.stream) {
                        // Claimed in the meantime: deliver with back-pressure after all.
                        Some(slot) if (slot.claimed || slot.reserved) && full => None,
                        Some(slot) => {
                            let err = fail(
                                ErrorCode::StreamFrameInvalid,
                                "too many frames before a request read the stream: send the request first, then the frames",
                            );
                            Some(Routed::Failed(Self::fail_slot(slot, err)))
                        }
                        None => Some(Routed::UnknownStream),
                    }
                };
                match verdict {
                    Some(r) => return r,
                    None => {
                        let _ = tx.send(e.into_inner()).await;
                    }
                }
            }
        }
        Routed::Ok
    }

    fn release_unclaimed(&self, n: usize) {
        let mut total = self.unclaimed_total.lock().unwrap_or_else(|e| e.into_inner());
        *total = total.saturating_sub(n);
    }

    fn fail_slot(slot: &mut Slot, e: ErrorObject) -> ErrorObject {
        slot.failed = Some(e.clone());
        *slot.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
        if let Some(tx) = &slot.tx
            && tx.try_send(Chunk::Fail(e.clone())).is_err()
        {
            // No room for the failure: end the queue, so the reader finds it at its end.
            slot.tx = None;
        }
        e
    }

    /// Fail an upload stream because a binary message for it was malformed: the request
    /// reading it fails at once with `5011`. `false` when no such upload stream is open.
    pub fn fail_stream(&self, id: StreamId, e: ErrorObject) -> bool {
        let mut slots = self.lock();
        match slots.get_mut(&id) {
            Some(slot) if slot.direction == StreamDirection::Upload => {
                Self::fail_slot(slot, e);
                true
            }
            _ => false,
        }
    }

    /// A request naming these streams was admitted: their frames from now on wait for
    /// it rather than fill the unclaimed budget (the request claims the streams, or ends
    /// and frees them).
    pub fn reserve(&self, ids: &[StreamId]) {
        let mut slots = self.lock();
        for id in ids {
            if let Some(slot) = slots.get_mut(id) {
                slot.reserved = true;
            }
        }
    }

    /// Streams open now.
    pub fn open_count(&self) -> usize {
        self.lock().len()
    }

    #[allow(clippy::type_complexity)]
    fn take(
        &self,
        id: StreamId,
        want: StreamDirection,
    ) -> Result<(Option<mpsc::Receiver<Chunk>>, Option<u64>, Arc<Mutex<Option<ErrorObject>>>), ErrorObject> {
        let mut slots = self.lock();
        let slot = slots.get_mut(&id).ok_or_else(|| fail(ErrorCode::UnknownStream, format!("stream {} is not open", id.0)))?;
        if slot.direction != want {
            return Err(fail(ErrorCode::InvalidParameter, format!("stream {} is not a {want:?} stream", id.0)));
        }
        if slot.claimed {
            return Err(fail(ErrorCode::InvalidParameter, format!("stream {} is already used by another request", id.0)));
        }
        if let Some(e) = &slot.failed {
            return Err(e.clone());
        }
        slot.claimed = true;
        let buffered = std::mem::take(&mut slot.unclaimed_bytes);
        let r = (slot.rx.take(), slot.declared, Arc::clone(&slot.failure));
        drop(slots);
        self.release_unclaimed(buffered);
        Ok(r)
    }
}

impl StreamIo for StreamTable {
    fn upload(&self, id: StreamId, state: Arc<RequestState>, progress: Progress) -> Result<UploadReader, ErrorObject> {
        let (rx, _, failure) = self.take(id, StreamDirection::Upload)?;
        let rx = rx.ok_or_else(|| fail(ErrorCode::UnknownStream, format!("stream {} has no reader", id.0)))?;
        Ok(UploadReader { rx, buf: Bytes::new(), pos: 0, ended: false, state, progress, failure })
    }

    fn download(&self, id: StreamId, state: Arc<RequestState>, progress: Progress) -> Result<DownloadWriter, ErrorObject> {
        self.take(id, StreamDirection::Download)?;
        Ok(DownloadWriter {
            id,
            out: self.out.clone(),
            chunk: self.max_chunk,
            frame: Vec::new(),
            pool: FramePool::default(),
            seq: 0,
            bytes: 0,
            state,
            progress,
            failure: Arc::default(),
            finished: false,
        })
    }

    fn declared_length(&self, id: StreamId) -> Option<u64> {
        self.lock().get(&id).and_then(|s| s.declared)
    }
}

/// Read a whole failure slot.
pub fn failure_of(slot: &Arc<Mutex<Option<ErrorObject>>>) -> Option<ErrorObject> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: StreamId, sequence: u32, flags: u8, payload: &[u8]) -> Bytes {
        Frame { stream, sequence, flags, payload }.encode().into()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upload_in_order_then_eof() {
        let (out, _rx) = mpsc::channel(8);
        let t = Arc::new(StreamTable::new(out, 4, 64, 4));
        let id = t.open(StreamDirection::Upload, Some(10)).unwrap();
        let mut r = t.upload(id, RequestState::new(), Progress::none()).unwrap();
        let reader = tokio::task::spawn_blocking(move || {
            let mut v = Vec::new();
            r.read_to_end(&mut v).map(|_| v)
        });
        assert!(matches!(t.route(frame(id, 0, 0, b"abcd")).await, Routed::Ok));
        assert!(matches!(t.route(frame(id, 1, 0, b"efgh")).await, Routed::Ok));
        assert!(matches!(t.route(frame(id, 2, FLAG_FIN, b"ij")).await, Routed::Ok));
        assert_eq!(reader.await.unwrap().unwrap(), b"abcdefghij");
        assert!(matches!(t.route(frame(id, 3, 0, b"x")).await, Routed::Failed(_)), "nothing after FIN");
    }

    #[tokio::test]
    async fn out_of_sequence_and_unknown_and_wrong_direction() {
        let (out, _rx) = mpsc::channel(8);
        let t = StreamTable::new(out, 4, 64, 4);
        let up = t.open(StreamDirection::Upload, None).unwrap();
        let down = t.open(StreamDirection::Download, None).unwrap();
        assert!(matches!(t.route(frame(StreamId(99), 0, 0, b"a")).await, Routed::UnknownStream));
        assert!(matches!(t.route(frame(down, 0, 0, b"a")).await, Routed::Failed(_)));
        match t.route(frame(up, 1, 0, b"a")).await {
            Routed::Failed(e) => assert_eq!(e.code, 5011),
            other => panic!("{other:?}"),
        }
        // The failure sticks: a request taking the stream later learns why.
        assert_eq!(t.upload(up, RequestState::new(), Progress::none()).unwrap_err().code, 5011);
    }

    #[tokio::test]
    async fn unclaimed_buffer_is_bounded() {
        let (out, _rx) = mpsc::channel(8);
        let t = StreamTable::new(out, 4, 8, 4); // 2 chunks may wait for a reader
        let id = t.open(StreamDirection::Upload, None).unwrap();
        assert!(matches!(t.route(frame(id, 0, 0, b"aaaa")).await, Routed::Ok));
        assert!(matches!(t.route(frame(id, 1, 0, b"bbbb")).await, Routed::Ok));
        assert!(matches!(t.route(frame(id, 2, 0, b"cccc")).await, Routed::Failed(e) if e.code == 5011));
    }

    #[tokio::test]
    async fn unclaimed_budget_is_per_connection() {
        let (out, _rx) = mpsc::channel(8);
        let t = StreamTable::new(out, 4, 8, 8); // 8 bytes for all unclaimed streams together
        let a = t.open(StreamDirection::Upload, None).unwrap();
        let b = t.open(StreamDirection::Upload, None).unwrap();
        assert!(matches!(t.route(frame(a, 0, 0, b"aaaa")).await, Routed::Ok));
        assert!(matches!(t.route(frame(b, 0, 0, b"bbbb")).await, Routed::Ok));
        let c = t.open(StreamDirection::Upload, None).unwrap();
        assert!(matches!(t.route(frame(c, 0, 0, b"cccc")).await, Routed::Failed(e) if e.code == 5011));
        // Closing a stream (or a request claiming it) returns its share.
        t.close(a).unwrap();
        let d = t.open(StreamDirection::Upload, None).unwrap();
        assert!(matches!(t.route(frame(d, 0, 0, b"dddd")).await, Routed::Ok));
        let _r = t.upload(b, RequestState::new(), Progress::none()).unwrap();
        let e = t.open(StreamDirection::Upload, None).unwrap();
        assert!(matches!(t.route(frame(e, 0, 0, b"eeee")).await, Routed::Ok));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_for_an_admitted_request_wait_instead_of_failing() {
        // The request was sent first, as the document asks, but its worker has not taken
        // the stream yet (a busy machine): the frames wait for it, whatever their size.
        let (out, _rx) = mpsc::channel(8);
        let t = Arc::new(StreamTable::new(out, 4, 8, 4)); // 8 unclaimed bytes at most
        let id = t.open(StreamDirection::Upload, None).unwrap();
        t.reserve(&[id]);
        let sender = {
            let t = Arc::clone(&t);
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for (i, p) in [b"aaaa", b"bbbb", b"cccc", b"dddd"].into_iter().enumerate() {
                    outcomes.push(matches!(t.route(frame(id, i as u32, 0, p)).await, Routed::Ok));
                }
                outcomes.push(matches!(t.route(frame(id, 4, FLAG_FIN, b"")).await, Routed::Ok));
                outcomes
            })
        };
        let mut r = t.upload(id, RequestState::new(), Progress::none()).unwrap();
        let got = tokio::task::spawn_blocking(move || {
            let mut v = Vec::new();
            r.read_to_end(&mut v).map(|_| v)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(got, b"aaaabbbbccccdddd");
        assert!(sender.await.unwrap().into_iter().all(|ok| ok));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_reaches_a_reader_whose_queue_is_full() {
        let (out, _rx) = mpsc::channel(8);
        let t = Arc::new(StreamTable::new(out, 4, 8, 4));
        let id = t.open(StreamDirection::Upload, None).unwrap();
        let mut r = t.upload(id, RequestState::new(), Progress::none()).unwrap();
        for (i, p) in [b"aaaa", b"bbbb", b"cccc"].into_iter().enumerate() {
            assert!(matches!(t.route(frame(id, i as u32, 0, p)).await, Routed::Ok));
        }
        // The queue is full; a malformed frame for the stream fails it anyway.
        assert!(t.fail_stream(id, fail(ErrorCode::StreamFrameInvalid, "bad frame")));
        let failure = r.failure();
        let res = tokio::task::spawn_blocking(move || r.read_to_end(&mut Vec::new())).await.unwrap();
        assert!(res.is_err());
        assert_eq!(failure_of(&failure).unwrap().code, 5011);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abort_and_cancel_fail_the_reader() {
        let (out, _rx) = mpsc::channel(8);
        let t = Arc::new(StreamTable::new(out, 4, 64, 4));
        let id = t.open(StreamDirection::Upload, None).unwrap();
        let mut r = t.upload(id, RequestState::new(), Progress::none()).unwrap();
        let failure = r.failure();
        let h = tokio::task::spawn_blocking(move || r.read_to_end(&mut Vec::new()));
        assert!(matches!(t.route(frame(id, 0, FLAG_ABORT, b"")).await, Routed::Ok));
        assert!(h.await.unwrap().is_err());
        assert_eq!(failure_of(&failure).unwrap().code, 5009);

        let id = t.open(StreamDirection::Upload, None).unwrap();
        let state = RequestState::new();
        let mut r = t.upload(id, state.clone(), Progress::none()).unwrap();
        let failure = r.failure();
        let h = tokio::task::spawn_blocking(move || r.read_to_end(&mut Vec::new()));
        state.stop(Stop::TimedOut);
        t.close(id).unwrap(); // what the server does on stop: drops the sender
        assert!(h.await.unwrap().is_err());
        assert_eq!(failure_of(&failure).unwrap().code, 5008);
    }

    #[test]
    fn frame_buffers_come_back_once_sent() {
        let pool = FramePool::default();
        let mut b = pool.take(100);
        b.extend_from_slice(b"frame");
        let at = b.as_ptr();
        let msg = pool.send(b);
        assert_eq!(&msg[..], b"frame");
        let view = msg.slice(1..);
        drop(msg);
        assert!(pool.0.lock().unwrap().is_empty(), "not while a view of it lives");
        drop(view);
        let again = pool.take(100);
        assert_eq!((again.as_ptr(), again.len()), (at, 0), "the same buffer, emptied");
        assert!(pool.take(1000).capacity() >= 1000, "a larger one when asked");
        // At most KEEP idle buffers are kept.
        let sent: Vec<Bytes> = (0..10).map(|_| pool.send(pool.take(10))).collect();
        drop(sent);
        assert_eq!(pool.0.lock().unwrap().len(), FramePool::KEEP);
    }

    /// The frames queued for a download stream, decoded (stops at the end or at FIN).
    fn drain(rx: &mut mpsc::Receiver<Outgoing>, chunk: usize) -> Vec<(u32, u8, Vec<u8>)> {
        let mut frames = Vec::new();
        while let Ok(Outgoing::Binary(b)) = rx.try_recv() {
            let f = Frame::decode(&b, chunk).unwrap();
            frames.push((f.sequence, f.flags, f.payload.to_vec()));
        }
        frames
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn download_frames_at_odd_write_sizes_and_exact_boundaries() {
        let content: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for chunk in [1, 7, 16, 100] {
            for total in [0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk, 3 * chunk + 5, 999] {
                for writes in [1, 3, 64, 1000] {
                    let (out, mut rx) = mpsc::channel(2048);
                    let t = StreamTable::new(out, chunk, 64, 4);
                    let id = t.open(StreamDirection::Download, None).unwrap();
                    let mut w = t.download(id, RequestState::new(), Progress::none()).unwrap();
                    let data = content[..total.min(content.len())].to_vec();
                    let expected = data.clone();
                    let n = tokio::task::spawn_blocking(move || {
                        for piece in data.chunks(writes) {
                            w.write_all(piece)?;
                        }
                        w.write_all(&[])?;
                        w.finish()
                    })
                    .await
                    .unwrap()
                    .unwrap();
                    assert_eq!(n, expected.len() as u64);
                    let frames = drain(&mut rx, chunk);
                    // Full frames, then one FIN frame with the rest (empty when the
                    // content fills its frames exactly).
                    let (last, full) = frames.split_last().unwrap();
                    assert!(full.iter().all(|(_, flags, p)| *flags == 0 && p.len() == chunk), "{chunk}/{total}/{writes}");
                    assert_eq!(last.1, FLAG_FIN);
                    assert_eq!(last.2.len(), expected.len() % chunk, "{chunk}/{total}/{writes}");
                    assert!(frames.iter().enumerate().all(|(i, f)| f.0 == i as u32), "sequence numbers 0, 1, 2, …");
                    let got: Vec<u8> = frames.into_iter().flat_map(|f| f.2).collect();
                    assert_eq!(got, expected, "{chunk}/{total}/{writes}");
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_download_cancelled_mid_stream_fails_and_ends_with_abort() {
        let (out, mut rx) = mpsc::channel(64);
        let t = StreamTable::new(out, 4, 64, 4);
        let id = t.open(StreamDirection::Download, None).unwrap();
        let state = RequestState::new();
        let mut w = t.download(id, state.clone(), Progress::none()).unwrap();
        let failure = w.failure();
        let res = tokio::task::spawn_blocking(move || {
            w.write_all(b"0123456")?; // one full frame sent, three bytes waiting
            state.stop(Stop::Cancelled);
            w.write_all(b"7")?; // fills the frame: its send finds the request stopped
            w.finish()
        })
        .await
        .unwrap();
        assert!(res.is_err());
        assert_eq!(failure_of(&failure).unwrap().code, 5009);
        let frames = drain(&mut rx, 4);
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert_eq!(frames[0], (0, 0, b"0123".to_vec()));
        assert_eq!((frames[1].0, frames[1].1, frames[1].2.len()), (1, FLAG_ABORT, 0), "the next sequence number, ABORT");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_download_nobody_takes_holds_the_writer_at_the_queue() {
        // The connection's writer does not send (a client that stopped reading): the
        // request's writer waits at the bounded queue instead of buffering, and goes on
        // when the queue moves.
        let (out, mut rx) = mpsc::channel(2);
        let t = StreamTable::new(out, 4, 64, 4);
        let id = t.open(StreamDirection::Download, None).unwrap();
        let mut w = t.download(id, RequestState::new(), Progress::none()).unwrap();
        let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&written);
        let writer = tokio::task::spawn_blocking(move || {
            for i in 0..10u8 {
                w.write_all(&[i; 4])?;
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            w.finish()
        });
        // The queue holds two frames: however fast the writer runs, it is never more
        // than two frames ahead of what was taken.
        let mut frames = 0;
        while let Some(Outgoing::Binary(b)) = rx.recv().await {
            frames += 1;
            let done = written.load(std::sync::atomic::Ordering::SeqCst);
            assert!(done <= frames + 2, "{done} writes done with {frames} frames taken");
            if Frame::decode(&b, 4).unwrap().is_fin() {
                break;
            }
        }
        assert_eq!(writer.await.unwrap().unwrap(), 40);
        assert_eq!(frames, 11, "ten full frames and an empty FIN");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upload_reads_of_any_size_across_frames_of_any_size() {
        let content: Vec<u8> = (0..3000u32).map(|i| (i * 31 + i / 7) as u8).collect();
        for frame_len in [1, 5, 64, 1000] {
            for read_len in [1, 3, 64, 4096] {
                let (out, _rx) = mpsc::channel(8);
                let t = Arc::new(StreamTable::new(out, 1000, 4096, 4));
                let id = t.open(StreamDirection::Upload, None).unwrap();
                let mut r = t.upload(id, RequestState::new(), Progress::none()).unwrap();
                let reader = tokio::task::spawn_blocking(move || {
                    let mut got = Vec::new();
                    let mut buf = vec![0u8; read_len];
                    loop {
                        let n = r.read(&mut buf)?;
                        if n == 0 {
                            return Ok::<_, io::Error>(got);
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                });
                let pieces: Vec<&[u8]> = content.chunks(frame_len).collect();
                for (i, p) in pieces.iter().enumerate() {
                    assert!(matches!(t.route(frame(id, i as u32, 0, p)).await, Routed::Ok));
                }
                assert!(matches!(t.route(frame(id, pieces.len() as u32, FLAG_FIN, b"")).await, Routed::Ok));
                assert_eq!(reader.await.unwrap().unwrap(), content, "frames of {frame_len}, reads of {read_len}");
            }
        }
    }

    #[tokio::test]
    async fn malformed_frames_fail_the_stream_they_name() {
        let (out, _rx) = mpsc::channel(8);
        let t = StreamTable::new(out, 4, 64, 4);
        let id = t.open(StreamDirection::Upload, None).unwrap();
        // Too short to name a stream: refused, nothing failed.
        assert!(matches!(t.route(Bytes::from_static(&[1, 0, 0])).await, Routed::Failed(e) if e.code == 5011));
        // A payload over the limit, naming the stream: the stream fails too.
        assert!(matches!(t.route(frame(id, 0, 0, b"12345")).await, Routed::Failed(e) if e.code == 5011));
        assert_eq!(t.upload(id, RequestState::new(), Progress::none()).unwrap_err().code, 5011);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn download_frames_are_chunked_and_end_with_fin() {
        let (out, mut rx) = mpsc::channel(16);
        let t = StreamTable::new(out, 4, 64, 4);
        let id = t.open(StreamDirection::Download, None).unwrap();
        let mut w = t.download(id, RequestState::new(), Progress::none()).unwrap();
        let n = tokio::task::spawn_blocking(move || {
            w.write_all(b"0123456789")?;
            w.finish()
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(n, 10);
        let mut got = Vec::new();
        let mut seq = Sequencer::default();
        while let Ok(Outgoing::Binary(b)) = rx.try_recv() {
            let f = Frame::decode(&b, 4).unwrap();
            seq.accept(&f).unwrap();
            got.extend_from_slice(f.payload);
            if f.is_fin() {
                break;
            }
        }
        assert!(seq.ended());
        assert_eq!(got, b"0123456789");
    }
}
