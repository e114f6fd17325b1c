//! pushwire's own HTTP/2 connection, over TLS (ALPN `h2`) or cleartext
//! (prior knowledge, `server::front`), built on the `h2` crate.
//!
//! actix-http's HTTP/2 dispatcher spawns every request as a task of its own
//! that nothing cancels: not the stream's reset, not the connection's close.
//! An open answer (a long poll, an event stream) then outlives its client,
//! and the limits, which count TCP connections, never see it: 8 connections
//! × 50,000 long polls, closed at once, left 400,000 polls held and 2.3 GB of
//! RSS (issue 20). Here every stream is a future owned by its connection:
//!
//! - at most [`MAX_STREAMS`] run at once (advertised in SETTINGS; the `h2`
//!   crate refuses more), so a connection holds what a hundred clients would;
//! - a stream the client resets is dropped at once, answer and subscription
//!   with it, and all of them are dropped when the connection ends;
//! - a client that resets streams faster than it lets them be answered (the
//!   "rapid reset" of CVE-2023-44487) is told GOAWAY (`ENHANCE_YOUR_CALM`);
//! - a header block may hold [`MAX_HEADER_LIST`] bytes and must arrive whole
//!   within `--request-timeout` ([`Watched`]); request bodies are timed where
//!   they are read (`routes::api`), as over HTTP/1;
//! - an answer the client does not take (no flow-control window granted) for
//!   `--write-timeout` is reset and counted, as a stalled socket is.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::header::{self, HeaderValue};
use actix_http::{HttpMessage, Method, Payload, Request, Response};
use actix_service::Service;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep, sleep, timeout};

use super::settings::Settings;
use crate::stats::{Rejection, Stats};
use crate::wire::{ConnMeter, LINGER, Metered, Timeouts, expired};

/// Streams one connection may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`).
pub const MAX_STREAMS: u32 = 100;

/// Largest header list a request may have, decoded (`SETTINGS_MAX_HEADER_LIST_SIZE`),
/// as for an HTTP/1 head; a larger one is answered 431 by the `h2` crate.
pub const MAX_HEADER_LIST: u32 = 16 * 1024;

/// Bytes of an answer buffered per stream before the client's window takes
/// them (the `h2` crate's default is 400 KiB: 40 MiB for a full connection).
const SEND_BUFFER: usize = 64 * 1024;

/// Streams a connection may reset before they are answered, beyond those
/// answered, before it is told to go away.
const RESET_ALLOWANCE: u64 = 100;

/// How one stream ended, as its connection counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Answered,
    /// The client reset the stream before its answer was complete.
    Reset,
    /// The client did not take the answer within `--write-timeout`, or the
    /// answer failed: the stream was reset by us.
    Cut,
}

/// Serves one HTTP/2 connection with `app` until it closes; its streams end with it.
pub async fn serve<T, S, B>(io: T, app: Rc<S>, settings: Settings, peer: Option<SocketAddr>)
where
    T: AsyncRead + AsyncWrite + Metered + Unpin + 'static,
    S: Service<Request> + 'static,
    S::Response: Into<Response<B>>,
    S::Error: Into<Response<BoxBody>>,
    B: MessageBody + 'static,
{
    let meter = io.meter().clone();
    meter.multiplex();
    let stats = meter.stats().clone();
    let io = Watched::new(io, settings.timeouts.request, stats.clone());
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_send_buffer_size(SEND_BUFFER)
        .handshake::<_, Bytes>(io);
    let mut conn = match timeout(settings.timeouts.request, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return tracing::debug!(error = %e, "HTTP/2 handshake failed"),
        Err(_) => return stats.rejected(Rejection::RequestTimeout),
    };
    let mut streams = FuturesUnordered::new();
    let (mut answered, mut reset) = (0u64, 0u64);
    // Idle: no stream for the keep-alive. Closing: a GOAWAY was sent, and a
    // client that neither finishes nor acknowledges it is let go after this.
    let mut idle = pin!(sleep(settings.keep_alive));
    let mut closing: Option<Pin<Box<Sleep>>> = None;
    let mut shutdown = pin!(settings.shutdown.wait());
    loop {
        tokio::select! {
            accepted = poll_fn(|cx| conn.poll_accept(cx)) => match accepted {
                Some(Ok((req, respond))) => {
                    let answer = answer(app.clone(), req, respond, settings.timeouts, peer, meter.clone());
                    streams.push(Box::pin(answer));
                }
                Some(Err(e)) => break tracing::debug!(error = %e, "HTTP/2 connection failed"),
                None => break,
            },
            Some(ending) = streams.next() => {
                match ending {
                    Ending::Answered => answered += 1,
                    Ending::Reset => reset += 1,
                    Ending::Cut => {}
                }
                if reset > answered + RESET_ALLOWANCE && closing.is_none() {
                    tracing::info!(?peer, reset, answered, "HTTP/2 client resets streams faster than they are answered");
                    stats.rejected(Rejection::Http2Resets);
                    conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                    closing = Some(Box::pin(sleep(settings.timeouts.request)));
                }
                if streams.is_empty() {
                    // The last stream's answer may still be on its way out:
                    // a closing connection gets its time again to send it.
                    idle.as_mut().reset(Instant::now() + settings.keep_alive);
                    if let Some(closing) = &mut closing {
                        closing.as_mut().reset(Instant::now() + settings.timeouts.request);
                    }
                }
            },
            () = &mut idle, if streams.is_empty() && closing.is_none() => {
                conn.graceful_shutdown();
                closing = Some(Box::pin(sleep(settings.timeouts.request)));
            }
            () = &mut shutdown, if closing.is_none() => {
                conn.graceful_shutdown();
                closing = Some(Box::pin(sleep(settings.timeouts.request)));
            }
            () = async { closing.as_mut().expect("guarded").await }, if closing.is_some() && streams.is_empty() => break,
        }
    }
}

