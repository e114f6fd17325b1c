//! Building and starting the HTTP server. Sockets are admitted within the
//! connection limits, go through TLS when it is on, and are wrapped in
//! [`MeteredStream`] before HTTP parsing, which is why the server is built
//! from actix-http's service rather than `HttpServer`.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_http::Extensions;
use actix_http::error::DispatchError;
use actix_http::{HttpService, Protocol};
use actix_server::ServerHandle;
use actix_service::{IntoServiceFactory, ServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::dev::AppConfig;
use actix_web::middleware::from_fn;
use actix_web::{App, web};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing_actix_web::TracingLogger;

use crate::auth::Verifier;
use crate::config::Config;
use crate::hub::{Counted, Hub};
use crate::lab::demo::{DemoControl, DemoSettings};
use crate::limits::{self, Connections, Permit, PublishRate};
use crate::origins::Origins;
use crate::routes::{self, RequestSpan};
use crate::shutdown::Shutdown;
use crate::state::AppState;
use crate::stats::Stats;
use crate::tls::{self, Socket};
use crate::transport::Context;
use crate::wire::{ConnMeter, MeteredStream, Timeouts};
use replay::Replay;

mod front;
mod h2;
pub mod quic;
mod replay;
mod settings;
mod trim;
mod upgrade;

/// A started server. Await `server` to run it; `handle` stops it.
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    pub handle: ServerHandle,
    pub server: actix_server::Server,
    /// The WebTransport listener, when on: shutdown waits for its sessions.
    pub webtransport: Option<quic::Listener>,
}

/// Starts serving on `listener` (already bound; port 0 works), and the demo
/// publisher. Must be called within a tokio runtime.
pub fn start(config: Config, hub: Arc<dyn Hub>, listener: TcpListener) -> io::Result<Running> {
    let addr = listener.local_addr()?;
    let connections = Connections::new(
        config.max_connections.unwrap_or_else(Connections::default_max),
        config.max_connections_per_ip,
    );
    // Checked first: QUIC takes the same certificate, which its TLS library
    // expects checked (it panics on one that rustls refuses).
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    let quic = quic::bind(&config, addr)?;
    let state = app_state(config, hub, quic.as_ref().map(|bound| bound.info.clone()))?;
    // Idle while its rate is 0; the dashboard can start it.
    tokio::spawn(crate::lab::demo::run(state.ctx.hub.clone(), state.demo.clone(), state.ctx.shutdown.clone()));
    tokio::spawn(trim::after_waves(connections.clone(), state.ctx.shutdown.clone()));
    let config = state.ctx.config.clone();
    let workers = config.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let worker_state = state.clone();
    let max = connections.max();
    let webtransport = quic.map(|bound| {
        let maker = AppMaker::new(&state, true, addr);
        quic::serve(bound, maker, state.ctx.clone(), connections.clone(), workers.max(1))
    });
    let server = actix_server::Server::build()
        .workers(workers.max(1))
        // Past our own cap, connections are still accepted to be told 503;
        // actix's cap only keeps the accept loop within the open-file limit.
        .max_concurrent_connections(max + 512)
        .disable_signals()
        .shutdown_timeout(config.shutdown_timeout.as_secs())
        .listen("pushwire", listener, move || http_service(&worker_state, &connections, tls.clone(), addr))?
        .run();
    Ok(Running { addr, handle: server.handle(), state, server, webtransport })
}

/// What the routes share, from the flags and the hub.
fn app_state(
    config: Config,
    hub: Arc<dyn Hub>,
    webtransport: Option<Arc<crate::state::WebTransportInfo>>,
) -> io::Result<AppState> {
    let demo = DemoControl::new(
        config.demo_channel.clone(),
        DemoSettings { rate: config.demo_rate, payload: config.demo_payload },
    );
    let stats = Arc::new(Stats::default());
    let ctx = Context {
        publish_rate: Arc::new(PublishRate::new(config.publish_rate)),
        config: Arc::new(config),
        hub: Arc::new(Counted::new(hub, stats.hub_counts())),
        stats,
        shutdown: Shutdown::default(),
    };
    let verifier = verifier(&ctx.config)?.map(Arc::new);
    let origins = Arc::new(Origins::new(&ctx.config.allowed_origins));
    Ok(AppState { ctx, inspector: Arc::default(), demo, verifier, origins, webtransport })
}

