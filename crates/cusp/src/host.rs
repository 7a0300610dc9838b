//! Hosts (peers by public key) and listeners.

use std::net::SocketAddrV4;
use std::task::{Context, Poll};
use std::time::Instant;

use cusp_proto::channel::ChannelStats;
use cusp_proto::crypto::PublicKey;
use cusp_proto::host::{HostInfo, HostStats};
use tokio::sync::{mpsc, oneshot};

use crate::endpoint::{Accepted, Endpoint, EpRef, State};
use crate::error::{Error, Result};
use crate::stream::OutStream;

/// A peer, named by its public key (`spec/streams.md` §5.3). It persists across channels
/// (reconnects, address changes). A cheap handle: `Clone`, compared by key.
#[derive(Clone)]
pub struct Host {
    ep: EpRef,
    key: PublicKey,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Host({})", self.key)
    }
}

impl PartialEq for Host {
    fn eq(&self, other: &Host) -> bool {
        self.key == other.key
    }
}

impl Eq for Host {}

impl Host {
    pub(crate) fn new(ep: EpRef, key: PublicKey) -> Host {
        Host { ep, key }
    }

    /// The peer's public key (authenticated by the handshake; compare it with the key you
    /// expect before trusting the peer).
    pub fn key(&self) -> PublicKey {
        self.key
    }

    /// The endpoint this host belongs to.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::from_ref(self.ep.clone())
    }

    /// Opens a stream to `service` on this host (zero round trips; nothing is sent before
    /// the first write, shutdown or reset). Reconnects if the host has no channel.
    pub fn connect(&self, service: u16) -> Result<OutStream> {
        let mut st = self.ep.lock_open()?;
        let now = Instant::now();
        let h = st.ep.hosts_mut().connect(now, &self.key, service)?;
        if self.ep.send_low_water > 0 {
            let _ = st
                .ep
                .hosts_mut()
                .set_send_low_water(h, self.ep.send_low_water);
        }
        st.ep.poll_requests(now);
        st.ep.hosts_mut().hold(h);
        drop(st);
        self.ep.wake_driver();
        Ok(OutStream::new(self.ep.clone(), h))
    }

    /// Opens a per-host service number (0x8001..=0xFFFF) that accepts streams from this
    /// host only, e.g. to receive replies (`spec/streams.md` §4.3). Dropping the
    /// [`Incoming`] closes it.
    pub fn listen(&self) -> Result<(u16, Incoming)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let me = tx.downgrade();
        let s = self.open_service(|st, s| {
            st.listeners.insert((self.key, s), tx);
        })?;
        Ok((s, Incoming::new(self.ep.clone(), rx, me, s, Some(self.key))))
    }

    /// Opens a per-host service number and lets `register` record what takes its
    /// streams, under one lock.
    fn open_service(&self, register: impl FnOnce(&mut State, u16)) -> Result<u16> {
        let mut st = self.ep.lock_open()?;
        let s = st
            .ep
            .hosts_mut()
            .listen(&self.key)
            .map_err(|e| Error::from_service(e, None))?;
        register(&mut st, s);
        Ok(s)
    }

    /// [`Host::listen`] for exactly one stream (a reply): cheaper than an [`Incoming`],
    /// and the service closes as soon as its stream arrives.
    pub(crate) fn listen_once(&self) -> Result<(u16, ReplyListener)> {
        let (tx, rx) = oneshot::channel();
        let mut token = 0;
        let s = self.open_service(|st, s| {
            st.next_reply += 1;
            token = st.next_reply;
            st.replies.insert((self.key, s), (token, tx));
        })?;
        let ep = self.ep.clone();
        let (peer, service) = (self.key, s);
        let listener = ReplyListener {
            ep,
            rx,
            peer,
            service,
            token,
        };
        Ok((s, listener))
    }

    /// A snapshot: addresses, whether a channel is bound, live streams, listeners, counters.
    /// `None` once the host left the host table.
    pub fn info(&self) -> Option<HostInfo> {
        self.ep.0.lock().ep.hosts().host_info(&self.key)
    }

    /// The peer's address while a channel is bound.
    pub fn remote_addr(&self) -> Option<SocketAddrV4> {
        self.info().filter(|i| i.bound).map(|i| i.remote_addr)
    }

    /// Our address as the peer sees it, while a channel is bound.
    pub fn local_addr(&self) -> Option<SocketAddrV4> {
        self.info().filter(|i| i.bound).map(|i| i.local_addr)
    }

    /// Stream-layer counters (`spec/streams.md` §4.12).
    pub fn stats(&self) -> Option<HostStats> {
        self.info().map(|i| i.stats)
    }

    /// Counters of the channel bound to this host (datagrams sent and received, tracked
    /// datagrams acknowledged or declared lost), while one is bound. A channel replaced
    /// after an address change starts from zero.
    pub fn channel_stats(&self) -> Option<ChannelStats> {
        let st = self.ep.0.lock();
        let addr = st.ep.bound_channel(&self.key)?;
        st.ep.channel(addr).map(|(_, stats)| stats)
    }
}

