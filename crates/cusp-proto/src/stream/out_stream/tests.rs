use super::*;
use crate::stream::test_util::{Seg, parse_one};
use proptest::prelude::*;

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Pulls one segment into a buffer of `budget` bytes and parses it back.
fn pull(s: &mut OutStream, id: u16, budget: usize) -> Option<(Seg, OutTicket)> {
    let mut buf = vec![0xAA; budget];
    let (n, t) = s.pull(id, &mut buf)?;
    assert!(n <= budget && n % 4 == 0);
    let (seg, m) = parse_one(&buf[..n]).expect("well-formed segment");
    assert_eq!(m, n);
    Some((seg, t))
}

fn data_seg(seg: &Seg) -> (u32, usize, bool) {
    match seg {
        Seg::Data {
            offset, bytes, eof, ..
        } => (*offset, bytes.len(), *eof),
        other => panic!("expected DATA, got {other:?}"),
    }
}

// spec: streams.md §1.7 budgets, §2.1.4 retransmission note (V9)
#[test]
fn lost_pieces_are_recut_like_the_reference() {
    let cfg = OutStreamConfig::default();
    let mut s = OutStream::new();
    let bytes = data(7164);
    assert_eq!(s.write(&cfg, &bytes).unwrap(), 7164);
    // Packet 1 with CONNECT (4 bytes): 1436 data bytes at offset 0.
    let (seg, t1) = pull(&mut s, 3, 1444 - 4).unwrap();
    assert_eq!(data_seg(&seg), (0, 1436, false));
    // Packets 2-5 before the first ack: CONNECT + 8-byte header, 1432 bytes.
    let mut tickets = vec![];
    for want in [1436, 2868, 4300, 5732] {
        let (seg, t) = pull(&mut s, 3, 1444 - 4).unwrap();
        assert_eq!(data_seg(&seg), (want, 1432, false));
        tickets.push(t);
    }
    assert!(pull(&mut s, 3, 1440).is_none(), "everything is in flight");
    s.on_packet_outcome(t1, true);
    let t5 = tickets.pop().unwrap();
    for t in tickets {
        s.on_packet_outcome(t, false);
    }
    assert_eq!(s.queued_bytes(), 3 * 1432);
    // Re-cut with the full budget: 1436 + 1436 + 1424 at 1436, 2872, 4308.
    let mut got = vec![];
    while let Some((seg, t)) = pull(&mut s, 3, 1444) {
        let (off, len, eof) = data_seg(&seg);
        if let Seg::Data { bytes: b, .. } = &seg {
            assert_eq!(b[..], bytes[off as usize..off as usize + len]);
        }
        got.push((off, len, eof));
        s.on_packet_outcome(t, true);
    }
    assert_eq!(
        got,
        [
            (1436, 1436, false),
            (2872, 1436, false),
            (4308, 1424, false)
        ]
    );
    s.on_packet_outcome(t5, true);
    assert_eq!(s.bytes_acked(), 7164);
    assert_eq!((s.queued_bytes(), s.inflight_bytes()), (0, 0));
}

#[test]
fn a_gap_ends_the_segment_and_the_next_carries_its_offset() {
    let cfg = OutStreamConfig::default();
    let mut s = OutStream::new();
    s.write(&cfg, &data(3000)).unwrap();
    let (_, a) = pull(&mut s, 0, 1004).unwrap(); // 0..1000
    let (_, b) = pull(&mut s, 0, 1008).unwrap(); // 1000..2000
    let (_, c) = pull(&mut s, 0, 1008).unwrap(); // 2000..3000
    s.on_packet_outcome(a, false);
    s.on_packet_outcome(b, true);
    s.on_packet_outcome(c, false);
    let (seg, _) = pull(&mut s, 0, 4000).unwrap();
    assert_eq!(data_seg(&seg), (0, 1000, false));
    let (seg, _) = pull(&mut s, 0, 4000).unwrap();
    assert_eq!(data_seg(&seg), (2000, 1000, false));
}

// spec: streams.md §1.9 example 1
#[test]
fn small_stream_with_eof_in_one_segment() {
    let cfg = OutStreamConfig::default();
    let mut s = OutStream::new();
    s.write(&cfg, b"Hello world.").unwrap();
    s.shutdown().unwrap();
    let mut buf = [0u8; 1440];
    let (n, t) = s.pull(0, &mut buf).unwrap();
    assert_eq!(buf[..n], *b"\x10\x0c\x00\x00Hello world.");
    assert_eq!(s.shutdown_result(), None);
    s.on_packet_outcome(t, true);
    assert_eq!(s.shutdown_result(), Some(true));
    assert!(s.is_complete());
    assert_eq!(s.state(), OutStreamState::Shutdown);
}

