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
//! otherwise the status is sent where HTTP/3 lets wtransport send it (404,
//! 429), and 403 elsewhere.
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
use wtransport::endpoint::endpoint_side::Server;
use wtransport::endpoint::{IncomingSession, SessionRequest};
use wtransport::tls::{Certificate, CertificateChain, PrivateKey};
use wtransport::{Endpoint, Identity, ServerConfig};

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

/// A bound endpoint, not yet serving.
pub(crate) struct Bound {
    endpoint: Arc<Endpoint<Server>>,
    config: ServerSettings,
    pub info: Arc<WebTransportInfo>,
}

/// What a new certificate's server config is made with.
#[derive(Clone)]
struct ServerSettings {
    bind: SocketAddr,
    keep_alive: Duration,
    idle: Duration,
    self_signed: bool,
}

/// The running listener: its open sessions, for shutdown to wait on.
#[derive(Clone)]
pub struct Listener {
    live: Arc<(AtomicUsize, Notify)>,
    endpoint: Arc<Endpoint<Server>>,
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
    let Some(identity) = identity(config)? else {
        return Ok(None);
    };
    let settings = ServerSettings {
        bind: config.webtransport_bind.unwrap_or(tcp),
        keep_alive: config.ws_ping_interval,
        idle: config.ws_ping_interval + config.ws_pong_timeout,
        self_signed: config.tls_cert.is_none(),
    };
    let hashes = match settings.self_signed {
        true => vec![hash(&identity)],
        false => Vec::new(),
    };
    let socket = match udp_socket(settings.bind) {
        Ok(socket) => socket,
        Err(e) if config.webtransport_bind.is_none() => {
            tracing::warn!(error = %e, port = tcp.port(), "UDP port taken: WebTransport listens on another");
            udp_socket(SocketAddr::new(tcp.ip(), 0))?
        }
        Err(e) => return Err(io::Error::new(e.kind(), format!("--webtransport-bind {}: {e}", settings.bind))),
    };
    let endpoint = Endpoint::server(settings.server_config(Some(socket), identity))?;
    let addr = endpoint.local_addr()?;
    let info = Arc::new(WebTransportInfo { addr, certificate_hashes: std::sync::RwLock::new(hashes) });
    Ok(Some(Bound { endpoint: Arc::new(endpoint), config: settings, info }))
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

/// QUIC's limits for a WebTransport session: the client opens one
/// bidirectional stream (its CONNECT) and HTTP/3's three unidirectional
/// ones; v1.2 uses no stream of its own besides the server's. quinn keeps
/// state for every stream a peer may open, so the default 100 of each cost
/// every idle session kilobytes for nothing.
fn transport() -> wtransport::quinn::TransportConfig {
    let mut transport = wtransport::quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(wtransport::quinn::VarInt::from_u32(4));
    transport.max_concurrent_uni_streams(wtransport::quinn::VarInt::from_u32(8));
    transport
}

impl ServerSettings {
    /// A config for a new endpoint on `socket`, or (`None`) for a running one
    /// whose socket stays (a renewal).
    fn server_config(&self, socket: Option<std::net::UdpSocket>, identity: Identity) -> ServerConfig {
        let bound = match socket {
            Some(socket) => ServerConfig::builder().with_bind_socket(socket),
            None => ServerConfig::builder().with_bind_address(self.bind),
        };
        bound
            .with_custom_transport(identity, transport())
            .keep_alive_interval(Some(self.keep_alive))
            .max_idle_timeout(Some(self.idle))
            // unwrap: a timeout of seconds fits QUIC's varint.
            .unwrap()
            .build()
    }
}

/// The `--tls-cert` identity, or a fresh self-signed one; `None` when the
/// key is of a kind wtransport cannot take (the TCP side still serves).
fn identity(config: &Config) -> io::Result<Option<Identity>> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return self_signed().map(Some);
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(format!("--tls-cert {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(invalid(format!("--tls-cert {}: no certificate", cert.display())));
    }
    let chain = chain
        .into_iter()
        .map(|der| Certificate::from_der(der.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("--tls-cert {}: {e}", cert.display())))?;
    let key =
        match PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(format!("--tls-key {}: {e}", key.display())))? {
            PrivateKeyDer::Pkcs8(der) => PrivateKey::from_der_pkcs8(der.secret_pkcs8_der().to_vec()),
            _ => {
                tracing::warn!(
                    key = %key.display(),
                    "WebTransport is off: it needs a PKCS#8 key (convert with `openssl pkcs8 -topk8 -nocrypt`)"
                );
                return Ok(None);
            }
        };
    Ok(Some(Identity::new(CertificateChain::new(chain), key)))
}

fn self_signed() -> io::Result<Identity> {
    Identity::self_signed(["localhost", "127.0.0.1", "::1"]).map_err(io::Error::other)
}

