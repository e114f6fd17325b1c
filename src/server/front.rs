//! pushwire's own HTTP/1 path, for the connections it keeps: SSE streams,
//! long polls and WebSocket handshakes.
//!
//! An SSE stream and a held long poll are ordinary HTTP/1 responses, so under
//! actix-http's dispatcher such a connection kept the dispatcher's 8 KiB read
//! and 8 KiB write buffers for as long as it was held: ~8 KiB of RSS per idle
//! stream before anything of pushwire's, against a goal of 8 KiB in all
//! (docs/benchmarks.md). The buffers' size is a constant of actix-http
//! (actix-web #2075, #3367), so every HTTP/1 connection starts here instead:
//!
//! - the request head is read through a buffer on the worker's stack, and
//!   only what has arrived of it is kept on the heap; a head over 16 KiB is
//!   answered 431 and the connection closed;
//! - a bodyless `GET` of `/sse` or `/long-poll` is decoded with actix-http's
//!   own codec and answered by the same app (routing, middleware, access
//!   control, byte metering); the answer is encoded by the same codec (status
//!   line, headers, `date`, chunked framing) and written from a buffer that
//!   exists only while it holds bytes. A long poll that has to wait hands its
//!   wait back on the response ([`Held`]), so that what a held poll keeps is
//!   its subscription, not the request's whole future; an event stream comes
//!   the same way, and is polled without the middleware's body wrappers;
//! - a `GET` of `/ws` asking to upgrade goes straight to the upgrade path
//!   (`upgrade`), without a dispatcher ever being made for it;
//! - any other request, and everything after it on that connection, goes to
//!   actix-http's dispatcher with the bytes read so far put back in front of
//!   the socket ([`Replay`]);
//! - HTTP/2, negotiated by ALPN or begun with its cleartext preface (prior
//!   knowledge, RFC 9113 3.3), goes to pushwire's own HTTP/2 connection
//!   (`h2`), which owns its streams.
//!
//! The socket is the same [`MeteredStream`](crate::wire::MeteredStream)
//! either way, so byte counts and time limits do not depend on the path.

use std::convert::Infallible;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use actix_codec::{Decoder, Encoder, Framed, FramedParts};
use actix_http::body::{BodyStream, BoxBody, MessageBody};
use actix_http::error::DispatchError;
use actix_http::h1::{self, Message, MessageType};
use actix_http::header::{self, HeaderValue};
use actix_http::{HttpMessage, KeepAlive, Method, Protocol, Request, Response, ServiceConfig};
use actix_service::{Service, ServiceFactory, fn_factory, fn_service};
use actix_web::ResponseError;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::future::LocalBoxFuture;
use futures_util::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::replay::Replay;
use super::settings::Settings;
use super::{h2, upgrade};
use crate::error::{AppError, ErrorCode};
use crate::routes::{Held, Holdable};
use crate::stats::{Rejection, Stats};
use crate::wire::{LINGER, Metered, give_back_buffer, lend_buffer, poll_read_into};

/// Longest request head: a longer one is refused here with 431, not handed to
/// the dispatcher, which would buffer up to 128 KiB of it until the request
/// timeout (8,000 such connections held 1.09 GB).
const MAX_HEAD: usize = 16 * 1024;

/// How an HTTP/2 connection in cleartext begins (prior knowledge): the start
/// of its preface, which reads as a request head of its own.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\n";

/// Most bytes of an answer gathered into one write.
const GATHER: usize = 64 * 1024;

