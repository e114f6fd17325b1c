//! Counting bytes on the wire. Every accepted socket is wrapped in a
//! [`MeteredStream`]; what it reads and writes is attributed to the transport
//! of the request being served on it, so the counters include request and
//! response headers, chunked framing and WebSocket frame headers.
//!
//! Bytes read before a request is routed (its request line and headers) wait
//! in the connection's meter until the request is classified by
//! [`ConnMeter::begin`].
//!
//! The same wrapper bounds the time a client may take: to send a whole
//! request head once it has started one (`--request-timeout`, for every
//! request on the connection, where actix-http only times the first), and to
//! read what is written to it (`--write-timeout`). Either expiring fails the
//! socket, which ends the connection and everything served on it. A
//! WebSocket session times its own writes instead
//! ([`ConnMeter::writes_timed_by_session`]), so that it can close with 1013.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Sleep, sleep};

use crate::lab::inspect::{CAPTURE, Inspected};
use crate::limits::Permit;
use crate::stats::{Counters, Rejection, Stats, Traffic};
use crate::transport_kind::Transport;

/// Where a connection is in its requests, which decides whose bytes it reads.
///
/// ```text
///   Head --begin--> Request --end--> Between --bytes--> Head ...
///     \________________ multiplex ________________/--> Multiplexed (for good)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// A head is arriving and not routed yet: its bytes wait, unclaimed, for
    /// the request they belong to, and `--request-timeout` runs. A new
    /// connection starts here: it owes its first request from the accept.
    Head,
    /// A routed request's bytes: counted for its transport.
    Request,
    /// The request has been read; the next byte starts the next head.
    Between,
    /// HTTP/2: every byte is the connection's ([`Traffic::Http2`]), and its
    /// header blocks are timed by the HTTP/2 connection.
    Multiplexed,
}

impl Phase {
    fn from_u8(value: u8) -> Phase {
        [Phase::Head, Phase::Request, Phase::Between, Phase::Multiplexed][usize::from(value)]
    }
}

/// One connection's byte accounting; shared by its stream and its requests.
#[derive(Debug)]
pub struct ConnMeter {
    stats: Arc<Stats>,
    current: AtomicU8,
    /// A [`Phase`].
    phase: AtomicU8,
    unclaimed_in: AtomicU64,
    /// Whether the current request belongs to an inspected client (checked
    /// before touching `capture` on the delivery path).
    inspected: AtomicBool,
    /// Whether the head being read is kept (its request line tags a page).
    keeping_head: AtomicBool,
    /// The session on the connection bounds its writes itself: the stream does not.
    session_times_writes: AtomicBool,
    capture: Mutex<Capture>,
    /// This connection's own totals, for the log line a session ends with.
    sent: AtomicU64,
    received: AtomicU64,
}

/// The teaching panel's view of this connection.
#[derive(Debug, Default)]
struct Capture {
    /// The raw head of the request being read (up to [`CAPTURE`] bytes).
    head: Vec<u8>,
    /// The inspected client and transport of the current request.
    client: Option<(Arc<Inspected>, Transport)>,
}

impl ConnMeter {
    pub fn new(stats: Arc<Stats>) -> ConnMeter {
        ConnMeter {
            stats,
            current: AtomicU8::new(Traffic::Other.index() as u8),
            phase: AtomicU8::new(Phase::Head as u8),
            unclaimed_in: AtomicU64::new(0),
            inspected: AtomicBool::new(false),
            keeping_head: AtomicBool::new(false),
            session_times_writes: AtomicBool::new(false),
            capture: Mutex::default(),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }
    }

