//! Stream-id allocation and sequence nibbles of one host (`spec/streams.md`
//! §1.5, §1.8).
//!
//! Out-stream ids are allocated lazily at a stream's first pull from a LIFO
//! free list; when it is empty the id space doubles (1, 2, 4, ... 65536 ids,
//! 0xFFFF excluded) and the new ids are handed out in ascending order. A
//! completed out-stream's id is parked in a 16-slot cooldown ring and becomes
//! reusable only after 16 further packets were built for the host.
//!
//! `connect` should call [`StreamIds::reserve`], which fails gracefully
//! ([`IdsExhausted`]) once 65535 out-streams hold or are promised an id
//! (spec §8 Q5); [`StreamIds::allocate`] then consumes the reservation.

use super::COOLDOWN_SLOTS;

/// Number of usable ids (0..=0xFFFE).
pub const USABLE_IDS: usize = 0xFFFF;

/// All 65535 usable out-stream ids are in use or promised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("all 65535 stream ids of this host are in use")]
pub struct IdsExhausted;

/// Id tables of one host.
#[derive(Debug)]
pub struct StreamIds {
    /// Per id: writer sequence in the high nibble, reader sequence in the low one.
    seq: Vec<u8>,
    /// Per id: currently allocated to a live out-stream.
    allocated: Vec<bool>,
    /// Size of the out-stream id space handed out so far (power of two).
    out_len: usize,
    /// LIFO free list (top = next id).
    free: Vec<u16>,
    cooldown: [Vec<u16>; COOLDOWN_SLOTS],
    cooldown_pos: usize,
    live_out: usize,
    reserved: usize,
}

impl Default for StreamIds {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamIds {
    /// Fresh tables: everything zero, the first id handed out is 0.
    pub fn new() -> Self {
        StreamIds {
            seq: vec![0],
            allocated: vec![false],
            out_len: 1,
            free: vec![0],
            cooldown: Default::default(),
            cooldown_pos: 0,
            live_out: 0,
            reserved: 0,
        }
    }

    /// Promises an id to a new out-stream (call at `connect`). Fails when
    /// 65535 out-streams already hold or were promised one.
    // spec: streams.md §1.8 MUST fail gracefully, §8 Q5
    pub fn reserve(&mut self) -> Result<(), IdsExhausted> {
        if self.live_out + self.reserved >= USABLE_IDS {
            return Err(IdsExhausted);
        }
        self.reserved += 1;
        Ok(())
    }

    /// Returns a promise that will not be used (the stream completed before
    /// its first pull).
    pub fn cancel_reservation(&mut self) {
        self.reserved = self.reserved.saturating_sub(1);
    }

    /// Allocates an id for a reserved stream at its first pull. `None` when
    /// every free id is still cooling down (try again after later packets) or
    /// nothing was reserved and the id space is exhausted.
    // spec: streams.md §1.8
    pub fn allocate(&mut self) -> Option<u16> {
        if self.free.is_empty() {
            self.grow_out();
        }
        let id = self.free.pop()?;
        self.allocated[usize::from(id)] = true;
        self.live_out += 1;
        self.reserved = self.reserved.saturating_sub(1);
        Some(id)
    }

    fn ensure_table(&mut self, len: usize) {
        if self.seq.len() < len {
            self.seq.resize(len, 0);
            self.allocated.resize(len, false);
        }
    }

    fn grow_out(&mut self) {
        if self.out_len >= 1 << 16 {
            return;
        }
        let new_len = self.out_len * 2;
        self.ensure_table(new_len);
        // Push descending so that pops yield ascending ids; never 0xFFFF.
        for id in (self.out_len..new_len.min(USABLE_IDS)).rev() {
            self.free.push(id as u16);
        }
        self.out_len = new_len;
    }

    /// An out-stream with `id` completed: its writer sequence increments and
    /// the id cools down for 16 packets. Ignored for ids not allocated.
    // spec: streams.md §1.5, §1.8, §2.1.7
    pub fn release(&mut self, id: u16) {
        let i = usize::from(id);
        if !self.allocated.get(i).copied().unwrap_or(false) {
            return;
        }
        self.allocated[i] = false;
        self.live_out -= 1;
        self.seq[i] = self.seq[i].wrapping_add(0x10);
        self.cooldown[self.cooldown_pos].push(id);
    }

    /// Advances the cooldown ring; call once per packet built for the host,
    /// before pulling streams into it.
    // spec: streams.md §1.7 tick_cooldown, §1.8
    pub fn tick(&mut self) {
        self.cooldown_pos = (self.cooldown_pos + 1) % COOLDOWN_SLOTS;
        let mut slot = std::mem::take(&mut self.cooldown[self.cooldown_pos]);
        self.free.extend(slot.drain(..).rev());
        self.cooldown[self.cooldown_pos] = slot; // keep its allocation
    }

