//! The scenario registry. Each file contributes a `SCENARIOS` slice; [`all`] concatenates
//! them in a fixed order. To add a family (channel, stream, ...), add a module file with its
//! own `pub const SCENARIOS: &[Scenario]` and one `extend_from_slice` line below.

use crate::runner::Scenario;

pub mod channel;
pub mod sim_self;
pub mod streams;

/// Every registered scenario, in registry order.
pub fn all() -> Vec<Scenario> {
    let mut v = Vec::new();
    v.extend_from_slice(sim_self::SCENARIOS);
    v.extend_from_slice(channel::SCENARIOS);
    v.extend_from_slice(streams::SCENARIOS);
    v
}

/// The scenario called `name`.
pub fn find(name: &str) -> Option<Scenario> {
    all().into_iter().find(|s| s.name == name)
}

/// Returns `Err(format!(...))` from the enclosing scenario when the condition is false.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        let ok: bool = $cond;
        if !ok {
            return Err(format!($($arg)+));
        }
    };
}

/// Converts any displayable error (such as [`SimError`](crate::SimError)) into a scenario
/// error string.
pub fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// `a.b.c.d:port` without the ceremony.
pub fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> std::net::SocketAddrV4 {
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(a, b, c, d), port)
}
