//! One module per subcommand; `common` and `transfer` hold what they share.

pub mod cat;
pub mod common;
pub mod info;
pub mod keygen;
pub mod listen;
pub mod perf;
pub mod recv;
pub mod relay;
pub mod send;
pub mod transfer;
