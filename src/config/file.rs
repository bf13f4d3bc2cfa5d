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
    pub values: Vec<FileValue>,
    pub warnings: Vec<String>,
}

/// One setting of the file: the flag it sets, its value as the flag's text,
/// the key as the file spells it (`[server] port`, for errors) and the
/// TOML type it had, which the caller checks against the flag's type.
#[derive(Debug, Clone, PartialEq)]
pub struct FileValue {
    pub flag: String,
    pub text: String,
    pub key: String,
    pub kind: Kind,
}

/// A value's TOML type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Integer,
    Float,
    Boolean,
    /// A date or time: no option takes one.
    Datetime,
    Array,
    Table,
}

impl Kind {
    fn of(value: &toml::Value) -> Kind {
        match value {
            toml::Value::String(_) => Kind::String,
            toml::Value::Integer(_) => Kind::Integer,
            toml::Value::Float(_) => Kind::Float,
            toml::Value::Boolean(_) => Kind::Boolean,
            toml::Value::Datetime(_) => Kind::Datetime,
            toml::Value::Array(_) => Kind::Array,
            toml::Value::Table(_) => Kind::Table,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "a string",
            Kind::Integer => "an integer",
            Kind::Float => "a float",
            Kind::Boolean => "a boolean",
            Kind::Datetime => "a date-time",
            Kind::Array => "an array",
            Kind::Table => "a table",
        }
    }
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
        // TOML allows any quoted key, '' and ' port' included: neither
        // names an option, and must not pass for the flat form of one.
        if key.trim().is_empty() || key.trim() != key {
            let name = match section {
                "" => format!("{key:?}"),
                s => format!("{key:?} in [{s}]"),
            };
            return Err(ConfigError(format!(
                "config file {}: invalid key {name}: an option's name has no blanks",
                path.display()
            )));
        }
        let kind = Kind::of(&value);
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
            push(path, section, &key, flag, text, kind, out)?;
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
        push(path, section, &key, flag, text, kind, out)?;
    }
    Ok(())
}

fn push(
    path: &Path,
    section: &str,
    key: &str,
    flag: Option<Option<&'static str>>,
    text: String,
    kind: Kind,
    out: &mut FileValues,
) -> Result<(), ConfigError> {
    let name = match section {
        "" => key.to_owned(),
        s => format!("[{s}] {key}"),
    };
    let value = |flag: &str| FileValue {
        flag: flag.to_owned(),
        text,
        key: name.clone(),
        kind,
    };
    match flag {
        Some(Some(flag)) => out.values.push(value(flag)),
        Some(None) => out.warnings.push(format!(
            "config file {}: {name} is an anycable-go setting ferrocable does not implement; ignored",
            path.display()
        )),
        // Flat form: the key is a flag name (checked by the caller).
        None if section.is_empty() => out.values.push(value(key)),
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
        toml::Value::Float(f) => format!("{f:?}"),
        toml::Value::Boolean(b) => b.to_string(),
        other => {
            return Err(ConfigError(format!(
                "config file {}: option {key:?} has an unsupported value {other} (a string, a number or a boolean is expected there)",
                path.display()
            )));
        }
    })
}
