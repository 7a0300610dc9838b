//! `cusp perf`: iperf-style measurement of one CUSP host pair.
//!
//! The client opens two streams to the server's perf service. The first byte of each
//! says what it is:
//! * `P` (ping), then the 2-byte big-endian number of a per-host service the client
//!   listens on: the server echoes every 16-byte message (`seq`, send time in ns) back on a
//!   stream to that service. Both directions run at high priority.
//! * `B` (bulk): the server reads and discards everything.
//!
//! The client first measures the idle round trip with a few sequential pings, then sends
//! bulk data for `--seconds` while a ping leaves every 10 ms; those round trips are the
//! latency of high-priority messages under the bulk load.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use cusp::{Endpoint, Host, InStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::common::{self, EndpointArgs, parse_addr, parse_secs, parse_service};

/// Priority of the ping streams (the bulk stream has the default 0).
const PING_PRIORITY: f32 = 10.0;
/// Sequential pings before the bulk transfer starts.
const IDLE_PINGS: u64 = 10;
/// Interval of pings under load.
const PING_EVERY: Duration = Duration::from_millis(10);
/// Size of one bulk write (one shared buffer, queued without copying).
const CHUNK: usize = 1 << 20;
/// Size of a ping message: `seq` and send time, both u64 big-endian.
const PING_LEN: usize = 16;

/// Options of `cusp perf`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Measure against a `cusp perf --server` at ADDR:PORT. Without --client or --server,
    /// both ends run in this process on 127.0.0.1.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_addr, conflicts_with = "server")]
    client: Option<SocketAddrV4>,
    /// Run only the server: answer perf clients until Ctrl-C (see --bind, --service).
    #[arg(long)]
    server: bool,
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Service number of the perf server.
    #[arg(long, default_value = "5201", value_parser = parse_service)]
    service: u16,
    /// Seconds of bulk transfer.
    #[arg(long, default_value = "5", value_parser = parse_secs, value_name = "N")]
    seconds: Duration,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Give up when the server does not answer within this many seconds.
    #[arg(long, default_value = "10", value_parser = parse_secs, value_name = "SECS")]
    timeout: Duration,
}

/// What one run measured.
#[derive(Debug)]
struct Report {
    local: SocketAddrV4,
    remote: SocketAddrV4,
    in_process: bool,
    handshake: Duration,
    bytes: u64,
    elapsed: Duration,
    delivered: bool,
    cpu: Duration,
    idle_rtt: Vec<Duration>,
    loaded_rtt: Vec<Duration>,
    pings_sent: u64,
    channel: Option<cusp::proto::ChannelStats>,
    stream_bytes_sent: u64,
    datagrams_sent: u64,
    send_syscalls: u64,
}

/// Runs the subcommand.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.server {
        let ep = args
            .endpoint
            .bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5201))?;
        let _server = spawn_server(&ep, args.service, true)?;
        eprintln!(
            "perf server on {} service {} key {} (Ctrl-C to stop)",
            ep.local_addr(),
            args.service,
            ep.public_key()
        );
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        ep.close().await;
        return Ok(());
    }
    let (report, server_ep) = match args.client {
        Some(addr) => {
            let ep = args.endpoint.bind(common::ANY)?;
            let r = client(&ep, addr, &args, false).await;
            ep.close().await;
            (r?, None)
        }
        None => {
            let loopback = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
            let server = common::bind(cusp::EndpointConfig::loopback())?;
            let _task = spawn_server(&server, args.service, false)?;
            let ep = args.endpoint.bind(loopback)?;
            let r = client(&ep, server.local_addr(), &args, true).await;
            ep.close().await;
            (r?, Some(server))
        }
    };
    if let Some(s) = server_ep {
        s.close().await;
    }
    if args.json {
        println!("{}", json(&report));
    } else {
        print!("{}", table(&report));
    }
    if !report.delivered {
        bail!("the bulk stream was reset before everything was acknowledged");
    }
    Ok(())
}

/// Accepts perf streams on `service` until the endpoint closes.
fn spawn_server(
    ep: &Endpoint,
    service: u16,
    verbose: bool,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut incoming = ep
        .advertise(Some(service))
        .with_context(|| format!("cannot serve perf on service {service}"))?;
    Ok(tokio::spawn(async move {
        while let Some((host, _, stream)) = incoming.accept().await {
            tokio::spawn(async move {
                let peer = common::short_key(&host.key());
                if let Err(e) = serve_stream(host, stream, verbose).await {
                    tracing::info!(%peer, "perf stream ended: {e:#}");
                }
            });
        }
    }))
}

