//! Channel scenarios: cusp-proto endpoints over [`TestHosts`], each asserting
//! exact delivery (every message intact, nothing unknown or corrupted
//! accepted) plus its own property. Everything derives from the seed.

use std::time::Duration;

use cusp_proto::crypto::{
    PublicKey, PublicKeySuite, PublicKeySuites, SymmetricSuite, SymmetricSuites,
};
use cusp_proto::endpoint::EndpointConfig;

use crate::runner::{Report, Scenario};
use crate::scenarios::{err, v4};
use crate::testhost::{EndpointNode, Flow, TestHosts, test_key};
use crate::{LinkConfig, NodeId, Sim, ensure};

/// The channel scenarios.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "handshake",
        about: "every suite pair x encrypt on/off establishes, delivers exactly, closes",
        run: handshake,
    },
    Scenario {
        name: "simultaneous-open",
        about: "both sides connect at once: one channel each, exact delivery",
        run: simultaneous_open,
    },
    Scenario {
        name: "loss",
        about: "1/10/30 % random loss: exact delivery within a time bound",
        run: loss,
    },
    Scenario {
        name: "reorder",
        about: "reordering and jitter: exact delivery",
        run: reorder,
    },
    Scenario {
        name: "duplicate",
        about: "duplicated datagrams: exact delivery, duplicates not re-delivered",
        run: duplicate,
    },
    Scenario {
        name: "corrupt",
        about: "bit flips never accepted (bad MAC), channel survives, exact delivery",
        run: corrupt,
    },
    Scenario {
        name: "peer-restart",
        about: "server restarts with the same key: NOSTATE, renegotiation, traffic continues",
        run: peer_restart,
    },
    Scenario {
        name: "address-change",
        about: "client NAT rebinding: renegotiation from the new address, same host, traffic continues",
        run: address_change,
    },
    Scenario {
        name: "long-sequence",
        about: "TSNs cross 2^27 and 2^28 (28-bit wire fields): exact delivery",
        run: long_sequence,
    },
    Scenario {
        name: "handshake-flood",
        about: "1e5 spoofed HELLOs: bounded state, key agreements and amplification; legit client establishes",
        run: handshake_flood,
    },
    Scenario {
        name: "cc-utilisation",
        about: "10 Mbit/s, 50 ms RTT bulk transfer: steady-state utilisation",
        run: cc_utilisation,
    },
    Scenario {
        name: "cc-fairness",
        about: "two bulk channels through one bottleneck: throughput within 60/40",
        run: cc_fairness,
    },
];

/// A client and a server endpoint with message flows between them.
struct Pair {
    sim: Sim,
    client: NodeId,
    server: NodeId,
    ck: PublicKey,
    sk: PublicKey,
    c2s: u64,
    s2c: u64,
}

fn own_key(cfg: &EndpointConfig, key: &cusp_proto::crypto::PrivateKey) -> PublicKey {
    let suite = cfg
        .channel
        .public_key_suites
        .cheapest()
        .unwrap_or(PublicKeySuite::Curve25519Whirlpool);
    key.public_key(suite)
}

impl Pair {
    fn new(seed: u64, ccfg: EndpointConfig, scfg: EndpointConfig, c2s: Flow, s2c: Flow) -> Pair {
        let mut sim = Sim::new(seed);
        let ckey = test_key(sim.rng());
        let skey = test_key(sim.rng());
        let (ck, sk) = (own_key(&ccfg, &ckey), own_key(&scfg, &skey));
        let start = sim.now();
        let chosts = TestHosts::new(start, ck).with_flow(sk, c2s);
        let shosts = TestHosts::new(start, sk).with_flow(ck, s2c);
        let crng = sim.fork_rng();
        let srng = sim.fork_rng();
        let client = sim.add_node(
            v4(10, 0, 0, 1, 4000),
            EndpointNode::new(ccfg, ckey, crng, chosts),
        );
        let server = sim.add_node(
            v4(10, 0, 0, 2, 443),
            EndpointNode::new(scfg, skey, srng, shosts),
        );
        Pair {
            sim,
            client,
            server,
            ck,
            sk,
            c2s: c2s.count,
            s2c: s2c.count,
        }
    }

