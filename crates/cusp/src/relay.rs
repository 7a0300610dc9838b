//! A userspace UDP impairment relay: a bad network between a client and a server, for tests
//! and for users who want to see their application under delay, jitter, loss, duplication,
//! reordering and a bandwidth limit on a kernel without netem.
//!
//! [`Relay::spawn`] listens on [`RelayConfig::listen`]; each client address seen there gets
//! its own upstream socket towards [`RelayConfig::target`], so replies from the target find
//! their way back to the right client. Each direction of each client goes through a [`Link`],
//! a sans-IO model of one impaired path that decides, from a seeded RNG, what to drop,
//! duplicate and delay; the same seed and the same arrivals give the same decisions.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use crate::udp::{RecvBuf, UdpError, UdpIo};

/// Impairments applied to one direction of traffic, in this order: loss, duplication, rate
/// limit (a token bucket feeding a bounded queue), delay with jitter, reordering.
///
/// The default impairs nothing. Fields can be set directly or through the chained setters
/// of the same names; [`Impairment::set`] takes the human strings of a command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Impairment {
    /// Fixed one-way delay added to every datagram.
    pub delay: Duration,
    /// Each datagram's delay varies uniformly within `delay ± jitter` (never below zero).
    pub jitter: Duration,
    /// Whether jitter may reorder datagrams. If not (the default), a datagram never
    /// overtakes an earlier one: it waits for the one before it, as on a real FIFO path.
    pub jitter_reorders: bool,
    /// Probability in `0.0..=1.0` that a datagram is dropped.
    pub loss: f64,
    /// Probability in `0.0..=1.0` that a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability in `0.0..=1.0` that a datagram is held back by `reorder_delay` more, so
    /// that the datagrams sent just after it overtake it.
    pub reorder: f64,
    /// Extra delay of a reordered datagram.
    pub reorder_delay: Duration,
    /// Bandwidth limit in bytes per second; `None` for no limit.
    pub rate: Option<u64>,
    /// Depth of the token bucket in bytes: how much may pass at once after an idle spell.
    pub burst: u64,
    /// Bytes that may wait for the rate limiter; datagrams beyond are dropped (tail drop).
    pub queue_limit: u64,
}

impl Default for Impairment {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            jitter_reorders: false,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            // Long enough for a few later datagrams to overtake at any useful rate.
            reorder_delay: Duration::from_millis(10),
            rate: None,
            // One maximum-size UDP datagram, so that any datagram can pass an idle limiter.
            burst: 64 * 1024,
            // 256 KiB: 200 ms of queue at 10 Mbit/s, a typical shallow bottleneck buffer.
            queue_limit: 256 * 1024,
        }
    }
}

macro_rules! setter {
    ($(#[$doc:meta] $name:ident: $ty:ty),* $(,)?) => {
        $(#[$doc] #[must_use] pub fn $name(mut self, $name: $ty) -> Self {
            self.$name = $name;
            self
        })*
    };
}

impl Impairment {
    setter! {
        /// Sets [`Impairment::delay`].
        delay: Duration,
        /// Sets [`Impairment::jitter`].
        jitter: Duration,
        /// Sets [`Impairment::jitter_reorders`].
        jitter_reorders: bool,
        /// Sets [`Impairment::loss`].
        loss: f64,
        /// Sets [`Impairment::duplicate`].
        duplicate: f64,
        /// Sets [`Impairment::reorder`].
        reorder: f64,
        /// Sets [`Impairment::reorder_delay`].
        reorder_delay: Duration,
        /// Sets [`Impairment::rate`].
        rate: Option<u64>,
        /// Sets [`Impairment::burst`].
        burst: u64,
        /// Sets [`Impairment::queue_limit`].
        queue_limit: u64,
    }

