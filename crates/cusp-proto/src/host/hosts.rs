//! The hosts of a table by public key, each in a numbered slot so a stream
//! record names its host with a 4-byte [`HostId`] instead of a 32-byte key.

use crate::hash::HashMap;

use crate::crypto::PublicKey;

use super::state::Host;
use super::streams::HostId;

/// Hosts by key and by slot.
#[derive(Debug, Default)]
pub(super) struct Hosts {
    slots: Vec<Option<Host>>,
    /// Vacant slots, reused last-freed first.
    free: Vec<HostId>,
    by_key: HashMap<PublicKey, HostId>,
}

impl Hosts {
    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub(super) fn contains_key(&self, key: &PublicKey) -> bool {
        self.by_key.contains_key(key)
    }

    pub(super) fn get(&self, key: &PublicKey) -> Option<&Host> {
        self.by_id(*self.by_key.get(key)?)
    }

    pub(super) fn get_mut(&mut self, key: &PublicKey) -> Option<&mut Host> {
        self.by_id_mut(*self.by_key.get(key)?)
    }

    pub(super) fn by_id(&self, id: HostId) -> Option<&Host> {
        self.slots.get(id as usize)?.as_ref()
    }

    pub(super) fn by_id_mut(&mut self, id: HostId) -> Option<&mut Host> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    /// Adds the host `make(id)` under `key` (which must be new).
    pub(super) fn insert_with(&mut self, key: PublicKey, make: impl FnOnce(HostId) -> Host) {
        let id = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            HostId::try_from(self.slots.len() - 1).expect("fewer than 2^32 hosts")
        });
        self.slots[id as usize] = Some(make(id));
        self.by_key.insert(key, id);
    }

    /// Removes the host of `key`; its slot may be reused at once.
    pub(super) fn remove(&mut self, key: &PublicKey) -> Option<Host> {
        let id = self.by_key.remove(key)?;
        self.free.push(id);
        self.slots[id as usize].take()
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.values().map(|h| &h.key)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Host> {
        self.slots.iter().flatten()
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Host> {
        self.slots.iter_mut().flatten()
    }
}
