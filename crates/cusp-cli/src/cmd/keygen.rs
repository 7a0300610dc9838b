//! `cusp keygen`: a new long-term key (the host's identity) in the reference format.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};

/// Options of `cusp keygen`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write the private key to FILE (mode 0600) and print the public key. Without -o
    /// the private key goes to stdout (e.g. `cusp keygen > node.key`) and the public key
    /// to stderr.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    force: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    let key = cusp::keys::generate();
    let public = cusp::keys::public_hex(&key);
    match args.output {
        Some(path) => {
            if !args.force && std::fs::symlink_metadata(&path).is_ok() {
                bail!(
                    "{} exists; not overwriting a key (use --force to replace it)",
                    path.display()
                );
            }
            cusp::keys::save(&key, &path)
                .with_context(|| format!("cannot write key file {}", path.display()))?;
            println!("{public}");
        }
        None => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", key.to_hex().as_str()).context("cannot write to stdout")?;
            out.flush().context("cannot write to stdout")?;
            eprintln!("public key {public}");
        }
    }
    Ok(())
}
