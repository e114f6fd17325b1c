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
use crate::stats::Stats;
use crate::transport::Context;
use crate::wire::{ConnMeter, MeteredStream};

/// A started server. Await `server` to run it; `handle` stops it.
pub struct Running {
    pub addr: SocketAddr,
    pub ctx: Context,
    pub handle: ServerHandle,
    pub server: actix_server::Server,
}

/// Starts serving on `listener` (already bound; port 0 works), and the demo
/// publisher. Must be called within a tokio runtime.
pub fn start(config: Config, hub: Arc<dyn Hub>, listener: TcpListener) -> io::Result<Running> {
    let addr = listener.local_addr()?;
    let demo_channel = config.demo_channel.parse().map_err(|e: crate::message::ParseError| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("--demo-channel: {}", e.0))
    })?;
    let demo = DemoControl::new(demo_channel, DemoSettings { rate: config.demo_rate, payload: config.demo_payload });
    let ctx = Context {
        config: Arc::new(config),
        hub,
        stats: Arc::new(Stats::default()),
        shutdown: Shutdown::default(),
        inspector: Arc::default(),
        demo,
    };
    // Idle while its rate is 0; the dashboard can start it.
    tokio::spawn(crate::demo::run(ctx.hub.clone(), ctx.demo.clone(), ctx.shutdown.clone()));
    let workers = ctx.config.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let factory_ctx = ctx.clone();
    let server = actix_server::Server::build()
        .workers(workers.max(1))
        .disable_signals()
        .shutdown_timeout(ctx.config.shutdown_timeout.as_secs())
        .listen("pushwire", listener, move || {
            let ctx = factory_ctx.clone();
            let stats = ctx.stats.clone();
            let static_dir = ctx.config.static_dir.clone();
            let data = web::Data::new(ctx);
            let app = App::new()
                .app_data(data)
                .wrap(from_fn(routes::meter))
                .wrap(TracingLogger::default())
                .service(routes::static_files(&static_dir))
                .configure(routes::configure)
                .into_factory()
                .map_err(|e: actix_web::Error| e.as_response_error().error_response());
            let http = HttpService::build()
                .on_connect_ext(|io: &MeteredStream<TcpStream>, ext| {
                    ext.insert(io.meter().clone());
                })
                .finish(map_config(app, move |()| AppConfig::__priv_test_new(false, addr.to_string(), addr)));
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
    Ok(Running { addr, handle: server.handle(), ctx, server })
}
