//! Runs every registered scenario for a few seeds through the same entry point as the
//! `cusp-sim` binary, so `cargo test --workspace` covers the runner and the registry.

use cusp_sim::runner::{self, Summary};
use cusp_sim::scenarios;

#[test]
fn every_registered_scenario_passes_a_few_seeds() {
    let all = scenarios::all();
    assert!(!all.is_empty());
    let jobs = runner::plan(&all, 0, 3);
    let mut failures = Vec::new();
    let summary = runner::run_jobs(&jobs, 2, |o| failures.extend(o.failure_line()));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        summary,
        Summary {
            passed: jobs.len(),
            failed: 0
        }
    );
}

#[test]
fn scenario_names_are_unique_and_findable() {
    let all = scenarios::all();
    for (i, s) in all.iter().enumerate() {
        assert!(
            all[..i].iter().all(|t| t.name != s.name),
            "duplicate scenario {}",
            s.name
        );
        assert_eq!(scenarios::find(s.name).map(|f| f.name), Some(s.name));
        assert!(!s.about.is_empty());
    }
    assert!(scenarios::find("no-such-scenario").is_none());
}

#[test]
fn a_scenario_replays_identically() {
    for s in scenarios::all() {
        let a = runner::run_one(&s, 5).result;
        let b = runner::run_one(&s, 5).result;
        assert_eq!(a, b, "{} is not deterministic", s.name);
    }
}
