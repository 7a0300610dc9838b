//! The endpoint handle, the state it shares with its driver task, and event dispatch.
//!
//! All protocol state of one endpoint lives behind **one** `std::sync::Mutex` ([`State`]):
//! the sans-IO core (`cusp_proto::endpoint::Endpoint<HostTable>`), the per-stream wakers
//! and the listener channels. Every critical section is short and synchronous (no await
//! while holding it): a handle locks, calls the core, registers its waker if it must wait,
//! unlocks and pokes the driver through a [`Notify`]. The driver task (`driver.rs`) owns
//! the socket, feeds datagrams and timers to the core and turns [`HostEvent`]s into
//! wakeups. Stream operations never wait on each other except for that mutex.

use cusp_proto::hash::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use cusp_proto::crypto::PublicKey;
use cusp_proto::endpoint::{Endpoint as ProtoEndpoint, EndpointStats};
use cusp_proto::host::{HostEvent, HostTable, LISTEN_SERVICE_BASE, StreamHandle};
use cusp_proto::stream::OutStreamState;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::config::EndpointConfig;
use crate::error::{Error, Result};
use crate::host::{Host, Incoming};
use crate::slots::{Slot, Slots};
use crate::stream::{InStream, OutStream};
use crate::udp::{UdpError, UdpIo, UdpStats};

/// What an [`Incoming`] yields: the peer, the service the stream was opened to, the stream.
pub type Accepted = (Host, u16, InStream);

/// Counters of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Channel-table counters of the core (datagrams, bytes, handshakes).
    pub proto: EndpointStats,
    /// Socket counters (system calls, GSO/GRO batching).
    pub udp: UdpStats,
}

/// How a stream ended, as the handle learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Out-stream shutdown resolved (`true`: everything acknowledged).
    Finished(bool),
    /// Reset by the peer or a state wipe.
    Reset,
    /// The contact the stream was parked on failed.
    ContactFailed(SocketAddrV4),
    /// The endpoint closed.
    Closed,
}

impl End {
    pub(crate) fn error(self) -> Error {
        match self {
            End::Finished(_) => Error::Finished,
            End::Reset => Error::Reset,
            End::ContactFailed(a) => Error::ContactFailed(a),
            End::Closed => Error::Closed,
        }
    }
}

/// Everything behind the endpoint's mutex.
pub(crate) struct State {
    pub ep: ProtoEndpoint<HostTable>,
    /// What the live stream handles have to learn or wake on.
    pub streams: Slots,
    pub advertised: HashMap<u16, mpsc::UnboundedSender<Accepted>>,
    pub listeners: HashMap<(PublicKey, u16), mpsc::UnboundedSender<Accepted>>,
    /// One-stream per-host listeners ([`Host::listen_once`]), with the token of their
    /// [`ReplyListener`](crate::host::ReplyListener): removed when their stream arrives.
    pub replies: HashMap<(PublicKey, u16), (u64, oneshot::Sender<Accepted>)>,
    /// Token of the next one-stream listener.
    pub next_reply: u64,
    /// Streams parked on a contact, by address.
    pub contacts: HashMap<SocketAddrV4, Vec<StreamHandle>>,
    /// `close()` was called (the driver starts closing on its next turn).
    pub close_requested: bool,
    /// Destroy at once without waiting (`abort()`).
    pub abort_requested: bool,
    /// Closing: destroy when idle or at this deadline.
    pub closing: Option<Instant>,
    pub closed: bool,
    pub udp_stats: UdpStats,
    last_local: Option<SocketAddrV4>,
}

/// What the endpoint's handles and its driver share.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the driver: new data to send, a timer to re-arm, closing.
    pub notify: Notify,
    /// Live user handles ([`EpRef`]s); at 0 the driver closes in the background.
    refs: AtomicUsize,
    pub local_addr: SocketAddrV4,
    pub public_key: PublicKey,
    pub send_low_water: usize,
    pub close_timeout: Duration,
    pub address: watch::Sender<Option<SocketAddrV4>>,
    /// `Some(graceful)` once the driver stopped.
    pub stopped: watch::Sender<Option<bool>>,
}

impl Shared {
    /// Locks the state. A poisoned lock (a panic elsewhere while holding it) is taken over:
    /// the core's state stays consistent between calls, so carrying on beats panicking.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn refs(&self) -> usize {
        self.refs.load(Ordering::Acquire)
    }
}

/// A counted reference to the endpoint held by every user-facing handle. When the last
/// one goes, the driver is told to close in the background.
pub(crate) struct EpRef(pub(crate) Arc<Shared>);

