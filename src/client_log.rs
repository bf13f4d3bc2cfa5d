//! Logging what clients do, without handing them the log.
//!
//! Every bad frame, unknown identifier or wrong broadcast key used to be one
//! warning with the client's values in full: one client wrote 1.4 GB of log
//! in 5 s with 60 KB identifiers, forged lines with a newline and sent
//! terminal escapes through. So lines caused by clients go through
//! [`client_log!`]: at most [`LINES_PER_SECOND`] per call site, the next line
//! saying how many were left out (and `ferrocable_log_lines_suppressed_total`
//! counting them), and their values go through [`compact`]: escaped (no line
//! breaks, no control or direction characters) and cut at [`MAX_VALUE_LEN`]
//! bytes, as anycable-go cuts at 100 characters. The metrics count every
//! event; the log only samples them.

use prometheus_client::metrics::counter::Counter;
use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// Lines one call site may write per second.
pub const LINES_PER_SECOND: u32 = 10;
/// Bytes of a client-supplied value written to the log.
pub const MAX_VALUE_LEN: usize = 100;

/// Lines left out by every call site (the metrics registry shares it).
pub static SUPPRESSED: LazyLock<Counter> = LazyLock::new(Counter::default);

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// One call site's budget: a one-second window and the lines left out since
/// the last line written.
pub struct Site {
    window: AtomicU64,
    lines: AtomicU32,
    suppressed: AtomicU64,
}

impl Default for Site {
    fn default() -> Self {
        Self::new()
    }
}

impl Site {
    pub const fn new() -> Self {
        Site {
            window: AtomicU64::new(0),
            lines: AtomicU32::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether a line may be written now; if so, how many were left out
    /// before it. Races between threads only move a line to the next window.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(EPOCH.elapsed().as_secs() + 1)
    }

    fn admit_at(&self, now: u64) -> Option<u64> {
        let window = self.window.load(Ordering::Acquire);
        if window != now
            && self
                .window
                .compare_exchange(window, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.lines.store(0, Ordering::Release);
        }
        if self.lines.fetch_add(1, Ordering::AcqRel) < LINES_PER_SECOND {
            Some(self.suppressed.swap(0, Ordering::AcqRel))
        } else {
            self.suppressed.fetch_add(1, Ordering::AcqRel);
            SUPPRESSED.inc();
            None
        }
    }
}

/// A `tracing` event caused by a client, rate-limited per call site:
/// `client_log!(WARN, sid = %sid, "client frame ignored")`. Field values are
/// only evaluated for lines that are written.
macro_rules! client_log {
    ($level:ident, $($rest:tt)+) => {{
        static SITE: $crate::client_log::Site = $crate::client_log::Site::new();
        if tracing::enabled!(tracing::Level::$level) {
            match SITE.admit() {
                Some(0) => tracing::event!(tracing::Level::$level, $($rest)+),
                Some(suppressed) => tracing::event!(tracing::Level::$level, suppressed, $($rest)+),
                None => {}
            }
        }
    }};
}
pub(crate) use client_log;

/// A client-supplied value as it may appear in the log: see [`compact`].
pub struct Compact<'a>(Cow<'a, str>);

/// Escapes `value` (backslash, control characters, Unicode line and
/// direction marks become `\n`, `\u{1b}`, ...) and cuts it after
/// [`MAX_VALUE_LEN`] bytes of output, saying how many bytes were left out:
/// `{"channel":"Chat...(+59901 bytes)`.
pub fn compact<'a>(value: impl Into<Cow<'a, str>>) -> Compact<'a> {
    Compact(value.into())
}

/// Characters that could forge a line or mislead a reader: C0/C1 controls,
/// line and paragraph separators, bidirectional overrides and isolates.
fn must_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl fmt::Display for Compact<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(MAX_VALUE_LEN + 24);
        for (at, c) in self.0.char_indices() {
            let before = out.len();
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\\' => out.push_str("\\\\"),
                c if must_escape(c) => {
                    let _ = write!(out, "{}", c.escape_unicode());
                }
                c => out.push(c),
            }
            if out.len() > MAX_VALUE_LEN {
                out.truncate(before);
                let _ = write!(out, "...(+{} bytes)", self.0.len() - at);
                break;
            }
        }
        f.write_str(&out)
    }
}

impl fmt::Debug for Compact<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_cut() {
        assert_eq!(compact("plain").to_string(), "plain");
        assert_eq!(
            compact("a\nfake=line\r\u{1b}[31m\\").to_string(),
            "a\\nfake=line\\r\\u{1b}[31m\\\\"
        );
        assert_eq!(
            compact("rtl\u{202e}x\u{2028}").to_string(),
            "rtl\\u{202e}x\\u{2028}"
        );
        let long = format!("{{\"id\":\"{}\"}}", "é".repeat(30_000));
        let shown = compact(long.as_str()).to_string();
        assert!(shown.len() <= MAX_VALUE_LEN + 24, "{shown}");
        assert!(shown.starts_with("{\"id\":\"éé"), "{shown}");
        assert!(shown.ends_with("bytes)"), "{shown}");
        // The byte count is exact: what is shown plus what is left out.
        let kept = shown.split("...(+").next().unwrap();
        let left: usize = shown
            .rsplit("(+")
            .next()
            .unwrap()
            .trim_end_matches(" bytes)")
            .parse()
            .unwrap();
        assert_eq!(kept.len() + left, long.len());
    }

    #[test]
    fn a_site_writes_a_few_lines_per_second_and_counts_the_rest() {
        let site = Site::new();
        for _ in 0..LINES_PER_SECOND {
            assert_eq!(site.admit_at(1), Some(0));
        }
        for _ in 0..1000 {
            assert_eq!(site.admit_at(1), None);
        }
        assert_eq!(site.admit_at(2), Some(1000));
        assert_eq!(site.admit_at(2), Some(0));
    }
}