    /// The connection speaks HTTP/2 ([`Phase::Multiplexed`]): its frames
    /// interleave many requests, so its bytes, those read so far included,
    /// are counted as HTTP/2's and not captured; its requests are still
    /// counted per transport. Set once, when HTTP/2 is negotiated or its
    /// cleartext preface read.
    pub fn multiplex(&self) {
        self.set_phase(Phase::Multiplexed);
        self.current.store(Traffic::Http2.index() as u8, Ordering::Relaxed);
        self.keeping_head.store(false, Ordering::Relaxed);
        let unclaimed = self.unclaimed_in.swap(0, Ordering::Relaxed);
        Counters::add(&self.stats.get(Traffic::Http2).bytes_received, unclaimed);
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    fn capture(&self) -> std::sync::MutexGuard<'_, Capture> {
        self.capture.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// A head is being read, and `--request-timeout` runs.
    fn reading_head(&self) -> bool {
        self.phase() == Phase::Head
    }

    fn current(&self) -> Traffic {
        Traffic::from_index(usize::from(self.current.load(Ordering::Relaxed)))
    }

    /// A request for `traffic` starts: it owns the bytes read so far. With an
    /// inspected client and a transport, that lane gets the request head and
    /// this connection's bytes until the next request.
    pub fn begin(&self, traffic: Traffic, client: Option<Arc<Inspected>>) {
        if self.phase() == Phase::Multiplexed {
            return;
        }
        self.current.store(traffic.index() as u8, Ordering::Relaxed);
        self.set_phase(Phase::Request);
        let unclaimed = self.unclaimed_in.swap(0, Ordering::Relaxed);
        Counters::add(&self.stats.get(traffic).bytes_received, unclaimed);
        let kept_head = self.keeping_head.swap(false, Ordering::Relaxed);
        if client.is_none() && !kept_head && !self.inspected.load(Ordering::Relaxed) {
            return; // nothing inspected before, during or after: no lock
        }
        let mut capture = self.capture();
        let head = std::mem::take(&mut capture.head);
        capture.client = match (client, traffic) {
            (Some(client), Traffic::Stream(transport)) => Some((client, transport)),
            _ => None,
        };
        self.inspected.store(capture.client.is_some(), Ordering::Relaxed);
        if let Some((client, transport)) = &capture.client {
            let lane = client.lane(*transport);
            lane.bytes_received.fetch_add(unclaimed, Ordering::Relaxed);
            lane.begin(head);
        }
    }

    /// From now on the session that owns the connection bounds its writes by
    /// `--write-timeout` itself (a WebSocket, which then closes with 1013 and
    /// counts the client slow); the stream stops timing them, so that two
    /// deadlines of the same length do not race to end it two ways.
    pub fn writes_timed_by_session(&self) {
        self.session_times_writes.store(true, Ordering::Relaxed);
    }

    /// Whether the stream bounds how long a write may wait.
    fn times_writes(&self) -> bool {
        !self.session_times_writes.load(Ordering::Relaxed)
    }

    /// The request has been read; bytes read from now on belong to the next one.
    pub fn end(&self) {
        if self.phase() == Phase::Request {
            self.set_phase(Phase::Between);
        }
    }

    /// Counts bytes read; true when they start the head of a new request.
    fn read(&self, bytes: &[u8]) -> bool {
        let n = bytes.len() as u64;
        Counters::add(&self.received, n);
        let phase = self.phase();
        if matches!(phase, Phase::Request | Phase::Multiplexed) {
            Counters::add(&self.stats.get(self.current()).bytes_received, n);
            if self.inspected.load(Ordering::Relaxed)
                && let Some((client, transport)) = &self.capture().client
            {
                client.lane(*transport).bytes_received.fetch_add(n, Ordering::Relaxed);
            }
            false
        } else if n > 0 {
            let started = phase == Phase::Between;
            self.set_phase(Phase::Head);
            Counters::add(&self.unclaimed_in, n);
            // The next request's head, kept until it is routed, and only for
            // requests that tag an inspected page (a scan of the head's first
            // line; frames and other requests never lock or copy).
            let keeping = self.keeping_head.load(Ordering::Relaxed);
            if keeping || crate::lab::inspect::tags_a_client(bytes) {
                self.keeping_head.store(true, Ordering::Relaxed);
                let mut capture = self.capture();
                let room = CAPTURE.saturating_sub(capture.head.len());
                capture.head.extend_from_slice(&bytes[..room.min(bytes.len())]);
            }
            started
        } else {
            false
        }
    }

    /// A payload of `plain` bytes is about to be written as `sent`
    /// compressed bytes: counted for the transport (and the page's lane)
    /// whose bytes the connection carries now.
    pub fn compressed(&self, plain: usize, sent: usize) {
        self.stats.get(self.current()).compressed(plain, sent);
        if self.inspected.load(Ordering::Relaxed)
            && let Some((client, transport)) = &self.capture().client
        {
            let lane = client.lane(*transport);
            lane.compressed_from.fetch_add(plain as u64, Ordering::Relaxed);
            lane.compressed_to.fetch_add(sent as u64, Ordering::Relaxed);
        }
    }

    fn wrote(&self, bytes: &[u8]) {
        Counters::add(&self.stats.get(self.current()).bytes_sent, bytes.len() as u64);
        Counters::add(&self.sent, bytes.len() as u64);
        if self.inspected.load(Ordering::Relaxed)
            && let Some((client, transport)) = &self.capture().client
        {
            client.lane(*transport).wrote(bytes, *transport == Transport::Sse);
        }
    }
}

/// A connection's byte totals at one instant, to tell what a session carried since.
#[derive(Debug, Clone)]
pub struct Mark {
    meter: Arc<ConnMeter>,
    sent: u64,
    received: u64,
}

impl Mark {
    pub fn now(meter: Arc<ConnMeter>) -> Mark {
        let sent = meter.sent.load(Ordering::Relaxed);
        let received = meter.received.load(Ordering::Relaxed);
        Mark { meter, sent, received }
    }