impl EpRef {
    pub(crate) fn new(shared: Arc<Shared>) -> EpRef {
        shared.refs.fetch_add(1, Ordering::AcqRel);
        EpRef(shared)
    }

    /// Locks the state for an operation that needs a running endpoint.
    pub(crate) fn lock_open(&self) -> Result<MutexGuard<'_, State>> {
        let st = self.0.lock();
        if st.closed || st.closing.is_some() || st.close_requested {
            return Err(Error::Closed);
        }
        Ok(st)
    }

    pub(crate) fn wake_driver(&self) {
        self.0.notify.notify_one();
    }
}

impl Clone for EpRef {
    fn clone(&self) -> Self {
        EpRef::new(self.0.clone())
    }
}

impl Drop for EpRef {
    fn drop(&mut self) {
        if self.0.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.notify.notify_one();
        }
    }
}

impl std::ops::Deref for EpRef {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl State {
    /// The end of stream `h` as far as known, after dispatching queued events (the core
    /// forgets a handle when it queues its final event, so an "unknown stream" answer
    /// means that event may still be in the queue).
    pub(crate) fn resolve_end(
        &mut self,
        shared: &Arc<Shared>,
        h: StreamHandle,
        wake: &mut Vec<Waker>,
    ) -> End {
        self.dispatch(shared, wake);
        if self.closed {
            return End::Closed;
        }
        self.streams
            .get(h)
            .and_then(|s| s.end())
            .unwrap_or(End::Reset)
    }

    /// Turns the core's events into wakeups (collected in `wake`, to be woken after the
    /// lock is released) and hands incoming streams to their listeners.
    pub(crate) fn dispatch(&mut self, shared: &Arc<Shared>, wake: &mut Vec<Waker>) {
        while let Some(event) = self.ep.hosts_mut().poll_event() {
            match event {
                HostEvent::StreamReadable(h) | HostEvent::StreamWritable(h) => {
                    self.streams.with_recorded(h, |s| s.wake_all(wake));
                }
                HostEvent::StreamFinished {
                    handle,
                    peer,
                    delivered,
                } => {
                    self.end_stream(handle, End::Finished(delivered), peer, wake);
                }
                HostEvent::StreamReset { handle, peer } => {
                    self.end_stream(handle, End::Reset, peer, wake)
                }
                HostEvent::IncomingStream {
                    peer,
                    service,
                    handle,
                } => self.incoming(shared, peer, service, handle),
                HostEvent::Contacted { addr, .. } => {
                    // The parked streams now belong to the peer, which the core knows.
                    for h in self.contacts.remove(&addr).unwrap_or_default() {
                        self.streams.with_recorded(h, |s| {
                            s.rare_mut().contact = None;
                            s.wake_all(wake);
                        });
                    }
                }
                HostEvent::ContactFailed(addr) => {
                    // The contact lists live handles only (their drop takes them off).
                    for h in self.contacts.remove(&addr).unwrap_or_default() {
                        let s = self.streams.entry(h);
                        let r = s.rare_mut();
                        r.contact = None;
                        r.end = Some(End::ContactFailed(addr));
                        s.wake_all(wake);
                    }
                }
                HostEvent::HostAddressChanged(peer) => {
                    if let Some(info) = self.ep.hosts().host_info(&peer)
                        && info.bound
                        && self.last_local != Some(info.local_addr)
                    {
                        self.last_local = Some(info.local_addr);
                        shared.address.send_replace(Some(info.local_addr));
                    }
                }
            }
        }
    }

    /// Records the end of a stream with a live handle (the core queues final events for
    /// held streams only, and a handle's drop dispatches the queue before it removes the
    /// slot): the core forgot the stream, so its peer is kept here (for
    /// [`OutStream::host`](crate::OutStream::host)).
    fn end_stream(
        &mut self,
        h: StreamHandle,
        end: End,
        peer: Option<PublicKey>,
        wake: &mut Vec<Waker>,
    ) {
        let s = self.streams.entry(h);
        // A parked stream reset by a failing contact: `ContactFailed` follows and
        // overrides (same dispatch round, before anyone is woken).
        let r = s.rare_mut();
        r.end.get_or_insert(end);
        r.peer = r.peer.or(peer);
        s.wake_all(wake);
    }

    /// Every stream with a live handle: held by the core, or ended with a slot.
    fn live_handles(&self) -> Vec<StreamHandle> {
        let mut v = self.ep.hosts().held_streams();
        v.extend(self.streams.handles());
        v.sort_unstable();
        v.dedup();
        v
    }

