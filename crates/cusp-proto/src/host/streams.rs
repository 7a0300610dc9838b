//! The stream records of a host table (`spec/streams.md` §3.1), in one paged
//! slab indexed by the slot bits of their [`StreamHandle`].
//!
//! Memory: a record is stored once, in place, with no per-entry key or hash;
//! pages of [`PAGE`] records are allocated as the table grows, so the unused
//! tail is at most one page (a `HashMap` or a doubling `Vec` can leave up to
//! half of its capacity unused). Freed slots are reused; the pages are kept
//! until the table is empty again.
//!
//! A handle is `serial << SLOT_BITS | slot`: the serial counts every stream
//! the table ever created (starting at 1), so handles sort in creation order
//! and a stale handle never matches the record now in its slot.
//!
//! Each host threads its records on an intrusive doubly linked list
//! ([`Links`]), so it can visit its own streams without a per-host map.

use crate::hash::HashMap;

use crate::stream::scheduler::SchedEntry;

use super::flags::Flags;
use super::state::{InRec, OutRec};
use super::types::StreamHandle;

/// Records per page.
const PAGE: usize = 64;
/// Bits of a handle that name the slot (at most 2^24 live streams per table).
const SLOT_BITS: u32 = 24;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
/// End of a list.
const NIL: u32 = u32::MAX;

/// Index of a host in the table's host slab.
pub(super) type HostId = u32;

/// Who holds a stream record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Owner {
    Host(HostId),
    /// Parked on a contact, waiting for its channel (the contact lists it).
    Pending,
}

/// How a record stores its [`Owner`]: the host's id, or [`NIL`] while parked.
impl Owner {
    fn encode(self) -> u32 {
        match self {
            Owner::Host(id) => id,
            Owner::Pending => NIL,
        }
    }

    fn decode(v: u32) -> Owner {
        if v == NIL {
            Owner::Pending
        } else {
            Owner::Host(v)
        }
    }
}

/// The direction-specific part of a record.
#[derive(Debug)]
pub(super) enum Kind {
    Out(OutRec),
    In(InRec),
}

/// One stream of the table.
#[derive(Debug)]
pub(super) struct Rec {
    pub handle: StreamHandle,
    /// [`Owner::encode`]d.
    owner: u32,
    /// The service the stream was opened to.
    pub service: u16,
    /// Its place in the owning host's scheduler (unused while parked).
    pub sched: SchedEntry,
    links: Links,
    pub kind: Kind,
}

impl Rec {
    pub(super) fn owner(&self) -> Owner {
        Owner::decode(self.owner)
    }

    pub(super) fn set_owner(&mut self, owner: Owner) {
        self.owner = owner.encode();
    }
}

impl Kind {
    pub(super) fn flags(&self) -> Flags {
        match self {
            Kind::Out(r) => r.flags,
            Kind::In(r) => r.flags,
        }
    }

    pub(super) fn flags_mut(&mut self) -> &mut Flags {
        match self {
            Kind::Out(r) => &mut r.flags,
            Kind::In(r) => &mut r.flags,
        }
    }
}

/// Neighbours in the owning host's list of streams.
#[derive(Clone, Copy, Debug)]
struct Links {
    prev: u32,
    next: u32,
}

impl Links {
    const UNLINKED: Links = Links {
        prev: NIL,
        next: NIL,
    };
}

/// Head of one host's list of streams.
#[derive(Debug)]
pub(super) struct List {
    head: u32,
}

impl Default for List {
    fn default() -> Self {
        List { head: NIL }
    }
}

impl List {
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.head == NIL
    }
}

/// The stream records of one table.
#[derive(Debug, Default)]
pub(super) struct Streams {
    pages: Vec<Box<[Option<Rec>]>>,
    /// Vacant slots below `high`, reused last-freed first.
    free: Vec<u32>,
    /// Slots ever used since the table was last empty.
    high: u32,
    len: usize,
    serial: u64,
}

fn slot(h: StreamHandle) -> u32 {
    (h.0 & SLOT_MASK) as u32
}

/// The creation number of `h` (1 for the table's first stream).
pub(super) fn serial(h: StreamHandle) -> u64 {
    h.0 >> SLOT_BITS
}