    fn c(&self) -> &EndpointNode {
        self.sim.node::<EndpointNode>(self.client)
    }

    fn s(&self) -> &EndpointNode {
        self.sim.node::<EndpointNode>(self.server)
    }

    fn connect(&mut self) {
        let (now, to) = (self.sim.now(), self.sim.public_addr(self.server));
        self.sim
            .node_mut::<EndpointNode>(self.client)
            .endpoint
            .connect(now, to);
    }

    fn done(sim: &Sim, p: (NodeId, NodeId, PublicKey, PublicKey, u64, u64)) -> bool {
        let (c, s, ck, sk, c2s, s2c) = p;
        let (c, s) = (
            sim.node::<EndpointNode>(c).hosts(),
            sim.node::<EndpointNode>(s).hosts(),
        );
        c.all_acked()
            && s.all_acked()
            && s.inbox(&ck).map_or(0, |i| i.ids.len() as u64) == c2s
            && c.inbox(&sk).map_or(0, |i| i.ids.len() as u64) == s2c
    }

    /// Run until both flows are delivered and acknowledged; returns the time taken.
    fn deliver(&mut self, limit: Duration) -> Result<Duration, String> {
        let key = (
            self.client,
            self.server,
            self.ck,
            self.sk,
            self.c2s,
            self.s2c,
        );
        let t0 = self.sim.now();
        let ok = self
            .sim
            .run_until_with(t0 + limit, |sim| Pair::done(sim, key))
            .map_err(err)?;
        self.check()?;
        ensure!(ok, "not all acknowledged within {limit:?}");
        Ok(self.sim.now() - t0)
    }

    /// Exact delivery in both directions.
    fn check(&self) -> Result<(), String> {
        self.s()
            .hosts()
            .check_exact(&self.ck, self.c2s)
            .map_err(|e| format!("client->server: {e}"))?;
        self.c()
            .hosts()
            .check_exact(&self.sk, self.s2c)
            .map_err(|e| format!("server->client: {e}"))?;
        Ok(())
    }

    /// Both sides idle: run until both endpoints have no channel.
    fn close(&mut self, limit: Duration) -> Result<bool, String> {
        let (c, s) = (self.client, self.server);
        let deadline = self.sim.now() + limit;
        self.sim
            .run_until_with(deadline, |sim| {
                sim.node::<EndpointNode>(c).endpoint.is_idle()
                    && sim.node::<EndpointNode>(s).endpoint.is_idle()
            })
            .map_err(err)
    }

    fn duplicates(&self) -> u64 {
        self.s().hosts().inbox(&self.ck).map_or(0, |i| i.duplicates)
            + self.c().hosts().inbox(&self.sk).map_or(0, |i| i.duplicates)
    }
}

fn cfg() -> EndpointConfig {
    EndpointConfig::default()
}

