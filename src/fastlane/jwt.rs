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

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};

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
            (decode(name) == self.param)
                .then(|| decode(value))
                .filter(|v| !v.is_empty())
        })
    }

    pub fn identify(&self, token: &str) -> Identity {
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
