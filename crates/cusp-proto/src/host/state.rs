//! One host: the streams to and from one peer, their scheduler and id tables,
//! packet assembly and payload dispatch (`spec/streams.md` §1.6, §1.7, §3).

use crate::hash::{HashMap, HashSet};
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddrV4;
use std::time::Instant;

use crate::channel::PacketId;
use crate::crypto::PublicKey;
use crate::stream::{
    InStream, InStreamState, InTicket, MIN_PULL_ROOM, OutStream, OutStreamConfig, OutStreamState,
    OutTicket, Scheduler, StreamIds, write_connect,
};
use crate::wire::segment::{Segment, Segments};

use super::config::HostConfig;
use super::flags::{Flag, Flags};
use super::streams::{HostId, Kind, List, Owner, Rec, Streams, WireIds};
use super::types::{HostEvent, HostStats, StreamHandle};

/// The application event queue, deduplicating the level-like events
/// (readable, writable, address change) so it stays bounded by the number of
/// streams and hosts.
#[derive(Debug, Default)]
pub(super) struct Events {
    queue: VecDeque<HostEvent>,
    queued: HashSet<HostEvent>,
}

impl Events {
    pub(super) fn push(&mut self, e: HostEvent) {
        let dedup = matches!(
            e,
            HostEvent::StreamReadable(_)
                | HostEvent::StreamWritable(_)
                | HostEvent::HostAddressChanged(_)
        );
        if dedup && !self.queued.insert(e) {
            return;
        }
        self.queue.push_back(e);
    }

    pub(super) fn pop(&mut self) -> Option<HostEvent> {
        let e = self.queue.pop_front()?;
        self.queued.remove(&e);
        if self.queue.is_empty() && self.queue.capacity() > Self::KEPT {
            // Drained after a burst (e.g. thousands of new streams): give most of the
            // room back, keeping enough queue that ordinary bursts never reallocate.
            self.queue.shrink_to(Self::KEPT);
            self.queued = HashSet::default();
        }
        Some(e)
    }

    /// Capacity kept when the queue drains.
    const KEPT: usize = 256;
}

/// What the host needs from the table while it works.
pub(super) struct Ctx<'a> {
    pub now: Instant,
    pub config: &'a HostConfig,
    pub events: &'a mut Events,
    pub streams: &'a mut Streams,
    pub advertised: &'a BTreeSet<u16>,
}

/// Byte counts a record contributes to the host counters (§4.12).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Acct {
    ooo: usize,
    unread: usize,
    inflight: usize,
    retransmit: usize,
}

/// What an out-stream last contributed to [`Acct`]. Both counts are bounded
/// by its send buffer (at most 2^30 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct OutAcct {
    inflight: u32,
    retransmit: u32,
}

impl OutAcct {
    fn of(s: &OutStream) -> Self {
        OutAcct {
            inflight: to_u32(s.inflight_bytes()),
            retransmit: to_u32(s.queued_bytes()),
        }
    }
}

impl From<OutAcct> for Acct {
    fn from(a: OutAcct) -> Acct {
        Acct {
            inflight: a.inflight as usize,
            retransmit: a.retransmit as usize,
            ..Acct::default()
        }
    }
}

/// What an in-stream last contributed to [`Acct`]. Both counts are bounded
/// by its receive window plus slack (below 2^32 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct InAcct {
    ooo: u32,
    unread: u32,
}

impl InAcct {
    fn of(s: &InStream) -> Self {
        InAcct {
            ooo: to_u32(s.out_of_order_bytes()),
            unread: to_u32(s.ready_bytes()),
        }
    }
}

impl From<InAcct> for Acct {
    fn from(a: InAcct) -> Acct {
        Acct {
            ooo: a.ooo as usize,
            unread: a.unread as usize,
            ..Acct::default()
        }
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("stream buffers hold less than 4 GiB")
}

/// An out-stream record (§3.1; its service is in the [`Rec`]).
#[derive(Debug)]
pub(super) struct OutRec {
    pub stream: OutStream,
    /// Wire id, assigned at first pull (§1.8); [`NO_ID`] before. While a hosted
    /// stream has none it holds a `StreamIds` reservation.
    wire_id: u16,
    /// Connect, AppShutdown, AppReset, Blocked, Reported, Boosted, Live, Held.
    pub flags: Flags,
    /// Wake a blocked writer only once this much send buffer is free (clamped
    /// to the send buffer; 0: as soon as any byte is free).
    pub low_water: u32,
    acct: OutAcct,
}

/// The wire id no stream ever gets (§1.8: ids are 0..=0xFFFE).
const NO_ID: u16 = 0xFFFF;

impl OutRec {
    /// The wire id, once assigned.
    pub(super) fn id(&self) -> Option<u16> {
        (self.wire_id != NO_ID).then_some(self.wire_id)
    }

