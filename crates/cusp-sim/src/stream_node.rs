//! A simulator node running a real stream stack: an `Endpoint<HostTable>` plus a scripted,
//! self-checking application ([`StreamApp`]).
//!
//! The application opens out-streams from a backlog of [`Plan`]s (with a concurrency
//! limit), writes a deterministic content pattern, shuts down, and records each outcome. On
//! the other side it accepts incoming streams, reads them (unless told to stop reading) and
//! verifies every byte and the EOF:
//!
//! * a stream of length 0 is a genuine empty stream (CONNECT + EOF); it is only counted;
//! * any other stream is at least [`HEADER_LEN`] bytes: an 8-byte tag and the 8-byte total
//!   length (both little-endian), then byte `o` (offset from the stream start) equals
//!   [`pattern_byte`]`(tag, o)`.
//!
//! So the reader needs no out-of-band knowledge to detect loss, duplication, reordering or
//! corruption; a scenario then compares the writer's plans with the reader's results.
//! Everything depends only on the seed (the node's entropy comes from a forked [`Rng`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::Instant;

use cusp_proto::crypto::{Entropy, PrivateKey, PublicKey};
use cusp_proto::endpoint::{Endpoint, EndpointConfig};
use cusp_proto::host::{HostConfig, HostEvent, HostTable, StreamHandle};
use cusp_proto::stream::ReadResult;

use crate::node::{Node, Transmit};
use crate::rng::Rng;

/// Bytes of the self-describing header of a non-empty test stream.
pub const HEADER_LEN: usize = 16;

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The content byte at stream offset `off` (>= [`HEADER_LEN`]) of the stream tagged `tag`.
pub fn pattern_byte(tag: u64, off: u64) -> u8 {
    (mix(tag.wrapping_mul(0x1000_0001) ^ (off >> 3)) >> (8 * (off & 7))) as u8
}

/// Fills `buf` with the bytes of stream `tag` of total length `len` starting at `off`.
pub fn fill_stream(tag: u64, len: u64, off: u64, buf: &mut [u8]) {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(&tag.to_le_bytes());
    header[8..].copy_from_slice(&len.to_le_bytes());
    let mut o = off;
    let mut i = 0;
    while i < buf.len() && o < HEADER_LEN as u64 {
        buf[i] = header[o as usize];
        i += 1;
        o += 1;
    }
    while i < buf.len() {
        // One mix per 8 bytes.
        let word = mix(tag.wrapping_mul(0x1000_0001) ^ (o >> 3)).to_le_bytes();
        let start = (o & 7) as usize;
        let n = (8 - start).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&word[start..start + n]);
        i += n;
        o += n as u64;
    }
}

/// One out-stream the application will open.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Unique tag (part of the content).
    pub tag: u64,
    /// Total length in bytes: 0 or at least [`HEADER_LEN`].
    pub len: u64,
    /// Service to connect to.
    pub service: u16,
    /// Priority set right after opening.
    pub priority: f32,
    /// Reset the stream (instead of shutting it down) once this many bytes are written.
    pub reset_after: Option<u64>,
    /// Do not shut the stream down after writing until [`StreamNode::release`].
    pub hold: bool,
}

impl Plan {
    /// A plan with priority 0 and no reset. `len` is rounded up to [`HEADER_LEN`] unless 0.
    pub fn new(tag: u64, len: u64, service: u16) -> Plan {
        let len = if len == 0 {
            0
        } else {
            len.max(HEADER_LEN as u64)
        };
        Plan {
            tag,
            len,
            service,
            priority: 0.0,
            reset_after: None,
            hold: false,
        }
    }
}

/// How an out-stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutOutcome {
    /// Still open.
    Open,
    /// `StreamFinished { delivered }`.
    Finished(bool),
    /// `StreamReset` (by the peer or a wipe).
    Reset,
    /// The application reset it itself (plan `reset_after`).
    AppReset,
    /// `write`/`shutdown`/`contact` failed with this error text.
    Error(&'static str),
}

