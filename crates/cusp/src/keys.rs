//! Long-term keys: generation from the operating system's entropy, and key files in the
//! reference's format (`spec/streams.md` §4.2: upper-case hex of the 72-byte record
//! `LE64(xor secret) || LE256(curve25519 scalar) || curve25519 public point`, 144 digits;
//! no password, as in the reference).
//!
//! ```no_run
//! # fn main() -> cusp::Result<()> {
//! let key = cusp::keys::generate();
//! cusp::keys::save(&key, "node.key")?;
//! let again = cusp::keys::load("node.key")?;
//! println!("public key {}", cusp::keys::public_hex(&again));
//! # Ok(()) }
//! ```

use std::fs;
use std::io::Write;
use std::path::Path;

use cusp_proto::crypto::{PrivateKey, PublicKey, PublicKeySuite};

use crate::error::{Error, Result};

/// Fills `buf` from the operating system's entropy source (`getrandom`).
///
/// If the OS source fails (it does not on any supported system once booted), the failure
/// is logged and the bytes are drawn again until it works: handing out predictable key
/// material is never an option.
pub(crate) fn os_entropy(buf: &mut [u8]) {
    let mut tries = 0u32;
    while let Err(err) = getrandom::fill(buf) {
        tries += 1;
        if tries % 1000 == 1 {
            tracing::error!(%err, "operating system entropy unavailable; retrying");
        }
        std::thread::yield_now();
    }
}

/// A fresh private key from the operating system's entropy.
pub fn generate() -> PrivateKey {
    PrivateKey::generate(&mut os_entropy)
}

/// The default (curve25519) public key of `key`.
pub fn public_key(key: &PrivateKey) -> PublicKey {
    key.public_key(PublicKeySuite::Curve25519Whirlpool)
}

/// The default public key of `key` as upper-case hex (64 digits), as the reference prints it.
pub fn public_hex(key: &PrivateKey) -> String {
    public_key(key).to_string()
}

/// Writes `key` to `path` in the reference hex format, followed by a newline. The file is
/// created with permissions 0600 on Unix (and restricted to 0600 if it existed).
pub fn save(key: &PrivateKey, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    let hex = key.to_hex();
    file.write_all(hex.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(())
}

/// Reads a key file in the reference hex format (either case, surrounding whitespace
/// ignored). Every failure is [`Error::BadKeyFile`] with the reason: missing or unreadable
/// file, not hexadecimal, wrong length, or not a valid key.
pub fn load(path: impl AsRef<Path>) -> Result<PrivateKey> {
    let path = path.as_ref();
    let bad = |reason: String| Error::BadKeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    PrivateKey::from_hex(&text).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = generate();
        save(&key, &path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let back = load(&path).unwrap();
        assert_eq!(public_key(&back), public_key(&key));
        assert_eq!(public_hex(&key).len(), 64);

        let missing = load(dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing, Error::BadKeyFile { .. }), "{missing}");
        fs::write(&path, "zz").unwrap();
        let e = load(&path).unwrap_err();
        assert!(matches!(e, Error::BadKeyFile { .. }), "{e}");
        fs::write(&path, "G".repeat(144)).unwrap();
        assert!(
            load(&path)
                .unwrap_err()
                .to_string()
                .contains("not hexadecimal")
        );
    }
}
