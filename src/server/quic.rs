//! The QUIC listener for WebTransport (API.md v1.2), beside the TCP server:
//! an HTTP/3 endpoint on the UDP port of the same number (or
//! `--webtransport-bind`), with the `--tls-cert` certificate or a
//! self-signed one of 14 days, renewed before it expires.
//!
//! A session request is answered by the same app as every HTTP request: it
//! is turned into a `GET /wt?...` carrying [`OverQuic`], so that access
//! control, origins, `client=` tagging, metering and the request's log line
//! are those of `/ws`. When the route accepts, the session is served by the
//! WebSocket session's logic over a QUIC stream (`transport::webtransport`);
//! otherwise the route's status is the answer, as a refused upgrade's is.
//!
//! HTTP/3 and WebTransport's framing are web-transport-quinn's: of the Rust
//! libraries it is the one that closes a session with WebTransport's
//! CLOSE_WEBTRANSPORT_SESSION capsule, which is how a browser learns the
//! close code (wtransport 0.7 only closes the QUIC connection, and a browser
//! sees "connection lost").
//!
//! Sessions run on threads of their own, one per worker, each with its own
//! instance of the app.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_http::{Method, Request, StatusCode, Version};
use actix_service::{Service, ServiceFactory};
use actix_web::HttpMessage;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::{Notify, mpsc};
use web_transport_quinn::Request as SessionRequest;
use web_transport_quinn::quinn::{self, Endpoint};

use super::AppMaker;
use crate::config::Config;
use crate::lab::inspect::Inspected;
use crate::limits::{Connections, Refusal};
use crate::state::WebTransportInfo;
use crate::transport::websocket::{self, Accepted};
use crate::transport::webtransport::{ConnectHead, OverQuic, Unanswered, WtStream};
use crate::transport::{Context, Transport};

/// How long a self-signed certificate is valid: browsers take
/// `serverCertificateHashes` only for certificates of at most 14 days.
const VALIDITY: Duration = Duration::from_secs(14 * 24 * 3600);
/// When the next certificate is made and its hash announced beside the current one.
const ANNOUNCE_AFTER: Duration = Duration::from_secs(12 * 24 * 3600);
/// How long a session request the network lab blocks is left unanswered.
const UNANSWERED: Duration = Duration::from_secs(60);
/// When the endpoint switches to it: a day after it was announced.
const SWITCH_AFTER: Duration = Duration::from_secs(13 * 24 * 3600);

/// A certificate chain and its key.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// A bound endpoint, not yet serving.
pub(crate) struct Bound {
    endpoint: Endpoint,
    config: ServerSettings,
    pub info: Arc<WebTransportInfo>,
}

/// What a new certificate's server config is made with.
#[derive(Clone)]
struct ServerSettings {
    keep_alive: Duration,
    idle: Duration,
    self_signed: bool,
}

/// The running listener: its open sessions, for shutdown to wait on.
#[derive(Clone)]
pub struct Listener {
    live: Arc<(AtomicUsize, Notify)>,
    endpoint: Endpoint,
}

impl Listener {
    /// Waits until every session has ended (they close with 1012 on
    /// shutdown) and the endpoint has sent its last packets, or `timeout`.
    pub async fn drained(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, async {
            loop {
                let notified = self.live.1.notified();
                if self.live.0.load(Ordering::Acquire) == 0 {
                    break;
                }
                notified.await;
            }
            self.endpoint.wait_idle().await;
        })
        .await;
    }
}

/// Binds the endpoint when WebTransport is on. Without `--webtransport-bind`
/// it takes the TCP port's number; if another program holds that UDP port,
/// any free one (discovery names it).
pub(crate) fn bind(config: &Config, tcp: SocketAddr) -> io::Result<Option<Bound>> {
    if !config.webtransport.is_on() {
        return Ok(None);
    }
    let identity = identity(config)?;
    let settings = ServerSettings {
        keep_alive: config.ws_ping_interval,
        idle: config.ws_ping_interval + config.ws_pong_timeout,
        self_signed: config.tls_cert.is_none(),
    };
    let hashes = match settings.self_signed {
        true => vec![hash(&identity)],
        false => Vec::new(),
    };
    let bind = config.webtransport_bind.unwrap_or(tcp);
    let socket = match udp_socket(bind) {
        Ok(socket) => socket,
        Err(e) if config.webtransport_bind.is_none() => {
            tracing::warn!(error = %e, port = tcp.port(), "UDP port taken: WebTransport listens on another");
            udp_socket(SocketAddr::new(tcp.ip(), 0))?
        }
        Err(e) => return Err(io::Error::new(e.kind(), format!("--webtransport-bind {bind}: {e}"))),
    };
    let endpoint = Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(settings.server_config(identity)?),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?;
    let addr = endpoint.local_addr()?;
    let info = Arc::new(WebTransportInfo { addr, certificate_hashes: std::sync::RwLock::new(hashes) });
    Ok(Some(Bound { endpoint, config: settings, info }))
}

