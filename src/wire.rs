//! Counting bytes on the wire. Every accepted socket is wrapped in a
//! [`MeteredStream`]; what it reads and writes is attributed to the transport
//! of the request being served on it, so the counters include request and
//! response headers, chunked framing and WebSocket frame headers.
//!
//! Bytes read before a request is routed (its request line and headers) wait
//! in the connection's meter until the request is classified by
//! [`ConnMeter::begin`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::stats::{Counters, Stats, Transport};

/// One connection's byte accounting; shared by its stream and its requests.
#[derive(Debug)]
pub struct ConnMeter {
    stats: Arc<Stats>,
    current: AtomicU8,
    in_request: AtomicBool,
    unclaimed_in: AtomicU64,
    /// Totals for this connection alone.
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl ConnMeter {
    pub fn new(stats: Arc<Stats>) -> ConnMeter {
        ConnMeter {
            stats,
            current: AtomicU8::new(Transport::Other as u8),
            in_request: AtomicBool::new(false),
            unclaimed_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        }
    }

    fn current(&self) -> Transport {
        Transport::from_index(self.current.load(Ordering::Relaxed))
    }

    /// A request for `transport` starts: it owns the bytes read so far.
    pub fn begin(&self, transport: Transport) {
        self.current.store(transport as u8, Ordering::Relaxed);
        self.in_request.store(true, Ordering::Relaxed);
        let unclaimed = self.unclaimed_in.swap(0, Ordering::Relaxed);
        Counters::add(&self.stats.get(transport).bytes_received, unclaimed);
    }

    /// The request has been read; bytes read from now on belong to the next one.
    pub fn end(&self) {
        self.in_request.store(false, Ordering::Relaxed);
    }

    fn read(&self, n: u64) {
        Counters::add(&self.bytes_in, n);
        if self.in_request.load(Ordering::Relaxed) {
            Counters::add(&self.stats.get(self.current()).bytes_received, n);
        } else {
            Counters::add(&self.unclaimed_in, n);
        }
    }

    fn wrote(&self, n: u64) {
        Counters::add(&self.bytes_out, n);
        Counters::add(&self.stats.get(self.current()).bytes_sent, n);
    }
}

impl Drop for ConnMeter {
    fn drop(&mut self) {
        // Bytes of a request that was never routed (a malformed one, say).
        Counters::add(&self.stats.get(Transport::Other).bytes_received, *self.unclaimed_in.get_mut());
    }
}

pin_project_lite::pin_project! {
    /// A socket that reports every byte through its [`ConnMeter`].
    pub struct MeteredStream<T> {
        #[pin]
        inner: T,
        meter: Arc<ConnMeter>,
    }
}

impl<T> MeteredStream<T> {
    pub fn new(inner: T, meter: Arc<ConnMeter>) -> Self {
        MeteredStream { inner, meter }
    }

    pub fn meter(&self) -> &Arc<ConnMeter> {
        &self.meter
    }
}

impl<T: AsyncRead> AsyncRead for MeteredStream<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.meter.read((buf.filled().len() - before) as u64);
        }
        result
    }
}

impl<T: AsyncWrite> AsyncWrite for MeteredStream<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            this.meter.wrote(n as u64);
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
        if let Poll::Ready(Ok(n)) = result {
            this.meter.wrote(n as u64);
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
