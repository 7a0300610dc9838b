//! `cusp recv`: receives files from `cusp send` into a directory. Each file is written to
//! a temporary name, checked against the sender's BLAKE3 hash, synced, and only then
//! given its name; an existing file is never overwritten (`name (1).ext`, ...).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use cusp::{Host, InStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::common::{self, parse_addr, parse_service};
use super::transfer::{self, Header};

/// Bytes collected before each write to the file.
const WRITE_SIZE: usize = 1 << 20;

/// Options of `cusp recv`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to save received files in (must exist).
    dir: PathBuf,
    /// Local UDP address to listen on.
    #[arg(long, value_parser = parse_addr, value_name = "ADDR:PORT", default_value = "0.0.0.0:8585")]
    listen: SocketAddrV4,
    /// Service number to accept files on.
    #[arg(long, default_value_t = transfer::SERVICE, value_parser = parse_service)]
    service: u16,
    /// Private key file (from `cusp keygen`); default: a fresh key for this run.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Exit after the first transfer (with its outcome as exit status).
    #[arg(long)]
    once: bool,
}

/// Runs the subcommand.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let dir = args.dir.clone();
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("{} is not a directory", dir.display()),
        Err(e) => bail!("cannot use directory {}: {e}", dir.display()),
    }
    let endpoint = common::EndpointArgs {
        bind: Some(args.listen),
        key: args.key.clone(),
    };
    let ep = endpoint.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    let mut incoming = ep
        .advertise(Some(args.service))
        .with_context(|| format!("cannot accept on service {}", args.service))?;
    eprintln!(
        "receiving into {} on {} service {} (key {})",
        dir.display(),
        ep.local_addr(),
        args.service,
        ep.public_key()
    );
    let result = loop {
        let accepted = tokio::select! {
            a = incoming.accept() => a,
            _ = tokio::signal::ctrl_c() => break Ok(()),
        };
        let Some((host, _, stream)) = accepted else {
            break Err(anyhow::anyhow!("endpoint closed"));
        };
        let dir = dir.clone();
        if args.once {
            break receive(host, stream, &dir).await;
        }
        tokio::spawn(async move {
            if let Err(e) = receive(host, stream, &dir).await {
                eprintln!("cusp: transfer failed: {e:#}");
            }
        });
    };
    ep.close().await;
    result
}