#[test]
fn eof_only_when_last_bytes_fit_and_lost_eof_is_resent() {
    let cfg = OutStreamConfig::default();
    let mut s = OutStream::new();
    s.write(&cfg, &data(3000)).unwrap();
    s.shutdown().unwrap();
    assert_eq!(s.write(&cfg, b"x"), Err(WriteError::Finished));
    assert_eq!(s.shutdown(), Err(ShutdownError::AlreadyShutdown));
    let (seg, t1) = pull(&mut s, 1, 1444).unwrap();
    assert_eq!(data_seg(&seg), (0, 1440, false));
    let (seg, t2) = pull(&mut s, 1, 1444).unwrap();
    assert_eq!(data_seg(&seg), (1440, 1436, false));
    let (seg, t3) = pull(&mut s, 1, 1444).unwrap();
    assert_eq!(data_seg(&seg), (2876, 124, true));
    assert!(pull(&mut s, 1, 1444).is_none());
    s.on_packet_outcome(t3, false);
    let (seg, t3) = pull(&mut s, 1, 1444).unwrap();
    assert_eq!(data_seg(&seg), (2876, 124, true));
    s.on_packet_outcome(t3, true);
    assert_eq!(s.shutdown_result(), None, "earlier bytes unacknowledged");
    s.on_packet_outcome(t2, false);
    let (seg, t2) = pull(&mut s, 1, 1444).unwrap();
    assert_eq!(data_seg(&seg), (1440, 1436, false), "EOF is not sent twice");
    s.on_packet_outcome(t2, true);
    s.on_packet_outcome(t1, true);
    assert_eq!(s.shutdown_result(), Some(true));
}

#[test]
fn empty_eof_segment_after_all_data() {
    let cfg = OutStreamConfig::default();
    let mut s = OutStream::new();
    s.write(&cfg, &data(1440)).unwrap();
    let (seg, t) = pull(&mut s, 0, 1444).unwrap();
    assert_eq!(data_seg(&seg), (0, 1440, false));
    s.shutdown().unwrap();
    let (seg, t2) = pull(&mut s, 0, 1444).unwrap();
    assert_eq!(data_seg(&seg), (1440, 0, true));
    s.on_packet_outcome(t2, true);
    s.on_packet_outcome(t, true);
    assert!(s.is_complete());
}

// spec: streams.md §2.1.4 MUST clamp to the barrier, no SHUTDOWN quirk
#[test]
fn barrier_is_respected_even_after_shutdown() {
    let cfg = OutStreamConfig {
        send_buffer: 100_000,
    };
    let mut s = OutStream::new();
    s.write(&cfg, &data(30_000)).unwrap();
    s.shutdown().unwrap();
    let mut end = 0;
    while let Some((seg, _)) = pull(&mut s, 0, 8192) {
        let (off, len, eof) = data_seg(&seg);
        assert!(!eof);
        assert!(len <= MAX_SEGMENT_DATA);
        end = off as usize + len;
        assert!(end <= MIN_WINDOW as usize);
    }
    // Stops once the credit is no more than SILLY_WINDOW.
    assert!(MIN_WINDOW as usize - end <= SILLY_WINDOW as usize);
    assert!(!s.wants_to_send());
    assert_eq!(s.scheduling_priority(), f32::NEG_INFINITY);
    s.on_barrier(40_000);
    assert!(s.wants_to_send());
    let mut last = None;
    while let Some((seg, _)) = pull(&mut s, 0, 8192) {
        last = Some(data_seg(&seg));
    }
    assert!(matches!(last, Some((_, _, true))));
    // An older barrier does not lower the credit.
    s.on_barrier(100);
}

#[test]
fn silly_window_and_finishing_rule() {
    let cfg = OutStreamConfig::default();
    let mut s = OutStream::new();
    let n = MIN_WINDOW as usize - 1000;
    s.write(&cfg, &data(n)).unwrap();
    while pull(&mut s, 0, 1444).is_some() {}
    // The last 460 bytes would start a segment 1460 (<= SILLY_WINDOW) below the barrier.
    assert_eq!(s.queued_bytes(), 460);
    assert!(!s.wants_to_send());
    // Finishing the stream is never silly.
    s.shutdown().unwrap();
    assert!(s.wants_to_send());
    let (seg, _) = pull(&mut s, 0, 1444).unwrap();
    assert_eq!(data_seg(&seg), (n as u32 - 460, 460, true));
}

