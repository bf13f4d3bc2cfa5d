//! The TOML file: anycable-go's sectioned format (`[server]`, `[logging]`,
//! `[http_broadcast]`, …) and ferrocable's flat one (`port = 8080`, the flag
//! names as keys), read into (flag, value) pairs for the command line
//! parser to take as defaults.

use super::{ConfigError, anycable};
use std::path::Path;

/// What a file says: values by flag name, and warnings for the keys
/// anycable-go reads that have no flag (nothing to apply them to).
#[derive(Debug, Default)]
pub struct FileValues {
    pub values: Vec<(String, String)>,
    pub warnings: Vec<String>,
}

pub fn read(path: &Path) -> Result<FileValues, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    parse(path, &text)
}

/// What the text of a file says (`path` names it in the errors).
pub fn parse(path: &Path, text: &str) -> Result<FileValues, ConfigError> {
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| ConfigError(format!("invalid config file {}: {e}", path.display())))?;
    let mut out = FileValues::default();
    walk(path, "", table, &mut out)?;
    Ok(out)
}

fn walk(
    path: &Path,
    section: &str,
    table: toml::Table,
    out: &mut FileValues,
) -> Result<(), ConfigError> {
    for (key, value) in table {
        let key = key.replace('-', "_");
        let nested = match section {
            "" => key.clone(),
            s => format!("{s}.{key}"),
        };
        let flag = anycable::file_key(section, &key);
        if let toml::Value::Table(inner) = value {
            if flag.is_none() && anycable::is_section(&nested) {
                walk(path, &nested, inner, out)?;
                continue;
            }
            // metrics.tags is a table of tag → value: "k:v,k:v" as the flag.
            let text = inner
                .into_iter()
                .map(|(k, v)| Ok(format!("{k}:{}", scalar(path, &k, v)?)))
                .collect::<Result<Vec<_>, _>>()?
                .join(",");
            push(path, section, &key, flag, text, out)?;
            continue;
        }
        let separator = if nested == "embedded_nats.gateways" {
            ";"
        } else {
            ","
        };
        let text = match value {
            toml::Value::Array(items) => items
                .into_iter()
                .map(|v| scalar(path, &key, v))
                .collect::<Result<Vec<_>, _>>()?
                .join(separator),
            other => scalar(path, &key, other)?,
        };
        push(path, section, &key, flag, text, out)?;
    }
    Ok(())
}

fn push(
    path: &Path,
    section: &str,
    key: &str,
    flag: Option<Option<&'static str>>,
    text: String,
    out: &mut FileValues,
) -> Result<(), ConfigError> {
    let name = match section {
        "" => key.to_owned(),
        s => format!("[{s}] {key}"),
    };
    match flag {
        Some(Some(flag)) => out.values.push((flag.to_owned(), text)),
        Some(None) => out.warnings.push(format!(
            "config file {}: {name} is an anycable-go setting ferrocable does not implement; ignored",
            path.display()
        )),
        // Flat form: the key is a flag name (checked by the caller).
        None if section.is_empty() => out.values.push((key.to_owned(), text)),
        None => {
            return Err(ConfigError(format!(
                "config file {}: unknown option {name:?} (neither ferrocable nor anycable-go has it)",
                path.display()
            )));
        }
    }
    Ok(())
}

fn scalar(path: &Path, key: &str, value: toml::Value) -> Result<String, ConfigError> {
    Ok(match value {
        toml::Value::String(s) => s,
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => {
            return Err(ConfigError(format!(
                "config file {}: option {key:?} has an unsupported value {other}",
                path.display()
            )));
        }
    })
}