/// A certificate's SHA-256, as lowercase hex.
fn hash(identity: &Identity) -> String {
    identity.certificate_chain().as_slice()[0].hash().as_ref().iter().map(|b| format!("{b:02x}")).collect()
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
async fn accept(
    endpoint: Arc<Endpoint<Server>>,
    lanes: Vec<mpsc::Sender<SessionRequest>>,
    ctx: Context,
    listener: Listener,
) {
    let shutdown = ctx.shutdown.clone();
    let mut next = 0;
    loop {
        let incoming: IncomingSession = tokio::select! {
            () = shutdown.wait() => break,
            incoming = endpoint.accept() => incoming,
        };
        let lane = lanes[next % lanes.len()].clone();
        next += 1;
        let timeout = ctx.config.request_timeout;
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, incoming).await {
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
        let (app, ctx, connections, live) = (app.clone(), ctx.clone(), connections.clone(), live.clone());
        tokio::task::spawn_local(async move {
            live.0.fetch_add(1, Ordering::AcqRel);
            session(app, request, &ctx, &connections).await;
            if live.0.fetch_sub(1, Ordering::AcqRel) == 1 {
                live.1.notify_waiters();
            }
        });
    }
}

/// Answers one session request with the app and serves the session if accepted.
async fn session<S, B>(app: Rc<S>, request: SessionRequest, ctx: &Context, connections: &Arc<Connections>)
where
    S: Service<Request, Response = actix_web::dev::ServiceResponse<B>, Error = actix_web::HttpResponse>,
    B: actix_web::body::MessageBody + 'static,
{
    let peer = request.remote_address();
    let permit = match connections.admit(Some(peer.ip())) {
        Ok(permit) => permit,
        Err(refusal) => {
            ctx.stats.rejected(refusal.into());
            return match refusal {
                Refusal::TooManyFromAddress => request.too_many_requests().await,
                Refusal::Overloaded => request.forbidden().await,
            };
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
        return match response.status() {
            StatusCode::NOT_FOUND => request.not_found().await,
            StatusCode::TOO_MANY_REQUESTS => request.too_many_requests().await,
            _ => request.forbidden().await,
        };
    };
    let connection = match request.accept().await {
        Ok(connection) => connection,
        Err(e) => return tracing::debug!(error = %e, "webtransport session lost before it started"),
    };
    let stream = match connection.open_bi().await {
        Ok(opening) => opening.await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let stream = match stream {
        Ok(stream) => stream,
        Err(e) => return tracing::debug!(error = %e, "webtransport stream not opened"),
    };
    let format = accepted.request.encoding.format;
    let lane = response.extensions_mut().remove::<Arc<Inspected>>();
    let carrier = WtStream::new(connection, stream, format, ctx.config.max_frame, ctx.stats.clone(), lane);
    websocket::serve(accepted, carrier, Transport::WebTransport).await;
    drop(permit);
}

/// The session request as the app sees it: `GET` of its path and query,
/// with its headers, `Host` naming the server as its pages know it.
fn as_http(session: &SessionRequest) -> Request {
    let mut request = Request::new();
    let head = request.head_mut();
    head.method = Method::GET;
    head.version = Version::HTTP_3;
    head.uri = session.path().parse().unwrap_or_else(|_| actix_http::Uri::from_static("/wt?invalid"));
    head.peer_addr = Some(session.remote_address());
    for (name, value) in session.headers() {
        if name.starts_with(':') {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            actix_http::header::HeaderName::from_bytes(name.as_bytes()),
            actix_http::header::HeaderValue::from_str(value),
        ) {
            head.headers.append(name, value);
        }
    }
    if let Ok(authority) = actix_http::header::HeaderValue::from_str(session.authority()) {
        head.headers.insert(actix_http::header::HOST, authority);
    }
    request.extensions_mut().insert(OverQuic);
    request.extensions_mut().insert(ConnectHead(connect_head(session)));
    request
}

/// The extended CONNECT as it came, pseudo-headers first (HTTP/3 has no
/// request line: these are its fields).
fn connect_head(session: &SessionRequest) -> String {
    let mut fields: Vec<_> = session.headers().iter().collect();
    fields.sort_by_key(|(name, _)| (!name.starts_with(':'), name.as_str()));
    fields.iter().map(|(name, value)| format!("{name}: {value}\n")).collect()
}

/// Makes the next self-signed certificate and switches to it before the
/// current one expires, announcing its hash a day before.
async fn renew(endpoint: Arc<Endpoint<Server>>, settings: ServerSettings, info: Arc<WebTransportInfo>, ctx: Context) {
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
        match endpoint.reload_config(settings.server_config(None, next), false) {
            Ok(()) => set_hashes(&info, |hashes| hashes.retain(|h| *h == next_hash)),
            Err(e) => tracing::error!(error = %e, "could not renew the WebTransport certificate"),
        }
        debug_assert!(SWITCH_AFTER < VALIDITY);
    }
}

fn set_hashes(info: &WebTransportInfo, change: impl FnOnce(&mut Vec<String>)) {
    let mut hashes = info.certificate_hashes.write().unwrap_or_else(|e| e.into_inner());
    change(&mut hashes);
}
