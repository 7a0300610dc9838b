//! The simulator: virtual clock, event loop, nodes, addresses, NATs, paths and the trace.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::link::{Link, LinkConfig, LinkId, LinkStats, flip_bits};
use crate::node::{Node, NodeId, NodeStats, PairStats, Transmit};
use crate::queue::EventQueue;
use crate::rng::Rng;
use crate::trace::{DatagramId, DropReason, Fate, TraceEvent};

/// Why a run stopped before its goal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// More events were processed in total than [`Sim::set_step_budget`] allows.
    #[error("step budget of {budget} events exhausted at t={at:?}")]
    BudgetExhausted {
        /// The budget.
        budget: u64,
        /// Virtual time when it ran out.
        at: Duration,
    },
    /// Too many events at a single instant, or a node kept producing datagrams without end:
    /// virtual time stopped advancing.
    #[error("livelock at t={at:?}: {what}")]
    Livelock {
        /// Virtual time of the livelock.
        at: Duration,
        /// What was looping.
        what: String,
    },
}

/// Totals over the whole simulation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Datagrams sent by nodes.
    pub sent: u64,
    /// Datagrams injected by the scenario.
    pub injected: u64,
    /// Datagrams handed to nodes.
    pub delivered: u64,
    /// Drops by cause.
    pub dropped: BTreeMap<DropReason, u64>,
}

impl SimStats {
    /// Drops for one cause.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(&reason).copied().unwrap_or(0)
    }
}

/// A NAT in front of one node: endpoint-independent mapping from the node's private address
/// to one public address, optionally with endpoint-dependent filtering.
#[derive(Debug)]
struct Nat {
    public: SocketAddrV4,
    filtering: bool,
    /// Remote addresses the node has sent to through the current mapping.
    contacted: BTreeSet<SocketAddrV4>,
}

struct NodeSlot {
    node: Box<dyn Node>,
    addr: SocketAddrV4,
    nat: Option<Nat>,
    /// The timer currently scheduled, as an offset, and its generation.
    timer: Option<Duration>,
    timer_gen: u64,
    dirty: bool,
    stats: NodeStats,
}

#[derive(Debug)]
struct InFlight {
    id: DatagramId,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    data: Vec<u8>,
    from_node: Option<NodeId>,
    path: Rc<[LinkId]>,
    /// Index in `path` of the link it is about to enter (== len: deliver).
    hop: usize,
}

#[derive(Debug)]
enum Event {
    Arrive(InFlight),
    Timer { node: NodeId, generation: u64 },
}

type Tap = Box<dyn FnMut(&TraceEvent)>;

