//! The binary configured the ways anycable-go deployments configure it:
//! environment only, flags only (Go's single-dash forms and deprecated
//! names included), an `anycable.toml` in the working directory. Each
//! starts and serves (health, welcome, a broadcast); anycable-go options we
//! do not implement are warned about; a security option we do not
//! implement stops the start; a broadcast without the key is refused under
//! every name the key can be given.

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A directory of its own for a run (the binary reads ./anycable.toml).
fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrocable-config-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn command(dir: &Path, args: &[String], env: &[(&str, String)]) -> tokio::process::Command {
    binary_command(Some(dir), args, env)
}

/// Starts the binary and waits until `health` answers 200 on `port`;
/// returns it with what it logged up to then.
async fn start(
    dir: &Path,
    args: &[String],
    env: &[(&str, String)],
    port: u16,
    health: &str,
) -> Running {
    let mut child = command(dir, args, env).spawn().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_serving(&mut child, &format!("{health} on {port}"), || {
        answers_200(addr, health)
    })
    .await;
    Running { child, addr }
}

struct Running {
    child: tokio::process::Child,
    addr: SocketAddr,
}

impl Running {
    /// A client gets its welcome, joins a room, and receives a broadcast
    /// posted with `key` to the HTTP endpoint at `broadcast`.
    async fn serves_a_broadcast(&self, broadcast: SocketAddr, key: Option<&str>) {
        let (mut client, _) = connect_user(&format!("ws://{}/cable", self.addr), "alice").await;
        let identifier = client.join("1").await;
        let auth = key.map(|k| format!("Bearer {k}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let body = r#"{"stream":"chat_1","data":"{\"text\":\"hi\"}"}"#;
        assert_eq!(
            http(broadcast, "POST", "/_broadcast", &headers, body)
                .await
                .0,
            201
        );
        let message = client.recv().await;
        assert_eq!(message["identifier"], identifier, "{message}");
        assert_eq!(message["message"]["text"], "hi", "{message}");
    }

    /// Stops it; returns its stderr.
    async fn stop(mut self) -> String {
        let pid = self.child.id().unwrap();
        send_signal(pid, libc::SIGTERM);
        self.child.wait().await.unwrap();
        stderr_of(&mut self.child).await
    }
}

/// Runs the binary expecting it to refuse to start; returns its stderr.
async fn refused(dir: &Path, args: &[String], env: &[(&str, String)]) -> String {
    let out = command(dir, args, env).output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    err
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn environment_only() {
    let app = AppServer::start().await;
    let port = reserve_port();
    let env = [
        ("ANYCABLE_HOST", "127.0.0.1".to_owned()),
        ("PORT", port.to_string()),
        ("ANYCABLE_RPC_HOST", app.addr.to_string()),
        ("ANYCABLE_HEALTH_PATH", "/up".to_owned()),
        ("ANYCABLE_BROADCAST_ADAPTER", "http".to_owned()),
        ("ANYCABLE_BROADCAST_KEY", "k3y".to_owned()),
        ("ANYCABLE_DEBUG", "true".to_owned()),
    ];
    let bin = start(&workdir("env"), &[], &env, port, "/up").await;
    bin.serves_a_broadcast(bin.addr, Some("k3y")).await;
    let logs = bin.stop().await;
    assert!(logs.contains("DEBUG"), "debug logging: {logs}");
}

#[tokio::test]
async fn go_style_flags_and_deprecated_names() {
    let app = AppServer::start().await;
    let port = reserve_port();
    let args = strings(&[
        "-host",
        "127.0.0.1",
        &format!("-port={port}"),
        "-rpc_host",
        &app.addr.to_string(),
        "--health_path=/hz",
        "-broadcast_adapter=http",
        "--http_broadcast_secret",
        "legacy",
        "-disconnect_backlog_size=64",
        "--disable_disconnect",
        "-debug",
    ]);
    let bin = start(&workdir("go"), &args, &[], port, "/hz").await;
    bin.serves_a_broadcast(bin.addr, Some("legacy")).await;
    let logs = bin.stop().await;
    assert!(
        logs.contains("http_broadcast_secret is deprecated"),
        "{logs}"
    );
    assert!(logs.contains("disable_disconnect is deprecated"), "{logs}");
}

#[tokio::test]
async fn anycable_toml_in_the_working_directory() {
    let app = AppServer::start().await;
    let port = reserve_port();
    let broadcast_port = reserve_port();
    let dir = workdir("toml");
    std::fs::write(
        dir.join("anycable.toml"),
        format!(
            "broadcast_adapters = [\"http\"]\npresets = [\"broker\"]\n\
             [server]\nhost = \"127.0.0.1\"\nport = {port}\nhealth_path = \"/alive\"\n\
             [rpc]\nhost = \"{}\"\n[logging]\nformat = \"json\"\n\
             [http_broadcast]\nport = {broadcast_port}\n[sse]\nenabled = true\n",
            app.addr
        ),
    )
    .unwrap();
    let bin = start(&dir, &[], &[], port, "/alive").await;
    let broadcast = SocketAddr::from(([127, 0, 0, 1], broadcast_port));
    bin.serves_a_broadcast(broadcast, None).await;
    let logs = bin.stop().await;
    assert!(
        logs.lines().all(|l| l.starts_with('{')),
        "JSON logs: {logs}"
    );
    for name in ["presets", "sse"] {
        assert!(
            logs.contains(&format!("option {name} is accepted")),
            "{name}: {logs}"
        );
    }
    // --ignore-config-path skips it: a file that would be refused is not read.
    std::fs::write(dir.join("anycable.toml"), "[pusher]\nsecret = \"x\"\n").unwrap();
    let err = refused(&dir, &[], &[]).await;
    assert!(err.contains("pusher_secret"), "{err}");
    let args = strings(&[
        "--ignore-config-path",
        "--broadcast_adapter=redis",
        "--host=127.0.0.1",
        &format!("--port={port}"),
        &format!("--rpc_host={}", app.addr),
    ]);
    start(&dir, &args, &[], port, "/health").await.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn anycable_options_we_lack_are_warned_and_security_ones_refused() {
    let app = AppServer::start().await;
    let port = reserve_port();
    let dir = workdir("warn");
    let args = strings(&[
        "--host=127.0.0.1",
        &format!("--port={port}"),
        &format!("--rpc_host={}", app.addr),
        "--presets=fly",
        "-pusher_app_key=abc",
        "--broker",
        "memory",
        "--embed_nats",
    ]);
    let logs = start(&dir, &args, &[], port, "/health").await.stop().await;
    for name in ["presets", "pusher_app_key", "broker", "embed_nats"] {
        assert!(logs.contains(name), "{name}: {logs}");
    }
    for (args, env) in [
        (strings(&["--pusher_secret=x"]), vec![]),
        (strings(&["-cable_ready_key", "x"]), vec![]),
        (
            strings(&["--ssl_cert=/tmp/c.pem", "--ssl_key=/tmp/k.pem"]),
            vec![],
        ),
        (vec![], vec![("ANYCABLE_API_SECRET", "x".to_owned())]),
        // Enforced without a key to verify with.
        (vec![], vec![("ANYCABLE_ENFORCE_JWT", "true".to_owned())]),
        (vec![], vec![("ANYCABLE_TURBO_STREAMS", "true".to_owned())]),
        (strings(&["--rpc_impl=http"]), vec![]),
    ] {
        let err = refused(&dir, &args, &env).await;
        assert!(err.contains("refusing to start"), "{args:?} {env:?}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_broadcast_without_the_key_is_refused_under_every_key_name() {
    let app = AppServer::start().await;
    let derived = ferrocable::broadcast::key::derive("s3cret");
    // (name, flags, environment, anycable.toml, the key it makes)
    type Way = (
        &'static str,
        Vec<String>,
        Vec<(&'static str, String)>,
        &'static str,
        String,
    );
    let ways: [Way; 8] = [
        (
            "--broadcast_key",
            strings(&["--broadcast_key=k1"]),
            vec![],
            "",
            "k1".into(),
        ),
        (
            "ANYCABLE_BROADCAST_KEY",
            vec![],
            vec![("ANYCABLE_BROADCAST_KEY", "k2".into())],
            "",
            "k2".into(),
        ),
        (
            "--secret",
            strings(&["-secret", "s3cret"]),
            vec![],
            "",
            derived.clone(),
        ),
        (
            "ANYCABLE_SECRET",
            vec![],
            vec![("ANYCABLE_SECRET", "s3cret".into())],
            "",
            derived.clone(),
        ),
        (
            "--http_broadcast_secret",
            strings(&["--http_broadcast_secret=k3"]),
            vec![],
            "",
            "k3".into(),
        ),
        (
            "ANYCABLE_HTTP_BROADCAST_SECRET",
            vec![],
            vec![("ANYCABLE_HTTP_BROADCAST_SECRET", "k4".into())],
            "",
            "k4".into(),
        ),
        (
            "toml broadcast_key",
            vec![],
            vec![],
            "broadcast_key = \"k5\"\n",
            "k5".into(),
        ),
        (
            "toml [http_broadcast] secret",
            vec![],
            vec![],
            "[http_broadcast]\nsecret = \"k6\"\n",
            "k6".into(),
        ),
    ];
    for (name, extra, env, file, key) in ways {
        let dir = workdir(&format!("key-{}", name.replace(['[', ']', ' '], "_")));
        std::fs::write(dir.join("anycable.toml"), file).unwrap();
        let port = reserve_port();
        let mut args = strings(&[
            "--host=127.0.0.1",
            &format!("--port={port}"),
            &format!("--rpc_host={}", app.addr),
        ]);
        // No broadcast_adapter: anycable-go 1.5+'s default (http,redis)
        // puts a keyed endpoint on the WebSocket port.
        args.extend(extra);
        let bin = start(&dir, &args, &env, port, "/health").await;
        let body = r#"{"stream":"chat_1","data":"{}"}"#;
        for wrong in [vec![], vec![("Authorization", "Bearer nope")]] {
            let (status, _) = http(bin.addr, "POST", "/_broadcast", &wrong, body).await;
            assert_eq!(status, 401, "{name}: {wrong:?}");
        }
        bin.serves_a_broadcast(bin.addr, Some(&key)).await;
        bin.stop().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[tokio::test]
async fn print_config_prints_a_file_that_loads_back_and_exits() {
    let dir = workdir("print");
    let args = strings(&[
        "--print-config",
        "-port=9011",
        "--health_path=/hz",
        "--presets=fly",
    ]);
    let out = command(&dir, &args, &[]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let printed = String::from_utf8(out.stdout).unwrap();
    for line in ["port = 9011", "health_path = \"/hz\"", "presets = \"fly\""] {
        assert!(printed.lines().any(|l| l == line), "{line}: {printed}");
    }
    std::fs::write(dir.join("anycable.toml"), &printed).unwrap();
    let again = command(&dir, &strings(&["--print-config"]), &[])
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8(again.stdout).unwrap(), printed);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The broker transports as deployments configure them: redisx from the
/// environment only, NATS from an `anycable.toml` (anycable-go's sections)
/// plus a flag; each binary gets a broadcast from its broker.
#[tokio::test]
async fn redisx_from_the_environment_and_nats_from_anycable_toml() {
    let app = AppServer::start().await;
    let redis = RedisServer::start();
    let port = reserve_port();
    let env = [
        ("ANYCABLE_HOST", "127.0.0.1".to_owned()),
        ("PORT", port.to_string()),
        ("ANYCABLE_RPC_HOST", app.addr.to_string()),
        ("ANYCABLE_BROADCAST_ADAPTER", "redisx".to_owned()),
        ("REDIS_URL", redis.url()),
        ("ANYCABLE_REDISX_STREAM", "deploy_stream".to_owned()),
    ];
    let redisx_dir = workdir("redisx");
    let bin = start(&redisx_dir, &[], &env, port, "/health").await;
    redis.wait_stream_groups("deploy_stream", 1).await;
    let (mut client, _) = connect_user(&format!("ws://{}/cable", bin.addr), "alice").await;
    client.join("1").await;
    let payload = r#"{"stream":"chat_1","data":"{\"via\":\"redisx\"}"}"#;
    redis.xadd("deploy_stream", "payload", payload).await;
    let received = tokio::time::timeout(WAIT * 2, client.recv()).await;
    assert_eq!(received.expect("no broadcast")["message"]["via"], "redisx");
    bin.stop().await;
    std::fs::remove_dir_all(&redisx_dir).unwrap();
    // Stopped gracefully, the node removed its group.
    redis.wait_stream_groups("deploy_stream", 0).await;

    let nats = NatsServer::start();
    let port = reserve_port();
    let dir = workdir("nats");
    std::fs::write(
        dir.join("anycable.toml"),
        format!(
            "[server]\nhost = \"127.0.0.1\"\nport = {port}\n[rpc]\nhost = \"{}\"\n\
             [nats]\nservers = \"{}\"\n[nats_broadcast]\nchannel = \"deploy_subject\"\n",
            app.addr,
            nats.url()
        ),
    )
    .unwrap();
    let bin = start(
        &dir,
        &strings(&["-broadcast_adapter=nats"]),
        &[],
        port,
        "/health",
    )
    .await;
    nats.wait_subscribers("deploy_subject", 1).await;
    let (mut client, _) = connect_user(&format!("ws://{}/cable", bin.addr), "alice").await;
    client.join("1").await;
    let payload = r#"{"stream":"chat_1","data":"{\"via\":\"nats\"}"}"#;
    nats.publish("deploy_subject", payload).await;
    let received = tokio::time::timeout(WAIT * 2, client.recv()).await;
    assert_eq!(received.expect("no broadcast")["message"]["via"], "nats");
    let logs = bin.stop().await;
    assert!(!logs.contains("not implemented"), "{logs}");
    std::fs::remove_dir_all(&dir).unwrap();
}
