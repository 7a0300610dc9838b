//! Self-tests of the simulator: they check the links, NATs and trace against each other and
//! against statistics, so protocol scenarios can trust them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{err, v4};
use crate::ensure;
use crate::nodes::{Echo, Pacer, Probe, Sink};
use crate::runner::{Report, Scenario};
use crate::{DatagramId, DropReason, Fate, LinkConfig, LinkId, LinkStats, LossModel, NodeId, Sim};

/// The simulator self-test scenarios.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "sim-echo",
        about: "echo over lossy, duplicating, reordering, corrupting links; trace vs nodes vs statistics",
        run: echo,
    },
    Scenario {
        name: "sim-bandwidth",
        about: "flows sharing a drop-tail bottleneck: rate = bandwidth, queue bound, delay bound, fairness",
        run: bandwidth,
    },
    Scenario {
        name: "sim-rebind",
        about: "NAT rebinding, NAT filtering, spoofed injection and a server address move",
        run: rebind,
    },
];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `|x - n p| <= 5 sigma + 1` for a binomial count.
fn binomial_ok(x: u64, n: u64, p: f64) -> bool {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (x as f64 - mean).abs() <= 5.0 * sd + 1.0
}

fn conservation(name: &str, s: &LinkStats) -> Result<(), String> {
    ensure!(
        s.entered + s.duplicated == s.delivered + s.dropped(),
        "{name}: entered {} + duplicated {} != delivered {} + dropped {}",
        s.entered,
        s.duplicated,
        s.delivered,
        s.dropped()
    );
    Ok(())
}

/// Ids of datagrams that had `fate` of the given kind on `link`.
fn ids_on_link(sim: &Sim, link: LinkId, pred: impl Fn(&Fate) -> bool) -> BTreeSet<DatagramId> {
    sim.trace()
        .iter()
        .filter(|e| e.link == Some(link) && pred(&e.fate))
        .map(|e| e.id)
        .collect()
}

/// Trace deliveries to `node`, in order: (id, payload).
fn delivered_to(sim: &Sim, node: NodeId) -> Vec<(DatagramId, Vec<u8>)> {
    sim.trace()
        .iter()
        .filter(|e| e.fate == Fate::Delivered { node })
        .map(|e| (e.id, e.payload.clone().unwrap_or_default()))
        .collect()
}

