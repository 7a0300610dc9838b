//! `cusp listen`: accepts streams on a service and prints their bytes on stdout (or saves
//! each to a file); with `--echo`, answers requests (`cusp cat --bidi`) with their body.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use cusp::{Host, InStream};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::common::{self, EndpointArgs, parse_service};

/// Options of `cusp listen`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Service number to accept streams on.
    #[arg(long, value_parser = parse_service)]
    service: u16,
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Save each stream to a new file in DIR (`stream-<n>-<peer>.bin`) instead of printing it.
    #[arg(long, value_name = "DIR", conflicts_with = "echo")]
    save: Option<PathBuf>,
    /// Answer each request (`cusp cat --bidi`, the request/response convention of
    /// `cusp::conversation`) with its own body.
    #[arg(long, alias = "bidi")]
    echo: bool,
    /// Exit after the first stream ended (not with --echo).
    #[arg(long, conflicts_with = "echo")]
    once: bool,
}

/// Default address: any interface, port 8585.
const DEFAULT_BIND: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8585);

/// Runs the subcommand.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(dir) = &args.save {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!("{} is not a directory", dir.display()),
            Err(e) => bail!("cannot use directory {}: {e}", dir.display()),
        }
    }
    let ep = args.endpoint.bind(DEFAULT_BIND)?;
    let what = if args.echo {
        "echoing requests"
    } else {
        "listening"
    };
    eprintln!(
        "{what} on {} service {} (key {})",
        ep.local_addr(),
        args.service,
        ep.public_key()
    );
    let result = if args.echo {
        let _server = ep
            .serve(Some(args.service), |host, body| async move {
                tracing::info!(peer = %host.key(), bytes = body.len(), "request");
                body
            })
            .with_context(|| format!("cannot serve service {}", args.service))?;
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")
    } else {
        accept_loop(&ep, &args).await
    };
    ep.close().await;
    result
}

async fn accept_loop(ep: &cusp::Endpoint, args: &Args) -> anyhow::Result<()> {
    let mut incoming = ep
        .advertise(Some(args.service))
        .with_context(|| format!("cannot accept on service {}", args.service))?;
    let stdout = Arc::new(Mutex::new(tokio::io::stdout()));
    let mut n = 0u64;
    loop {
        let accepted = tokio::select! {
            a = incoming.accept() => a,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some((host, _, stream)) = accepted else {
            bail!("endpoint closed");
        };
        n += 1;
        let save = args.save.clone();
        let stdout = stdout.clone();
        let task = async move {
            let peer = common::short_key(&host.key());
            let r = take(n, &host, stream, save.as_deref(), &stdout).await;
            match &r {
                Ok(bytes) => eprintln!("stream {n} from {peer}: {bytes} bytes"),
                Err(e) => eprintln!("cusp: stream {n} from {peer}: {e:#}"),
            }
            r.map(|_| ())
        };
        if args.once {
            return task.await;
        }
        tokio::spawn(task);
    }
}

/// Copies one stream to stdout or to a new file; returns its length.
async fn take(
    n: u64,
    host: &Host,
    mut stream: InStream,
    save: Option<&Path>,
    stdout: &Mutex<tokio::io::Stdout>,
) -> anyhow::Result<u64> {
    let mut total = 0u64;
    match save {
        Some(dir) => {
            let name = format!("stream-{n}-{}.bin", common::short_key(&host.key()));
            let path = dir.join(&name);
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .await
                .with_context(|| format!("cannot create {}", path.display()))?;
            while let Some(chunk) = stream.read_chunk(1 << 20).await? {
                file.write_all(&chunk)
                    .await
                    .with_context(|| format!("cannot write {}", path.display()))?;
                total += chunk.len() as u64;
            }
            file.sync_all()
                .await
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("saved {}", path.display());
        }
        None => {
            while let Some(chunk) = stream.read_chunk(1 << 20).await? {
                let mut out = stdout.lock().await;
                out.write_all(&chunk).await.context("writing to stdout")?;
                out.flush().await.context("writing to stdout")?;
                total += chunk.len() as u64;
            }
        }
    }
    Ok(total)
}
