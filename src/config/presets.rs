//! anycable-go's configuration presets: `presets=fly,heroku,broker`, or,
//! when `presets` is not set, `fly` and `heroku` detected from the platform's
//! variables (checked against anycable-go 1.6 config/presets.go).
//!
//! A preset only fills in options the deployment left unset: its values are
//! layered beneath the file, the environment and the flags. Where a preset
//! stands for something ferrocable does not have (embedded NATS, pub/sub
//! between nodes, the broker until it lands), the option it sets is
//! accepted with the usual warning naming it, or a warning here says what
//! happens instead.

use super::{Config, KEYLESS_BROADCAST_PORT};

/// What the presets add: layered defaults (flag, value) and warnings.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Presets {
    /// The presets applied, in order.
    pub names: Vec<String>,
    pub defaults: Vec<(&'static str, String)>,
    pub warnings: Vec<String>,
}

impl Presets {
    /// The first preset to set an option wins (anycable-go's presets each
    /// change only what is still at its default).
    fn set(&mut self, flag: &'static str, value: impl Into<String>) {
        if !self.defaults.iter().any(|(f, _)| *f == flag) {
            self.defaults.push((flag, value.into()));
        }
    }
}

/// The presets to apply: those `presets` names (`none`: none), else the
/// platforms detected from the environment, as anycable-go does.
pub fn names(option: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    match option.map(str::trim).filter(|o| !o.is_empty()) {
        Some(list) => list
            .split(',')
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty() && p != "none")
            .collect(),
        None => {
            let has = |names: &[&str]| names.iter().all(|n| env(n).is_some());
            let mut found = Vec::new();
            if has(&["FLY_APP_NAME", "FLY_ALLOC_ID", "FLY_REGION"]) {
                found.push("fly".to_owned());
            }
            if has(&["HEROKU_APP_ID", "HEROKU_DYNO_ID"]) {
                found.push("heroku".to_owned());
            }
            found
        }
    }
}