fn echo(seed: u64) -> Result<Report, String> {
    let mut sim = Sim::new(seed);
    sim.enable_trace(true);
    let (c_addr, e_addr) = (v4(10, 0, 0, 1, 4000), v4(10, 0, 0, 2, 5000));
    let p_loss = 0.05 + 0.25 * sim.rng().f64();
    let (p_dup, p_corrupt) = (0.03, 0.02);
    let k = 3000;
    let pacer = Pacer::new(sim.start(), sim.now(), e_addr, k, ms(1), sim.fork_rng()).sizes(20, 300);
    let client = sim.add_node(c_addr, pacer);
    let server = sim.add_node(e_addr, Echo::validating());
    let forward = LinkConfig::default()
        .latency(ms(20))
        .jitter(ms(5))
        .loss(p_loss)
        .duplicate(p_dup)
        .reorder(0.05, ms(15))
        .corrupt(p_corrupt, 3);
    let ge = LossModel::GilbertElliott {
        p_good_to_bad: 0.02,
        p_bad_to_good: 0.3,
        loss_good: 0.0,
        loss_bad: 1.0,
    };
    let backward = LinkConfig::default()
        .latency(ms(15))
        .jitter(ms(2))
        .loss_model(ge)
        .duplicate(0.02)
        .reorder(0.05, ms(10))
        .corrupt(0.02, 3);
    let (ce, ec) = sim.connect_asymmetric(client, server, forward, backward);
    sim.run_until_idle().map_err(err)?;

    // What the nodes saw is exactly what the trace says was delivered to them.
    for (node, got) in [
        (
            server,
            sim.node::<Echo>(server)
                .received
                .iter()
                .map(|r| r.data.clone())
                .collect::<Vec<_>>(),
        ),
        (
            client,
            sim.node::<Pacer>(client)
                .received
                .iter()
                .map(|r| r.data.clone())
                .collect(),
        ),
    ] {
        let traced: Vec<Vec<u8>> = delivered_to(&sim, node)
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        ensure!(
            got == traced,
            "node {} received {} datagrams, trace says {}",
            node.0,
            got.len(),
            traced.len()
        );
    }

    // Every corrupted delivery, and only those, fails the probe CRC.
    for (node, link, rejected) in [
        (server, ce, sim.node::<Echo>(server).rejected),
        (client, ec, sim.node::<Pacer>(client).rejected),
    ] {
        let corrupted = ids_on_link(&sim, link, |f| matches!(f, Fate::Corrupted { .. }));
        let hits = delivered_to(&sim, node)
            .iter()
            .filter(|(id, _)| corrupted.contains(id))
            .count() as u64;
        ensure!(
            hits == rejected,
            "node {}: {hits} corrupted deliveries but {rejected} CRC failures",
            node.0
        );
    }

    // Link counters add up and match the configured probabilities.
    let (fs, bs) = (sim.link_stats(ce).clone(), sim.link_stats(ec).clone());
    conservation("client->server", &fs)?;
    conservation("server->client", &bs)?;
    ensure!(
        fs.entered == k,
        "forward link saw {} of {k} probes",
        fs.entered
    );
    ensure!(
        binomial_ok(fs.dropped_loss, fs.entered, p_loss),
        "forward loss {} of {} is implausible for p={p_loss:.3}",
        fs.dropped_loss,
        fs.entered
    );
    let admitted = fs.entered - fs.dropped();
    ensure!(
        binomial_ok(fs.duplicated, admitted, p_dup),
        "forward duplicates {} of {admitted}",
        fs.duplicated
    );
    let copies = admitted + fs.duplicated;
    ensure!(
        binomial_ok(fs.corrupted, copies, p_corrupt),
        "forward corrupted {} of {copies}",
        fs.corrupted
    );

    // Gilbert–Elliott: stationary loss 0.02 / 0.32 = 6.25 %, mean burst 1 / 0.3 = 3.3.
    let lost = ids_on_link(&sim, ec, |f| *f == Fate::Dropped(DropReason::Loss));
    let sent_by_server: Vec<DatagramId> = sim
        .trace()
        .iter()
        .filter(|e| e.fate == Fate::Sent { node: server })
        .map(|e| e.id)
        .collect();
    let mut bursts = Vec::new();
    let mut run = 0u64;
    for id in &sent_by_server {
        if lost.contains(id) {
            run += 1;
        } else if run > 0 {
            bursts.push(run);
            run = 0;
        }
    }
    if run > 0 {
        bursts.push(run);
    }
    let ge_rate = bs.dropped_loss as f64 / bs.entered as f64;
    let mean_burst = bs.dropped_loss as f64 / bursts.len().max(1) as f64;
    ensure!(
        bursts.iter().sum::<u64>() == bs.dropped_loss,
        "burst accounting: {bursts:?} vs {}",
        bs.dropped_loss
    );
    ensure!(
        (0.015..=0.14).contains(&ge_rate),
        "Gilbert-Elliott loss rate {ge_rate:.4} outside [0.015, 0.14]"
    );
    ensure!(
        bursts.len() < 5 || mean_burst > 1.8,
        "Gilbert-Elliott mean burst {mean_burst:.2} too short"
    );

    // Without the reorder flag, arrival order is send order (jitter never reorders);
    // with it, some datagrams really are overtaken.
    let reordered = ids_on_link(&sim, ce, |f| *f == Fate::Reordered);
    let corrupted = ids_on_link(&sim, ce, |f| matches!(f, Fate::Corrupted { .. }));
    let arrivals = delivered_to(&sim, server);
    let mut last = 0;
    let mut inversions = 0;
    let mut prev_any = 0;
    for (id, data) in &arrivals {
        let Some(p) = Probe::decode(data) else {
            continue;
        };
        if p.seq < prev_any {
            inversions += 1;
        }
        prev_any = p.seq;
        if reordered.contains(id) || corrupted.contains(id) {
            continue;
        }
        ensure!(
            p.seq >= last,
            "probe {} overtook {last} without being reordered",
            p.seq
        );
        last = p.seq;
    }
    ensure!(
        fs.reordered == 0 || inversions > 0,
        "{} reordered datagrams but no inversion",
        fs.reordered
    );

    Ok(Report::new()
        .metric("p_loss", format!("{p_loss:.3}"))
        .metric(
            "loss",
            format!("{:.3}", fs.dropped_loss as f64 / fs.entered as f64),
        )
        .metric("dup", fs.duplicated)
        .metric("corrupt", fs.corrupted)
        .metric("inversions", inversions)
        .metric("ge_loss", format!("{ge_rate:.3}"))
        .metric("ge_burst", format!("{mean_burst:.2}")))
}