/// An out-stream's record.
#[derive(Clone, Debug)]
pub struct OutRecord {
    /// What was planned.
    pub plan: Plan,
    /// Its handle.
    pub handle: StreamHandle,
    /// Bytes accepted by `write` so far.
    pub written: u64,
    /// When it was opened.
    pub opened: Instant,
    /// When its final event arrived.
    pub ended: Option<Instant>,
    /// The outcome.
    pub outcome: OutOutcome,
    /// Wire id, once seen.
    pub id: Option<u16>,
    /// Shutdown was called.
    pub shut: bool,
    /// Waiting for `StreamWritable`.
    pub blocked: bool,
}

/// How an in-stream ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InOutcome {
    /// Still open.
    Open,
    /// Every byte verified and the EOF read.
    Complete,
    /// Reset (by the writer, or a wipe).
    Reset,
}

/// An in-stream's record.
#[derive(Clone, Debug)]
pub struct InRecord {
    /// Who opened it.
    pub peer: PublicKey,
    /// The service.
    pub service: u16,
    /// The writer's wire id.
    pub id: u16,
    /// Tag from the header (once read).
    pub tag: Option<u64>,
    /// Total length from the header (once read).
    pub len: Option<u64>,
    /// Bytes read and verified.
    pub read: u64,
    /// When `IncomingStream` arrived.
    pub opened: Instant,
    /// When the last byte was read (or the EOF / reset seen).
    pub last_read: Option<Instant>,
    /// When it ended.
    pub ended: Option<Instant>,
    /// The outcome.
    pub outcome: InOutcome,
    /// (time, bytes read so far) after every read, if the app records progress.
    pub progress: Vec<(Instant, u64)>,
    header: [u8; HEADER_LEN],
}

/// The scripted, self-checking application above a [`HostTable`].
#[derive(Debug)]
pub struct StreamApp {
    /// Where out-streams go (`contact`).
    pub target: Option<SocketAddrV4>,
    /// Out-streams still to open, in order.
    pub backlog: VecDeque<Plan>,
    /// Most open out-streams at once.
    pub max_concurrent: usize,
    /// Whether in-streams are read (a reader that stops reading: `false`).
    pub reading: bool,
    /// Write at most this many bytes per `write` call.
    pub write_chunk: usize,
    /// Observe wire ids of out-streams after every transmit (costs O(open streams)).
    pub track_ids: bool,
    /// Record every read of every in-stream in [`InRecord::progress`].
    pub record_progress: bool,
    /// Services advertised.
    pub services: BTreeSet<u16>,
    /// Out-streams by handle (kept after they end).
    pub outs: BTreeMap<StreamHandle, OutRecord>,
    /// Open out-streams.
    pub open_outs: BTreeSet<StreamHandle>,
    /// In-streams by handle (kept after they end).
    pub ins: BTreeMap<StreamHandle, InRecord>,
    /// Open in-streams.
    pub open_ins: BTreeSet<StreamHandle>,
    unread: BTreeSet<StreamHandle>,
    /// Tags read completely (each exactly once).
    pub tags_seen: BTreeSet<u64>,
    /// Empty streams completed, by service.
    pub empty_streams: BTreeMap<u16, u64>,
    /// Verification failures (each is a bug).
    pub errors: Vec<String>,
    /// Events of other kinds, counted: (contacted, contact failed, address changed).
    pub host_events: (u64, u64, u64),
    /// Id reuse bookkeeping: id -> datagrams sent when it was released.
    released_at: HashMap<u16, u64>,
    /// Ids reused, and the smallest number of datagrams sent between release and reuse.
    pub id_reuses: u64,
    /// Smallest gap (datagrams) between an id's release and its reuse.
    pub min_reuse_gap: Option<u64>,
    /// Distinct wire ids used by out-streams.
    pub ids_used: BTreeSet<u16>,
    scratch: Vec<u8>,
}

