//! Request/response over two unidirectional streams on loopback: a server answers
//! "what time is it" style requests, a client asks a few questions and exits.
//!
//! Run: `cargo run -p cusp --example request_response`

use std::time::Duration;

use cusp::{Endpoint, EndpointConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> cusp::Result<()> {
    let server = Endpoint::bind(EndpointConfig::loopback())?;
    println!("server {} key {}", server.local_addr(), server.public_key());
    let service = server.serve(Some(42), |host, body| async move {
        let question = String::from_utf8_lossy(&body).into_owned();
        let answer = match question.as_str() {
            "ping" => "pong".to_string(),
            q => format!(
                "{} bytes from {:.8}…: {}",
                q.len(),
                host.key().to_string(),
                q.to_uppercase()
            ),
        };
        answer.into_bytes()
    })?;

    let client = Endpoint::bind(EndpointConfig::loopback())?;
    for question in ["ping", "hello over cusp", "bye"] {
        let reply = client
            .request(
                server.local_addr(),
                service.service(),
                question.as_bytes(),
                Duration::from_secs(5),
            )
            .await?;
        println!("{question:>16} -> {}", String::from_utf8_lossy(&reply));
    }
    drop(service);
    let (a, b) = tokio::join!(client.close(), server.close());
    println!("closed (graceful: client {a}, server {b})");
    Ok(())
}