/// Jain's fairness index of `xs` (1 = perfectly fair).
fn jain(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let sq: f64 = xs.iter().map(|x| x * x).sum();
    if sq == 0.0 {
        0.0
    } else {
        sum * sum / (xs.len() as f64 * sq)
    }
}

fn bandwidth(seed: u64) -> Result<Report, String> {
    let mut sim = Sim::new(seed);
    let rates = [2_000_000u64, 5_000_000, 10_000_000, 20_000_000];
    let b = rates[sim.rng().below(rates.len() as u64) as usize];
    let limit = 20_000 + sim.rng().below(40_000) as usize;
    let flows = 2 + sim.rng().below(2) as usize;
    let overhead = LinkConfig::default().overhead_bytes;
    let bn_latency = ms(20);
    let access_latency = ms(1);
    let bottleneck = sim.add_link(
        LinkConfig::default()
            .latency(bn_latency)
            .bandwidth(b)
            .queue_limit(limit),
    );

    // Each flow offers 0.7 B: overloaded in total, so the queue stays busy.
    let (min_len, max_len) = (1000usize, 1200usize);
    let mean_wire_bits = ((min_len + max_len) as f64 / 2.0 + overhead as f64) * 8.0;
    let gap = Duration::from_secs_f64(mean_wire_bits / (0.7 * b as f64));
    let jitter = gap / 5;
    let interval = gap - jitter / 2;
    let run_time = Duration::from_secs(4);
    let count = (run_time.as_secs_f64() / gap.as_secs_f64()) as u64 + 10;
    let mut pairs = Vec::new();
    for i in 0..flows {
        let sink_addr = v4(10, 2, 0, i as u8 + 1, 9000);
        let pacer = Pacer::new(
            sim.start(),
            sim.now(),
            sink_addr,
            count,
            interval,
            sim.fork_rng(),
        )
        .sizes(min_len, max_len)
        .jitter(jitter);
        let sender = sim.add_node(v4(10, 1, 0, i as u8 + 1, 7000), pacer);
        let sink = sim.add_node(sink_addr, Sink::default());
        let access = sim.add_link(LinkConfig::default().latency(access_latency));
        sim.set_path(sender, sink, &[access, bottleneck]);
        pairs.push((sender, sink));
    }

    let t1 = sim.now() + Duration::from_secs(1);
    sim.run_until(t1).map_err(err)?;
    let wire = |s: &LinkStats| s.delivered_bytes + s.delivered * overhead as u64;
    let before = wire(sim.link_stats(bottleneck));
    let measure = Duration::from_secs(3);
    sim.run_until(t1 + measure).map_err(err)?;
    let after = wire(sim.link_stats(bottleneck));
    let rate = (after - before) as f64 * 8.0 / measure.as_secs_f64();
    ensure!(
        (rate / b as f64 - 1.0).abs() < 0.02,
        "bottleneck delivered {rate:.0} bit/s, configured {b}"
    );

    let s = sim.link_stats(bottleneck).clone();
    ensure!(
        s.max_queue_bytes <= limit,
        "queue reached {} bytes over limit {limit}",
        s.max_queue_bytes
    );
    ensure!(
        s.max_queue_bytes + (max_len + overhead) > limit,
        "queue never filled: max {} of {limit}",
        s.max_queue_bytes
    );
    ensure!(s.dropped_queue > 0, "overloaded bottleneck dropped nothing");

    // One-way delay: at least propagation + own serialisation, at most that + a full queue.
    let cfg = sim.link(bottleneck).clone();
    let min_delay = access_latency + bn_latency + cfg.serialisation_time(min_len + overhead);
    let max_delay =
        access_latency + bn_latency + cfg.serialisation_time(limit) + Duration::from_micros(1);
    let mut worst = Duration::ZERO;
    for &(_, sink) in &pairs {
        for r in &sim.node::<Sink>(sink).received {
            let p = Probe::decode(&r.data).ok_or("corrupted probe on a clean path")?;
            let delay = r.time.saturating_duration_since(sim.start()) - p.sent;
            ensure!(
                delay >= min_delay && delay <= max_delay,
                "delay {delay:?} outside [{min_delay:?}, {max_delay:?}]"
            );
            worst = worst.max(delay);
        }
    }

    let shares: Vec<f64> = pairs
        .iter()
        .map(|&(a, z)| sim.pair_stats(a, z).bytes as f64)
        .collect();
    let fairness = jain(&shares);
    ensure!(
        fairness > 0.95,
        "equal senders got unequal shares {shares:?} (Jain {fairness:.3})"
    );
    sim.run_until_idle().map_err(err)?;
    conservation("bottleneck", sim.link_stats(bottleneck))?;

    Ok(Report::new()
        .metric("bandwidth", b)
        .metric("flows", flows)
        .metric("rate_ratio", format!("{:.4}", rate / b as f64))
        .metric("queue_limit", limit)
        .metric("max_queue", s.max_queue_bytes)
        .metric("queue_drops", s.dropped_queue)
        .metric("max_delay_ms", format!("{:.2}", worst.as_secs_f64() * 1e3))
        .metric("jain", format!("{fairness:.4}")))
}

