//! Structured logs with `tracing`: `log_level` applies to Ferrocable's own
//! events (dependencies log warnings and errors only), `log_format` picks
//! human text or one JSON object per line.

use crate::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a second call (e.g. tests, or an embedder
/// that already logs) is a no-op.
pub fn init(config: &Config) {
    let filter = EnvFilter::new(format!("warn,ferrocable={}", config.log_level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