    /// The connection's meter.
    pub fn meter(&self) -> &ConnMeter {
        &self.meter
    }

    /// Bytes `(sent, received)` on the connection since the mark.
    pub fn since(&self) -> (u64, u64) {
        let sent = self.meter.sent.load(Ordering::Relaxed);
        let received = self.meter.received.load(Ordering::Relaxed);
        (sent - self.sent, received - self.received)
    }
}

impl Drop for ConnMeter {
    fn drop(&mut self) {
        // Bytes of a request that was never routed (a malformed one, say).
        Counters::add(&self.stats.get(Traffic::Other).bytes_received, *self.unclaimed_in.get_mut());
    }
}

/// Bytes read from a socket per call by [`poll_read_into`].
const READ_CHUNK: usize = 4096;

/// Reads what `io` has and appends it to `read`, through a buffer on the
/// worker's stack: a connection waiting for its peer then holds no read
/// buffer, only what it has read of something incomplete. `Ok(0)`: the peer
/// closed its side.
pub fn poll_read_into<T: AsyncRead + Unpin>(
    io: &mut T,
    cx: &mut Context<'_>,
    read: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
    let mut buf = ReadBuf::uninit(&mut chunk);
    std::task::ready!(Pin::new(io).poll_read(cx, &mut buf))?;
    read.extend_from_slice(buf.filled());
    Poll::Ready(Ok(buf.filled().len()))
}

/// The largest write buffer kept as a thread's spare.
const SPARE_MAX: usize = 64 * 1024;

thread_local! {
    /// A write buffer handed from connection to connection on one worker:
    /// what is due is encoded into it and written at once, so a delivery
    /// allocates nothing and an idle connection keeps no buffer of its own.
    static SPARE: Cell<BytesMut> = Cell::new(BytesMut::new());
}

/// The thread's spare write buffer, empty; a new one while it is lent out.
pub fn lend_buffer() -> BytesMut {
    SPARE.take()
}

/// Keeps `buf`'s room for the next writer on this thread, unless a long
/// catch-up grew it past what is worth keeping.
pub fn give_back_buffer(mut buf: BytesMut) {
    if buf.capacity() > 0 && buf.capacity() <= SPARE_MAX {
        buf.clear();
        SPARE.set(buf);
    }
}

/// The time limits a [`MeteredStream`] enforces.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the first byte of a request head to its routing.
    pub request: Duration,
    /// How long a write may wait for the client to make room.
    pub write: Duration,
}