/// Answers one stream with `app`, until the answer is complete or the client
/// resets the stream.
async fn answer<S, B>(
    app: Rc<S>,
    req: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    timeouts: Timeouts,
    peer: Option<SocketAddr>,
    meter: Arc<ConnMeter>,
) -> Ending
where
    S: Service<Request> + 'static,
    S::Response: Into<Response<B>>,
    S::Error: Into<Response<BoxBody>>,
    B: MessageBody + 'static,
{
    let (parts, body) = req.into_parts();
    let head_only = parts.method == Method::HEAD;
    // Shared with the route's payload: what the route leaves unread is
    // drained once the answer is out (see `drain`).
    let request = Rc::new(RefCell::new(body));
    let payload = match request.borrow().is_end_stream() {
        true => Payload::None,
        false => Payload::Stream { payload: Box::pin(Body(request.clone())) as actix_http::BoxedPayloadStream },
    };
    let mut req = Request::with_payload(payload);
    let head = req.head_mut();
    head.uri = parts.uri;
    head.method = parts.method;
    head.version = parts.version;
    head.headers = parts.headers.into();
    head.peer_addr = peer;
    req.extensions_mut().insert(meter.clone());

    let call = app.call(req);
    let response: Response<BoxBody> = tokio::select! {
        answered = call => match answered {
            Ok(response) => response.into().map_into_boxed_body(),
            Err(error) => error.into(),
        },
        _ = poll_fn(|cx| respond.poll_reset(cx)) => return Ending::Reset,
    };
    let (head, body) = response.into_parts();
    let size = body.size();
    let end = head_only || size.is_eof();
    let mut send = match respond.send_response(response_head(head.head(), size), end) {
        Ok(send) => send,
        Err(_) => return Ending::Reset,
    };
    if !end {
        if let Some(ending) = send_body(&mut send, body, timeouts.write, meter.stats()).await {
            return ending;
        }
        if send.send_data(Bytes::new(), true).is_err() {
            return Ending::Reset;
        }
    }
    drain(&request, timeouts.request).await;
    Ending::Answered
}

/// Sends an answer's body; `Some` when the stream ended before it was all sent.
async fn send_body(
    send: &mut SendStream<Bytes>,
    body: BoxBody,
    write_timeout: Duration,
    stats: &Stats,
) -> Option<Ending> {
    let mut body = pin!(body);
    loop {
        let chunk = tokio::select! {
            chunk = poll_fn(|cx| body.as_mut().poll_next(cx)) => chunk,
            _ = poll_fn(|cx| send.poll_reset(cx)) => return Some(Ending::Reset),
        };
        match chunk {
            Some(Ok(chunk)) => {
                if let Some(ending) = send_data(send, chunk, write_timeout, stats).await {
                    return Some(ending);
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "an HTTP/2 answer's body failed");
                send.send_reset(Reason::INTERNAL_ERROR);
                return Some(Ending::Cut);
            }
            None => return None,
        }
    }
}