    /// Sets one impairment from command-line words: `delay`, `jitter`, `reorder-delay`
    /// take durations (`25ms`); `loss`, `dup`, `reorder` take percentages (`1%`); `rate`
    /// takes a rate (`10mbit`); `burst`, `queue` take byte counts.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ParseError> {
        match key {
            "delay" => self.delay = parse_duration(value)?,
            "jitter" => self.jitter = parse_duration(value)?,
            "reorder-delay" => self.reorder_delay = parse_duration(value)?,
            "loss" => self.loss = parse_percent(value)?,
            "dup" | "duplicate" => self.duplicate = parse_percent(value)?,
            "reorder" => self.reorder = parse_percent(value)?,
            "rate" => self.rate = Some(parse_rate(value)?),
            "burst" => self.burst = parse_bytes(value)?,
            "queue" | "queue-limit" => self.queue_limit = parse_bytes(value)?,
            _ => return Err(ParseError::new("impairment", key, "unknown impairment")),
        }
        Ok(())
    }

    /// Checks that probabilities lie in `0..=1` and that a rate is not zero.
    pub fn validate(&self) -> Result<(), RelayError> {
        for (name, p) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(RelayError::InvalidConfig(format!(
                    "{name} probability {p} is not within 0..=1"
                )));
            }
        }
        if self.rate == Some(0) {
            return Err(RelayError::InvalidConfig("rate of 0 bytes/s".into()));
        }
        Ok(())
    }
}

/// Everything [`Relay::spawn`] needs.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayConfig {
    /// Address clients send to.
    pub listen: SocketAddr,
    /// Address the relay forwards to (the server under test).
    pub target: SocketAddr,
    /// Impairments from client to target.
    pub upstream: Impairment,
    /// Impairments from target back to client.
    pub downstream: Impairment,
    /// Seed of the random decisions; the same seed gives the same decisions.
    pub seed: u64,
    /// Most clients relayed at once; datagrams from further clients are dropped.
    pub max_clients: usize,
    /// A client silent both ways this long is forgotten and its upstream socket closed.
    pub client_idle_timeout: Duration,
    /// Datagrams a client may have waiting between the listener and its link before
    /// further ones are dropped (counted as queue drops upstream).
    pub client_queue: usize,
}

impl RelayConfig {
    /// A relay from `listen` to `target` that impairs nothing yet.
    pub fn new(listen: SocketAddr, target: SocketAddr) -> Self {
        Self {
            listen,
            target,
            upstream: Impairment::default(),
            downstream: Impairment::default(),
            seed: 0,
            // Each client holds one socket and one task: 1024 stays far below fd limits.
            max_clients: 1024,
            client_idle_timeout: Duration::from_secs(60),
            // About 1.5 MiB of 1468-byte datagrams, a few ms at the fastest a relay goes.
            client_queue: 1024,
        }
    }

    /// Applies `impairment` to both directions.
    #[must_use]
    pub fn impair_both(mut self, impairment: Impairment) -> Self {
        self.upstream = impairment.clone();
        self.downstream = impairment;
        self
    }

    /// Sets [`RelayConfig::upstream`].
    #[must_use]
    pub fn upstream(mut self, impairment: Impairment) -> Self {
        self.upstream = impairment;
        self
    }

    /// Sets [`RelayConfig::downstream`].
    #[must_use]
    pub fn downstream(mut self, impairment: Impairment) -> Self {
        self.downstream = impairment;
        self
    }

    /// Sets [`RelayConfig::seed`].
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// Why a relay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// A configuration value out of range.
    #[error("invalid relay configuration: {0}")]
    InvalidConfig(String),
    /// The listening socket could not be bound.
    #[error("cannot bind relay socket: {0}")]
    Bind(#[from] UdpError),
}

/// A human string that does not parse as a duration, percentage, rate or byte count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct ParseError {
    what: &'static str,
    input: String,
    reason: &'static str,
}

impl ParseError {
    fn new(what: &'static str, input: &str, reason: &'static str) -> Self {
        Self {
            what,
            input: input.to_owned(),
            reason,
        }
    }
}

/// Splits `"1.5ms"` into `(1.5, "ms")`; the number must be finite and not negative.
fn number_unit(what: &'static str, input: &str) -> Result<(f64, String), ParseError> {
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| ParseError::new(what, input, "expected a number first"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(ParseError::new(
            what,
            input,
            "must be finite and not negative",
        ));
    }
    Ok((value, unit.trim().to_ascii_lowercase()))
}

