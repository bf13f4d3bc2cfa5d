//! Signed stream names in Rails' `ActiveSupport::MessageVerifier` format,
//! as anycable-rails (`signed_stream_name`) and turbo-rails
//! (`Turbo.signed_stream_verifier`, JSON serializer, SHA256) make them:
//! `base64(JSON of the name)--hex(HMAC-SHA256(key, base64 part))`.
//! Checked against anycable-go 1.6 utils/message_verifier.go and Rails'
//! message_verifier.rb.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signed name was refused (for the log; the client only sees a
/// rejection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not `data--digest`.
    Malformed,
    /// The digest does not match.
    BadSignature,
    /// Signed, but not a JSON string (base64 or JSON broken, or another value).
    NotAStreamName,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Malformed => "not a signed message (data--digest)",
            Refused::BadSignature => "invalid signature",
            Refused::NotAStreamName => "the signed value is not a stream name",
        })
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// Signs a stream name as the Rails helpers do.
pub fn sign(key: &[u8], stream: &str) -> String {
    let json = serde_json::to_string(stream).expect("strings serialize");
    let data = STANDARD.encode(json);
    let mut mac = mac(key);
    mac.update(data.as_bytes());
    let digest = hex::encode(mac.finalize().into_bytes());
    format!("{data}--{digest}")
}

/// The stream name a signed name carries, if `key` signed it. The digest
/// is compared in constant time.
pub fn verify(key: &[u8], signed: &str) -> Result<String, Refused> {
    Verifier::new(key).verify(signed)
}

/// A key made ready once (its HMAC pads hashed), for the verifications
/// of a server's life: each one then hashes only the signed data.
#[derive(Clone)]
pub struct Verifier {
    keyed: HmacSha256,
}

impl Verifier {
    pub fn new(key: &[u8]) -> Self {
        Verifier { keyed: mac(key) }
    }

    /// The stream name a signed name carries, if this key signed it (see
    /// [`verify`]).
    pub fn verify(&self, signed: &str) -> Result<String, Refused> {
        let mut parts = signed.split("--");
        let (Some(data), Some(digest), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Refused::Malformed);
        };
        let mut expected = [0u8; 32];
        hex::decode_to_slice(digest, &mut expected).map_err(|_| Refused::BadSignature)?;
        let mut mac = self.keyed.clone();
        mac.update(data.as_bytes());
        mac.verify_slice(&expected)
            .map_err(|_| Refused::BadSignature)?;
        let json = STANDARD.decode(data).map_err(|_| Refused::NotAStreamName)?;
        serde_json::from_slice::<String>(&json).map_err(|_| Refused::NotAStreamName)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made in Ruby with
    /// `ActiveSupport::MessageVerifier.new("s3cret", digest: "SHA256", serializer: JSON).generate("chat:1")`
    /// (the format turbo-rails and anycable-rails use).
    #[test]
    fn matches_rails_message_verifier() {
        let signed = sign(b"s3cret", "chat:1");
        assert_eq!(
            signed,
            "ImNoYXQ6MSI=--a701caaf95fd3111ae32bb1f8f3ee8017d9855d7648215a663b0a51c8530c647"
        );
        assert_eq!(verify(b"s3cret", &signed).unwrap(), "chat:1");
    }

    #[test]
    fn refuses_forgeries() {
        let signed = sign(b"s3cret", "chat:1");
        assert_eq!(verify(b"other", &signed), Err(Refused::BadSignature));
        let (data, digest) = signed.split_once("--").unwrap();
        let forged = format!("{}--{digest}", STANDARD.encode("\"chat:2\""));
        assert_eq!(verify(b"s3cret", &forged), Err(Refused::BadSignature));
        assert_eq!(verify(b"s3cret", data), Err(Refused::Malformed));
        assert_eq!(verify(b"s3cret", "a--b--c"), Err(Refused::Malformed));
        assert_eq!(verify(b"s3cret", ""), Err(Refused::Malformed));
        // Signed by the right key, but not a string.
        let data = STANDARD.encode("{\"a\":1}");
        let mut m = mac(b"s3cret");
        m.update(data.as_bytes());
        let ok = format!("{data}--{}", hex::encode(m.finalize().into_bytes()));
        assert_eq!(verify(b"s3cret", &ok), Err(Refused::NotAStreamName));
        // A digest of another length (hex of 31 or 33 bytes) is no signature.
        let (name, digest) = signed.split_once("--").unwrap();
        let short = format!("{name}--{}", &digest[2..]);
        assert_eq!(verify(b"s3cret", &short), Err(Refused::BadSignature));
        let long = format!("{signed}00");
        assert_eq!(verify(b"s3cret", &long), Err(Refused::BadSignature));
    }

    /// A verifier made once answers as a key given each time does, and
    /// its clones share nothing (one verification leaves no state behind).
    #[test]
    fn a_verifier_made_once_is_reused() {
        let verifier = Verifier::new(b"s3cret");
        for name in ["chat:1", "chat:2", "", "gid://app/Post/1:comments"] {
            let signed = sign(b"s3cret", name);
            assert_eq!(verifier.verify(&signed).as_deref(), Ok(name));
            assert_eq!(
                verifier.verify(&sign(b"other", name)),
                Err(Refused::BadSignature)
            );
            assert_eq!(verifier.verify(&signed).as_deref(), Ok(name));
        }
    }
}
