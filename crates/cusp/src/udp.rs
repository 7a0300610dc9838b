//! UDP
