//! Building and starting the HTTP server. Sockets are wrapped in
//! [`MeteredStream`] before HTTP parsing, which is why the server is built
//! from actix-http's service rather than `HttpServer`.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_http::{HttpService, Protocol};
use actix_server::ServerHandle;
use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::dev::AppConfig;
use actix_web::middleware::from_fn;
use actix_web::{App, web};
use tokio::net::TcpStream;
use tracing_actix_web::TracingLogger;

use crate::config::Config;
use crate::demo::{DemoControl, DemoSettings};
use crate::hub::Hub;
use crate::routes;
use crate::shutdown::Shutdown;
use crate::state::AppState;
use crate::stats::Stats;
use crate::transport::Context;
use crate::wire::{ConnMeter, MeteredStream};

/// A started server. Await `server` to run it; `handle` stops it.
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    pub handle: ServerHandle,
    pub server: actix_server::Server,
}

/// Starts serving on `listener` (already bound; port 0 works), and the demo
/// publisher. Must be called within a tokio runtime.
pub fn start(config: Config, hub: Arc<dyn Hub>, listener: TcpListener) -> io::Result<Running> {
    let addr = listener.local_addr()?;
    let demo = DemoControl::new(
        config.demo_channel.clone(),
        DemoSettings { rate: config.demo_rate, payload: config.demo_payload },
    );
    let ctx =
        Context { config: Arc::new(config), hub, stats: Arc::new(Stats::default()), shutdown: Shutdown::default() };
    let state = AppState { ctx, inspector: Arc::default(), demo };
    // Idle while its rate is 0; the dashboard can start it.
    tokio::spawn(crate::demo::run(state.ctx.hub.clone(), state.demo.clone(), state.ctx.shutdown.clone()));
    let config = state.ctx.config.clone();
    let workers = config.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let factory_state = state.clone();
    let server = actix_server::Server::build()
        .workers(workers.max(1))
        .disable_signals()
        .shutdown_timeout(config.shutdown_timeout.as_secs())
        .listen("pushwire", listener, move || {
            let state = factory_state.clone();
            let stats = state.ctx.stats.clone();
            let static_dir = state.ctx.config.static_dir.clone();
            let data = web::Data::new(state);
            let app = App::new()
                .app_data(data)
                .wrap(from_fn(routes::meter))
                .wrap(TracingLogger::default())
                .service(routes::static_files(&static_dir))
                .configure(routes::configure)
                .into_factory()
                .map_err(|e: actix_web::Error| e.as_response_error().error_response());
            // actix-web's own server builds this per-connection config with a
            // crate-private constructor; its public twin is doc-hidden (made
            // for actix-test). Without it the app would believe it listens on
            // localhost:8080, which the default `AppConfig` claims.
            let app_config = AppConfig::__priv_test_new(false, addr.to_string(), addr);
            let http = HttpService::build()
                .on_connect_ext(|io: &MeteredStream<TcpStream>, ext| {
                    ext.insert(io.meter().clone());
                })
                .finish(map_config(app, move |()| app_config.clone()));
            fn_service(move |io: TcpStream| {
                let stats = stats.clone();
                async move {
                    // Notifications are small and latency matters more than packet count.
                    let _ = io.set_nodelay(true);
                    let peer = io.peer_addr().ok();
                    let io = MeteredStream::new(io, Arc::new(ConnMeter::new(stats)));
                    Ok::<_, actix_http::error::DispatchError>((io, Protocol::Http1, peer))
                }
            })
            .and_then(http)
        })?
        .run();
    Ok(Running { addr, handle: server.handle(), state, server })
}