impl Default for StreamApp {
    fn default() -> Self {
        StreamApp {
            target: None,
            backlog: VecDeque::new(),
            max_concurrent: 64,
            reading: true,
            write_chunk: 64 << 10,
            track_ids: false,
            record_progress: false,
            services: BTreeSet::new(),
            outs: BTreeMap::new(),
            open_outs: BTreeSet::new(),
            ins: BTreeMap::new(),
            open_ins: BTreeSet::new(),
            unread: BTreeSet::new(),
            tags_seen: BTreeSet::new(),
            empty_streams: BTreeMap::new(),
            errors: Vec::new(),
            host_events: (0, 0, 0),
            released_at: HashMap::new(),
            id_reuses: 0,
            min_reuse_gap: None,
            ids_used: BTreeSet::new(),
            scratch: Vec::new(),
        }
    }
}

impl StreamApp {
    /// The out-stream record of plan `tag`.
    pub fn out_by_tag(&self, tag: u64) -> Option<&OutRecord> {
        self.outs.values().find(|r| r.plan.tag == tag)
    }

    /// The in-stream record carrying `tag`.
    pub fn in_by_tag(&self, tag: u64) -> Option<&InRecord> {
        self.ins.values().find(|r| r.tag == Some(tag))
    }

    /// Every out-stream ended and the backlog is empty.
    pub fn writer_done(&self) -> bool {
        self.backlog.is_empty() && self.open_outs.is_empty()
    }

    fn error(&mut self, e: String) {
        if self.errors.len() < 20 {
            self.errors.push(e);
        }
    }
}

/// A sim node: a stream endpoint and its application.
pub struct StreamNode {
    /// The endpoint.
    pub endpoint: Endpoint<HostTable>,
    /// The application.
    pub app: StreamApp,
    buf: Vec<u8>,
}

impl std::fmt::Debug for StreamNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamNode").finish_non_exhaustive()
    }
}

/// A private key drawn from `rng`.
pub fn key_from(rng: &mut Rng) -> PrivateKey {
    let mut e = [0u8; 40];
    rng.fill_bytes(&mut e);
    PrivateKey::from_entropy(&e)
}

impl StreamNode {
    /// A node with `key`, entropy from `rng` and a host table created at `now`.
    pub fn new(
        now: Instant,
        config: EndpointConfig,
        host_config: HostConfig,
        key: PrivateKey,
        rng: Rng,
    ) -> Self {
        let mut rng = rng;
        let entropy: Box<dyn Entropy + Send> = Box::new(move |b: &mut [u8]| rng.fill_bytes(b));
        StreamNode {
            endpoint: Endpoint::new(config, key, entropy, HostTable::new(host_config, now)),
            app: StreamApp::default(),
            buf: vec![0; 2048],
        }
    }

    /// A node with default settings and a key and entropy from `rng`.
    pub fn with_defaults(now: Instant, rng: &mut Rng) -> Self {
        let key = key_from(rng);
        Self::new(
            now,
            EndpointConfig::default(),
            HostConfig::default(),
            key,
            rng.fork(),
        )
    }

    /// Our public key.
    pub fn public_key(&self) -> PublicKey {
        self.endpoint.public_key().expect("a public key suite")
    }

    /// The host table.
    pub fn hosts(&self) -> &HostTable {
        self.endpoint.hosts()
    }

    /// Advertises a well-known service.
    pub fn advertise(&mut self, service: u16) {
        self.endpoint
            .hosts_mut()
            .advertise(Some(service))
            .expect("advertise");
        self.app.services.insert(service);
    }

    /// Queues out-streams and starts what the concurrency limit allows.
    pub fn plan(&mut self, now: Instant, plans: impl IntoIterator<Item = Plan>) {
        self.app.backlog.extend(plans);
        self.pump(now);
    }

    /// Starts or stops reading in-streams; starting reads everything buffered.
    pub fn set_reading(&mut self, now: Instant, reading: bool) {
        self.app.reading = reading;
        self.pump(now);
    }

    /// Changes the priority of the out-stream of plan `tag`.
    pub fn set_priority(&mut self, now: Instant, tag: u64, priority: f32) -> bool {
        let Some(h) = self.app.out_by_tag(tag).map(|r| r.handle) else {
            return false;
        };
        let ok = self.endpoint.hosts_mut().set_priority(h, priority).is_ok();
        self.pump(now);
        ok
    }

