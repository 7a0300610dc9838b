//! `cusp-bench`: runs the workloads and prints one table (see `docs/BENCHMARKS.md`).

use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Parser;
use cusp_bench::measure::CountingAlloc;
use cusp_bench::runner::{Workload, run};
use cusp_bench::{Params, systems};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Compare cusp, quinn and kernel TCP on 127.0.0.1 with identical workloads.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Small sizes (64 MiB bulk, 10^4 churn streams, ...): finishes in under a minute.
    #[arg(long)]
    quick: bool,
    /// Also write every figure as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    /// Only these workloads (comma-separated): bulk, reqresp, churn, urgent,
    /// first-byte, memory, udp.
    #[arg(long, value_name = "WORKLOAD", value_delimiter = ',')]
    only: Vec<String>,
    /// Only these systems (comma-separated): cusp, quinn, tcp, tcp+tls.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    systems: Vec<String>,
    /// Repetitions per workload (median reported); default 3 quick, 5 full.
    #[arg(long)]
    reps: Option<usize>,
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut params = if args.quick {
        Params::quick()
    } else {
        Params::full()
    };
    if let Some(r) = args.reps {
        params.reps = r.max(1);
    }
    let workloads: Vec<Workload> = if args.only.is_empty() {
        Workload::ALL.to_vec()
    } else {
        args.only
            .iter()
            .map(|w| Workload::parse(w).with_context(|| format!("unknown workload {w:?}")))
            .collect::<anyhow::Result<_>>()?
    };
    let mut all = systems::all();
    if !args.systems.is_empty() {
        for s in &args.systems {
            if !all.iter().any(|x| x.name() == s) {
                bail!("unknown system {s:?}");
            }
        }
        all.retain(|x| args.systems.iter().any(|s| s == x.name()));
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mode = if args.quick { "quick" } else { "full" };
    eprintln!(
        "cusp-bench: {mode} run, {} reps, {} x {cpus} CPUs",
        params.reps,
        cpu_model()
    );
    let t0 = Instant::now();
    let (mut report, failures) = run(&params, &all, &workloads);
    let took = t0.elapsed();
    report.notes.extend(
        [
            "x: ratio to quinn (value / quinn's value); higher is better for Gbit/s, 1/s; lower for us, ms, s/GiB, B".to_string(),
            "tcp+tls: bulk and first-byte only".into(),
            "reqresp tcp: ONE connection, 4-byte length-prefixed 100 B messages, pipelined; quinn: one bidi stream per request; cusp: one stream each way per request (cusp::conversation)".into(),
            "churn cusp: at most 1024 streams unacknowledged; memory cusp: per idle stream = one unidirectional stream (quinn: one bidirectional)".into(),
            "churn tcp: one connection per 100 B message, at most 20000 per run; urgent tcp: a second connection".into(),
            "memory: both ends in this process; heap = counting allocator, RSS = /proc/self/statm delta; kernel socket buffers excluded".into(),
            format!("median of {} reps (memory: 1); systems alternate within each rep; {mode} run took {:.1} s", params.reps, took.as_secs_f64()),
        ],
    );
    println!("cusp-bench {mode} run on {} ({cpus} CPUs)\n", cpu_model());
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let meta = [
            ("mode", mode.to_string()),
            ("cpu", cpu_model()),
            ("cpus", cpus.to_string()),
            ("reps", params.reps.to_string()),
            ("quinn", "0.11.12".to_string()),
        ];
        std::fs::write(path, report.json(&meta))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if failures > 0 {
        bail!("{failures} measurement(s) failed");
    }
    Ok(())
}
