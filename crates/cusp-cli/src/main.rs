//! `cusp`: the command-line tool of the cusp CUSP implementation.
//!
//! Every subcommand has `--help`. Logs go to stderr; set `RUST_LOG=debug` for more.

mod cmd;

use clap::{Parser, Subcommand};

/// CUSP (Channel-based Unidirectional Stream Protocol) over UDP.
#[derive(Parser, Debug)]
#[command(name = "cusp", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a key (a host identity) and print its public key.
    Keygen(cmd::keygen::Args),
    /// Show the public key of a key file (or a fresh key) and the address an endpoint binds.
    Info(cmd::info::Args),
    /// Send FILE to a `cusp recv`; exits 0 only once the receiver verified its BLAKE3 hash.
    Send(cmd::send::Args),
    /// Receive files from `cusp send` into DIR (hash-verified, never overwriting).
    Recv(cmd::recv::Args),
    /// Measure goodput, CPU cost, round-trip time, losses and the latency of
    /// high-priority messages under bulk load (iperf-style).
    Perf(cmd::perf::Args),
    /// Accept streams on a service and print (or save) their bytes; --echo answers requests.
    Listen(cmd::listen::Args),
    /// Send stdin on one stream (netcat-style); --bidi sends a request and prints the reply.
    Cat(cmd::cat::Args),
    /// Relay UDP between LISTEN and TARGET with delay, jitter, loss, duplication and reordering.
    Relay(cmd::relay::Args),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cusp: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Keygen(args) => cmd::keygen::run(args),
            Command::Info(args) => cmd::info::run(args).await,
            Command::Send(args) => cmd::send::run(args).await,
            Command::Recv(args) => cmd::recv::run(args).await,
            Command::Listen(args) => cmd::listen::run(args).await,
            Command::Cat(args) => cmd::cat::run(args).await,
            Command::Perf(args) => cmd::perf::run(args).await,
            Command::Relay(args) => cmd::relay::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cusp: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