async fn serve_stream(host: Host, mut stream: InStream, verbose: bool) -> anyhow::Result<()> {
    let mut kind = [0u8; 1];
    stream.read_exact(&mut kind).await?;
    match kind[0] {
        b'B' => {
            let start = Instant::now();
            let mut n = 0u64;
            while let Some(chunk) = stream.read_chunk(CHUNK).await? {
                n += chunk.len() as u64;
            }
            let secs = start.elapsed().as_secs_f64();
            if verbose {
                eprintln!(
                    "{}: received {} in {secs:.2} s ({:.3} Gbit/s)",
                    host.remote_addr()
                        .map_or_else(|| common::short_key(&host.key()), |a| a.to_string()),
                    common::human_bytes(n),
                    n as f64 * 8.0 / secs / 1e9
                );
            }
        }
        b'P' => {
            let mut svc = [0u8; 2];
            stream.read_exact(&mut svc).await?;
            let mut reply = host.connect(u16::from_be_bytes(svc))?;
            reply.set_priority(PING_PRIORITY)?;
            let mut msg = [0u8; PING_LEN];
            loop {
                match stream.read_exact(&mut msg).await {
                    Ok(_) => reply.write_all(&msg).await?,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e.into()),
                }
            }
            reply.finish_within(Duration::from_secs(10)).await?;
        }
        other => {
            stream.reset();
            bail!("unknown perf stream kind {other:#04x}");
        }
    }
    Ok(())
}

/// One ping message: `seq` and the send time relative to `t0`.
fn ping_msg(seq: u64, t0: Instant) -> [u8; PING_LEN] {
    let mut m = [0u8; PING_LEN];
    m[..8].copy_from_slice(&seq.to_be_bytes());
    m[8..].copy_from_slice(&(t0.elapsed().as_nanos() as u64).to_be_bytes());
    m
}

/// Reads one echoed ping: `(seq, round trip)`, `None` at the end of the stream.
async fn read_echo(echo: &mut InStream, t0: Instant) -> anyhow::Result<Option<(u64, Duration)>> {
    let mut m = [0u8; PING_LEN];
    match echo.read_exact(&mut m).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let seq = u64::from_be_bytes(m[..8].try_into().expect("8 bytes"));
    let sent = u64::from_be_bytes(m[8..].try_into().expect("8 bytes"));
    let now = t0.elapsed().as_nanos() as u64;
    Ok(Some((seq, Duration::from_nanos(now.saturating_sub(sent)))))
}