#[test]
fn send_buffer_bounds_unacknowledged_bytes() {
    let cfg = OutStreamConfig { send_buffer: 5000 };
    let mut s = OutStream::new();
    assert_eq!(s.writable_space(&cfg), 5000);
    assert_eq!(s.write(&cfg, &data(3000)).unwrap(), 3000);
    let b = Bytes::from(data(3000));
    assert_eq!(s.write_bytes(&cfg, &b).unwrap(), 2000);
    assert_eq!(s.write(&cfg, b"more").unwrap(), 0);
    let (_, t) = pull(&mut s, 0, 1444).unwrap();
    assert_eq!(s.writable_space(&cfg), 0, "in-flight bytes still count");
    s.on_packet_outcome(t, true);
    assert_eq!(s.writable_space(&cfg), 1440);
    assert_eq!(s.bytes_written(), 5000);
}

#[test]
fn copied_and_zero_copy_writes_interleave() {
    let cfg = OutStreamConfig::default();
    let mut s = OutStream::new();
    let d = data(5000);
    s.write(&cfg, &d[..10]).unwrap();
    s.write(&cfg, &d[10..20]).unwrap();
    s.write_bytes(&cfg, &Bytes::copy_from_slice(&d[20..3000]))
        .unwrap();
    s.write(&cfg, &d[3000..]).unwrap();
    let mut out = vec![];
    while let Some((seg, t)) = pull(&mut s, 9, 1444) {
        if let Seg::Data { offset, bytes, .. } = seg {
            assert_eq!(offset as usize, out.len());
            out.extend_from_slice(&bytes);
        }
        s.on_packet_outcome(t, true);
    }
    assert_eq!(out, d);
}

#[test]
fn reset_sends_writer_resets_until_acked() {
    let cfg = OutStreamConfig::default();
    let mut s = OutStream::new();
    s.write(&cfg, &data(5000)).unwrap();
    let (_, t) = pull(&mut s, 5, 1444).unwrap();
    s.set_priority(2.5).unwrap();
    s.reset();
    assert_eq!(s.write(&cfg, b"x"), Err(WriteError::Reset));
    assert_eq!(s.shutdown(), Err(ShutdownError::Reset));
    assert_eq!(s.shutdown_result(), Some(false));
    assert_eq!(s.state(), OutStreamState::Reset);
    assert_eq!(s.scheduling_priority(), 2.5);
    let (seg, r) = pull(&mut s, 5, 1444).unwrap();
    assert_eq!(seg, Seg::WriterResets { id: 5 });
    assert_eq!(s.scheduling_priority(), f32::NEG_INFINITY);
    s.on_packet_outcome(t, false); // never re-queued after a reset
    assert_eq!((s.queued_bytes(), s.inflight_bytes()), (0, 0));
    s.on_packet_outcome(r, false);
    assert_eq!(s.scheduling_priority(), f32::INFINITY);
    let (_, r) = pull(&mut s, 5, 1444).unwrap();
    assert!(!s.is_complete());
    s.on_packet_outcome(r, true);
    assert!(s.is_complete());
}

#[test]
fn reader_reset_completes_at_once() {
    let cfg = OutStreamConfig::default();
    let mut s = OutStream::new();
    s.write(&cfg, &data(100)).unwrap();
    s.shutdown().unwrap();
    let (_, t) = pull(&mut s, 0, 1444).unwrap();
    s.on_reader_reset();
    assert!(s.is_complete());
    assert_eq!(s.shutdown_result(), Some(false));
    assert!(pull(&mut s, 0, 1444).is_none());
    s.on_packet_outcome(t, true);
    assert!(s.is_complete());
}

#[test]
fn priority_must_be_finite() {
    let cfg = OutStreamConfig::default();
    let mut s = OutStream::new();
    assert!(s.set_priority(f32::NAN).is_err());
    assert!(s.set_priority(f32::INFINITY).is_err());
    assert!(s.set_priority(-3.0).is_ok());
    assert_eq!(s.priority(), -3.0);
    assert_eq!(s.scheduling_priority(), f32::NEG_INFINITY, "nothing queued");
    s.write(&cfg, b"abc").unwrap();
    assert_eq!(s.scheduling_priority(), -3.0);
}

