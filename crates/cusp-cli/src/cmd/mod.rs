//! One module per subcommand.

pub mod relay;