/// Bytes of UDP the kernel may hold for the endpoint before it drops
/// datagrams: its default (~208 KiB) dropped tens of thousands of them in a
/// fan-out to a thousand sessions (docs/benchmarks.md). The kernel caps what
/// is asked at `net.core.rmem_max`.
const UDP_BUFFER: usize = 4 * 1024 * 1024;

/// The endpoint's socket, with room for bursts.
fn udp_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    // Linux reports double what it keeps; short of half of what was asked, say why.
    if let Ok(got) = socket.recv_buffer_size()
        && got < UDP_BUFFER
    {
        tracing::info!(
            bytes = got,
            "WebTransport's UDP receive buffer is small: raise net.core.rmem_max (e.g. to {UDP_BUFFER}) against drops"
        );
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

impl ServerSettings {
    /// The endpoint's config with `identity`: TLS 1.3 with ring (as on the
    /// TCP side) offering HTTP/3, and QUIC's keep-alive and idle timeout.
    fn server_config(&self, identity: Identity) -> io::Result<quinn::ServerConfig> {
        let invalid = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidInput, format!("WebTransport: {e}"));
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(invalid)?
            .with_no_client_auth()
            .with_single_cert(identity.chain, identity.key)
            .map_err(invalid)?;
        tls.alpn_protocols = vec![web_transport_quinn::ALPN.as_bytes().to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(io::Error::other)?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(Arc::new(self.transport()));
        Ok(config)
    }

    /// QUIC's limits for a WebTransport session: the client opens one
    /// bidirectional stream (its CONNECT) and HTTP/3's three unidirectional
    /// ones; v1.2 uses no stream of its own besides the server's. quinn
    /// keeps state for every stream a peer may open, so the default 100 of
    /// each cost every idle session kilobytes for nothing.
    fn transport(&self) -> quinn::TransportConfig {
        let mut transport = quinn::TransportConfig::default();
        transport.max_concurrent_bidi_streams(quinn::VarInt::from_u32(4));
        transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(8));
        transport.keep_alive_interval(Some(self.keep_alive));
        // A timeout of seconds fits QUIC's varint; one that does not is left at quinn's default.
        transport.max_idle_timeout(quinn::IdleTimeout::try_from(self.idle).ok());
        transport
    }
}

/// The `--tls-cert` certificate and key, or a fresh self-signed pair.
fn identity(config: &Config) -> io::Result<Identity> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return self_signed();
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(format!("--tls-cert {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(invalid(format!("--tls-cert {}: no certificate", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(format!("--tls-key {}: {e}", key.display())))?;
    Ok(Identity { chain, key })
}

/// A self-signed ECDSA P-256 certificate for the loopback names, valid for
/// the 14 days browsers accept with `serverCertificateHashes`.
fn self_signed() -> io::Result<Identity> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(io::Error::other)?;
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let mut params = rcgen::CertificateParams::new(names).map_err(io::Error::other)?;
    params.not_before = time::OffsetDateTime::now_utc();
    params.not_after = params.not_before + VALIDITY;
    let cert = params.self_signed(&key).map_err(io::Error::other)?;
    Ok(Identity { chain: vec![cert.der().clone()], key: PrivateKeyDer::Pkcs8(key.serialize_der().into()) })
}

/// The certificate's SHA-256, as lowercase hex.
fn hash(identity: &Identity) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, &identity.chain[0]);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Serves sessions on `workers` threads, each with its own app from `maker`.
pub(crate) fn serve(
    bound: Bound,
    maker: AppMaker,
    ctx: Context,
    connections: Arc<Connections>,
    workers: usize,
) -> Listener {
    let Bound { endpoint, config, info } = bound;
    let live = Arc::new((AtomicUsize::new(0), Notify::new()));
    let listener = Listener { live: live.clone(), endpoint: endpoint.clone() };
    let mut lanes = Vec::with_capacity(workers);
    for n in 0..workers.max(1) {
        let (tx, rx) = mpsc::channel::<SessionRequest>(256);
        let (maker, ctx, connections, live) = (maker.clone(), ctx.clone(), connections.clone(), live.clone());
        // A thread of its own, with a runtime for tasks that are not `Send`
        // (an app instance is not), as an actix worker has.
        let spawned = std::thread::Builder::new().name(format!("pushwire-wt-{n}")).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match runtime {
                Ok(runtime) => {
                    tokio::task::LocalSet::new().block_on(&runtime, worker(maker, ctx, connections, live, rx))
                }
                Err(e) => tracing::error!(error = %e, "no runtime for WebTransport sessions"),
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "no thread for WebTransport sessions");
        }
        lanes.push(tx);
    }
    if config.self_signed {
        tokio::spawn(renew(endpoint.clone(), config, info, ctx.clone()));
    }
    tokio::spawn(accept(endpoint, lanes, ctx, listener.clone()));
    listener
}