/// Parses a duration such as `25ms`, `1.5s`, `250us`, `0`; units `ns`, `us` (`µs`), `ms`,
/// `s`, `min`.
pub fn parse_duration(input: &str) -> Result<Duration, ParseError> {
    let (value, unit) = number_unit("duration", input)?;
    let seconds = match unit.as_str() {
        "" if value == 0.0 => 0.0,
        "ns" => value / 1e9,
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "min" => value * 60.0,
        _ => {
            return Err(ParseError::new(
                "duration",
                input,
                "unit is not ns, us, ms, s or min",
            ));
        }
    };
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| ParseError::new("duration", input, "out of range"))
}

/// Parses a percentage such as `1%` or `0.1%` into a probability (`0.01`, `0.001`).
pub fn parse_percent(input: &str) -> Result<f64, ParseError> {
    let (value, unit) = number_unit("percentage", input)?;
    if unit != "%" {
        return Err(ParseError::new(
            "percentage",
            input,
            "expected a percentage like 1% or 0.1%",
        ));
    }
    if value > 100.0 {
        return Err(ParseError::new("percentage", input, "above 100%"));
    }
    Ok(value / 100.0)
}

/// Parses a rate as `tc` writes it into bytes per second: `10mbit`, `500kbit`, `1gbit`,
/// `8000bit` (decimal bits per second) or `bps`, `kbps`, `mbps`, `gbps` (bytes per second).
pub fn parse_rate(input: &str) -> Result<u64, ParseError> {
    let (value, unit) = number_unit("rate", input)?;
    let bytes_per_second = match unit.as_str() {
        "bit" => value / 8.0,
        "kbit" => value * 1e3 / 8.0,
        "mbit" => value * 1e6 / 8.0,
        "gbit" => value * 1e9 / 8.0,
        "bps" => value,
        "kbps" => value * 1e3,
        "mbps" => value * 1e6,
        "gbps" => value * 1e9,
        _ => {
            return Err(ParseError::new(
                "rate",
                input,
                "unit is not bit, kbit, mbit, gbit or bps, kbps, mbps, gbps",
            ));
        }
    };
    if bytes_per_second < 1.0 || bytes_per_second > u64::MAX as f64 {
        return Err(ParseError::new("rate", input, "out of range"));
    }
    Ok(bytes_per_second as u64)
}

/// Parses a byte count such as `65536`, `64k`, `1m` (binary multiples: k = 1024).
pub fn parse_bytes(input: &str) -> Result<u64, ParseError> {
    let (value, unit) = number_unit("byte count", input)?;
    let factor = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        _ => return Err(ParseError::new("byte count", input, "unit is not k or m")),
    };
    let bytes = value * factor;
    if bytes > u64::MAX as f64 {
        return Err(ParseError::new("byte count", input, "out of range"));
    }
    Ok(bytes as u64)
}

