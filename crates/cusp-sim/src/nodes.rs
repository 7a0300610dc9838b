//! Simple nodes for testing the simulator itself and for traffic in protocol scenarios:
//! an echo server, a sink, and a paced sender of self-checking probe datagrams.

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use crate::node::{Node, Transmit};
use crate::rng::Rng;

/// CRC-32 (IEEE 802.3, reflected, as in zlib). Detects every error of up to 3 bits in
/// datagrams of realistic size, so corruption in the sim is always caught by [`Probe`].
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// A self-checking test payload: sequence number, send time, padding, CRC-32 trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Sequence number given by the sender.
    pub seq: u64,
    /// Send time as an offset from the simulation start.
    pub sent: Duration,
}

impl Probe {
    /// Smallest encoded size: 8 (seq) + 8 (time) + 4 (CRC).
    pub const MIN_LEN: usize = 20;

    /// Encodes the probe into `len` bytes (at least [`Probe::MIN_LEN`]).
    pub fn encode(&self, len: usize) -> Vec<u8> {
        let len = len.max(Self::MIN_LEN);
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&self.seq.to_be_bytes());
        let nanos = u64::try_from(self.sent.as_nanos()).unwrap_or(u64::MAX);
        out.extend_from_slice(&nanos.to_be_bytes());
        out.extend((16..len - 4).map(|i| (i as u8) ^ (self.seq as u8)));
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a probe; `None` if it is too short or its CRC does not match (corrupted).
    pub fn decode(data: &[u8]) -> Option<Probe> {
        if data.len() < Self::MIN_LEN {
            return None;
        }
        let (body, crc) = data.split_at(data.len() - 4);
        if crc32(body).to_be_bytes() != crc {
            return None;
        }
        let seq = u64::from_be_bytes(body[..8].try_into().ok()?);
        let nanos = u64::from_be_bytes(body[8..16].try_into().ok()?);
        Some(Probe {
            seq,
            sent: Duration::from_nanos(nanos),
        })
    }
}

/// One datagram as a test node saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Arrival time.
    pub time: Instant,
    /// Source address as seen by the node.
    pub from: SocketAddrV4,
    /// The node's own address it arrived on.
    pub local: SocketAddrV4,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Records every datagram and sends nothing.
#[derive(Debug, Default)]
pub struct Sink {
    /// Everything received, in order.
    pub received: Vec<Received>,
}

impl Node for Sink {
    fn handle(&mut self, now: Instant, from: SocketAddrV4, local: SocketAddrV4, data: Vec<u8>) {
        self.received.push(Received {
            time: now,
            from,
            local,
            data,
        });
    }
    fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
        None
    }
}

/// Sends every datagram back to its source. With `validate_probes`, datagrams that are not
/// valid [`Probe`]s are counted in `rejected` and not echoed.
#[derive(Debug, Default)]
pub struct Echo {
    /// Everything received, in order (including rejected datagrams).
    pub received: Vec<Received>,
    /// Datagrams that failed probe validation.
    pub rejected: u64,
    /// Whether to validate probes.
    pub validate_probes: bool,
    out: VecDeque<Transmit>,
}

impl Echo {
    /// An echo server that validates probes.
    pub fn validating() -> Self {
        Self {
            validate_probes: true,
            ..Self::default()
        }
    }
}

impl Node for Echo {
    fn handle(&mut self, now: Instant, from: SocketAddrV4, local: SocketAddrV4, data: Vec<u8>) {
        if self.validate_probes && Probe::decode(&data).is_none() {
            self.rejected += 1;
        } else {
            self.out.push_back(Transmit {
                destination: from,
                contents: data.clone(),
            });
        }
        self.received.push(Received {
            time: now,
            from,
            local,
            data,
        });
    }
    fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
        self.out.pop_front()
    }
}

/// Sends `count` [`Probe`]s to `dest`, one every `interval` plus a uniform `[0, jitter]`,
/// with sizes uniform in `[min_len, max_len]`; records what comes back.
#[derive(Debug)]
pub struct Pacer {
    /// Where probes go; a scenario may change it mid-run.
    pub dest: SocketAddrV4,
    /// Base gap between probes.
    pub interval: Duration,
    /// Extra random gap bound.
    pub jitter: Duration,
    /// Smallest probe size.
    pub min_len: usize,
    /// Largest probe size.
    pub max_len: usize,
    /// Probes still to send.
    pub remaining: u64,
    /// Next sequence number.
    pub next_seq: u64,
    /// Everything received, in order.
    pub received: Vec<Received>,
    /// Received datagrams that were not valid probes.
    pub rejected: u64,
    start: Instant,
    next_send: Option<Instant>,
    rng: Rng,
    out: Option<Transmit>,
}

impl Pacer {
    /// A pacer whose first probe goes out at `first` (use the sim's `now()`), with 100-byte
    /// probes and no jitter. `start` is the sim's start instant, for the probes' timestamps.
    pub fn new(
        start: Instant,
        first: Instant,
        dest: SocketAddrV4,
        count: u64,
        interval: Duration,
        rng: Rng,
    ) -> Self {
        Self {
            dest,
            interval,
            jitter: Duration::ZERO,
            min_len: 100,
            max_len: 100,
            remaining: count,
            next_seq: 0,
            received: Vec::new(),
            rejected: 0,
            start,
            next_send: (count > 0).then_some(first),
            rng,
            out: None,
        }
    }

    /// Sets the probe size range.
    pub fn sizes(mut self, min_len: usize, max_len: usize) -> Self {
        self.min_len = min_len.max(Probe::MIN_LEN);
        self.max_len = max_len.max(self.min_len);
        self
    }

    /// Sets the extra random gap bound.
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Valid probes received back, decoded.
    pub fn valid_probes(&self) -> impl Iterator<Item = (&Received, Probe)> {
        self.received
            .iter()
            .filter_map(|r| Probe::decode(&r.data).map(|p| (r, p)))
    }
}

impl Node for Pacer {
    fn handle(&mut self, now: Instant, from: SocketAddrV4, local: SocketAddrV4, data: Vec<u8>) {
        if Probe::decode(&data).is_none() {
            self.rejected += 1;
        }
        self.received.push(Received {
            time: now,
            from,
            local,
            data,
        });
    }

    fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
        self.out.take()
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.next_send
    }

    fn handle_timeout(&mut self, now: Instant) {
        let Some(due) = self.next_send else { return };
        if now < due || self.remaining == 0 {
            return;
        }
        let len = self
            .rng
            .range_inclusive(self.min_len as u64, self.max_len as u64) as usize;
        let probe = Probe {
            seq: self.next_seq,
            sent: now.saturating_duration_since(self.start),
        };
        self.out = Some(Transmit {
            destination: self.dest,
            contents: probe.encode(len),
        });
        self.next_seq += 1;
        self.remaining -= 1;
        self.next_send = (self.remaining > 0)
            .then(|| due + self.interval + self.rng.duration_up_to(self.jitter));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn probe_roundtrip_and_detects_bit_flips() {
        let p = Probe {
            seq: 77,
            sent: Duration::from_micros(1234),
        };
        let data = p.encode(64);
        assert_eq!(data.len(), 64);
        assert_eq!(Probe::decode(&data), Some(p));
        for bit in 0..data.len() * 8 {
            let mut d = data.clone();
            d[bit / 8] ^= 0x80 >> (bit % 8);
            assert_eq!(Probe::decode(&d), None, "flip of bit {bit} undetected");
        }
    }
}
