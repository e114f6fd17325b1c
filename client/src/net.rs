//! The client's own sockets. Every byte a client reads or writes passes through
//! a [`Counted`] stream, so its figures include what the server's socket-level
//! counters include: HTTP heads, chunked framing, the WebSocket handshake and
//! frame headers (plain `http://` only: no TLS is spoken).
//!
//! Past [`PER_SOURCE`] connections to a loopback server, sockets are bound to
//! several `127.0.0.x` source addresses before they connect, since one
//! source address has only about 28,000 ephemeral ports towards one server port.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// Connections one loopback source address carries before the next is used.
pub const PER_SOURCE: usize = 10_000;

/// Bytes read and written by a group of sockets (one transport's clients).
#[derive(Debug, Default)]
pub struct Meter {
    read: AtomicU64,
    written: AtomicU64,
}

impl Meter {
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Adds bytes counted elsewhere (a QUIC connection's own UDP counts).
    pub fn add(&self, read: u64, written: u64) {
        self.read.fetch_add(read, Ordering::Relaxed);
        self.written.fetch_add(written, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A socket that adds what passes through it to its [`Meter`].
    pub struct Counted<S> {
        #[pin]
        inner: S,
        meter: Arc<Meter>,
    }
}

impl<S: AsyncRead> AsyncRead for Counted<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        this.meter.read.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        result
    }
}

impl<S: AsyncWrite> AsyncWrite for Counted<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            this.meter.written.fetch_add(n as u64, Ordering::Relaxed);
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
            this.meter.written.fetch_add(n as u64, Ordering::Relaxed);
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

/// The server under test: where to connect, what to say in `Host` and
/// `Authorization`, and which local addresses to connect from.
#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// `host:port` as the URL gave it, for `Host` and WebSocket URLs.
    pub authority: String,
    authorization: Option<String>,
    sources: Vec<IpAddr>,
}

impl Target {
    /// Resolves `url` (`http://host[:port][/]`). `connections` is how many the
    /// run will open, which decides whether source addresses are spread.
    pub async fn resolve(url: &str, token: Option<&str>, connections: usize) -> Result<Target, String> {
        let bad = |why: &str| format!("{url}: {why}");
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(bad("https is not supported by this client; give the plain http:// address")),
            _ => return Err(bad("expected http://host:port")),
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("give the server's root, without a path"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let addr = tokio::net::lookup_host((host, port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| bad("cannot resolve the host"))?;
        let sources = match addr.ip() {
            IpAddr::V4(ip) if ip.is_loopback() && connections > PER_SOURCE => {
                let n = connections.div_ceil(PER_SOURCE).min(254) as u8;
                (1..=n).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i))).collect()
            }
            _ => Vec::new(),
        };
        let authorization = token.map(|t| format!("Bearer {t}"));
        Ok(Target { addr, authority: authority.to_string(), authorization, sources })
    }

    /// Connects from `source` (one local address) instead of the default one.
    pub fn from_source(mut self, source: IpAddr) -> Target {
        self.sources = vec![source];
        self
    }

    /// The `Authorization` header value, when a token was given.
    pub fn authorization(&self) -> Option<&str> {
        self.authorization.as_deref()
    }

    /// Whether the server runs on this machine, so that its `ts` and our clock agree.
    pub fn is_local(&self) -> bool {
        self.addr.ip().is_loopback()
    }

    /// Opens a counted TCP connection for client `index`.
    pub async fn connect(&self, index: usize, meter: &Arc<Meter>) -> io::Result<Counted<TcpStream>> {
        let stream = if self.sources.is_empty() {
            TcpStream::connect(self.addr).await?
        } else {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(self.sources[index % self.sources.len()], 0))?;
            socket.connect(self.addr).await?
        };
        // Notifications are small; Nagle would add its delay to the latency measured.
        stream.set_nodelay(true)?;
        Ok(Counted { inner: stream, meter: meter.clone() })
    }

    /// A request with `Host` and, when a token was given, `Authorization`.
    pub fn request(&self, method: Method, path_and_query: &str, body: Bytes) -> Request<Full<Bytes>> {
        let mut builder = Request::builder().method(method).uri(path_and_query).header("host", &self.authority);
        if let Some(authorization) = &self.authorization {
            builder = builder.header("authorization", authorization);
        }
        if !body.is_empty() {
            builder = builder.header("content-type", "application/json");
        }
        // unwrap: the path is built by the caller from channel names, and
        // the header values were checked when the target resolved.
        builder.body(Full::new(body)).unwrap()
    }
}

/// One keep-alive HTTP/1.1 connection of one client, reopened when the
/// server has closed it between requests.
pub struct HttpClient {
    target: Arc<Target>,
    index: usize,
    meter: Arc<Meter>,
    conn: Option<(SendRequest<Full<Bytes>>, JoinHandle<()>)>,
}

impl HttpClient {
    pub fn new(target: Arc<Target>, index: usize, meter: Arc<Meter>) -> HttpClient {
        HttpClient { target, index, meter, conn: None }
    }

    /// Opens the connection now (it would open with the first request otherwise).
    pub async fn open(&mut self) -> io::Result<()> {
        let io = self.target.connect(self.index, &self.meter).await?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(io::Error::other)?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        self.close();
        self.conn = Some((sender, driver));
        Ok(())
    }

    /// Sends a request. A connection found closed before anything was sent on
    /// it is reopened once; a failure after that is the caller's to judge.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Response<Incoming>, String> {
        let reusable = match &mut self.conn {
            Some((sender, _)) => sender.ready().await.is_ok(),
            None => false,
        };
        if !reusable {
            self.open().await.map_err(|e| e.to_string())?;
        }
        let (sender, _) = self.conn.as_mut().expect("opened above");
        let result = sender.send_request(request).await.map_err(|e| e.to_string());
        if result.is_err() {
            self.close();
        }
        result
    }

    pub fn close(&mut self) {
        if let Some((_, driver)) = self.conn.take() {
            driver.abort();
        }
    }
}

impl Drop for HttpClient {
    fn drop(&mut self) {
        self.close();
    }
}