    pub(super) fn new(stream: OutStream) -> Self {
        OutRec {
            stream,
            wire_id: NO_ID,
            flags: Flags::of(Flag::Connect),
            low_water: 0,
            acct: OutAcct::default(),
        }
    }
}

/// An in-stream record (§3.1; its service is in the [`Rec`]).
#[derive(Debug)]
pub(super) struct InRec {
    pub stream: InStream,
    pub id: u16,
    /// The application was told about the stream (listener or advertisement).
    /// A `bool`, not a flag bit: its niche holds the tag of [`Kind`], so
    /// `Kind` is no larger than this record.
    visible: bool,
    /// AppReset, Reported, Live, Held.
    pub flags: Flags,
    acct: InAcct,
}

impl InRec {
    pub(super) fn new(stream: InStream, id: u16, visible: bool) -> Self {
        InRec {
            stream,
            id,
            visible,
            flags: Flags::default(),
            acct: InAcct::default(),
        }
    }
}

/// What one pulled segment needs back when its packet resolves.
#[derive(Debug)]
enum Ticket {
    Out(OutTicket),
    In(InTicket),
}

/// The segments of one packet in flight.
type Tickets = Vec<(StreamHandle, Ticket)>;

/// Emptied ticket lists a host keeps for its next packets while others are
/// in flight (so a busy host allocates none per packet; an idle one keeps none).
const SPARE_TICKETS: usize = 64;

/// One remote peer (§3.1).
#[derive(Debug)]
pub(super) struct Host {
    /// Its slot in the table (the owner recorded in its streams).
    pub id: HostId,
    pub key: PublicKey,
    pub remote: SocketAddrV4,
    pub local: SocketAddrV4,
    pub bound: bool,
    sched: Scheduler<StreamHandle>,
    ids: StreamIds,
    /// Every stream of the host (records in the table's [`Streams`]).
    streams: List,
    outs: usize,
    ins: usize,
    by_id: WireIds,
    pub listeners: BTreeSet<u16>,
    pub listen_counter: u16,
    packets: HashMap<PacketId, Tickets>,
    /// Emptied ticket lists for reuse (at most [`SPARE_TICKETS`]).
    spare: Vec<Tickets>,
    /// Out-streams cut short by the host-wide send limit.
    host_blocked: BTreeSet<StreamHandle>,
    pub stats: HostStats,
    pub live_streams: usize,
    /// Idle-channel teardown (§3.7).
    pub disconnect_at: Option<Instant>,
    /// While idle and bound: until then the channel is told the host is busy
    /// ([`HostConfig::idle_grace`](super::HostConfig::idle_grace)).
    pub grace_until: Option<Instant>,
    /// Resume promise / recent use keeps the host until then (§3.8, §3.10).
    pub keep_until: Instant,
    /// Last application or network activity (eviction order).
    pub last_active: Instant,
}

impl Host {
    pub(super) fn new(
        id: HostId,
        key: PublicKey,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        now: Instant,
        config: &HostConfig,
    ) -> Self {
        Host {
            id,
            key,
            remote,
            local,
            bound: false,
            sched: Scheduler::default(),
            ids: StreamIds::new(),
            streams: List::default(),
            outs: 0,
            ins: 0,
            by_id: WireIds::default(),
            listeners: BTreeSet::new(),
            listen_counter: 0,
            packets: HashMap::default(),
            spare: Vec::new(),
            host_blocked: BTreeSet::new(),
            stats: HostStats {
                bytes_sent: 0,
                bytes_received: 0,
                last_send: now,
                last_receive: now,
                queued_out_of_order: 0,
                queued_unread: 0,
                queued_inflight: 0,
                queued_to_retransmit: 0,
            },
            live_streams: 0,
            disconnect_at: None,
            grace_until: None,
            keep_until: now + config.keep_alive,
            last_active: now,
        }
    }

