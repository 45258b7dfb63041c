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
//! Workers are blocking code (`std::io::Read` / `Write` for kb-pki's streaming CMS),
//! run on tokio's blocking pool.

use crate::activity::{RequestState, Stop};
use crate::error::fail;
use kb_bridge_protocol::frame::{FLAG_ABORT, FLAG_FIN, Frame, Sequencer};
use kb_bridge_protocol::{ErrorObject, Event, Id, Notification, StreamDirection, StreamId};
use kb_types::ErrorCode;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the connection's writer task sends.
#[derive(Debug)]
pub enum Outgoing {
    /// A JSON text frame.
    Text(String),
    /// A binary stream frame.
    Binary(Vec<u8>),
    /// Close the connection with this WebSocket close code and reason.
    Close(u16, String),
}

/// The connection's outgoing queue.
pub type OutTx = mpsc::Sender<Outgoing>;

/// A chunk travelling to an upload reader.
#[derive(Debug)]
enum Chunk {
    Data(Vec<u8>),
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
    buf: Vec<u8>,
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
    buf: Vec<u8>,
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
            let _ = self.out.try_send(Outgoing::Binary(frame));
        }
    }
}

impl DownloadWriter {
    fn send(&mut self, payload_len: usize, flags: u8) -> io::Result<()> {
        if let Some(s) = self.state.stopped() {
            let e = stop_error(s);
            let err = stream_io_error(&e);
            *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            return Err(err);
        }
        let frame = Frame { stream: self.id, sequence: self.seq, flags, payload: &self.buf[..payload_len] }.encode();
        self.seq = self.seq.wrapping_add(1);
        self.out.blocking_send(Outgoing::Binary(frame)).map_err(|_| {
            let e = fail(ErrorCode::RequestCancelled, "the connection closed");
            let err = stream_io_error(&e);
            *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            err
        })?;
        self.buf.drain(..payload_len);
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
        let n = self.buf.len();
        self.send(n, FLAG_FIN)?;
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
        self.buf.extend_from_slice(data);
        self.bytes += data.len() as u64;
        while self.buf.len() >= self.chunk {
            self.send(self.chunk, 0)?;
        }
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
            max_chunk,
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

    /// Route one binary frame. Waits (back-pressure) only when a request reads the stream.
    pub async fn route(&self, frame: Frame<'_>) -> Routed {
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
                chunks.push(Chunk::Data(frame.payload.to_vec()));
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
        Ok(UploadReader { rx, buf: Vec::new(), pos: 0, ended: false, state, progress, failure })
    }

    fn download(&self, id: StreamId, state: Arc<RequestState>, progress: Progress) -> Result<DownloadWriter, ErrorObject> {
        self.take(id, StreamDirection::Download)?;
        Ok(DownloadWriter {
            id,
            out: self.out.clone(),
            chunk: self.max_chunk,
            buf: Vec::with_capacity(self.max_chunk),
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

    fn frame(stream: StreamId, sequence: u32, flags: u8, payload: &[u8]) -> Frame<'_> {
        Frame { stream, sequence, flags, payload }
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