fn handshake(seed: u64) -> Result<Report, String> {
    let mut report = Report::new();
    let mut total = Duration::ZERO;
    for pk in [PublicKeySuite::Xor, PublicKeySuite::Curve25519Whirlpool] {
        for sym in [SymmetricSuite::Crc32, SymmetricSuite::Poly1305Aes] {
            for encrypt in [true, false] {
                let mut c = cfg();
                c.channel.public_key_suites = PublicKeySuites::single(pk);
                c.channel.symmetric_suites = SymmetricSuites::single(sym);
                c.channel.encrypt = encrypt;
                let sub = seed
                    .wrapping_mul(8)
                    .wrapping_add(u64::from(pk.bit() * 4 + sym.bit() * 2) + u64::from(encrypt));
                let mut p = Pair::new(sub, c.clone(), c, Flow::messages(20), Flow::messages(20));
                p.sim
                    .set_default_link(LinkConfig::default().jitter(Duration::from_millis(2)));
                p.connect();
                let t = p
                    .deliver(Duration::from_secs(5))
                    .map_err(|e| format!("{pk}/{sym}/encrypt={encrypt}: {e}"))?;
                total += t;
                for (side, info) in [
                    ("client", p.c().hosts().establishments.first()),
                    ("server", p.s().hosts().establishments.first()),
                ] {
                    let info = info.ok_or_else(|| format!("{side} never established"))?;
                    ensure!(
                        info.no_encrypt != encrypt,
                        "{side}: noEncrypt {} with encrypt={encrypt}",
                        info.no_encrypt
                    );
                    ensure!(info.peer.suite() == pk, "{side}: wrong suite");
                }
                ensure!(
                    p.c().hosts().stats.established == 1 && p.s().hosts().stats.established == 1,
                    "more than one establishment"
                );
                ensure!(
                    p.close(Duration::from_secs(5))?,
                    "{pk}/{sym}/encrypt={encrypt}: channels did not close when both idle"
                );
            }
        }
    }
    report.push("combinations", 8);
    report.push("mean_delivery_ms", total.as_millis() / 8);
    Ok(report)
}

fn simultaneous_open(seed: u64) -> Result<Report, String> {
    let mut p = Pair::new(seed, cfg(), cfg(), Flow::messages(30), Flow::messages(30));
    let now = p.sim.now();
    let (ca, sa) = (p.sim.addr(p.client), p.sim.addr(p.server));
    p.sim
        .node_mut::<EndpointNode>(p.client)
        .endpoint
        .connect(now, sa);
    p.sim
        .node_mut::<EndpointNode>(p.server)
        .endpoint
        .connect(now, ca);
    let t = p.deliver(Duration::from_secs(10))?;
    let counts = (
        p.c().endpoint.channel_count(),
        p.s().endpoint.channel_count(),
    );
    ensure!(
        counts.0 <= 1 && counts.1 <= 1,
        "channels per side {counts:?}: {:?} {:?}",
        p.c().endpoint.stats(),
        p.s().endpoint.stats()
    );
    let est = (
        p.c().hosts().stats.established,
        p.s().hosts().stats.established,
    );
    ensure!(est == (1, 1), "establishments {est:?}");
    Ok(Report::new().metric("delivery_ms", t.as_millis()))
}

fn loss(seed: u64) -> Result<Report, String> {
    let mut report = Report::new();
    for (p_loss, limit) in [(0.01, 10), (0.10, 30), (0.30, 600)] {
        let mut p = Pair::new(seed, cfg(), cfg(), Flow::messages(100), Flow::messages(100));
        p.sim.set_default_link(LinkConfig::default().loss(p_loss));
        // An application retries a handshake that gave up (9 HELLOs, §4.6): at
        // 30 % loss all replies can be lost (about 1 run in 1 000).
        let key = (p.client, p.server, p.ck, p.sk, p.c2s, p.s2c);
        let t0 = p.sim.now();
        let deadline = t0 + Duration::from_secs(limit);
        while p.sim.now() < deadline {
            p.connect();
            let (c, s) = (p.client, p.server);
            let done = p
                .sim
                .run_until_with(deadline, |sim| {
                    Pair::done(sim, key)
                        || (sim.node::<EndpointNode>(c).endpoint.is_idle()
                            && !sim.node::<EndpointNode>(s).hosts().is_bound(&key.2))
                })
                .map_err(err)?;
            if !done || Pair::done(&p.sim, key) {
                break;
            }
        }
        let t = p
            .deliver(Duration::ZERO)
            .map_err(|e| format!("loss {p_loss}: {e}"))
            .map(|_| p.sim.now() - t0)?;
        report.push(format!("ms@{}%", (p_loss * 100.0) as u32), t.as_millis());
    }
    Ok(report)
}

