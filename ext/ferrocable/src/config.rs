//! `Ferrocable::Native.resolve_config`: the core resolves the gem's
//! configuration (options the user set, `ANYCABLE_*` variables, a file
//! named by `config_path`, the gem's defaults, anycable-go's defaults), so
//! Ruby derives nothing itself: the server it starts and its broadcaster
//! use what this returns.

use crate::errors;
use ferrocable::config::Config;
use magnus::{Error, RArray, Ruby};

/// `resolve_config(args, worker_pool_size)`: `args` are the options the
/// user set as flags (`["--port=8080", ...]`); returns the resolution as
/// JSON ([`Config::resolution`]). Raises `Ferrocable::ConfigError` naming
/// the option for a bad, unknown or refused one.
pub fn resolve_config(ruby: &Ruby, args: RArray, worker_pool_size: usize) -> Result<String, Error> {
    let args: Vec<String> = args.to_vec()?;
    let config = Config::load_for_gem(
        std::iter::once("ferrocable".to_owned()).chain(args),
        worker_pool_size,
    )
    .map_err(|e| Error::new(errors::config_error(ruby), message(&e.to_string())))?;
    Ok(config.resolution().to_string())
}

/// clap's message without what only fits a command line (usage, `--help`).
fn message(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information")
        })
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("; ")
}