    /// Lets a held stream (plan `hold`) shut down once written.
    pub fn release(&mut self, now: Instant, tag: u64) {
        let Some(h) = self.app.out_by_tag(tag).map(|r| r.handle) else {
            return;
        };
        if let Some(r) = self.app.outs.get_mut(&h) {
            r.plan.hold = false;
        }
        self.write_more(now, h);
        self.pump(now);
    }

    /// Runs the application: events, reads, writes, opens; then the endpoint's requests.
    pub fn pump(&mut self, now: Instant) {
        loop {
            let mut progress = false;
            while let Some(ev) = self.endpoint.hosts_mut().poll_event() {
                progress = true;
                self.on_event(now, ev);
            }
            if self.app.reading && !self.app.unread.is_empty() {
                let unread = std::mem::take(&mut self.app.unread);
                for h in unread {
                    self.read_all(now, h);
                }
                progress = true;
            }
            while self.app.open_outs.len() < self.app.max_concurrent {
                let Some(plan) = self.app.backlog.pop_front() else {
                    break;
                };
                self.open(now, plan);
                progress = true;
            }
            if !progress {
                break;
            }
        }
        self.endpoint.poll_requests(now);
    }

    fn open(&mut self, now: Instant, plan: Plan) {
        let Some(target) = self.app.target else {
            self.app.error("plan without a target".into());
            return;
        };
        let hosts = self.endpoint.hosts_mut();
        let h = match hosts.contact(now, target, plan.service) {
            Ok(h) => h,
            Err(e) => {
                self.app.error(format!("contact for tag {}: {e}", plan.tag));
                return;
            }
        };
        if plan.priority != 0.0 {
            let _ = hosts.set_priority(h, plan.priority);
        }
        self.app.outs.insert(
            h,
            OutRecord {
                plan,
                handle: h,
                written: 0,
                opened: now,
                ended: None,
                outcome: OutOutcome::Open,
                id: None,
                shut: false,
                blocked: false,
            },
        );
        self.app.open_outs.insert(h);
        self.write_more(now, h);
    }

    fn write_more(&mut self, now: Instant, h: StreamHandle) {
        let Some(rec) = self.app.outs.get_mut(&h) else {
            return;
        };
        if rec.outcome != OutOutcome::Open || rec.shut {
            return;
        }
        rec.blocked = false;
        let hosts = self.endpoint.hosts_mut();
        let (tag, len) = (rec.plan.tag, rec.plan.len);
        let limit = rec.plan.reset_after.unwrap_or(len).min(len);
        while rec.written < limit {
            let n = ((limit - rec.written) as usize).min(self.app.write_chunk);
            self.app.scratch.resize(n, 0);
            fill_stream(tag, len, rec.written, &mut self.app.scratch);
            match hosts.write(now, h, &self.app.scratch) {
                Ok(k) => {
                    rec.written += k as u64;
                    if k < n {
                        rec.blocked = true;
                        return;
                    }
                }
                Err(e) => {
                    rec.outcome = OutOutcome::Error(match e {
                        cusp_proto::host::WriteError::Reset => "write: reset",
                        cusp_proto::host::WriteError::Finished => "write: finished",
                        cusp_proto::host::WriteError::UnknownStream => "write: unknown",
                    });
                    rec.ended = Some(now);
                    self.app.open_outs.remove(&h);
                    return;
                }
            }
        }
        if rec.plan.reset_after.is_some_and(|r| r < len) {
            let _ = hosts.reset(now, h);
            rec.outcome = OutOutcome::AppReset;
            rec.ended = Some(now);
            self.app.open_outs.remove(&h);
            return;
        }
        if rec.plan.hold {
            return;
        }
        rec.shut = true;
        if let Err(e) = hosts.shutdown(now, h) {
            rec.outcome = OutOutcome::Error(match e {
                cusp_proto::host::ShutdownError::Reset => "shutdown: reset",
                _ => "shutdown: refused",
            });
            rec.ended = Some(now);
            self.app.open_outs.remove(&h);
        }
    }

