//! Helpers shared by the integration tests; each test crate uses a subset.
#![allow(dead_code)]

pub mod test_context;
pub mod vector_file;
