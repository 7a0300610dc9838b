//! Per-stream wakeup state of the streams that have a live handle.
//!
//! Memory: an idle stream (nobody waiting, not ended, not shut down, not parked on a
//! contact) costs one map entry with an empty pointer; the [`Slot`] is allocated only while
//! there is something to remember and freed again when its waiters were woken.

use std::collections::HashMap;
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
    map: HashMap<StreamHandle, Option<Box<Slot>>>,
}

impl Slots {
    /// A handle for `h` was created.
    pub(crate) fn open(&mut self, h: StreamHandle) {
        self.map.insert(h, None);
    }

    /// The handle of `h` went away: its slot (empty if nothing was recorded), if it was live.
    pub(crate) fn close(&mut self, h: StreamHandle) -> Option<Slot> {
        self.map
            .remove(&h)
            .map(|s| s.map(|b| *b).unwrap_or_default())
    }

    /// The slot of `h` if its handle is live.
    pub(crate) fn get(&self, h: StreamHandle) -> Option<&Slot> {
        Some(self.map.get(&h)?.as_deref().unwrap_or(&EMPTY))
    }

    /// The slot of `h` for recording something, if its handle is live.
    pub(crate) fn entry(&mut self, h: StreamHandle) -> Option<&mut Slot> {
        Some(self.map.get_mut(&h)?.get_or_insert_default())
    }

    /// Runs `f` on the slot of `h` if it holds anything, and frees it if it is empty then.
    pub(crate) fn with_recorded(&mut self, h: StreamHandle, f: impl FnOnce(&mut Slot)) {
        if let Some(cell) = self.map.get_mut(&h)
            && let Some(slot) = cell
        {
            f(slot);
            if slot.is_empty() {
                *cell = None;
            }
        }
    }

    /// Handles of every live stream.
    pub(crate) fn handles(&self) -> Vec<StreamHandle> {
        self.map.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_handle_costs_a_key_and_a_null_pointer() {
        assert_eq!(std::mem::size_of::<Option<Box<Slot>>>(), 8);
        assert!(EMPTY.is_empty() && Slot::default().is_empty());
    }
}
