//! `Ferrocable::Native.jwt_encode` / `sign_stream`: the core's token and
//! signed-name formats for the gem's Rails helpers (`Ferrocable.jwt_token`,
//! `Ferrocable.signed_stream_name`), so Ruby and the server share one
//! implementation of each.

use ferrocable::fastlane::{jwt, signed};

/// `jwt_encode(key, identifiers_json, exp_or_nil)`.
pub fn jwt_encode(key: String, identifiers: String, exp: Option<u64>) -> String {
    jwt::encode(&key, &identifiers, exp)
}

/// `sign_stream(key, stream_name)`.
pub fn sign_stream(key: String, stream: String) -> String {
    signed::sign(key.as_bytes(), &stream)
}