    /// `isZombie`: no live streams (§3.1).
    pub(super) fn is_zombie(&self) -> bool {
        self.live_streams == 0
    }

    /// What the channel is told (`isZombie` for the finish flag and fast
    /// close): a zombie whose grace period is over.
    pub(super) fn announces_idle(&self, now: Instant) -> bool {
        self.is_zombie() && self.grace_until.is_none_or(|t| now >= t)
    }

    /// `effectivelyDead`: zombie and no per-host listeners (§3.1).
    pub(super) fn effectively_dead(&self) -> bool {
        self.is_zombie() && self.listeners.is_empty()
    }

    /// The priority announced to the channel (§3.2): `>= 0` or `-inf`.
    pub(super) fn announce(&self, now: Instant) -> f32 {
        self.sched.announce(now)
    }

    /// When a starving negative-priority record will be boosted.
    pub(super) fn next_boost(&self) -> Option<Instant> {
        self.sched.next_boost()
    }

    /// Bytes all out-streams hold unacknowledged.
    pub(super) fn out_buffered(&self) -> usize {
        self.stats.queued_inflight + self.stats.queued_to_retransmit
    }

    // spec: streams.md §3.7 check_zombie
    fn check_zombie(&mut self, ctx: &Ctx<'_>) {
        if !self.bound {
            return;
        }
        if !self.is_zombie() {
            self.disconnect_at = None;
            self.grace_until = None;
        } else if self.disconnect_at.is_none() {
            self.disconnect_at = Some(ctx.now + ctx.config.idle_linger);
            self.grace_until = Some(ctx.now + ctx.config.idle_grace).filter(|&t| t > ctx.now);
        }
    }

    pub(super) fn bind(&mut self, ctx: &mut Ctx<'_>) {
        self.bound = true;
        self.disconnect_at = None;
        self.grace_until = None;
        self.check_zombie(ctx);
    }

    // ---- stream creation ----------------------------------------------------

    /// Adopts the out-stream record `h` of the table (from `connect`, or a
    /// contact's parked stream): reserves its id and inserts it into the
    /// scheduler. `false` (record untouched) when the host's out-stream limit
    /// or id space is exhausted (§8 Q5).
    // spec: streams.md §3.6
    pub(super) fn add_out(&mut self, ctx: &mut Ctx<'_>, h: StreamHandle) -> bool {
        if self.outs >= ctx.config.out_stream_limit() {
            return false;
        }
        let Some(rec) = ctx.streams.get_mut(h) else {
            return false;
        };
        if !matches!(rec.kind, Kind::Out(_)) || self.ids.reserve().is_err() {
            return false;
        }
        rec.set_owner(Owner::Host(self.id));
        rec.sched = self.sched.insert(h, f32::NEG_INFINITY, ctx.now);
        ctx.streams.link(&mut self.streams, h);
        self.outs += 1;
        self.last_active = ctx.now;
        self.keep_until = self.keep_until.max(ctx.now + ctx.config.keep_alive);
        self.refresh_out(ctx, h);
        true
    }

    /// An accepted CONNECT creates in-stream `id` for `service` and
    /// dispatches it: per-host listener, else advertisement, else reset at
    /// once (§3.5). `false` when the in-stream limit is reached.
    // spec: streams.md §3.5
    fn create_in_stream(&mut self, ctx: &mut Ctx<'_>, id: u16, service: u16) -> bool {
        if self.ins >= ctx.config.max_in_streams {
            return false;
        }
        let visible = self.listeners.contains(&service) || ctx.advertised.contains(&service);
        let mut stream = InStream::new();
        if !visible {
            // spec: streams.md §3.5 2.3: nobody listens; whether READER_RESETS goes
            // back depends on the EOF of the following segment (§2.2.5).
            stream.reset();
        }
        let rec = InRec::new(stream, id, visible);
        let Some(h) = ctx
            .streams
            .insert(Owner::Host(self.id), service, Kind::In(rec))
        else {
            return false;
        };
        ctx.streams.link(&mut self.streams, h);
        self.ins += 1;
        self.by_id.insert_in(id, h);
        let entry = self.sched.insert(h, f32::NEG_INFINITY, ctx.now);
        if let Some(rec) = ctx.streams.get_mut(h) {
            rec.sched = entry;
        }
        if visible {
            ctx.events.push(HostEvent::IncomingStream {
                peer: self.key,
                service,
                handle: h,
            });
        }
        self.refresh_in(ctx, h, false);
        true
    }

