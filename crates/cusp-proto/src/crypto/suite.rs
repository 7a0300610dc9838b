//! Suite identifiers, suite sets (16-bit masks), costs and `cheapest`.
// spec: channel.md §3.1

use std::fmt;

/// A public-key (key agreement) suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PublicKeySuite {
    /// `xor`: insecure test suite, mask bit 0x0001, cost 0.1.
    Xor,
    /// `curve25519+whirlpool`: HMQV on full Curve25519 points, mask bit 0x0002, cost 1.0.
    Curve25519Whirlpool,
}

/// A symmetric (sealing) suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SymmetricSuite {
    /// `crc32`: keyed checksum, no encryption; mask bit 0x0001, cost 0.5.
    Crc32,
    /// `poly1305+aes`: AES-128-CTR and Poly1305-AES; mask bit 0x0002, cost 1.0.
    Poly1305Aes,
}

impl PublicKeySuite {
    /// All defined suites, cheapest first.
    pub const ALL: [PublicKeySuite; 2] = [PublicKeySuite::Xor, PublicKeySuite::Curve25519Whirlpool];

    /// The suite's bit in a suite mask.
    pub const fn bit(self) -> u16 {
        match self {
            PublicKeySuite::Xor => 0x0001,
            PublicKeySuite::Curve25519Whirlpool => 0x0002,
        }
    }

    /// Relative cost as defined by the reference (lower is cheaper).
    pub const fn cost(self) -> f32 {
        match self {
            PublicKeySuite::Xor => 0.1,
            PublicKeySuite::Curve25519Whirlpool => 1.0,
        }
    }

    /// The reference's name of the suite.
    pub const fn name(self) -> &'static str {
        match self {
            PublicKeySuite::Xor => "xor",
            PublicKeySuite::Curve25519Whirlpool => "curve25519+whirlpool",
        }
    }

    /// Length of the long-term public key (field B) and ephemeral value (field Y).
    pub const fn key_len(self) -> usize {
        32
    }
}

impl SymmetricSuite {
    /// All defined suites, cheapest first.
    pub const ALL: [SymmetricSuite; 2] = [SymmetricSuite::Crc32, SymmetricSuite::Poly1305Aes];

    /// The suite's bit in a suite mask.
    pub const fn bit(self) -> u16 {
        match self {
            SymmetricSuite::Crc32 => 0x0001,
            SymmetricSuite::Poly1305Aes => 0x0002,
        }
    }

    /// Relative cost as defined by the reference (lower is cheaper).
    pub const fn cost(self) -> f32 {
        match self {
            SymmetricSuite::Crc32 => 0.5,
            SymmetricSuite::Poly1305Aes => 1.0,
        }
    }

    /// The reference's name of the suite.
    pub const fn name(self) -> &'static str {
        match self {
            SymmetricSuite::Crc32 => "crc32",
            SymmetricSuite::Poly1305Aes => "poly1305+aes",
        }
    }

    /// Length of each directional key (`keyLen`, channel.md §3.1).
    pub const fn key_len(self) -> usize {
        match self {
            SymmetricSuite::Crc32 => 8,
            SymmetricSuite::Poly1305Aes => 32,
        }
    }

    /// Length of the authentication tag appended to sealed datagrams.
    pub const fn mac_len(self) -> usize {
        16
    }
}

impl fmt::Display for PublicKeySuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for SymmetricSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

