//! `cusp-bench`: identical workloads over cusp, quinn and kernel TCP on 127.0.0.1.
//!
//! Every workload runs a sender and a receiver in two threads of this process, each
//! thread with its own current-thread tokio runtime (or plain blocking sockets for the
//! TCP bulk paths), so per-thread CPU time ([`measure::thread_cpu`]) captures all the
//! work of one end.
//!
//! A transport under test implements [`System`]; every method has a default that
//! returns [`BenchError::Unsupported`], which the table prints as `-`. The systems are
//! cusp ([`systems::cusp::Cusp`], this workspace's runtime), quinn (the reference),
//! kernel TCP and TCP + rustls; see `docs/BENCHMARKS.md`.

#![warn(missing_docs)]

pub mod measure;
pub mod report;
pub mod runner;
pub mod systems;
pub mod udp;

use std::time::Duration;

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The system does not implement this workload (yet); shown as `-`.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// An I/O error from a socket or `/proc`.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Any other failure (transport errors, TLS setup, timeouts, panics), with context.
    #[error("{0}")]
    Other(String),
}

/// Result type of this crate.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// Adds context to any displayable error, turning it into [`BenchError::Other`].
pub trait Context<T> {
    /// Maps the error to `BenchError::Other("{what}: {error}")`.
    fn ctx(self, what: &str) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn ctx(self, what: &str) -> Result<T> {
        self.map_err(|e| BenchError::Other(format!("{what}: {e}")))
    }
}

/// Sizes of one run; [`Params::quick`] for CI, [`Params::full`] for real numbers.
#[derive(Debug, Clone)]
pub struct Params {
    /// Repetitions per workload; the median is reported.
    pub reps: usize,
    /// Bytes for the bulk workload.
    pub bulk_bytes: u64,
    /// Requests per request/response measurement, per outstanding level.
    pub requests: usize,
    /// Outstanding-request levels for request/response.
    pub outstanding: Vec<usize>,
    /// Unidirectional streams for churn.
    pub churn_streams: usize,
    /// Length of the urgent-under-bulk run.
    pub urgent_duration: Duration,
    /// Interval between urgent messages.
    pub urgent_interval: Duration,
    /// Samples per first-byte measurement.
    pub first_byte_samples: usize,
    /// Idle connections opened for the memory workload.
    pub mem_connections: usize,
    /// Idle streams opened on one connection for the memory workload.
    pub mem_streams: usize,
    /// Duration of each raw-UDP mode.
    pub udp_duration: Duration,
}

impl Params {
    /// Small sizes: the whole run finishes in well under a minute on 2 cores.
    pub fn quick() -> Self {
        Params {
            reps: 3,
            bulk_bytes: 64 << 20,
            requests: 5_000,
            outstanding: vec![1, 64, 512],
            churn_streams: 10_000,
            urgent_duration: Duration::from_millis(1_000),
            urgent_interval: Duration::from_millis(10),
            first_byte_samples: 10,
            mem_connections: 200,
            mem_streams: 10_000,
            udp_duration: Duration::from_millis(300),
        }
    }

    /// The sizes named in the issue (1 GiB bulk, 10^6 churn streams, ...).
    pub fn full() -> Self {
        Params {
            reps: 5,
            bulk_bytes: 1 << 30,
            requests: 50_000,
            outstanding: vec![1, 64, 512],
            churn_streams: 1_000_000,
            urgent_duration: Duration::from_secs(5),
            urgent_interval: Duration::from_millis(10),
            first_byte_samples: 50,
            mem_connections: 1_000,
            mem_streams: 10_000,
            udp_duration: Duration::from_secs(2),
        }
    }
}

/// Outcome of one bulk transfer.
#[derive(Debug, Clone)]
pub struct BulkResult {
    /// Payload bytes delivered to the receiving application.
    pub bytes: u64,
    /// From the sender's first write (connection already up) to the receiver's last byte.
    pub elapsed: Duration,
    /// CPU time (user + system) of the sending thread.
    pub sender_cpu: Duration,
    /// CPU time (user + system) of the receiving thread.
    pub receiver_cpu: Duration,
}

