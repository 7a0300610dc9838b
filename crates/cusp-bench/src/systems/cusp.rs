//! The cusp column: **the plug-in point for the cusp runtime**.
//!
//! Until `crates/cusp` has its Endpoint/stream API, [`Cusp`] overrides nothing, so
//! every workload returns [`crate::BenchError::Unsupported`] and the table shows `-`.
//!
//! To plug cusp in: add `cusp = { path = "../cusp" }` to this crate's Cargo.toml and
//! override the [`crate::System`] methods here, mirroring `systems/quinn.rs`
//! (same message sizes, same thread layout via [`crate::systems::two_threads`],
//! same timing points). Nothing else in the crate needs to change.

use crate::System;

/// The cusp system (not implemented yet: every workload is `-`).
pub struct Cusp;

impl System for Cusp {
    fn name(&self) -> &'static str {
        "cusp"
    }
}
