//! Stream-level scenarios: real `Endpoint<HostTable>` stacks ([`StreamNode`]) with a
//! self-checking application on both sides. Every scenario checks exact delivery where it
//! promises it: every byte verified against the content pattern, every EOF, no loss, no
//! duplication, no corruption, and the writer's outcome.
//!
//! Sizes per seed are kept small (well under 0.3 s of wall time per seed in release) and
//! randomised by the seed, so a run over many seeds covers the space; the full-size
//! variants live in `tests/streams_heavy.rs` (ignored by default).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{err, v4};
use crate::ensure;
use crate::rng::Rng;
use crate::runner::{Report, Scenario};
use crate::stream_node::{InOutcome, OutOutcome, Plan, StreamNode};
use crate::{LinkConfig, NodeId, Sim};

/// The stream scenarios.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "many-streams",
        about: "many streams of random sizes 0..1 MB over one channel, every byte verified",
        run: many_streams,
    },
];

/// Services the server advertises.
pub const SERVICES: [u16; 3] = [7, 23, 1000];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A log-uniform size in 0..=max (about 3 % empty streams).
pub fn random_size(rng: &mut Rng, max: u64) -> u64 {
    if rng.chance(0.03) {
        return 0;
    }
    let x = rng.f64() * (max as f64).ln();
    (x.exp() as u64).clamp(16, max)
}

/// A client and a server (advertising [`SERVICES`]) joined by `link` in both directions.
pub struct Pair {
    /// The simulation.
    pub sim: Sim,
    /// The client node (its application targets the server).
    pub client: NodeId,
    /// The server node.
    pub server: NodeId,
}

impl Pair {
    /// Builds the pair.
    pub fn new(seed: u64, link: LinkConfig) -> Pair {
        let mut sim = Sim::new(seed);
        let now = sim.now();
        let (c_addr, s_addr) = (v4(10, 0, 0, 1, 4000), v4(10, 0, 0, 2, 443));
        let mut rng = sim.fork_rng();
        let mut c = StreamNode::with_defaults(now, &mut rng);
        c.app.target = Some(s_addr);
        let mut s = StreamNode::with_defaults(now, &mut rng);
        s.app.target = Some(c_addr);
        for svc in SERVICES {
            s.advertise(svc);
        }
        let client = sim.add_node(c_addr, c);
        let server = sim.add_node(s_addr, s);
        sim.connect(client, server, link);
        Pair {
            sim,
            client,
            server,
        }
    }

    /// The client node.
    pub fn c(&mut self) -> &mut StreamNode {
        self.sim.node_mut::<StreamNode>(self.client)
    }

    /// The server node.
    pub fn s(&mut self) -> &mut StreamNode {
        self.sim.node_mut::<StreamNode>(self.server)
    }

    /// Runs until both applications have nothing open and no plans, or `limit` passes.
    pub fn run_to_completion(&mut self, limit: Duration) -> Result<bool, String> {
        let (c, s) = (self.client, self.server);
        let deadline = self.sim.now() + limit;
        self.sim
            .run_until_with(deadline, |sim| {
                let a = &sim.node::<StreamNode>(c).app;
                let b = &sim.node::<StreamNode>(s).app;
                a.writer_done() && b.writer_done() && a.open_ins.is_empty() && b.open_ins.is_empty()
            })
            .map_err(err)
    }
}

/// Checks that every plan of `writer` was delivered exactly to `reader`: writer outcome
/// `Finished(true)`, every tag read completely once, empty streams counted, nothing else.
pub fn check_exact(
    writer: &StreamNode,
    reader: &StreamNode,
    plans: &[Plan],
) -> Result<(u64, usize), String> {
    for (who, n) in [("writer", writer), ("reader", reader)] {
        ensure!(
            n.app.errors.is_empty(),
            "{who} errors: {:?}",
            n.app.errors
        );
    }
    ensure!(
        writer.app.backlog.is_empty(),
        "{} plans never opened",
        writer.app.backlog.len()
    );
    let mut bytes = 0;
    let mut empties: BTreeMap<u16, u64> = BTreeMap::new();
    for p in plans {
        let Some(o) = writer.app.out_by_tag(p.tag) else {
            return Err(format!("plan {} never opened", p.tag));
        };
        ensure!(
            o.outcome == OutOutcome::Finished(true),
            "stream tag {} (len {}): writer outcome {:?} after {} bytes written",
            p.tag,
            p.len,
            o.outcome,
            o.written
        );
        if p.len == 0 {
            *empties.entry(p.service).or_default() += 1;
        } else {
            ensure!(
                reader.app.tags_seen.contains(&p.tag),
                "stream tag {} (len {}, service {}) not delivered",
                p.tag,
                p.len,
                p.service
            );
            let r = reader.app.in_by_tag(p.tag).expect("seen");
            ensure!(r.service == p.service, "tag {} on service {}", p.tag, r.service);
            bytes += p.len;
        }
    }
    let nonempty = plans.iter().filter(|p| p.len > 0).count();
    ensure!(
        reader.app.tags_seen.len() == nonempty,
        "reader completed {} tagged streams, {} were planned",
        reader.app.tags_seen.len(),
        nonempty
    );
    ensure!(
        reader.app.empty_streams == empties,
        "empty streams read {:?}, planned {:?}",
        reader.app.empty_streams,
        empties
    );
    let bad: Vec<_> = reader
        .app
        .ins
        .values()
        .filter(|r| r.outcome != InOutcome::Complete)
        .collect();
    ensure!(bad.is_empty(), "in-streams not complete: {bad:?}");
    Ok((bytes, plans.len()))
}

fn plans(rng: &mut Rng, first_tag: u64, n: usize, max: u64) -> Vec<Plan> {
    (0..n)
        .map(|i| {
            let svc = SERVICES[rng.below(SERVICES.len() as u64) as usize];
            Plan::new(first_tag + i as u64, random_size(rng, max), svc)
        })
        .collect()
}

/// Per seed: 24 streams (log-uniform 0..1 MB, about 1.8 MB in all), 16 open at once,
/// client to server over a 50 Mbit/s, 20 ms RTT path with 0.5 % loss. The full 10 000
/// streams run in `tests/streams_heavy.rs`.
fn many_streams(seed: u64) -> Result<Report, String> {
    many_streams_n(seed, 24, 16)
}

/// `n` streams, `concurrent` open at once; every byte verified.
pub fn many_streams_n(seed: u64, n: usize, concurrent: usize) -> Result<Report, String> {
    let link = LinkConfig::default()
        .latency(ms(10))
        .bandwidth(50_000_000)
        .queue_limit(128 << 10)
        .loss(0.005);
    let mut p = Pair::new(seed, link);
    let ps = plans(p.sim.rng(), 1, n, 1 << 20);
    let now = p.sim.now();
    p.c().app.max_concurrent = concurrent;
    p.c().plan(now, ps.clone());
    let done = p.run_to_completion(Duration::from_secs(3600))?;
    ensure!(done, "not complete after an hour of virtual time");
    let elapsed = p.sim.elapsed();
    let (c, s) = (p.client, p.server);
    let (bytes, streams) = check_exact(p.sim.node(c), p.sim.node(s), &ps)?;
    let goodput = bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e6;
    Ok(Report::new()
        .metric("streams", streams)
        .metric("bytes", bytes)
        .metric("time", format!("{elapsed:.2?}"))
        .metric("goodput_mbps", format!("{goodput:.1}")))
}

#[allow(dead_code)]
fn unused(_: Instant) {}
