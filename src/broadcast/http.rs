//! The HTTP broadcast endpoint (`/_broadcast`, anycable-go's): a POST whose
//! body is a publication payload, authenticated by the broadcast key as a
//! bearer token when one is set. Answers as anycable-go does: 201 when
//! published, 401 for a missing or wrong key, 422 for a payload that does
//! not decode (nothing of it is published), 413/408 for a body too large
//! or too slow. Which listener and path serve it is the server's business.

use super::Publish;
use crate::client_log::client_log;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use hyper::header;
use hyper::{Method, Request, StatusCode};
use std::time::Duration;

/// The largest HTTP broadcast body accepted.
const MAX_BROADCAST_BODY: usize = 16 * 1024 * 1024;
/// How long a broadcast body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Handles one request to the broadcast endpoint; returns the status and
/// body of the answer. `key` is the broadcast key the request must bear
/// (`Authorization: Bearer <key>`), if any. Any body type (the server's is
/// hyper's `Incoming`; the fuzz targets hand a `Full` body).
pub async fn handle<B>(req: Request<B>, key: Option<&str>, to: &dyn Publish) -> (StatusCode, Bytes)
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if req.method() != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, Bytes::from("use POST"));
    }
    if let Some(key) = key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
            to.metrics().broadcast_auth_failures.inc();
            client_log!(
                WARN,
                "HTTP broadcast refused: missing or wrong broadcast key"
            );
            return (StatusCode::UNAUTHORIZED, Bytes::from("Unauthorized"));
        }
    }
    let body = Limited::new(req.into_body(), MAX_BROADCAST_BODY).collect();
    let body = match tokio::time::timeout(BODY_TIMEOUT, body).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            client_log!(WARN, error = %e, "HTTP broadcast body unreadable or too large");
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                Bytes::from("body too large or unreadable"),
            );
        }
        Err(_) => {
            client_log!(WARN, "HTTP broadcast body not received in time");
            return (
                StatusCode::REQUEST_TIMEOUT,
                Bytes::from("body not received in time"),
            );
        }
    };
    match to.publish_payload(&body, "http") {
        Ok(()) => (StatusCode::CREATED, Bytes::new()),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, Bytes::from(e.to_string())),
    }
}

/// Compares the key without leaking, through timing, how much of it matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
