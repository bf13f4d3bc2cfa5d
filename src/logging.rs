//! Structured logs with `tracing`: `log_level` applies to Ferrocable's own
//! events (dependencies log warnings and errors only), `log_format` picks
//! human text or one JSON object per line.

use crate::config::{Config, LogFormat};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (a second call, e.g. tests, or an embedder
/// that already logs, keeps the first), then logs the configuration's
/// warnings (anycable-go options accepted but not implemented).
pub fn init(config: &Config) {
    let filter = EnvFilter::new(format!("warn,ferrocable={}", config.log_level.as_str()));
    // Colours only for a terminal: in a file or a pipe they are escape
    // sequences, and the log should carry none that we did not escape.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    config.log_warnings();
}