    /// A handle for `h` goes away: the core queues no final event for it any more, the
    /// queued ones are dispatched (so none records a slot for it later), and its slot
    /// is removed and returned.
    pub(crate) fn drop_handle(
        &mut self,
        shared: &Arc<Shared>,
        h: StreamHandle,
        wake: &mut Vec<Waker>,
    ) -> Slot {
        self.ep.hosts_mut().release(h);
        self.dispatch(shared, wake);
        self.streams.close(h)
    }

    fn incoming(&mut self, shared: &Arc<Shared>, peer: PublicKey, service: u16, h: StreamHandle) {
        if let Some((_, tx)) = self.replies.remove(&(peer, service)) {
            // A one-stream listener: its service closes as its stream arrives.
            self.ep.hosts_mut().unlisten(&peer, service);
            self.ep.hosts_mut().hold(h);
            let host = Host::new(EpRef::new(shared.clone()), peer);
            let stream = InStream::new(EpRef::new(shared.clone()), h, service);
            if let Err((_, _, stream)) = tx.send((host, service, stream)) {
                self.discard(stream, h);
            }
            return;
        }
        let tx = if service >= LISTEN_SERVICE_BASE {
            self.listeners.get(&(peer, service))
        } else {
            self.advertised.get(&service)
        };
        let now = Instant::now();
        let Some(tx) = tx.filter(|tx| !tx.is_closed()) else {
            let _ = self.ep.hosts_mut().reset(now, h);
            return;
        };
        self.ep.hosts_mut().hold(h);
        let host = Host::new(EpRef::new(shared.clone()), peer);
        let stream = InStream::new(EpRef::new(shared.clone()), h, service);
        if let Err(mpsc::error::SendError((_, _, stream))) = tx.send((host, service, stream)) {
            self.discard(stream, h);
        }
    }

    /// Resets an incoming stream whose listener went away just now (its handle's Drop must
    /// not lock: we hold the lock).
    fn discard(&mut self, stream: InStream, h: StreamHandle) {
        stream.forget();
        self.ep.hosts_mut().release(h);
        let _ = self.ep.hosts_mut().reset(Instant::now(), h);
    }

    /// Starts closing: no new streams, every listener closed, every stream that is not
    /// finishing reset; the driver destroys the core when idle or at `deadline`.
    pub(crate) fn begin_close(&mut self, now: Instant, deadline: Instant, wake: &mut Vec<Waker>) {
        self.closing = Some(deadline);
        self.ep.hosts_mut().end_idle_grace();
        for s in std::mem::take(&mut self.advertised).into_keys() {
            self.ep.hosts_mut().unadvertise(s);
        }
        for (peer, s) in std::mem::take(&mut self.listeners).into_keys() {
            self.ep.hosts_mut().unlisten(&peer, s);
        }
        for (peer, s) in std::mem::take(&mut self.replies).into_keys() {
            self.ep.hosts_mut().unlisten(&peer, s);
        }
        for h in self.live_handles() {
            let shutdown = self.streams.get(h).is_some_and(Slot::shutdown);
            let hosts = self.ep.hosts_mut();
            let reset = match hosts.out_stream_info(h) {
                Some(i) => !shutdown && i.state == OutStreamState::Active,
                None => hosts.in_stream_info(h).is_some(),
            };
            if reset {
                let _ = hosts.reset(now, h);
                let s = self.streams.entry(h);
                s.rare_mut().end.get_or_insert(End::Closed);
                s.wake_all(wake);
            }
        }
        self.ep.poll_requests(now);
    }

    /// Marks the endpoint closed and wakes every waiter.
    pub(crate) fn finish_close(&mut self, wake: &mut Vec<Waker>) {
        self.closed = true;
        self.closing.get_or_insert_with(Instant::now);
        self.advertised.clear();
        self.listeners.clear();
        self.replies.clear();
        self.contacts.clear();
        for h in self.live_handles() {
            let s = self.streams.entry(h);
            s.rare_mut().end.get_or_insert(End::Closed);
            s.wake_all(wake);
        }
    }
}

/// A CUSP endpoint: one UDP socket, our identity, the hosts we talk to.
///
/// A cheap handle (`Clone`; an `Arc` inside). The endpoint keeps running while any handle
/// exists: an `Endpoint`, a [`Host`], a stream or an [`Incoming`].
///
/// **Drop**: when the last handle is gone, the driver closes in the background exactly as
/// [`Endpoint::close`] does (every stream was already reset by its own drop, or is
/// finishing), waiting at most [`EndpointConfig::close_timeout`] for the channels to
/// close, then releases the socket. Call [`Endpoint::close`] to wait for that, e.g.
/// before the process exits (`spec/streams.md` §4.8 `whenSafeToDestroy`).
#[derive(Clone)]
pub struct Endpoint {
    ep: EpRef,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local_addr", &self.ep.local_addr)
            .field("public_key", &self.ep.public_key)
            .finish()
    }
}