    fn end_out(&mut self, now: Instant, h: StreamHandle, outcome: OutOutcome) {
        let sent = self.endpoint.stats().datagrams_out;
        let Some(rec) = self.app.outs.get_mut(&h) else {
            self.app
                .error(format!("final event for unknown out-stream {h}"));
            return;
        };
        if rec.outcome != OutOutcome::Open && rec.outcome != OutOutcome::AppReset {
            self.app
                .error(format!("second final event for {h}: {outcome:?}"));
            return;
        }
        if rec.outcome == OutOutcome::AppReset {
            self.app
                .error(format!("final event {outcome:?} after the app reset {h}"));
            return;
        }
        rec.outcome = outcome;
        rec.ended = Some(now);
        if let Some(id) = rec.id {
            self.app.released_at.insert(id, sent);
        }
        self.app.open_outs.remove(&h);
    }

    fn on_event(&mut self, now: Instant, ev: HostEvent) {
        match ev {
            HostEvent::IncomingStream {
                peer,
                service,
                handle,
            } => {
                let id = self
                    .endpoint
                    .hosts()
                    .in_stream_info(handle)
                    .map_or(u16::MAX, |i| i.id);
                if !self.app.services.contains(&service) && service < 0x8000 {
                    self.app
                        .error(format!("incoming stream to unadvertised service {service}"));
                }
                self.app.ins.insert(
                    handle,
                    InRecord {
                        peer,
                        service,
                        id,
                        tag: None,
                        len: None,
                        read: 0,
                        opened: now,
                        last_read: None,
                        ended: None,
                        outcome: InOutcome::Open,
                        progress: Vec::new(),
                        header: [0; HEADER_LEN],
                    },
                );
                self.app.open_ins.insert(handle);
                self.app.unread.insert(handle);
            }
            HostEvent::StreamReadable(h) => {
                self.app.unread.insert(h);
            }
            HostEvent::StreamWritable(h) => self.write_more(now, h),
            HostEvent::StreamFinished {
                handle, delivered, ..
            } => self.end_out(now, handle, OutOutcome::Finished(delivered)),
            HostEvent::StreamReset { handle: h, .. } => {
                if self.app.outs.contains_key(&h) {
                    self.end_out(now, h, OutOutcome::Reset);
                } else if let Some(r) = self.app.ins.get_mut(&h) {
                    if r.outcome == InOutcome::Complete {
                        self.app.error(format!("reset after end of in-stream {h}"));
                        return;
                    }
                    let r = self.app.ins.get_mut(&h).expect("checked");
                    r.outcome = InOutcome::Reset;
                    r.ended = Some(now);
                    self.app.open_ins.remove(&h);
                    self.app.unread.remove(&h);
                } else {
                    self.app.error(format!("reset of unknown stream {h}"));
                }
            }
            HostEvent::Contacted { .. } => self.app.host_events.0 += 1,
            HostEvent::ContactFailed(_) => self.app.host_events.1 += 1,
            HostEvent::HostAddressChanged(_) => self.app.host_events.2 += 1,
        }
    }

    fn read_all(&mut self, now: Instant, h: StreamHandle) {
        loop {
            let Some(rec) = self.app.ins.get(&h) else {
                return;
            };
            if rec.outcome != InOutcome::Open {
                return;
            }
            let r = self.endpoint.hosts_mut().read_chunk(h, usize::MAX);
            match r {
                Ok(ReadResult::Data(bytes)) => {
                    if let Err(e) = self.verify(now, h, &bytes) {
                        self.app.error(e);
                    }
                }
                Ok(ReadResult::WouldBlock) => return,
                Ok(ReadResult::Finished) => {
                    self.finish_in(now, h);
                    return;
                }
                Ok(ReadResult::Reset) => {
                    let rec = self.app.ins.get_mut(&h).expect("checked");
                    rec.outcome = InOutcome::Reset;
                    rec.ended = Some(now);
                    self.app.open_ins.remove(&h);
                    return;
                }
                Err(_) => {
                    self.app.error(format!("read of {h}: unknown stream"));
                    return;
                }
            }
        }
    }

