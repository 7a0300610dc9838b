use super::*;
use crate::stream::out_stream::{OutStream, OutStreamConfig, OutTicket};
use crate::stream::test_util::{Seg, parse_one};
use proptest::prelude::*;

/// The config of a default stream.
fn dflt() -> InStreamConfig {
    InStreamConfig::default()
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 13 + i / 257) as u8).collect()
}

fn read_all(s: &mut InStream) -> Vec<u8> {
    let mut v = vec![];
    let _ = s.read_to_vec(&mut v);
    v
}

fn pull(s: &mut InStream, id: u16, seq: u8) -> Option<(Seg, InTicket)> {
    let mut buf = [0u8; 64];
    let (n, t) = s.pull(id, seq, &mut buf)?;
    let (seg, m) = parse_one(&buf[..n]).unwrap();
    assert_eq!(m, n);
    Some((seg, t))
}

#[test]
fn in_order_and_out_of_order_reassembly() {
    let d = data(10_000);
    let mut s = InStream::default();
    assert_eq!(s.read_chunk(100), ReadResult::WouldBlock);
    s.on_data(&dflt(), 0, &d[..1000], false).unwrap();
    s.on_data(&dflt(), 3000, &d[3000..4000], false).unwrap();
    s.on_data(&dflt(), 2500, &d[2500..3500], false).unwrap(); // overlaps
    s.on_data(&dflt(), 3000, &d[3000..4000], false).unwrap(); // duplicate
    assert_eq!(s.out_of_order_bytes(), 1500);
    assert_eq!(s.read_chunk(0), ReadResult::Data(Bytes::new()));
    assert_eq!(
        s.read_chunk(600),
        ReadResult::Data(Bytes::copy_from_slice(&d[..600]))
    );
    s.on_data(&dflt(), 500, &d[500..2600], false).unwrap(); // fills the gap, partly old
    assert_eq!(s.out_of_order_bytes(), 0);
    assert_eq!(s.ready_bytes(), 4000 - 600);
    let mut buf = [0u8; 1000];
    assert_eq!(s.read(&mut buf), ReadResult::Data(1000));
    assert_eq!(buf[..], d[600..1600]);
    assert_eq!(read_all(&mut s), d[1600..4000]);
    assert_eq!(s.bytes_delivered(), 4000);
    assert_eq!(s.read(&mut buf), ReadResult::WouldBlock);
}

// spec: streams.md §2.2.3 barrier enforcement with the recommended slack
#[test]
fn data_beyond_barrier_plus_slack_is_rejected() {
    let mut s = InStream::default();
    let lim = (2 * MIN_WINDOW) as usize;
    assert_eq!(
        s.on_data(&dflt(), lim as u32 - 10, &[0; 11], false),
        Err(DataError::BeyondBarrier)
    );
    assert_eq!(s.out_of_order_bytes(), 0);
    assert_eq!(s.on_data(&dflt(), lim as u32 - 10, &[0; 10], false), Ok(()));
    assert_eq!(
        s.on_data(&dflt(), u32::MAX - 3, &[0; 2], false),
        Err(DataError::Inconsistent)
    );
    let tight = InStreamConfig {
        slack: 0,
        ..Default::default()
    };
    let mut s = InStream::new();
    assert!(s.on_data(&tight, MIN_WINDOW - 4, &[1; 5], false).is_err());
    assert!(s.on_data(&tight, MIN_WINDOW - 4, &[1; 4], false).is_ok());
}