/// What `names` stand for, given the configuration loaded without them.
pub fn resolve(
    names: &[String],
    cfg: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Presets, String> {
    let mut out = Presets {
        names: names.to_vec(),
        ..Default::default()
    };
    let redis = cfg.redis_url != Config::defaults().redis_url;
    let keyed = cfg.effective_broadcast_key().is_some();
    for name in names {
        match name.as_str() {
            "fly" => {
                let region = env("FLY_REGION")
                    .ok_or("presets=fly: the FLY_REGION variable is missing (set by Fly.io)")?;
                env("FLY_APP_NAME")
                    .ok_or("presets=fly: the FLY_APP_NAME variable is missing (set by Fly.io)")?;
                out.set("host", "0.0.0.0");
                same_port_broadcasts(&mut out, "fly", cfg.port, keyed);
                if redis {
                    out.set("pubsub", "redis");
                } else {
                    out.set("broadcast_adapter", "http");
                    out.warnings.push(
                        "presets=fly: embedded NATS is not implemented, so without redis_url \
                         broadcasts arrive over HTTP only and reach only the node that receives them"
                            .into(),
                    );
                }
                if let Some(rpc) = env("ANYCABLE_FLY_RPC_APP_NAME") {
                    // anycable-go dials dns:///<region>.<app>.internal:50051;
                    // the same name, resolved by the system.
                    out.set("rpc_host", format!("{region}.{rpc}.internal:50051"));
                }
            }
            "heroku" => {
                out.set("host", "0.0.0.0");
                if let Some(port) = env("PORT").filter(|p| !p.is_empty()) {
                    let port: u16 = port.parse().map_err(|_| {
                        format!("presets=heroku: PORT is not a port number ({port:?})")
                    })?;
                    same_port_broadcasts(&mut out, "heroku", port, keyed);
                }
            }
            "broker" => {
                // No embedded NATS here: the memory broker, as anycable-go
                // picks without it.
                out.set("broker", "memory");
                if redis {
                    out.set("broadcast_adapter", "http,redisx,redis");
                    out.set("pubsub", "redis");
                } else {
                    out.set("broadcast_adapter", "http");
                }
            }
            other => out.warnings.push(format!(
                "presets: unknown preset {other:?} ignored (anycable-go has fly, heroku and broker)"
            )),
        }
    }
    Ok(out)
}

/// HTTP broadcasts on the main port, as the fly and heroku presets put them
/// (a PaaS exposes one port), unless no key protects them: a keyless
/// endpoint never shares the WebSocket port here, so it stays on 8090.
fn same_port_broadcasts(out: &mut Presets, preset: &str, port: u16, keyed: bool) {
    if keyed {
        out.set("http_broadcast_port", port.to_string());
    } else {
        out.warnings.push(format!(
            "presets={preset}: HTTP broadcasts stay on port {KEYLESS_BROADCAST_PORT}, not the main \
             port as in anycable-go: no broadcast key is set, and an endpoint without a key never \
             shares the WebSocket port (set broadcast_key or secret)"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn presets_are_named_or_detected_from_the_platform() {
        let none = env_of(&[]);
        assert!(names(None, &none).is_empty());
        assert!(names(Some("none"), &none).is_empty());
        assert_eq!(names(Some("broker, Fly"), &none), ["broker", "fly"]);
        let fly = env_of(&[
            ("FLY_APP_NAME", "a"),
            ("FLY_ALLOC_ID", "1"),
            ("FLY_REGION", "ams"),
        ]);
        assert_eq!(names(None, &fly), ["fly"]);
        assert!(names(Some("none"), &fly).is_empty());
        let heroku = env_of(&[("HEROKU_APP_ID", "a"), ("HEROKU_DYNO_ID", "d")]);
        assert_eq!(names(None, &heroku), ["heroku"]);
        assert!(names(None, &env_of(&[("HEROKU_APP_ID", "a")])).is_empty());
    }

    #[test]
    fn what_each_preset_sets() {
        let plain = Config::load(["ferrocable", "--secret=s"]).unwrap();
        let fly_env = env_of(&[
            ("FLY_APP_NAME", "web"),
            ("FLY_REGION", "ams"),
            ("ANYCABLE_FLY_RPC_APP_NAME", "rpc"),
        ]);
        let fly = resolve(&["fly".into()], &plain, &fly_env).unwrap();
        assert_eq!(
            fly.defaults,
            vec![
                ("host", "0.0.0.0".to_owned()),
                ("http_broadcast_port", "8080".to_owned()),
                ("broadcast_adapter", "http".to_owned()),
                ("rpc_host", "ams.rpc.internal:50051".to_owned()),
            ]
        );
        assert!(fly.warnings.join(" ").contains("embedded NATS"));
        let e = resolve(&["fly".into()], &plain, &env_of(&[])).unwrap_err();
        assert!(e.contains("FLY_REGION"), "{e}");

        let redis = Config::load(["ferrocable", "--redis_url=redis://r:6379"]).unwrap();
        let both = resolve(
            &["broker".into(), "heroku".into()],
            &redis,
            &env_of(&[("PORT", "5000")]),
        )
        .unwrap();
        assert_eq!(
            both.defaults,
            vec![
                ("broker", "memory".to_owned()),
                ("broadcast_adapter", "http,redisx,redis".to_owned()),
                ("pubsub", "redis".to_owned()),
                ("host", "0.0.0.0".to_owned()),
            ]
        );
        // No key: broadcasts keep a port of their own, and a warning says so.
        assert!(
            both.warnings.join(" ").contains("8090"),
            "{:?}",
            both.warnings
        );
        let e = resolve(&["heroku".into()], &plain, &env_of(&[("PORT", "x")])).unwrap_err();
        assert!(e.contains("PORT"), "{e}");
        let odd = resolve(&["render".into()], &plain, &env_of(&[])).unwrap();
        assert!(odd.defaults.is_empty() && odd.warnings[0].contains("render"));
    }
}
