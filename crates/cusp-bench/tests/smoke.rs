//! Tiny runs of every workload over every implemented system: proves the plumbing
//! (no speed assertions).

use std::time::Duration;

use cusp_bench::systems::{cusp::Cusp, quinn::Quinn, tcp::Tcp, tcp::TcpTls};
use cusp_bench::udp::{UdpMode, ceiling};
use cusp_bench::{BenchError, System};

fn systems() -> Vec<Box<dyn System>> {
    vec![
        Box::new(Cusp),
        Box::new(Quinn),
        Box::new(Tcp),
        Box::new(TcpTls),
    ]
}

fn ok_or_unsupported<T>(r: Result<T, BenchError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(BenchError::Unsupported(_)) => None,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_workload_runs() {
    for s in systems() {
        let name = s.name();
        if let Some(b) = ok_or_unsupported(s.bulk(1 << 20)) {
            assert_eq!(b.bytes, 1 << 20, "{name}");
        }
        if let Some(r) = ok_or_unsupported(s.req_resp(200, 8)) {
            assert_eq!(r.latencies.len(), 200, "{name}");
        }
        if let Some(c) = ok_or_unsupported(s.churn(200)) {
            assert_eq!(c.streams, 200, "{name}");
        }
        if let Some(u) =
            ok_or_unsupported(s.urgent(Duration::from_millis(100), Duration::from_millis(10)))
        {
            assert_eq!(u.delays.len(), 10, "{name}");
        }
        if let Some(f) = ok_or_unsupported(s.first_byte(3)) {
            assert_eq!(f.len(), 3, "{name}");
        }
        ok_or_unsupported(s.memory(10, 100));
    }
}

#[test]
fn udp_modes_run() {
    for m in UdpMode::ALL {
        let r = ceiling(m, Duration::from_millis(50)).unwrap();
        assert!(r.sent > 0, "{m:?}");
    }
}