/// The HTTP service of one worker: held answers and HTTP/2 here, the rest
/// to `http`, all answered by an instance of `app`. Each request answered
/// here carries its connection's meter, as actix-http's `on_connect_ext`
/// gives the dispatcher's.
pub fn factory<T, A, B, H>(
    settings: Settings,
    app: A,
    http: H,
) -> impl ServiceFactory<(T, Protocol, Option<SocketAddr>), Config = (), Response = (), Error = DispatchError, InitError = ()>
where
    T: AsyncRead + AsyncWrite + Metered + Unpin + 'static,
    A: ServiceFactory<Request, Config = (), InitError = ()> + 'static,
    A::Future: 'static,
    A::Service: 'static,
    A::Response: Into<Response<B>>,
    A::Error: Into<Response<BoxBody>>,
    B: MessageBody + 'static,
    H: ServiceFactory<
            (Replay<T>, Protocol, Option<SocketAddr>),
            Config = (),
            Response = (),
            Error = DispatchError,
            InitError = (),
        > + 'static,
    H::Service: 'static,
{
    fn_factory(move || {
        let (settings, app, http) = (settings.clone(), app.new_service(()), http.new_service(()));
        async move {
            let app = Rc::new(app.await?);
            let http = Rc::new(http.await?);
            // One per worker, like the dispatcher's: its `date` is shared.
            let config = ServiceConfig::new(
                KeepAlive::Timeout(settings.keep_alive),
                Duration::ZERO,
                Duration::ZERO,
                settings.secure,
                Some(settings.local_addr),
            );
            Ok(fn_service(move |(io, protocol, peer): (T, Protocol, Option<SocketAddr>)| {
                let conn = Conn::new(io, h1::Codec::new(config.clone()), peer);
                let connection: LocalBoxFuture<'static, Result<(), DispatchError>> = match protocol {
                    Protocol::Http2 => Box::pin(h2::serve(conn.io, app.clone(), settings.clone(), peer).map(Ok)),
                    _ => {
                        let serving = Box::pin(serve(conn, app.clone(), settings.clone()));
                        Box::pin(after(serving, app.clone(), http.clone(), settings.clone(), peer))
                    }
                };
                connection
            }))
        }
    })
}

/// What follows this path on a connection: the dispatcher, a WebSocket
/// session, HTTP/2, or nothing. Each stage is boxed and made before the future that
/// awaits it, which lives as long as the connection: that future then keeps
/// pointers, not what a stage owns (the socket, the codec, the settings: over
/// a kilobyte of every connection's memory when it kept them inline). Not an
/// `async fn`, for the reason given at [`serve`].
#[allow(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice")]
fn after<T, F, S, H, B>(
    serving: F,
    app: Rc<S>,
    http: Rc<H>,
    settings: Settings,
    peer: Option<SocketAddr>,
) -> impl Future<Output = Result<(), DispatchError>>
where
    T: AsyncRead + AsyncWrite + Metered + Unpin + 'static,
    F: Future<Output = Served<T>>,
    S: Service<Request> + 'static,
    S::Response: Into<Response<B>>,
    S::Error: Into<Response<BoxBody>>,
    B: MessageBody + 'static,
    H: Service<(Replay<T>, Protocol, Option<SocketAddr>), Response = (), Error = DispatchError> + 'static,
{
    async move {
        let next: LocalBoxFuture<'_, Result<(), DispatchError>> = match serving.await {
            Served::Closed => return Ok(()),
            Served::Failed(e) => return Err(DispatchError::Io(e)),
            Served::HandOver(conn) => {
                let read = conn.read.freeze();
                Box::pin(http.call((Replay::new(conn.io, read), Protocol::Http1, peer)))
            }
            Served::Upgrade(req, conn) => {
                let framed = Framed::from_parts(FramedParts::with_read_buf(conn.io, conn.codec, conn.read));
                Box::pin(upgrade::serve(app, req, framed).map(|served| served.map_err(DispatchError::Io)))
            }
            Served::Http2(conn) => {
                let read = conn.read.freeze();
                Box::pin(h2::serve(Replay::new(conn.io, read), app, settings, peer).map(Ok))
            }
        };
        next.await
    }
}

/// One HTTP/1 connection on this path.
struct Conn<T> {
    io: T,
    codec: h1::Codec,
    peer: Option<SocketAddr>,
    /// Bytes read and not yet part of an answered request; empty
    /// (unallocated) between requests.
    read: BytesMut,
    /// The client closed its side.
    eof: bool,
}

