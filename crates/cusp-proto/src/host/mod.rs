//! The host layer: hosts by public key, their streams and the services they
//! can be reached on (`spec/streams.md` §3, §4.2-§4.5).
//!
//! [`HostTable`] implements [`HostLayer`] for the endpoint (payload assembly
//! and dispatch, channel binding, resume and wipe, idle teardown) and offers
//! the application a quinn-proto style API: streams are named by
//! [`StreamHandle`]s, operations are methods on the table, and everything the
//! application must react to comes out of [`HostTable::poll_event`]. Nothing
//! stores callbacks or borrows across calls.
//!
//! # Streams before the channel exists (contacts)
//!
//! A host is known by key only after a channel to it established, so
//! [`HostTable::contact`] parks a new out-stream on a *pending contact* for
//! the address and asks the endpoint for a channel
//! ([`ChannelRequest::Connect`]). The application may write to, shut down or
//! reset the parked stream at once (zero round trips, §3.6). When a channel
//! to that address establishes (whoever started it), the parked streams move
//! to the host of the key that answered and [`HostEvent::Contacted`] says
//! who; when the endpoint reports the negotiation failed
//! ([`HostLayer::on_connect_failed`]) or `contact_timeout` passes, they are
//! reset and [`HostEvent::ContactFailed`] is queued.
//!
//! # Decisions where the reference is unclear
//!
//! * §8 Q6: [`HostTable::connect`] on a host without a bound channel always
//!   asks for a channel to its last address, also when the host has live
//!   streams (the reference only does so for zombie hosts, so such a host
//!   would wait forever after a failed renegotiation). The request is
//!   idempotent at the endpoint ("if none exists").
//! * An out-stream reset before its first pull is dropped silently instead of
//!   sending CONNECT + WRITER_RESETS (allowed by §3.6).
//! * A restarted stream after a wipe with nothing queued is not boosted and
//!   sends no CONNECT + zero-length DATA (§3.8 reference detail): it waits for
//!   data like a new stream.
//! * Hosts are dropped from the table when unbound, effectively dead and not
//!   poked for `keep_alive` (checked every `purge_period`); the application
//!   holds no references that could keep them, so it must use `contact`
//!   afterwards (§3.10).

// spec: streams.md §3, §4.2-§4.5

mod config;
mod flags;
mod hosts;
mod state;
mod streams;
#[cfg(test)]
mod tests;
mod types;

use crate::hash::HashMap;
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use config::{HostConfig, IDLE_GRACE, IDLE_LINGER, PURGE_PERIOD};
pub use types::{
    ConnectError, ContactError, HostEvent, HostInfo, HostStats, InStreamInfo, OutStreamInfo,
    ServiceError, SetPriorityError, ShutdownError, StreamHandle, UnknownStream, WriteError,
};

use crate::channel::{EstablishedInfo, PacketId};
use crate::crypto::PublicKey;
use crate::endpoint::host_layer::{ChannelRequest, HostLayer};
use crate::stream::{OutStream, ReadResult};
use flags::{Flag, Flags};
use hosts::Hosts;
use state::{Ctx, Events, Host, OutRec, WriteData};
use streams::{Kind, Owner, Streams};

/// First number of the dynamic advertise range (§4.3).
pub const DYNAMIC_SERVICE_BASE: u16 = 0x4000;
/// First number of the per-host listen range (§4.3).
pub const LISTEN_SERVICE_BASE: u16 = 0x8000;

/// Streams parked until a channel to `addr` establishes (their records are
/// in the table, owned by [`Owner::Pending`]).
#[derive(Debug)]
struct PendingContact {
    streams: Vec<StreamHandle>,
    deadline: Instant,
}

/// Every host of an endpoint, the endpoint's advertised services and the
/// contacts waiting for a channel.
#[derive(Debug)]
pub struct HostTable {
    config: HostConfig,
    hosts: Hosts,
    pending: HashMap<SocketAddrV4, PendingContact>,
    /// Every stream record, in or out, hosted or parked.
    streams: Streams,
    advertised: BTreeSet<u16>,
    dynamic_counter: u16,
    events: Events,
    requests: VecDeque<ChannelRequest>,
    next_packet: PacketId,
    now: Instant,
    next_purge: Instant,
}