/// Takes connection attempts until shutdown; each one's handshake runs on
/// its own, and its session request goes to the next worker in turn.
async fn accept(endpoint: Endpoint, lanes: Vec<mpsc::Sender<SessionRequest>>, ctx: Context, listener: Listener) {
    let shutdown = ctx.shutdown.clone();
    let mut next = 0;
    loop {
        let incoming = tokio::select! {
            () = shutdown.wait() => break,
            incoming = endpoint.accept() => incoming,
        };
        let Some(incoming) = incoming else { break };
        let lane = lanes[next % lanes.len()].clone();
        next += 1;
        let timeout = ctx.config.request_timeout;
        tokio::spawn(async move {
            // The QUIC handshake, HTTP/3's settings and the extended CONNECT.
            let request = async { SessionRequest::accept(incoming.await?).await };
            match tokio::time::timeout(timeout, request).await {
                Ok(Ok(request)) => {
                    let _ = lane.send(request).await;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "webtransport handshake failed"),
                Err(_) => tracing::debug!("webtransport handshake timed out"),
            }
        });
    }
    // New sessions are refused from here; open ones close with 1012. Then
    // the session threads end, with their channels.
    endpoint.set_server_config(None);
    listener.drained(ctx.config.shutdown_timeout).await;
    drop(lanes);
}

/// One session thread: its app answers each request; accepted sessions are served here.
async fn worker(
    maker: AppMaker,
    ctx: Context,
    connections: Arc<Connections>,
    live: Arc<(AtomicUsize, Notify)>,
    mut requests: mpsc::Receiver<SessionRequest>,
) {
    let app = match maker.make().new_service(()).await {
        Ok(app) => Rc::new(app),
        Err(()) => return,
    };
    while let Some(request) = requests.recv().await {
        let entry = Entry::new(&live);
        tokio::task::spawn_local(answer(app.clone(), request, ctx.clone(), connections.clone(), entry));
    }
}

/// A session request being answered or a session being served, counted
/// in the listener's `live` while it lasts, for shutdown to wait on.
struct Entry(Arc<(AtomicUsize, Notify)>);

impl Entry {
    fn new(live: &Arc<(AtomicUsize, Notify)>) -> Entry {
        live.0.fetch_add(1, Ordering::AcqRel);
        Entry(live.clone())
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if self.0.0.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.1.notify_waiters();
        }
    }
}

/// Answers one session request with the app. An accepted session is then
/// served by a task of its own, whose boxed future is all it keeps: what
/// answering needed (the app's call, the response, this future) is gone by
/// then, where idle sessions would pay for it in kilobytes each
/// (docs/benchmarks.md, "Idle memory").
async fn answer<S, B>(app: Rc<S>, request: SessionRequest, ctx: Context, connections: Arc<Connections>, entry: Entry)
where
    S: Service<Request, Response = actix_web::dev::ServiceResponse<B>, Error = actix_web::HttpResponse>,
    B: actix_web::body::MessageBody + 'static,
{
    let peer = request.conn().remote_address();
    let permit = match connections.admit(Some(peer.ip())) {
        Ok(permit) => permit,
        Err(refusal) => {
            ctx.stats.rejected(refusal.into());
            let status = match refusal {
                Refusal::TooManyFromAddress => StatusCode::TOO_MANY_REQUESTS,
                Refusal::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            };
            return refuse(request, status).await;
        }
    };
    let mut response = match app.call(as_http(&request)).await {
        Ok(response) => response.into_parts().1.map_into_boxed_body(),
        Err(response) => response,
    };
    if response.extensions().contains::<Unanswered>() {
        // The lab's blocked UDP: the page hears nothing until it gives up.
        drop(permit);
        tokio::select! {
            () = tokio::time::sleep(UNANSWERED) => {}
            () = ctx.shutdown.wait() => {}
        }
        return drop(request);
    }
    let accepted = match response.status() {
        StatusCode::OK => response.extensions_mut().remove::<Accepted>(),
        _ => None,
    };
    let Some(accepted) = accepted else {
        let status = match response.status() {
            StatusCode::OK => StatusCode::FORBIDDEN,
            status => status,
        };
        return refuse(request, status).await;
    };
    let lane = response.extensions_mut().remove::<Arc<Inspected>>();
    drop(response);
    let session = match request.ok().await {
        Ok(session) => session,
        Err(e) => return tracing::debug!(error = %e, "webtransport session lost before it started"),
    };
    let stream = match session.open_bi().await {
        Ok(stream) => stream,
        Err(e) => return tracing::debug!(error = %e, "webtransport stream not opened"),
    };
    let format = accepted.request.encoding.format;
    let carrier = WtStream::new(session, stream, format, ctx.config.max_frame, ctx.stats.clone(), lane);
    let serving = Box::pin(websocket::serve(accepted, carrier, Transport::WebTransport));
    tokio::task::spawn_local(async move {
        serving.await;
        drop((permit, entry));
    });
}

