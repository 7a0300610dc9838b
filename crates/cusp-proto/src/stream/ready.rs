//! The in-order bytes of an in-stream that the application has not read yet.
//!
//! Segments that arrive while bytes are still waiting are copied into one
//! growing chunk instead of one allocation each, so a reader that falls a
//! batch behind reads a few large chunks rather than one per datagram. The
//! first segment into an empty queue gets an allocation of its own size, so
//! a stream carrying one small message costs no more than the message.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Largest chunk the queue grows a shared allocation to.
const MAX_CHUNK: usize = 64 * 1024;

/// FIFO of ready bytes: whole chunks, then a tail that takes new segments.
#[derive(Debug, Default)]
pub(super) struct ReadyQueue {
    /// Chunks older than `tail`, oldest first.
    chunks: VecDeque<Bytes>,
    /// The newest bytes, with spare capacity for the next segments.
    tail: BytesMut,
    /// Bytes in `chunks` and `tail`.
    len: usize,
}

impl ReadyQueue {
    /// Bytes waiting.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a copy of `data`. `hint` is how large a fresh shared chunk may
    /// be (the stream's receive window scale); at most [`MAX_CHUNK`].
    pub(super) fn push_copy(&mut self, data: &[u8], hint: usize) {
        if data.is_empty() {
            return;
        }
        if self.tail.capacity() - self.tail.len() < data.len() {
            let want = if self.is_empty() {
                data.len()
            } else {
                hint.clamp(data.len(), MAX_CHUNK.max(data.len()))
            };
            self.seal_tail();
            // Reuses the old allocation when the reader dropped everything cut from it.
            self.tail.reserve(want);
        }
        self.tail.extend_from_slice(data);
        self.len += data.len();
    }

    /// Appends `chunk` without copying.
    pub(super) fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        self.seal_tail();
        self.len += chunk.len();
        self.chunks.push_back(chunk);
    }

    /// Moves the tail's bytes to the chunk FIFO (its spare capacity stays).
    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
    }

    /// Removes and returns up to `max` bytes of the oldest chunk (`None` when
    /// empty or `max` is 0).
    pub(super) fn pop_chunk(&mut self, max: usize) -> Option<Bytes> {
        if max == 0 {
            return None;
        }
        let give = match self.chunks.front_mut() {
            Some(front) if max >= front.len() => self.chunks.pop_front()?,
            Some(front) => front.split_to(max),
            None if self.tail.is_empty() => return None,
            None => self.tail.split_to(max.min(self.tail.len())).freeze(),
        };
        self.len -= give.len();
        Some(give)
    }

    /// Copies the oldest bytes into `buf`; returns how many.
    pub(super) fn read_into(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let k = front.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&front[..k]);
            if k == front.len() {
                self.chunks.pop_front();
            } else {
                let _ = front.split_to(k);
            }
            n += k;
        }
        let k = self.tail.len().min(buf.len() - n);
        buf[n..n + k].copy_from_slice(&self.tail[..k]);
        let _ = self.tail.split_to(k);
        n += k;
        self.len -= n;
        n
    }

    /// Appends every waiting byte to `out`; returns how many.
    pub(super) fn drain_into(&mut self, out: &mut Vec<u8>) -> usize {
        let n = self.len;
        out.reserve(n);
        for c in self.chunks.drain(..) {
            out.extend_from_slice(&c);
        }
        out.extend_from_slice(&self.tail);
        self.tail.clear();
        self.len = 0;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(q: &mut ReadyQueue, max: usize) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| q.pop_chunk(max))
            .map(|b| b.to_vec())
            .collect()
    }

    #[test]
    fn segments_behind_a_waiting_one_share_one_chunk() {
        let mut q = ReadyQueue::default();
        for byte in [1, 2, 3] {
            q.push_copy(&[byte; 100], 1000);
        }
        assert_eq!(q.len(), 300);
        // The first segment got an allocation of its own size; the next two share one.
        let chunks = collect(&mut q, usize::MAX);
        assert_eq!(
            chunks,
            [vec![1; 100], [vec![2; 100], vec![3; 100]].concat()]
        );
        assert!(q.is_empty());
        assert_eq!(q.pop_chunk(usize::MAX), None);
    }

    #[test]
    fn order_is_kept_across_copies_and_zero_copy_chunks() {
        let mut q = ReadyQueue::default();
        q.push_copy(b"12", 8);
        q.push_copy(b"34", 8);
        q.push(Bytes::from_static(b"56"));
        q.push_copy(b"78", 8);
        q.push_copy(b"", 8);
        q.push(Bytes::new());
        let mut out = [0u8; 3];
        assert_eq!(q.read_into(&mut out), 3);
        assert_eq!(&out, b"123");
        assert_eq!(collect(&mut q, 1).concat(), b"45678");
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn reads_split_chunks_and_drain_takes_the_rest() {
        let mut q = ReadyQueue::default();
        for piece in [&b"hello"[..], b" ", b"world"] {
            q.push_copy(piece, 4096);
        }
        assert_eq!(q.pop_chunk(3).as_deref(), Some(&b"hel"[..]));
        assert_eq!(q.pop_chunk(0), None);
        let mut big = [0u8; 4];
        assert_eq!(q.read_into(&mut big), 4);
        assert_eq!(&big, b"lo w");
        let mut out = b">".to_vec();
        assert_eq!(q.drain_into(&mut out), 4);
        assert_eq!(out, b">orld");
        assert!(q.is_empty());
        q.push_copy(b"again", 4096);
        assert_eq!(collect(&mut q, usize::MAX), [b"again".to_vec()]);
    }

    #[test]
    fn a_shared_chunk_never_exceeds_the_cap_unless_one_segment_does() {
        let mut q = ReadyQueue::default();
        q.push_copy(&[1; 10], usize::MAX);
        for _ in 0..100 {
            q.push_copy(&[2; 1400], usize::MAX);
        }
        q.push_copy(&vec![3; MAX_CHUNK + 1], usize::MAX);
        let sizes: Vec<usize> = collect(&mut q, usize::MAX).iter().map(Vec::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 10 + 140_000 + MAX_CHUNK + 1);
        assert!(
            sizes[1..sizes.len() - 1].iter().all(|&s| s <= MAX_CHUNK),
            "{sizes:?}"
        );
        assert_eq!(sizes.last(), Some(&(MAX_CHUNK + 1)));
    }
}
