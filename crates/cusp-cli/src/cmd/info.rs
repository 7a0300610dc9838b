//! `cusp info`: the public key of a key file (or of a fresh key) and the address an
//! endpoint binds.

use super::common::{self, EndpointArgs};

/// Options of `cusp info`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Runs the subcommand.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let ep = args.endpoint.bind(common::ANY)?;
    println!("public key {}", ep.public_key());
    println!("bound      {}", ep.local_addr());
    if args.endpoint.key.is_none() {
        println!("(a fresh key: pass --key FILE to show a saved identity)");
    }
    ep.close().await;
    Ok(())
}
