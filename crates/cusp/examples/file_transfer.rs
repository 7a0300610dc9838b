//! File transfer on one stream: the sender streams a file (a generated temporary file, or
//! the path given as the first argument), the receiver hashes what arrives (Whirlpool, the
//! hash of CUSP's handshake) and compares it with the sender's hash.
//!
//! Run: `cargo run --release -p cusp --example file_transfer [path]`

use std::time::Instant;

use cusp::{Endpoint, EndpointConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use whirlpool::{Digest, Whirlpool};

const SERVICE: u16 = 21;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The file: the argument, or 32 MiB of pseudo-random bytes in a temporary file.
    let _tmp;
    let path = match std::env::args().nth(1) {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            let dir = tempfile::tempdir()?;
            let p = dir.path().join("payload.bin");
            let mut x = 0x2545_F491_4F6C_DD1Du64;
            let data: Vec<u8> = (0..32 << 20)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            std::fs::write(&p, &data)?;
            _tmp = dir;
            p
        }
    };

    let receiver = Endpoint::bind(EndpointConfig::loopback())?;
    let sender = Endpoint::bind(EndpointConfig::loopback())?;
    let mut incoming = receiver.advertise(Some(SERVICE))?;

    let recv = tokio::spawn(async move {
        let (host, _, mut stream) = incoming.accept().await.expect("a stream");
        let mut hash = Whirlpool::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut total = 0u64;
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            total += n as u64;
        }
        println!(
            "received {total} bytes from {:.16}…",
            host.key().to_string()
        );
        Ok::<_, std::io::Error>(hash.finalize().to_vec())
    });

    let start = Instant::now();
    let mut file = tokio::fs::File::open(&path).await?;
    let (_, mut out) = sender.contact(receiver.local_addr(), SERVICE).await?;
    let mut hash = Whirlpool::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        out.write_all(&buf[..n]).await?;
        total += n as u64;
    }
    let delivered = out.finish().await?;
    let sent_hash = hash.finalize().to_vec();
    let got_hash = recv.await??;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sent {total} bytes of {} in {secs:.2} s ({:.1} MB/s), delivered: {delivered}",
        path.display(),
        total as f64 / secs / 1e6
    );
    let hex: String = got_hash
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    if got_hash == sent_hash {
        println!("whirlpool {hex}… matches");
    } else {
        println!("HASH MISMATCH");
        std::process::exit(1);
    }
    let s = sender.stats();
    println!(
        "sender: {} datagrams in {} sendmsg calls (up to {} per GSO send)",
        s.udp.datagrams_sent, s.udp.send_syscalls, s.udp.max_segments_per_send
    );
    let (a, b) = tokio::join!(sender.close(), receiver.close());
    println!("closed (graceful: {a}, {b})");
    Ok(())
}
