//! JWT identification: a connection that brings a token signed with the
//! JWT key is welcomed by the server itself, with the identifiers the
//! token's `ext` claim carries, and the application is never asked to
//! `connect`. Checked against anycable-go 1.6 identity/jwt.go and
//! server/headers_extractor.go: the token comes from the `X-<param>` header
//! (or the `anycable-token.<jwt>` subprotocol, put in that header by
//! [`token_header`]), else the `?<param>=` query parameter; HMAC algorithms
//! only; an expired token is `token_expired`, any other bad one
//! `unauthorized`, both without reconnecting; no token is the
//! application's business unless `enforce_jwt`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use serde::de::IgnoredAny;

/// The subprotocol prefix clients may carry a token in (browsers cannot
/// set headers on a WebSocket).
pub const SUBPROTOCOL_PREFIX: &str = "anycable-token.";

/// What a token says about a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Valid: the identifiers (a JSON object, as the RPC contract carries them).
    Identified(String),
    /// Valid signature, past `exp`.
    Expired,
    /// Anything else: bad signature, another algorithm, malformed, no `ext`.
    Invalid(String),
}

pub struct Jwt {
    key: DecodingKey,
    validation: Validation,
    /// The key made ready once for each HMAC algorithm (its pads hashed):
    /// a token's check then hashes only the token.
    keyed: Keyed,
    param: String,
    header: String,
    pub enforce: bool,
}

impl Jwt {
    pub fn new(key: &str, param: &str, enforce: bool) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
        // golang-jwt's defaults: `exp` and `nbf` checked when present,
        // none required, no audience, no leeway.
        validation.required_spec_claims.clear();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = 0;
        Jwt {
            key: DecodingKey::from_secret(key.as_bytes()),
            validation,
            keyed: Keyed {
                hs256: Hmac::new_from_slice(key.as_bytes()).expect("HMAC takes any key"),
                hs384: Hmac::new_from_slice(key.as_bytes()).expect("HMAC takes any key"),
                hs512: Hmac::new_from_slice(key.as_bytes()).expect("HMAC takes any key"),
            },
            param: param.to_owned(),
            header: header_name(param),
            enforce,
        }
    }

    /// The header the token is read from (`x-jid`), lower case as the
    /// session's request headers are.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// The token a request carries: the header first, then the query.
    pub fn token<'a>(&self, url: &'a str, header: Option<&'a str>) -> Option<String> {
        if let Some(token) = header.filter(|t| !t.is_empty()) {
            return Some(token.to_owned());
        }
        let query = url.split_once('?')?.1;
        let query = query.split('#').next().unwrap_or(query);
        query.split('&').find_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decoded(name) == self.param)
                .then(|| decoded(value).into_owned())
                .filter(|v| !v.is_empty())
        })
    }

    pub fn identify(&self, token: &str) -> Identity {
        if let Some(identifiers) = self.valid(token) {
            return Identity::Identified(identifiers);
        }
        self.decode(token)
    }

    /// A well-formed, valid token's identifiers, checked with the keys made
    /// ready at start; `None` for anything else (a bad signature, an expired
    /// token, a claim of an unusual type or given twice), which
    /// [`Jwt::decode`] then judges and explains. Accepts only what
    /// `jsonwebtoken::decode` accepts, its checks made as it makes them:
    /// the header parsed as its `Header`, an HMAC algorithm, the signature
    /// compared as its base64 text, `exp` and `nbf` against the clock
    /// without leeway (a test compares the two on odd tokens).
    fn valid(&self, token: &str) -> Option<String> {
        let (message, signature) = token.rsplit_once('.')?;
        let (header, payload) = message.rsplit_once('.')?;
        let header: jsonwebtoken::Header =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        let expected = match header.alg {
            Algorithm::HS256 => signature_of(&self.keyed.hs256, message),
            Algorithm::HS384 => signature_of(&self.keyed.hs384, message),
            Algorithm::HS512 => signature_of(&self.keyed.hs512, message),
            _ => return None,
        };
        if !same(expected.as_bytes(), signature.as_bytes()) {
            return None;
        }
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        // An object (a JSON array would fill the claims by position), not
        // nested deep enough to meet serde_json's recursion limit, which
        // `jsonwebtoken`'s parse into a `Value` enforces.
        let nesting = payload.iter().filter(|b| matches!(b, b'[' | b'{')).count();
        if payload.trim_ascii_start().first() != Some(&b'{') || nesting > 100 {
            return None;
        }
        // What a `Value` refuses and the parse into `Claims` skips unread
        // (its ignored fields' strings and numbers are not decoded): an
        // escape `\u` (an unpaired surrogate), bytes that are not ASCII
        // (not UTF-8), a number with an exponent or of many digits (past
        // f64). Such a token is left to jsonwebtoken, whose parse decodes
        // everything.
        if !plain_json(&payload) {
            return None;
        }
        let claims: Claims = serde_json::from_slice(&payload).ok()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        if claims.exp.is_some_and(|exp| exp < now) || claims.nbf.is_some_and(|nbf| nbf > now) {
            return None;
        }
        claims.ext
    }

    /// The token judged by `jsonwebtoken` itself, with the reason a bad one
    /// is refused.
    fn decode(&self, token: &str) -> Identity {
        match jsonwebtoken::decode::<serde_json::Value>(token, &self.key, &self.validation) {
            Ok(data) => match data.claims.get("ext") {
                Some(serde_json::Value::String(ids)) => Identity::Identified(ids.clone()),
                _ => Identity::Invalid("the token has no ext claim (identifiers)".into()),
            },
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Identity::Expired,
            Err(e) => Identity::Invalid(e.to_string()),
        }
    }
}

