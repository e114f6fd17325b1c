//! A socket with what was read of it put back in front: how the front path
//! hands a connection to actix-http's dispatcher after reading a request
//! head it does not answer itself.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::wire::{ConnMeter, Metered};

pin_project_lite::pin_project! {
    /// A socket with bytes already read from it put back in front: what the
    /// front read of a request it hands to the dispatcher.
    pub struct Replay<T> {
        #[pin]
        io: T,
        read: Bytes,
    }
}

impl<T> Replay<T> {
    pub fn new(io: T, read: Bytes) -> Replay<T> {
        Replay { io, read }
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T: Metered> Metered for Replay<T> {
    fn meter(&self) -> &std::sync::Arc<ConnMeter> {
        self.io.meter()
    }
}

impl<T: AsyncRead> AsyncRead for Replay<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        if this.read.is_empty() {
            return this.io.poll_read(cx, buf);
        }
        let n = this.read.len().min(buf.remaining());
        buf.put_slice(&this.read.split_to(n));
        if this.read.is_empty() {
            // An empty view would still keep the bytes it was cut from.
            *this.read = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite> AsyncWrite for Replay<T> {
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

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}
