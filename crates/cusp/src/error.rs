//! The one error type of the runtime API.

use std::io;
use std::net::SocketAddrV4;
use std::path::PathBuf;

use cusp_proto::host::{
    ConnectError, ContactError, ServiceError, SetPriorityError, ShutdownError, WriteError,
};

use crate::udp::UdpError;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in variants a caller can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The UDP port is taken (`EADDRINUSE`): pick another or let the OS choose (port 0).
    #[error("UDP address {0} is already in use")]
    AddrInUse(SocketAddrV4),
    /// Binding the UDP socket failed for another reason (permission, no such address).
    #[error("cannot bind UDP socket to {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddrV4,
        /// The operating system's error.
        source: io::Error,
    },
    /// Any other I/O error (socket, key file).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// No channel to the address could be established (handshake timed out, or the peer
    /// refused it); streams opened towards it are gone.
    #[error("contact with {0} failed")]
    ContactFailed(SocketAddrV4),
    /// The stream was reset (by the peer, a state wipe, or the local application).
    #[error("stream was reset")]
    Reset,
    /// The stream was already shut down (write after `finish`/`shutdown`).
    #[error("stream was shut down")]
    Finished,
    /// The endpoint was closed (or its driver stopped).
    #[error("endpoint is closed")]
    Closed,
    /// The operation did not complete in time.
    #[error("timed out")]
    Timeout,
    /// The service number is advertised (or listened on) already.
    #[error("service {0:#06x} is in use")]
    ServiceInUse(u16),
    /// The service number is reserved or outside the range of the call: 0 is never valid,
    /// `advertise(Some(s))` needs `s` in `1..=0x3FFF` (`spec/streams.md` §4.3).
    #[error("service {0:#06x} is reserved or out of range")]
    ServiceReserved(u16),
    /// Every dynamic service number (or the per-host listener limit) is taken.
    #[error("no free service number")]
    ServiceExhausted,
    /// The host is not (or no longer) in the host table: use `contact` with its address.
    #[error("unknown host")]
    UnknownHost,
    /// Too many out-streams to one host (limit `max_out_streams`, or all 65 535 ids).
    #[error("too many streams to this host")]
    TooManyStreams,
    /// Too many contacts are waiting for their channel (`max_pending_contacts`).
    #[error("too many pending contacts")]
    TooManyPending,
    /// A stream priority must be finite.
    #[error("stream priority must be finite, got {0}")]
    InvalidPriority(f32),
    /// A message exceeded the caller's size limit (the stream was reset).
    #[error("message larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The peer's reply did not follow the request/response convention.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// A key file could not be used: missing, unreadable, not hexadecimal, wrong length, or
    /// not a valid key.
    #[error("bad key file {}: {reason}", path.display())]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
}

impl Error {
    /// The [`io::ErrorKind`] this error maps to inside [`io::Error`] (for `AsyncRead` and
    /// `AsyncWrite`; the `Error` itself is the inner error, see [`Error::from_io`]).
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            Error::Io(e) => e.kind(),
            Error::Bind { source, .. } => source.kind(),
            Error::AddrInUse(_) | Error::ServiceInUse(_) => io::ErrorKind::AddrInUse,
            Error::ContactFailed(_) => io::ErrorKind::ConnectionRefused,
            Error::Reset => io::ErrorKind::ConnectionReset,
            Error::Finished | Error::Closed => io::ErrorKind::BrokenPipe,
            Error::Timeout => io::ErrorKind::TimedOut,
            Error::UnknownHost => io::ErrorKind::NotFound,
            Error::TooLarge { .. } => io::ErrorKind::FileTooLarge,
            Error::BadKeyFile { .. } | Error::Protocol(_) => io::ErrorKind::InvalidData,
            Error::InvalidPriority(_) | Error::ServiceReserved(_) => io::ErrorKind::InvalidInput,
            Error::ServiceExhausted | Error::TooManyStreams | Error::TooManyPending => {
                io::ErrorKind::QuotaExceeded
            }
        }
    }

    /// Recovers the [`Error`] from an [`io::Error`] produced by a stream's `AsyncRead` or
    /// `AsyncWrite` (any other I/O error becomes [`Error::Io`]).
    pub fn from_io(err: io::Error) -> Error {
        if err.get_ref().is_some_and(|e| e.is::<Error>()) {
            match err.into_inner().map(|e| e.downcast::<Error>()) {
                Some(Ok(e)) => *e,
                Some(Err(e)) => Error::Io(io::Error::other(e)),
                None => Error::Closed,
            }
        } else {
            Error::Io(err)
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(e) => e,
            e => io::Error::new(e.io_kind(), e),
        }
    }
}

impl From<UdpError> for Error {
    fn from(e: UdpError) -> Error {
        match e {
            UdpError::Io(e) => Error::Io(e),
            e => Error::Io(io::Error::other(e)),
        }
    }
}

impl Error {
    pub(crate) fn from_service(e: ServiceError, service: Option<u16>) -> Error {
        let s = service.unwrap_or(0);
        match e {
            ServiceError::InUse => Error::ServiceInUse(s),
            ServiceError::Reserved | ServiceError::OutOfRange => Error::ServiceReserved(s),
            ServiceError::Exhausted => Error::ServiceExhausted,
            ServiceError::UnknownHost => Error::UnknownHost,
        }
    }
}

impl From<ConnectError> for Error {
    fn from(e: ConnectError) -> Error {
        match e {
            ConnectError::ReservedService => Error::ServiceReserved(0),
            ConnectError::UnknownHost => Error::UnknownHost,
            ConnectError::TooManyStreams => Error::TooManyStreams,
        }
    }
}

impl From<ContactError> for Error {
    fn from(e: ContactError) -> Error {
        match e {
            ContactError::ReservedService => Error::ServiceReserved(0),
            ContactError::TooManyPending => Error::TooManyPending,
            ContactError::TooManyStreams => Error::TooManyStreams,
        }
    }
}

impl From<WriteError> for Error {
    fn from(e: WriteError) -> Error {
        match e {
            WriteError::UnknownStream | WriteError::Reset => Error::Reset,
            WriteError::Finished => Error::Finished,
        }
    }
}

impl From<ShutdownError> for Error {
    fn from(e: ShutdownError) -> Error {
        match e {
            ShutdownError::UnknownStream | ShutdownError::Reset => Error::Reset,
            ShutdownError::AlreadyShutdown => Error::Finished,
        }
    }
}

impl From<SetPriorityError> for Error {
    fn from(e: SetPriorityError) -> Error {
        match e {
            SetPriorityError::UnknownStream => Error::Reset,
            SetPriorityError::NotFinite(p) => Error::InvalidPriority(p),
        }
    }
}
