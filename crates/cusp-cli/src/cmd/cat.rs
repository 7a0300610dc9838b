//! `cusp cat`: stdin to one stream (netcat-style); with `--bidi`, stdin is sent as a
//! request (`cusp::conversation`) and the reply is printed.

use std::net::SocketAddrV4;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::common::{self, EndpointArgs, parse_addr, parse_secs, parse_service};

/// Options of `cusp cat`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address of the peer (e.g. a `cusp listen`), e.g. 127.0.0.1:8585.
    #[arg(value_parser = parse_addr, value_name = "ADDR:PORT")]
    addr: SocketAddrV4,
    /// Service number to open the stream to.
    #[arg(long, value_parser = parse_service)]
    service: u16,
    /// Send stdin as one request and print the response (needs a peer that answers
    /// requests, e.g. `cusp listen --echo`).
    #[arg(long)]
    bidi: bool,
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Give up when the peer does not answer (handshake, final acknowledgement, or
    /// response with --bidi) within this many seconds.
    #[arg(long, default_value = "30", value_parser = parse_secs, value_name = "SECS")]
    timeout: Duration,
}

/// Runs the subcommand.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let ep = args.endpoint.bind(common::ANY)?;
    let result = if args.bidi {
        bidi(&ep, &args).await
    } else {
        cat(&ep, &args).await
    };
    ep.close().await;
    result
}

async fn cat(ep: &cusp::Endpoint, args: &Args) -> anyhow::Result<()> {
    let (_host, mut out) = common::contact(ep, args.addr, args.service, args.timeout).await?;
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = stdin.read(&mut buf).await.context("reading stdin")?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).await.context("sending")?;
    }
    match out.finish_within(args.timeout).await {
        Ok(true) => Ok(()),
        Ok(false) => bail!("the peer reset the stream"),
        Err(e) => Err(anyhow::Error::new(e).context("waiting for the acknowledgement")),
    }
}

async fn bidi(ep: &cusp::Endpoint, args: &Args) -> anyhow::Result<()> {
    let mut body = Vec::new();
    tokio::io::stdin()
        .take(cusp::MAX_MESSAGE as u64 + 1)
        .read_to_end(&mut body)
        .await
        .context("reading stdin")?;
    if body.len() > cusp::MAX_MESSAGE {
        bail!(
            "a request is at most {} bytes (stdin is longer)",
            cusp::MAX_MESSAGE
        );
    }
    let reply = ep
        .request(args.addr, args.service, &body, args.timeout)
        .await
        .with_context(|| format!("request to {} service {}", args.addr, args.service))?;
    let mut stdout = tokio::io::stdout();
    stdout
        .write_all(&reply)
        .await
        .context("writing to stdout")?;
    stdout.flush().await.context("writing to stdout")?;
    Ok(())
}
