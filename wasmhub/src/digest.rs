//! Content digests in the `sha256:<hex>` form that OCI uses everywhere.

use sha2::{Digest as _, Sha256};

/// The `sha256:<hex>` digest of `bytes`.
///
/// # Examples
///
/// ```
/// assert_eq!(
///     wasmhub::digest::sha256(b""),
///     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
/// );
/// ```
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of a `sha256:<hex>` digest, if `digest` is one: 64 lowercase
/// hex digits. This is also the form `WasmPlugin.spec.sha256` takes.
///
/// # Examples
///
/// ```
/// let digest = wasmhub::digest::sha256(b"plugin");
/// assert_eq!(wasmhub::digest::sha256_hex(&digest).map(str::len), Some(64));
/// assert_eq!(wasmhub::digest::sha256_hex("sha256:../../etc/passwd"), None);
/// ```
pub fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    let well_formed = hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    well_formed.then_some(hex)
}