fn reorder(seed: u64) -> Result<Report, String> {
    let mut p = Pair::new(seed, cfg(), cfg(), Flow::messages(200), Flow::messages(200));
    p.sim.set_default_link(
        LinkConfig::default()
            .reorder(0.2, Duration::from_millis(15))
            .jitter(Duration::from_millis(5)),
    );
    p.connect();
    let t = p.deliver(Duration::from_secs(20))?;
    Ok(Report::new()
        .metric("delivery_ms", t.as_millis())
        .metric("duplicates", p.duplicates()))
}

fn duplicate(seed: u64) -> Result<Report, String> {
    let mut p = Pair::new(seed, cfg(), cfg(), Flow::messages(200), Flow::messages(200));
    p.sim.set_default_link(
        LinkConfig::default()
            .duplicate(0.2)
            .jitter(Duration::from_millis(3)),
    );
    p.connect();
    let t = p.deliver(Duration::from_secs(20))?;
    // A duplicated datagram is discarded by the ack generator; a message can
    // only arrive twice if its first datagram was spuriously declared lost.
    let lost = p.c().hosts().stats.lost + p.s().hosts().stats.lost;
    ensure!(
        p.duplicates() <= lost,
        "{} duplicates with only {lost} losses declared",
        p.duplicates()
    );
    Ok(Report::new()
        .metric("delivery_ms", t.as_millis())
        .metric("duplicates", p.duplicates()))
}

fn corrupt(seed: u64) -> Result<Report, String> {
    let mut p = Pair::new(seed, cfg(), cfg(), Flow::messages(300), Flow::messages(300));
    p.connect();
    // Establish cleanly, then corrupt 10 % of datagrams (1-8 bits).
    let (c, s, sk, ck) = (p.client, p.server, p.sk, p.ck);
    let t0 = p.sim.now();
    let up = p
        .sim
        .run_until_with(t0 + Duration::from_secs(5), |sim| {
            sim.node::<EndpointNode>(c).hosts().is_bound(&sk)
                && sim.node::<EndpointNode>(s).hosts().is_bound(&ck)
        })
        .map_err(err)?;
    ensure!(up, "no establishment");
    let (l1, l2) = (p.sim.path(c, s)[0], p.sim.path(s, c)[0]);
    for l in [l1, l2] {
        let link = p.sim.link_mut(l);
        link.corrupt = 0.1;
        link.corrupt_max_bits = 8;
    }
    let t = p.deliver(Duration::from_secs(30))?;
    let corrupted = p.sim.link_stats(l1).corrupted + p.sim.link_stats(l2).corrupted;
    let bad_mac = p.c().endpoint.stats().bad_mac + p.s().endpoint.stats().bad_mac;
    ensure!(
        corrupted < 10 || bad_mac > 0,
        "{corrupted} corrupted datagrams but no MAC failure"
    );
    ensure!(
        p.c().hosts().stats.established == 1 && p.s().hosts().stats.established == 1,
        "the channel did not survive: establishments {} / {}",
        p.c().hosts().stats.established,
        p.s().hosts().stats.established
    );
    Ok(Report::new()
        .metric("delivery_ms", t.as_millis())
        .metric("corrupted", corrupted)
        .metric("bad_mac", bad_mac))
}