macro_rules! suite_set {
    ($(#[$doc:meta])* $set:ident, $suite:ident, $defaults:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $set(u16);

        impl $set {
            /// The empty set.
            pub const EMPTY: $set = $set(0);
            /// Every defined suite.
            pub const ALL: $set = $set(0x0003);
            /// The reference's default set (the secure suite only).
            pub const DEFAULTS: $set = $defaults;

            /// The set of exactly these mask bits, unknown bits included (see [`Self::is_known`]).
            pub const fn from_mask(mask: u16) -> Self {
                $set(mask)
            }

            /// The raw 16-bit mask as sent on the wire.
            pub const fn mask(self) -> u16 {
                self.0
            }

            /// The set holding only `suite`.
            pub const fn single(suite: $suite) -> Self {
                $set(suite.bit())
            }

            /// True when no bit is set.
            pub const fn is_empty(self) -> bool {
                self.0 == 0
            }

            /// True when every set bit names a defined suite.
            pub const fn is_known(self) -> bool {
                self.0 & !Self::ALL.0 == 0
            }

            /// True when `suite` is in the set.
            pub const fn contains(self, suite: $suite) -> bool {
                self.0 & suite.bit() != 0
            }

            /// Set intersection.
            pub const fn intersect(self, other: Self) -> Self {
                $set(self.0 & other.0)
            }

            /// Set union.
            pub const fn union(self, other: Self) -> Self {
                $set(self.0 | other.0)
            }

            /// True when every member of `self` is in `other`.
            pub const fn is_subset(self, other: Self) -> bool {
                self.0 & !other.0 == 0
            }

            /// The member with the lowest cost (the *weakest*, remark R5), if any.
            /// Unknown bits are ignored.
            pub fn cheapest(self) -> Option<$suite> {
                // ALL is ordered cheapest first.
                $suite::ALL.into_iter().find(|s| self.contains(*s))
            }

            /// The defined suites in the set, cheapest first.
            pub fn iter(self) -> impl Iterator<Item = $suite> {
                $suite::ALL.into_iter().filter(move |s| self.contains(*s))
            }
        }

        impl fmt::Debug for $set {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:#06x})", stringify!($set), self.0)
            }
        }

        impl From<$suite> for $set {
            fn from(s: $suite) -> Self {
                Self::single(s)
            }
        }
    };
}

suite_set!(
    /// A set of public-key suites (the 16-bit public-key mask of HELLO/WELCOME/FAIL).
    PublicKeySuites,
    PublicKeySuite,
    PublicKeySuites(0x0002)
);
suite_set!(
    /// A set of symmetric suites (the 16-bit symmetric mask of HELLO/WELCOME/FAIL).
    SymmetricSuites,
    SymmetricSuite,
    SymmetricSuites(0x0002)
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cheapest_is_lowest_cost() {
        assert_eq!(PublicKeySuites::ALL.cheapest(), Some(PublicKeySuite::Xor));
        assert_eq!(
            PublicKeySuites::DEFAULTS.cheapest(),
            Some(PublicKeySuite::Curve25519Whirlpool)
        );
        assert_eq!(SymmetricSuites::ALL.cheapest(), Some(SymmetricSuite::Crc32));
        assert_eq!(
            SymmetricSuites::from_mask(0x0002).cheapest(),
            Some(SymmetricSuite::Poly1305Aes)
        );
        assert_eq!(SymmetricSuites::EMPTY.cheapest(), None);
        assert_eq!(SymmetricSuites::from_mask(0x8000).cheapest(), None);
    }

    #[test]
    fn cost_order_matches_all_order() {
        for w in PublicKeySuite::ALL.windows(2) {
            assert!(w[0].cost() < w[1].cost());
        }
        for w in SymmetricSuite::ALL.windows(2) {
            assert!(w[0].cost() < w[1].cost());
        }
    }

    #[test]
    fn set_algebra() {
        let a = PublicKeySuites::from_mask(0x0003);
        let b = PublicKeySuites::from_mask(0x0002);
        assert!(b.is_subset(a));
        assert!(!a.is_subset(b));
        assert_eq!(a.intersect(b), b);
        assert_eq!(PublicKeySuites::single(PublicKeySuite::Xor).union(b), a);
        assert!(!PublicKeySuites::from_mask(0x0004).is_known());
        assert_eq!(a.iter().collect::<Vec<_>>(), PublicKeySuite::ALL.to_vec());
    }
}