/// Most of a request body read and dropped after its answer.
const DRAIN: usize = 1024 * 1024;

/// Reads and drops what is left of a request body once its answer is out (a
/// `413` sent on the body's announced length, say), up to [`DRAIN`] bytes
/// within `within`. Dropping it unread would reset the stream (RST_STREAM
/// NO_ERROR, which RFC 9113 8.1 allows), and some clients (curl 7.88, the h2
/// crate) then lose the answer they were sent.
async fn drain(request: &RefCell<RecvStream>, within: Duration) {
    if request.borrow().is_end_stream() {
        return; // the common case: nothing left, and no timer for it
    }
    let mut left = DRAIN;
    let _ = timeout(within, async {
        while left > 0 {
            match poll_fn(|cx| request.borrow_mut().poll_data(cx)).await {
                Some(Ok(data)) => {
                    let _ = request.borrow_mut().flow_control().release_capacity(data.len());
                    left = left.saturating_sub(data.len());
                }
                Some(Err(_)) | None => break,
            }
        }
    })
    .await;
}

/// Sends `chunk` as the client's window allows; `Some` when the stream ended
/// instead: reset by the client, or cut for taking nothing for `write_timeout`.
async fn send_data(
    send: &mut SendStream<Bytes>,
    mut chunk: Bytes,
    write_timeout: Duration,
    stats: &Stats,
) -> Option<Ending> {
    while !chunk.is_empty() {
        send.reserve_capacity(chunk.len());
        // Mostly granted at once: a timer only for a client that makes us wait.
        let granted = match capacity(send).now_or_never() {
            Some(granted) => Ok(granted),
            None => timeout(write_timeout, capacity(send)).await,
        };
        match granted {
            Ok(Some(n)) => {
                let part = chunk.split_to(n.min(chunk.len()));
                if send.send_data(part, false).is_err() {
                    return Some(Ending::Reset);
                }
            }
            Ok(None) => return Some(Ending::Reset),
            Err(_) => {
                stats.rejected(Rejection::WriteTimeout);
                send.send_reset(Reason::CANCEL);
                return Some(Ending::Cut);
            }
        }
    }
    None
}

/// Send capacity granted on the stream; `None` once the stream is gone.
async fn capacity(send: &mut SendStream<Bytes>) -> Option<usize> {
    loop {
        match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(0)) => continue,
            Some(Ok(n)) => return Some(n),
            Some(Err(_)) | None => return None,
        }
    }
}