/// Receives one file and answers the sender.
async fn receive(host: Host, mut stream: InStream, dir: &Path) -> anyhow::Result<()> {
    let peer = common::short_key(&host.key());
    let header = match Header::read(&mut stream).await {
        Ok(h) => h,
        Err(e) => {
            stream.reset();
            return Err(e.context(format!("from {peer}")));
        }
    };
    let start = Instant::now();
    let first_addr = host.remote_addr();
    let name = transfer::sanitize(&header.name);
    tracing::info!(%peer, %name, size = header.size, "incoming file");
    let outcome = save(&mut stream, &header, &name, dir).await;
    let reply = match &outcome {
        Ok((hash, path)) => format!(
            "OK {hash} {}\n",
            path.file_name().unwrap_or_default().to_string_lossy()
        ),
        Err(e) => {
            stream.reset();
            format!("ERR {e:#}\n")
        }
    };
    let answered = async {
        let mut out = host.connect(header.reply_service)?;
        out.write_all(reply.as_bytes()).await?;
        out.finish_within(std::time::Duration::from_secs(30))
            .await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let (hash, path) = outcome.with_context(|| format!("{name} from {peer}"))?;
    let secs = start.elapsed().as_secs_f64();
    let at = match (first_addr, host.remote_addr()) {
        (Some(a), Some(b)) if a != b => format!("{a}, moved to {b}"),
        (Some(a), _) => a.to_string(),
        (None, _) => "?".into(),
    };
    eprintln!(
        "received {} ({}) from {peer} at {at} in {secs:.2} s ({:.1} MB/s): blake3 {hash} matches, saved as {}",
        header.name,
        common::human_bytes(header.size),
        header.size as f64 / secs.max(1e-9) / 1e6,
        path.display()
    );
    answered.context("the file is saved, but the sender could not be told")?;
    Ok(())
}

/// Writes the file's bytes to a temporary file, checks the hash, moves it in place.
async fn save(
    stream: &mut InStream,
    header: &Header,
    name: &str,
    dir: &Path,
) -> anyhow::Result<(blake3::Hash, PathBuf)> {
    if header.algo != transfer::ALGO {
        bail!("unsupported hash algorithm {:?}", header.algo);
    }
    if let Some(free) = free_space(dir)
        && free < header.size
    {
        bail!(
            "not enough space in {}: {} needed, {} free",
            dir.display(),
            common::human_bytes(header.size),
            common::human_bytes(free)
        );
    }
    let tmp = dir.join(format!(".{name}.{:016x}.cusp-part", random()));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .await
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = async {
        let bar = common::progress_bar(header.size, &format!("recv {name}"));
        let mut hasher = blake3::Hasher::new();
        let mut got = 0u64;
        let mut buf = Vec::with_capacity(WRITE_SIZE + (64 << 10));
        while got < header.size {
            let want = (header.size - got).min(1 << 20) as usize;
            let Some(chunk) = stream.read_chunk(want).await? else {
                bail!("the sender stopped after {got} of {} bytes", header.size);
            };
            hasher.update(&chunk);
            buf.extend_from_slice(&chunk);
            got += chunk.len() as u64;
            // Chunks are about a datagram each: write to disk in larger pieces.
            if buf.len() >= WRITE_SIZE || got == header.size {
                file.write_all(&buf)
                    .await
                    .map_err(|e| disk_error(e, &tmp))?;
                buf.clear();
                bar.set_position(got);
            }
        }
        bar.finish_and_clear();
        let mut theirs = [0u8; 32];
        stream
            .read_exact(&mut theirs)
            .await
            .context("reading the sender's hash")?;
        let ours = hasher.finalize();
        if ours != blake3::Hash::from_bytes(theirs) {
            bail!(
                "hash mismatch: received data hashes to {ours}, the sender's is {}",
                blake3::Hash::from_bytes(theirs)
            );
        }
        file.flush().await.map_err(|e| disk_error(e, &tmp))?;
        file.sync_all().await.map_err(|e| disk_error(e, &tmp))?;
        drop(file);
        let path = place(&tmp, dir, name)
            .with_context(|| format!("cannot move {} into place", tmp.display()))?;
        Ok((ours, path))
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Gives `tmp` the first free name among `name`, `name (1)`, ... in `dir`, never
/// replacing an existing file.
fn place(tmp: &Path, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    for i in 0..100_000 {
        let path = dir.join(transfer::candidate(name, i));
        match std::fs::hard_link(tmp, &path) {
            Ok(()) => {
                std::fs::remove_file(tmp)?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            // A file system without hard links: check, then rename (racy, but only
            // against another writer of the same directory).
            Err(_) => {
                if std::fs::symlink_metadata(&path).is_ok() {
                    continue;
                }
                std::fs::rename(tmp, &path)?;
                return Ok(path);
            }
        }
    }
    Err(std::io::Error::other("no free name"))
}

/// A write error, with the full-disk case spelled out.
fn disk_error(e: std::io::Error, path: &Path) -> anyhow::Error {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        anyhow::anyhow!("disk full while writing {}", path.display())
    } else {
        anyhow::Error::new(e).context(format!("cannot write {}", path.display()))
    }
}

/// Bytes available to us on the file system of `dir` (`None` if unknown).
fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated path, `st` valid writable memory of the right
    // type; statvfs only writes into it.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised the struct (zeroed anyway).
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // u32 on some targets
    let (avail, frsize) = (st.f_bavail as u64, st.f_frsize as u64);
    Some(avail.saturating_mul(frsize))
}

/// A random number for temporary names (the std hasher's per-process random keys).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
