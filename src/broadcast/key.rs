//! The key that authorizes an HTTP broadcast: AnyCable's derivation from the
//! application secret, shared by the endpoint and by the gem's broadcaster
//! (which asks the core for it instead of deriving it again).

use hmac::{Hmac, Mac};

/// The value anycable-go (and the `anycable` gem) treat as "no secret".
pub const NONE: &str = "none";

/// The broadcast key AnyCable derives from `secret`: HMAC-SHA256 of
/// "broadcast-cable" keyed by the secret, hex encoded.
pub fn derive(secret: &str) -> String {
    sign(secret, "broadcast-cable")
}

/// The HTTP RPC token AnyCable derives from `secret` the same way, from
/// "rpc-cable" (the binary sends it, the gem's endpoint expects it).
pub fn derive_rpc_secret(secret: &str) -> String {
    sign(secret, "rpc-cable")
}

/// The key nodes sign what they pass on to each other over the bus
/// (`broadcast::pubsub`) with: derived from the broadcast key, so only a
/// holder of that key can broadcast through the bus.
pub fn derive_bus_key(broadcast_key: &str) -> String {
    sign(broadcast_key, "pubsub-cable")
}

fn sign(secret: &str, phrase: &str) -> String {
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(phrase.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The key the endpoint requires, anycable-go's resolution: an explicit key
/// (`http_broadcast_secret`, the 1.0–1.4 name, then `broadcast_key`), else
/// one derived from `secret`; empty values are unset and `"none"` disables.
pub fn resolve(
    http_broadcast_secret: Option<&str>,
    broadcast_key: Option<&str>,
    secret: Option<&str>,
) -> Option<String> {
    let set = |v: Option<&str>| v.filter(|v| !v.is_empty()).map(str::to_owned);
    if let Some(explicit) = set(http_broadcast_secret).or_else(|| set(broadcast_key)) {
        return (explicit != NONE).then_some(explicit);
    }
    set(secret).filter(|s| s != NONE).map(|s| derive(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_keys_win_over_the_derived_one_and_none_disables() {
        assert_eq!(resolve(None, None, None), None);
        assert_eq!(resolve(None, None, Some("s")).unwrap(), derive("s"));
        assert_eq!(derive("s").len(), 64);
        assert_eq!(resolve(None, Some("k"), Some("s")).as_deref(), Some("k"));
        assert_eq!(
            resolve(Some("old"), Some("k"), Some("s")).as_deref(),
            Some("old")
        );
        assert_eq!(resolve(None, Some(""), Some("s")).unwrap(), derive("s"));
        assert_eq!(resolve(None, Some("none"), Some("s")), None);
        assert_eq!(resolve(None, None, Some("none")), None);
    }

    #[test]
    fn the_rpc_secret_is_anycables_derivation() {
        // echo -n 'rpc-cable' | openssl dgst -sha256 -hmac 's3cret'
        assert_eq!(
            derive_rpc_secret("s3cret"),
            "edc2c1644849b3652a76c9230c6ddd1b3af60d5ab9c1822af2c0b60653f773a8"
        );
        assert_ne!(derive_rpc_secret("s3cret"), derive("s3cret"));
    }
}
