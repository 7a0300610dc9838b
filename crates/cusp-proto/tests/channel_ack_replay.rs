//! Replay of the lossy captures `V9-loss.txt` and `V10-reorder.txt`
//! (`spec/channel.md` §5.3, Q7) through [`AckGenerator`].
//!
//! For each receiving side, the peer's DATA datagrams are fed to a generator
//! in delivery order (duplicates twice, dropped ones not at all). Every DATA
//! datagram that side sent must carry an `(ASN, acklen)` that the generator
//! produced at some point of the receive history delivered before the send
//! (acks may lag, §5.3), and the matching points must not go backwards.
//!
mod support;

use std::time::{Duration, Instant};

use support::vector_file::VectorFile;

use cusp_proto::channel::AckGenerator;

/// One DATA datagram of a lossy capture, as far as the ack replay needs it.
struct Data {
    index: usize,
    dir: String,
    len: usize,
    tsn: u32,
    asn: u32,
    acklen: u8,
    sent_s: f64,
    delivered_s: Vec<f64>,
    delayed: bool,
}

/// DATA datagrams of a transcript, in capture (send) order.
fn data_datagrams(v: &VectorFile) -> Vec<Data> {
    v.datagrams
        .iter()
        .enumerate()
        .filter(|(_, d)| d.get("type") == "DATA")
        .map(|(i, d)| Data {
            index: i + 1,
            dir: d.get("dir").to_owned(),
            len: d.int("len") as usize,
            tsn: d.int("tsn") as u32,
            asn: d.int("asn") as u32,
            acklen: d.int("acklen") as u8,
            sent_s: d.get("time_offset_s").parse().expect("time"),
            delivered_s: d
                .raw("delivered_at_s")
                .unwrap_or("")
                .split(|c: char| c == ',' || c.is_whitespace())
                .map_while(|t| t.parse::<f64>().ok())
                .collect(),
            delayed: d.get("relay") == "delayed",
        })
        .collect()
}

/// Replay what `receiver` saw and check the acks it sent. Returns
/// (acks checked, acks that lagged behind the delivered state).
fn replay(file: &str, receiver: &str) -> (usize, usize) {
    let all = data_datagrams(&VectorFile::load(file));
    assert!(!all.is_empty());
    let inbound = |d: &&Data| d.dir.ends_with(&format!("->{receiver}"));
    let outbound = |d: &&Data| d.dir.starts_with(&format!("{receiver}->"));

    // receive history in delivery order; times are rounded to 0.1 ms, and a
    // datagram the relay held back was released right after the datagram
    // that freed it, so on a tie it goes last (stable sort keeps send order)
    let mut deliveries: Vec<(f64, bool, u32, bool)> = all
        .iter()
        .filter(inbound)
        .flat_map(|d| {
            d.delivered_s
                .iter()
                .map(move |&t| (t, d.delayed, d.tsn, d.len > 24))
        })
        .collect();
    deliveries.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));

    // candidate ack fields after k deliveries: the pending out-of-order ack
    // (if any) and the normal one
    let base = Instant::now();
    let mut g = AckGenerator::new(base, false);
    let mut candidates: Vec<Vec<(u32, u8)>> = Vec::new();
    let snapshot = |g: &AckGenerator| {
        let mut c = g.clone();
        let first = c.take_ack(base);
        vec![first, c.peek_ack()]
    };
    candidates.push(snapshot(&g));
    for &(t, _, tsn, nonempty) in &deliveries {
        let now = base + Duration::from_secs_f64(t);
        if g.classify(tsn).is_processed() {
            g.record(now, tsn, true, nonempty);
        }
        candidates.push(snapshot(&g));
    }

    const EPS: f64 = 0.000_25; // times are rounded to 0.1 ms
    let mut k_min = 0;
    let (mut checked, mut lagged) = (0, 0);
    for d in all.iter().filter(outbound) {
        let k_max = deliveries.partition_point(|x| x.0 <= d.sent_s + EPS);
        let want = (d.asn, d.acklen);
        let found = (k_min..=k_max)
            .rev()
            .find(|&k| candidates[k].contains(&want));
        let Some(k) = found else {
            panic!(
                "{file} datagram {} ({receiver} TSN {}): ack {:?} not produced by any receive state \
                 {k_min}..={k_max}; candidates there: {:?}",
                d.index,
                d.tsn,
                want,
                &candidates[k_min..=k_max.max(k_min)]
            );
        };
        if k < k_max {
            lagged += 1;
        }
        k_min = k;
        checked += 1;
    }
    eprintln!(
        "{file} {receiver}: {checked} acks checked, {lagged} lagged behind the delivered state"
    );
    (checked, lagged)
}

#[test]
fn v9_server_acks_match_generator() {
    let (checked, lagged) = replay("V9-loss", "server");
    assert!(checked > 20);
    assert!(lagged * 2 < checked, "most acks describe the current state");
}

#[test]
fn v9_client_acks_match_generator() {
    let (checked, _) = replay("V9-loss", "client");
    assert!(checked > 100);
}

#[test]
fn v10_server_acks_match_generator() {
    let (checked, lagged) = replay("V10-reorder", "server");
    assert!(checked > 20);
    assert!(lagged * 2 < checked, "most acks describe the current state");
}

#[test]
fn v10_client_acks_match_generator() {
    let (checked, _) = replay("V10-reorder", "client");
    assert!(checked > 100);
}