/// xoshiro256** seeded through splitmix64: small, fast, and the same everywhere.
#[derive(Debug, Clone)]
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut state = seed;
        Self(std::array::from_fn(|_| splitmix64(&mut state)))
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`; draws nothing when `p` is zero.
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Counters of one direction of a relay, summed over its clients.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DirectionStats {
    /// Datagrams that entered this direction.
    pub received: u64,
    /// Datagrams sent out (duplicates included).
    pub forwarded: u64,
    /// Datagrams dropped by the configured loss.
    pub dropped: u64,
    /// Datagrams dropped because the rate limiter's queue or a client queue was full.
    pub queue_dropped: u64,
    /// Extra copies made by duplication.
    pub duplicated: u64,
    /// Datagrams held back to be overtaken.
    pub reordered: u64,
    /// Datagrams the socket refused to send.
    pub send_errors: u64,
}

/// Live, shared twin of [`DirectionStats`].
#[derive(Debug, Default)]
struct DirectionCounters {
    received: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    queue_dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    send_errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl DirectionCounters {
    fn snapshot(&self) -> DirectionStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DirectionStats {
            received: get(&self.received),
            forwarded: get(&self.forwarded),
            dropped: get(&self.dropped),
            queue_dropped: get(&self.queue_dropped),
            duplicated: get(&self.duplicated),
            reordered: get(&self.reordered),
            send_errors: get(&self.send_errors),
        }
    }
}

/// Counters of a relay since it started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RelayStats {
    /// Client to target.
    pub upstream: DirectionStats,
    /// Target back to client.
    pub downstream: DirectionStats,
    /// Clients seen (a client forgotten after idling and seen again counts twice).
    pub clients: u64,
    /// Datagrams dropped because `max_clients` clients were already relayed.
    pub clients_rejected: u64,
}

#[derive(Debug, Default)]
struct RelayCounters {
    upstream: DirectionCounters,
    downstream: DirectionCounters,
    clients: AtomicU64,
    clients_rejected: AtomicU64,
}

impl RelayCounters {
    fn snapshot(&self) -> RelayStats {
        RelayStats {
            upstream: self.upstream.snapshot(),
            downstream: self.downstream.snapshot(),
            clients: self.clients.load(Ordering::Relaxed),
            clients_rejected: self.clients_rejected.load(Ordering::Relaxed),
        }
    }
}

/// One impaired direction of a path, without I/O: datagrams go in with their arrival time
/// through [`push`](Link::push) and come out at their delivery time through
/// [`pop_due`](Link::pop_due).
#[derive(Debug)]
pub struct Link<P> {
    impairment: Impairment,
    rng: Rng,
    /// Min-heap of (delivery time, arrival sequence, datagram): ties leave in arrival order.
    queue: BinaryHeap<Reverse<Scheduled<P>>>,
    sequence: u64,
    /// Latest delivery time of a datagram that was not reordered (the FIFO floor).
    last_in_order: Option<Instant>,
    /// Token bucket as GCRA: when the bucket will next be full of tokens again.
    theoretical_arrival: Option<Instant>,
    stats: DirectionStats,
}

#[derive(Debug)]
struct Scheduled<P> {
    at: Instant,
    sequence: u64,
    datagram: P,
}

impl<P> PartialEq for Scheduled<P> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.sequence) == (other.at, other.sequence)
    }
}
impl<P> Eq for Scheduled<P> {}
impl<P> PartialOrd for Scheduled<P> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<P> Ord for Scheduled<P> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.sequence).cmp(&(other.at, other.sequence))
    }
}

impl<P: Clone + AsRef<[u8]>> Link<P> {
    /// A link applying `impairment` with decisions drawn from `seed`.
    pub fn new(impairment: Impairment, seed: u64) -> Self {
        Self {
            impairment,
            rng: Rng::new(seed),
            queue: BinaryHeap::new(),
            sequence: 0,
            last_in_order: None,
            theoretical_arrival: None,
            stats: DirectionStats::default(),
        }
    }

    /// Takes in a datagram that arrived at `now`, and drops, duplicates or schedules it.
    pub fn push(&mut self, now: Instant, datagram: P) {
        self.stats.received += 1;
        if self.rng.chance(self.impairment.loss) {
            self.stats.dropped += 1;
            return;
        }
        if self.rng.chance(self.impairment.duplicate) {
            self.stats.duplicated += 1;
            self.schedule(now, datagram.clone());
        }
        self.schedule(now, datagram);
    }

    fn schedule(&mut self, now: Instant, datagram: P) {
        let Some(departure) = self.rate_limit(now, datagram.as_ref().len()) else {
            self.stats.queue_dropped += 1;
            return;
        };
        let imp = &self.impairment;
        let mut at = departure + imp.delay;
        if !imp.jitter.is_zero() {
            // Uniform in delay ± jitter, never before the departure itself.
            let offset = imp.jitter.mul_f64(self.rng.unit() * 2.0);
            at = (at + offset)
                .checked_sub(imp.jitter)
                .unwrap_or(departure)
                .max(departure);
        }
        if self.rng.chance(self.impairment.reorder) {
            self.stats.reordered += 1;
            at += self.impairment.reorder_delay;
        } else if !self.impairment.jitter_reorders {
            at = self.last_in_order.map_or(at, |floor| at.max(floor));
            self.last_in_order = Some(at);
        }
        self.sequence += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            sequence: self.sequence,
            datagram,
        }));
    }

    /// When a datagram of `len` bytes leaves the rate limiter, or `None` if the queue
    /// before it is full.
    fn rate_limit(&mut self, now: Instant, len: usize) -> Option<Instant> {
        let Some(rate) = self.impairment.rate else {
            return Some(now);
        };
        let per_byte = |bytes: u64| Duration::from_secs_f64(bytes as f64 / rate as f64);
        let tat = self.theoretical_arrival.map_or(now, |t| t.max(now)) + per_byte(len as u64);
        let departure = tat
            .checked_sub(per_byte(self.impairment.burst))
            .unwrap_or(now)
            .max(now);
        let backlog = (departure - now).as_secs_f64() * rate as f64;
        if backlog > self.impairment.queue_limit as f64 {
            return None;
        }
        self.theoretical_arrival = Some(tat);
        Some(departure)
    }

    /// When the next datagram is due, if any waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(s)| s.at)
    }

    /// The next datagram due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<P> {
        if self.next_due()? > now {
            return None;
        }
        self.queue.pop().map(|Reverse(s)| s.datagram)
    }

    /// Datagrams waiting for their delivery time.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// What this link has done so far (`forwarded` and `send_errors` are left to whoever
    /// sends what it delivers).
    pub fn stats(&self) -> DirectionStats {
        self.stats
    }
}

/// A running relay; see the [module documentation](self).
#[derive(Debug)]
pub struct Relay;

impl Relay {
    /// Binds the listening socket and starts relaying on the current tokio runtime.
    ///
    /// Datagrams are forwarded until [`RelayHandle::shutdown`] is called or the handle is
    /// dropped.
    pub fn spawn(config: RelayConfig) -> Result<RelayHandle, RelayError> {
        config.upstream.validate()?;
        config.downstream.validate()?;
        if config.max_clients == 0 || config.client_queue == 0 {
            return Err(RelayError::InvalidConfig(
                "max_clients and client_queue must be at least 1".into(),
            ));
        }
        let listener = Arc::new(UdpIo::bind(config.listen)?);
        let local_addr = listener.local_addr();
        let counters = Arc::new(RelayCounters::default());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(listen(listener, config, counters.clone(), stopped));
        tracing::info!(%local_addr, "relay started");
        Ok(RelayHandle {
            local_addr,
            counters,
            stop: Some(stop),
            task,
        })
    }
}

/// Controls a relay started by [`Relay::spawn`]; dropping it stops the relay.
#[derive(Debug)]
pub struct RelayHandle {
    local_addr: SocketAddr,
    counters: Arc<RelayCounters>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RelayHandle {
    /// The address clients send to (with an ephemeral port filled in).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counters so far.
    pub fn stats(&self) -> RelayStats {
        self.counters.snapshot()
    }

    /// Stops relaying, closes every socket, and returns the final counters. Datagrams
    /// still waiting out their delay are discarded.
    pub async fn shutdown(mut self) -> RelayStats {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        self.counters.snapshot()
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client's entry in the listener's table.
struct Client {
    to_link: mpsc::Sender<(Instant, Vec<u8>)>,
}

/// The listener task: reads clients' datagrams and hands each to its client's task.
async fn listen(
    listener: Arc<UdpIo>,
    config: RelayConfig,
    counters: Arc<RelayCounters>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut clients: HashMap<SocketAddr, Client> = HashMap::new();
    // Dropping the set at return aborts every client task and closes their sockets.
    let mut tasks: JoinSet<SocketAddr> = JoinSet::new();
    let mut buf = RecvBuf::new();
    let mut client_index = 0u64;
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            Some(done) = tasks.join_next() => {
                if let Ok(client) = done {
                    clients.remove(&client);
                }
            }
            received = listener.recv_batch(&mut buf) => {
                let datagrams = match received {
                    Ok(datagrams) => datagrams,
                    Err(err) => {
                        tracing::debug!(%err, "relay receive error");
                        continue;
                    }
                };
                let now = Instant::now();
                for (source, datagram) in datagrams {
                    let up = &counters.upstream;
                    if !clients.contains_key(&source) {
                        if clients.len() >= config.max_clients {
                            bump(&counters.clients_rejected);
                            continue;
                        }
                        let Some(client) = start_client(
                            &mut tasks, &listener, &config, &counters, source, client_index,
                        ) else {
                            bump(&up.received);
                            bump(&up.send_errors);
                            continue;
                        };
                        client_index += 1;
                        clients.insert(source, client);
                    }
                    let Some(client) = clients.get(&source) else { continue };
                    match client.to_link.try_send((now, datagram.to_vec())) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            bump(&up.received);
                            bump(&up.queue_dropped);
                        }
                        // The client task ended on idle just now: the next datagram starts a new one.
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            clients.remove(&source);
                            bump(&up.received);
                            bump(&up.queue_dropped);
                        }
                    }
                }
            }
        }
    }
}

fn start_client(
    tasks: &mut JoinSet<SocketAddr>,
    listener: &Arc<UdpIo>,
    config: &RelayConfig,
    counters: &Arc<RelayCounters>,
    client: SocketAddr,
    index: u64,
) -> Option<Client> {
    let unspecified = match config.target.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let upstream = match UdpIo::bind(SocketAddr::new(unspecified, 0)) {
        Ok(socket) => socket,
        Err(err) => {
            tracing::warn!(%err, %client, "relay cannot open an upstream socket");
            return None;
        }
    };
    bump(&counters.clients);
    let (to_link, from_listener) = mpsc::channel(config.client_queue);
    // Two seeds per client, both derived from the relay seed and the client's rank.
    let mut seed = config.seed ^ index.wrapping_mul(0xd1b5_4a32_d192_ed03);
    let task = ClientTask {
        client,
        target: config.target,
        listener: listener.clone(),
        upstream,
        up: Link::new(config.upstream.clone(), splitmix64(&mut seed)),
        down: Link::new(config.downstream.clone(), splitmix64(&mut seed)),
        counters: counters.clone(),
        idle_timeout: config.client_idle_timeout,
    };
    tasks.spawn(task.run(from_listener));
    tracing::debug!(%client, "relay client added");
    Some(Client { to_link })
}

/// One client's two links and its upstream socket.
struct ClientTask {
    client: SocketAddr,
    target: SocketAddr,
    listener: Arc<UdpIo>,
    upstream: UdpIo,
    up: Link<Vec<u8>>,
    down: Link<Vec<u8>>,
    counters: Arc<RelayCounters>,
    idle_timeout: Duration,
}

impl ClientTask {
    async fn run(mut self, mut from_listener: mpsc::Receiver<(Instant, Vec<u8>)>) -> SocketAddr {
        let mut buf = RecvBuf::with_slots(8);
        let mut last_activity = Instant::now();
        let mut listener_open = true;
        loop {
            let idle_at = last_activity + self.idle_timeout;
            let wake = [self.up.next_due(), self.down.next_due(), Some(idle_at)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(idle_at);
            tokio::select! {
                message = from_listener.recv(), if listener_open => match message {
                    Some((arrival, datagram)) => {
                        last_activity = arrival;
                        self.push_up(arrival, datagram);
                        // Take whatever else is already queued without going round the loop.
                        while let Ok((arrival, datagram)) = from_listener.try_recv() {
                            self.push_up(arrival, datagram);
                        }
                    }
                    None => listener_open = false,
                },
                received = self.upstream.recv_batch(&mut buf) => {
                    let now = Instant::now();
                    if let Ok(datagrams) = received {
                        for (source, datagram) in datagrams {
                            if source == self.target {
                                last_activity = now;
                                bump(&self.counters.downstream.received);
                                let before = self.down.stats();
                                self.down.push(now, datagram.to_vec());
                                record(&self.counters.downstream, before, self.down.stats());
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            self.deliver().await;
            let idle = Instant::now() >= last_activity + self.idle_timeout;
            if (idle || !listener_open) && self.up.pending() == 0 && self.down.pending() == 0 {
                tracing::debug!(client = %self.client, "relay client idle, removed");
                return self.client;
            }
        }
    }

    fn push_up(&mut self, arrival: Instant, datagram: Vec<u8>) {
        bump(&self.counters.upstream.received);
        let before = self.up.stats();
        self.up.push(arrival, datagram);
        record(&self.counters.upstream, before, self.up.stats());
    }

    /// Sends everything due, both ways.
    async fn deliver(&mut self) {
        let now = Instant::now();
        while let Some(datagram) = self.up.pop_due(now) {
            let sent = self.upstream.send_to(self.target, &datagram).await;
            count_send(&self.counters.upstream, sent);
        }
        while let Some(datagram) = self.down.pop_due(now) {
            let sent = self.listener.send_to(self.client, &datagram).await;
            count_send(&self.counters.downstream, sent);
        }
    }
}

/// Adds to the shared counters what one `push` changed in a link's own.
fn record(counters: &DirectionCounters, before: DirectionStats, after: DirectionStats) {
    let add = |c: &AtomicU64, a: u64, b: u64| {
        if b > a {
            c.fetch_add(b - a, Ordering::Relaxed);
        }
    };
    add(&counters.dropped, before.dropped, after.dropped);
    add(
        &counters.queue_dropped,
        before.queue_dropped,
        after.queue_dropped,
    );
    add(&counters.duplicated, before.duplicated, after.duplicated);
    add(&counters.reordered, before.reordered, after.reordered);
}

fn count_send(counters: &DirectionCounters, sent: Result<(), UdpError>) {
    match sent {
        Ok(()) => bump(&counters.forwarded),
        Err(err) => {
            tracing::debug!(%err, "relay send error");
            bump(&counters.send_errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Pushes `count` one-byte-tagged datagrams `spacing` apart; returns (delivery, seq).
    fn run(
        link: &mut Link<Vec<u8>>,
        count: u32,
        size: usize,
        spacing: Duration,
    ) -> Vec<(Duration, u32)> {
        let start = Instant::now();
        let mut out = Vec::new();
        for seq in 0..count {
            let mut datagram = vec![0; size.max(4)];
            datagram[..4].copy_from_slice(&seq.to_be_bytes());
            link.push(start + spacing * seq, datagram);
        }
        let far = start + Duration::from_secs(3600);
        while let Some(at) = link.next_due() {
            let datagram = link.pop_due(far).unwrap();
            let seq = u32::from_be_bytes(datagram[..4].try_into().unwrap());
            out.push((at - start, seq));
        }
        out
    }

    #[test]
    fn parses_human_strings() {
        assert_eq!(parse_duration("25ms"), Ok(ms(25)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("25").is_err());
        assert!(parse_duration("-1ms").is_err());
        assert!(parse_duration("ms").is_err());
        assert_eq!(parse_percent("1%"), Ok(0.01));
        assert_eq!(parse_percent("0.1%"), Ok(0.001));
        assert_eq!(parse_percent("100%"), Ok(1.0));
        assert!(parse_percent("101%").is_err());
        assert!(parse_percent("5").is_err());
        assert_eq!(parse_rate("10mbit"), Ok(1_250_000));
        assert_eq!(parse_rate("500kbit"), Ok(62_500));
        assert_eq!(parse_rate("1Gbit"), Ok(125_000_000));
        assert_eq!(parse_rate("100kbps"), Ok(100_000));
        assert!(parse_rate("10").is_err());
        assert!(parse_rate("0mbit").is_err());
        assert_eq!(parse_bytes("64k"), Ok(65_536));
        let mut imp = Impairment::default();
        imp.set("delay", "25ms").unwrap();
        imp.set("loss", "1%").unwrap();
        imp.set("dup", "0.1%").unwrap();
        imp.set("rate", "10mbit").unwrap();
        assert_eq!(imp.delay, ms(25));
        assert_eq!(imp.rate, Some(1_250_000));
        assert!(imp.set("bogus", "1").is_err());
        assert!(Impairment::default().loss(1.5).validate().is_err());
    }

    #[test]
    fn rng_is_deterministic_and_uniform() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
        let mean = (0..100_000).map(|_| a.unit()).sum::<f64>() / 100_000.0;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }

    #[test]
    fn loss_matches_probability_and_seed() {
        let imp = Impairment::default().loss(0.1);
        let mut link = Link::new(imp.clone(), 1);
        let delivered = run(&mut link, 10_000, 100, Duration::ZERO).len();
        // Binomial(10 000, 0.9): sd 30, so ±150 is five standard deviations.
        assert!((8850..=9150).contains(&delivered), "{delivered}");
        assert_eq!(link.stats().dropped, 10_000 - delivered as u64);
        let again = run(&mut Link::new(imp.clone(), 1), 10_000, 100, Duration::ZERO);
        assert_eq!(again.len(), delivered);
        let other = run(&mut Link::new(imp, 2), 10_000, 100, Duration::ZERO);
        assert_ne!(
            other.len(),
            delivered,
            "another seed, other decisions (almost surely)"
        );
    }

    #[test]
    fn duplication_adds_copies() {
        let mut link = Link::new(Impairment::default().duplicate(0.05), 3);
        let out = run(&mut link, 10_000, 100, ms(1));
        let dups = link.stats().duplicated as usize;
        assert_eq!(out.len(), 10_000 + dups);
        assert!((350..=650).contains(&dups), "{dups}");
        // Copies follow their original straight away, in order.
        assert!(out.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn delay_and_jitter_keep_order_unless_asked() {
        let imp = Impairment::default().delay(ms(20)).jitter(ms(5));
        let mut link = Link::new(imp.clone(), 4);
        let out = run(&mut link, 1000, 100, Duration::from_micros(500));
        assert!(out.windows(2).all(|w| w[0].1 < w[1].1), "jitter reordered");
        for &(at, seq) in &out {
            assert!(
                at >= Duration::from_micros(500) * seq + ms(15),
                "{seq} early at {at:?}"
            );
        }
        let mut reordering = Link::new(imp.jitter_reorders(true), 4);
        let out = run(&mut reordering, 1000, 100, Duration::from_micros(500));
        assert!(
            out.windows(2).any(|w| w[0].1 > w[1].1),
            "jitter_reorders had no effect"
        );
    }

    #[test]
    fn reorder_holds_back_a_fraction() {
        let mut link = Link::new(Impairment::default().reorder(0.05).reorder_delay(ms(10)), 5);
        let out = run(&mut link, 10_000, 100, ms(1));
        let reordered = link.stats().reordered;
        assert!((350..=650).contains(&reordered), "{reordered}");
        // A datagram is late if a later one arrived before it: exactly the held-back ones.
        let mut highest = None;
        let mut late = 0;
        for &(_, seq) in &out {
            if highest.is_some_and(|h| seq < h) {
                late += 1;
            }
            highest = highest.max(Some(seq));
        }
        assert_eq!(late, reordered);
        assert_eq!(out.len(), 10_000);
    }

    #[test]
    fn rate_limit_spaces_datagrams_and_drops_past_the_queue() {
        // 1 MB/s, bucket of one datagram, queue of ten: 1000-byte datagrams leave 1 ms apart.
        let imp = Impairment::default()
            .rate(Some(1_000_000))
            .burst(1000)
            .queue_limit(10_000);
        let mut link = Link::new(imp, 6);
        let out = run(&mut link, 20, 1000, Duration::ZERO);
        assert_eq!(link.stats().queue_dropped, 20 - out.len() as u64);
        assert_eq!(out.len(), 11, "one passes at once, ten queue");
        for (i, &(at, seq)) in out.iter().enumerate() {
            assert_eq!(seq, i as u32);
            let expected = ms(i as u64);
            assert!(
                at.abs_diff(expected) < Duration::from_micros(10),
                "{i}: {at:?}"
            );
        }
    }
}