    // ---- bookkeeping after every stream event -------------------------------

    fn apply_acct(&mut self, old: impl Into<Acct>, new: impl Into<Acct>) {
        let (old, new): (Acct, Acct) = (old.into(), new.into());
        let s = &mut self.stats;
        s.queued_out_of_order = s.queued_out_of_order - old.ooo + new.ooo;
        s.queued_unread = s.queued_unread - old.unread + new.unread;
        s.queued_inflight = s.queued_inflight - old.inflight + new.inflight;
        s.queued_to_retransmit = s.queued_to_retransmit - old.retransmit + new.retransmit;
    }

    fn apply_live(&mut self, old: bool, new: bool) {
        match (old, new) {
            (false, true) => self.live_streams += 1,
            (true, false) => self.live_streams -= 1,
            _ => {}
        }
    }

    /// Re-reads an out-stream after anything happened to it: scheduler
    /// priority, counters, liveness, application events, and retirement once
    /// complete (id released into the cooldown ring, §1.8, §2.1.7).
    pub(super) fn refresh_out(&mut self, ctx: &mut Ctx<'_>, h: StreamHandle) {
        let Some(Rec {
            sched,
            kind: Kind::Out(r),
            ..
        }) = ctx.streams.get_mut(h)
        else {
            return;
        };
        let s = &r.stream;
        let mut prio = s.scheduling_priority();
        if r.flags.has(Flag::Boosted) && prio > f32::NEG_INFINITY {
            // spec: streams.md §3.8 restarted streams go first
            prio = f32::MAX;
        }
        let acct = OutAcct::of(s);
        let live = s.state() != OutStreamState::Reset;
        let (old_acct, old_live) = (r.acct, r.flags.has(Flag::Live));
        r.acct = acct;
        r.flags.set(Flag::Live, live);
        if !r.flags.has(Flag::Reported)
            && let Some(delivered) = s.shutdown_result()
        {
            if r.flags.has(Flag::AppShutdown) && (delivered || !r.flags.has(Flag::AppReset)) {
                ctx.events.push(HostEvent::StreamFinished {
                    handle: h,
                    peer: Some(self.key),
                    delivered,
                });
            } else if !r.flags.has(Flag::AppReset) && !r.flags.has(Flag::AppShutdown) {
                ctx.events.push(HostEvent::StreamReset {
                    handle: h,
                    peer: Some(self.key),
                });
            }
            r.flags.set(Flag::Reported, true);
        } else if r.flags.has(Flag::Blocked) && {
            let space = s.writable_space(&ctx.config.out_stream);
            space > 0 && space >= r.low_water as usize
        } {
            r.flags.set(Flag::Blocked, false);
            ctx.events.push(HostEvent::StreamWritable(h));
        }
        let complete = s.is_complete();
        self.sched.set_priority(h, sched, prio, ctx.now);
        self.apply_acct(old_acct, acct);
        self.apply_live(old_live, live);
        if complete {
            self.retire_out(ctx, h);
        }
        self.check_zombie(ctx);
    }

    /// Takes stream `h` out of the scheduler, the host's list and the table.
    fn forget(&mut self, ctx: &mut Ctx<'_>, h: StreamHandle) -> Option<Kind> {
        let entry = ctx.streams.get(h)?.sched;
        self.sched.remove(h, &entry);
        ctx.streams.unlink(&mut self.streams, h);
        let kind = ctx.streams.remove(h)?.kind;
        match kind {
            Kind::Out(_) => self.outs -= 1,
            Kind::In(_) => self.ins -= 1,
        }
        Some(kind)
    }

    fn retire_out(&mut self, ctx: &mut Ctx<'_>, h: StreamHandle) {
        let Some(Kind::Out(r)) = self.forget(ctx, h) else {
            return;
        };
        self.host_blocked.remove(&h);
        if let Some(id) = r.id() {
            self.by_id.remove_out(id);
            self.ids.release(id);
        } else {
            self.ids.cancel_reservation();
        }
        self.apply_acct(r.acct, Acct::default());
        self.apply_live(r.flags.has(Flag::Live), false);
    }

