//! `cusp relay`: a userspace UDP impairment relay (the kernel's netem is not
//! always available), useful to test any UDP application under a bad network.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use cusp::relay::{Impairment, Relay, RelayConfig};

/// Options of `cusp relay`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on for clients, e.g. 127.0.0.1:9000.
    listen: SocketAddr,
    /// Address to forward to (the server under test), e.g. 127.0.0.1:8585.
    target: SocketAddr,
    /// One-way delay added in each direction, e.g. 25ms.
    #[arg(long, default_value = "0ms")]
    delay: String,
    /// Random variation of the delay (does not reorder), e.g. 5ms.
    #[arg(long, default_value = "0ms")]
    jitter: String,
    /// Datagrams dropped in each direction, e.g. 1%.
    #[arg(long, default_value = "0%")]
    loss: String,
    /// Datagrams duplicated, e.g. 0.1%.
    #[arg(long, default_value = "0%")]
    dup: String,
    /// Datagrams held back behind later ones, e.g. 1%.
    #[arg(long, default_value = "0%")]
    reorder: String,
    /// Extra delay of a reordered datagram.
    #[arg(long, default_value = "10ms")]
    reorder_delay: String,
    /// Rate limit per direction, e.g. 10mbit (default: none).
    #[arg(long)]
    rate: Option<String>,
    /// Seed of the random decisions (same seed, same decisions).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print statistics every this many seconds (0: only at exit).
    #[arg(long, default_value_t = 0)]
    stats_every: u64,
}

/// Parse the options into a relay configuration; errors name the bad option.
pub fn config(args: &Args) -> anyhow::Result<RelayConfig> {
    let mut imp = Impairment::default();
    let mut set = |key: &str, value: &str| {
        imp.set(key, value)
            .with_context(|| format!("--{key} {value}"))
    };
    set("delay", &args.delay)?;
    set("jitter", &args.jitter)?;
    set("loss", &args.loss)?;
    set("dup", &args.dup)?;
    set("reorder", &args.reorder)?;
    set("reorder-delay", &args.reorder_delay)?;
    if let Some(rate) = &args.rate {
        set("rate", rate)?;
    }
    imp.validate()?;
    Ok(RelayConfig::new(args.listen, args.target)
        .impair_both(imp)
        .seed(args.seed))
}

/// Run the relay until Ctrl-C, then print its statistics.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = config(&args)?;
    let relay = Relay::spawn(config)
        .with_context(|| format!("cannot relay {} -> {}", args.listen, args.target))?;
    eprintln!(
        "relaying {} -> {} (Ctrl-C to stop)",
        relay.local_addr(),
        args.target
    );
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    if args.stats_every > 0 {
        let mut tick = tokio::time::interval(Duration::from_secs(args.stats_every));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut ctrl_c => break,
                _ = tick.tick() => eprintln!("{:?}", relay.stats()),
            }
        }
    } else {
        ctrl_c.await.context("waiting for Ctrl-C")?;
    }
    let stats = relay.shutdown().await;
    eprintln!("up: {:?}\ndown: {:?}", stats.upstream, stats.downstream);
    Ok(())
}