impl Streams {
    fn cell(&self, slot: u32) -> &Option<Rec> {
        let s = slot as usize;
        &self.pages[s / PAGE][s % PAGE]
    }

    fn cell_mut(&mut self, slot: u32) -> &mut Option<Rec> {
        let s = slot as usize;
        &mut self.pages[s / PAGE][s % PAGE]
    }

    fn at_mut(&mut self, slot: u32) -> &mut Rec {
        self.cell_mut(slot)
            .as_mut()
            .expect("linked slot is occupied")
    }

    /// Number of records.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Stores a new record and returns its (fresh) handle; `None` when the
    /// table holds 2^24 streams already.
    pub(super) fn insert(
        &mut self,
        owner: Owner,
        service: u16,
        kind: Kind,
    ) -> Option<StreamHandle> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None if u64::from(self.high) <= SLOT_MASK => {
                if self.high as usize == self.pages.len() * PAGE {
                    self.pages.push((0..PAGE).map(|_| None).collect());
                }
                self.high += 1;
                self.high - 1
            }
            None => return None,
        };
        self.serial += 1;
        let handle = StreamHandle(self.serial << SLOT_BITS | u64::from(slot));
        *self.cell_mut(slot) = Some(Rec {
            handle,
            owner: owner.encode(),
            service,
            sched: SchedEntry::default(),
            links: Links::UNLINKED,
            kind,
        });
        self.len += 1;
        Some(handle)
    }

    /// The record of `h`, if it still exists.
    pub(super) fn get(&self, h: StreamHandle) -> Option<&Rec> {
        let s = slot(h);
        if s >= self.high {
            return None;
        }
        self.cell(s).as_ref().filter(|r| r.handle == h)
    }

    /// The record of `h`, if it still exists.
    pub(super) fn get_mut(&mut self, h: StreamHandle) -> Option<&mut Rec> {
        let s = slot(h);
        if s >= self.high {
            return None;
        }
        self.cell_mut(s).as_mut().filter(|r| r.handle == h)
    }

    /// The out-stream record of `h`.
    pub(super) fn out(&self, h: StreamHandle) -> Option<&OutRec> {
        match &self.get(h)?.kind {
            Kind::Out(r) => Some(r),
            Kind::In(_) => None,
        }
    }

    /// The out-stream record of `h`.
    pub(super) fn out_mut(&mut self, h: StreamHandle) -> Option<&mut OutRec> {
        match &mut self.get_mut(h)?.kind {
            Kind::Out(r) => Some(r),
            Kind::In(_) => None,
        }
    }

    /// The in-stream record of `h`.
    pub(super) fn in_rec(&self, h: StreamHandle) -> Option<&InRec> {
        match &self.get(h)?.kind {
            Kind::In(r) => Some(r),
            Kind::Out(_) => None,
        }
    }

    /// The in-stream record of `h`.
    pub(super) fn in_mut(&mut self, h: StreamHandle) -> Option<&mut InRec> {
        match &mut self.get_mut(h)?.kind {
            Kind::In(r) => Some(r),
            Kind::Out(_) => None,
        }
    }

    /// The handle of the record in `slot`, if any.
    fn handle_at(&self, slot: u32) -> Option<StreamHandle> {
        if slot >= self.high {
            return None;
        }
        self.cell(slot).as_ref().map(|r| r.handle)
    }

    /// Removes the record of `h` (it must not be on a list any more).
    pub(super) fn remove(&mut self, h: StreamHandle) -> Option<Rec> {
        self.get(h)?;
        let s = slot(h);
        let rec = self.cell_mut(s).take();
        self.len -= 1;
        if self.len == 0 {
            // Everything is gone: give the pages back.
            *self = Streams {
                serial: self.serial,
                ..Streams::default()
            };
        } else {
            self.free.push(s);
        }
        rec
    }

    /// Puts `h` at the front of `list`.
    pub(super) fn link(&mut self, list: &mut List, h: StreamHandle) {
        let s = slot(h);
        let old = list.head;
        if old != NIL {
            self.at_mut(old).links.prev = s;
        }
        self.at_mut(s).links = Links {
            prev: NIL,
            next: old,
        };
        list.head = s;
    }

    /// Takes `h` off `list`.
    pub(super) fn unlink(&mut self, list: &mut List, h: StreamHandle) {
        let s = slot(h);
        let Links { prev, next } = std::mem::replace(&mut self.at_mut(s).links, Links::UNLINKED);
        if prev == NIL {
            list.head = next;
        } else {
            self.at_mut(prev).links.next = next;
        }
        if next != NIL {
            self.at_mut(next).links.prev = prev;
        }
    }

    /// The records on `list`.
    pub(super) fn iter<'a>(&'a self, list: &List) -> impl Iterator<Item = &'a Rec> + 'a {
        let mut cur = list.head;
        std::iter::from_fn(move || {
            if cur == NIL {
                return None;
            }
            let r = self.cell(cur).as_ref().expect("linked slot is occupied");
            cur = r.links.next;
            Some(r)
        })
    }

    /// Every record of the table.
    pub(super) fn all(&self) -> impl Iterator<Item = &Rec> {
        self.pages.iter().flat_map(|p| p.iter().flatten())
    }

    /// The handles on `list`, sorted (creation order).
    pub(super) fn handles(&self, list: &List) -> Vec<StreamHandle> {
        let mut v: Vec<StreamHandle> = self.iter(list).map(|r| r.handle).collect();
        v.sort_unstable();
        v
    }
}