/// The HTTP/2 head of an answer: its status and headers, without those that
/// only HTTP/1 has (RFC 9113, 8.2.2), with its length when known, and a `date`.
fn response_head(head: &actix_http::ResponseHead, size: BodySize) -> http::Response<()> {
    let mut response = http::Response::new(());
    *response.status_mut() = head.status;
    let headers = response.headers_mut();
    for (name, value) in head.headers.iter() {
        let http1_only = matches!(*name, header::CONNECTION | header::TRANSFER_ENCODING | header::UPGRADE)
            || name == "keep-alive"
            || name == "proxy-connection";
        if !http1_only && *name != header::CONTENT_LENGTH {
            headers.append(name.clone(), value.clone());
        }
    }
    if let BodySize::Sized(len) = size {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if !headers.contains_key(header::DATE) {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        headers.insert(header::DATE, HeaderValue::try_from(date).expect("an HTTP date is a header value"));
    }
    response
}

/// A request body as actix's payload: data as it comes, its window given
/// back as it is taken, so a client can send no more than is being read.
struct Body(Rc<RefCell<RecvStream>>);

impl futures_util::Stream for Body {
    type Item = Result<Bytes, actix_http::error::PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut body = self.0.borrow_mut();
        match std::task::ready!(body.poll_data(cx)) {
            Some(Ok(data)) => {
                let _ = body.flow_control().release_capacity(data.len());
                Poll::Ready(Some(Ok(data)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(io::Error::other(e).into()))),
            None => Poll::Ready(None),
        }
    }
}

/// A header block's frames, as they arrive: whether one is unfinished.
#[derive(Debug, Default)]
struct Frames {
    /// Bytes of the client's connection preface still to pass.
    preface: usize,
    /// The frame header being read, and how much of it has arrived.
    header: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to arrive.
    remaining: usize,
    /// The current frame is part of a header block and ends it.
    ends_block: bool,
    /// A header block has started and not ended.
    open: bool,
}

const PREFACE: usize = 24;
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

impl Frames {
    fn new() -> Frames {
        Frames { preface: PREFACE, ..Frames::default() }
    }

    fn scan(&mut self, mut bytes: &[u8]) {
        let skip = self.preface.min(bytes.len());
        self.preface -= skip;
        bytes = &bytes[skip..];
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(bytes.len());
                self.remaining -= n;
                bytes = &bytes[n..];
            } else {
                let n = (self.header.len() - self.have).min(bytes.len());
                self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                self.have += n;
                bytes = &bytes[n..];
                if self.have < self.header.len() {
                    break;
                }
                self.have = 0;
                let [a, b, c, kind, flags, ..] = self.header;
                self.remaining = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                let in_block = matches!(kind, HEADERS | PUSH_PROMISE | CONTINUATION);
                self.ends_block = in_block && flags & END_HEADERS != 0;
                self.open |= in_block;
            }
            if self.remaining == 0 && self.have == 0 && self.ends_block {
                self.open = false;
                self.ends_block = false;
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The socket of an HTTP/2 connection, timing its header blocks: one
    /// started must arrive whole within `--request-timeout` (slowly sent
    /// CONTINUATION frames otherwise hold a connection's partial block for
    /// as long as the client likes). Its shutdown lingers ([`LINGER`]).
    struct Watched<T> {
        #[pin]
        io: T,
        frames: Frames,
        limit: Duration,
        deadline: Option<Pin<Box<Sleep>>>,
        stats: Arc<Stats>,
        // Set once the write side is shut: the linger's end.
        linger: Option<Pin<Box<Sleep>>>,
    }
}

impl<T> Watched<T> {
    fn new(io: T, limit: Duration, stats: Arc<Stats>) -> Watched<T> {
        Watched { io, frames: Frames::new(), limit, deadline: None, stats, linger: None }
    }
}

impl<T: AsyncRead> AsyncRead for Watched<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.io.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.frames.scan(&buf.filled()[before..]);
        }
        if !this.frames.open {
            *this.deadline = None;
        } else if expired(this.deadline, *this.limit, cx) {
            this.stats.rejected(Rejection::RequestTimeout);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "HTTP/2 header block not received in time",
            )));
        }
        result
    }
}

impl<T: AsyncRead + AsyncWrite> AsyncWrite for Watched<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    /// Shuts the write side (the client reads our last frames, then the
    /// end), then reads until the client closes too or [`LINGER`] passes.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        if this.linger.is_none() {
            std::task::ready!(this.io.as_mut().poll_shutdown(cx))?;
            *this.linger = Some(Box::pin(sleep(LINGER)));
        }
        let mut sink = [0u8; 1024];
        loop {
            if this.linger.as_mut().is_some_and(|linger| linger.as_mut().poll(cx).is_ready()) {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut sink);
            match std::task::ready!(this.io.as_mut().poll_read(cx, &mut buf)) {
                Ok(()) if !buf.filled().is_empty() => {}
                Ok(()) | Err(_) => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Frames;

    fn frame(kind: u8, flags: u8, len: usize) -> Vec<u8> {
        let mut bytes = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags, 0, 0, 0, 1];
        bytes.resize(9 + len, 0);
        bytes
    }

    #[test]
    fn a_header_block_is_open_until_its_end_headers_frame_is_whole() {
        let mut frames = Frames::new();
        frames.scan(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        frames.scan(&frame(0x4, 0, 6)); // SETTINGS
        assert!(!frames.open);
        frames.scan(&frame(0x1, 0, 100)); // HEADERS without END_HEADERS
        assert!(frames.open);
        let last = frame(0x9, 0x4, 50); // CONTINUATION with END_HEADERS, byte by byte
        for byte in &last[..last.len() - 1] {
            frames.scan(std::slice::from_ref(byte));
            assert!(frames.open);
        }
        frames.scan(&last[last.len() - 1..]);
        assert!(!frames.open);
    }

    #[test]
    fn a_whole_headers_frame_with_data_after_it_leaves_no_block_open() {
        let mut frames = Frames::new();
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(0x1, 0x4 | 0x1, 30));
        bytes.extend(frame(0x0, 0, 1000)); // DATA
        frames.scan(&bytes);
        assert!(!frames.open);
        frames.scan(&frame(0x1, 0, 0)[..5]);
        assert!(!frames.open, "not before its header says what it is");
    }
}
