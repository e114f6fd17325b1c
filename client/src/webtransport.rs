//! WebTransport (API.md v1.2) as this client speaks it: discovery, shared
//! client endpoints, and the session's stream cut into frames.
//!
//! `GET /api/webtransport` names the session URL and the hash of the
//! server's self-signed certificate, which the clients trust as a browser's
//! `serverCertificateHashes` does. A server without it (the Node reference,
//! a pushwire with `--webtransport off`) makes the transport unavailable for
//! the run, not a failure. Clients share a few QUIC endpoints (one UDP socket
//! and one driver task each, [`PER_ENDPOINT`] connections apiece), which
//! quinn multiplexes by connection id: thousands of sessions then need tens
//! of sockets, not thousands. Bytes are quinn's per-connection UDP payload
//! counts (encrypted, QUIC headers and acks included), what the server's
//! `/api/stats` counts for `webtransport`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::time::timeout;
use wtransport::endpoint::ConnectOptions;
use wtransport::endpoint::endpoint_side::Client as ClientSide;
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Connection, Endpoint, RecvStream, SendStream};

use crate::negotiate::Encoding;
use crate::net::{HttpClient, Meter, Target};

/// Sessions one client endpoint (UDP socket) carries.
pub const PER_ENDPOINT: usize = 100;

/// How long a session may take to open and to get its stream.
const PATIENCE: Duration = Duration::from_secs(30);

/// Where sessions open, and the endpoints that open them.
pub struct Quic {
    /// `https://HOST:PORT/wt`, from discovery.
    url: String,
    endpoints: Vec<Endpoint<ClientSide>>,
    authorization: Option<String>,
}

impl std::fmt::Debug for Quic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quic").field("url", &self.url).field("endpoints", &self.endpoints.len()).finish()
    }
}

/// `GET /api/webtransport`'s answer.
#[derive(Deserialize)]
struct Discovery {
    url: String,
    certificate_hashes: Vec<CertificateHash>,
}

#[derive(Deserialize)]
struct CertificateHash {
    algorithm: String,
    value: String,
}

/// One open session: its connection and the stream the server opened.
pub struct Session {
    pub connection: Connection,
    /// The client's half of the stream, held open and unused: publishes go over HTTP.
    _send: SendStream,
    pub recv: RecvStream,
}

