//! Deterministic network simulator for CUSP.
//!
//! `cusp-sim` drives sans-IO endpoints (anything implementing [`Node`]: `handle`,
//! `poll_transmit`, `poll_timeout`, `handle_timeout`, as the cusp-proto endpoint does) over
//! simulated IPv4 UDP paths, with a virtual clock and a seeded random stream, so a scenario
//! with a given seed replays bit for bit.
//!
//! * [`Sim`]: nodes and their addresses, the event loop (`step`, `run_until`, `run_for`,
//!   `run_until_with`, `run_until_idle`, with step budget and livelock guards), NATs and
//!   rebinding, address moves, node restarts, injection of spoofed datagrams, the trace and
//!   statistics.
//! * [`LinkConfig`]: per-direction latency, jitter, bandwidth with a drop-tail byte queue,
//!   Bernoulli or Gilbert–Elliott loss, duplication, reordering and bit corruption. Paths
//!   may chain several links, so flows can share a bottleneck.
//! * [`runner`] and [`scenarios`]: named scenarios `fn(seed) -> Result<Report, String>`,
//!   run over many seeds by the `cusp-sim` binary and by the integration tests.
//! * [`nodes`]: an echo server, a sink and a paced probe sender for traffic.
//!
//! # Writing a scenario
//!
//! ```
//! use std::time::Duration;
//! use cusp_sim::nodes::{Echo, Pacer};
//! use cusp_sim::runner::Report;
//! use cusp_sim::scenarios::{err, v4};
//! use cusp_sim::{LinkConfig, Sim, ensure};
//!
//! fn lossy_echo(seed: u64) -> Result<Report, String> {
//!     let mut sim = Sim::new(seed);
//!     let (client_addr, server_addr) = (v4(10, 0, 0, 1, 4000), v4(10, 0, 0, 2, 443));
//!     let pacer = Pacer::new(sim.start(), sim.now(), server_addr, 100,
//!                            Duration::from_millis(5), sim.fork_rng());
//!     let client = sim.add_node(client_addr, pacer);
//!     let server = sim.add_node(server_addr, Echo::validating());
//!     sim.connect(client, server, LinkConfig::default().loss(0.1));
//!     sim.run_until_idle().map_err(err)?;
//!
//!     let echoed = sim.node::<Pacer>(client).valid_probes().count();
//!     ensure!(echoed > 50 && echoed < 100, "{echoed} of 100 probes came back");
//!     let _ = server;
//!     Ok(Report::new().metric("echoed", echoed))
//! }
//!
//! assert!(lossy_echo(1).is_ok());
//! // Same seed, same result.
//! assert_eq!(lossy_echo(7), lossy_echo(7));
//! ```
//!
//! A scenario is registered by adding it to a `SCENARIOS` slice in a file under
//! `src/scenarios/` (see [`scenarios`]); `cusp-sim run NAME --seeds N` then runs it.

#![warn(missing_docs)]

pub mod link;
pub mod node;
pub mod nodes;
pub mod queue;
pub mod rng;
pub mod runner;
pub mod scenarios;
pub mod sim;
pub mod stream_node;
pub mod testhost;
pub mod trace;

pub use link::{LinkConfig, LinkId, LinkStats, LossModel};
pub use node::{Node, NodeId, NodeStats, PairStats, Transmit};
pub use rng::Rng;
pub use runner::{Report, Scenario};
pub use sim::{Sim, SimError, SimStats};
pub use trace::{DatagramId, DropReason, Fate, TraceEvent};