#[test]
fn eof_is_delivered_after_all_bytes_and_checked() {
    let d = data(3000);
    let mut s = InStream::default();
    s.on_data(&dflt(), 2000, &d[2000..], true).unwrap();
    assert!(!s.all_received());
    assert_eq!(
        s.on_data(&dflt(), 2500, &d[2500..2900], true),
        Err(DataError::Inconsistent),
        "second EOF differs"
    );
    assert_eq!(
        s.on_data(&dflt(), 2900, &[0; 200], false),
        Err(DataError::Inconsistent),
        "past EOF"
    );
    s.on_data(&dflt(), 0, &d[..2000], false).unwrap();
    assert!(s.all_received() && s.id_releasable() && !s.is_complete());
    assert_eq!(s.state(), InStreamState::Active, "unread bytes");
    assert_eq!(
        s.scheduling_priority(),
        f32::NEG_INFINITY,
        "no barrier updates after EOF"
    );
    assert_eq!(read_all(&mut s), d);
    assert_eq!(s.state(), InStreamState::Shutdown);
    assert_eq!(s.read_chunk(10), ReadResult::Finished);
    assert_eq!(s.read_chunk(10), ReadResult::Finished);
    assert!(s.is_complete());
    s.on_data(&dflt(), 0, &d[..100], false).unwrap(); // late duplicate: accepted, ignored
}

#[test]
fn empty_eof_and_eof_before_edge() {
    let mut s = InStream::default();
    s.on_data(&dflt(), 0, &[1, 2, 3], false).unwrap();
    assert_eq!(
        s.on_data(&dflt(), 2, &[], true),
        Err(DataError::Inconsistent)
    );
    s.on_data(&dflt(), 3, &[], true).unwrap();
    assert_eq!(read_all(&mut s), [1, 2, 3]);
    assert_eq!(s.read_chunk(1), ReadResult::Finished);
}

// spec: streams.md §2.2.6, §2.2.7
#[test]
fn window_doubles_on_barrier_ack_and_lost_barrier_rearms() {
    let mut s = InStream::default();
    let d = data(40_000);
    s.on_data(&dflt(), 0, &d[..10_000], false).unwrap();
    assert!(!s.barrier_update_due());
    assert_eq!(read_all(&mut s).len(), 10_000);
    assert!(s.barrier_update_due());
    assert_eq!(s.scheduling_priority(), f32::INFINITY);
    let (seg, t) = pull(&mut s, 7, 3).unwrap();
    assert_eq!(
        seg,
        Seg::ReaderBarrier {
            seq: 3,
            id: 7,
            barrier: 31_568
        }
    );
    assert!(pull(&mut s, 7, 3).is_none());
    // Lost: the update is due again.
    s.on_packet_outcome(&dflt(), t, false);
    let (_, t) = pull(&mut s, 7, 3).unwrap();
    // The application consumes 20000 bytes during the round trip.
    for k in 0..5 {
        let a = 10_000 + k * 4000;
        s.on_data(&dflt(), a as u32, &d[a..a + 4000], false)
            .unwrap();
        read_all(&mut s);
    }
    s.on_packet_outcome(&dflt(), t, true);
    // The reference rule: twice the bytes read while the barrier was in flight
    // (the writer was not starved when it was sent, so no doubling).
    assert_eq!(s.window(), 40_000);
    assert_eq!(s.barrier(), 30_000 + 40_000);
    // A reader that falls behind and reads nothing while the barrier is in flight:
    // the reference would fall back to MIN_WINDOW; this reader keeps its window.
    s.on_data(&dflt(), 30_000, &data(15_000), false).unwrap();
    let (_, t) = pull(&mut s, 7, 3).unwrap();
    s.on_packet_outcome(&dflt(), t, true);
    assert_eq!(s.window(), 40_000);
    assert_eq!(s.barrier(), 70_000);
}

// Local policy (docs/decisions.md "Receive window growth").
#[test]
fn window_doubles_while_the_writer_fills_it_and_the_reader_keeps_up() {
    let mut s = InStream::default();
    let mut credit = u64::from(MIN_WINDOW);
    let mut at = 0u64;
    let mut expected = u64::from(MIN_WINDOW);
    for _ in 0..12 {
        // The writer uses all its credit; the reader reads it at once; the barrier's
        // ack arrives before any more data (nothing is read meanwhile, so the
        // reference rule alone would keep the window at MIN_WINDOW).
        s.on_data(&dflt(), at as u32, &data((credit - at) as usize), false)
            .unwrap();
        at = credit;
        read_all(&mut s);
        let (seg, t) = pull(&mut s, 1, 0).unwrap();
        let Seg::ReaderBarrier { barrier, .. } = seg else {
            panic!("{seg:?}")
        };
        credit = u64::from(barrier);
        s.on_packet_outcome(&dflt(), t, true);
        expected = (2 * expected).min(16 << 20);
        assert_eq!(s.window(), expected);
    }
    assert_eq!(s.window(), 16 << 20, "clamped at max_window");
}