/// A deterministic discrete-event network simulation.
///
/// Everything random comes from the seed; everything temporal from a virtual clock that
/// jumps from event to event. Two runs with the same seed and the same scenario code produce
/// identical traces.
pub struct Sim {
    seed: u64,
    start: Instant,
    now: Duration,
    queue: EventQueue<Event>,
    master_rng: Rng,
    scenario_rng: Rng,
    nodes: Vec<NodeSlot>,
    /// Routable addresses: plain node addresses and NAT public addresses.
    addrs: BTreeMap<SocketAddrV4, NodeId>,
    links: Vec<Link>,
    paths: BTreeMap<(NodeId, NodeId), Rc<[LinkId]>>,
    default_link: LinkConfig,
    next_datagram: u64,
    trace: Option<Vec<TraceEvent>>,
    trace_payloads: bool,
    tap: Option<Tap>,
    stats: SimStats,
    pairs: BTreeMap<(NodeId, NodeId), PairStats>,
    steps: u64,
    step_budget: u64,
    same_instant_steps: u64,
    same_instant_limit: u64,
    transmit_limit: u64,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.seed)
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("links", &self.links.len())
            .field("pending_events", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// A simulation with no nodes, whose every random choice derives from `seed`.
    ///
    /// Defaults: links created implicitly between nodes use [`LinkConfig::default`]; the step
    /// budget is 50 million events; at most 100 000 events may happen at one instant and a
    /// node may emit at most 100 000 datagrams in one burst before the run is declared a
    /// livelock.
    pub fn new(seed: u64) -> Self {
        let mut master_rng = Rng::new(seed);
        let scenario_rng = master_rng.fork();
        Self {
            seed,
            start: Instant::now(),
            now: Duration::ZERO,
            queue: EventQueue::new(),
            master_rng,
            scenario_rng,
            nodes: Vec::new(),
            addrs: BTreeMap::new(),
            links: Vec::new(),
            paths: BTreeMap::new(),
            default_link: LinkConfig::default(),
            next_datagram: 0,
            trace: None,
            trace_payloads: false,
            tap: None,
            stats: SimStats::default(),
            pairs: BTreeMap::new(),
            steps: 0,
            step_budget: 50_000_000,
            same_instant_steps: 0,
            same_instant_limit: 100_000,
            transmit_limit: 100_000,
        }
    }

    // ----- clock and randomness -------------------------------------------------------

    /// The seed this simulation was created with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.start + self.now
    }

    /// The instant virtual time started from; `now() - start()` is [`Sim::elapsed`].
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Virtual time elapsed since the start.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    /// The scenario's own random stream (separate from the links' streams).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.scenario_rng
    }

    /// A fresh independent random stream, e.g. to give to a node.
    pub fn fork_rng(&mut self) -> Rng {
        self.master_rng.fork()
    }

    /// Limits the total number of events a simulation may process.
    pub fn set_step_budget(&mut self, steps: u64) {
        self.step_budget = steps;
    }

    /// Limits the events at one instant and the datagrams one node may emit in one burst.
    pub fn set_livelock_limits(&mut self, events_per_instant: u64, transmits_per_burst: u64) {
        self.same_instant_limit = events_per_instant;
        self.transmit_limit = transmits_per_burst;
    }

    /// Events processed so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    // ----- nodes ----------------------------------------------------------------------

    /// Adds a node reachable at `addr`. Panics if the address is taken.
    pub fn add_node<N: Node>(&mut self, addr: SocketAddrV4, node: N) -> NodeId {
        self.add_boxed_node(addr, Box::new(node))
    }

    /// Adds an already boxed node reachable at `addr`. Panics if the address is taken.
    pub fn add_boxed_node(&mut self, addr: SocketAddrV4, node: Box<dyn Node>) -> NodeId {
        let id = NodeId(self.nodes.len());
        self.claim(addr, id);
        self.nodes.push(NodeSlot {
            node,
            addr,
            nat: None,
            timer: None,
            timer_gen: 0,
            dirty: true,
            stats: NodeStats::default(),
        });
        id
    }

    fn claim(&mut self, addr: SocketAddrV4, id: NodeId) {
        if let Some(owner) = self.addrs.insert(addr, id) {
            panic!("address {addr} already belongs to node {}", owner.0);
        }
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The node `id` as its concrete type. Panics if `id` is not a `T`.
    pub fn node<T: Node>(&self, id: NodeId) -> &T {
        let node: &dyn Any = &*self.nodes[id.0].node;
        node.downcast_ref::<T>()
            .unwrap_or_else(|| panic!("node {} is not a {}", id.0, std::any::type_name::<T>()))
    }

    /// The node `id` as its concrete type, for the scenario to act on it (connect, write,
    /// close, ...). The simulator polls the node for transmits and timers before the next
    /// event. Panics if `id` is not a `T`.
    pub fn node_mut<T: Node>(&mut self, id: NodeId) -> &mut T {
        let slot = &mut self.nodes[id.0];
        slot.dirty = true;
        let node: &mut dyn Any = &mut *slot.node;
        node.downcast_mut::<T>()
            .unwrap_or_else(|| panic!("node {} is not a {}", id.0, std::any::type_name::<T>()))
    }

    /// The node `id` as a trait object.
    pub fn node_dyn_mut(&mut self, id: NodeId) -> &mut dyn Node {
        let slot = &mut self.nodes[id.0];
        slot.dirty = true;
        &mut *slot.node
    }

    /// Replaces node `id` with `node`, keeping its address, NAT and statistics: a restart
    /// that loses all state. The old node's pending timer is cancelled. Returns the old node.
    pub fn replace_node(&mut self, id: NodeId, node: Box<dyn Node>) -> Box<dyn Node> {
        let slot = &mut self.nodes[id.0];
        slot.timer = None;
        slot.timer_gen += 1;
        slot.dirty = true;
        std::mem::replace(&mut slot.node, node)
    }

    /// The node's own address (its private address if behind a NAT).
    pub fn addr(&self, id: NodeId) -> SocketAddrV4 {
        self.nodes[id.0].addr
    }

    /// The address peers see for the node: its NAT's public address, or its own.
    pub fn public_addr(&self, id: NodeId) -> SocketAddrV4 {
        let slot = &self.nodes[id.0];
        slot.nat.as_ref().map_or(slot.addr, |nat| nat.public)
    }

    /// Moves the node to a new address. Its old address stops receiving (datagrams still
    /// in flight to it are dropped as `Unreachable`) and it sends from the new one. For a
    /// node behind a NAT this changes only the private address. Panics if the new address
    /// is taken.
    pub fn set_addr(&mut self, id: NodeId, addr: SocketAddrV4) {
        let behind_nat = self.nodes[id.0].nat.is_some();
        if !behind_nat {
            self.addrs.remove(&self.nodes[id.0].addr);
            self.claim(addr, id);
        }
        self.nodes[id.0].addr = addr;
    }

    /// Puts a NAT in front of the node: peers see `public` as its address and inbound
    /// datagrams to `public` reach the node; its own address is no longer routable. With
    /// `filtering`, inbound datagrams are accepted only from addresses the node has sent to
    /// through the current mapping. Panics if `public` is taken or the node is already
    /// behind a NAT.
    pub fn add_nat(&mut self, id: NodeId, public: SocketAddrV4, filtering: bool) {
        assert!(
            self.nodes[id.0].nat.is_none(),
            "node {} is already behind a NAT",
            id.0
        );
        self.addrs.remove(&self.nodes[id.0].addr);
        self.claim(public, id);
        self.nodes[id.0].nat = Some(Nat {
            public,
            filtering,
            contacted: BTreeSet::new(),
        });
    }

    /// NAT rebinding: the node's NAT maps it to a new public address (the next free port on
    /// the same public IP). The old mapping disappears, so datagrams to it are dropped, and
    /// filtering starts afresh. Returns the new public address. Panics without a NAT.
    pub fn rebind(&mut self, id: NodeId) -> SocketAddrV4 {
        let old = self.public_addr(id);
        let mut port = old.port();
        let new = loop {
            port = if port == u16::MAX { 1024 } else { port + 1 };
            let candidate = SocketAddrV4::new(*old.ip(), port);
            if !self.addrs.contains_key(&candidate) {
                break candidate;
            }
        };
        self.rebind_to(id, new);
        new
    }

    /// NAT rebinding to a chosen public address. Panics without a NAT or if it is taken.
    pub fn rebind_to(&mut self, id: NodeId, public: SocketAddrV4) {
        let old = self.nodes[id.0]
            .nat
            .as_ref()
            .expect("rebind of a node without a NAT")
            .public;
        self.addrs.remove(&old);
        self.claim(public, id);
        let nat = self.nodes[id.0].nat.as_mut().expect("checked above");
        nat.public = public;
        nat.contacted.clear();
    }

    /// Counters of one node.
    pub fn node_stats(&self, id: NodeId) -> &NodeStats {
        &self.nodes[id.0].stats
    }

    /// What `from` delivered to `to` so far.
    pub fn pair_stats(&self, from: NodeId, to: NodeId) -> PairStats {
        self.pairs.get(&(from, to)).cloned().unwrap_or_default()
    }

    /// Totals over the whole simulation.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    // ----- links and paths ------------------------------------------------------------

    /// The configuration used for links created implicitly between node pairs that have no
    /// explicit path. Affects only pairs that have not exchanged datagrams yet.
    pub fn set_default_link(&mut self, cfg: LinkConfig) {
        self.default_link = cfg;
    }

    /// Adds a one-directional link, not yet part of any path.
    pub fn add_link(&mut self, cfg: LinkConfig) -> LinkId {
        let rng = self.master_rng.fork();
        self.links.push(Link::new(cfg, rng));
        LinkId(self.links.len() - 1)
    }

    /// Makes datagrams from `from` to `to` traverse `links` in order (e.g. an access link
    /// then a shared bottleneck). An empty path delivers instantly.
    pub fn set_path(&mut self, from: NodeId, to: NodeId, links: &[LinkId]) {
        for l in links {
            assert!(l.0 < self.links.len(), "unknown link {}", l.0);
        }
        self.paths.insert((from, to), links.into());
    }

    /// The links datagrams from `from` to `to` traverse (creating the implicit default
    /// link if none was configured).
    pub fn path(&mut self, from: NodeId, to: NodeId) -> Vec<LinkId> {
        self.path_rc(from, to).to_vec()
    }

    fn path_rc(&mut self, from: NodeId, to: NodeId) -> Rc<[LinkId]> {
        if let Some(p) = self.paths.get(&(from, to)) {
            return p.clone();
        }
        let link = self.add_link(self.default_link.clone());
        let p: Rc<[LinkId]> = Rc::from(vec![link]);
        self.paths.insert((from, to), p.clone());
        p
    }

    /// Connects `a` and `b` with one link per direction, both configured as `cfg`.
    /// Returns `(a_to_b, b_to_a)`.
    pub fn connect(&mut self, a: NodeId, b: NodeId, cfg: LinkConfig) -> (LinkId, LinkId) {
        self.connect_asymmetric(a, b, cfg.clone(), cfg)
    }

    /// Connects `a` and `b` with differently configured directions. Returns
    /// `(a_to_b, b_to_a)`.
    pub fn connect_asymmetric(
        &mut self,
        a: NodeId,
        b: NodeId,
        a_to_b: LinkConfig,
        b_to_a: LinkConfig,
    ) -> (LinkId, LinkId) {
        let ab = self.add_link(a_to_b);
        let ba = self.add_link(b_to_a);
        self.set_path(a, b, &[ab]);
        self.set_path(b, a, &[ba]);
        (ab, ba)
    }

    /// A link's configuration, to change impairments mid-run (applies to datagrams entering
    /// the link afterwards).
    pub fn link_mut(&mut self, id: LinkId) -> &mut LinkConfig {
        &mut self.links[id.0].cfg
    }

    /// A link's configuration.
    pub fn link(&self, id: LinkId) -> &LinkConfig {
        &self.links[id.0].cfg
    }

    /// A link's counters.
    pub fn link_stats(&self, id: LinkId) -> &LinkStats {
        &self.links[id.0].stats
    }

    /// Bytes (including overhead) currently queued on a link.
    pub fn link_queue_bytes(&mut self, id: LinkId) -> usize {
        let now = self.now;
        self.links[id.0].queue_bytes(now)
    }

    // ----- trace ----------------------------------------------------------------------

    /// Starts recording every datagram event; with `payloads`, `Sent`, `Injected` and
    /// `Delivered` records carry a copy of the bytes.
    pub fn enable_trace(&mut self, payloads: bool) {
        self.trace.get_or_insert_with(Vec::new);
        self.trace_payloads = payloads;
    }

    /// The recorded trace (empty unless [`Sim::enable_trace`] was called).
    pub fn trace(&self) -> &[TraceEvent] {
        self.trace.as_deref().unwrap_or(&[])
    }

    /// Calls `tap` for every datagram event, e.g. to print a live log while debugging.
    pub fn set_tap(&mut self, tap: impl FnMut(&TraceEvent) + 'static) {
        self.tap = Some(Box::new(tap));
    }

    fn record(&mut self, dg: &InFlight, link: Option<LinkId>, fate: Fate, with_payload: bool) {
        if self.trace.is_none() && self.tap.is_none() {
            return;
        }
        let payload = (with_payload && self.trace_payloads).then(|| dg.data.clone());
        let event = TraceEvent {
            time: self.now,
            id: dg.id,
            from: dg.src,
            to: dg.dst,
            len: dg.data.len(),
            link,
            fate,
            payload,
        };
        if let Some(tap) = &mut self.tap {
            tap(&event);
        }
        if let Some(trace) = &mut self.trace {
            trace.push(event);
        }
    }

    fn drop_datagram(&mut self, dg: &InFlight, link: Option<LinkId>, reason: DropReason) {
        *self.stats.dropped.entry(reason).or_insert(0) += 1;
        self.record(dg, link, Fate::Dropped(reason), false);
    }

    fn next_id(&mut self) -> DatagramId {
        self.next_datagram += 1;
        DatagramId(self.next_datagram - 1)
    }

    // ----- injection ------------------------------------------------------------------

    /// Delivers `data` to whoever owns `to` now, claiming to come from `from` (any address,
    /// spoofed or not), bypassing all links. Goes through the destination's NAT.
    pub fn inject(&mut self, from: SocketAddrV4, to: SocketAddrV4, data: Vec<u8>) {
        self.inject_at(self.now(), from, to, data);
    }

    /// Like [`Sim::inject`] but at a later virtual time (earlier times mean now).
    pub fn inject_at(&mut self, at: Instant, from: SocketAddrV4, to: SocketAddrV4, data: Vec<u8>) {
        let at = at.saturating_duration_since(self.start).max(self.now);
        let dg = InFlight {
            id: self.next_id(),
            src: from,
            dst: to,
            data,
            from_node: None,
            path: Rc::from(Vec::new()),
            hop: 0,
        };
        self.stats.injected += 1;
        self.record(&dg, None, Fate::Injected, true);
        self.queue.push(at, Event::Arrive(dg));
    }

    // ----- running --------------------------------------------------------------------

    /// Polls every node the scenario touched (or that was just added) for transmits and
    /// timers. Called automatically before each event.
    pub fn flush(&mut self) -> Result<(), SimError> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].dirty {
                self.service(NodeId(i))?;
            }
        }
        Ok(())
    }

    /// Sends everything the node wants to send and reschedules its timer.
    fn service(&mut self, id: NodeId) -> Result<(), SimError> {
        self.nodes[id.0].dirty = false;
        let now = self.now();
        let mut count = 0u64;
        while let Some(tx) = self.nodes[id.0].node.poll_transmit(now) {
            count += 1;
            if count > self.transmit_limit {
                return Err(SimError::Livelock {
                    at: self.now,
                    what: format!(
                        "node {} emitted over {} datagrams at once",
                        id.0, self.transmit_limit
                    ),
                });
            }
            self.send(id, tx);
        }
        let timeout = self.nodes[id.0]
            .node
            .poll_timeout()
            .map(|t| t.saturating_duration_since(self.start));
        let slot = &mut self.nodes[id.0];
        if timeout != slot.timer {
            slot.timer = timeout;
            slot.timer_gen += 1;
            if let Some(t) = timeout {
                let generation = slot.timer_gen;
                self.queue.push(
                    t.max(self.now),
                    Event::Timer {
                        node: id,
                        generation,
                    },
                );
            }
        }
        Ok(())
    }

    /// Sends `tx` as if node `from` had emitted it (through its NAT and along its path),
    /// e.g. to make a node flood or misbehave without changing its code.
    pub fn send_from(&mut self, from: NodeId, tx: Transmit) {
        self.send(from, tx);
    }

    fn send(&mut self, from: NodeId, tx: Transmit) {
        let slot = &mut self.nodes[from.0];
        slot.stats.sent += 1;
        slot.stats.sent_bytes += tx.contents.len() as u64;
        let src = match &mut slot.nat {
            Some(nat) => {
                nat.contacted.insert(tx.destination);
                nat.public
            }
            None => slot.addr,
        };
        self.stats.sent += 1;
        let mut dg = InFlight {
            id: self.next_id(),
            src,
            dst: tx.destination,
            data: tx.contents,
            from_node: Some(from),
            path: Rc::from(Vec::new()),
            hop: 0,
        };
        self.record(&dg, None, Fate::Sent { node: from }, true);
        match self.addrs.get(&dg.dst).copied() {
            None => self.drop_datagram(&dg, None, DropReason::NoRoute),
            Some(to) => {
                dg.path = self.path_rc(from, to);
                self.forward(dg);
            }
        }
    }

    /// Moves a datagram that has reached the entrance of `path[hop]` (or its destination).
    fn forward(&mut self, mut dg: InFlight) {
        if dg.hop > 0 {
            let prev = &mut self.links[dg.path[dg.hop - 1].0].stats;
            prev.delivered += 1;
            prev.delivered_bytes += dg.data.len() as u64;
        }
        if dg.hop == dg.path.len() {
            self.deliver(dg);
            return;
        }
        let lid = dg.path[dg.hop];
        let now = self.now;
        let departure = match self.links[lid.0].admit(now, dg.data.len()) {
            Ok(t) => t,
            Err(reason) => return self.drop_datagram(&dg, Some(lid), reason),
        };
        dg.hop += 1;
        let copy = if self.links[lid.0].duplicates() {
            let copy = InFlight {
                id: self.next_id(),
                src: dg.src,
                dst: dg.dst,
                data: dg.data.clone(),
                from_node: dg.from_node,
                path: dg.path.clone(),
                hop: dg.hop,
            };
            self.record(&dg, Some(lid), Fate::Duplicated { copy: copy.id }, false);
            Some(copy)
        } else {
            None
        };
        for mut d in std::iter::once(dg).chain(copy) {
            let fate = self.links[lid.0].copy_fate(departure, d.data.len());
            if !fate.flipped.is_empty() {
                flip_bits(&mut d.data, &fate.flipped);
                self.record(&d, Some(lid), Fate::Corrupted { bits: fate.flipped }, false);
            }
            if fate.reordered {
                self.record(&d, Some(lid), Fate::Reordered, false);
            }
            self.queue.push(fate.arrival, Event::Arrive(d));
        }
    }

    /// Finds who receives a datagram for `dst` from `src` now: the node and its local address.
    fn resolve(
        &self,
        src: SocketAddrV4,
        dst: SocketAddrV4,
    ) -> Result<(NodeId, SocketAddrV4), DropReason> {
        let id = *self.addrs.get(&dst).ok_or(DropReason::Unreachable)?;
        let slot = &self.nodes[id.0];
        match &slot.nat {
            Some(nat) if nat.filtering && !nat.contacted.contains(&src) => {
                Err(DropReason::NatFiltered)
            }
            _ => Ok((id, slot.addr)),
        }
    }

    fn deliver(&mut self, dg: InFlight) {
        let (to, local) = match self.resolve(dg.src, dg.dst) {
            Ok(r) => r,
            Err(reason) => return self.drop_datagram(&dg, None, reason),
        };
        self.stats.delivered += 1;
        if let Some(from) = dg.from_node {
            let pair = self.pairs.entry((from, to)).or_default();
            pair.datagrams += 1;
            pair.bytes += dg.data.len() as u64;
        }
        self.record(&dg, None, Fate::Delivered { node: to }, true);
        let now = self.now();
        let slot = &mut self.nodes[to.0];
        slot.stats.received += 1;
        slot.stats.received_bytes += dg.data.len() as u64;
        slot.node.handle(now, dg.src, local, dg.data);
        slot.dirty = true;
    }

    /// The virtual time of the next event, if any (after flushing touched nodes).
    pub fn next_event_time(&mut self) -> Result<Option<Instant>, SimError> {
        self.flush()?;
        Ok(self.queue.peek_time().map(|t| self.start + t))
    }

    /// Processes exactly one event. Returns `Ok(false)` when nothing is left to do.
    pub fn step(&mut self) -> Result<bool, SimError> {
        self.flush()?;
        let Some((time, event)) = self.queue.pop() else {
            return Ok(false);
        };
        self.steps += 1;
        if self.steps > self.step_budget {
            return Err(SimError::BudgetExhausted {
                budget: self.step_budget,
                at: self.now,
            });
        }
        if time > self.now {
            self.now = time;
            self.same_instant_steps = 0;
        }
        self.same_instant_steps += 1;
        if self.same_instant_steps > self.same_instant_limit {
            return Err(SimError::Livelock {
                at: self.now,
                what: format!("over {} events at one instant", self.same_instant_limit),
            });
        }
        match event {
            Event::Arrive(dg) => self.forward(dg),
            Event::Timer { node, generation } => {
                let slot = &mut self.nodes[node.0];
                if slot.timer_gen == generation {
                    slot.timer = None;
                    slot.stats.timeouts += 1;
                    let now = self.start + self.now;
                    slot.node.handle_timeout(now);
                    slot.dirty = true;
                }
            }
        }
        self.flush()?;
        Ok(true)
    }

    /// Runs every event up to and including `deadline`, then sets the clock to `deadline`.
    pub fn run_until(&mut self, deadline: Instant) -> Result<(), SimError> {
        let deadline = deadline.saturating_duration_since(self.start);
        self.run_until_offset(deadline, |_| false).map(|_| ())
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) -> Result<(), SimError> {
        self.run_until(self.now() + duration)
    }

    /// Runs until `done(self)` holds (checked before each event) or until `deadline`.
    /// Returns whether `done` held; the clock stays at the moment it became true.
    pub fn run_until_with(
        &mut self,
        deadline: Instant,
        done: impl FnMut(&Sim) -> bool,
    ) -> Result<bool, SimError> {
        let deadline = deadline.saturating_duration_since(self.start);
        self.run_until_offset(deadline, done)
    }

    fn run_until_offset(
        &mut self,
        deadline: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Result<bool, SimError> {
        loop {
            self.flush()?;
            if done(self) {
                return Ok(true);
            }
            match self.queue.peek_time() {
                Some(t) if t <= deadline => {
                    self.step()?;
                }
                _ => break,
            }
        }
        self.now = self.now.max(deadline);
        Ok(false)
    }

    /// Runs until no datagram is in flight and no timer is pending. A node with a periodic
    /// timer never gets there; the step budget then ends the run with an error.
    pub fn run_until_idle(&mut self) -> Result<(), SimError> {
        while self.step()? {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::LossModel;
    use crate::nodes::{Echo, Pacer, Sink};
    use crate::scenarios::v4;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A lossy, jittery, duplicating, corrupting echo exchange; returns the full trace.
    fn impaired_trace(seed: u64) -> Vec<TraceEvent> {
        let mut sim = Sim::new(seed);
        sim.enable_trace(true);
        let (a, b) = (v4(10, 0, 0, 1, 1), v4(10, 0, 0, 2, 2));
        let pacer = Pacer::new(sim.start(), sim.now(), b, 200, ms(2), sim.fork_rng())
            .sizes(20, 200)
            .jitter(ms(1));
        let client = sim.add_node(a, pacer);
        let server = sim.add_node(b, Echo::default());
        let cfg = LinkConfig::default()
            .jitter(ms(3))
            .bandwidth(1_000_000)
            .queue_limit(3000)
            .loss_model(LossModel::GilbertElliott {
                p_good_to_bad: 0.05,
                p_bad_to_good: 0.5,
                loss_good: 0.01,
                loss_bad: 0.8,
            })
            .duplicate(0.05)
            .reorder(0.1, ms(7))
            .corrupt(0.05, 4);
        sim.connect(client, server, cfg);
        sim.run_until_idle().unwrap();
        sim.trace().to_vec()
    }

    #[test]
    fn same_seed_identical_trace_different_seed_different() {
        let a = impaired_trace(11);
        assert!(a.len() > 400, "trace too short: {}", a.len());
        assert_eq!(a, impaired_trace(11));
        assert_ne!(a, impaired_trace(12));
    }

    #[test]
    fn corruption_flips_exactly_the_traced_bits() {
        for max_bits in [1u32, 3, 8] {
            let mut sim = Sim::new(u64::from(max_bits));
            sim.enable_trace(true);
            let (a, b) = (v4(10, 0, 0, 1, 1), v4(10, 0, 0, 2, 2));
            let src = sim.add_node(a, Sink::default());
            let dst = sim.add_node(b, Sink::default());
            let (ab, _) = sim.connect(src, dst, LinkConfig::default().corrupt(1.0, max_bits));
            let payloads: Vec<Vec<u8>> = (0..100u8)
                .map(|i| vec![i; 1 + usize::from(i % 16)])
                .collect();
            for p in &payloads {
                sim.node_dyn_mut(src); // mark as touched; the sink sends nothing itself
                let tx = Transmit {
                    destination: b,
                    contents: p.clone(),
                };
                sim.send(src, tx);
            }
            sim.run_until_idle().unwrap();
            let got = &sim.node::<Sink>(dst).received;
            assert_eq!(got.len(), payloads.len());
            let flips: Vec<&Vec<usize>> = sim
                .trace()
                .iter()
                .filter_map(|e| match &e.fate {
                    Fate::Corrupted { bits } => Some(bits),
                    _ => None,
                })
                .collect();
            assert_eq!(flips.len(), payloads.len());
            assert_eq!(sim.link_stats(ab).corrupted, payloads.len() as u64);
            for ((sent, recv), bits) in payloads.iter().zip(got).zip(flips) {
                let diff: u32 = sent
                    .iter()
                    .zip(&recv.data)
                    .map(|(x, y)| (x ^ y).count_ones())
                    .sum();
                assert_eq!(diff as usize, bits.len());
                assert!((1..=max_bits as usize).contains(&bits.len()));
                let mut fixed = recv.data.clone();
                flip_bits(&mut fixed, bits);
                assert_eq!(&fixed, sent);
            }
        }
    }

    #[test]
    fn serialisation_and_latency_timing_is_exact() {
        let mut sim = Sim::new(0);
        let (a, b) = (v4(10, 0, 0, 1, 1), v4(10, 0, 0, 2, 2));
        let src = sim.add_node(a, Sink::default());
        let dst = sim.add_node(b, Sink::default());
        // 8 Mbit/s: 972 + 28 bytes take exactly 1 ms; two back to back arrive 1 ms apart.
        sim.connect(
            src,
            dst,
            LinkConfig::default().latency(ms(5)).bandwidth(8_000_000),
        );
        sim.send(
            src,
            Transmit {
                destination: b,
                contents: vec![0; 972],
            },
        );
        sim.send(
            src,
            Transmit {
                destination: b,
                contents: vec![1; 972],
            },
        );
        sim.run_until_idle().unwrap();
        let times: Vec<Duration> = sim
            .node::<Sink>(dst)
            .received
            .iter()
            .map(|r| r.time - sim.start())
            .collect();
        assert_eq!(times, [ms(6), ms(7)]);
        assert_eq!(sim.pair_stats(src, dst).bytes, 2 * 972);
        assert_eq!(sim.node_stats(dst).received, 2);
    }

    #[test]
    fn shared_bottleneck_serialises_both_flows() {
        let mut sim = Sim::new(0);
        let s1 = sim.add_node(v4(10, 0, 0, 1, 1), Sink::default());
        let s2 = sim.add_node(v4(10, 0, 0, 2, 1), Sink::default());
        let d1 = sim.add_node(v4(10, 0, 1, 1, 1), Sink::default());
        let d2 = sim.add_node(v4(10, 0, 1, 2, 1), Sink::default());
        let bn = sim.add_link(
            LinkConfig::default()
                .latency(ms(1))
                .bandwidth(8_000_000)
                .overhead(0),
        );
        sim.set_path(s1, d1, &[bn]);
        sim.set_path(s2, d2, &[bn]);
        sim.send(
            s1,
            Transmit {
                destination: sim.addr(d1),
                contents: vec![0; 1000],
            },
        );
        sim.send(
            s2,
            Transmit {
                destination: sim.addr(d2),
                contents: vec![0; 1000],
            },
        );
        sim.run_until_idle().unwrap();
        assert_eq!(sim.node::<Sink>(d1).received[0].time - sim.start(), ms(2));
        assert_eq!(sim.node::<Sink>(d2).received[0].time - sim.start(), ms(3));
        assert_eq!(sim.link_stats(bn).delivered, 2);
    }

    #[test]
    fn moved_address_stops_receiving() {
        let mut sim = Sim::new(0);
        sim.enable_trace(false);
        let (a, b, b2) = (v4(10, 0, 0, 1, 1), v4(10, 0, 0, 2, 2), v4(10, 0, 0, 3, 3));
        let src = sim.add_node(a, Sink::default());
        let dst = sim.add_node(b, Sink::default());
        sim.send(
            src,
            Transmit {
                destination: b,
                contents: vec![1],
            },
        );
        sim.set_addr(dst, b2); // the first datagram is in flight to the old address
        sim.send(
            src,
            Transmit {
                destination: b,
                contents: vec![2],
            },
        );
        sim.send(
            src,
            Transmit {
                destination: b2,
                contents: vec![3],
            },
        );
        sim.run_until_idle().unwrap();
        let got: Vec<_> = sim
            .node::<Sink>(dst)
            .received
            .iter()
            .map(|r| (r.data.clone(), r.local))
            .collect();
        assert_eq!(got, [(vec![3], b2)]);
        assert_eq!(sim.stats().dropped(DropReason::Unreachable), 1);
        assert_eq!(sim.stats().dropped(DropReason::NoRoute), 1);
    }

    /// A node whose timer is always due: a livelocked protocol.
    struct Spinner(Instant);
    impl Node for Spinner {
        fn handle(&mut self, _: Instant, _: SocketAddrV4, _: SocketAddrV4, _: Vec<u8>) {}
        fn poll_transmit(&mut self, _: Instant) -> Option<Transmit> {
            None
        }
        fn poll_timeout(&mut self) -> Option<Instant> {
            Some(self.0)
        }
    }

    /// A node that fires a timer every millisecond forever.
    struct Ticker(Instant);
    impl Node for Ticker {
        fn handle(&mut self, _: Instant, _: SocketAddrV4, _: SocketAddrV4, _: Vec<u8>) {}
        fn poll_transmit(&mut self, _: Instant) -> Option<Transmit> {
            None
        }
        fn poll_timeout(&mut self) -> Option<Instant> {
            Some(self.0)
        }
        fn handle_timeout(&mut self, now: Instant) {
            self.0 = now + ms(1);
        }
    }

    #[test]
    fn livelock_and_budget_end_runs() {
        let mut sim = Sim::new(0);
        sim.set_livelock_limits(1000, 1000);
        let start = sim.start();
        sim.add_node(v4(10, 0, 0, 1, 1), Spinner(start));
        assert!(matches!(
            sim.run_for(ms(10)),
            Err(SimError::Livelock { .. })
        ));

        let mut sim = Sim::new(0);
        let start = sim.now();
        let t = sim.add_node(v4(10, 0, 0, 1, 1), Ticker(start));
        sim.run_for(ms(100)).unwrap();
        assert_eq!(sim.node_stats(t).timeouts, 101);
        assert_eq!(sim.elapsed(), ms(100));
        sim.set_step_budget(500);
        assert!(matches!(
            sim.run_until_idle(),
            Err(SimError::BudgetExhausted { budget: 500, .. })
        ));
    }

    #[test]
    fn restart_cancels_timers_and_keeps_address() {
        let mut sim = Sim::new(0);
        let start = sim.now();
        let t = sim.add_node(v4(10, 0, 0, 1, 1), Ticker(start));
        sim.run_for(ms(10)).unwrap();
        let old = sim.replace_node(t, Box::new(Sink::default()));
        assert!((old.as_ref() as &dyn Any).is::<Ticker>());
        sim.run_until_idle().unwrap();
        assert_eq!(sim.node_stats(t).timeouts, 11);
        sim.inject(v4(1, 2, 3, 4, 5), v4(10, 0, 0, 1, 1), b"hi".to_vec());
        sim.run_until_idle().unwrap();
        assert_eq!(sim.node::<Sink>(t).received[0].from, v4(1, 2, 3, 4, 5));
    }

    #[test]
    fn run_until_with_stops_when_condition_holds() {
        let mut sim = Sim::new(0);
        let (a, b) = (v4(10, 0, 0, 1, 1), v4(10, 0, 0, 2, 2));
        let pacer = Pacer::new(sim.start(), sim.now(), b, 100, ms(10), sim.fork_rng());
        let c = sim.add_node(a, pacer);
        sim.add_node(b, Echo::default());
        let deadline = sim.now() + Duration::from_secs(10);
        let done = sim
            .run_until_with(deadline, |s| s.node::<Pacer>(c).received.len() >= 5)
            .unwrap();
        assert!(done);
        // Default link: 10 ms each way, probes every 10 ms: the 5th echo arrives at 60 ms.
        assert_eq!(sim.elapsed(), ms(60));
    }
}
