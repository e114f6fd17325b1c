//! HTTPS and WSS on the bound port, with rustls: certificates and key from
//! PEM files, HTTP/2 offered by ALPN next to HTTP/1.1 (WebSocket stays on
//! HTTP/1.1: a browser opens its own connection for it). A client that
//! speaks plain HTTP to the TLS port is told so in plain HTTP, then closed.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::Protocol;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Loads `--tls-cert` (a PEM chain) and `--tls-key` (a PEM private key); any
/// problem is an error that names the file.
pub fn acceptor(cert: &Path, key: &Path) -> io::Result<TlsAcceptor> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid(format!("--tls-cert {}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(format!("--tls-cert {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(invalid(format!("--tls-cert {}: no certificate in the file", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(format!("--tls-key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| invalid(format!("--tls-cert/--tls-key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The first byte of a TLS handshake record.
const HANDSHAKE: u8 = 0x16;

const USE_HTTPS: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n\
{\"error\":{\"code\":\"bad_request\",\"message\":\"this port speaks HTTPS: use https:// or wss://\"}}";

/// Completes the TLS handshake within `limit` and says which protocol ALPN
/// chose; `None` when there is no TLS client on the other end.
pub async fn accept(
    acceptor: &TlsAcceptor,
    mut io: TcpStream,
    limit: Duration,
) -> Option<(TlsStream<TcpStream>, Protocol)> {
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(limit, io.peek(&mut first)).await.ok()?.ok()?;
    if peeked == 0 {
        return None;
    }
    if first[0] != HANDSHAKE {
        let _ = tokio::time::timeout(limit, async {
            let _ = io.write_all(USE_HTTPS).await;
            let _ = io.shutdown().await;
        })
        .await;
        return None;
    }
    let tls = tokio::time::timeout(limit, acceptor.accept(io)).await.ok()?.ok()?;
    let protocol = match tls.get_ref().1.alpn_protocol() {
        Some(b"h2") => Protocol::Http2,
        _ => Protocol::Http1,
    };
    Some((tls, protocol))
}

/// An accepted socket, in the clear or in TLS: one type, so that one HTTP
/// service serves both. The TLS state (a few KiB) is boxed, so that a plain
/// connection does not carry room for it.
pub enum Socket {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Socket::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Socket::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Socket::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Socket::Plain(io) => io.is_write_vectored(),
            Socket::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(io) => Pin::new(io).poll_flush(cx),
            Socket::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Socket::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}