/// A host's streams by wire id: a table indexed by id for our out-stream ids
/// (allocated densely from 0, 4-byte slots), a map for the peer's in-stream
/// ids (so a sparse choice cannot inflate it; 6-byte entries).
#[derive(Debug, Default)]
pub(super) struct WireIds {
    outs: Vec<u32>,
    ins: HashMap<u16, PackedSlot>,
}

/// A slot in 3 bytes (slots have [`SLOT_BITS`] bits), so that an entry keyed
/// by a `u16` wire id takes 6 bytes instead of 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PackedSlot([u8; 3]);

impl PackedSlot {
    fn new(slot: u32) -> Self {
        let [a, b, c, _] = slot.to_le_bytes();
        PackedSlot([a, b, c])
    }

    fn get(self) -> u32 {
        let [a, b, c] = self.0;
        u32::from_le_bytes([a, b, c, 0])
    }
}

impl WireIds {
    pub(super) fn insert_out(&mut self, id: u16, h: StreamHandle) {
        let i = usize::from(id);
        if self.outs.len() <= i {
            self.outs.resize((i + 1).next_power_of_two(), NIL);
        }
        self.outs[i] = slot(h);
    }

    pub(super) fn remove_out(&mut self, id: u16) {
        if let Some(s) = self.outs.get_mut(usize::from(id)) {
            *s = NIL;
        }
    }

    /// The out-stream with wire id `id`.
    pub(super) fn out(&self, streams: &Streams, id: u16) -> Option<StreamHandle> {
        let s = *self.outs.get(usize::from(id))?;
        streams.handle_at(s)
    }

    pub(super) fn insert_in(&mut self, id: u16, h: StreamHandle) {
        self.ins.insert(id, PackedSlot::new(slot(h)));
    }

    /// Unmaps `id` if it still names `h`.
    pub(super) fn remove_in(&mut self, id: u16, h: StreamHandle) {
        if self.ins.get(&id) == Some(&PackedSlot::new(slot(h))) {
            self.ins.remove(&id);
        }
    }

    /// The in-stream with wire id `id`.
    pub(super) fn in_stream(&self, streams: &Streams, id: u16) -> Option<StreamHandle> {
        streams.handle_at(self.ins.get(&id)?.get())
    }