async fn client(
    ep: &Endpoint,
    addr: SocketAddrV4,
    args: &Args,
    in_process: bool,
) -> anyhow::Result<Report> {
    let t0 = Instant::now();
    let (host, mut ping) = common::contact(ep, addr, args.service, args.timeout).await?;
    let handshake = t0.elapsed();
    let (reply_service, mut replies) = host.listen()?;
    ping.set_priority(PING_PRIORITY)?;
    let mut head = vec![b'P'];
    head.extend_from_slice(&reply_service.to_be_bytes());
    ping.write_all(&head).await?;

    // Idle round trips, one at a time.
    let mut idle_rtt = Vec::new();
    let mut echo: Option<InStream> = None;
    for seq in 0..IDLE_PINGS {
        ping.write_all(&ping_msg(seq, t0)).await?;
        if echo.is_none() {
            let accepted = tokio::time::timeout(args.timeout, replies.accept())
                .await
                .context("the perf server did not answer the ping stream")?;
            let (_, _, s) = accepted.context("endpoint closed")?;
            echo = Some(s);
        }
        let s = echo.as_mut().expect("accepted above");
        match tokio::time::timeout(args.timeout, read_echo(s, t0)).await {
            Ok(Ok(Some((_, rtt)))) => idle_rtt.push(rtt),
            Ok(Ok(None)) => bail!("the perf server ended the ping stream"),
            Ok(Err(e)) => return Err(e.context("reading ping echoes")),
            Err(_) => bail!("no ping echo within {} s", args.timeout.as_secs_f64()),
        }
    }
    let mut echo = echo.expect("IDLE_PINGS > 0");

    // Under load: pings every 10 ms while the bulk stream runs.
    let stop = Arc::new(AtomicBool::new(false));
    let pinger = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PING_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = IDLE_PINGS;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                ping.write_all(&ping_msg(seq, t0)).await?;
                seq += 1;
            }
            ping.finish_within(Duration::from_secs(10)).await?;
            Ok::<u64, anyhow::Error>(seq - IDLE_PINGS)
        })
    };
    let reader = tokio::spawn(async move {
        let mut rtts = Vec::new();
        while let Some((seq, rtt)) = read_echo(&mut echo, t0).await? {
            if seq >= IDLE_PINGS {
                rtts.push(rtt);
            }
        }
        Ok::<_, anyhow::Error>(rtts)
    });

    let sent = Arc::new(AtomicU64::new(0));
    let progress = progress_line(sent.clone(), args.seconds);
    let mut bulk = host.connect(args.service)?;
    let mut data = vec![0u8; CHUNK];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let data = Bytes::from(data);
    let cpu_start = common::cpu_time();
    let start = Instant::now();
    bulk.write_all(b"B").await?;
    while start.elapsed() < args.seconds {
        bulk.write_bytes(data.clone())
            .await
            .context("bulk stream")?;
        sent.fetch_add(CHUNK as u64, Ordering::Relaxed);
    }
    let delivered = bulk
        .finish_within(Duration::from_secs(60))
        .await
        .context("waiting for the bulk data to be acknowledged")?;
    let elapsed = start.elapsed();
    let cpu = common::cpu_time().saturating_sub(cpu_start);
    progress.abort();
    stop.store(true, Ordering::Relaxed);
    let channel = host.channel_stats();
    let stream_bytes_sent = host.stats().map_or(0, |s| s.bytes_sent);
    let pings_sent = pinger.await.context("ping task")??;
    let loaded_rtt = match tokio::time::timeout(Duration::from_secs(10), reader).await {
        Ok(r) => r.context("echo task")??,
        Err(_) => bail!("the ping echoes did not end within 10 s"),
    };
    let udp = ep.stats().udp;
    Ok(Report {
        local: host.local_addr().unwrap_or(ep.local_addr()),
        remote: addr,
        in_process,
        handshake,
        bytes: sent.load(Ordering::Relaxed),
        elapsed,
        delivered,
        cpu,
        idle_rtt,
        loaded_rtt,
        pings_sent,
        channel,
        stream_bytes_sent,
        datagrams_sent: udp.datagrams_sent,
        send_syscalls: udp.send_syscalls,
    })
}

/// A progress line on stderr (hidden if stderr is not a terminal), until aborted.
fn progress_line(sent: Arc<AtomicU64>, total: Duration) -> tokio::task::JoinHandle<()> {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total.as_millis() as u64),
        indicatif::ProgressDrawTarget::stderr_with_hz(5),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("perf [{bar:25}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let guard = ClearOnDrop(bar.clone());
    tokio::spawn(async move {
        let _guard = guard;
        let start = Instant::now();
        let mut last = (start, 0u64);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            let now = Instant::now();
            let n = sent.load(Ordering::Relaxed);
            let rate = (n - last.1) as f64 * 8.0 / (now - last.0).as_secs_f64().max(1e-3) / 1e9;
            last = (now, n);
            bar.set_position((now - start).as_millis() as u64);
            bar.set_message(format!(
                "{:.1} s, {} sent, {rate:.2} Gbit/s",
                (now - start).as_secs_f64(),
                common::human_bytes(n)
            ));
        }
    })
}