impl Quic {
    /// Asks `target` where its WebTransport is, and makes endpoints for
    /// `sessions`. `Err` says, in words, why the transport is unavailable.
    pub async fn discover(target: &Arc<Target>, sessions: usize) -> Result<Quic, String> {
        let mut http = HttpClient::new(target.clone(), 0, Arc::new(Meter::default()));
        let request = target.request(Method::GET, "/api/webtransport", Bytes::new());
        let answer = async {
            let response = http.send(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = timeout(Duration::from_secs(10), answer)
            .await
            .map_err(|_| "GET /api/webtransport: no answer within 10 s".to_string())??;
        if status != 200 {
            let error: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let said = error["error"]["message"].as_str().map_or(String::new(), |m| format!(": {m}"));
            return Err(format!("the server offers no WebTransport (GET /api/webtransport answered {status}{said})"));
        }
        let discovery: Discovery = serde_json::from_slice(&body)
            .map_err(|e| format!("GET /api/webtransport does not answer as API.md says: {e}"))?;
        let hashes = discovery.certificate_hashes.iter().map(digest).collect::<Result<Vec<_>, _>>()?;
        if hashes.is_empty() {
            // A configured certificate: this client, like the rest of it, trusts no CA.
            return Err(
                "the server names no certificate hash (a configured certificate): this client cannot verify it".into(),
            );
        }
        let endpoints = (0..sessions.div_ceil(PER_ENDPOINT).max(1))
            .map(|_| {
                let socket = udp_socket().map_err(|e| format!("cannot open a UDP socket: {e}"))?;
                let config = ClientConfig::builder()
                    .with_bind_socket(socket)
                    .with_server_certificate_hashes(hashes.clone())
                    .build();
                Endpoint::client(config).map_err(|e| format!("cannot open a QUIC endpoint: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Quic { url: discovery.url, endpoints, authorization: target.authorization().map(str::to_string) })
    }

    /// Opens session `index` with `query` and accepts the stream the server opens.
    pub async fn open(&self, index: usize, query: &str) -> Result<Session, String> {
        let mut options = ConnectOptions::builder(format!("{}{query}", self.url));
        if let Some(authorization) = &self.authorization {
            options = options.add_header("authorization", authorization);
        }
        let endpoint = &self.endpoints[index % self.endpoints.len()];
        let opening = async {
            let connection = endpoint.connect(options.build()).await.map_err(|e| e.to_string())?;
            let (send, recv) = connection.accept_bi().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(Session { connection, _send: send, recv })
        };
        timeout(PATIENCE, opening).await.map_err(|_| format!("no session within {} s", PATIENCE.as_secs()))?
    }
}

/// What a client socket asks the kernel to buffer (it grants up to `net.core.rmem_max`).
const RECEIVE_BUFFER: libc::c_int = 4 * 1024 * 1024;

/// A client endpoint's socket, dual-stack, with room for a burst: one publish is a
/// packet to each of its sessions at once, which the default buffer (208 KiB, a few
/// hundred packets with the kernel's overhead) drops when the endpoint's task is a
/// moment late, and QUIC then spends its loss recovery on the client's own shortfall.
fn udp_socket() -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind("[::]:0").or_else(|_| std::net::UdpSocket::bind("0.0.0.0:0"))?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
    let size = RECEIVE_BUFFER;
    // SAFETY: setsockopt reads `size` (a c_int, its length given) on a socket this function owns.
    let set = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(socket)
}

/// A certificate hash in hex, as `/api/webtransport` gives it.
fn digest(hash: &CertificateHash) -> Result<Sha256Digest, String> {
    let bad = || format!("a certificate hash that does not read: {} {}", hash.algorithm, hash.value);
    if hash.algorithm != "sha-256" || hash.value.len() != 64 || !hash.value.is_ascii() {
        return Err(bad());
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hash.value[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(Sha256Digest::new(bytes))
}

/// The session's stream, cut into frames as it arrives in arbitrary pieces:
/// JSON objects each ended by `\n`, or consecutive MessagePack maps.
pub struct Frames {
    encoding: Encoding,
    /// Bytes of a frame not yet complete.
    partial: Vec<u8>,
}

impl Frames {
    pub fn new(encoding: Encoding) -> Frames {
        Frames { encoding, partial: Vec::new() }
    }

    /// Feeds bytes; calls `on_frame` with each frame they complete.
    pub fn feed(&mut self, bytes: &[u8], mut on_frame: impl FnMut(&[u8])) -> Result<(), String> {
        self.partial.extend_from_slice(bytes);
        let mut start = 0;
        while start < self.partial.len() {
            let rest = &self.partial[start..];
            let length = match self.encoding {
                Encoding::Json => match rest.iter().position(|&b| b == b'\n') {
                    Some(end) => end + 1,
                    None => break,
                },
                Encoding::Msgpack => match msgpack_length(rest)? {
                    Some(length) => length,
                    None => break,
                },
            };
            on_frame(&rest[..length]);
            start += length;
        }
        self.partial.drain(..start);
        Ok(())
    }
}

/// The length of the MessagePack value at the start of `bytes`, or `None`
/// while it is incomplete.
fn msgpack_length(bytes: &[u8]) -> Result<Option<usize>, String> {
    let mut rest = bytes;
    let mut reader = rmp_serde::Deserializer::new(&mut rest);
    match IgnoredAny::deserialize(&mut reader) {
        Ok(IgnoredAny) => Ok(Some(bytes.len() - rest.len())),
        Err(rmp_serde::decode::Error::InvalidMarkerRead(e) | rmp_serde::decode::Error::InvalidDataRead(e))
            if e.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            Ok(None)
        }
        Err(e) => Err(format!("a msgpack frame that does not read: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_across_any_split() {
        let values = [
            serde_json::json!({"type": "welcome", "session": "s"}),
            serde_json::json!({"type": "message", "seq": 7, "data": {"text": "é\n"}}),
        ];
        for encoding in [Encoding::Json, Encoding::Msgpack] {
            let frames: Vec<Vec<u8>> = values
                .iter()
                .map(|v| match encoding {
                    Encoding::Json => format!("{v}\n").into_bytes(),
                    Encoding::Msgpack => rmp_serde::to_vec_named(v).unwrap(),
                })
                .collect();
            let stream = frames.concat();
            for split in 0..stream.len() {
                let mut cut = Frames::new(encoding);
                let mut seen = Vec::new();
                for part in [&stream[..split], &stream[split..]] {
                    cut.feed(part, |f| seen.push(f.to_vec())).unwrap();
                }
                assert_eq!(seen, frames, "{} split at {split}", encoding.name());
            }
        }
        let mut cut = Frames::new(Encoding::Msgpack);
        assert!(cut.feed(&[0xc1], |_| {}).is_err(), "0xc1 is never used");
    }

    #[test]
    fn certificate_hashes_read_as_hex() {
        let hash = |value: &str| CertificateHash { algorithm: "sha-256".into(), value: value.into() };
        let digest_of = digest(&hash(&"0f".repeat(32))).unwrap();
        assert_eq!(digest_of, Sha256Digest::new([0x0f; 32]));
        assert!(digest(&hash("0f")).is_err());
        assert!(digest(&hash(&"zz".repeat(32))).is_err());
    }
}