    pub(super) fn clear(&mut self) {
        *self = WireIds::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{InStream, OutStream};

    fn out() -> Kind {
        Kind::Out(OutRec::new(OutStream::default()))
    }

    /// Every open stream costs one record (plus its wire-id entry): keep it small.
    #[test]
    fn records_stay_small() {
        use std::mem::size_of;
        assert!(size_of::<OutStream>() <= 32, "{}", size_of::<OutStream>());
        assert!(size_of::<InStream>() <= 40, "{}", size_of::<InStream>());
        assert!(size_of::<OutRec>() <= 48, "{}", size_of::<OutRec>());
        assert!(size_of::<InRec>() <= 56, "{}", size_of::<InRec>());
        // The out-record fits beside the in-record's niche: no separate tag.
        assert!(size_of::<Kind>() <= 56, "{}", size_of::<Kind>());
        assert!(size_of::<Rec>() <= 88, "{}", size_of::<Rec>());
        assert_eq!(size_of::<Option<Rec>>(), size_of::<Rec>());
        assert_eq!(size_of::<(u16, PackedSlot)>(), 6);
        let top = SLOT_MASK as u32;
        assert_eq!(
            (PackedSlot::new(top).get(), PackedSlot::new(5).get()),
            (top, 5)
        );
    }

    #[test]
    fn handles_are_unique_and_stale_ones_miss() {
        let mut s = Streams::default();
        let a = s.insert(Owner::Host(0), 1, out()).unwrap();
        let b = s.insert(Owner::Host(0), 1, out()).unwrap();
        assert!(a < b);
        assert!(s.remove(a).is_some());
        let c = s.insert(Owner::Host(0), 1, out()).unwrap();
        assert_eq!(slot(a), slot(c), "slot reused");
        assert!(s.get(a).is_none() && s.remove(a).is_none());
        assert!(s.get(c).is_some() && b < c);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn lists_link_and_unlink_anywhere() {
        let mut s = Streams::default();
        let mut l = List::default();
        let hs: Vec<_> = (0..5)
            .map(|_| s.insert(Owner::Host(0), 1, out()).unwrap())
            .collect();
        for &h in &hs {
            s.link(&mut l, h);
        }
        s.unlink(&mut l, hs[2]);
        s.unlink(&mut l, hs[4]);
        s.unlink(&mut l, hs[0]);
        assert_eq!(s.handles(&l), [hs[1], hs[3]]);
        s.unlink(&mut l, hs[1]);
        s.unlink(&mut l, hs[3]);
        assert!(l.is_empty());
    }

    #[test]
    fn pages_grow_by_one_and_go_back_when_empty() {
        let mut s = Streams::default();
        let hs: Vec<_> = (0..=PAGE)
            .map(|_| s.insert(Owner::Host(0), 1, out()).unwrap())
            .collect();
        assert_eq!(s.pages.len(), 2);
        let i = s
            .insert(
                Owner::Host(1),
                1,
                Kind::In(InRec::new(InStream::default(), 0, true)),
            )
            .unwrap();
        assert!(s.in_rec(i).is_some() && s.out(i).is_none());
        for h in hs.into_iter().chain([i]) {
            s.remove(h).unwrap();
        }
        assert!(s.pages.is_empty() && s.len() == 0);
        let next = s.insert(Owner::Host(0), 1, out()).unwrap();
        assert_eq!(slot(next), 0);
        assert!(next > i, "serials keep counting");
    }

    #[test]
    fn wire_ids_find_their_streams() {
        let mut s = Streams::default();
        let mut ids = WireIds::default();
        let (a, b) = (
            s.insert(Owner::Host(0), 1, out()).unwrap(),
            s.insert(Owner::Host(0), 1, out()).unwrap(),
        );
        ids.insert_out(5, a);
        ids.insert_in(0xFFFE, b);
        assert_eq!(
            ids.outs.len(),
            8,
            "out ids: a table up to the next power of two"
        );
        assert_eq!(
            (ids.out(&s, 5), ids.in_stream(&s, 0xFFFE)),
            (Some(a), Some(b))
        );
        assert_eq!(
            (ids.out(&s, 4), ids.out(&s, 900), ids.in_stream(&s, 5)),
            (None, None, None)
        );
        ids.remove_in(0xFFFE, a);
        assert_eq!(
            ids.in_stream(&s, 0xFFFE),
            Some(b),
            "only unmapped for its own stream"
        );
        ids.remove_in(0xFFFE, b);
        ids.remove_out(5);
        assert_eq!((ids.out(&s, 5), ids.in_stream(&s, 0xFFFE)), (None, None));
    }
}