/// Clears the progress line when the task ends (or is aborted).
struct ClearOnDrop(indicatif::ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// The `q`-quantile of `v` (nearest rank), in milliseconds.
fn quantile_ms(v: &[Duration], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort();
    let i = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    Some(s[i].as_secs_f64() * 1e3)
}

impl Report {
    fn gbit(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64() / 1e9
    }
    fn mbyte(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
    fn cpu_per_gib(&self) -> f64 {
        self.cpu.as_secs_f64() / (self.bytes as f64 / (1u64 << 30) as f64).max(1e-9)
    }
    fn lost(&self) -> Option<u64> {
        self.channel.map(|c| c.missing + c.timeouts)
    }
    fn retransmitted(&self) -> Option<u64> {
        self.channel
            .map(|c| c.payload_bytes_sent.saturating_sub(self.stream_bytes_sent))
    }
}

fn json(r: &Report) -> serde_json::Value {
    let ch = r.channel;
    serde_json::json!({
        "local": r.local.to_string(),
        "remote": r.remote.to_string(),
        "in_process": r.in_process,
        "seconds": r.elapsed.as_secs_f64(),
        "bytes": r.bytes,
        "delivered": r.delivered,
        "goodput_gbit_s": r.gbit(),
        "goodput_mb_s": r.mbyte(),
        "cpu_seconds": r.cpu.as_secs_f64(),
        "cpu_seconds_per_gib": r.cpu_per_gib(),
        "handshake_ms": r.handshake.as_secs_f64() * 1e3,
        "rtt_idle_ms": {
            "samples": r.idle_rtt.len(),
            "min": r.idle_rtt.iter().min().map(|d| d.as_secs_f64() * 1e3),
            "p50": quantile_ms(&r.idle_rtt, 0.5),
        },
        "priority_rtt_under_load_ms": {
            "sent": r.pings_sent,
            "samples": r.loaded_rtt.len(),
            "p50": quantile_ms(&r.loaded_rtt, 0.5),
            "p99": quantile_ms(&r.loaded_rtt, 0.99),
            "max": quantile_ms(&r.loaded_rtt, 1.0),
        },
        "losses": {
            "tracked_datagrams_sent": ch.map(|c| c.tracked_sent),
            "lost": r.lost(),
            "lost_fast_retransmit": ch.map(|c| c.missing),
            "lost_timeout": ch.map(|c| c.timeouts),
            "retransmitted_bytes": r.retransmitted(),
        },
        "udp": {
            "datagrams_sent": r.datagrams_sent,
            "send_syscalls": r.send_syscalls,
        },
    })
}

fn table(r: &Report) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3} ms"));
    let who = if r.in_process {
        "both ends in this process"
    } else {
        "this client process"
    };
    let mut s = format!(
        "cusp perf {} -> {} ({:.2} s of bulk data, {})\n",
        r.local,
        r.remote,
        r.elapsed.as_secs_f64(),
        if r.in_process {
            "loopback, one process"
        } else {
            "client"
        }
    );
    s += &format!(
        "  goodput        {:.3} Gbit/s = {:.1} MB/s ({} {})\n",
        r.gbit(),
        r.mbyte(),
        common::human_bytes(r.bytes),
        if r.delivered {
            "acknowledged"
        } else {
            "sent, NOT all acknowledged"
        }
    );
    s += &format!(
        "  CPU            {:.2} s user+sys ({:.0}% of one core), {:.2} CPU-s/GiB ({who})\n",
        r.cpu.as_secs_f64(),
        100.0 * r.cpu.as_secs_f64() / r.elapsed.as_secs_f64(),
        r.cpu_per_gib()
    );
    s += &format!(
        "  RTT idle       p50 {}, min {} ({} ping-pongs on a side stream)\n",
        ms(quantile_ms(&r.idle_rtt, 0.5)),
        ms(r.idle_rtt.iter().min().map(|d| d.as_secs_f64() * 1e3)),
        r.idle_rtt.len()
    );
    s += &format!(
        "  prio RTT load  p50 {}, p99 {}, max {} (round trips of {} of {} high-priority pings, one per {} ms)\n",
        ms(quantile_ms(&r.loaded_rtt, 0.5)),
        ms(quantile_ms(&r.loaded_rtt, 0.99)),
        ms(quantile_ms(&r.loaded_rtt, 1.0)),
        r.loaded_rtt.len(),
        r.pings_sent,
        PING_EVERY.as_millis()
    );
    match r.channel {
        Some(c) => {
            s += &format!(
                "  losses         {} of {} tracked datagrams ({} fast retransmit, {} timeout), {} retransmitted\n",
                c.missing + c.timeouts,
                c.tracked_sent,
                c.missing,
                c.timeouts,
                common::human_bytes(r.retransmitted().unwrap_or(0))
            );
        }
        None => s += "  losses         - (no channel bound at the end)\n",
    }
    s += &format!(
        "  UDP            {} datagrams in {} send calls; handshake {:.3} ms\n",
        r.datagrams_sent,
        r.send_syscalls,
        r.handshake.as_secs_f64() * 1e3
    );
    s
}
