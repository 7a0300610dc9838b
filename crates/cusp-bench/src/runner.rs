//! Runs the workloads over the selected systems, alternating systems within each
//! repetition (the rotation start moves each repetition), and records medians.

use std::collections::HashMap;
use std::time::Duration;

use crate::measure::{median, percentile};
use crate::report::Report;
use crate::udp::{UdpMode, ceiling};
use crate::{BenchError, Params, System};

/// The workloads, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// 1 GiB (quick: 64 MiB) on one stream.
    Bulk,
    /// 100 B request / 100 B response, new stream per request.
    ReqResp,
    /// Many short unidirectional streams.
    Churn,
    /// 1 KiB urgent messages under a saturating bulk transfer.
    Urgent,
    /// Connect to first byte delivered, handshake included.
    FirstByte,
    /// Resident bytes per idle connection and per idle stream.
    Memory,
    /// Raw UDP ceiling (not per system).
    Udp,
}

impl Workload {
    /// All workloads in table order.
    pub const ALL: [Workload; 7] = [
        Workload::Bulk,
        Workload::ReqResp,
        Workload::Churn,
        Workload::Urgent,
        Workload::FirstByte,
        Workload::Memory,
        Workload::Udp,
    ];

    /// Name used by `--only` and in the table/JSON.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Bulk => "bulk",
            Workload::ReqResp => "reqresp",
            Workload::Churn => "churn",
            Workload::Urgent => "urgent",
            Workload::FirstByte => "first-byte",
            Workload::Memory => "memory",
            Workload::Udp => "udp",
        }
    }

    /// Parses a name as printed by [`Workload::name`].
    pub fn parse(s: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == s)
    }
}

/// Collected samples: (workload, metric, unit) -> system -> values over repetitions.
struct Samples {
    order: Vec<(String, String, String)>,
    values: HashMap<(String, String), HashMap<String, Vec<f64>>>,
}

impl Samples {
    fn new() -> Self {
        Samples {
            order: Vec::new(),
            values: HashMap::new(),
        }
    }

    fn declare(&mut self, w: &str, metric: &str, unit: &str) {
        let key = (w.to_string(), metric.to_string());
        if !self.values.contains_key(&key) {
            self.order.push((w.into(), metric.into(), unit.into()));
            self.values.insert(key, HashMap::new());
        }
    }

    fn push(&mut self, w: &str, metric: &str, unit: &str, system: &str, v: f64) {
        self.declare(w, metric, unit);
        if let Some(m) = self.values.get_mut(&(w.to_string(), metric.to_string())) {
            m.entry(system.to_string()).or_default().push(v);
        }
    }

    fn into_report(self, report: &mut Report) {
        for (w, metric, unit) in &self.order {
            report.declare(w, metric, unit);
            if let Some(m) = self.values.get(&(w.clone(), metric.clone())) {
                for (sys, vals) in m {
                    if let Some(med) = median(vals) {
                        report.set(w, metric, unit, sys, med);
                    }
                }
            }
        }
    }
}