fn peer_restart(seed: u64) -> Result<Report, String> {
    let n = 150;
    let flow = Flow::messages(n).every(Duration::from_millis(10));
    let mut sim = Sim::new(seed);
    let ckey = test_key(sim.rng());
    let skey = test_key(sim.rng());
    let c0 = cfg();
    let (ck, sk) = (own_key(&c0, &ckey), own_key(&c0, &skey));
    let start = sim.now();
    let crng = sim.fork_rng();
    let srng = sim.fork_rng();
    let client = sim.add_node(
        v4(10, 0, 0, 1, 4000),
        EndpointNode::new(
            c0.clone(),
            ckey,
            crng,
            TestHosts::new(start, ck).with_flow(sk, flow),
        ),
    );
    let skey2 = skey.clone();
    let server = sim.add_node(
        v4(10, 0, 0, 2, 443),
        EndpointNode::new(
            c0.clone(),
            skey,
            srng,
            TestHosts::new(start, sk).with_flow(ck, flow),
        ),
    );
    let sa = sim.addr(server);
    let now = sim.now();
    sim.node_mut::<EndpointNode>(client)
        .endpoint
        .connect(now, sa);
    sim.run_for(Duration::from_millis(700)).map_err(err)?;
    ensure!(
        sim.node::<EndpointNode>(client).hosts().is_bound(&sk),
        "not established before the restart"
    );
    // Restart: same key, no state. Its flow to the client starts over.
    let restarted_at = sim.now();
    let rng = sim.fork_rng();
    let fresh = EndpointNode::new(
        c0,
        skey2,
        rng,
        TestHosts::new(restarted_at, sk).with_flow(ck, flow),
    );
    let old = sim.replace_node(server, Box::new(fresh));
    let old = (old as Box<dyn std::any::Any>)
        .downcast::<EndpointNode>()
        .map_err(|_| "not an endpoint node")?;
    let ok = sim
        .run_until_with(restarted_at + Duration::from_secs(30), |sim| {
            let s = sim.node::<EndpointNode>(server).hosts();
            let c = sim.node::<EndpointNode>(client).hosts();
            c.all_acked() && s.all_acked() && c.inbox(&sk).map_or(0, |i| i.ids.len() as u64) == n
        })
        .map_err(err)?;
    ensure!(ok, "traffic did not complete after the restart");
    let s = sim.node::<EndpointNode>(server).hosts();
    let c = sim.node::<EndpointNode>(client).hosts();
    c.check_exact(&sk, n)?;
    // Client -> server: the old and the new server together got everything.
    let mut got = old
        .hosts()
        .inbox(&ck)
        .map(|i| i.ids.clone())
        .unwrap_or_default();
    let after = s.inbox(&ck).map_or(0, |i| i.ids.len());
    got.extend(
        s.inbox(&ck)
            .map(|i| i.ids.iter().copied())
            .into_iter()
            .flatten(),
    );
    ensure!(
        got.len() as u64 == n && got.last() == Some(&(n - 1)),
        "client->server: {} of {n} delivered",
        got.len()
    );
    ensure!(
        s.stats.malformed + s.stats.corrupted == 0,
        "bad payloads at the new server"
    );
    ensure!(after > 0, "no traffic reached the restarted server");
    ensure!(c.stats.established >= 2, "client did not renegotiate");
    ensure!(
        c.stats.wipes >= 2,
        "re-establishment with a restarted peer must not resume"
    );
    Ok(Report::new()
        .metric("client_establishments", c.stats.established)
        .metric("after_restart", after))
}

fn address_change(seed: u64) -> Result<Report, String> {
    let n = 150;
    let flow = Flow::messages(n).every(Duration::from_millis(10));
    let mut p = Pair::new(seed, cfg(), cfg(), flow, flow);
    p.sim.add_nat(p.client, v4(198, 51, 100, 1, 5000), false);
    p.connect();
    p.sim.run_for(Duration::from_millis(700)).map_err(err)?;
    ensure!(
        p.s().hosts().is_bound(&p.ck),
        "not established before the rebinding"
    );
    let old = p.sim.public_addr(p.client);
    let new = p.sim.rebind(p.client);
    p.deliver(Duration::from_secs(30))?;
    let s = p.s();
    ensure!(
        s.endpoint.bound_channel(&p.ck) == Some(new),
        "client host bound to {:?}, not the new address {new}",
        s.endpoint.bound_channel(&p.ck)
    );
    ensure!(
        s.endpoint.channel(old).is_none(),
        "the old channel survived"
    );
    let infos = &s.hosts().establishments;
    ensure!(
        infos.iter().all(|i| i.peer == p.ck),
        "another host appeared"
    );
    ensure!(
        infos.iter().any(|i| i.remote_addr == new),
        "no establishment from the new address"
    );
    ensure!(
        infos.last().is_some_and(|i| i.resume),
        "the new channel did not resume"
    );
    ensure!(
        s.endpoint.stats().channels_replaced >= 1,
        "old channel not replaced by binding"
    );
    Ok(Report::new()
        .metric("server_establishments", infos.len())
        .metric("duplicates", p.duplicates()))
}

