//! Publish/subscribe with priorities: a publisher pushes a bulk feed to each subscriber on
//! a low-priority stream and, meanwhile, urgent alerts on high-priority streams. The
//! urgent messages overtake the queued bulk data (`spec/streams.md` §3.2).
//!
//! Run: `cargo run -p cusp --example pubsub_priorities`

use std::time::{Duration, Instant};

use cusp::{Endpoint, EndpointConfig, Host};
use tokio::io::AsyncWriteExt;

const FEED: u16 = 100;
const SUBSCRIBERS: usize = 3;
const BULK: usize = 2 << 20;

#[tokio::main(flavor = "current_thread")]
async fn main() -> cusp::Result<()> {
    let publisher = Endpoint::bind(EndpointConfig::loopback())?;
    let t0 = Instant::now();

    // Subscribers: advertise the feed service and report when each stream completed.
    let mut subscribers = Vec::new();
    for n in 0..SUBSCRIBERS {
        let ep = Endpoint::bind(EndpointConfig::loopback())?;
        let mut incoming = ep.advertise(Some(FEED))?;
        let task = tokio::spawn(async move {
            let mut done = Vec::new();
            for _ in 0..3 {
                let (_, _, stream) = incoming.accept().await.expect("publisher stream");
                done.push(tokio::spawn(async move {
                    let msg = stream.read_to_end(16 << 20).await.expect("message");
                    let kind = if msg.len() > 1000 { "bulk" } else { "urgent" };
                    let text = if kind == "urgent" {
                        String::from_utf8_lossy(&msg).into_owned()
                    } else {
                        format!("{} bytes", msg.len())
                    };
                    println!("[{:>7.1?}] subscriber {n}: {kind:6} {text}", t0.elapsed());
                }));
            }
            for d in done {
                d.await.expect("reader");
            }
        });
        subscribers.push((ep, task));
    }

    // The publisher contacts every subscriber and starts the bulk feeds at the default
    // priority 0 (a negative priority would only ride along in packets built for
    // something else, §3.2) ...
    let mut hosts: Vec<Host> = Vec::new();
    let mut feeds = Vec::new();
    for (ep, _) in &subscribers {
        let (host, mut bulk) = publisher.contact(ep.local_addr(), FEED).await?;
        bulk.set_priority(0.0)?;
        feeds.push(tokio::spawn(async move {
            bulk.write_all(&vec![0xB0; BULK]).await?;
            bulk.finish().await
        }));
        hosts.push(host);
    }
    // ... then, while the bulk data is queued, two urgent alerts at priority 10.
    for alert in ["ALERT 1: market moved", "ALERT 2: all clear"] {
        tokio::time::sleep(Duration::from_millis(20)).await;
        for host in &hosts {
            let mut out = host.connect(FEED)?;
            out.set_priority(10.0)?;
            out.write_all(alert.as_bytes()).await?;
            out.finish().await?;
        }
    }
    for f in feeds {
        f.await.expect("feed task")?;
    }
    for (ep, task) in subscribers {
        task.await.expect("subscriber");
        ep.close().await;
    }
    publisher.close().await;
    println!("done in {:.1?}", t0.elapsed());
    Ok(())
}
