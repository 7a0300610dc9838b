//! Per-stream wakeup state of the streams that have a live handle.
//!
//! Memory: an idle stream (nobody waiting, not ended, not shut down, not parked on a
//! contact) costs nothing here (the core's record notes that a handle holds it,
//! `HostTable::hold`); a [`Slot`] exists only while there is something to remember and
//! goes again when its waiters were woken, or with the handle.

use cusp_proto::hash::HashMap;
use std::net::SocketAddrV4;
use std::task::Waker;

use cusp_proto::crypto::PublicKey;
use cusp_proto::host::StreamHandle;

use crate::endpoint::End;

/// What a stream handle may have to learn or wake on.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// The task waiting on the stream: a reader for data, a writer for send buffer room,
    /// or a task for the end of an out-stream (finish) or for its contact. A handle has
    /// one waiter at a time (waiting needs `&mut` or consumes it, except `established`),
    /// and a wakeup meant for another kind of wait is merely spurious.
    pub waiter: Option<Waker>,
    /// Everything else, rarely present.
    rare: Option<Box<Rare>>,
}

/// The rarely needed part of a [`Slot`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Rare {
    pub end: Option<End>,
    /// The peer, when the core may no longer know it (the stream ended); otherwise the
    /// core's `stream_peer` says.
    pub peer: Option<PublicKey>,
    /// Parked on a contact to this address.
    pub contact: Option<SocketAddrV4>,
    /// The application shut the out-stream down (it completes on its own).
    pub shutdown: bool,
}

impl Slot {
    fn is_empty(&self) -> bool {
        self.waiter.is_none() && self.rare.is_none()
    }

    fn rare(&self) -> Option<&Rare> {
        self.rare.as_deref()
    }

    /// The rare part, allocated if needed, for recording something.
    pub(crate) fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_default()
    }

    /// Drops the rare part if nothing is left in it.
    fn tidy(&mut self) {
        if self.rare.as_deref() == Some(&Rare::default()) {
            self.rare = None;
        }
    }

    pub(crate) fn end(&self) -> Option<End> {
        self.rare()?.end
    }

    pub(crate) fn peer(&self) -> Option<PublicKey> {
        self.rare()?.peer
    }

    pub(crate) fn contact(&self) -> Option<SocketAddrV4> {
        self.rare()?.contact
    }

    pub(crate) fn shutdown(&self) -> bool {
        self.rare().is_some_and(|r| r.shutdown)
    }

    /// Moves the waiter (if any) into `wake`.
    pub(crate) fn wake_all(&mut self, wake: &mut Vec<Waker>) {
        wake.extend(self.waiter.take());
    }
}

/// The slots of the live handles with something recorded. Only a live handle's own
/// operations, its final event, its contact and the endpoint's closing record anything,
/// and the handle's drop removes its slot.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    recorded: HashMap<StreamHandle, Slot>,
}

/// Capacity of `recorded` kept once no slot is left.
const KEPT: usize = 64;

impl Slots {
    /// The handle of `h` went away: its slot (empty if nothing was recorded).
    pub(crate) fn close(&mut self, h: StreamHandle) -> Slot {
        self.recorded.remove(&h).unwrap_or_default()
    }

    /// The slot of `h`, if anything is recorded.
    pub(crate) fn get(&self, h: StreamHandle) -> Option<&Slot> {
        self.recorded.get(&h)
    }

    /// The slot of `h` for recording something (`h`'s handle must be live).
    pub(crate) fn entry(&mut self, h: StreamHandle) -> &mut Slot {
        self.recorded.entry(h).or_default()
    }

    /// Runs `f` on the slot of `h` if it holds anything, and drops the slot if it is empty
    /// then.
    pub(crate) fn with_recorded(&mut self, h: StreamHandle, f: impl FnOnce(&mut Slot)) {
        let Some(slot) = self.recorded.get_mut(&h) else {
            return;
        };
        f(slot);
        slot.tidy();
        if slot.is_empty() {
            self.recorded.remove(&h);
            if self.recorded.is_empty() && self.recorded.capacity() > KEPT {
                // Every waiter of a burst was woken: give the room back.
                self.recorded = HashMap::default();
            }
        }
    }

    /// The handles with a slot.
    pub(crate) fn handles(&self) -> impl Iterator<Item = StreamHandle> + '_ {
        self.recorded.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_stream_costs_a_waker_and_a_pointer() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
        assert!(Slot::default().is_empty());
        let mut slot = Slot::default();
        slot.rare_mut().shutdown = true;
        assert!(!slot.is_empty() && slot.shutdown());
        slot.rare_mut().shutdown = false;
        slot.tidy();
        assert!(slot.is_empty());
    }
}