fn long_sequence(seed: u64) -> Result<Report, String> {
    let mut report = Report::new();
    for (name, start) in [("2^27", (1u64 << 27) - 50), ("2^28", (1u64 << 28) - 50)] {
        let mut c = cfg();
        c.channel.initial_tsn = start;
        let mut p = Pair::new(seed, c.clone(), c, Flow::messages(150), Flow::messages(150));
        p.sim.set_default_link(
            LinkConfig::default()
                .loss(0.02)
                .reorder(0.05, Duration::from_millis(5)),
        );
        p.connect();
        let t = p.deliver(Duration::from_secs(30)).map_err(|e| {
            format!(
                "across {name}: {e}; client {:?} {:?}; server {:?} {:?}",
                p.c().hosts().stats,
                p.c().endpoint.stats(),
                p.s().hosts().stats,
                p.s().endpoint.stats()
            )
        })?;
        let sent = p.c().endpoint.stats().datagrams_out;
        ensure!(
            sent > 60,
            "only {sent} datagrams: the boundary was not crossed"
        );
        ensure!(
            p.c().hosts().stats.established == 1,
            "renegotiated: TSNs restarted"
        );
        ensure!(
            p.s().endpoint.stats().bad_mac + p.c().endpoint.stats().bad_mac == 0,
            "MAC failures across {name}"
        );
        report.push(format!("ms@{name}"), t.as_millis());
    }
    Ok(report)
}