    /// Re-reads an in-stream: priority, counters, id release once unassigned
    /// (§2.2.8), events (`notify`: new network input), retirement once complete.
    pub(super) fn refresh_in(&mut self, ctx: &mut Ctx<'_>, h: StreamHandle, notify: bool) {
        // Until the id is released (reader sequence bumped, §2.2.8) it maps to `h`.
        let Some(id) = ctx.streams.in_rec(h).map(|r| r.id) else {
            return;
        };
        let id_held = self.by_id.in_stream(ctx.streams, id) == Some(h);
        let Some(Rec {
            sched,
            kind: Kind::In(r),
            ..
        }) = ctx.streams.get_mut(h)
        else {
            return;
        };
        let s = &r.stream;
        let prio = s.scheduling_priority();
        let acct = InAcct::of(s);
        let state = s.state();
        let live = state != InStreamState::Reset;
        let (old_acct, old_live) = (r.acct, r.flags.has(Flag::Live));
        r.acct = acct;
        r.flags.set(Flag::Live, live);
        let mut release = None;
        if id_held && s.id_releasable() {
            release = Some(id);
        }
        if r.visible && !r.flags.has(Flag::Reported) && state == InStreamState::Reset {
            r.flags.set(Flag::Reported, true);
            if !r.flags.has(Flag::AppReset) {
                ctx.events.push(HostEvent::StreamReset {
                    handle: h,
                    peer: Some(self.key),
                });
            }
        } else if r.visible && notify && (s.ready_bytes() > 0 || s.all_received()) {
            ctx.events.push(HostEvent::StreamReadable(h));
        }
        let complete = s.is_complete();
        if let Some(id) = release {
            // spec: streams.md §1.5 reader sequence increments once per incarnation
            self.ids.bump_reader_seq(id);
            self.by_id.remove_in(id, h);
        }
        self.sched.set_priority(h, sched, prio, ctx.now);
        self.apply_acct(old_acct, acct);
        self.apply_live(old_live, live);
        if complete {
            self.forget(ctx, h);
            self.apply_acct(acct, Acct::default());
            self.apply_live(live, false);
        }
        self.check_zombie(ctx);
    }

    /// After acknowledgements freed host-wide send room: wake the streams
    /// the host limit had cut short.
    fn wake_host_blocked(&mut self, ctx: &mut Ctx<'_>) {
        if self.host_blocked.is_empty() || self.out_buffered() >= ctx.config.max_host_send_buffer {
            return;
        }
        for h in std::mem::take(&mut self.host_blocked) {
            if let Some(r) = ctx.streams.out_mut(h) {
                r.flags.set(Flag::Blocked, false);
                ctx.events.push(HostEvent::StreamWritable(h));
            }
        }
    }

    /// Application write through the host-wide send limit.
    pub(super) fn write(
        &mut self,
        ctx: &mut Ctx<'_>,
        h: StreamHandle,
        data: WriteData<'_>,
    ) -> Option<Result<usize, crate::stream::WriteError>> {
        let room = ctx
            .config
            .max_host_send_buffer
            .saturating_sub(self.out_buffered());
        let r = ctx.streams.out_mut(h)?;
        let res = data.write_to(&ctx.config.out_stream, &mut r.stream, room);
        if let Ok(n) = res
            && n < data.len()
        {
            r.flags.set(Flag::Blocked, true);
            if n == room {
                self.host_blocked.insert(h);
            }
        }
        self.last_active = ctx.now;
        self.refresh_out(ctx, h);
        Some(res)
    }

    // ---- packet assembly ----------------------------------------------------

