//! Request/response over two unidirectional streams (the reference's C++ `BiDiConn` /
//! `SingleCycleConn` pattern, `spec/streams.md` §4.3, §5.10).
//!
//! The requester opens a per-host service as [`Host::listen`] does (but for one stream: it
//! closes when the reply arrives), opens a stream to the server's service and writes the
//! listen service as its first **2 bytes, big-endian**, then the request body, then ends
//! the stream. The server reads to the end, runs the handler, opens a stream back to that
//! service and writes the response, then ends it.
//!
//! Byte order: the reference C++ `BiDiConn` wrote the 2 bytes in the client's *native*
//! order (little-endian on x86), which makes the format depend on the machine. We use
//! big-endian, as the conversation layer does for service numbers (§5.12), so a C++
//! `BiDiConn` peer on x86 is not compatible with this helper.

use std::future::Future;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::stream::OutStream;

/// Largest response [`Endpoint::request`] accepts, and largest request [`Endpoint::serve`]
/// accepts (64 MiB); larger messages reset the stream.
pub const MAX_MESSAGE: usize = 64 << 20;

/// Request bodies up to this size are copied behind the 2-byte header and written at once.
const SMALL_BODY: usize = 4096;

impl Endpoint {
    /// Sends `body` to `service` at `addr` and returns the response (see the module doc
    /// of [`conversation`](crate::conversation)). The whole exchange, contact included,
    /// must finish within `timeout`, else [`Error::Timeout`].
    pub async fn request(
        &self,
        addr: SocketAddrV4,
        service: u16,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>> {
        tokio::time::timeout(timeout, async {
            let (host, out) = self.contact(addr, service).await?;
            exchange(&host, out, body).await
        })
        .await
        .map_err(|_| Error::Timeout)?
    }

    /// Serves requests on `service` (`Some(s)` well-known, `None` dynamic): each request is
    /// read to its end (at most [`MAX_MESSAGE`] bytes), `handler(host, body)` runs in its own
    /// task, and its result is sent back. Dropping the [`Server`] stops serving.
    pub fn serve<F, Fut>(&self, service: Option<u16>, handler: F) -> Result<Server>
    where
        F: Fn(Host, Vec<u8>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<u8>> + Send + 'static,
    {
        let mut incoming = self.advertise(service)?;
        let service = incoming.service();
        let handler = Arc::new(handler);
        let task = tokio::spawn(async move {
            while let Some((host, _, stream)) = incoming.accept().await {
                let handler = handler.clone();
                tokio::spawn(async move {
                    if let Err(err) = answer(host, stream, &*handler).await {
                        tracing::debug!(%err, "request not answered");
                    }
                });
            }
        });
        Ok(Server { service, task })
    }
}

impl Host {
    /// [`Endpoint::request`] to a known host.
    pub async fn request(&self, service: u16, body: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        tokio::time::timeout(timeout, async {
            let out = self.connect(service)?;
            exchange(self, out, body).await
        })
        .await
        .map_err(|_| Error::Timeout)?
    }
}

async fn exchange(host: &Host, mut out: OutStream, body: &[u8]) -> Result<Vec<u8>> {
    let (reply, mut incoming) = host.listen_once()?;
    // One write (one trip through the core) for the header and a small body.
    if body.len() <= SMALL_BODY {
        let mut msg = Vec::with_capacity(2 + body.len());
        msg.extend_from_slice(&reply.to_be_bytes());
        msg.extend_from_slice(body);
        out.write_all(&msg).await.map_err(Error::from_io)?;
    } else {
        out.write_all(&reply.to_be_bytes())
            .await
            .map_err(Error::from_io)?;
        out.write_all(body).await.map_err(Error::from_io)?;
    }
    let sent = out.finish();
    let received = async {
        let (_, _, stream) = incoming.accept().await.ok_or(Error::Closed)?;
        stream.read_to_end(MAX_MESSAGE).await
    };
    let (sent, received) = tokio::join!(sent, received);
    match (sent, received) {
        (_, Ok(v)) => Ok(v),
        (Ok(false), Err(_)) => Err(Error::Reset),
        (Err(e), Err(_)) | (Ok(true), Err(e)) => Err(e),
    }
}

async fn answer<F, Fut>(host: Host, stream: crate::InStream, handler: &F) -> Result<()>
where
    F: Fn(Host, Vec<u8>) -> Fut,
    Fut: Future<Output = Vec<u8>>,
{
    let mut stream = stream;
    let mut reply = [0u8; 2];
    stream
        .read_exact(&mut reply)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                Error::Protocol("request shorter than its 2-byte reply service")
            }
            _ => Error::from_io(e),
        })?;
    let reply = u16::from_be_bytes(reply);
    let request = stream.read_to_end(MAX_MESSAGE).await?;
    let response = handler(host.clone(), request).await;
    let mut out = host.connect(reply)?;
    out.write_all(&response).await.map_err(Error::from_io)?;
    out.finish().await?;
    Ok(())
}

/// A running request server ([`Endpoint::serve`]); dropping it stops accepting requests
/// (requests being answered finish).
#[derive(Debug)]
pub struct Server {
    service: u16,
    task: JoinHandle<()>,
}

impl Server {
    /// The service number served.
    pub fn service(&self) -> u16 {
        self.service
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}