fn handshake_flood(seed: u64) -> Result<Report, String> {
    const HELLOS: u32 = 100_000;
    let flood_time = Duration::from_secs(1);
    // A smaller half-open cap than the default 1 024 keeps the run short: the
    // endpoint's scheduler still scans every channel per transmission (O(n)).
    let scfg = cfg().max_unverified(256);
    let mut p = Pair::new(
        seed,
        cfg(),
        scfg.clone(),
        Flow::messages(20),
        Flow::messages(20),
    );
    // HELLO templates with valid points from a handful of real keys.
    let mut templates = Vec::new();
    for _ in 0..16 {
        let key = test_key(p.sim.rng());
        let rng = p.sim.fork_rng();
        let pk = own_key(&scfg, &key);
        let mut n = EndpointNode::new(cfg(), key, rng, TestHosts::new(p.sim.now(), pk));
        let now = p.sim.now();
        n.endpoint.connect(now, p.sim.addr(p.server));
        let mut buf = vec![0u8; 1500];
        let t = n.endpoint.poll_transmit(now, &mut buf).ok_or("no HELLO")?;
        ensure!(t.len == 94, "padded HELLO expected");
        templates.push(buf[..t.len].to_vec());
    }
    let t0 = p.sim.now();
    let to = p.sim.addr(p.server);
    let (mut flood_bytes, mut flood_padded) = (0u64, 0u64);
    for i in 0..HELLOS {
        let at = t0 + flood_time * i / HELLOS;
        let from = std::net::SocketAddrV4::new(
            std::net::Ipv4Addr::from(0x0A80_0000 + i),
            1024 + (i % 50_000) as u16,
        );
        let mut d = templates[(i % 16) as usize].clone();
        if p.sim.rng().chance(0.5) {
            d.truncate(78);
        } else {
            flood_padded += 1;
        }
        flood_bytes += d.len() as u64;
        p.sim.inject_at(at, from, to, d);
    }
    // The legitimate client connects in the middle of the flood.
    p.sim.run_for(Duration::from_millis(300)).map_err(err)?;
    p.connect();
    let mut max_channels = 0usize;
    let (s, c, ck, sk) = (p.server, p.client, p.ck, p.sk);
    let limit = p.sim.now() + Duration::from_secs(40);
    let ok = p
        .sim
        .run_until_with(limit, |sim| {
            max_channels = max_channels.max(sim.node::<EndpointNode>(s).endpoint.channel_count());
            let (sh, ch) = (
                sim.node::<EndpointNode>(s).hosts(),
                sim.node::<EndpointNode>(c).hosts(),
            );
            ch.all_acked()
                && sh.all_acked()
                && sh.inbox(&ck).map_or(0, |i| i.ids.len()) == 20
                && ch.inbox(&sk).map_or(0, |i| i.ids.len()) == 20
        })
        .map_err(err)?;
    let elapsed = p.sim.now() - t0;
    let st = p.s().endpoint.stats();
    ensure!(ok, "legit client did not get through: {st:?}");
    p.check()?;
    ensure!(
        st.max_channels_seen <= scfg.max_channels as u64,
        "channels {}",
        st.max_channels_seen
    );
    ensure!(
        st.max_unverified_seen <= scfg.max_unverified as u64,
        "unverified channels {} > {}",
        st.max_unverified_seen,
        scfg.max_unverified
    );
    let budget = scfg.key_agreement_rate.budget(elapsed);
    ensure!(
        st.key_agreements_admitted <= budget,
        "{} key agreements > budget {budget}",
        st.key_agreements_admitted
    );
    ensure!(
        st.key_agreements_admitted <= flood_padded + 10,
        "key agreements on 78-byte HELLOs"
    );
    ensure!(
        st.unverified_bytes_out <= st.unverified_bytes_in,
        "amplification: {} bytes out for {} in",
        st.unverified_bytes_out,
        st.unverified_bytes_in
    );
    ensure!(
        st.unverified_bytes_in <= flood_bytes + 100_000,
        "accounting"
    );
    Ok(Report::new()
        .metric(
            "established_after_ms",
            (elapsed.as_millis() as u64).saturating_sub(300),
        )
        .metric("max_channels", st.max_channels_seen)
        .metric("key_agreements", st.key_agreements_admitted)
        .metric("refused", st.handshakes_refused())
        .metric("ka_refused", st.key_agreements_refused)
        .metric("created", st.channels_created)
        .metric(
            "out/in",
            format!("{}/{}", st.unverified_bytes_out, st.unverified_bytes_in),
        ))
}

/// Distinct message bytes that arrived in `[from, to)`.
fn goodput(
    inbox: Option<&crate::testhost::Inbox>,
    from: std::time::Instant,
    to: std::time::Instant,
) -> u64 {
    inbox.map_or(0, |i| {
        i.arrivals
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, l)| u64::from(*l))
            .sum()
    })
}

const BOTTLENECK_BPS: u64 = 10_000_000;

fn bottleneck() -> LinkConfig {
    // 25 ms each way (50 ms RTT); queue of one bandwidth-delay product.
    LinkConfig::default()
        .latency(Duration::from_millis(25))
        .bandwidth(BOTTLENECK_BPS)
        .queue_limit(62_500)
}