    /// Writer sequence nibble of `id` (0 beyond the tables).
    pub fn writer_seq(&self, id: u16) -> u8 {
        self.seq.get(usize::from(id)).map_or(0, |b| b >> 4)
    }

    /// Reader sequence nibble of `id` (0 beyond the tables).
    pub fn reader_seq(&self, id: u16) -> u8 {
        self.seq.get(usize::from(id)).map_or(0, |b| b & 0xF)
    }

    /// The in-stream with `id` became unassigned or complete (once per
    /// incarnation): the reader sequence increments. Grows the tables to the
    /// next power of two above `id` if needed (at most 64 KiB).
    // spec: streams.md §1.5, §2.2.8
    pub fn bump_reader_seq(&mut self, id: u16) {
        let i = usize::from(id);
        self.ensure_table((i + 1).next_power_of_two());
        self.seq[i] = (self.seq[i] & 0xF0) | (self.seq[i].wrapping_add(1) & 0x0F);
    }

    /// Out-stream ids currently allocated.
    pub fn live_out(&self) -> usize {
        self.live_out
    }

    /// State wipe (§3.8) or host destroy: back to fresh tables.
    pub fn wipe(&mut self) {
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_host_hands_out_ascending_ids() {
        let mut ids = StreamIds::new();
        let got: Vec<u16> = (0..10)
            .map(|_| {
                ids.reserve().unwrap();
                ids.allocate().unwrap()
            })
            .collect();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(ids.live_out(), 10);
    }

    #[test]
    fn cooldown_is_sixteen_packets_and_lifo() {
        let mut ids = StreamIds::new();
        let a = ids.allocate().unwrap();
        let b = ids.allocate().unwrap();
        assert_eq!((a, b), (0, 1));
        ids.release(a);
        assert_eq!(ids.writer_seq(a), 1);
        for _ in 0..15 {
            ids.tick();
            assert_ne!(ids.allocate(), Some(a));
        }
        ids.release(b);
        ids.tick(); // 16th packet after releasing a
        // LIFO: a went back last, so it is handed out first.
        assert_eq!(ids.allocate(), Some(a));
        for _ in 0..15 {
            ids.tick();
        }
        assert_eq!(ids.allocate(), Some(b));
        assert_eq!(ids.writer_seq(b), 1);
    }

    #[test]
    fn never_reused_before_sixteen_packets_even_with_many_streams() {
        let mut ids = StreamIds::new();
        let mut freed_at: Vec<Option<usize>> = vec![None; 1 << 16];
        let mut live: Vec<u16> = vec![];
        for packet in 0..2000usize {
            ids.tick();
            if packet % 3 == 0
                && let Some(id) = ids.allocate()
            {
                if let Some(t) = freed_at[usize::from(id)] {
                    assert!(packet - t >= 16, "id {id} reused after {}", packet - t);
                }
                live.push(id);
            }
            if packet % 5 == 0 && !live.is_empty() {
                let id = live.remove((packet / 5) % live.len());
                ids.release(id);
                freed_at[usize::from(id)] = Some(packet);
            }
        }
    }

    #[test]
    fn sequence_nibbles_are_independent_and_wrap() {
        let mut ids = StreamIds::new();
        assert_eq!(ids.reader_seq(300), 0);
        for _ in 0..17 {
            ids.bump_reader_seq(300);
        }
        assert_eq!(ids.reader_seq(300), 1);
        assert_eq!(ids.writer_seq(300), 0);
        let id = ids.allocate().unwrap();
        for _ in 0..16 {
            ids.release(id);
            for _ in 0..16 {
                ids.tick();
            }
            assert_eq!(ids.allocate(), Some(id));
        }
        assert_eq!(ids.writer_seq(id), 0);
        ids.bump_reader_seq(id);
        assert_eq!((ids.writer_seq(id), ids.reader_seq(id)), (0, 1));
        ids.wipe();
        assert_eq!(ids.reader_seq(300), 0);
    }

    #[test]
    fn exhaustion_is_graceful_and_never_uses_ffff() {
        let mut ids = StreamIds::new();
        let mut seen = vec![false; 1 << 16];
        for _ in 0..USABLE_IDS {
            ids.reserve().unwrap();
            let id = ids.allocate().unwrap();
            assert_ne!(id, 0xFFFF);
            assert!(!seen[usize::from(id)]);
            seen[usize::from(id)] = true;
        }
        assert_eq!(ids.reserve(), Err(IdsExhausted));
        assert_eq!(ids.allocate(), None);
        ids.release(7);
        assert_eq!(ids.allocate(), None, "still cooling down");
        for _ in 0..16 {
            ids.tick();
        }
        ids.reserve().unwrap();
        assert_eq!(ids.allocate(), Some(7));
    }
}
