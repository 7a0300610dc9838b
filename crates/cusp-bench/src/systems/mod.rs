//! The systems under test and helpers they share.
//!
//! To add a system: write a module with a type implementing [`crate::System`] and
//! list it in [`all`]. The column order of the table follows [`all`].

pub mod cusp;
pub mod quinn;
pub mod tcp;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ::quinn::rustls;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::{BenchError, Context, Result, System};

/// Every system, in table column order: cusp first, then quinn (the reference),
/// kernel TCP, kernel TCP with rustls.
pub fn all() -> Vec<Box<dyn System>> {
    vec![
        Box::new(cusp::Cusp),
        Box::new(quinn::Quinn),
        Box::new(tcp::Tcp),
        Box::new(tcp::TcpTls),
    ]
}

/// Upper bound on any single run; a hung run fails instead of blocking CI.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `server` and `client` on two new OS threads and returns both results.
/// A panic or error on either side becomes an error.
pub fn two_threads<A: Send, B: Send>(
    server: impl FnOnce() -> Result<A> + Send,
    client: impl FnOnce() -> Result<B> + Send,
) -> Result<(A, B)> {
    std::thread::scope(|s| {
        let hs = std::thread::Builder::new()
            .name("bench-server".into())
            .spawn_scoped(s, server)?;
        let hc = std::thread::Builder::new()
            .name("bench-client".into())
            .spawn_scoped(s, client)?;
        let c = hc
            .join()
            .map_err(|_| BenchError::Other("client thread panicked".into()));
        let a = hs
            .join()
            .map_err(|_| BenchError::Other("server thread panicked".into()))??;
        Ok((a, c??))
    })
}

/// Runs `fut` to completion on a new current-thread tokio runtime on this thread,
/// failing after [`RUN_TIMEOUT`].
pub fn block_on<T>(what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match tokio::time::timeout(RUN_TIMEOUT, fut).await {
            Ok(r) => r,
            Err(_) => Err(BenchError::Other(format!("{what}: timed out"))),
        }
    })
}

/// A self-signed certificate for `localhost` shared by every TLS-using system.
pub struct TlsMaterial {
    /// The certificate (also the trust anchor on the client side).
    pub cert: CertificateDer<'static>,
    /// Its PKCS#8 private key.
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl TlsMaterial {
    /// The process-wide certificate, generated with rcgen on first use.
    pub fn get() -> Result<&'static TlsMaterial> {
        static CELL: OnceLock<std::result::Result<TlsMaterial, String>> = OnceLock::new();
        CELL.get_or_init(|| {
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
                .map_err(|e| format!("rcgen: {e}"))?;
            Ok(TlsMaterial {
                cert: ck.cert.der().clone(),
                key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()),
            })
        })
        .as_ref()
        .map_err(|e| BenchError::Other(e.clone()))
    }

    /// The private key as rustls wants it.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// A root store trusting only this certificate.
    pub fn roots(&self) -> Result<Arc<rustls::RootCertStore>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).ctx("root store")?;
        Ok(Arc::new(roots))
    }
}

/// Pairwise `arrival − start` of nanosecond timestamps (first-byte samples).
pub fn delays(arrivals: &[u64], starts: &[u64]) -> Vec<std::time::Duration> {
    arrivals
        .iter()
        .zip(starts)
        .map(|(a, s)| std::time::Duration::from_nanos(a.saturating_sub(*s)))
        .collect()
}

/// Nanoseconds since `base`, for timestamps carried inside messages.
pub fn nanos_since(base: std::time::Instant) -> u64 {
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}