#[test]
fn offsets_wrap_after_4_gib() {
    // Drive the stream past 2^32 with large acked writes.
    let cfg = OutStreamConfig {
        send_buffer: 1 << 20,
    };
    let mut s = OutStream::new();
    let chunk = Bytes::from(vec![1u8; 1 << 20]);
    let mut written: u64 = 0;
    while written < (1 << 32) - 1436 {
        let n = s
            .write_bytes(
                &cfg,
                &chunk.slice(..((1u64 << 32) - 1436 - written).min(1 << 20) as usize),
            )
            .unwrap();
        written += n as u64;
        s.on_barrier((written as u32).wrapping_add(MIN_WINDOW));
        while let Some((_, t)) = {
            let mut buf = [0u8; 4096 + 8];
            s.pull(0, &mut buf)
        } {
            s.on_packet_outcome(t, true);
        }
    }
    s.write(&cfg, &data(3000)).unwrap();
    let (seg, _) = pull(&mut s, 0, 1444).unwrap();
    assert_eq!(data_seg(&seg), (u32::MAX - 1435, 1436, false));
    let (seg, _) = pull(&mut s, 0, 1444).unwrap();
    assert_eq!(
        data_seg(&seg),
        (0, 1440, false),
        "type 0 again after the wrap"
    );
    let (seg, _) = pull(&mut s, 0, 1444).unwrap();
    assert_eq!(data_seg(&seg), (1440, 124, false));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random budgets, barrier grants and loss patterns: no segment ends
    /// beyond the barrier granted so far, and once everything is acked the
    /// acked segments reassemble to exactly what was written, with one EOF.
    #[test]
    fn segments_respect_barrier_and_reassemble(
        total in 0usize..40_000,
        ops in proptest::collection::vec((0u8..5, 0usize..10_000, any::<bool>()), 1..400),
    ) {
        let d = data(total);
        let cfg = OutStreamConfig { send_buffer: 16_384 };
        let mut s = OutStream::new();
        let mut written = 0usize;
        let mut granted: u64 = MIN_WINDOW.into();
        let mut received: Vec<Option<u8>> = vec![None; total];
        let mut eof_acked = 0;
        let mut outstanding: Vec<(Seg, OutTicket)> = vec![];
        let apply = |seg: &Seg, received: &mut Vec<Option<u8>>, eof_acked: &mut usize| {
            if let Seg::Data { offset, bytes, eof, .. } = seg {
                for (i, b) in bytes.iter().enumerate() {
                    let slot = &mut received[*offset as usize + i];
                    assert!(slot.is_none() || *slot == Some(*b));
                    *slot = Some(*b);
                }
                if *eof {
                    assert_eq!(*offset as usize + bytes.len(), total);
                    *eof_acked += 1;
                }
            }
        };
        let contiguous = |received: &Vec<Option<u8>>| received.iter().take_while(|b| b.is_some()).count() as u64;
        let step = |op: u8, x: usize, flag: bool, s: &mut OutStream, written: &mut usize,
                        outstanding: &mut Vec<(Seg, OutTicket)>, received: &mut Vec<Option<u8>>,
                        eof_acked: &mut usize, granted: &mut u64| {
            match op {
                0 if *written == total => {
                    let _ = s.shutdown();
                }
                0 => {
                    let end = (*written + x).min(total);
                    let n = if flag {
                        s.write(&cfg, &d[*written..end]).unwrap()
                    } else {
                        s.write_bytes(&cfg, &Bytes::copy_from_slice(&d[*written..end])).unwrap()
                    };
                    *written += n;
                }
                1 | 2 => {
                    let budget = 8 + (x % 6000) / 4 * 4;
                    if let Some((seg, t)) = pull(s, 0, budget) {
                        if let Seg::Data { offset, bytes, .. } = &seg {
                            assert!(u64::from(*offset) + bytes.len() as u64 <= *granted);
                            assert!(bytes.len() <= MAX_SEGMENT_DATA);
                        }
                        outstanding.push((seg, t));
                    }
                }
                3 => {
                    if !outstanding.is_empty() {
                        let (seg, t) = outstanding.remove(x % outstanding.len());
                        if flag {
                            apply(&seg, received, eof_acked);
                        }
                        s.on_packet_outcome(t, flag);
                    }
                }
                _ => {
                    let b = contiguous(received) + u64::from(MIN_WINDOW) + (x as u64 % 30_000);
                    *granted = (*granted).max(b);
                    s.on_barrier(b as u32);
                }
            }
        };
        for (op, x, flag) in ops {
            step(op, x, flag, &mut s, &mut written, &mut outstanding, &mut received, &mut eof_acked, &mut granted);
        }
        // Drain: the reader reads everything, the channel eventually acks.
        let mut rounds = 0;
        while !s.is_complete() {
            rounds += 1;
            prop_assert!(rounds < 10_000);
            step(0, 5000, rounds % 2 == 0, &mut s, &mut written, &mut outstanding, &mut received, &mut eof_acked, &mut granted);
            step(4, 0, true, &mut s, &mut written, &mut outstanding, &mut received, &mut eof_acked, &mut granted);
            step(1, 1440, true, &mut s, &mut written, &mut outstanding, &mut received, &mut eof_acked, &mut granted);
            while !outstanding.is_empty() {
                step(3, 0, true, &mut s, &mut written, &mut outstanding, &mut received, &mut eof_acked, &mut granted);
            }
        }
        prop_assert_eq!(s.shutdown_result(), Some(true));
        prop_assert_eq!(eof_acked, 1);
        let got: Vec<u8> = received.into_iter().map(|b| b.unwrap()).collect();
        prop_assert_eq!(got, d);
        prop_assert_eq!(s.bytes_acked() as usize, total);
    }
}