    /// Fills `buf` with the host's next payload and remembers the tickets
    /// under `packet`.
    // spec: streams.md §1.7 pull_payload, §3.4
    pub(super) fn pull(&mut self, ctx: &mut Ctx<'_>, buf: &mut [u8], packet: PacketId) -> usize {
        if self.packets.len() >= ctx.config.max_outstanding_packets {
            return 0;
        }
        self.ids.tick();
        let budget = buf.len() & !3;
        let mut used = 0;
        let mut tickets = self.spare.pop().unwrap_or_default();
        let mut parked: Vec<StreamHandle> = Vec::new();
        while budget - used >= MIN_PULL_ROOM {
            let Some(h) = self.sched.top_ready(ctx.now) else {
                break;
            };
            // The scheduler holds exactly the table's records of this host.
            let Some(Rec {
                sched,
                kind,
                service,
                ..
            }) = ctx.streams.get_mut(h)
            else {
                break;
            };
            // Out of the order while served; the refresh below puts it back.
            self.sched.take(h, sched);
            let room = &mut buf[used..budget];
            let pulled = match kind {
                Kind::Out(r) => {
                    let id = match r.id() {
                        Some(id) => id,
                        None => match self.ids.allocate() {
                            Some(id) => {
                                r.wire_id = id;
                                self.by_id.insert_out(id, h);
                                id
                            }
                            None => {
                                // Every free id is cooling down: try again next packet.
                                parked.push(h);
                                continue;
                            }
                        },
                    };
                    let mut n = 0;
                    if r.flags.has(Flag::Connect) {
                        n = write_connect(room, self.ids.writer_seq(id), *service);
                    }
                    r.flags.set(Flag::Boosted, false);
                    r.stream
                        .pull(id, &mut room[n..])
                        .map(|(m, t)| (n + m, Ticket::Out(t)))
                }
                Kind::In(r) => r
                    .stream
                    .pull(r.id, self.ids.reader_seq(r.id), room)
                    .map(|(m, t)| (m, Ticket::In(t))),
            };
            match pulled {
                Some((n, t)) => {
                    used += n;
                    tickets.push((h, t));
                    self.refresh(ctx, h, false);
                }
                None => {
                    // Nothing after all (a CONNECT written above is simply not counted).
                    self.refresh(ctx, h, false);
                    break;
                }
            }
        }
        for h in parked {
            self.refresh(ctx, h, false);
        }
        if tickets.is_empty() {
            self.recycle(tickets);
        } else {
            self.packets.insert(packet, tickets);
        }
        self.stats.bytes_sent += used as u64;
        self.stats.last_send = ctx.now;
        used
    }

    fn refresh(&mut self, ctx: &mut Ctx<'_>, h: StreamHandle, notify: bool) {
        if ctx.streams.out(h).is_some() {
            self.refresh_out(ctx, h);
        } else {
            self.refresh_in(ctx, h, notify);
        }
    }

    /// Fans a packet's fate out to its tickets; an ack clears the CONNECT
    /// prefix of every out-stream in it (§1.7, §3.4).
    // spec: streams.md §1.7 ack(ok)
    pub(super) fn on_packet_outcome(&mut self, ctx: &mut Ctx<'_>, packet: PacketId, acked: bool) {
        let Some(mut tickets) = self.packets.remove(&packet) else {
            return;
        };
        for (h, t) in tickets.drain(..) {
            match t {
                Ticket::Out(t) => {
                    if let Some(r) = ctx.streams.out_mut(h) {
                        r.stream.on_packet_outcome(t, acked);
                        if acked {
                            r.flags.set(Flag::Connect, false);
                        }
                    }
                }
                Ticket::In(t) => {
                    if let Some(r) = ctx.streams.in_mut(h) {
                        r.stream.on_packet_outcome(&ctx.config.in_stream, t, acked);
                    }
                }
            }
            self.refresh(ctx, h, false);
        }
        self.recycle(tickets);
        self.wake_host_blocked(ctx);
    }

    /// Keeps an emptied ticket list for the next packet while others are in flight.
    fn recycle(&mut self, tickets: Tickets) {
        if self.packets.is_empty() {
            self.spare = Vec::new();
        } else if self.spare.len() < SPARE_TICKETS {
            self.spare.push(tickets);
        }
    }

    // ---- payload dispatch ---------------------------------------------------

