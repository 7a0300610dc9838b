//! The deterministic event queue: ordered by time, ties broken by insertion order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

/// A min-priority queue of items keyed by virtual time (offset from the simulation start).
///
/// Two items scheduled for the same time come out in the order they were pushed, so a run
/// never depends on heap internals.
#[derive(Debug)]
pub struct EventQueue<T> {
    heap: BinaryHeap<Entry<T>>,
    next_seq: u64,
}

#[derive(Debug)]
struct Entry<T> {
    time: Duration,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.time == other.time && self.seq == other.seq
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest, first-pushed entry.
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

impl<T> Default for EventQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> EventQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }

    /// Schedules `item` at `time`.
    pub fn push(&mut self, time: Duration, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { time, seq, item });
    }

    /// Removes and returns the earliest item (first pushed among equals).
    pub fn pop(&mut self) -> Option<(Duration, T)> {
        self.heap.pop().map(|e| (e.time, e.item))
    }

    /// The time of the earliest item, if any.
    pub fn peek_time(&self) -> Option<Duration> {
        self.heap.peek().map(|e| e.time)
    }

    /// Number of scheduled items.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn pops_in_time_order() {
        let mut q = EventQueue::new();
        q.push(ms(30), "c");
        q.push(ms(10), "a");
        q.push(ms(20), "b");
        assert_eq!(q.peek_time(), Some(ms(10)));
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(_, x)| x).collect();
        assert_eq!(order, ["a", "b", "c"]);
    }

    #[test]
    fn ties_break_by_insertion_order() {
        let mut q = EventQueue::new();
        for i in 0..100 {
            q.push(ms(5), i);
        }
        q.push(ms(1), -1);
        let order: Vec<i32> = std::iter::from_fn(|| q.pop()).map(|(_, x)| x).collect();
        let expected: Vec<i32> = std::iter::once(-1).chain(0..100).collect();
        assert_eq!(order, expected);
        assert!(q.is_empty());
    }

    #[test]
    fn interleaved_push_pop_keeps_fifo_among_equals() {
        let mut q = EventQueue::new();
        q.push(ms(1), 1);
        q.push(ms(1), 2);
        assert_eq!(q.pop(), Some((ms(1), 1)));
        q.push(ms(1), 3);
        q.push(ms(0), 0);
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop(), Some((ms(0), 0)));
        assert_eq!(q.pop(), Some((ms(1), 2)));
        assert_eq!(q.pop(), Some((ms(1), 3)));
    }
}