/// Outcome of one request/response run.
#[derive(Debug, Clone)]
pub struct ReqRespResult {
    /// Wall time for all requests.
    pub elapsed: Duration,
    /// Latency of every request (send of request to receipt of full response).
    pub latencies: Vec<Duration>,
}

/// Outcome of one churn run.
#[derive(Debug, Clone)]
pub struct ChurnResult {
    /// Streams (or TCP connections) delivered.
    pub streams: usize,
    /// From the first open to the last stream fully received.
    pub elapsed: Duration,
}

/// Outcome of one urgent-under-bulk run.
#[derive(Debug, Clone)]
pub struct UrgentResult {
    /// Delivery delay of every urgent message (write start to last byte read).
    pub delays: Vec<Duration>,
    /// Bulk bytes delivered meanwhile (proves the bulk transfer was running).
    pub bulk_bytes: u64,
    /// Length of the run.
    pub elapsed: Duration,
}

/// Outcome of one memory run; per-item figures in bytes, both ends together.
#[derive(Debug, Clone, Default)]
pub struct MemoryResult {
    /// RSS delta per idle connection.
    pub conn_rss: Option<f64>,
    /// Live-heap delta per idle connection (counting allocator).
    pub conn_heap: Option<f64>,
    /// RSS delta per idle open stream.
    pub stream_rss: Option<f64>,
    /// Live-heap delta per idle open stream.
    pub stream_heap: Option<f64>,
}

impl MemoryResult {
    /// Both phases measured: `(rss, heap)` per connection and per stream.
    pub fn of(conn: (f64, f64), stream: (f64, f64)) -> Self {
        MemoryResult {
            conn_rss: Some(conn.0),
            conn_heap: Some(conn.1),
            stream_rss: Some(stream.0),
            stream_heap: Some(stream.1),
        }
    }
}

/// One transport under test. Every workload method defaults to
/// [`BenchError::Unsupported`], so a new system only overrides what it can do.
///
/// Contract for implementors: run the two ends in two threads (see
/// [`systems::two_threads`]) on 127.0.0.1, encrypt where the system can, and
/// measure exactly what each result type documents.
pub trait System: Send + Sync {
    /// Column name in the table and `system` in the JSON.
    fn name(&self) -> &'static str;

    /// Sends `bytes` on one stream; goodput and CPU time of both ends.
    fn bulk(&self, _bytes: u64) -> Result<BulkResult> {
        Err(BenchError::Unsupported("bulk"))
    }

    /// `requests` 100 B requests with 100 B responses, one new stream per request,
    /// `outstanding` in flight.
    fn req_resp(&self, _requests: usize, _outstanding: usize) -> Result<ReqRespResult> {
        Err(BenchError::Unsupported("req_resp"))
    }

    /// `streams` unidirectional 100 B streams.
    fn churn(&self, _streams: usize) -> Result<ChurnResult> {
        Err(BenchError::Unsupported("churn"))
    }

    /// A 1 KiB message every `interval` on a high-priority stream for `duration`
    /// while a bulk transfer saturates the path.
    fn urgent(&self, _duration: Duration, _interval: Duration) -> Result<UrgentResult> {
        Err(BenchError::Unsupported("urgent"))
    }

    /// `samples` times: connect to a fresh peer (no session cache) and measure the
    /// time from "connect" to the first byte delivered to the server application.
    fn first_byte(&self, _samples: usize) -> Result<Vec<Duration>> {
        Err(BenchError::Unsupported("first_byte"))
    }

    /// Memory per idle connection (`connections` of them) and per idle open stream
    /// (`streams` on one connection).
    fn memory(&self, _connections: usize, _streams: usize) -> Result<MemoryResult> {
        Err(BenchError::Unsupported("memory"))
    }
}