    /// Applies an authenticated payload; `false` rejects it (not acknowledged).
    /// The whole payload is validated first (§1.6 note), so a malformed one
    /// changes nothing; a refusal for flow control (barrier, limits) may come
    /// after earlier segments were applied, which is idempotent.
    // spec: streams.md §1.6 recv_payload
    pub(super) fn recv(&mut self, ctx: &mut Ctx<'_>, payload: &[u8]) -> bool {
        if Segments::validate(payload).is_err() {
            return false;
        }
        let mut connect: Option<(u8, u16)> = None;
        for seg in Segments::new(payload) {
            let Ok(seg) = seg else {
                return false;
            };
            if let Some((seq, service)) = connect.take() {
                // spec: streams.md §1.6 case 7 (the pair is one unit)
                let id = match seg {
                    Segment::Data { id, .. } | Segment::WriterResets { id } => id,
                    _ => return false,
                };
                if seq != self.ids.reader_seq(id) {
                    continue; // stale CONNECT of an older incarnation: skip the pair
                }
                if self.by_id.in_stream(ctx.streams, id).is_none()
                    && !self.create_in_stream(ctx, id, service)
                {
                    return false;
                }
            }
            let ok = match seg {
                Segment::Connect { seq, service } => {
                    connect = Some((seq, service));
                    true
                }
                Segment::Data {
                    id,
                    offset,
                    eof,
                    bytes,
                    ..
                } => self.recv_data(ctx, id, offset, eof, bytes),
                Segment::WriterResets { id } => {
                    if let Some(h) = self.by_id.in_stream(ctx.streams, id) {
                        if let Some(r) = ctx.streams.in_mut(h) {
                            r.stream.on_writer_reset();
                        }
                        self.refresh_in(ctx, h, true);
                    }
                    true
                }
                Segment::ReaderResets { seq, id } => {
                    if let Some(h) = self.writer_record(ctx.streams, seq, id) {
                        if let Some(r) = ctx.streams.out_mut(h) {
                            r.stream.on_reader_reset();
                        }
                        self.refresh_out(ctx, h);
                    }
                    true
                }
                Segment::ReaderBarrier { seq, id, barrier } => {
                    if let Some(h) = self.writer_record(ctx.streams, seq, id) {
                        if let Some(r) = ctx.streams.out_mut(h) {
                            r.stream.on_barrier(barrier);
                        }
                        self.refresh_out(ctx, h);
                    }
                    true
                }
            };
            if !ok {
                return false;
            }
        }
        if connect.is_some() {
            return false; // unreachable after validation: CONNECT never ends a payload
        }
        self.stats.bytes_received += payload.len() as u64;
        self.stats.last_receive = ctx.now;
        self.last_active = ctx.now;
        true
    }

    /// The out-stream addressed by a reader segment, after the sequence check.
    // spec: streams.md §1.6 case 5, 6
    fn writer_record(&self, streams: &Streams, seq: u8, id: u16) -> Option<StreamHandle> {
        if seq != self.ids.writer_seq(id) {
            return None;
        }
        self.by_id.out(streams, id)
    }

    // spec: streams.md §1.6 case 0..3
    fn recv_data(&mut self, ctx: &mut Ctx<'_>, id: u16, off: u32, eof: bool, data: &[u8]) -> bool {
        let Some(h) = self.by_id.in_stream(ctx.streams, id) else {
            return true; // unknown or finished stream: skip silently
        };
        let Some(r) = ctx.streams.in_mut(h) else {
            return true;
        };
        // Host-wide receive limit: refuse data that would add to a full host.
        let edge = r.stream.bytes_delivered() + r.stream.ready_bytes() as u64;
        let ahead = off.wrapping_sub(edge as u32) as i32;
        let new_end = (ahead as i64) + data.len() as i64;
        let limit = ctx.config.max_host_recv_buffer;
        let full = if ahead > 0 {
            self.stats.queued_unread + self.stats.queued_out_of_order >= limit
        } else {
            new_end > 0 && self.stats.queued_unread >= limit
        };
        if full && r.stream.state() != InStreamState::Reset {
            return false;
        }
        if r.stream
            .on_data(&ctx.config.in_stream, off, data, eof)
            .is_err()
        {
            return false;
        }
        self.refresh_in(ctx, h, true);
        true
    }

    // ---- channel replacement and destruction ---------------------------------

    /// Resolves every outstanding packet as lost (the channel that carried
    /// them is gone for good).
    fn lose_all_packets(&mut self, ctx: &mut Ctx<'_>) {
        let ids: Vec<PacketId> = self.packets.keys().copied().collect();
        for p in ids {
            self.on_packet_outcome(ctx, p, false);
        }
    }

