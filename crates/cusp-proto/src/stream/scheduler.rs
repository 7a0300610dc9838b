//! The intra-host priority scheduler (`spec/streams.md` §3.2).
//!
//! Every stream of a host has one record. Eligible records (priority above
//! `-inf`) are ordered by priority, highest first, then by a strictly
//! increasing stamp that is renewed whenever the record is served, so streams
//! of equal priority take turns segment by segment. Control work uses `+inf`.
//! Insert, remove, priority change and selection are `O(log n)` (amortized).
//!
//! The order is a binary heap with lazy deletion: a record that leaves or
//! changes priority only leaves the map of eligible records, and its old
//! heap entry is dropped once it reaches the top (the top is always current)
//! or when stale entries outnumber live ones. Served records get the newest
//! stamp, so they enter at the bottom of the heap and leave from the top: no
//! allocation and no rebalancing per segment, unlike an ordered tree.
//!
//! Each record's priority and stamp ([`SchedEntry`]) live with the caller (in
//! the stream's own record) and are passed in by reference; the scheduler
//! itself only indexes the eligible records, so an idle stream (`-inf`) costs
//! it nothing.
//!
//! # Anti-starvation rule for negative priorities (spec §8 Q9)
//!
//! As in the reference, negative-priority work does not by itself make the
//! host announce a packet, and it is served only after all non-negative work,
//! so it normally fills spare room. To keep it from starving forever, a record
//! with negative priority that has been eligible without being served for
//! `starvation_delay` (default [`DEFAULT_STARVATION_DELAY`] = 250 ms) is
//! *boosted*: [`Scheduler::top_ready`] returns it ahead of everything (for one
//! segment; serving it restarts its clock) and [`Scheduler::announce`] reports
//! at least priority `0.0`, so the channel builds a packet for it if its
//! congestion window allows. The rest of that packet is filled in normal
//! order, which includes the negative stream when nothing else is pending.
//! Result: a negative-priority stream gets at least one segment per
//! `starvation_delay` (≈ 5.7 kB/s for 1436-byte segments) however busy the
//! host is, and a full packet per `starvation_delay` when the host is
//! otherwise idle; it never triggers more traffic than that. The host should
//! arm a timer for [`Scheduler::next_boost`] to re-announce.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::hash::Hash;

use crate::hash::HashMap;
use std::time::{Duration, Instant};

/// Default delay after which waiting negative-priority work is boosted.
pub const DEFAULT_STARVATION_DELAY: Duration = Duration::from_millis(250);

/// An eligible record's place in the order as one integer, so that the heap
/// compares a `u128` instead of a float and a stamp: priority descending (in
/// `f32::total_cmp` order; `-0.0` never reaches it, NaN is never stored) in
/// the high half, the stamp ascending in the low half.
fn order_key(priority: f32, stamp: u64) -> u128 {
    let bits = priority.to_bits();
    // Unsigned order of `asc` is the total order of the floats.
    let asc = if bits >> 31 == 1 {
        !bits
    } else {
        bits | 1 << 31
    };
    u128::from(!asc) << 64 | u128::from(stamp)
}

/// The priority encoded in an [`order_key`].
fn key_priority(key: u128) -> f32 {
    let asc = !((key >> 64) as u32);
    f32::from_bits(if asc >> 31 == 1 {
        asc & !(1 << 31)
    } else {
        !asc
    })
}

/// One record's place in a [`Scheduler`]: created by [`Scheduler::insert`],
/// kept by the caller next to the record's key and handed back to every
/// other call for that key. Only the stamp: the scheduler keeps the priority
/// of eligible records itself, so an idle record's entry is 8 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedEntry {
    stamp: u64,
}

/// What the scheduler keeps of an eligible record.
#[derive(Clone, Copy, Debug)]
struct Eligible {
    /// Its current [`order_key`] (priority and stamp).
    key: u128,
    /// When a negative-priority record started waiting.
    since: Option<Instant>,
}

/// Per-host scheduler over records keyed by `K` (the host's stream handle).
#[derive(Debug)]
pub struct Scheduler<K> {
    /// Eligible records by [`order_key`], smallest first, plus stale entries
    /// (not matching `eligible`) below a current top.
    order: BinaryHeap<Reverse<(u128, K)>>,
    /// Eligible negative records by waiting time: (since, stamp, key).
    waiting: BTreeSet<(Instant, u64, K)>,
    /// Order key (and waiting time) of every eligible record.
    eligible: HashMap<K, Eligible>,
    next_stamp: u64,
    starvation_delay: Duration,
}