/// Answers a session request with `status`, as a refused `/ws` upgrade is
/// answered, and lets the connection go once the client has read it.
async fn refuse(request: SessionRequest, status: StatusCode) {
    let connection = request.conn().clone();
    // actix-http's status is http 0.2's, the library's http 1's: by number.
    let status = web_transport_quinn::http::StatusCode::from_u16(status.as_u16())
        .unwrap_or(web_transport_quinn::http::StatusCode::FORBIDDEN);
    if request.reject(status).await.is_ok() {
        // The client closes once it has the answer; a silent one is cut.
        let _ = tokio::time::timeout(Duration::from_secs(5), connection.closed()).await;
    }
    connection.close(quinn::VarInt::from_u32(0), b"");
}

/// The session request as the app sees it: `GET` of its path and query,
/// with its headers, `Host` naming the server as its pages know it.
fn as_http(session: &SessionRequest) -> Request {
    let mut request = Request::new();
    let head = request.head_mut();
    head.method = Method::GET;
    head.version = Version::HTTP_3;
    head.uri = path(&session.url).parse().unwrap_or_else(|_| actix_http::Uri::from_static("/wt?invalid"));
    head.peer_addr = Some(session.conn().remote_address());
    for (name, value) in &session.headers {
        if let (Ok(name), Ok(value)) = (
            actix_http::header::HeaderName::from_bytes(name.as_str().as_bytes()),
            actix_http::header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            head.headers.append(name, value);
        }
    }
    if let Ok(authority) = actix_http::header::HeaderValue::from_str(session.url.authority()) {
        head.headers.insert(actix_http::header::HOST, authority);
    }
    request.extensions_mut().insert(OverQuic);
    request.extensions_mut().insert(ConnectHead(connect_head(session)));
    request
}

/// `:path`, as the request named it.
fn path(url: &url::Url) -> &str {
    &url[url::Position::BeforePath..url::Position::AfterQuery]
}

/// The extended CONNECT as it came, pseudo-headers first (HTTP/3 has no
/// request line: these are its fields). The library has checked
/// `:method`, `:protocol` and `:scheme` to be these.
fn connect_head(session: &SessionRequest) -> String {
    let url = &session.url;
    let mut fields: Vec<(String, String)> = vec![
        (":authority".into(), url.authority().into()),
        (":method".into(), "CONNECT".into()),
        (":path".into(), path(url).into()),
        (":protocol".into(), "webtransport".into()),
        (":scheme".into(), url.scheme().into()),
    ];
    let mut headers: Vec<_> = session
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    headers.sort();
    fields.extend(headers);
    fields.iter().map(|(name, value)| format!("{name}: {value}\n")).collect()
}

/// Makes the next self-signed certificate and switches to it before the
/// current one expires, announcing its hash a day before.
async fn renew(endpoint: Endpoint, settings: ServerSettings, info: Arc<WebTransportInfo>, ctx: Context) {
    let shutdown = ctx.shutdown.clone();
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(ANNOUNCE_AFTER) => {}
        }
        let Ok(next) = self_signed() else { continue };
        let next_hash = hash(&next);
        set_hashes(&info, |hashes| hashes.push(next_hash.clone()));
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(SWITCH_AFTER - ANNOUNCE_AFTER) => {}
        }
        match settings.server_config(next) {
            Ok(config) => {
                endpoint.set_server_config(Some(config));
                set_hashes(&info, |hashes| hashes.retain(|h| *h == next_hash));
            }
            Err(e) => tracing::error!(error = %e, "could not renew the WebTransport certificate"),
        }
        debug_assert!(SWITCH_AFTER < VALIDITY);
    }
}

fn set_hashes(info: &WebTransportInfo, change: impl FnOnce(&mut Vec<String>)) {
    let mut hashes = info.certificate_hashes.write().unwrap_or_else(|e| e.into_inner());
    change(&mut hashes);
}
