//! The file-transfer format of `cusp send` / `cusp recv`, on one stream:
//!
//! ```text
//! "CUSPFILE" version:u8=1  reply_service:u16  algo_len:u8 algo ("blake3")
//! name_len:u16 name (UTF-8, a bare file name)  size:u64      (integers big-endian)
//! <size bytes of file>  <32-byte BLAKE3 hash of those bytes>  <end of stream>
//! ```
//!
//! The receiver answers on a stream to `reply_service` (a per-host service the sender
//! listens on) with one UTF-8 line: `OK <hash hex> <saved name>` once the hash matched
//! and the file is in place, or `ERR <reason>`.

use anyhow::{Context, bail};
use cusp::InStream;
use tokio::io::AsyncReadExt;

/// Default service of `send` / `recv`.
pub const SERVICE: u16 = 21;
const MAGIC: &[u8; 8] = b"CUSPFILE";
const VERSION: u8 = 1;
/// The only hash algorithm.
pub const ALGO: &str = "blake3";
/// Longest file name accepted.
const MAX_NAME: usize = 4096;

/// What precedes the file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Per-host service of the sender that receives the verdict.
    pub reply_service: u16,
    /// Hash algorithm of the trailer.
    pub algo: String,
    /// File name (no directory part).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

impl Header {
    /// The encoded header.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32 + self.name.len());
        v.extend_from_slice(MAGIC);
        v.push(VERSION);
        v.extend_from_slice(&self.reply_service.to_be_bytes());
        v.push(self.algo.len() as u8);
        v.extend_from_slice(self.algo.as_bytes());
        v.extend_from_slice(&(self.name.len() as u16).to_be_bytes());
        v.extend_from_slice(self.name.as_bytes());
        v.extend_from_slice(&self.size.to_be_bytes());
        v
    }

    /// Reads and checks a header from the start of `stream`.
    pub async fn read(stream: &mut InStream) -> anyhow::Result<Header> {
        let mut magic = [0u8; 8];
        stream
            .read_exact(&mut magic)
            .await
            .context("reading the file header")?;
        if &magic != MAGIC {
            bail!("not a `cusp send` stream (bad magic)");
        }
        let version = stream.read_u8().await?;
        if version != VERSION {
            bail!("unsupported file-transfer version {version}");
        }
        let reply_service = stream.read_u16().await?;
        let algo_len = stream.read_u8().await? as usize;
        let mut algo = vec![0u8; algo_len];
        stream.read_exact(&mut algo).await?;
        let algo = String::from_utf8(algo).context("hash algorithm is not UTF-8")?;
        let name_len = stream.read_u16().await? as usize;
        if name_len > MAX_NAME {
            bail!("file name of {name_len} bytes is too long");
        }
        let mut name = vec![0u8; name_len];
        stream.read_exact(&mut name).await?;
        let name = String::from_utf8(name).context("file name is not UTF-8")?;
        let size = stream.read_u64().await?;
        Ok(Header {
            reply_service,
            algo,
            name,
            size,
        })
    }
}

/// A safe bare file name: the last component, without path separators, NUL or a leading
/// dot-dot; `received.bin` if nothing usable is left.
pub fn sanitize(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last
        .chars()
        .filter(|c| *c != '\0' && !c.is_control())
        .collect();
    let clean = clean.trim().trim_start_matches('.').to_string();
    if clean.is_empty() {
        "received.bin".to_string()
    } else {
        clean
    }
}

/// The `i`-th candidate name: `name`, then `stem (1).ext`, `stem (2).ext`, ...
pub fn candidate(name: &str, i: u32) -> String {
    if i == 0 {
        return name.to_string();
    }
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{} ({i}){}", &name[..dot], &name[dot..]),
        _ => format!("{name} ({i})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(sanitize("../../etc/passwd"), "passwd");
        assert_eq!(sanitize(".."), "received.bin");
        assert_eq!(sanitize("a\\b.txt"), "b.txt");
        assert_eq!(sanitize(".hidden"), "hidden");
        assert_eq!(candidate("a.tar.gz", 0), "a.tar.gz");
        assert_eq!(candidate("a.tar.gz", 2), "a.tar (2).gz");
        assert_eq!(candidate("README", 1), "README (1)");
    }
}