/// One worker's HTTP service, for plain and TLS sockets alike: a socket is
/// admitted within the limits, goes through TLS when it is on, is metered,
/// and is served by the front path (HTTP/1 and HTTP/2), with actix-http's
/// dispatcher (and its upgrade path) behind it. The QUIC listener for
/// WebTransport sits beside it (`quic`), started in `start`.
fn http_service(
    state: &AppState,
    connections: &Arc<Connections>,
    tls: Option<TlsAcceptor>,
    addr: SocketAddr,
) -> impl ServiceFactory<TcpStream, Config = (), Response = (), Error = (), InitError = ()> + use<> {
    let config = state.ctx.config.clone();
    let stats = state.ctx.stats.clone();
    let timeouts = Timeouts { request: config.request_timeout, write: config.write_timeout };
    let front = settings::Settings::new(
        config.base_path.prefix(),
        config.keep_alive,
        timeouts,
        tls.is_some(),
        addr,
        state.ctx.shutdown.clone(),
        stats.clone(),
    );
    let maker = AppMaker::new(state, tls.is_some(), addr);
    // Three times per worker: for the front path, the HTTP dispatcher and
    // the upgrade path, which answers WebSocket handshakes itself (`upgrade`).
    let app = move || maker.make();
    // MeteredStream times every request head, the first included; actix's
    // own timer (first request only) reads a clock cached for 500 ms, so
    // short timeouts would fire at once: it is off (zero).
    let http = HttpService::build()
        .keep_alive(config.keep_alive)
        .client_request_timeout(Duration::ZERO)
        .on_connect_ext(|io: &Replay<MeteredStream<Socket>>, ext: &mut Extensions| remember_meter(io.get_ref(), ext))
        .upgrade(upgrade::factory(app()))
        .finish(app());
    let connections = connections.clone();
    fn_service(move |io: TcpStream| {
        let (stats, connections, tls) = (stats.clone(), connections.clone(), tls.clone());
        async move {
            let (io, peer, permit) = admit(io, &connections, &stats)?;
            let (io, protocol) = match tls {
                None => (Socket::Plain(io), Protocol::Http1),
                Some(acceptor) => match tls::accept(&acceptor, io, timeouts.request).await {
                    Some((io, protocol)) => (Socket::Tls(Box::new(io)), protocol),
                    None => return Err(DispatchError::Io(io::Error::other("no TLS handshake"))),
                },
            };
            let meter = Arc::new(ConnMeter::new(stats));
            Ok((MeteredStream::new(io, meter, timeouts, Some(permit)), protocol, peer))
        }
    })
    .and_then(front::factory(front, app(), http))
    .map_err(|_| ())
    .map_init_err(|_| ())
}

/// Builds instances of the app (routes and middleware) for a thread.
#[derive(Clone)]
pub(crate) struct AppMaker {
    data: web::Data<AppState>,
    base: crate::base_path::BasePath,
    static_dir: Option<std::path::PathBuf>,
    app_config: AppConfig,
}

impl AppMaker {
    fn new(state: &AppState, tls: bool, addr: SocketAddr) -> AppMaker {
        let config = &state.ctx.config;
        AppMaker {
            data: web::Data::new(state.clone()),
            base: config.base_path.clone(),
            static_dir: config.static_dir.clone(),
            // actix-web's own server builds this per-connection config with a
            // crate-private constructor; its public twin is doc-hidden (made for
            // actix-test). Without it the app would believe it listens on
            // localhost:8080, which the default `AppConfig` claims.
            app_config: AppConfig::__priv_test_new(tls, addr.to_string(), addr),
        }
    }

    fn make(
        &self,
    ) -> impl ServiceFactory<
        actix_http::Request,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody + use<>>,
        Error = actix_web::HttpResponse,
        InitError = (),
    > + use<> {
        let (base, static_dir) = (self.base.clone(), self.static_dir.clone());
        let app = App::new()
            .app_data(self.data.clone())
            .wrap(from_fn(routes::origins))
            .wrap(from_fn(routes::meter))
            .wrap(TracingLogger::<RequestSpan>::new())
            .configure(move |cfg| routes::configure(cfg, &base, static_dir.as_deref()))
            .into_factory()
            .map_err(|e: actix_web::Error| e.as_response_error().error_response());
        let app_config = self.app_config.clone();
        map_config(app, move |()| app_config.clone())
    }
}

/// Admits a connection within the limits, or hands it to be refused.
fn admit(
    io: TcpStream,
    connections: &Arc<Connections>,
    stats: &Stats,
) -> Result<(TcpStream, Option<SocketAddr>, Permit), DispatchError> {
    let peer = io.peer_addr().ok();
    match connections.admit(peer.map(|p| p.ip())) {
        Ok(permit) => {
            // Notifications are small and latency matters more than packet count.
            let _ = io.set_nodelay(true);
            Ok((io, peer, permit))
        }
        Err(refusal) => {
            stats.rejected(refusal.into());
            actix_web::rt::spawn(limits::refuse(io, refusal));
            Err(DispatchError::Io(io::Error::other("refused: connection limit")))
        }
    }
}

/// Gives every request of a connection its byte meter.
fn remember_meter<T>(io: &MeteredStream<T>, extensions: &mut Extensions) {
    use crate::wire::Metered;
    extensions.insert(io.meter().clone());
}

/// The token verifier the flags ask for, if any; a key that cannot be read
/// or parsed stops the start with a message naming the flag.
fn verifier(config: &Config) -> io::Result<Option<Verifier>> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
    match (&config.auth_secret, &config.auth_public_key) {
        (Some(secret), _) if secret.is_empty() => Err(invalid("--auth-secret is empty".into())),
        (Some(secret), _) => Ok(Some(Verifier::secret(secret.as_bytes()))),
        (None, Some(path)) => {
            let pem = std::fs::read(path)
                .map_err(|e| invalid(format!("cannot read --auth-public-key {}: {e}", path.display())))?;
            Verifier::public_key(&pem)
                .map(Some)
                .map_err(|e| invalid(format!("--auth-public-key {}: {e}", path.display())))
        }
        (None, None) => Ok(None),
    }
}
