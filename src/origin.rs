//! `allowed_origins`: which browser pages may open a socket, matched as
//! anycable-go matches them (its `ws.CheckOrigin`), so a configuration
//! migrated from it keeps its meaning.
//!
//! Why it matters: cookies are not scoped by port, so without this check a
//! page on any other port or subdomain of the host could open a signed-in
//! socket (cross-site WebSocket hijacking). The rules, from anycable-go:
//!
//! - An empty list allows every request, with or without an `Origin`.
//! - Otherwise the `Origin` must be a URL whose host, **port included**, equals
//!   a pattern (`example.com` does not allow `https://example.com:8443`; write
//!   `example.com:8443`). Case does not matter; the scheme is not compared (a
//!   scheme written in a pattern is ignored).
//! - A pattern starting with `*` matches every host ending with the rest:
//!   `*.rails.dev` allows `app.rails.dev` and `a.b.rails.dev`, **not**
//!   `rails.dev` itself (list both), and not `app.rails.dev:8443`. As in
//!   anycable-go, `*rails.dev` (no dot) also allows `evilrails.dev`. `*`
//!   alone allows everything.
//! - A request without `Origin`, with `Origin: null`, or with one that is not a
//!   URL is refused (unless the list is `*`): browsers always send it on a
//!   WebSocket handshake, so its absence means a client that could send any
//!   value anyway, and a missing check must not be the easy way in.

use hyper::header::HeaderValue;

/// Whether a handshake with this `Origin` header may proceed.
pub fn origin_allowed(allowed: &[String], origin: Option<&HeaderValue>) -> bool {
    if allowed.is_empty() {
        return true;
    }
    // Bytes that are not visible ASCII are kept (lossily): they cannot match
    // an ASCII pattern, so such an Origin is refused instead of treated as absent.
    let origin = origin.map(|o| String::from_utf8_lossy(o.as_bytes()).to_ascii_lowercase());
    let host = origin.as_deref().and_then(origin_host).unwrap_or("");
    allowed
        .iter()
        .map(|p| pattern_host(p))
        .filter(|p| !p.is_empty())
        .any(|pattern| match pattern.strip_prefix('*') {
            Some(suffix) => host.ends_with(suffix),
            None => host == pattern,
        })
}

/// The host (with its port, if any) of an origin URL, as Go's `url.Parse`
/// gives it: between `scheme://` (and any `user@`) and the path.
fn origin_host(origin: &str) -> Option<&str> {
    let (scheme, rest) = origin.split_once("://")?;
    if scheme.is_empty() {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    Some(
        authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host),
    )
}

/// A configured pattern, lower case, without the scheme people sometimes write.
fn pattern_host(pattern: &str) -> String {
    let pattern = pattern.trim().to_ascii_lowercase();
    match pattern.split_once("://") {
        Some((_, rest)) => rest.trim_end_matches('/').to_owned(),
        None => pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(allowed: &[&str], origin: Option<&[u8]>) -> bool {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        let header = origin.map(|o| HeaderValue::from_bytes(o).unwrap());
        origin_allowed(&allowed, header.as_ref())
    }

    #[test]
    fn empty_list_allows_everything() {
        assert!(check(&[], None));
        assert!(check(&[], Some(b"https://any.where")));
    }

    #[test]
    fn host_and_port_are_compared_not_the_scheme() {
        let list = ["example.com", "localhost:3000"];
        assert!(check(&list, Some(b"https://example.com")));
        assert!(check(&list, Some(b"http://EXAMPLE.com/")));
        assert!(check(&list, Some(b"http://localhost:3000")));
        assert!(!check(&list, Some(b"https://example.com:8443")));
        assert!(!check(&list, Some(b"http://localhost:4000")));
        assert!(!check(&list, Some(b"http://localhost")));
        assert!(!check(&list, Some(b"https://example.com.evil.com")));
        assert!(!check(&list, Some(b"https://evil.com")));
        assert!(check(&["https://example.com"], Some(b"http://example.com")));
    }

    #[test]
    fn wildcards_match_suffixes_as_anycable_go_does() {
        let list = ["*.rails.dev"];
        assert!(check(&list, Some(b"http://app.rails.dev")));
        assert!(check(&list, Some(b"http://a.b.rails.dev")));
        assert!(!check(&list, Some(b"http://rails.dev")));
        assert!(!check(&list, Some(b"http://evilrails.dev")));
        assert!(!check(&list, Some(b"http://app.rails.dev:8443")));
        assert!(check(
            &["*.localhost:8080"],
            Some(b"http://my.localhost:8080")
        ));
        assert!(check(&["*rails.dev"], Some(b"http://evilrails.dev")));
        assert!(check(&["*"], Some(b"http://any.where")));
        assert!(check(&["*"], None));
    }

    #[test]
    fn missing_null_malformed_and_non_ascii_origins_are_refused() {
        let list = ["example.com"];
        assert!(!check(&list, None));
        assert!(!check(&list, Some(b"null")));
        assert!(!check(&list, Some(b"example.com")));
        assert!(!check(&list, Some(b"://example.com")));
        assert!(!check(&list, Some("https://exämple.com".as_bytes())));
        assert!(!check(&["*.example.com"], Some(b"https://\xffexample.com")));
        assert!(check(&list, Some(b"https://user@example.com")));
    }
}
