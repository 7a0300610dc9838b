//! One module per subcommand, and `common` for what they share.

pub mod common;
pub mod perf;
pub mod relay;
