//! `cusp-sim`: runs registered simulation scenarios over many seeds.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use cusp_sim::runner::{self, Outcome};
use cusp_sim::scenarios;

/// Deterministic network simulation scenarios for CUSP.
#[derive(Parser, Debug)]
#[command(name = "cusp-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a scenario (or `all`) over a range of seeds, or replay one seed.
    Run(RunArgs),
    /// List the registered scenarios.
    List,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Scenario name, or `all`.
    scenario: String,
    /// Number of consecutive seeds to run.
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// First seed of the range.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Replay exactly this seed (prints its report).
    #[arg(long, conflicts_with_all = ["seeds", "first_seed"])]
    seed: Option<u64>,
    /// Worker threads (default: number of cores). Output order does not depend on it.
    #[arg(long, short)]
    jobs: Option<usize>,
    /// Also print the report of every passing run.
    #[arg(long, short)]
    verbose: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::List => {
            for s in scenarios::all() {
                println!("{:<20} {}", s.name, s.about);
            }
            ExitCode::SUCCESS
        }
        Command::Run(args) => run(args),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let selected = if args.scenario == "all" {
        scenarios::all()
    } else if let Some(s) = scenarios::find(&args.scenario) {
        vec![s]
    } else {
        let names: Vec<_> = scenarios::all().iter().map(|s| s.name).collect();
        eprintln!(
            "unknown scenario {:?}; known: all, {}",
            args.scenario,
            names.join(", ")
        );
        return ExitCode::from(2);
    };
    let (first, count) = match args.seed {
        Some(seed) => (seed, 1),
        None => (args.first_seed, args.seeds),
    };
    let verbose = args.verbose || args.seed.is_some();
    let jobs = runner::plan(&selected, first, count);
    let threads = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    runner::install_quiet_panic_hook();
    let summary = runner::run_jobs(&jobs, threads, |o: &Outcome| match &o.result {
        Ok(report) if verbose => println!("ok   {} seed {}: {}", o.scenario, o.seed, report),
        Ok(_) => {}
        Err(_) => println!("{}", o.failure_line().unwrap_or_default()),
    });
    println!("{summary}");
    if summary.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