/// Builds a [`Ctx`] from disjoint fields of the table (so a host can be
/// borrowed mutably at the same time).
macro_rules! ctx {
    ($t:expr, $now:expr) => {
        Ctx {
            now: $now,
            config: &$t.config,
            events: &mut $t.events,
            streams: &mut $t.streams,
            advertised: &$t.advertised,
        }
    };
}

impl HostTable {
    /// An empty table; `now` starts the purge timer.
    pub fn new(config: HostConfig, now: Instant) -> Self {
        let next_purge = now + config.purge_period;
        HostTable {
            config,
            hosts: Hosts::default(),
            pending: HashMap::default(),
            streams: Streams::default(),
            advertised: BTreeSet::new(),
            dynamic_counter: 0,
            events: Events::default(),
            requests: VecDeque::new(),
            next_packet: 0,
            now,
            next_purge,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    fn tick(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn request(&mut self, r: ChannelRequest) {
        // Deduplicated, so the queue is bounded by hosts plus contacts.
        if !self.requests.contains(&r) {
            self.requests.push_back(r);
        }
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<HostEvent> {
        self.events.pop()
    }

    // ---- services (§4.3) ---------------------------------------------------

    /// Advertises a service to every host: `Some(s)` for a well-known number
    /// in 1..=0x3FFF, `None` for the next free dynamic number in
    /// 0x4000..=0x7FFF (14-bit counter, first 0x4001, wrapping, skipping
    /// numbers in use). Incoming streams arrive as [`HostEvent::IncomingStream`].
    // spec: streams.md §4.3
    pub fn advertise(&mut self, service: Option<u16>) -> Result<u16, ServiceError> {
        let s = match service {
            Some(0) => return Err(ServiceError::Reserved),
            Some(s) if s >= DYNAMIC_SERVICE_BASE => return Err(ServiceError::OutOfRange),
            Some(s) if self.advertised.contains(&s) => return Err(ServiceError::InUse),
            Some(s) => s,
            None => {
                let advertised = &self.advertised;
                next_free(
                    &mut self.dynamic_counter,
                    0x3FFF,
                    DYNAMIC_SERVICE_BASE,
                    |s| advertised.contains(&s),
                )
                .ok_or(ServiceError::Exhausted)?
            }
        };
        self.advertised.insert(s);
        Ok(s)
    }

    /// Ends every idle grace period now and starts none later
    /// ([`HostConfig::idle_grace`] becomes zero): for closing, so that idle
    /// channels close at once.
    pub fn end_idle_grace(&mut self) {
        self.config.idle_grace = Duration::ZERO;
        for h in self.hosts.values_mut() {
            h.grace_until = None;
        }
    }

    /// Stops advertising `service` (no-op if unknown). Streams already
    /// accepted are not affected.
    pub fn unadvertise(&mut self, service: u16) {
        self.advertised.remove(&service);
    }

    /// Whether `service` is advertised.
    pub fn is_advertised(&self, service: u16) -> bool {
        self.advertised.contains(&service)
    }

    /// Opens a per-host service number in 0x8000..=0xFFFF (15-bit counter,
    /// first 0x8001, wrapping, skipping numbers in use, restarting after a
    /// wipe) that accepts streams from `peer` only (`Host.listen`).
    // spec: streams.md §4.3
    pub fn listen(&mut self, peer: &PublicKey) -> Result<u16, ServiceError> {
        let max = self.config.max_listeners;
        let h = self.hosts.get_mut(peer).ok_or(ServiceError::UnknownHost)?;
        if h.listeners.len() >= max {
            return Err(ServiceError::Exhausted);
        }
        let listeners = &h.listeners;
        let s = next_free(&mut h.listen_counter, 0x7FFF, LISTEN_SERVICE_BASE, |s| {
            listeners.contains(&s)
        })
        .ok_or(ServiceError::Exhausted)?;
        h.listeners.insert(s);
        Ok(s)
    }

    /// Closes a per-host service number (no-op if unknown).
    pub fn unlisten(&mut self, peer: &PublicKey, service: u16) {
        if let Some(h) = self.hosts.get_mut(peer) {
            h.listeners.remove(&service);
        }
    }

    // ---- opening streams (§3.6, §4.4) ----------------------------------------

    /// Opens an out-stream to `service` of a known host (`Host.connect`).
    /// Nothing is sent before the stream has data, a shutdown or a reset. If
    /// no channel is bound, a [`ChannelRequest::Connect`] to the host's last
    /// address is queued (see the module doc on §8 Q6).
    // spec: streams.md §3.6
    pub fn connect(
        &mut self,
        now: Instant,
        peer: &PublicKey,
        service: u16,
    ) -> Result<StreamHandle, ConnectError> {
        self.tick(now);
        if service == 0 {
            return Err(ConnectError::ReservedService);
        }
        let host = self.hosts.get_mut(peer).ok_or(ConnectError::UnknownHost)?;
        let rec = OutRec::new(OutStream::new());
        let h = self
            .streams
            .insert(Owner::Host(host.id), service, Kind::Out(rec))
            .ok_or(ConnectError::TooManyStreams)?;
        let mut ctx = ctx!(self, self.now);
        if !host.add_out(&mut ctx, h) {
            self.streams.remove(h);
            return Err(ConnectError::TooManyStreams);
        }
        if !host.bound {
            let addr = host.remote;
            self.request(ChannelRequest::Connect(addr));
        }
        Ok(h)
    }

    /// Opens an out-stream to `service` at `addr` (`EndPoint.contact`). If a
    /// channel to `addr` is established, this is [`HostTable::connect`] on its
    /// host; otherwise the stream is parked until one establishes and a
    /// [`ChannelRequest::Connect`] is queued (module doc).
    // spec: streams.md §4.4
    pub fn contact(
        &mut self,
        now: Instant,
        addr: SocketAddrV4,
        service: u16,
    ) -> Result<StreamHandle, ContactError> {
        self.tick(now);
        if service == 0 {
            return Err(ContactError::ReservedService);
        }
        let bound = self
            .hosts
            .values()
            .find(|h| h.bound && h.remote == addr)
            .map(|h| h.key);
        if let Some(peer) = bound {
            return self.connect(now, &peer, service).map_err(|e| match e {
                ConnectError::ReservedService => ContactError::ReservedService,
                _ => ContactError::TooManyStreams,
            });
        }
        if !self.pending.contains_key(&addr)
            && self.pending.len() >= self.config.max_pending_contacts
        {
            return Err(ContactError::TooManyPending);
        }
        let limit = self.config.out_stream_limit();
        let deadline = self.now + self.config.contact_timeout;
        let p = self.pending.entry(addr).or_insert_with(|| PendingContact {
            streams: Vec::new(),
            deadline,
        });
        if p.streams.len() >= limit {
            return Err(ContactError::TooManyPending);
        }
        let rec = OutRec::new(OutStream::new());
        let h = self
            .streams
            .insert(Owner::Pending, service, Kind::Out(rec))
            .ok_or(ContactError::TooManyPending)?;
        p.streams.push(h);
        self.request(ChannelRequest::Connect(addr));
        Ok(h)
    }

    /// Moves the streams parked for `addr` to the host `peer` (just established).
    fn settle_contact(&mut self, now: Instant, addr: SocketAddrV4, peer: PublicKey) {
        let Some(p) = self.pending.remove(&addr) else {
            return;
        };
        let Some(host) = self.hosts.get_mut(&peer) else {
            return;
        };
        let mut ctx = ctx!(self, now);
        for h in p.streams {
            if !host.add_out(&mut ctx, h)
                && let Some(rec) = ctx.streams.remove(h)
                && matches!(rec.kind, Kind::Out(r) if wants_final_event(r.flags))
            {
                ctx.events.push(HostEvent::StreamReset {
                    handle: h,
                    peer: Some(peer),
                });
            }
        }
        self.events.push(HostEvent::Contacted { addr, peer });
    }

    /// Fails every stream parked for `addr`.
    fn fail_contact(&mut self, addr: SocketAddrV4) {
        let Some(p) = self.pending.remove(&addr) else {
            return;
        };
        for h in p.streams {
            let Some(Kind::Out(rec)) = self.streams.remove(h).map(|r| r.kind) else {
                continue;
            };
            if wants_final_event(rec.flags) {
                self.events.push(if rec.flags.has(Flag::AppShutdown) {
                    HostEvent::StreamFinished {
                        handle: h,
                        peer: None,
                        delivered: false,
                    }
                } else {
                    HostEvent::StreamReset {
                        handle: h,
                        peer: None,
                    }
                });
            }
        }
        self.events.push(HostEvent::ContactFailed(addr));
    }

    // ---- stream operations ---------------------------------------------------

    fn owner(&self, h: StreamHandle) -> Option<Owner> {
        Some(self.streams.get(h)?.owner())
    }

    /// Runs `f` on an out-stream record and re-reads it afterwards.
    fn with_out<R>(&mut self, h: StreamHandle, f: impl FnOnce(&mut OutRec) -> R) -> Option<R> {
        let owner = self.owner(h)?;
        let rec = self.streams.out_mut(h)?;
        match owner {
            Owner::Host(id) => {
                let r = f(rec);
                let host = self.hosts.by_id_mut(id)?;
                let mut ctx = ctx!(self, self.now);
                host.last_active = self.now;
                host.refresh_out(&mut ctx, h);
                Some(r)
            }
            Owner::Pending => {
                let r = f(rec);
                // A parked stream that completed (reset) leaves its contact
                // (rare: found by search, so records need not keep the address).
                if rec.stream.is_complete() {
                    self.streams.remove(h);
                    if let Some(p) = self.pending.values_mut().find(|p| p.streams.contains(&h)) {
                        p.streams.retain(|&k| k != h);
                    }
                }
                Some(r)
            }
        }
    }

    fn write_data(
        &mut self,
        now: Instant,
        h: StreamHandle,
        data: WriteData<'_>,
    ) -> Result<usize, WriteError> {
        self.tick(now);
        let res = match self.owner(h).ok_or(WriteError::UnknownStream)? {
            Owner::Host(id) => {
                let host = self.hosts.by_id_mut(id).ok_or(WriteError::UnknownStream)?;
                let mut ctx = ctx!(self, self.now);
                host.write(&mut ctx, h, data)
                    .ok_or(WriteError::UnknownStream)?
            }
            Owner::Pending => {
                let r = self.streams.out_mut(h).ok_or(WriteError::UnknownStream)?;
                let res = data.write_to(&self.config.out_stream, &mut r.stream, usize::MAX);
                if matches!(res, Ok(n) if n < data_len(&data)) {
                    r.flags.set(Flag::Blocked, true);
                }
                res
            }
        };
        res.map_err(|e| match e {
            crate::stream::WriteError::Reset => WriteError::Reset,
            crate::stream::WriteError::Finished => WriteError::Finished,
        })
    }

    /// Copies as much of `data` as the stream's and the host's send buffers
    /// allow and returns the count; when it is short, [`HostEvent::StreamWritable`]
    /// follows once room returns.
    // spec: streams.md §2.1.2 write
    pub fn write(
        &mut self,
        now: Instant,
        h: StreamHandle,
        data: &[u8],
    ) -> Result<usize, WriteError> {
        self.write_data(now, h, WriteData::Slice(data))
    }

    /// Zero-copy [`HostTable::write`]: takes a prefix of `data`.
    pub fn write_bytes(
        &mut self,
        now: Instant,
        h: StreamHandle,
        data: &Bytes,
    ) -> Result<usize, WriteError> {
        self.write_data(now, h, WriteData::Bytes(data))
    }

    /// Ends an out-stream after the bytes written; [`HostEvent::StreamFinished`]
    /// reports whether everything was acknowledged.
    // spec: streams.md §2.1.2 shutdown
    pub fn shutdown(&mut self, now: Instant, h: StreamHandle) -> Result<(), ShutdownError> {
        self.tick(now);
        self.with_out(h, |r| {
            r.stream
                .shutdown()
                .map(|()| r.flags.set(Flag::AppShutdown, true))
        })
        .ok_or(ShutdownError::UnknownStream)?
        .map_err(|e| match e {
            crate::stream::ShutdownError::Reset => ShutdownError::Reset,
            crate::stream::ShutdownError::AlreadyShutdown => ShutdownError::AlreadyShutdown,
        })
    }

    /// Aborts a stream (in or out). An out-stream sends WRITER_RESETS (or
    /// nothing, if it was never pulled); an in-stream sends READER_RESETS
    /// unless the EOF was seen. No event follows for the application's own reset.
    // spec: streams.md §2.1.2 reset, §2.2.5 reset
    pub fn reset(&mut self, now: Instant, h: StreamHandle) -> Result<(), UnknownStream> {
        self.tick(now);
        if let Some(Owner::Host(id)) = self.owner(h)
            && let Some(r) = self.streams.in_mut(h)
            && let Some(host) = self.hosts.by_id_mut(id)
        {
            r.flags.set(Flag::AppReset, true);
            r.stream.reset();
            let mut ctx = ctx!(self, self.now);
            host.refresh_in(&mut ctx, h, false);
            return Ok(());
        }
        self.with_out(h, |r| {
            r.flags.set(Flag::AppReset, true);
            if r.id().is_none() {
                // spec: streams.md §3.6 MAY drop a never-sent stream silently
                r.stream.on_reader_reset();
            } else {
                r.stream.reset();
            }
        })
        .ok_or(UnknownStream)
    }

    /// Sets an out-stream's send low-water mark: after a write was cut short,
    /// [`HostEvent::StreamWritable`] waits until at least `bytes` of its send
    /// buffer are free (clamped to the buffer size; default 0: any room). Fewer,
    /// larger writes instead of one wakeup per acknowledged packet.
    pub fn set_send_low_water(
        &mut self,
        h: StreamHandle,
        bytes: usize,
    ) -> Result<(), UnknownStream> {
        let limit = self.config.out_stream.limit();
        self.with_out(h, |r| {
            // The send buffer is at most 2^30 bytes.
            r.low_water = bytes.min(limit) as u32;
        })
        .ok_or(UnknownStream)
    }

    /// Sets an out-stream's priority (finite; higher first, negative = filler).
    // spec: streams.md §2.1.2 set_priority, §3.2
    pub fn set_priority(&mut self, h: StreamHandle, priority: f32) -> Result<(), SetPriorityError> {
        self.with_out(h, |r| r.stream.set_priority(priority))
            .ok_or(SetPriorityError::UnknownStream)?
            .map_err(|e| SetPriorityError::NotFinite(e.0))
    }

    fn with_in<R>(
        &mut self,
        h: StreamHandle,
        f: impl FnOnce(&mut crate::stream::InStream) -> R,
    ) -> Result<R, UnknownStream> {
        let Some(Owner::Host(id)) = self.owner(h) else {
            return Err(UnknownStream);
        };
        let r = f(&mut self.streams.in_mut(h).ok_or(UnknownStream)?.stream);
        let host = self.hosts.by_id_mut(id).ok_or(UnknownStream)?;
        host.last_active = self.now;
        let mut ctx = ctx!(self, self.now);
        host.refresh_in(&mut ctx, h, false);
        Ok(r)
    }

    /// Copies buffered bytes of an in-stream into `buf`. After
    /// [`ReadResult::Finished`] or [`ReadResult::Reset`] the handle is forgotten.
    // spec: streams.md §2.2.4 read
    pub fn read(
        &mut self,
        h: StreamHandle,
        buf: &mut [u8],
    ) -> Result<ReadResult<usize>, UnknownStream> {
        self.with_in(h, |s| s.read(buf))
    }

    /// Takes one buffered chunk of at most `max` bytes (0: readiness probe).
    pub fn read_chunk(
        &mut self,
        h: StreamHandle,
        max: usize,
    ) -> Result<ReadResult<Bytes>, UnknownStream> {
        self.with_in(h, |s| s.read_chunk(max))
    }

    /// Appends every buffered byte to `out`.
    pub fn read_to_vec(
        &mut self,
        h: StreamHandle,
        out: &mut Vec<u8>,
    ) -> Result<ReadResult<usize>, UnknownStream> {
        self.with_in(h, |s| s.read_to_vec(out))
    }

    // ---- application handles -------------------------------------------------

    /// Notes that the application holds a handle for stream `h` (see
    /// [`HostTable::held_streams`]); `false` for an unknown handle.
    pub fn hold(&mut self, h: StreamHandle) -> bool {
        let Some(rec) = self.streams.get_mut(h) else {
            return false;
        };
        rec.kind.flags_mut().set(Flag::Held, true);
        true
    }

    /// The application's handle for `h` went away: no final event
    /// ([`HostEvent::StreamFinished`], [`HostEvent::StreamReset`]) is queued
    /// for `h` any more. `false` if the core forgot `h` already (its final
    /// event may still be queued).
    pub fn release(&mut self, h: StreamHandle) -> bool {
        let Some(rec) = self.streams.get_mut(h) else {
            return false;
        };
        let flags = rec.kind.flags_mut();
        flags.set(Flag::Held, false);
        flags.set(Flag::Reported, true);
        true
    }

    /// Every stream the application holds a handle for and the core still knows.
    pub fn held_streams(&self) -> Vec<StreamHandle> {
        self.streams
            .all()
            .filter(|r| r.kind.flags().has(Flag::Held))
            .map(|r| r.handle)
            .collect()
    }

    // ---- queries ---------------------------------------------------------------

    /// The peer of a stream (`None` for an unknown handle or a parked contact stream).
    pub fn stream_peer(&self, h: StreamHandle) -> Option<PublicKey> {
        match self.owner(h)? {
            Owner::Host(id) => Some(self.hosts.by_id(id)?.key),
            Owner::Pending => None,
        }
    }

    /// A snapshot of an out-stream.
    pub fn out_stream_info(&self, h: StreamHandle) -> Option<OutStreamInfo> {
        let rec = self.streams.get(h)?;
        let Kind::Out(r) = &rec.kind else {
            return None;
        };
        let (peer, room) = match rec.owner() {
            Owner::Host(id) => {
                let host = self.hosts.by_id(id)?;
                let room = self
                    .config
                    .max_host_send_buffer
                    .saturating_sub(host.out_buffered());
                (Some(host.key), room)
            }
            Owner::Pending => (None, usize::MAX),
        };
        let s = &r.stream;
        Some(OutStreamInfo {
            peer,
            service: rec.service,
            id: r.id(),
            state: s.state(),
            priority: s.priority(),
            bytes_acked: s.bytes_acked(),
            queued_inflight: s.inflight_bytes(),
            queued_to_retransmit: s.queued_bytes(),
            writable: s.writable_space(&self.config.out_stream).min(room),
            connect_pending: r.flags.has(Flag::Connect),
        })
    }

    /// A snapshot of an in-stream.
    pub fn in_stream_info(&self, h: StreamHandle) -> Option<InStreamInfo> {
        let Owner::Host(id) = self.owner(h)? else {
            return None;
        };
        let service = self.streams.get(h)?.service;
        let r = self.streams.in_rec(h)?;
        let s = &r.stream;
        Some(InStreamInfo {
            peer: self.hosts.by_id(id)?.key,
            service,
            id: r.id,
            state: s.state(),
            bytes_delivered: s.bytes_delivered(),
            queued_out_of_order: s.out_of_order_bytes(),
            queued_unread: s.ready_bytes(),
        })
    }

    /// Keys of every host in the table.
    pub fn hosts(&self) -> impl Iterator<Item = &PublicKey> {
        self.hosts.keys()
    }

    /// A snapshot of one host.
    pub fn host_info(&self, peer: &PublicKey) -> Option<HostInfo> {
        let h = self.hosts.get(peer)?;
        Some(HostInfo {
            key: h.key,
            remote_addr: h.remote,
            local_addr: h.local,
            bound: h.bound,
            live_streams: h.live_streams,
            listeners: h.listeners.iter().copied().collect(),
            stats: h.stats,
        })
    }

    /// The host's live (not reset) in-streams (§4.5).
    pub fn in_streams(&self, peer: &PublicKey) -> Vec<StreamHandle> {
        self.hosts
            .get(peer)
            .map(|h| h.in_handles(&self.streams))
            .unwrap_or_default()
    }

    /// The host's live (not reset) out-streams (§4.5).
    pub fn out_streams(&self, peer: &PublicKey) -> Vec<StreamHandle> {
        self.hosts
            .get(peer)
            .map(|h| h.out_handles(&self.streams))
            .unwrap_or_default()
    }

    /// Addresses with streams waiting for a channel.
    pub fn pending_contacts(&self) -> impl Iterator<Item = &SocketAddrV4> {
        self.pending.keys()
    }

    // ---- host lifetime ---------------------------------------------------------

    /// Makes room for one more host (§3.10): dead hosts first, then the least
    /// recently active unbound host (its streams are reset).
    fn make_room(&mut self, now: Instant) {
        if self.hosts.len() < self.config.max_hosts {
            return;
        }
        self.purge(now, true);
        if self.hosts.len() < self.config.max_hosts {
            return;
        }
        let victim = self
            .hosts
            .values()
            .filter(|h| !h.bound)
            .min_by_key(|h| (h.last_active, h.key))
            .map(|h| h.key);
        match victim {
            Some(k) => self.destroy_host(now, &k),
            None => tracing::warn!(
                hosts = self.hosts.len(),
                "host table over its limit: every host is bound"
            ),
        }
    }

    /// Destroys a host (§3.9): streams reset with their final events, the
    /// bound channel (if any) is asked to go.
    pub fn destroy_host(&mut self, now: Instant, peer: &PublicKey) {
        self.tick(now);
        let Some(mut host) = self.hosts.remove(peer) else {
            return;
        };
        let mut ctx = ctx!(self, self.now);
        host.destroy(&mut ctx);
        if host.bound {
            self.request(ChannelRequest::Disconnect(*peer));
        }
    }

    /// Drops unbound, effectively dead hosts whose keep-alive expired
    /// (`force`: ignore the keep-alive).
    // spec: streams.md §3.10
    fn purge(&mut self, now: Instant, force: bool) {
        let dead: Vec<PublicKey> = self
            .hosts
            .values()
            .filter(|h| !h.bound && h.effectively_dead() && (force || h.keep_until <= now))
            .map(|h| h.key)
            .collect();
        for k in dead {
            if let Some(mut host) = self.hosts.remove(&k) {
                let mut ctx = ctx!(self, now);
                host.drop_draining(&mut ctx);
            }
        }
    }
}

/// A parked stream ending gets a final event unless the application reset it
/// or released its handle.
fn wants_final_event(flags: Flags) -> bool {
    !flags.has(Flag::AppReset) && !flags.has(Flag::Reported)
}

fn data_len(d: &WriteData<'_>) -> usize {
    match d {
        WriteData::Slice(s) => s.len(),
        WriteData::Bytes(b) => b.len(),
    }
}

/// Next number `base | c` with the masked counter advanced first, skipping
/// numbers in use; `None` if all are in use (§4.3).
fn next_free(counter: &mut u16, mask: u16, base: u16, in_use: impl Fn(u16) -> bool) -> Option<u16> {
    for _ in 0..=mask {
        *counter = counter.wrapping_add(1) & mask;
        let s = base | *counter;
        if !in_use(s) {
            return Some(s);
        }
    }
    None
}

impl HostLayer for HostTable {
    // spec: streams.md §3.8 exist
    fn has_resumable_state(&mut self, now: Instant, peer: &PublicKey) -> bool {
        self.tick(now);
        let keep = self.config.keep_alive;
        match self.hosts.get_mut(peer) {
            Some(h) if !h.effectively_dead() => {
                h.keep_until = h.keep_until.max(now + keep); // poke
                true
            }
            _ => false,
        }
    }

    // spec: streams.md §3.8 on ESTABLISHED, §3.7 bind
    fn on_established(&mut self, now: Instant, info: &EstablishedInfo) {
        self.tick(now);
        if !self.hosts.contains_key(&info.peer) {
            self.make_room(now);
            let config = &self.config;
            self.hosts.insert_with(info.peer, |id| {
                Host::new(
                    id,
                    info.peer,
                    info.local_addr,
                    info.remote_addr,
                    now,
                    config,
                )
            });
        }
        let Some(host) = self.hosts.get_mut(&info.peer) else {
            return;
        };
        host.remote = info.remote_addr;
        host.local = info.local_addr;
        host.last_active = now;
        let mut ctx = ctx!(self, now);
        if !info.resume {
            host.wipe(&mut ctx);
        }
        host.bind(&mut ctx);
        self.events.push(HostEvent::HostAddressChanged(info.peer));
        self.settle_contact(now, info.remote_addr, info.peer);
    }

    // spec: streams.md §3.7 unbind
    fn on_unbound(&mut self, now: Instant, peer: &PublicKey) {
        self.tick(now);
        if let Some(h) = self.hosts.get_mut(peer) {
            h.bound = false;
            h.disconnect_at = None;
            h.grace_until = None;
            h.keep_until = h.keep_until.max(now + self.config.keep_alive);
            self.events.push(HostEvent::HostAddressChanged(*peer));
        }
    }

    // spec: streams.md §3.2 announce only priorities >= 0
    fn priority(&self, peer: &PublicKey) -> Option<f32> {
        let p = self.hosts.get(peer)?.announce(self.now);
        (p >= 0.0).then_some(p)
    }

    fn is_zombie(&self, peer: &PublicKey) -> bool {
        self.hosts.get(peer).is_none_or(Host::is_zombie)
    }

    fn announces_idle(&self, peer: &PublicKey) -> bool {
        self.hosts
            .get(peer)
            .is_none_or(|h| h.announces_idle(self.now))
    }

    // spec: streams.md §1.7, §3.4
    fn pull(&mut self, now: Instant, peer: &PublicKey, buf: &mut [u8]) -> (usize, PacketId) {
        self.tick(now);
        self.next_packet += 1;
        let id = self.next_packet;
        let Some(host) = self.hosts.get_mut(peer) else {
            return (0, id);
        };
        let mut ctx = ctx!(self, self.now);
        (host.pull(&mut ctx, buf, id), id)
    }

    fn on_packet_outcome(&mut self, now: Instant, peer: &PublicKey, packet: PacketId, acked: bool) {
        self.tick(now);
        if let Some(host) = self.hosts.get_mut(peer) {
            let mut ctx = ctx!(self, self.now);
            host.on_packet_outcome(&mut ctx, packet, acked);
        }
    }

    // spec: streams.md §1.6
    fn recv(&mut self, now: Instant, peer: &PublicKey, payload: &[u8]) -> bool {
        self.tick(now);
        let Some(host) = self.hosts.get_mut(peer) else {
            return false;
        };
        let mut ctx = ctx!(self, self.now);
        host.recv(&mut ctx, payload)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut consider = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        if !self.hosts.is_empty() {
            consider(self.next_purge);
        }
        for p in self.pending.values() {
            consider(p.deadline);
        }
        for h in self.hosts.values() {
            if let Some(d) = h.disconnect_at {
                consider(d);
            }
            if let Some(g) = h.grace_until {
                consider(g);
            }
            if h.bound
                && let Some(b) = h.next_boost()
                && b > self.now
            {
                consider(b);
            }
        }
        t
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        // spec: streams.md §3.7 idle channel teardown
        let mut idle = Vec::new();
        for h in self.hosts.values_mut() {
            // Over: the channel sees an idle host when it next builds or
            // ranks a datagram (the driver polls after every timeout).
            h.grace_until = h.grace_until.filter(|&g| g > now);
            if let Some(d) = h.disconnect_at
                && d <= now
            {
                h.disconnect_at = None;
                if h.bound && h.is_zombie() {
                    idle.push(h.key);
                }
            }
        }
        for k in idle {
            self.request(ChannelRequest::Disconnect(k));
        }
        let expired: Vec<SocketAddrV4> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(a, _)| *a)
            .collect();
        for a in expired {
            self.fail_contact(a);
        }
        if now >= self.next_purge {
            self.purge(now, false);
            self.next_purge = now + self.config.purge_period;
        }
    }

    fn poll_channel_request(&mut self) -> Option<ChannelRequest> {
        self.requests.pop_front()
    }

    fn on_connect_failed(&mut self, now: Instant, remote: SocketAddrV4) {
        self.tick(now);
        self.fail_contact(remote);
    }
}