#[test]
fn lost_barrier_does_not_rearm_if_a_newer_one_was_sent() {
    let mut s = InStream::default();
    s.on_data(&dflt(), 0, &data(6000), false).unwrap();
    read_all(&mut s);
    let (_, t1) = pull(&mut s, 0, 0).unwrap();
    s.on_data(&dflt(), 6000, &data(6000), false).unwrap();
    read_all(&mut s);
    let (_, t2) = pull(&mut s, 0, 0).unwrap();
    s.on_packet_outcome(&dflt(), t1, false);
    assert!(!s.barrier_update_due());
    s.on_packet_outcome(&dflt(), t2, true);
}

#[test]
fn reader_reset_is_sent_until_acked() {
    let mut s = InStream::default();
    s.on_data(&dflt(), 0, &data(100), false).unwrap();
    s.reset();
    assert_eq!(s.ready_bytes(), 0);
    assert_eq!(s.read_chunk(10), ReadResult::Reset);
    assert_eq!(s.state(), InStreamState::Reset);
    assert_eq!(s.scheduling_priority(), f32::INFINITY);
    let (seg, t) = pull(&mut s, 5, 2).unwrap();
    assert_eq!(seg, Seg::ReaderResets { seq: 2, id: 5 });
    assert_eq!(s.scheduling_priority(), f32::NEG_INFINITY);
    s.on_packet_outcome(&dflt(), t, false);
    let (_, t) = pull(&mut s, 5, 2).unwrap();
    assert!(!s.is_complete());
    s.on_data(&dflt(), 100, &data(10), false).unwrap(); // dropped
    assert_eq!(s.ready_bytes(), 0);
    s.on_packet_outcome(&dflt(), t, true);
    assert!(s.is_complete() && s.id_releasable());
}

#[test]
fn reset_after_eof_and_writer_reset_send_nothing() {
    let mut s = InStream::default();
    s.on_data(&dflt(), 0, &data(10), true).unwrap();
    s.reset();
    assert!(s.is_complete());
    assert!(pull(&mut s, 0, 0).is_none());
    let mut s = InStream::default();
    s.on_data(&dflt(), 0, &data(10), false).unwrap();
    s.on_writer_reset();
    assert!(s.is_complete());
    assert_eq!(s.read_chunk(10), ReadResult::Reset);
    assert!(pull(&mut s, 0, 0).is_none());
    // EOF arriving while a READER_RESETS is pending: nothing to send any more.
    let mut s = InStream::default();
    s.reset();
    s.on_data(&dflt(), 0, &data(10), true).unwrap();
    assert!(s.is_complete());
    assert!(pull(&mut s, 0, 0).is_none());
}

#[test]
fn fragmentation_is_capped() {
    let mut s = InStream::default();
    let mut refused = false;
    for k in 0..(2 * MIN_WINDOW / 2) {
        match s.on_data(&dflt(), 1 + 2 * k, &[9], false) {
            Ok(()) => {}
            Err(e) => {
                assert_eq!(e, DataError::TooFragmented);
                refused = true;
                break;
            }
        }
    }
    assert!(refused);
    assert!(s.out_of_order_bytes() <= (2 * MIN_WINDOW / 256 + 16) as usize);
}

