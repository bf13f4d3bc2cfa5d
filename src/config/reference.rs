//! The configuration reference as Markdown, made from the option
//! definitions themselves: README.md carries it between markers
//! (`cargo run --example config_table -- --write`), and a test in
//! tests/binary.rs keeps the two equal.

use super::{Config, anycable};

/// The table of the options ferrocable implements, then the anycable-go
/// options it accepts without implementing them (warned at start) and the
/// ones it refuses.
pub fn markdown_reference() -> String {
    let cmd = Config::cli();
    let mut out =
        String::from("| flag | environment | default | meaning |\n| --- | --- | --- | --- |\n");
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if arg.is_hide_set() || matches!(long, "help" | "version") {
            continue;
        }
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = match defaults.join(",") {
            d if d.is_empty() => "—".to_owned(),
            d => format!("`{d}`"),
        };
        let mut help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| format!("`{}`", v.get_name()))
            .collect();
        if !values.is_empty() && !help.contains("(`") {
            help.push_str(&format!(" ({})", values.join(", ")));
        }
        let aliases: Vec<String> = arg
            .get_visible_aliases()
            .unwrap_or_default()
            .iter()
            .map(|a| format!("`--{a}`"))
            .collect();
        let flag = match aliases.is_empty() {
            true => format!("`--{long}`"),
            false => format!("`--{long}` ({})", aliases.join(", ")),
        };
        out.push_str(&format!(
            "| {flag} | {env} | {default} | {} |\n",
            help.replace('|', "\\|")
        ));
    }
    let list = |refused: bool| {
        anycable::OPTIONS
            .iter()
            .filter(|o| o.policy.is_refused() == refused)
            .map(|o| format!("`{}`", o.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    out.push_str(&format!(
        "\nAccepted for anycable-go compatibility, not implemented yet (a warning names each one set): {}.\n",
        list(false)
    ));
    out.push_str(&format!(
        "\nRefused at start when set (to a value other than anycable-go's default or `none`): ignoring them would weaken security (secrets and keys, enforced JWT) or cannot work (Sentinel): {}. In the gem, the secrets among them are warned about instead (the application's own checks, Action Cable's and turbo-rails', still apply).\n",
        list(true)
    ));
    out
}