    /// `wipe_state`: the peer lost our state (§3.8). In-streams and
    /// acknowledged out-streams are reset without sending anything;
    /// never-acknowledged out-streams restart under new ids with CONNECT.
    // spec: streams.md §3.8 wipe_state
    pub(super) fn wipe(&mut self, ctx: &mut Ctx<'_>) {
        self.lose_all_packets(ctx);
        let (ins, outs) = self.split_handles(ctx.streams);
        for h in ins {
            if let Some(r) = ctx.streams.in_mut(h) {
                r.stream.on_writer_reset(); // reset, nothing is sent
            }
            self.refresh_in(ctx, h, false);
        }
        let mut kept = Vec::new();
        for h in outs {
            let Some(r) = ctx.streams.out_mut(h) else {
                continue;
            };
            if !r.flags.has(Flag::Connect) || r.stream.state() == OutStreamState::Reset {
                r.stream.on_reader_reset();
                self.refresh_out(ctx, h);
            } else {
                kept.push(h);
            }
        }
        // Every remaining record is a kept out-stream; rebuild the tables.
        self.ids.wipe();
        self.by_id.clear();
        self.listen_counter = 0;
        for &h in &kept {
            if let Some(rec) = ctx.streams.get(h) {
                self.sched.remove(h, &rec.sched);
            }
        }
        for h in kept {
            let Some(Rec {
                sched,
                kind: Kind::Out(r),
                ..
            }) = ctx.streams.get_mut(h)
            else {
                continue;
            };
            r.wire_id = NO_ID;
            // Cannot fail: the ids were just wiped and fewer than 65 535 streams are kept.
            let _ = self.ids.reserve();
            r.flags.set(Flag::Boosted, true);
            r.stream.restart_after_wipe();
            *sched = self.sched.insert(h, f32::NEG_INFINITY, ctx.now);
            self.refresh_out(ctx, h);
        }
    }

    /// Host destruction or eviction (§3.9): every stream is reset, the
    /// application gets its final events, nothing is sent.
    pub(super) fn destroy(&mut self, ctx: &mut Ctx<'_>) {
        self.lose_all_packets(ctx);
        let (ins, outs) = self.split_handles(ctx.streams);
        for h in ins {
            if let Some(r) = ctx.streams.in_mut(h) {
                r.stream.on_writer_reset();
            }
            self.refresh_in(ctx, h, false);
            // A reset in-stream that still owed READER_RESETS stays; drop it.
            if let Some(Kind::In(r)) = self.forget(ctx, h) {
                self.apply_acct(r.acct, Acct::default());
                self.apply_live(r.flags.has(Flag::Live), false);
            }
        }
        for h in outs {
            if let Some(r) = ctx.streams.out_mut(h) {
                r.stream.on_reader_reset();
            }
            self.refresh_out(ctx, h);
        }
    }

    /// Drops streams that are not live any more but still drain control
    /// segments (an unbound host being purged).
    pub(super) fn drop_draining(&mut self, ctx: &mut Ctx<'_>) {
        self.destroy(ctx);
    }

    /// The host's in-stream and out-stream handles, each sorted.
    fn split_handles(&self, streams: &Streams) -> (Vec<StreamHandle>, Vec<StreamHandle>) {
        streams
            .handles(&self.streams)
            .into_iter()
            .partition(|&h| streams.in_rec(h).is_some())
    }

    /// Live (not reset) in-streams, sorted.
    pub(super) fn in_handles(&self, streams: &Streams) -> Vec<StreamHandle> {
        let mut v: Vec<_> = streams
            .iter(&self.streams)
            .filter(|r| matches!(&r.kind, Kind::In(r) if r.flags.has(Flag::Live)))
            .map(|r| r.handle)
            .collect();
        v.sort_unstable();
        v
    }

    /// Live (not reset) out-streams, sorted.
    pub(super) fn out_handles(&self, streams: &Streams) -> Vec<StreamHandle> {
        let mut v: Vec<_> = streams
            .iter(&self.streams)
            .filter(|r| matches!(&r.kind, Kind::Out(r) if r.flags.has(Flag::Live)))
            .map(|r| r.handle)
            .collect();
        v.sort_unstable();
        v
    }
}

/// Bytes handed to a write: borrowed (copied) or shared.
#[derive(Clone, Copy, Debug)]
pub(super) enum WriteData<'a> {
    Slice(&'a [u8]),
    Bytes(&'a bytes::Bytes),
}

impl WriteData<'_> {
    fn len(&self) -> usize {
        match self {
            WriteData::Slice(s) => s.len(),
            WriteData::Bytes(b) => b.len(),
        }
    }

    /// Writes at most `room` bytes into `s`.
    pub(super) fn write_to(
        &self,
        config: &OutStreamConfig,
        s: &mut OutStream,
        room: usize,
    ) -> Result<usize, crate::stream::WriteError> {
        match *self {
            WriteData::Slice(d) => s.write(config, &d[..d.len().min(room)]),
            WriteData::Bytes(b) => s.write_bytes(config, &b.slice(..b.len().min(room))),
        }
    }
}