fn cc_utilisation(seed: u64) -> Result<Report, String> {
    let mut c = cfg();
    // Bulk data: the cheap suites keep the simulation fast; cc does not care.
    c.channel.public_key_suites = PublicKeySuites::single(PublicKeySuite::Xor);
    c.channel.symmetric_suites = SymmetricSuites::single(SymmetricSuite::Crc32);
    let mut p = Pair::new(seed, c.clone(), c, Flow::bulk(), Flow::messages(0));
    p.sim.connect_asymmetric(
        p.client,
        p.server,
        bottleneck(),
        LinkConfig::default().latency(Duration::from_millis(25)),
    );
    p.connect();
    let t0 = p.sim.now();
    let (from, to) = (t0 + Duration::from_secs(2), t0 + Duration::from_secs(6));
    p.sim.run_until(to).map_err(err)?;
    let bytes = goodput(p.s().hosts().inbox(&p.ck), from, to);
    let secs = (to - from).as_secs_f64();
    let util = bytes as f64 * 8.0 / secs / BOTTLENECK_BPS as f64;
    // Wire bytes per message byte: 1 444 payload in 1 468 UDP + 28 IP/UDP.
    let wire_util = util * 1496.0 / 1444.0;
    p.s().hosts().check_exact(
        &p.ck,
        p.s().hosts().inbox(&p.ck).map_or(0, |i| i.ids.len() as u64),
    )?;
    ensure!(
        wire_util >= 0.85,
        "utilisation {:.1} % of the link ({:.1} % goodput)",
        wire_util * 100.0,
        util * 100.0
    );
    Ok(Report::new()
        .metric("link_util_pct", format!("{:.1}", wire_util * 100.0))
        .metric("goodput_pct", format!("{:.1}", util * 100.0)))
}

fn cc_fairness(seed: u64) -> Result<Report, String> {
    let mut c = cfg();
    c.channel.public_key_suites = PublicKeySuites::single(PublicKeySuite::Xor);
    c.channel.symmetric_suites = SymmetricSuites::single(SymmetricSuite::Crc32);
    let mut sim = Sim::new(seed);
    let keys: Vec<_> = (0..3).map(|_| test_key(sim.rng())).collect();
    let pks: Vec<_> = keys.iter().map(|k| own_key(&c, k)).collect();
    let start = sim.now();
    let server_addr = v4(10, 0, 0, 2, 443);
    let mut ids = Vec::new();
    for (i, key) in keys.into_iter().enumerate() {
        let hosts = if i < 2 {
            TestHosts::new(start, pks[i]).with_flow(pks[2], Flow::bulk())
        } else {
            TestHosts::new(start, pks[i])
        };
        let rng = sim.fork_rng();
        let addr = if i < 2 {
            v4(10, 0, 1, i as u8 + 1, 4000)
        } else {
            server_addr
        };
        ids.push(sim.add_node(addr, EndpointNode::new(c.clone(), key, rng, hosts)));
    }
    let shared = sim.add_link(bottleneck());
    for i in 0..2 {
        let access = sim.add_link(
            LinkConfig::default()
                .latency(Duration::ZERO)
                .jitter(Duration::from_micros(200)),
        );
        sim.set_path(ids[i], ids[2], &[access, shared]);
        let back = sim.add_link(LinkConfig::default().latency(Duration::from_millis(25)));
        sim.set_path(ids[2], ids[i], &[back]);
    }
    let now = sim.now();
    for id in &ids[..2] {
        sim.node_mut::<EndpointNode>(*id)
            .endpoint
            .connect(now, server_addr);
    }
    let (from, to) = (now + Duration::from_secs(3), now + Duration::from_secs(10));
    sim.run_until(to).map_err(err)?;
    let server = sim.node::<EndpointNode>(ids[2]).hosts();
    let g: Vec<u64> = (0..2)
        .map(|i| goodput(server.inbox(&pks[i]), from, to))
        .collect();
    for pk in &pks[..2] {
        server.check_exact(pk, server.inbox(pk).map_or(0, |i| i.ids.len() as u64))?;
    }
    let share = g[0] as f64 / (g[0] + g[1]).max(1) as f64;
    let total = (g[0] + g[1]) as f64 * 8.0 / (to - from).as_secs_f64() / BOTTLENECK_BPS as f64;
    ensure!(
        (0.4..=0.6).contains(&share),
        "throughput split {:.1}/{:.1}",
        share * 100.0,
        (1.0 - share) * 100.0
    );
    Ok(Report::new()
        .metric("share_pct", format!("{:.1}", share * 100.0))
        .metric("goodput_pct", format!("{:.1}", total * 100.0)))
}