/// How a connection left this path.
enum Served<T> {
    Closed,
    Failed(io::Error),
    /// A request the dispatcher answers: it gets the connection.
    HandOver(Conn<T>),
    /// A WebSocket handshake, for the upgrade path.
    Upgrade(Request, Conn<T>),
    /// The cleartext preface of HTTP/2, read and kept in `read`.
    Http2(Conn<T>),
}

/// What reading a request head found.
enum Head {
    /// A whole head, of this length.
    Whole(usize),
    /// More than [`MAX_HEAD`] bytes without the end of a head.
    TooLarge,
    /// The client left, or sent nothing in time (see [`Conn::read_head`]).
    NoRequest,
}

/// The requests this path takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// A bodyless `GET` of `/sse` or `/long-poll`: answered here.
    Held,
    /// A `GET` of `/ws` asking to upgrade.
    Upgrade,
}

/// Not an `async fn`: one would keep the connection twice in its state,
/// moved into a local beside the argument (rust-lang/rust#62958).
#[allow(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice")]
fn serve<T, S, B>(mut conn: Conn<T>, app: Rc<S>, settings: Settings) -> impl Future<Output = Served<T>>
where
    T: AsyncRead + AsyncWrite + Metered + Unpin,
    S: Service<Request>,
    S::Response: Into<Response<B>>,
    S::Error: Into<Response<BoxBody>>,
    B: MessageBody + 'static,
{
    async move {
        let mut first = true;
        loop {
            // The first head is timed by the socket (`--request-timeout`, from the
            // accept); later ones start within the keep-alive, and before the
            // server shuts down, or the connection ends.
            let wait = if first { None } else { Some(&settings) };
            let len = match conn.read_head(wait).await {
                Ok(Head::Whole(len)) => len,
                // Boxed: rare, and the connection's future need not make room for it.
                Ok(Head::TooLarge) => return Box::pin(conn.refuse_head(&settings.stats)).await,
                Ok(Head::NoRequest) => return Served::Closed,
                Err(e) => return Served::Failed(e),
            };
            if std::mem::take(&mut first) && conn.read.starts_with(H2_PREFACE) {
                return Served::Http2(conn);
            }
            let Some((mut req, route)) = conn.decode(len, &settings) else {
                return Served::HandOver(conn);
            };
            req.head_mut().peer_addr = conn.peer;
            req.extensions_mut().insert(conn.io.meter().clone());
            if route == Route::Upgrade {
                return Served::Upgrade(req, conn);
            }
            req.extensions_mut().insert(Holdable);
            // Boxed: the app's future is done with once it answers, and the
            // connection's own future is sized to what an answer keeps.
            let call = Box::pin(app.call(req));
            let response: Response<BoxBody> = match call.await {
                Ok(response) => response.into().map_into_boxed_body(),
                Err(error) => error.into(),
            };
            match conn.answer(response).await {
                Ok(true) => {}
                Ok(false) => {
                    let _ = conn.io.shutdown().await;
                    return Served::Closed;
                }
                Err(e) => return Served::Failed(e),
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Conn<T> {
    fn new(io: T, codec: h1::Codec, peer: Option<SocketAddr>) -> Conn<T> {
        Conn { io, codec, peer, read: BytesMut::new(), eof: false }
    }

    /// Reads until `read` holds a whole head, or more than a head may be.
    /// [`Head::NoRequest`]: the client left, or, with `wait`, sent nothing within
    /// its keep-alive or before its shutdown.
    async fn read_head(&mut self, wait: Option<&Settings>) -> io::Result<Head> {
        loop {
            if let Some(len) = head_len(&self.read[..self.read.len().min(MAX_HEAD)]) {
                return Ok(Head::Whole(len));
            }
            if self.read.len() >= MAX_HEAD {
                return Ok(Head::TooLarge);
            }
            if self.eof {
                return Ok(Head::NoRequest);
            }
            let wait = wait.filter(|_| self.read.is_empty());
            let filled = poll_fn(|cx| self.poll_fill(cx));
            let n = match wait {
                Some(settings) => tokio::select! {
                    n = tokio::time::timeout(settings.keep_alive, filled) => match n {
                        Ok(n) => n?,
                        Err(_) => return Ok(Head::NoRequest),
                    },
                    () = settings.shutdown.wait() => return Ok(Head::NoRequest),
                },
                None => filled.await?,
            };
            if n == 0 {
                self.eof = true;
            }
        }
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        poll_read_into(&mut self.io, cx, &mut self.read)
    }

    /// The request whose head is the first `len` bytes read, if it is one
    /// this path takes (a [`Route`]). Anything else is left as it was read,
    /// for the dispatcher.
    fn decode(&mut self, len: usize, settings: &Settings) -> Option<(Request, Route)> {
        let target = self.read[..len].strip_prefix(b"GET ")?;
        let end = target.iter().position(|&b| b == b' ' || b == b'?')?;
        let path = &target[..end];
        let route = if settings.held.iter().any(|p| p.as_bytes() == path) {
            Route::Held
        } else if settings.websocket.as_bytes() == path {
            Route::Upgrade
        } else {
            return None;
        };
        let mut head = BytesMut::from(&self.read[..len]);
        let Ok(Some(Message::Item(req))) = self.codec.decode(&mut head) else { return None };
        let taken = head.is_empty()
            && req.method() == Method::GET
            && match route {
                Route::Held => self.codec.message_type() == MessageType::None && !self.codec.upgrade(),
                Route::Upgrade => self.codec.upgrade(),
            };
        if !taken {
            return None;
        }
        self.read.advance(len);
        if self.read.is_empty() {
            self.read = BytesMut::new();
        }
        Some((req, route))
    }

    /// Answers a head over [`MAX_HEAD`] with `431 headers_too_large`, then
    /// closes the connection.
    async fn refuse_head(mut self, stats: &Stats) -> Served<T> {
        stats.rejected(Rejection::HeadersTooLarge);
        self.read = BytesMut::new();
        let error = AppError::new(ErrorCode::HeadersTooLarge, "the request head is over 16 KiB");
        if let Err(e) = self.answer(error.error_response().into()).await {
            return Served::Failed(e);
        }
        let _ = self.io.shutdown().await;
        let _ = tokio::time::timeout(LINGER, async {
            while let Ok(1..) = poll_fn(|cx| self.poll_fill(cx)).await {
                self.read.clear();
            }
        })
        .await;
        Served::Closed
    }

    /// Writes `response` whole, its body as it comes. `Ok(false)`: the
    /// connection is done (the answer asked so, or the client left).
    async fn answer(&mut self, mut response: Response<BoxBody>) -> io::Result<bool> {
        let held = response.extensions_mut().remove::<Held>();
        match held {
            Some(Held::Answer(mut body)) => {
                // A response's head is pooled with room for a dozen headers
                // (~2 KiB): a held poll keeps only its status and the few it has.
                let status = response.status();
                let headers: Vec<_> = response.headers().iter().map(|(n, v)| (n.clone(), v.clone())).collect();
                drop(response);
                // A client that leaves is let go at once: dropping the wait
                // releases its subscription, and the connection its place.
                let Some(body) = poll_fn(|cx| match body.as_mut().poll(cx) {
                    Poll::Ready(body) => Poll::Ready(Some(body)),
                    Poll::Pending => self.poll_closed(cx).map(|()| None),
                })
                .await
                else {
                    return Ok(false);
                };
                response = Response::with_body(status, BoxBody::new(body.bytes));
                for (name, value) in headers {
                    response.headers_mut().append(name, value);
                }
                if body.gzipped {
                    response.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                }
            }
            Some(Held::Stream(stream)) => {
                response = response.set_body(BoxBody::new(BodyStream::new(stream.map(Ok::<_, Infallible>))));
            }
            None => {}
        }
        let (head, body) = response.into_parts();
        let size = body.size();
        let mut out = lend_buffer();
        self.codec.encode(Message::Item((head, size)), &mut out)?;
        let mut body = pin!(body);
        loop {
            // What is ready now goes out with what waits to be written (a
            // poll's answer with its head, events that came together); the
            // rest is written before waiting for more.
            let chunk = match poll_fn(|cx| Poll::Ready(body.as_mut().poll_next(cx))).await {
                Poll::Ready(chunk) if out.len() < GATHER => chunk,
                ready => {
                    let waited = self.write(&mut out).await?;
                    match ready {
                        Poll::Ready(chunk) => chunk,
                        Poll::Pending => match self.next_chunk(body.as_mut(), !waited).await {
                            Some(chunk) => chunk,
                            // The client left.
                            None => return Ok(false),
                        },
                    }
                }
            };
            match chunk {
                Some(chunk) => {
                    let chunk = chunk.map_err(|e| io::Error::other(e.to_string()))?;
                    if out.capacity() == 0 {
                        out = lend_buffer();
                    }
                    self.codec.encode(Message::Chunk(Some(chunk)), &mut out)?;
                }
                None => break,
            }
        }
        if out.capacity() == 0 {
            out = lend_buffer();
        }
        self.codec.encode(Message::Chunk(None), &mut out)?;
        self.write(&mut out).await?;
        Ok(self.codec.keep_alive() && !self.eof)
    }

    /// The body's next chunk, watching the socket meanwhile: bytes the
    /// client sends are kept for its next request (up to a head's worth),
    /// and its close ends the wait (`None`). `asked`: the body has just
    /// answered `Pending` in this same turn of the task.
    async fn next_chunk(
        &mut self,
        mut body: Pin<&mut BoxBody>,
        mut asked: bool,
    ) -> Option<Option<Result<Bytes, Box<dyn std::error::Error>>>> {
        // Then its `Pending` holds this task's waker, and the first poll need
        // not ask again: a chunk that came meanwhile has woken the task, and
        // the next poll takes it (one body poll less per delivery). Not after
        // a write that had to wait: the task has been woken and run since.
        poll_fn(|cx| {
            if !std::mem::take(&mut asked)
                && let Poll::Ready(chunk) = body.as_mut().poll_next(cx)
            {
                return Poll::Ready(Some(chunk));
            }
            self.poll_closed(cx).map(|()| None)
        })
        .await
    }

    /// Ready once the client closed its side (or its socket broke), reading
    /// meanwhile what it sends for its next request, up to a head's worth.
    /// A half-close counts as leaving: nobody half-closes an event stream or
    /// a held poll and waits for the rest of it.
    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while !self.eof && self.read.len() < MAX_HEAD {
            match ready!(self.poll_fill(cx)) {
                Ok(0) | Err(_) => self.eof = true,
                Ok(_) => {}
            }
        }
        match self.eof {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }

    /// Writes `out` whole and gives it back to the worker; true when it had to wait for the
    /// client to make room (the task then ran for wakes other than its body's).
    async fn write(&mut self, out: &mut BytesMut) -> io::Result<bool> {
        let mut waited = false;
        let mut write = pin!(self.io.write_all(out));
        poll_fn(|cx| {
            let written = write.as_mut().poll(cx);
            waited |= written.is_pending();
            written
        })
        .await?;
        give_back_buffer(std::mem::take(out));
        Ok(waited)
    }
}

/// The length of the request head at the start of `read` (through its blank
/// line), once it is all there.
fn head_len(read: &[u8]) -> Option<usize> {
    // A line ends with CRLF or, leniently (as httparse reads it), LF alone.
    let mut at = 0;
    while let Some(lf) = read[at..].iter().position(|&b| b == b'\n') {
        let next = at + lf + 1;
        match read.get(next..) {
            Some([b'\n', ..]) => return Some(next + 1),
            Some([b'\r', b'\n', ..]) => return Some(next + 2),
            _ => at = next,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::head_len;

    #[test]
    fn a_head_ends_at_its_blank_line() {
        assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest"), Some(27));
        assert_eq!(head_len(b"GET / HTTP/1.1\nHost: a\n\nrest"), Some(24));
        assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: a\r\n\r"), None);
        assert_eq!(head_len(b""), None);
    }
}