#[derive(Debug)]
enum Packet {
    ToReader(Seg, OutTicket),
    ToWriter(Seg, InTicket),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A writer and a reader over a channel that reorders, duplicates and
    /// loses packets: every segment the honest writer sends is accepted, the
    /// reader's buffers stay within window + slack, and the bytes read equal
    /// the bytes written.
    #[test]
    fn end_to_end_reassembly_under_loss_and_reordering(
        total in 0usize..120_000,
        ops in proptest::collection::vec((0u8..7, 0usize..100_000, 0u8..10), 1..600),
    ) {
        let d = data(total);
        let cfg = InStreamConfig { max_window: 65_536, ..Default::default() };
        let bound = 65_536 + MIN_WINDOW as usize;
        let wcfg = OutStreamConfig { send_buffer: 50_000 };
        let mut w = OutStream::new();
        let mut r = InStream::new();
        let mut written = 0usize;
        let mut out: Vec<u8> = vec![];
        let mut finished = false;
        let mut net: Vec<Packet> = vec![];
        let step = |op: u8, x: usize, coin: u8, w: &mut OutStream, r: &mut InStream,
                        net: &mut Vec<Packet>, written: &mut usize, out: &mut Vec<u8>, finished: &mut bool| {
            match op {
                0 => {
                    if *written == total {
                        let _ = w.shutdown();
                    } else {
                        let end = (*written + x % 20_000).min(total);
                        *written += w.write(&wcfg, &d[*written..end]).unwrap();
                    }
                }
                1 | 2 => {
                    let mut buf = vec![0u8; 8 + (x % 5000) / 4 * 4];
                    if let Some((n, t)) = w.pull(0, &mut buf) {
                        net.push(Packet::ToReader(parse_one(&buf[..n]).unwrap().0, t));
                    }
                    let mut buf = [0u8; 8];
                    if let Some((n, t)) = r.pull(0, 0, &mut buf) {
                        net.push(Packet::ToWriter(parse_one(&buf[..n]).unwrap().0, t));
                    }
                }
                3 | 4 => {
                    if net.is_empty() {
                        return;
                    }
                    let i = x % net.len();
                    let lose = coin == 0;
                    let dup = coin == 1;
                    let p = if dup { None } else { Some(net.remove(i)) };
                    let pref = match &p {
                        Some(p) => p,
                        None => &net[i],
                    };
                    let mut accepted = false;
                    if !lose {
                        match pref {
                            Packet::ToReader(Seg::Data { offset, bytes, eof, .. }, _) => {
                                r.on_data(&cfg, *offset, bytes, *eof).expect("honest writer accepted");
                                accepted = true;
                            }
                            Packet::ToWriter(Seg::ReaderBarrier { barrier, .. }, _) => {
                                w.on_barrier(*barrier);
                                accepted = true;
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                    match p {
                        Some(Packet::ToReader(_, t)) => w.on_packet_outcome(t, accepted),
                        Some(Packet::ToWriter(_, t)) => r.on_packet_outcome(&cfg, t, accepted),
                        None => {}
                    }
                }
                5 => match r.read_chunk(x % 9000) {
                    ReadResult::Data(b) => out.extend_from_slice(&b),
                    ReadResult::Finished => *finished = true,
                    ReadResult::Reset => panic!("unexpected reset"),
                    ReadResult::WouldBlock => {}
                },
                _ => {}
            }
            assert!(r.ready_bytes() + r.out_of_order_bytes() <= bound);
        };
        for (op, x, coin) in ops {
            step(op, x, coin, &mut w, &mut r, &mut net, &mut written, &mut out, &mut finished);
        }
        let mut rounds = 0;
        while !(finished && w.is_complete()) {
            rounds += 1;
            prop_assert!(rounds < 20_000, "no progress: {:?} {:?} fin={} out={}", w, r, finished, out.len());
            step(0, 19_999, 5, &mut w, &mut r, &mut net, &mut written, &mut out, &mut finished);
            step(1, 1440, 5, &mut w, &mut r, &mut net, &mut written, &mut out, &mut finished);
            while !net.is_empty() {
                step(3, 0, 5, &mut w, &mut r, &mut net, &mut written, &mut out, &mut finished);
            }
            step(5, 100_000, 5, &mut w, &mut r, &mut net, &mut written, &mut out, &mut finished);
        }
        prop_assert_eq!(out, d);
        prop_assert_eq!(w.shutdown_result(), Some(true));
        prop_assert!(r.is_complete());
    }
}
