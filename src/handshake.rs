//! What makes an HTTP request a WebSocket handshake we accept (RFC 6455
//! §4.2.1), checked before anything else looks at it.
//!
//! Why a module: the first version upgraded an empty, short or duplicated
//! `Sec-WebSocket-Key`, HTTP/1.0 requests and requests with a malformed
//! `Host` (which the application then failed on, and the client was told to
//! reconnect for ever). A refusal here is a clear HTTP answer, counted in
//! `ferrocable_rejected_handshakes_total`, and never reaches the application.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::Authority;
use hyper::{Method, Request, Response, StatusCode, Version};

/// Why a request is not a handshake we accept, as the HTTP answer says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: &'static str,
}

impl Refusal {
    const fn new(status: StatusCode, reason: &'static str) -> Self {
        Refusal { status, reason }
    }

    /// The answer, with `Sec-WebSocket-Version: 13` so a client with another
    /// version (or none) learns the one we speak (§4.4).
    pub fn response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from_static(self.reason.as_bytes())));
        *response.status_mut() = self.status;
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        response
    }
}

/// Checks the handshake; returns the `Sec-WebSocket-Key` to answer.
pub fn validate<B>(req: &Request<B>) -> Result<HeaderValue, Refusal> {
    let headers = req.headers();
    if req.method() != Method::GET
        || !has_token(headers, header::CONNECTION, "upgrade")
        || !has_token(headers, header::UPGRADE, "websocket")
    {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "expected a WebSocket upgrade: GET with Connection: Upgrade and Upgrade: websocket",
        ));
    }
    if req.version() < Version::HTTP_11 {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "a WebSocket handshake needs HTTP/1.1",
        ));
    }
    let versions: Vec<_> = headers
        .get_all(header::SEC_WEBSOCKET_VERSION)
        .iter()
        .collect();
    if versions.len() != 1 || versions[0] != "13" {
        return Err(Refusal::new(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported WebSocket version: this server speaks version 13",
        ));
    }
    let keys: Vec<_> = headers.get_all(header::SEC_WEBSOCKET_KEY).iter().collect();
    let key = match keys.as_slice() {
        [key] if is_key(key.as_bytes()) => (*key).clone(),
        _ => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "Sec-WebSocket-Key must be one base64 value of 16 bytes",
            ));
        }
    };
    let hosts: Vec<_> = headers.get_all(header::HOST).iter().collect();
    let host_ok = match hosts.as_slice() {
        [host] => host
            .to_str()
            .ok()
            .and_then(|h| h.parse::<Authority>().ok())
            .is_some_and(|a| !a.host().is_empty() && !a.as_str().contains('@') && port_ok(&a)),
        _ => false,
    };
    if !host_ok {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "a WebSocket handshake needs one valid Host header",
        ));
    }
    Ok(key)
}

/// Nothing, or `:` and a number, after the host (`Authority` takes any port text).
fn port_ok(authority: &Authority) -> bool {
    let rest = authority
        .as_str()
        .strip_prefix(authority.host())
        .unwrap_or(":");
    rest.is_empty()
        || rest
            .strip_prefix(':')
            .is_some_and(|p| p.parse::<u16>().is_ok())
}

/// 16 bytes in base64: 22 characters of the alphabet and `==`.
fn is_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(edit: impl FnOnce(&mut hyper::http::request::Builder)) -> Request<()> {
        let mut b = Request::builder()
            .method("GET")
            .uri("/cable")
            .header("host", "example.com:8080")
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13");
        edit(&mut b);
        b.body(()).unwrap()
    }

    fn with_key(key: &'static str) -> Request<()> {
        let mut r = request(|_| {});
        r.headers_mut()
            .append("sec-websocket-key", HeaderValue::from_static(key));
        r
    }

    #[test]
    fn accepts_a_well_formed_handshake() {
        let key = validate(&with_key("dGhlIHNhbXBsZSBub25jZQ==")).unwrap();
        assert_eq!(key, "dGhlIHNhbXBsZSBub25jZQ==");
        for host in ["localhost", "127.0.0.1:80", "[::1]:8080", "[::1]"] {
            let mut r = with_key("dGhlIHNhbXBsZSBub25jZQ==");
            r.headers_mut()
                .insert("host", HeaderValue::from_static(host));
            assert!(validate(&r).is_ok(), "{host}");
        }
    }

    #[test]
    fn refuses_bad_keys_versions_http10_and_hosts() {
        let status = |r: &Request<()>| validate(r).unwrap_err().status;
        for key in [
            "",
            "c2hvcnQ=",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25jZQ=!",
            "dGhlIHNhbXBsZSBub25j*Q==",
        ] {
            assert_eq!(status(&with_key(key)), StatusCode::BAD_REQUEST, "{key:?}");
        }
        let mut twice = with_key("dGhlIHNhbXBsZSBub25jZQ==");
        twice.headers_mut().append(
            "sec-websocket-key",
            HeaderValue::from_static("AAAAAAAAAAAAAAAAAAAAAA=="),
        );
        assert_eq!(status(&twice), StatusCode::BAD_REQUEST);

        let mut v8 = with_key("dGhlIHNhbXBsZSBub25jZQ==");
        v8.headers_mut()
            .insert("sec-websocket-version", HeaderValue::from_static("8"));
        let refusal = validate(&v8).unwrap_err();
        assert_eq!(refusal.status, StatusCode::UPGRADE_REQUIRED);
        assert_eq!(refusal.response().headers()["sec-websocket-version"], "13");

        let mut http10 = with_key("dGhlIHNhbXBsZSBub25jZQ==");
        *http10.version_mut() = Version::HTTP_10;
        assert_eq!(status(&http10), StatusCode::BAD_REQUEST);

        for host in [
            "exa mple.com",
            "a.com:port",
            "a.com:99999",
            "user@a.com",
            "",
        ] {
            let mut r = with_key("dGhlIHNhbXBsZSBub25jZQ==");
            r.headers_mut()
                .insert("host", HeaderValue::from_str(host).unwrap());
            assert_eq!(status(&r), StatusCode::BAD_REQUEST, "{host:?}");
        }
        let mut post = with_key("dGhlIHNhbXBsZSBub25jZQ==");
        *post.method_mut() = Method::POST;
        assert_eq!(status(&post), StatusCode::BAD_REQUEST);
    }
}