/// Incoming streams of an advertised service ([`Endpoint::advertise`]) or of a per-host
/// listener ([`Host::listen`]). Dropping it stops accepting (`unadvertise` / `unlisten`)
/// and resets streams that were not accepted.
pub struct Incoming {
    ep: EpRef,
    rx: mpsc::UnboundedReceiver<Accepted>,
    /// Our sender in the endpoint's table, to recognise it on drop.
    me: mpsc::WeakUnboundedSender<Accepted>,
    service: u16,
    peer: Option<PublicKey>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("service", &self.service)
            .finish()
    }
}

impl Incoming {
    pub(crate) fn new(
        ep: EpRef,
        rx: mpsc::UnboundedReceiver<Accepted>,
        me: mpsc::WeakUnboundedSender<Accepted>,
        service: u16,
        peer: Option<PublicKey>,
    ) -> Incoming {
        Incoming {
            ep,
            rx,
            me,
            service,
            peer,
        }
    }

    /// The service number.
    pub fn service(&self) -> u16 {
        self.service
    }

    /// The next stream: the peer, the service it was opened to, the stream. `None` once the
    /// endpoint closed or the service was unadvertised.
    pub async fn accept(&mut self) -> Option<Accepted> {
        self.rx.recv().await
    }

    /// Polls for the next stream (see [`Incoming::accept`]).
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<Accepted>> {
        self.rx.poll_recv(cx)
    }
}

/// The one stream of a [`Host::listen_once`] service. Dropping it before the stream
/// arrived closes the service.
pub(crate) struct ReplyListener {
    ep: EpRef,
    rx: oneshot::Receiver<Accepted>,
    peer: PublicKey,
    service: u16,
    /// Tells our entry in the endpoint's table from a later one for the same service.
    token: u64,
}

impl ReplyListener {
    /// The stream; `None` if the endpoint closed first.
    pub(crate) async fn accept(&mut self) -> Option<Accepted> {
        (&mut self.rx).await.ok()
    }
}

impl Drop for ReplyListener {
    fn drop(&mut self) {
        let key = (self.peer, self.service);
        let mut st = self.ep.0.lock();
        if st.replies.get(&key).is_some_and(|(t, _)| *t == self.token) {
            st.replies.remove(&key);
            st.ep.hosts_mut().unlisten(&self.peer, self.service);
        }
        // A stream delivered but never accepted is dropped (and reset) with `rx`, after
        // the lock is gone.
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        let mine = self.me.upgrade();
        let is_mine = |tx: &mpsc::UnboundedSender<Accepted>| {
            mine.as_ref().is_some_and(|m| m.same_channel(tx))
        };
        let mut st = self.ep.0.lock();
        match self.peer {
            Some(peer) => {
                let ours = st.listeners.get(&(peer, self.service)).is_some_and(is_mine);
                if ours {
                    st.listeners.remove(&(peer, self.service));
                    st.ep.hosts_mut().unlisten(&peer, self.service);
                }
            }
            None => {
                let ours = st.advertised.get(&self.service).is_some_and(is_mine);
                if ours {
                    st.advertised.remove(&self.service);
                    st.ep.hosts_mut().unadvertise(self.service);
                }
            }
        }
        drop(st);
        drop(mine);
        // Streams queued but never accepted are dropped (and reset) after the lock is gone.
        self.rx.close();
    }
}
