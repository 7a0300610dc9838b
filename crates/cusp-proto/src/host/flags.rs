//! Yes/no facts about a stream record, one bit each (records stay small).

/// One fact; which apply depends on the direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Flag {
    /// Out: the CONNECT prefix goes with the stream's segments until a packet
    /// carrying one is acked.
    Connect = 1,
    /// Out: the application shut the stream down.
    AppShutdown = 1 << 1,
    /// The application reset the stream.
    AppReset = 1 << 2,
    /// Out: a write was cut short: wake the application when space returns.
    Blocked = 1 << 3,
    /// The final event (finished / reset) was queued.
    Reported = 1 << 4,
    /// Out: restarted after a wipe: served first until its first pull (§3.8).
    Boosted = 1 << 5,
    /// Counted in the host's live streams (not reset).
    Live = 1 << 6,
    /// The application holds a handle ([`HostTable::hold`](super::HostTable::hold)).
    Held = 1 << 7,
}

/// A set of [`Flag`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Flags(u8);

impl Flags {
    pub(super) fn has(self, f: Flag) -> bool {
        self.0 & f as u8 != 0
    }

    pub(super) fn set(&mut self, f: Flag, on: bool) {
        if on {
            self.0 |= f as u8;
        } else {
            self.0 &= !(f as u8);
        }
    }

    /// The set holding just `f`.
    pub(super) fn of(f: Flag) -> Flags {
        Flags(f as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_set_and_clear_independently() {
        let mut f = Flags::of(Flag::Connect);
        f.set(Flag::Live, true);
        f.set(Flag::Connect, false);
        assert!(f.has(Flag::Live) && !f.has(Flag::Connect) && !f.has(Flag::Blocked));
    }
}