impl<K: Copy + Ord + Hash> Default for Scheduler<K> {
    fn default() -> Self {
        Self::new(DEFAULT_STARVATION_DELAY)
    }
}

impl<K: Copy + Ord + Hash> Scheduler<K> {
    /// An empty scheduler boosting negative work after `starvation_delay`.
    pub fn new(starvation_delay: Duration) -> Self {
        Scheduler {
            order: BinaryHeap::new(),
            waiting: BTreeSet::new(),
            eligible: HashMap::default(),
            next_stamp: 0,
            starvation_delay,
        }
    }

    fn stamp(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    /// Takes the record out of the indexes; what it had if it was eligible.
    fn unlink(&mut self, key: K, e: &SchedEntry) -> Option<Eligible> {
        let x = self.eligible.remove(&key)?;
        // Give memory back once a burst of eligible records has drained.
        if self.eligible.capacity() > 4 * self.eligible.len() + 64 {
            self.eligible.shrink_to(2 * self.eligible.len());
        }
        if let Some(since) = x.since {
            self.waiting.remove(&(since, e.stamp, key));
        }
        self.settle();
        Some(x)
    }

    /// Restores the heap's invariant after a record left `eligible`: stale
    /// entries leave the top, and the heap is rebuilt from `eligible` once
    /// stale entries dominate (so it stays within twice the eligible records).
    fn settle(&mut self) {
        let eligible = &self.eligible;
        let current = |&Reverse((k, key)): &Reverse<(u128, K)>| {
            eligible.get(&key).is_some_and(|x| x.key == k)
        };
        while self.order.peek().is_some_and(|top| !current(top)) {
            self.order.pop();
        }
        if self.order.len() > 2 * eligible.len() + 64 {
            self.order.clear();
            self.order
                .extend(eligible.iter().map(|(&key, x)| Reverse((x.key, key))));
        }
        if self.order.capacity() > 4 * self.order.len() + 64 {
            self.order.shrink_to(2 * self.order.len());
        }
    }

    /// Indexes the record at `priority` (nothing for `-inf`); `since` is when
    /// it started waiting if it keeps waiting.
    fn link(
        &mut self,
        key: K,
        e: &SchedEntry,
        priority: f32,
        since: Option<Instant>,
        now: Instant,
    ) {
        if priority == f32::NEG_INFINITY {
            return;
        }
        let since = (priority < 0.0).then(|| since.unwrap_or(now));
        let k = order_key(priority, e.stamp);
        self.order.push(Reverse((k, key)));
        if let Some(t) = since {
            self.waiting.insert((t, e.stamp, key));
        }
        self.eligible.insert(key, Eligible { key: k, since });
    }

    /// Adds a record stamped as the newest and returns its entry, which the
    /// caller keeps and passes to every later call for `key`.
    // spec: streams.md §3.2 (last_sent starts at creation, strictly increasing stamp)
    pub fn insert(&mut self, key: K, priority: f32, now: Instant) -> SchedEntry {
        let e = SchedEntry {
            stamp: self.stamp(),
        };
        self.link(key, &e, normalize(priority), None, now);
        e
    }

    /// Changes a record's priority, effective for the next selection; `-inf`
    /// (or NaN) makes it ineligible. A record that stays negative keeps its
    /// waiting clock.
    pub fn set_priority(&mut self, key: K, e: &SchedEntry, priority: f32, now: Instant) {
        let priority = normalize(priority);
        let unchanged = match self.eligible.get(&key) {
            Some(x) => key_priority(x.key) == priority,
            None => priority == f32::NEG_INFINITY,
        };
        if unchanged {
            return;
        }
        let since = self.unlink(key, e).and_then(|x| x.since);
        self.link(key, e, priority, since, now);
    }

    /// Removes a record (stream complete).
    pub fn remove(&mut self, key: K, e: &SchedEntry) {
        self.unlink(key, e);
    }

    /// The record's current priority (`-inf`: not eligible or unknown).
    pub fn priority(&self, key: K) -> f32 {
        self.eligible
            .get(&key)
            .map_or(f32::NEG_INFINITY, |x| key_priority(x.key))
    }

    /// The record to serve next: a boosted starving record, else the eligible
    /// record with the highest priority and the oldest stamp.
    // spec: streams.md §1.7 top_ready, §3.2
    pub fn top_ready(&self, now: Instant) -> Option<K> {
        if let Some(&(since, _, key)) = self.waiting.first()
            && now.saturating_duration_since(since) >= self.starvation_delay
        {
            return Some(key);
        }
        self.order.peek().map(|&Reverse((_, key))| key)
    }

    /// Takes a record out of the selection while it is served and restamps
    /// it (round robin among equals); the caller then sets its priority again
    /// with [`Scheduler::set_priority`], which restarts a negative record's
    /// waiting clock. One index update per served segment instead of two.
    pub fn take(&mut self, key: K, e: &mut SchedEntry) {
        self.unlink(key, e);
        e.stamp = self.stamp();
    }

    /// The priority the host announces to its channel: the best eligible
    /// priority if it is `>= 0`, at least `0.0` while a negative record is
    /// boosted, otherwise `-inf` (nothing that justifies a packet).
    // spec: streams.md §3.2 (announce only priorities >= 0)
    pub fn announce(&self, now: Instant) -> f32 {
        let best = self
            .order
            .peek()
            .map_or(f32::NEG_INFINITY, |&Reverse((k, _))| key_priority(k));
        if best >= 0.0 {
            return best;
        }
        match self.next_boost() {
            Some(t) if t <= now => 0.0,
            _ => f32::NEG_INFINITY,
        }
    }

    /// When the oldest waiting negative record is (or was) boosted; the host
    /// re-announces at that time if it lies in the future.
    pub fn next_boost(&self) -> Option<Instant> {
        self.waiting
            .first()
            .map(|&(since, _, _)| since + self.starvation_delay)
    }
}

fn normalize(p: f32) -> f32 {
    if p.is_nan() {
        f32::NEG_INFINITY
    } else {
        p + 0.0 // turns -0.0 into 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn t0() -> Instant {
        Instant::now()
    }

    /// A scheduler plus the entries a host keeps in its stream records.
    struct Keyed {
        s: Scheduler<u32>,
        e: BTreeMap<u32, SchedEntry>,
    }

    impl Keyed {
        fn new(d: Duration) -> Self {
            Keyed {
                s: Scheduler::new(d),
                e: BTreeMap::new(),
            }
        }
        fn insert(&mut self, k: u32, p: f32, now: Instant) {
            let e = self.s.insert(k, p, now);
            self.e.insert(k, e);
        }
        fn set_priority(&mut self, k: u32, p: f32, now: Instant) {
            let e = self.e.get_mut(&k).unwrap();
            self.s.set_priority(k, e, p, now);
        }
        fn remove(&mut self, k: u32) {
            let e = self.e.remove(&k).unwrap();
            self.s.remove(k, &e);
        }
        fn mark_sent(&mut self, k: u32, now: Instant) {
            let e = self.e.get_mut(&k).unwrap();
            let p = self.s.priority(k);
            self.s.take(k, e);
            self.s.set_priority(k, e, p, now);
        }
        fn len(&self) -> usize {
            self.e.len()
        }
        fn priority(&self, k: u32) -> Option<f32> {
            self.e.contains_key(&k).then(|| self.s.priority(k))
        }
        fn top_ready(&self, now: Instant) -> Option<u32> {
            self.s.top_ready(now)
        }
        fn announce(&self, now: Instant) -> f32 {
            self.s.announce(now)
        }
        fn next_boost(&self) -> Option<Instant> {
            self.s.next_boost()
        }
    }

    #[test]
    fn priority_order_and_round_robin() {
        let now = t0();
        let mut s = Keyed::new(DEFAULT_STARVATION_DELAY);
        s.insert(1, 0.0, now);
        s.insert(2, 0.0, now);
        s.insert(3, 5.0, now);
        s.insert(4, f32::NEG_INFINITY, now);
        assert_eq!(s.top_ready(now), Some(3));
        s.set_priority(3, f32::NEG_INFINITY, now);
        let mut served = vec![];
        for _ in 0..4 {
            let k = s.top_ready(now).unwrap();
            served.push(k);
            s.mark_sent(k, now);
        }
        assert_eq!(served, [1, 2, 1, 2]);
        assert_eq!(s.announce(now), 0.0);
    }

    #[test]
    fn control_first_and_priority_change_immediate() {
        let now = t0();
        let mut s = Keyed::new(DEFAULT_STARVATION_DELAY);
        s.insert(1, 3.0, now);
        s.insert(2, f32::INFINITY, now);
        assert_eq!(s.top_ready(now), Some(2));
        assert_eq!(s.announce(now), f32::INFINITY);
        s.remove(2);
        s.insert(3, 1.0, now);
        assert_eq!(s.top_ready(now), Some(1));
        s.set_priority(3, 7.5, now);
        assert_eq!(s.top_ready(now), Some(3));
        s.set_priority(3, f32::NAN, now);
        assert_eq!(s.top_ready(now), Some(1));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn zero_signs_are_equal() {
        let now = t0();
        let mut s = Keyed::new(DEFAULT_STARVATION_DELAY);
        s.insert(1, 0.0, now);
        s.insert(2, -0.0, now);
        s.mark_sent(1, now);
        assert_eq!(s.top_ready(now), Some(2));
        assert_eq!(s.announce(now), 0.0);
    }

    #[test]
    fn negative_work_rides_along_and_is_boosted_when_starving() {
        let now = t0();
        let d = Duration::from_millis(100);
        let mut s = Keyed::new(d);
        s.insert(1, -1.0, now);
        // Not announced on its own, but eligible for spare room.
        assert_eq!(s.announce(now), f32::NEG_INFINITY);
        assert_eq!(s.top_ready(now), Some(1));
        assert_eq!(s.next_boost(), Some(now + d));
        // After the delay it is announced.
        assert_eq!(s.announce(now + d), 0.0);
        // A busy higher-priority stream cannot starve it forever.
        s.insert(2, 10.0, now);
        assert_eq!(s.top_ready(now + d / 2), Some(2));
        assert_eq!(s.top_ready(now + d), Some(1));
        s.mark_sent(1, now + d);
        assert_eq!(s.top_ready(now + d), Some(2));
        assert_eq!(s.next_boost(), Some(now + 2 * d));
        assert_eq!(s.top_ready(now + 2 * d), Some(1));
        // Priority changes among negatives keep the waiting clock.
        s.set_priority(1, -2.0, now + 2 * d);
        assert_eq!(s.next_boost(), Some(now + 2 * d));
        // Becoming non-negative or ineligible clears it.
        s.set_priority(1, f32::NEG_INFINITY, now + 2 * d);
        assert_eq!(s.next_boost(), None);
        s.set_priority(1, -2.0, now + 3 * d);
        assert_eq!(s.next_boost(), Some(now + 4 * d));
        s.remove(1);
        assert_eq!(s.next_boost(), None);
        assert_eq!(s.top_ready(now + 9 * d), Some(2));
    }

    #[test]
    fn order_keys_sort_like_priorities_then_stamps() {
        let ps = [
            f32::INFINITY,
            f32::MAX,
            7.5,
            1.0,
            0.0,
            -1e-30,
            -2.0,
            f32::MIN,
        ];
        for (i, &p) in ps.iter().enumerate() {
            assert_eq!(key_priority(order_key(p, 9)), p);
            assert!(order_key(p, 1) < order_key(p, 2));
            if let Some(&lower) = ps.get(i + 1) {
                assert!(
                    order_key(p, u64::MAX) < order_key(lower, 0),
                    "{p} before {lower}"
                );
            }
        }
    }

    #[test]
    fn stale_heap_entries_stay_bounded() {
        let now = t0();
        let mut s = Keyed::new(DEFAULT_STARVATION_DELAY);
        s.insert(1, 1.0, now);
        s.insert(2, 1.5, now);
        for i in 0..10_000 {
            s.set_priority(1, if i % 2 == 0 { 2.0 } else { 1.0 }, now);
        }
        assert!(s.s.order.len() <= 2 * 2 + 65, "{}", s.s.order.len());
        assert_eq!(s.top_ready(now), Some(2));
        s.set_priority(1, 2.0, now);
        assert_eq!(s.top_ready(now), Some(1));
        s.remove(1);
        assert_eq!((s.top_ready(now), s.announce(now)), (Some(2), 1.5));
    }

    #[test]
    fn many_records_stay_consistent() {
        let now = t0();
        let mut s = Keyed::new(DEFAULT_STARVATION_DELAY);
        for k in 0..100u32 {
            s.insert(k, (k % 7) as f32, now);
        }
        for k in (0..100).step_by(3) {
            s.remove(k);
        }
        let mut last = f32::INFINITY;
        while let Some(k) = s.top_ready(now) {
            let p = s.priority(k).unwrap();
            assert!(p <= last);
            last = p;
            s.set_priority(k, f32::NEG_INFINITY, now);
        }
        assert_eq!(s.len(), 66);
        assert_eq!(s.announce(now), f32::NEG_INFINITY);
    }
}
