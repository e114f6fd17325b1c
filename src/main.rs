//! `pushwire`: serves (no command), or runs the load tool (`pushwire bench`).

use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use pushwire::config::{Config, LogFormat};
use pushwire::hub::{Hub, MemoryHub, RedisHub, RedisOptions};

/// pushwire: one notification stream over WebSocket, Server-Sent Events,
/// long polling and short polling.
#[derive(Debug, Parser)]
#[command(version, about, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    config: Config,

    /// Without a command, pushwire serves.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure the transports side by side on one publish stream (an
    /// in-process server, or --url); server flags before `bench` configure
    /// the in-process server. Runs the pushwire-bench binary: `pushwire
    /// bench --help` lists its flags.
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Flags are validated as they parse; clap exits with 2 and a message.
    let cli = Cli::parse();
    if let Some(Command::Bench { args }) = cli.command {
        return run_bench(&args);
    }
    // The guard flushes what is queued when `main` returns.
    // web-transport-quinn warns of every peer that leaves without a session
    // close (a closed tab, a lost network): a line per session, not a fault.
    let _flush = init_tracing(cli.config.log_format, "info,actix_server=warn,web_transport_quinn=error");
    match run(cli.config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line naming the cause (a bad key file, a busy port), no backtrace.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs filtered by `RUST_LOG`, else by `default`, to stdout. Lines are
/// written from a thread of their own: a reader that falls behind (a full
/// pipe) costs log lines, never a stalled worker.
fn init_tracing(format: LogFormat, default: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder.json().init(),
    }
    guard
}

/// `pushwire [server flags] bench [bench flags]`: runs the load tool, the
/// `pushwire-bench` binary beside this one, as `pushwire-bench [bench flags]
/// -- [server flags]` (the server flags configure its in-process server), the
/// way git runs its subcommands: the server carries none of the load tool's
/// crates. Under `cargo run`, a load tool not built yet is built and run by
/// cargo. Returns only when it could not be started.
fn run_bench(bench_args: &[std::ffi::OsString]) -> std::process::ExitCode {
    use std::os::unix::process::CommandExt;
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let server_args = server_args(&args);
    let exe = std::env::current_exe().ok();
    let beside = exe.as_ref().and_then(|e| e.parent()).map(|dir| dir.join("pushwire-bench"));
    let mut command = match (&beside, std::env::var_os("CARGO")) {
        (Some(path), _) if path.is_file() => std::process::Command::new(path),
        (_, Some(cargo)) => {
            // `cargo run` of a fresh checkout builds this package alone.
            let mut command = std::process::Command::new(cargo);
            command.args(["run", "--quiet", "--package", "pushwire-bench"]);
            if exe.as_ref().and_then(|e| e.parent()).is_some_and(|dir| dir.ends_with("release")) {
                command.arg("--release");
            }
            command.arg("--");
            command
        }
        _ => {
            eprintln!(
                "error: pushwire bench runs the pushwire-bench binary, which is not beside pushwire{}: \
                 `cargo build --release` builds both (or `cargo install --path bench`)",
                beside.map(|p| format!(" ({})", p.display())).unwrap_or_default()
            );
            return std::process::ExitCode::from(2);
        }
    };
    command.args(bench_args).arg("--").args(server_args);
    let e = command.exec();
    eprintln!("error: cannot run pushwire-bench: {e}");
    std::process::ExitCode::from(2)
}

/// The server flags of a command line: its arguments before the `bench`
/// subcommand, read the way clap reads them (a flag's value is not taken for
/// the subcommand: `--demo-channel bench bench` has one).
fn server_args(args: &[std::ffi::OsString]) -> &[std::ffi::OsString] {
    use clap::CommandFactory;
    let command = Cli::command();
    let takes_value =
        |long: &str| command.get_arguments().any(|a| a.get_long() == Some(long) && a.get_action().takes_values());
    let mut i = 1;
    while i < args.len() {
        let arg = args[i].to_string_lossy();
        if arg == "bench" {
            return &args[1..i];
        }
        if let Some(long) = arg.strip_prefix("--")
            && !long.contains('=')
            && takes_value(long)
        {
            i += 1;
        }
        i += 1;
    }
    &args[1..]
}

async fn run(config: Config) -> anyhow::Result<()> {
    let hub: Arc<dyn Hub> = match config.redis_options() {
        None => MemoryHub::bounded(config.history_limits(), config.memory_bounds()),
        Some(options) => connect_redis(options).await?,
    };
    let listener = TcpListener::bind(config.bind).with_context(|| format!("cannot listen on {}", config.bind))?;
    let running = pushwire::server::start(config.clone(), hub.clone(), listener)?;
    let ctx = running.state.ctx.clone();

    // Where WebTransport listens (UDP), when on: a firewall must let it through.
    let webtransport = running.state.webtransport.as_ref().map(|wt| format!("udp/{}", wt.addr));
    tracing::info!(
        hub = ctx.hub.kind(),
        demo_rate = config.demo_rate,
        write_delay = ?config.write_delay,
        webtransport = webtransport.as_deref().unwrap_or("off"),
        "pushwire listening: open {}://{}{}/ in a browser",
        if config.tls_cert.is_some() { "https" } else { "http" },
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
    let webtransport = running.webtransport.clone();
    let drained = async {
        if let Some(listener) = webtransport {
            listener.drained(config.shutdown_timeout).await;
        }
    };
    tokio::join!(running.handle.stop(true), drained);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &[&str]) -> Vec<std::ffi::OsString> {
        line.iter().map(Into::into).collect()
    }

    #[test]
    fn bench_is_a_subcommand_and_server_flags_stay_on_top() {
        let cli = Cli::try_parse_from(["pushwire", "--bind", "0.0.0.0:9000"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.config.bind.port(), 9000);
        let line =
            args(&["pushwire", "--workers", "1", "--demo-channel", "bench", "bench", "--clients", "3", "--help"]);
        let cli = Cli::try_parse_from(&line).unwrap();
        assert_eq!(cli.config.workers, Some(1));
        let Some(Command::Bench { args: bench }) = cli.command else { panic!("bench expected") };
        assert_eq!(bench, args(&["--clients", "3", "--help"]), "everything after `bench` is the load tool's");
        assert_eq!(server_args(&line), &line[1..5], "a flag's value is not the subcommand");
        assert_eq!(server_args(&args(&["pushwire", "--bind=0.0.0.0:1", "bench"])), &args(&["--bind=0.0.0.0:1"])[..]);
    }
}