fn rebind(seed: u64) -> Result<Report, String> {
    let mut sim = Sim::new(seed);
    sim.enable_trace(false);
    let private = v4(192, 168, 1, 10, 5000);
    let public = v4(203, 0, 113, 7, 40000);
    let server_addr = v4(198, 51, 100, 20, 443);
    let latency = ms(10);
    sim.set_default_link(LinkConfig::default().latency(latency));
    let pacer = Pacer::new(
        sim.start(),
        sim.now(),
        server_addr,
        1000,
        ms(20),
        sim.fork_rng(),
    );
    let client = sim.add_node(private, pacer);
    sim.add_nat(client, public, true);
    let server = sim.add_node(server_addr, Echo::validating());
    ensure!(
        sim.public_addr(client) == public && sim.addr(client) == private,
        "NAT addresses"
    );

    // Phase 1: rebinding.
    let t_rebind = sim.now() + ms(1000) + Duration::from_micros(sim.rng().below(500_000));
    sim.run_until(t_rebind).map_err(err)?;
    let new_public = sim.rebind(client);
    ensure!(
        new_public != public && sim.public_addr(client) == new_public,
        "rebind kept the address"
    );
    let t_move = t_rebind + ms(1000);
    sim.run_until(t_move).map_err(err)?;

    let sources: BTreeMap<_, usize> =
        sim.node::<Echo>(server)
            .received
            .iter()
            .fold(BTreeMap::new(), |mut m, r| {
                *m.entry(r.from).or_default() += 1;
                m
            });
    let seen: Vec<_> = sources.keys().copied().collect();
    let mut expected = vec![public, new_public];
    expected.sort();
    ensure!(
        seen == expected,
        "server saw sources {sources:?}, expected {public} then {new_public}"
    );
    for r in &sim.node::<Echo>(server).received {
        let sent_at = sim.start() + Probe::decode(&r.data).ok_or("bad probe")?.sent;
        let expected = if sent_at < t_rebind {
            public
        } else {
            new_public
        };
        ensure!(
            r.from == expected,
            "probe sent at {:?} arrived from {}",
            sent_at - sim.start(),
            r.from
        );
    }
    let replies_after = sim
        .node::<Pacer>(client)
        .received
        .iter()
        .filter(|r| r.time > t_rebind + 2 * latency)
        .count();
    ensure!(
        replies_after >= 40,
        "only {replies_after} replies reached the client after rebinding"
    );
    ensure!(
        sim.node::<Pacer>(client)
            .received
            .iter()
            .all(|r| r.local == private),
        "reply not on the private address"
    );
    for e in sim.trace() {
        if e.fate == Fate::Dropped(DropReason::Unreachable) {
            ensure!(e.to == public, "unexpected unreachable drop to {}", e.to);
            ensure!(
                e.time >= t_rebind - sim.start() && e.time <= t_rebind - sim.start() + latency,
                "late drop {e}"
            );
        }
    }

    // Phase 2: filtering and spoofing. A stranger is filtered; the server's address, even
    // spoofed by injection, is let through and shows up as the source.
    let stranger = v4(192, 0, 2, 99, 1234);
    let before = sim.node::<Pacer>(client).received.len();
    sim.inject(stranger, new_public, b"knock".to_vec());
    sim.inject(server_addr, new_public, b"spoofed".to_vec());
    sim.run_for(Duration::ZERO).map_err(err)?;
    let got: Vec<_> = sim.node::<Pacer>(client).received[before..].to_vec();
    ensure!(
        got.len() == 1 && got[0].data == b"spoofed" && got[0].from == server_addr,
        "injection results {got:?}"
    );
    ensure!(
        sim.stats().dropped(DropReason::NatFiltered) == 1,
        "stranger not filtered"
    );

    // Phase 3: the server moves. Probes to the old address vanish until the client is told.
    let moved = v4(198, 51, 100, 21, 443);
    sim.set_addr(server, moved);
    let received_before = sim.node::<Echo>(server).received.len();
    let t_tell = sim.now() + ms(300);
    sim.run_until(t_tell).map_err(err)?;
    ensure!(
        sim.node::<Echo>(server).received.len() == received_before,
        "server received at its old address"
    );
    let no_route = sim.stats().dropped(DropReason::NoRoute);
    ensure!(
        no_route >= 10,
        "only {no_route} probes to the old address were dropped"
    );
    sim.node_mut::<Pacer>(client).dest = moved;
    let t_end = t_tell + ms(500);
    sim.run_until(t_end).map_err(err)?;
    let at_new = sim
        .node::<Echo>(server)
        .received
        .iter()
        .filter(|r| r.local == moved)
        .count();
    let from_new = sim
        .node::<Pacer>(client)
        .received
        .iter()
        .filter(|r| r.from == moved)
        .count();
    ensure!(
        at_new >= 20 && from_new >= 20,
        "after the move: {at_new} probes arrived, {from_new} replies came back"
    );

    Ok(Report::new()
        .metric("rebind_at_ms", (t_rebind - sim.start()).as_millis())
        .metric("new_public", new_public)
        .metric("unreachable", sim.stats().dropped(DropReason::Unreachable))
        .metric("no_route", no_route)
        .metric("after_move", at_new))
}
