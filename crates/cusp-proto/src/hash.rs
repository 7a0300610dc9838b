//! Hash maps and sets with a fast, randomly seeded hasher.
//!
//! std's SipHash took 5–9 % of the CPU in the benchmarks (host, stream and
//! channel lookups for every datagram). foldhash is several times faster and
//! still seeded from process randomness per map, so colliding keys cannot be
//! precomputed; every table it backs is bounded by a configured limit as well
//! (docs/decisions.md, "Hashing").

/// `std::collections::HashMap` with foldhash's randomly seeded hasher.
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// `std::collections::HashSet` with foldhash's randomly seeded hasher.
pub type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
