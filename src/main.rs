use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;

use pushwire::config::{Cli, Command, Config, LogFormat};
use pushwire::hub::{Hub, MemoryHub, RedisHub, RedisOptions};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Flags are validated as they parse; clap exits with 2 and a message.
    let cli = Cli::parse_or_exit();
    if let Some(Command::Bench(args)) = cli.command {
        // The bench's table owns stdout; only warnings are logged, to stderr.
        let _flush = init_tracing(cli.config.log_format, "warn", true);
        return pushwire::bench::main(args, cli.config).await;
    }
    // The guard flushes what is queued when `main` returns.
    let _flush = init_tracing(cli.config.log_format, "info,actix_server=warn", false);
    match run(cli.config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line naming the cause (a bad key file, a busy port), no backtrace.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs filtered by `RUST_LOG`, else by `default`. Lines are written from a
/// thread of their own: a reader that falls behind (a full pipe) costs log
/// lines, never a stalled worker.
fn init_tracing(format: LogFormat, default: &str, to_stderr: bool) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let (ansi, (writer, guard)) = if to_stderr {
        (std::io::IsTerminal::is_terminal(&std::io::stderr()), tracing_appender::non_blocking(std::io::stderr()))
    } else {
        (std::io::IsTerminal::is_terminal(&std::io::stdout()), tracing_appender::non_blocking(std::io::stdout()))
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder.json().init(),
    }
    guard
}

async fn run(config: Config) -> anyhow::Result<()> {
    let hub: Arc<dyn Hub> = match config.redis_options() {
        None => MemoryHub::bounded(config.history_limits(), config.memory_bounds()),
        Some(options) => connect_redis(options).await?,
    };
    let listener = TcpListener::bind(config.bind).with_context(|| format!("cannot listen on {}", config.bind))?;
    let running = pushwire::server::start(config.clone(), hub.clone(), listener)?;
    let ctx = running.state.ctx.clone();

    tracing::info!(
        hub = ctx.hub.kind(),
        demo_rate = config.demo_rate,
        write_delay = ?config.write_delay,
        "pushwire listening: open http://{}{}/ in a browser",
        running.addr,
        config.base_path.prefix()
    );

    // The server future processes the stop command below, so it runs as its own task.
    let mut server = tokio::spawn(running.server);
    tokio::select! {
        result = &mut server => return result.context("server task failed")?.context("server failed"),
        () = shutdown_signal() => {}
    }
    tracing::info!("shutting down: closing sessions (1012), ending streams");
    ctx.shutdown.trigger();
    running.handle.stop(true).await;
    server.await.context("server task failed")?.context("server failed")
}

/// Connects the Redis hub, retrying for a while: in a Compose topology the
/// nodes often start before Redis accepts connections.
async fn connect_redis(options: RedisOptions) -> anyhow::Result<Arc<dyn Hub>> {
    const ATTEMPTS: u32 = 30;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match RedisHub::connect_with(options.clone()).await {
            Ok(hub) => return Ok(hub),
            Err(e) if attempt < ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "redis not reachable yet; retrying in 1 s");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot use the Redis hub at {}", options.urls)),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
