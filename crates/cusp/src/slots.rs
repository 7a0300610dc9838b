//! Per-stream wakeup state of the streams that have a live handle.
//!
//! Memory: an idle stream (nobody waiting, not ended, not shut down, not parked on a
//! contact) costs one entry in a set of live handles; a [`Slot`] exists only while there is
//! something to remember and goes again when its waiters were woken.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddrV4;
use std::task::Waker;

use cusp_proto::crypto::PublicKey;
use cusp_proto::host::StreamHandle;

use crate::endpoint::End;

/// What a stream handle may have to learn or wake on.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// A reader waiting for data, or a writer waiting for send buffer room.
    pub io: Option<Waker>,
    /// A task waiting for the end of an out-stream (finish) or for its contact.
    pub done: Option<Waker>,
    pub end: Option<End>,
    /// The peer, when the core may no longer know it (the stream ended, or its contact
    /// established); otherwise the core's `stream_peer` says.
    pub peer: Option<PublicKey>,
    /// Parked on a contact to this address.
    pub contact: Option<SocketAddrV4>,
    /// The application shut the out-stream down (it completes on its own).
    pub shutdown: bool,
}

/// The slot of a live handle with nothing recorded.
static EMPTY: Slot = Slot {
    io: None,
    done: None,
    end: None,
    peer: None,
    contact: None,
    shutdown: false,
};

impl Slot {
    fn is_empty(&self) -> bool {
        self.io.is_none()
            && self.done.is_none()
            && self.end.is_none()
            && self.peer.is_none()
            && self.contact.is_none()
            && !self.shutdown
    }

    /// Moves every waiter into `wake`.
    pub(crate) fn wake_all(&mut self, wake: &mut Vec<Waker>) {
        wake.extend(self.io.take());
        wake.extend(self.done.take());
    }
}

/// The slots of every stream with a live handle.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    live: HashSet<StreamHandle>,
    /// Slots of live handles with something recorded (never empty ones).
    recorded: HashMap<StreamHandle, Slot>,
}

/// Capacity of `recorded` kept once no slot is left.
const KEPT: usize = 64;

impl Slots {
    /// A handle for `h` was created.
    pub(crate) fn open(&mut self, h: StreamHandle) {
        self.live.insert(h);
    }

    /// The handle of `h` went away: its slot (empty if nothing was recorded), if it was live.
    pub(crate) fn close(&mut self, h: StreamHandle) -> Option<Slot> {
        let slot = self.recorded.remove(&h);
        self.live.remove(&h).then(|| slot.unwrap_or_default())
    }

    /// The slot of `h` if its handle is live.
    pub(crate) fn get(&self, h: StreamHandle) -> Option<&Slot> {
        if !self.live.contains(&h) {
            return None;
        }
        Some(self.recorded.get(&h).unwrap_or(&EMPTY))
    }

    /// The slot of `h` for recording something, if its handle is live.
    pub(crate) fn entry(&mut self, h: StreamHandle) -> Option<&mut Slot> {
        if !self.live.contains(&h) {
            return None;
        }
        Some(self.recorded.entry(h).or_default())
    }

    /// Runs `f` on the slot of `h` if it holds anything, and drops the slot if it is empty
    /// then.
    pub(crate) fn with_recorded(&mut self, h: StreamHandle, f: impl FnOnce(&mut Slot)) {
        let Some(slot) = self.recorded.get_mut(&h) else {
            return;
        };
        f(slot);
        if slot.is_empty() {
            self.recorded.remove(&h);
            if self.recorded.is_empty() && self.recorded.capacity() > KEPT {
                // Every waiter of a burst was woken: give the room back.
                self.recorded = HashMap::new();
            }
        }
    }

    /// Handles of every live stream.
    pub(crate) fn handles(&self) -> Vec<StreamHandle> {
        self.live.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_slots_are_recognised() {
        assert!(EMPTY.is_empty() && Slot::default().is_empty());
        let slot = Slot {
            shutdown: true,
            ..Slot::default()
        };
        assert!(!slot.is_empty());
    }
}