    fn verify(&mut self, now: Instant, h: StreamHandle, data: &[u8]) -> Result<(), String> {
        let app = &mut self.app;
        let rec = app.ins.get_mut(&h).expect("known in-stream");
        rec.last_read = Some(now);
        let mut data = data;
        while rec.read < HEADER_LEN as u64 && !data.is_empty() {
            rec.header[rec.read as usize] = data[0];
            data = &data[1..];
            rec.read += 1;
            if rec.read == HEADER_LEN as u64 {
                let tag = u64::from_le_bytes(rec.header[..8].try_into().expect("8"));
                let len = u64::from_le_bytes(rec.header[8..].try_into().expect("8"));
                rec.tag = Some(tag);
                rec.len = Some(len);
            }
        }
        if data.is_empty() {
            return Ok(());
        }
        let (Some(tag), Some(len)) = (rec.tag, rec.len) else {
            unreachable!("header complete");
        };
        let end = rec.read + data.len() as u64;
        if end > len {
            return Err(format!(
                "stream tag {tag}: {end} bytes but the header says {len}"
            ));
        }
        app.scratch.resize(data.len(), 0);
        fill_stream(tag, len, rec.read, &mut app.scratch);
        if app.scratch[..] != *data {
            let i = data
                .iter()
                .zip(&app.scratch)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!(
                "stream tag {tag}: corrupt byte at offset {}",
                rec.read + i as u64
            ));
        }
        rec.read = end;
        if app.record_progress {
            rec.progress.push((now, end));
        }
        Ok(())
    }

    fn finish_in(&mut self, now: Instant, h: StreamHandle) {
        let app = &mut self.app;
        let rec = app.ins.get_mut(&h).expect("known in-stream");
        rec.outcome = InOutcome::Complete;
        rec.ended = Some(now);
        rec.last_read = Some(now);
        app.open_ins.remove(&h);
        match (rec.read, rec.tag, rec.len) {
            (0, _, _) => *app.empty_streams.entry(rec.service).or_default() += 1,
            (n, Some(tag), Some(len)) if n == len => {
                if !app.tags_seen.insert(tag) {
                    let e = format!("stream tag {tag} delivered twice");
                    app.error(e);
                }
            }
            (n, tag, len) => {
                let e = format!("in-stream {h}: EOF after {n} bytes (tag {tag:?}, len {len:?})");
                app.error(e);
            }
        }
    }

    fn observe_ids(&mut self) {
        let sent = self.endpoint.stats().datagrams_out;
        let mut fresh = Vec::new();
        for h in &self.app.open_outs {
            let rec = &self.app.outs[h];
            if rec.id.is_none()
                && let Some(id) = self.endpoint.hosts().out_stream_info(*h).and_then(|i| i.id)
            {
                fresh.push((*h, id));
            }
        }
        for (h, id) in fresh {
            if let Some(rec) = self.app.outs.get_mut(&h) {
                rec.id = Some(id);
            }
            self.app.ids_used.insert(id);
            if let Some(at) = self.app.released_at.remove(&id) {
                let gap = sent - at;
                self.app.id_reuses += 1;
                self.app.min_reuse_gap = Some(self.app.min_reuse_gap.map_or(gap, |g| g.min(gap)));
            }
        }
    }
}

impl Node for StreamNode {
    fn handle(&mut self, now: Instant, from: SocketAddrV4, _local: SocketAddrV4, data: Vec<u8>) {
        let mut data = data;
        self.endpoint.handle(now, from, &mut data);
        self.pump(now);
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let t = self.endpoint.poll_transmit(now, &mut self.buf);
        if t.is_some() && self.app.track_ids {
            self.observe_ids();
        }
        self.pump(now);
        let t = t?;
        Some(Transmit {
            destination: t.destination,
            contents: self.buf[..t.len].to_vec(),
        })
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.endpoint.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
        self.pump(now);
    }
}