fn us(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

fn ms(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// Runs the selected workloads and returns the report; failures are recorded as
/// notes (and counted in the returned number) instead of aborting the run.
pub fn run(
    params: &Params,
    systems: &[Box<dyn System>],
    workloads: &[Workload],
) -> (Report, usize) {
    let mut report = Report::new(systems.iter().map(|s| s.name().to_string()).collect());
    let mut failures = 0usize;
    for &w in workloads {
        let mut samples = Samples::new();
        if w == Workload::Udp {
            run_udp(params, &mut samples, &mut report, &mut failures);
            samples.into_report(&mut report);
            continue;
        }
        let reps = if w == Workload::Memory {
            1
        } else {
            params.reps
        };
        for rep in 0..reps {
            for i in 0..systems.len() {
                // Alternate: rotate which system goes first in each repetition.
                let sys = &systems[(i + rep) % systems.len()];
                eprintln!("[{} {}/{}] {}", w.name(), rep + 1, reps, sys.name());
                let t0 = std::time::Instant::now();
                let res = run_one(w, params, sys.as_ref(), &mut samples);
                if !matches!(res, Err(BenchError::Unsupported(_))) {
                    eprintln!("  ({:.2} s)", t0.elapsed().as_secs_f64());
                }
                if let Err(e) = res {
                    match e {
                        BenchError::Unsupported(_) => {}
                        e => {
                            failures += 1;
                            eprintln!("  FAILED: {e}");
                            report
                                .notes
                                .push(format!("FAILED {} {}: {e}", w.name(), sys.name()));
                        }
                    }
                }
            }
        }
        samples.into_report(&mut report);
    }
    (report, failures)
}

fn run_one(w: Workload, p: &Params, sys: &dyn System, s: &mut Samples) -> Result<(), BenchError> {
    let name = sys.name();
    let wn = w.name();
    match w {
        Workload::Bulk => {
            s.declare(wn, "goodput", "Gbit/s");
            s.declare(wn, "sender CPU", "s/GiB");
            s.declare(wn, "receiver CPU", "s/GiB");
            let r = sys.bulk(p.bulk_bytes)?;
            if r.bytes != p.bulk_bytes {
                return Err(BenchError::Other(format!(
                    "delivered {} of {} bytes",
                    r.bytes, p.bulk_bytes
                )));
            }
            let gib = r.bytes as f64 / (1u64 << 30) as f64;
            let gbps = r.bytes as f64 * 8.0 / r.elapsed.as_secs_f64().max(1e-9) / 1e9;
            eprintln!(
                "  {gbps:.2} Gbit/s, cpu send {:.3}s recv {:.3}s",
                r.sender_cpu.as_secs_f64(),
                r.receiver_cpu.as_secs_f64()
            );
            s.push(wn, "goodput", "Gbit/s", name, gbps);
            s.push(
                wn,
                "sender CPU",
                "s/GiB",
                name,
                r.sender_cpu.as_secs_f64() / gib,
            );
            s.push(
                wn,
                "receiver CPU",
                "s/GiB",
                name,
                r.receiver_cpu.as_secs_f64() / gib,
            );
        }
        Workload::ReqResp => {
            for &k in &p.outstanding {
                let (m_rps, m_50, m_99) = (
                    format!("req/s @{k}"),
                    format!("p50 @{k}"),
                    format!("p99 @{k}"),
                );
                s.declare(wn, &m_rps, "1/s");
                s.declare(wn, &m_50, "us");
                s.declare(wn, &m_99, "us");
                let r = sys.req_resp(p.requests, k)?;
                if r.latencies.len() != p.requests {
                    return Err(BenchError::Other(format!(
                        "{} of {} requests answered",
                        r.latencies.len(),
                        p.requests
                    )));
                }
                let rps = r.latencies.len() as f64 / r.elapsed.as_secs_f64().max(1e-9);
                eprintln!("  @{k}: {rps:.0} req/s");
                s.push(wn, &m_rps, "1/s", name, rps);
                s.push(wn, &m_50, "us", name, us(percentile(&r.latencies, 0.50)));
                s.push(wn, &m_99, "us", name, us(percentile(&r.latencies, 0.99)));
            }
        }
        Workload::Churn => {
            s.declare(wn, "streams/s", "1/s");
            let r = sys.churn(p.churn_streams)?;
            let rate = r.streams as f64 / r.elapsed.as_secs_f64().max(1e-9);
            eprintln!("  {} streams: {rate:.0}/s", r.streams);
            s.push(wn, "streams/s", "1/s", name, rate);
        }
        Workload::Urgent => {
            s.declare(wn, "delay p50", "ms");
            s.declare(wn, "delay p99", "ms");
            s.declare(wn, "bulk meanwhile", "Gbit/s");
            let r = sys.urgent(p.urgent_duration, p.urgent_interval)?;
            let gbps = r.bulk_bytes as f64 * 8.0 / r.elapsed.as_secs_f64().max(1e-9) / 1e9;
            let (p50, p99) = (percentile(&r.delays, 0.5), percentile(&r.delays, 0.99));
            eprintln!(
                "  p50 {:.3} ms p99 {:.3} ms, bulk {gbps:.2} Gbit/s",
                ms(p50),
                ms(p99)
            );
            s.push(wn, "delay p50", "ms", name, ms(p50));
            s.push(wn, "delay p99", "ms", name, ms(p99));
            s.push(wn, "bulk meanwhile", "Gbit/s", name, gbps);
        }
        Workload::FirstByte => {
            s.declare(wn, "p50", "us");
            s.declare(wn, "max", "us");
            let r = sys.first_byte(p.first_byte_samples)?;
            let p50 = percentile(&r, 0.5);
            eprintln!("  p50 {:.0} us", us(p50));
            s.push(wn, "p50", "us", name, us(p50));
            s.push(wn, "max", "us", name, us(percentile(&r, 1.0)));
        }
        Workload::Memory => {
            s.declare(wn, "heap / idle conn", "B");
            s.declare(wn, "RSS / idle conn", "B");
            s.declare(wn, "heap / idle stream", "B");
            s.declare(wn, "RSS / idle stream", "B");
            let r = sys.memory(p.mem_connections, p.mem_streams)?;
            eprintln!("  {r:?}");
            let mut put = |m: &str, v: Option<f64>| {
                if let Some(v) = v {
                    s.push(wn, m, "B", name, v);
                }
            };
            put("heap / idle conn", r.conn_heap);
            put("RSS / idle conn", r.conn_rss);
            put("heap / idle stream", r.stream_heap);
            put("RSS / idle stream", r.stream_rss);
        }
        Workload::Udp => {}
    }
    Ok(())
}

fn run_udp(p: &Params, s: &mut Samples, report: &mut Report, failures: &mut usize) {
    for rep in 0..p.reps {
        for i in 0..UdpMode::ALL.len() {
            let mode = UdpMode::ALL[(i + rep) % UdpMode::ALL.len()];
            eprintln!("[udp {}/{}] {}", rep + 1, p.reps, mode.label());
            match ceiling(mode, p.udp_duration) {
                Ok(r) => {
                    eprintln!(
                        "  sent {} received {}: {:.0} pkt/s {:.2} Gbit/s",
                        r.sent,
                        r.received,
                        r.packets_per_sec(),
                        r.gbits()
                    );
                    let l = mode.label();
                    s.declare("udp", &format!("{l} pkt/s"), "1/s");
                    s.declare("udp", &format!("{l} goodput"), "Gbit/s");
                    s.push(
                        "udp",
                        &format!("{l} pkt/s"),
                        "1/s",
                        "udp",
                        r.packets_per_sec(),
                    );
                    s.push("udp", &format!("{l} goodput"), "Gbit/s", "udp", r.gbits());
                }
                Err(e) => {
                    *failures += 1;
                    eprintln!("  FAILED: {e}");
                    report
                        .notes
                        .push(format!("FAILED udp {}: {e}", mode.label()));
                }
            }
        }
    }
}
