//! `pushwire-bench`, the load tool, as `pushwire bench` runs it:
//! `pushwire-bench [BENCH FLAGS] [-- SERVER FLAGS]`, the server flags
//! configuring the in-process server started when there is no `--url`.

use std::process::ExitCode;

use clap::Parser;
use pushwire::config::{Config, LogFormat};
use pushwire_bench::BenchArgs;

/// Measures the transports side by side on one publish stream: latency,
/// completeness, bytes on the wire and requests per delivered message, and the
/// server's CPU and memory. Without --url a server is started in this process.
#[derive(Debug, Parser)]
#[command(name = "pushwire bench", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,

    /// Flags of the in-process server (those `pushwire` takes), after `--`.
    #[arg(last = true, value_name = "SERVER FLAGS")]
    server: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|e| exit_on(e));
    let server = Config::try_parse_from(std::iter::once("pushwire".to_string()).chain(cli.server))
        .unwrap_or_else(|e| exit_on(e));
    // The table owns stdout; only warnings are logged, to stderr.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match server.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    pushwire_bench::main(cli.bench, server).await
}

/// Help and version as clap prints them; a bad flag in one line on stderr,
/// exit code 2, as every other bench input error.
fn exit_on(e: clap::Error) -> ! {
    if !e.use_stderr() {
        e.exit();
    }
    let rendered = e.render().to_string();
    eprintln!("{}", rendered.lines().next().unwrap_or("error: bad arguments"));
    std::process::exit(2);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_flags_parse_and_nonsense_is_refused() {
        let cli = Cli::try_parse_from([
            "pushwire-bench",
            "--clients",
            "3",
            "--transports",
            "ws,poll",
            "--",
            "--workers",
            "1",
        ])
        .unwrap();
        assert_eq!(cli.bench.clients, 3);
        assert_eq!(cli.bench.transports.len(), 2);
        assert_eq!(cli.server, ["--workers", "1"]);
        for args in [
            &["pushwire-bench", "--clients", "0"][..],
            &["pushwire-bench", "--transports", "ws,pigeon"],
            &["pushwire-bench", "--duration", "0s"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} accepted");
        }
    }
}