/// The JWT key made ready for each HMAC algorithm a token may name.
struct Keyed {
    hs256: Hmac<sha2::Sha256>,
    hs384: Hmac<sha2::Sha384>,
    hs512: Hmac<sha2::Sha512>,
}

/// The base64url signature `keyed` gives `message` (the token's header and
/// payload, as signed).
fn signature_of<M: Mac + Clone>(keyed: &M, message: &str) -> String {
    let mut mac = keyed.clone();
    mac.update(message.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// JSON text made only of what any parser reads alike: ASCII, no `\u`
/// escape, no number with an exponent or of more than 300 digits.
fn plain_json(payload: &[u8]) -> bool {
    let mut digits = 0;
    let mut previous = 0u8;
    for &b in payload {
        if !b.is_ascii()
            || (previous == b'\\' && b == b'u')
            || (matches!(b, b'e' | b'E') && (previous.is_ascii_digit() || previous == b'.'))
        {
            return false;
        }
        digits = if b.is_ascii_digit() { digits + 1 } else { 0 };
        if digits > 300 {
            return false;
        }
        // An escaped backslash does not escape what follows it.
        previous = if previous == b'\\' && b == b'\\' {
            0
        } else {
            b
        };
    }
    true
}

/// Equal bytes, compared in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The claims of a token the fast check accepts: `exp` and `nbf` integers
/// of seconds when present, `ext` a string, and the claims `jsonwebtoken`
/// reads (`sub`, `iss`, `aud`) each at most once, as its own parse
/// requires; anything else is left to [`Jwt::decode`].
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    ext: Option<String>,
    #[serde(default, rename = "sub")]
    _sub: Option<IgnoredAny>,
    #[serde(default, rename = "iss")]
    _iss: Option<IgnoredAny>,
    #[serde(default, rename = "aud")]
    _aud: Option<IgnoredAny>,
}

/// A token for `identifiers` (the JSON object the `ext` claim carries),
/// HS256, expiring at `exp` (Unix seconds) when given: what anycable-rails'
/// `AnyCable::JWT.encode` makes, for the gem's `Ferrocable.jwt_token`.
pub fn encode(key: &str, identifiers: &str, exp: Option<u64>) -> String {
    let mut claims = serde_json::json!({ "ext": identifiers });
    if let Some(exp) = exp {
        claims["exp"] = exp.into();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .expect("HMAC signing of a JSON object cannot fail")
}

/// `x-` and the parameter, lower case (anycable-go's `HeaderKey`).
pub fn header_name(param: &str) -> String {
    format!("x-{}", param.to_ascii_lowercase())
}

/// The token offered as an `anycable-token.<jwt>` subprotocol, if any.
pub fn token_from_subprotocols<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<String> {
    offered
        .into_iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .find_map(|p| p.strip_prefix(SUBPROTOCOL_PREFIX))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// A query component decoded, borrowed when there is nothing to decode
/// (a token is base64url: no `%`, no `+`).
fn decoded(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['%', '+']) {
        std::borrow::Cow::Owned(decode(s))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Percent-decoding of one query component (`+` is a space, as Go's
/// `url.ParseQuery` reads it).
fn decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn token(key: &str, alg: Algorithm, claims: serde_json::Value) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn identifies_expires_and_refuses() {
        let jwt = Jwt::new("k", "jid", false);
        let ids = r#"{"user":"gid://app/User/1"}"#;
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let t = token("k", alg, serde_json::json!({"ext": ids, "exp": now() + 60}));
            assert_eq!(jwt.identify(&t), Identity::Identified(ids.into()));
        }
        let no_exp = token("k", Algorithm::HS256, serde_json::json!({"ext": ids}));
        assert_eq!(jwt.identify(&no_exp), Identity::Identified(ids.into()));
        let expired = token(
            "k",
            Algorithm::HS256,
            serde_json::json!({"ext": ids, "exp": now() - 10}),
        );
        assert_eq!(jwt.identify(&expired), Identity::Expired);
        let forged = token("other", Algorithm::HS256, serde_json::json!({"ext": ids}));
        assert!(matches!(jwt.identify(&forged), Identity::Invalid(_)));
        let no_ext = token("k", Algorithm::HS256, serde_json::json!({"sub": "1"}));
        assert!(matches!(jwt.identify(&no_ext), Identity::Invalid(_)));
        // alg=none (an unsigned token) is never accepted.
        let unsigned = format!(
            "{}.{}.",
            base64_url(r#"{"alg":"none","typ":"JWT"}"#),
            base64_url(&serde_json::json!({"ext": ids}).to_string())
        );
        assert!(matches!(jwt.identify(&unsigned), Identity::Invalid(_)));
        assert!(matches!(jwt.identify("garbage"), Identity::Invalid(_)));
        let minted = super::encode("k", ids, Some(now() + 60));
        assert_eq!(jwt.identify(&minted), Identity::Identified(ids.into()));
        assert!(matches!(
            jwt.identify(&super::encode("other", ids, None)),
            Identity::Invalid(_)
        ));
    }

    /// The fast check with the keys made at start never answers otherwise
    /// than `jsonwebtoken` does: odd claims, headers and signatures, each
    /// signed with the right key by every HMAC algorithm.
    #[test]
    fn the_fast_check_agrees_with_jsonwebtoken() {
        let jwt = Jwt::new("k", "jid", false);
        let (past, future) = (now() - 100, now() + 100);
        let ids = r#""{\"user\":\"gid://app/User/1\"}""#;
        let deep = format!(
            r#"{{"ext":"x","n":{}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let claims = [
            format!(r#"{{"ext":{ids}}}"#),
            format!(r#"{{"ext":{ids},"exp":{future}}}"#),
            format!(r#"{{"ext":{ids},"exp":{past}}}"#),
            format!(r#"{{"ext":{ids},"exp":{}}}"#, now()),
            format!(r#"{{"ext":{ids},"exp":{future}.4}}"#),
            format!(r#"{{"ext":{ids},"exp":{past}.6}}"#),
            format!(r#"{{"ext":{ids},"exp":-5}}"#),
            format!(r#"{{"ext":{ids},"exp":"{past}"}}"#),
            format!(r#"{{"ext":{ids},"exp":null}}"#),
            format!(r#"{{"ext":{ids},"nbf":{future}}}"#),
            format!(r#"{{"ext":{ids},"nbf":{past},"exp":{future}}}"#),
            format!(r#"{{"ext":{ids},"exp":{future},"exp":{past}}}"#),
            r#"{"ext":"a","ext":"b"}"#.to_owned(),
            format!(r#"{{"ext":{ids},"sub":"1","sub":"2"}}"#),
            format!(r#"{{"ext":{ids},"iss":["a","b"],"aud":"x","sub":7}}"#),
            format!(r#"{{"ext":{ids},"other":{{"a":[1,2,{{"b":null}}]}},"other":1}}"#),
            r#"{"ext":null}"#.to_owned(),
            r#"{"ext":1}"#.to_owned(),
            r#"{"ext":{"user":"1"}}"#.to_owned(),
            r#"{"ext":"caf\u00e9 \ud83d\ude00"}"#.to_owned(),
            r#"{}"#.to_owned(),
            format!(r#"  {{"ext":{ids}}}  "#),
            format!(r#"[{past}]"#),
            format!(r#"[{future},0,"s","i","a"]"#),
            r#""ext""#.to_owned(),
            r#"{"ext":"x""#.to_owned(),
            deep,
            // Parts the claims' parse skips unread and a `Value` refuses.
            format!(r#"{{"ext":{ids},"x":"\ud800"}}"#),
            format!(r#"{{"ext":{ids},"x":"a\ud800\"b"}}"#),
            format!(r#"{{"ext":{ids},"x":"\\ud800"}}"#),
            format!(r#"{{"ext":{ids},"x":1e400}}"#),
            format!(r#"{{"ext":{ids},"x":-1.5E-3}}"#),
            format!(r#"{{"ext":{ids},"x":{}}}"#, "9".repeat(400)),
            format!(r#"{{"ext":{ids},"x":"caf{}"}}"#, '\u{e9}'),
        ];
        let headers = [
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"alg":"HS384"}"#,
            r#"{"alg":"HS512","kid":"1","typ":"at+jwt"}"#,
            r#"{"alg":"none"}"#,
            r#"{"alg":"RS256"}"#,
            r#"{"typ":"JWT"}"#,
            r#"{"alg":"HS256","alg":"HS512"}"#,
            r#"{"alg":"HS256","x5c":"not a list"}"#,
        ];
        let sign = |alg: &str, message: &str| -> String {
            let bytes = match alg {
                "HS384" => {
                    let mut m = Hmac::<sha2::Sha384>::new_from_slice(b"k").unwrap();
                    m.update(message.as_bytes());
                    m.finalize().into_bytes().to_vec()
                }
                "HS512" => {
                    let mut m = Hmac::<sha2::Sha512>::new_from_slice(b"k").unwrap();
                    m.update(message.as_bytes());
                    m.finalize().into_bytes().to_vec()
                }
                _ => {
                    let mut m = Hmac::<sha2::Sha256>::new_from_slice(b"k").unwrap();
                    m.update(message.as_bytes());
                    m.finalize().into_bytes().to_vec()
                }
            };
            URL_SAFE_NO_PAD.encode(bytes)
        };
        const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut checked = 0;
        for header in headers {
            for alg in ["HS256", "HS384", "HS512"] {
                for claims in &claims {
                    let message = format!("{}.{}", base64_url(header), base64_url(claims));
                    let signature = sign(alg, &message);
                    // The same signature bytes in another base64 spelling
                    // (an unused low bit of the last character set).
                    let last = ALPHABET.find(signature.chars().last().unwrap()).unwrap();
                    let twin = ALPHABET.as_bytes()[last ^ 1] as char;
                    let tokens = [
                        format!("{message}.{signature}"),
                        format!("{message}.{}", sign(alg, "other")),
                        format!("{message}.{signature}="),
                        format!("{message}.{}", &signature[1..]),
                        format!("x.{message}.{signature}"),
                        message.clone(),
                        format!("{message}.{}{twin}", &signature[..signature.len() - 1]),
                    ];
                    for token in tokens {
                        assert_eq!(
                            jwt.identify(&token),
                            jwt.decode(&token),
                            "{header} {alg} {claims} {token}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 1000);
        // The valid ones did take the fast path.
        let good = format!("{}.{}", base64_url(headers[0]), base64_url(&claims[1]));
        let token = format!("{good}.{}", sign("HS256", &good));
        assert!(jwt.valid(&token).is_some());
        assert!(matches!(jwt.decode(&token), Identity::Identified(_)));
    }

    fn base64_url(s: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn token_from_header_then_query() {
        let jwt = Jwt::new("k", "jid", false);
        assert_eq!(jwt.header(), "x-jid");
        assert_eq!(
            jwt.token("ws://h/cable?a=1&jid=abc.d%2Be", None).as_deref(),
            Some("abc.d+e")
        );
        assert_eq!(
            jwt.token("ws://h/cable?jid=q", Some("h")).as_deref(),
            Some("h")
        );
        assert_eq!(jwt.token("ws://h/cable?jid=", None), None);
        assert_eq!(jwt.token("ws://h/cable", None), None);
        assert_eq!(
            token_from_subprotocols(["actioncable-v1-json, anycable-token.t.k.n"]).as_deref(),
            Some("t.k.n")
        );
        assert_eq!(token_from_subprotocols(["actioncable-v1-json"]), None);
    }
}