/// What a client that started a request and stalled gets before the close
/// (the close delimits the body).
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n\
connection: close\r\n\r\n\
{\"error\":{\"code\":\"request_timeout\",\"message\":\"the request did not arrive whole in time\"}}";

pin_project_lite::pin_project! {
    /// A socket that reports every byte through its [`ConnMeter`], holds the
    /// connection's place (its [`Permit`]), and enforces [`Timeouts`].
    pub struct MeteredStream<T> {
        #[pin]
        inner: T,
        meter: Arc<ConnMeter>,
        timeouts: Timeouts,
        // Allocated only while a deadline runs: idle connections carry none.
        head_deadline: Option<Pin<Box<Sleep>>>,
        write_deadline: Option<Pin<Box<Sleep>>>,
        _permit: Option<Permit>,
    }
}

/// A socket that knows its connection's meter.
pub trait Metered {
    fn meter(&self) -> &Arc<ConnMeter>;
}

impl<T> Metered for MeteredStream<T> {
    fn meter(&self) -> &Arc<ConnMeter> {
        &self.meter
    }
}

impl<T> MeteredStream<T> {
    pub fn new(inner: T, meter: Arc<ConnMeter>, timeouts: Timeouts, permit: Option<Permit>) -> Self {
        MeteredStream { inner, meter, timeouts, head_deadline: None, write_deadline: None, _permit: permit }
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

/// How long a connection being closed still reads (and drops) what its
/// client sends after the server's last bytes: a socket closed with unread
/// bytes is reset, and the reset can overtake the answer just sent (a 431, an
/// HTTP/2 GOAWAY).
pub const LINGER: Duration = Duration::from_secs(1);

/// Polls the deadline (armed at `after` from now if none runs); true once it passed.
pub fn expired(deadline: &mut Option<Pin<Box<Sleep>>>, after: Duration, cx: &mut Context<'_>) -> bool {
    deadline.get_or_insert_with(|| Box::pin(sleep(after))).as_mut().poll(cx).is_ready()
}

impl<T: AsyncRead + AsyncWrite> AsyncRead for MeteredStream<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        let before = buf.filled().len();
        let result = this.inner.as_mut().poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result
            && this.meter.read(&buf.filled()[before..])
        {
            // A new request: its own time starts now.
            *this.head_deadline = None;
        }
        if !this.meter.reading_head() {
            *this.head_deadline = None;
        } else if result.is_pending() && expired(this.head_deadline, this.timeouts.request, cx) {
            // Best effort: the client learns why, if its socket takes it now.
            if let Poll::Ready(Ok(n)) = this.inner.poll_write(cx, REQUEST_TIMEOUT) {
                this.meter.wrote(&REQUEST_TIMEOUT[..n]);
            }
            this.meter.stats.rejected(Rejection::RequestTimeout);
            return Poll::Ready(Err(timed_out("request head not received in time")));
        }
        result
    }
}

impl<T: AsyncWrite> AsyncWrite for MeteredStream<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write(cx, buf);
        match result {
            Poll::Ready(Ok(n)) => {
                *this.write_deadline = None;
                this.meter.wrote(&buf[..n]);
            }
            Poll::Pending if this.meter.times_writes() && expired(this.write_deadline, this.timeouts.write, cx) => {
                this.meter.stats.rejected(Rejection::WriteTimeout);
                return Poll::Ready(Err(timed_out("the client did not read in time")));
            }
            _ => {}
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write_vectored(cx, bufs);
        match result {
            Poll::Ready(Ok(mut n)) => {
                *this.write_deadline = None;
                for buf in bufs {
                    let part = n.min(buf.len());
                    this.meter.wrote(&buf[..part]);
                    n -= part;
                    if n == 0 {
                        break;
                    }
                }
            }
            Poll::Pending if this.meter.times_writes() && expired(this.write_deadline, this.timeouts.write, cx) => {
                this.meter.stats.rejected(Rejection::WriteTimeout);
                return Poll::Ready(Err(timed_out("the client did not read in time")));
            }
            _ => {}
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