impl Endpoint {
    /// Binds the UDP socket and starts the driver task on the current tokio runtime.
    ///
    /// Errors: [`Error::AddrInUse`] if the port is taken, [`Error::Bind`] for other bind
    /// failures, [`Error::Io`] outside a tokio runtime or with an empty public-key suite set.
    pub fn bind(config: EndpointConfig) -> Result<Endpoint> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        let addr = config.bind;
        let io = {
            let _guard = runtime.enter();
            UdpIo::bind_with(SocketAddr::V4(addr), &config.udp)
        }
        .map_err(|e| match e {
            UdpError::Io(e) if e.kind() == std::io::ErrorKind::AddrInUse => Error::AddrInUse(addr),
            UdpError::Io(source) => Error::Bind { addr, source },
            e => Error::from(e),
        })?;
        let local_addr = match io.local_addr() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => return Err(Error::Protocol("socket is not IPv4")),
        };
        let key = config.private_key.unwrap_or_else(crate::keys::generate);
        let mut proto = config.proto;
        if proto.channel.jitter_seed == 0 {
            let mut seed = [0u8; 8];
            crate::keys::os_entropy(&mut seed);
            proto.channel.jitter_seed = u64::from_le_bytes(seed);
        }
        let max_datagram = proto
            .channel
            .mtu
            .max(cusp_proto::channel::MIN_TRANSMIT_BUFFER);
        let now = Instant::now();
        let hosts = HostTable::new(config.hosts, now);
        let ep = ProtoEndpoint::new(proto, key, Box::new(crate::keys::os_entropy), hosts);
        let public_key = ep.public_key().ok_or_else(|| {
            Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "no public-key suite configured",
            ))
        })?;
        let udp_stats = io.stats();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                ep,
                streams: Slots::default(),
                advertised: HashMap::default(),
                listeners: HashMap::default(),
                replies: HashMap::default(),
                next_reply: 0,
                contacts: HashMap::default(),
                close_requested: false,
                abort_requested: false,
                closing: None,
                closed: false,
                udp_stats,
                last_local: None,
            }),
            notify: Notify::new(),
            refs: AtomicUsize::new(0),
            local_addr,
            public_key,
            send_low_water: config.send_low_water,
            close_timeout: config.close_timeout,
            address: watch::Sender::new(None),
            stopped: watch::Sender::new(None),
        });
        let ep = EpRef::new(shared.clone());
        runtime.spawn(crate::driver::run(shared, io, max_datagram));
        Ok(Endpoint { ep })
    }

    /// The bound address (with the ephemeral port filled in).
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.ep.local_addr
    }

    /// Our public key (identity) for the default suite.
    pub fn public_key(&self) -> PublicKey {
        self.ep.public_key
    }

    /// Opens a stream to `service` at `addr` and waits until the channel to `addr` is
    /// established, returning the host that answered there and the stream
    /// (`spec/streams.md` §4.4 `contact`).
    ///
    /// Fails with [`Error::ContactFailed`] when the handshake gives up (after the
    /// configured handshake schedule: 127.5-255 s with the reference's timers). CUSP
    /// authenticates the peer's key but does not compare it with anything: check
    /// [`Host::key`] before trusting the stream. For zero round trips use
    /// [`Endpoint::open`], which returns at once.
    pub async fn contact(&self, addr: SocketAddrV4, service: u16) -> Result<(Host, OutStream)> {
        let stream = self.open(addr, service)?;
        let host = stream.established().await?;
        Ok((host, stream))
    }

    /// Opens a stream to `service` at `addr` without waiting: bytes written now are sent
    /// as soon as the channel establishes (zero round trips, `spec/streams.md` §3.6). If the
    /// contact fails, the stream's next write, `finish` or
    /// [`OutStream::established`] fails with [`Error::ContactFailed`].
    pub fn open(&self, addr: SocketAddrV4, service: u16) -> Result<OutStream> {
        let mut st = self.ep.lock_open()?;
        let now = Instant::now();
        let h = st.ep.hosts_mut().contact(now, addr, service)?;
        if self.ep.send_low_water > 0 {
            let _ = st
                .ep
                .hosts_mut()
                .set_send_low_water(h, self.ep.send_low_water);
        }
        st.ep.poll_requests(now);
        st.ep.hosts_mut().hold(h);
        if st.ep.hosts().stream_peer(h).is_none() {
            st.contacts.entry(addr).or_default().push(h);
            st.streams.entry(h).rare_mut().contact = Some(addr);
        }
        drop(st);
        self.ep.wake_driver();
        Ok(OutStream::new(self.ep.clone(), h))
    }

    /// Accepts streams from any host on a service: `Some(s)` for a well-known number in
    /// `1..=0x3FFF`, `None` for the next free dynamic number (0x4001..=0x7FFF;
    /// [`Incoming::service`] tells which). Dropping the [`Incoming`] stops advertising.
    pub fn advertise(&self, service: Option<u16>) -> Result<Incoming> {
        let mut st = self.ep.lock_open()?;
        let s = st
            .ep
            .hosts_mut()
            .advertise(service)
            .map_err(|e| Error::from_service(e, service))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let me = tx.downgrade();
        st.advertised.insert(s, tx);
        drop(st);
        Ok(Incoming::new(self.ep.clone(), rx, me, s, None))
    }

    /// Stops advertising `service` (no-op if unknown); its [`Incoming`] then ends.
    pub fn unadvertise(&self, service: u16) {
        let mut st = self.ep.0.lock();
        st.ep.hosts_mut().unadvertise(service);
        st.advertised.remove(&service);
    }

    /// The host with this key, if it is in the host table.
    pub fn host(&self, key: &PublicKey) -> Option<Host> {
        let st = self.ep.0.lock();
        st.ep.hosts().host_info(key)?;
        drop(st);
        Some(Host::new(self.ep.clone(), *key))
    }

    /// Every host in the host table.
    pub fn hosts(&self) -> Vec<Host> {
        let keys: Vec<PublicKey> = self.ep.0.lock().ep.hosts().hosts().copied().collect();
        keys.into_iter()
            .map(|k| Host::new(self.ep.clone(), k))
            .collect()
    }

    /// Our address as the peers see it (`spec/streams.md` §4.6 `onAddressChange`): `None`
    /// until a channel establishes, then updated whenever a channel reports a different
    /// one (it can flip-flop behind NAT or with several interfaces).
    pub fn watch_address(&self) -> watch::Receiver<Option<SocketAddrV4>> {
        self.ep.address.subscribe()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let st = self.ep.0.lock();
        Stats {
            proto: st.ep.stats(),
            udp: st.udp_stats,
        }
    }

    /// Whether the endpoint has no channels (what `whenSafeToDestroy` waits for).
    pub fn is_idle(&self) -> bool {
        self.ep.0.lock().ep.is_idle()
    }

    /// Closes the endpoint: stops accepting, resets every stream that is not finishing
    /// (out-streams shut down with `finish`/`shutdown` may complete), waits until every
    /// channel closed (the core is idle: safe to destroy, `spec/streams.md` §4.8) or
    /// [`EndpointConfig::close_timeout`] passed, then destroys the remaining channels and
    /// releases the socket. Returns `true` if the endpoint went idle before the timeout.
    /// Every later operation fails with [`Error::Closed`].
    pub async fn close(&self) -> bool {
        self.ep.0.lock().close_requested = true;
        self.ep.wake_driver();
        self.stopped().await
    }

    /// Destroys the endpoint at once, sending nothing (as if the process died): peers
    /// notice only through their own timeouts. For tests and emergencies.
    pub async fn abort(&self) {
        self.ep.0.lock().abort_requested = true;
        self.ep.wake_driver();
        self.stopped().await;
    }

    async fn stopped(&self) -> bool {
        let mut rx = self.ep.stopped.subscribe();
        let wait = rx.wait_for(|v| v.is_some());
        // The driver always stops within the close timeout; the margin covers a runtime
        // that is shutting down and will never run it again.
        let limit = self.ep.close_timeout + Duration::from_secs(2);
        match tokio::time::timeout(limit, wait).await {
            Ok(Ok(v)) => v.unwrap_or(false),
            _ => false,
        }
    }

    pub(crate) fn from_ref(ep: EpRef) -> Endpoint {
        Endpoint { ep }
    }
}

/// Wakes the collected wakers (after the lock was released).
pub(crate) fn wake_all(wake: &mut Vec<Waker>) {
    for w in wake.drain(..) {
        w.wake();
    }
}
