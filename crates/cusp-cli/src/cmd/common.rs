//! Pieces shared by the subcommands: address and key options, binding an endpoint with
//! errors a user can act on, progress bars, byte formatting.

use std::net::{Ipv4Addr, SocketAddrV4, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cusp::{Endpoint, EndpointConfig};

/// Parses `ADDR:PORT` (an IPv4 address or a name that resolves to one; CUSP is IPv4 only).
pub fn parse_addr(s: &str) -> Result<SocketAddrV4, String> {
    if let Ok(a) = s.parse::<SocketAddrV4>() {
        return Ok(a);
    }
    if !s.contains(':') {
        return Err(format!("'{s}' is not ADDR:PORT (e.g. 127.0.0.1:8585)"));
    }
    let addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{s}': {e}"))?;
    addrs
        .filter_map(|a| match a {
            std::net::SocketAddr::V4(v4) => Some(v4),
            std::net::SocketAddr::V6(_) => None,
        })
        .next()
        .ok_or_else(|| format!("'{s}' has no IPv4 address (CUSP runs over IPv4)"))
}

/// Parses a well-known service number (1..=16383, `spec/streams.md` §4.3).
pub fn parse_service(s: &str) -> Result<u16, String> {
    let n: u16 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a service number (1..=16383)"))?;
    if (1..=0x3FFF).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "service {n} is out of range: well-known services are 1..=16383"
        ))
    }
}

/// Local identity and address: shared by every subcommand that binds an endpoint.
#[derive(clap::Args, Debug, Clone)]
pub struct EndpointArgs {
    /// Local UDP address to bind, e.g. 0.0.0.0:8585 (default: any interface and a free
    /// port; port 5201 for `perf --server`, 8585 for `listen`).
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_addr)]
    pub bind: Option<SocketAddrV4>,
    /// Private key file (from `cusp keygen`); default: a fresh key for this run.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

impl EndpointArgs {
    /// Binds an endpoint on `--bind` (or `default`) with `--key` (or a fresh key).
    pub fn bind(&self, default: SocketAddrV4) -> anyhow::Result<Endpoint> {
        let addr = self.bind.unwrap_or(default);
        let mut config = EndpointConfig::default().bind(addr);
        if let Some(path) = &self.key {
            config = config.private_key(cusp::keys::load(path)?);
        }
        bind(config)
    }
}

/// Any interface, a free port.
pub const ANY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);

/// How long closing an endpoint waits for its channels to close. Every subcommand has
/// its data acknowledged (or its verdict received) before it closes, so this only bounds
/// the exit: when both ends close at the same moment the channels do not close
/// gracefully and the wait runs to the limit (5 s by default).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Binds `config`, with the address in the error.
pub fn bind(config: EndpointConfig) -> anyhow::Result<Endpoint> {
    let config = config.close_timeout(CLOSE_TIMEOUT);
    let addr = config.bind;
    Endpoint::bind(config).map_err(|e| match e {
        cusp::Error::AddrInUse(_) | cusp::Error::Bind { .. } => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context(format!("cannot bind {addr}")),
    })
}

/// `contact`, bounded by `timeout`.
pub async fn contact(
    ep: &Endpoint,
    addr: SocketAddrV4,
    service: u16,
    timeout: Duration,
) -> anyhow::Result<(cusp::Host, cusp::OutStream)> {
    match tokio::time::timeout(timeout, ep.contact(addr, service)).await {
        Ok(r) => r.with_context(|| format!("cannot reach {addr} (service {service})")),
        Err(_) => anyhow::bail!(
            "no answer from {addr} within {} s (is `cusp` listening there, on service {service}?)",
            timeout.as_secs_f64()
        ),
    }
}

/// Parses a duration in seconds (fractions allowed) for `--timeout`-style options.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 && v < 1e9 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("'{s}' is not a positive number of seconds"))
    }
}

/// A byte-count progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr_with_hz(8),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// `1.23 MB` style (decimal units).
pub fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.2} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

/// The first 16 hex digits of a public key, for log lines.
pub fn short_key(key: &cusp::PublicKey) -> String {
    let s = key.to_string();
    s.chars().take(16).collect()
}

/// Process CPU time (user + system) so far.
pub fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is valid writable memory of the right type, and getrusage only
    // writes into it; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage returned 0, so it initialised the struct (it was zeroed anyway).
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
