//! Running named scenarios over many seeds, catching panics, in deterministic order.
//!
//! Both the `cusp-sim` binary and the integration tests go through [`run_jobs`], so what CI
//! tests is exactly what a developer replays.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// A scenario: builds a simulation from a seed, runs it and checks it.
pub type ScenarioFn = fn(seed: u64) -> Result<Report, String>;

/// A named, registered scenario.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Name used on the command line (`cusp-sim run NAME`).
    pub name: &'static str,
    /// One line saying what it checks.
    pub about: &'static str,
    /// The scenario itself.
    pub run: ScenarioFn,
}

/// What a passing scenario measured, as ordered key/value pairs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Measurements in the order they were added.
    pub metrics: Vec<(String, String)>,
}

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a measurement (builder style).
    pub fn metric(mut self, key: impl Into<String>, value: impl fmt::Display) -> Self {
        self.push(key, value);
        self
    }

    /// Adds a measurement.
    pub fn push(&mut self, key: impl Into<String>, value: impl fmt::Display) {
        self.metrics.push((key.into(), value.to_string()));
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.metrics.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// The result of running one scenario with one seed.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Scenario name.
    pub scenario: &'static str,
    /// The seed.
    pub seed: u64,
    /// The report, or the error (a returned error or a caught panic).
    pub result: Result<Report, String>,
}

impl Outcome {
    /// True if the scenario passed.
    pub fn passed(&self) -> bool {
        self.result.is_ok()
    }

    /// The command that replays exactly this run.
    pub fn replay_command(&self) -> String {
        replay_command(self.scenario, self.seed)
    }

    /// One line describing a failure (newlines in the error are folded), or `None` on pass.
    pub fn failure_line(&self) -> Option<String> {
        let err = self.result.as_ref().err()?;
        let err = err.trim_end().replace('\n', " | ");
        Some(format!(
            "FAIL {} seed {}: {}  (replay: {})",
            self.scenario,
            self.seed,
            err,
            self.replay_command()
        ))
    }
}

/// The command that replays one scenario with one seed.
pub fn replay_command(scenario: &str, seed: u64) -> String {
    format!("cargo run --release -p cusp-sim -- run {scenario} --seed {seed}")
}

/// Counts of a batch of runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Runs that passed.
    pub passed: usize,
    /// Runs that failed.
    pub failed: usize,
}

impl fmt::Display for Summary {
    /// Exactly `N passed, M failed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces the panic hook with one that prints nothing and remembers the message and
/// location for [`run_one`], so a failing seed is reported on one line. Meant for the
/// binary; tests keep the default hook.
pub fn install_quiet_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let msg = payload_message(info.payload());
        let text = match info.location() {
            Some(loc) => format!("panicked at {}:{}: {msg}", loc.file(), loc.line()),
            None => format!("panicked: {msg}"),
        };
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
    }));
}

fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Runs one scenario with one seed, turning a panic into an error.
pub fn run_one(scenario: &Scenario, seed: u64) -> Outcome {
    LAST_PANIC.with(|p| p.borrow_mut().take());
    let result = match panic::catch_unwind(AssertUnwindSafe(|| (scenario.run)(seed))) {
        Ok(r) => r,
        Err(payload) => Err(LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| format!("panicked: {}", payload_message(&*payload)))),
    };
    Outcome {
        scenario: scenario.name,
        seed,
        result,
    }
}

/// The (scenario, seed) pairs for `count` consecutive seeds from `first_seed`, scenario by
/// scenario.
pub fn plan(scenarios: &[Scenario], first_seed: u64, count: u64) -> Vec<(Scenario, u64)> {
    scenarios
        .iter()
        .flat_map(|s| (0..count).map(move |i| (*s, first_seed.wrapping_add(i))))
        .collect()
}

/// Runs `jobs` on up to `threads` threads and calls `report` for each outcome in the order
/// of `jobs` (regardless of which thread finished first). Returns the counts.
pub fn run_jobs(
    jobs: &[(Scenario, u64)],
    threads: usize,
    mut report: impl FnMut(&Outcome),
) -> Summary {
    let mut summary = Summary::default();
    let mut tally = |o: &Outcome| {
        if o.passed() {
            summary.passed += 1;
        } else {
            summary.failed += 1;
        }
        report(o);
    };
    let threads = threads.clamp(1, jobs.len().max(1));
    if threads == 1 {
        for (s, seed) in jobs {
            tally(&run_one(s, *seed));
        }
        return summary;
    }
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, Outcome)>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((s, seed)) = jobs.get(i) else { break };
                    if tx.send((i, run_one(s, *seed))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut pending = BTreeMap::new();
        let mut expected = 0;
        for (i, outcome) in rx {
            pending.insert(i, outcome);
            while let Some(o) = pending.remove(&expected) {
                tally(&o);
                expected += 1;
            }
        }
    });
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(seed: u64) -> Result<Report, String> {
        Ok(Report::new().metric("seed", seed))
    }
    fn fail_odd(seed: u64) -> Result<Report, String> {
        if seed % 2 == 1 {
            Err(format!("odd seed {seed}\nsecond line"))
        } else {
            Ok(Report::new())
        }
    }
    fn panics(_seed: u64) -> Result<Report, String> {
        panic!("boom")
    }

    const SCENARIOS: &[Scenario] = &[
        Scenario {
            name: "pass",
            about: "",
            run: pass,
        },
        Scenario {
            name: "odd",
            about: "",
            run: fail_odd,
        },
        Scenario {
            name: "panics",
            about: "",
            run: panics,
        },
    ];

    #[test]
    fn counts_order_and_panics() {
        let jobs = plan(SCENARIOS, 10, 4);
        for threads in [1, 2, 3] {
            let mut seen = Vec::new();
            let summary = run_jobs(&jobs, threads, |o| {
                seen.push((o.scenario, o.seed, o.passed()))
            });
            assert_eq!(
                summary,
                Summary {
                    passed: 6,
                    failed: 6
                }
            );
            assert_eq!(summary.to_string(), "6 passed, 6 failed");
            let order: Vec<_> = seen.iter().map(|(s, seed, _)| (*s, *seed)).collect();
            let expected: Vec<_> = jobs.iter().map(|(s, seed)| (s.name, *seed)).collect();
            assert_eq!(order, expected);
        }
        let o = run_one(&SCENARIOS[2], 1);
        assert!(o.result.unwrap_err().contains("boom"));
        let line = run_one(&SCENARIOS[1], 3).failure_line().unwrap();
        assert!(!line.contains('\n'));
        assert!(line.contains("cargo run --release -p cusp-sim -- run odd --seed 3"));
    }
}
