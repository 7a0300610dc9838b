//! `cusp send`: sends one file to a `cusp recv` and exits 0 only once the receiver
//! confirmed the BLAKE3 hash (format in [`super::transfer`]).

use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::common::{self, EndpointArgs, parse_addr, parse_secs, parse_service};
use super::transfer::{self, Header};

/// Options of `cusp send`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The file to send.
    file: PathBuf,
    /// Address of the receiver (`cusp recv --listen`), e.g. 192.0.2.7:8585.
    #[arg(value_parser = parse_addr, value_name = "ADDR:PORT")]
    addr: SocketAddrV4,
    /// Service number the receiver listens on.
    #[arg(long, default_value_t = transfer::SERVICE, value_parser = parse_service)]
    service: u16,
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Give up when the receiver does not answer the handshake within this many seconds.
    #[arg(long, default_value = "10", value_parser = parse_secs, value_name = "SECS")]
    timeout: Duration,
    /// Give up when the receiver's verdict has not arrived this many seconds after the
    /// last byte was acknowledged (it hashes and syncs the file first).
    #[arg(long, default_value = "300", value_parser = parse_secs, value_name = "SECS")]
    verdict_timeout: Duration,
}

/// Runs the subcommand.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let path = &args.file;
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let meta = file
        .metadata()
        .await
        .with_context(|| format!("cannot stat {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let size = meta.len();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "received.bin".into());

    let ep = args.endpoint.bind(common::ANY)?;
    let result = send(&ep, &args, &mut file, name, size).await;
    ep.close().await;
    result
}

async fn send(
    ep: &cusp::Endpoint,
    args: &Args,
    file: &mut tokio::fs::File,
    name: String,
    size: u64,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let (host, mut out) = common::contact(ep, args.addr, args.service, args.timeout).await?;
    tracing::info!(peer = %host.key(), "connected");
    let (reply_service, mut replies) = host.listen()?;
    let header = Header {
        reply_service,
        algo: transfer::ALGO.into(),
        name: name.clone(),
        size,
    };
    let bar = common::progress_bar(size, &format!("send {name}"));
    let mut hasher = blake3::Hasher::new();
    let sent: anyhow::Result<()> = async {
        out.write_all(&header.encode()).await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = file
                .read(&mut buf[..want])
                .await
                .with_context(|| format!("reading {}", args.file.display()))?;
            if n == 0 {
                bail!(
                    "{} shrank while being sent ({} of {size} bytes read)",
                    args.file.display(),
                    size - left
                );
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).await?;
            left -= n as u64;
            bar.inc(n as u64);
        }
        out.write_all(hasher.finalize().as_bytes()).await?;
        Ok(())
    }
    .await;
    bar.finish_and_clear();
    if let Err(e) = sent {
        // The receiver may have refused the file (full disk, ...): show its reason.
        if let Ok(reason) = verdict(&mut replies, Duration::from_secs(2)).await {
            bail!("the receiver refused the file: {}", reason.trim());
        }
        return Err(e.context("sending"));
    }
    let hash = hasher.finalize();
    match out.finish_within(args.verdict_timeout).await {
        Ok(true) => {}
        Ok(false) => bail!("the receiver reset the stream before everything was acknowledged"),
        Err(e) => return Err(anyhow::Error::new(e).context("waiting for the acknowledgements")),
    }
    let sent_in = start.elapsed();
    let line = verdict(&mut replies, args.verdict_timeout)
        .await
        .context("no verdict from the receiver")?;
    let line = line.trim();
    match line.strip_prefix("OK ") {
        Some(rest) => {
            let (their_hash, saved) = rest.split_once(' ').unwrap_or((rest, "?"));
            if their_hash != hash.to_hex().as_str() {
                bail!("the receiver confirmed a different hash ({their_hash}, ours {hash})");
            }
            let secs = sent_in.as_secs_f64();
            eprintln!(
                "sent {} ({}) in {secs:.2} s ({:.1} MB/s); blake3 {hash} verified by the receiver, saved as {saved}",
                name,
                common::human_bytes(size),
                size as f64 / secs.max(1e-9) / 1e6,
            );
            Ok(())
        }
        None => bail!(
            "the receiver did not accept the file: {}",
            line.strip_prefix("ERR ").unwrap_or(line)
        ),
    }
}

/// The receiver's one-line verdict.
async fn verdict(replies: &mut cusp::Incoming, limit: Duration) -> anyhow::Result<String> {
    let reply = async {
        let (_, _, stream) = replies.accept().await.context("endpoint closed")?;
        let bytes = stream.read_to_end(64 << 10).await?;
        Ok::<_, anyhow::Error>(String::from_utf8_lossy(&bytes).into_owned())
    };
    match tokio::time::timeout(limit, reply).await {
        Ok(r) => r,
        Err(_) => bail!("timed out after {} s", limit.as_secs_f64()),
    }
}
