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
    // The broker preset sets broker=memory; the file's broadcast_adapters win
    // over the preset's.
    assert!(logs.contains("load presets"), "{logs}");
    assert!(logs.contains("option sse is accepted"), "{logs}");
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
        "--presets=none",
        "-pusher_app_key=abc",
        "--hub_gopool_size",
        "8",
        "--embed_nats",
    ]);
    let logs = start(&dir, &args, &[], port, "/health").await.stop().await;
    for name in ["pusher_app_key", "hub_gopool_size", "embed_nats"] {
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
        "--presets=broker",
    ]);
    let out = command(&dir, &args, &[]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let printed = String::from_utf8(out.stdout).unwrap();
    for line in [
        "port = 9011",
        "health_path = \"/hz\"",
        "presets = \"broker\"",
        "broker = \"memory\"",
    ] {
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

/// What a running child writes to stderr, collected as it comes (to wait for
/// a line while it runs).
fn collect_stderr(child: &mut tokio::process::Child) -> std::sync::Arc<std::sync::Mutex<String>> {
    use tokio::io::AsyncBufReadExt;
    let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = out.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    out
}

async fn wait_logged(logs: &std::sync::Mutex<String>, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !logs.lock().unwrap().contains(what) {
        assert!(
            std::time::Instant::now() < deadline,
            "never logged {what:?}: {}",
            logs.lock().unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Operations options as a deployment sets them (environment only):
/// `shutdown_delay` keeps serving new clients after SIGTERM and then exits
/// by itself; /metrics has anycable-go's names with `metrics_tags` as labels;
/// `metrics_log` logs the interval's counts every `metrics_rotate_interval`,
/// and StatsD packets reach a real UDP socket (`statsd_host`).
#[tokio::test]
async fn shutdown_delay_metrics_names_tags_and_log() {
    let app = AppServer::start().await;
    let port = reserve_port();
    let statsd = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let env = [
        ("ANYCABLE_HOST", "127.0.0.1".to_owned()),
        ("PORT", port.to_string()),
        ("ANYCABLE_RPC_HOST", app.addr.to_string()),
        ("ANYCABLE_BROADCAST_ADAPTER", "http".to_owned()),
        ("ANYCABLE_BROADCAST_KEY", "k3y".to_owned()),
        ("ANYCABLE_SHUTDOWN_DELAY", "30".to_owned()),
        ("ANYCABLE_METRICS_HTTP", "/metrics".to_owned()),
        ("ANYCABLE_METRICS_TAGS", "env:test,node:n1".to_owned()),
        ("ANYCABLE_METRICS_LOG", "true".to_owned()),
        ("ANYCABLE_METRICS_ROTATE_INTERVAL", "1".to_owned()),
        (
            "ANYCABLE_METRICS_LOG_FILTER",
            "broadcast_msg_total,clients_num".to_owned(),
        ),
        (
            "ANYCABLE_STATSD_HOST",
            statsd.local_addr().unwrap().to_string(),
        ),
    ];
    let dir = workdir("operations");
    let mut bin = start(&dir, &[], &env, port, "/health").await;
    bin.serves_a_broadcast(bin.addr, Some("k3y")).await;
    let (status, text) = http(bin.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    for sample in [
        "anycable_go_broadcast_msg_total{env=\"test\",node=\"n1\"} 1",
        "ferrocable_broadcast_msg_total{env=\"test\",node=\"n1\"} 1",
        "anycable_go_rpc_call_total{env=\"test\",node=\"n1\"}",
        "anycable_go_clients_num{env=\"test\",node=\"n1\"}",
    ] {
        assert!(text.contains(sample), "{sample}: {text}");
    }
    // The interval with the broadcast, over StatsD (datadog tags).
    let mut buf = vec![0u8; 2048];
    let mut received = String::new();
    while !received.contains("anycable_go.broadcast_msg_total:1|c|#env:test,node:n1\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(60), statsd.recv(&mut buf))
            .await
            .expect("StatsD packets arrive")
            .unwrap();
        received.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(received.contains("anycable_go.clients_num:"), "{received}");
    let logs = collect_stderr(&mut bin.child);
    // One interval's log counts the broadcast; the filter leaves the rest out.
    wait_logged(&logs, "broadcast_msg_total=1 clients_num=").await;
    assert!(!logs.lock().unwrap().contains("rpc_call_total="));

    let signalled = std::time::Instant::now();
    send_signal(bin.child.id().unwrap(), libc::SIGTERM);
    wait_logged(&logs, "shutdown_delay").await;
    // Still serving: a new client is welcomed, health answers.
    let (mut late, _) = connect_user(&format!("ws://{}/cable", bin.addr), "late").await;
    late.join("2").await;
    assert!(answers_200(bin.addr, "/health").await);
    let status = tokio::time::timeout(std::time::Duration::from_secs(180), bin.child.wait())
        .await
        .expect("the binary exits after shutdown_delay")
        .unwrap();
    assert!(status.success(), "{status}: {}", logs.lock().unwrap());
    assert!(signalled.elapsed() >= std::time::Duration::from_secs(30));
    // The late client got the restart notice as the shutdown came.
    let (messages, _) = late.recv_until_close().await;
    assert!(
        messages.iter().any(|m| m["reason"] == "server_restart"),
        "{messages:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The platform presets as the platforms start the binary: Fly.io's
/// variables select `fly` (no `presets` set): host 0.0.0.0 (checked in the
/// printed configuration: tests listen on 127.0.0.1 only) and, without
/// Redis, broadcasts over HTTP only (warning that embedded NATS is
/// missing); `heroku` puts broadcasts on `PORT`; options the deployment sets
/// win over a preset's; a Fly preset without Fly's variables refuses to
/// start.
#[tokio::test]
async fn presets_from_the_platform_environment() {
    let app = AppServer::start().await;
    let port = reserve_port();
    let fly = [
        ("FLY_APP_NAME", "chat".to_owned()),
        ("FLY_ALLOC_ID", "a1".to_owned()),
        ("FLY_REGION", "ams".to_owned()),
        ("PORT", port.to_string()),
        ("ANYCABLE_RPC_HOST", app.addr.to_string()),
        ("ANYCABLE_SECRET", "s3cret".to_owned()),
    ];
    let dir = workdir("fly");
    let mut served = fly.to_vec();
    served.push(("ANYCABLE_HOST", "127.0.0.1".to_owned()));
    let bin = start(&dir, &[], &served, port, "/health").await;
    let key = ferrocable::broadcast::key::derive("s3cret");
    bin.serves_a_broadcast(bin.addr, Some(&key)).await;
    let logs = bin.stop().await;
    assert!(
        logs.contains("load presets") && logs.contains("fly"),
        "{logs}"
    );
    assert!(logs.contains("embedded NATS"), "{logs}");
    // No Redis subscriber was started.
    assert!(logs.contains("broadcast_adapter=[Http]"), "{logs}");

    let print = |args: Vec<String>, env: Vec<(&'static str, String)>| {
        let dir = dir.clone();
        async move {
            let out = command(&dir, &args, &env).output().await.unwrap();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            (
                out.status.code(),
                String::from_utf8(out.stdout).unwrap(),
                err,
            )
        }
    };
    let fly_env: Vec<(&'static str, String)> = fly.to_vec();
    let (code, printed, err) = print(strings(&["--print-config"]), fly_env.clone()).await;
    assert_eq!(code, Some(0), "{err}");
    for line in [
        "host = \"0.0.0.0\"",
        "broadcast_adapter = \"http\"",
        &format!("http_broadcast_port = {port}"),
    ] {
        assert!(printed.lines().any(|l| l == line), "{line}: {printed}");
    }
    // What the deployment sets wins; presets=none turns detection off.
    let mut mine = fly_env.clone();
    mine.push(("ANYCABLE_HOST", "127.0.0.1".to_owned()));
    let (_, printed, _) = print(strings(&["--print-config"]), mine).await;
    assert!(printed.contains("host = \"127.0.0.1\""), "{printed}");
    let (_, printed, _) = print(strings(&["--print-config", "--presets=none"]), fly_env).await;
    assert!(printed.contains("host = \"localhost\""), "{printed}");

    let heroku = vec![
        ("HEROKU_APP_ID", "h".to_owned()),
        ("HEROKU_DYNO_ID", "d".to_owned()),
        ("PORT", "5123".to_owned()),
        ("ANYCABLE_PORT", "5124".to_owned()),
        ("ANYCABLE_BROADCAST_KEY", "k".to_owned()),
    ];
    let (code, printed, err) = print(strings(&["--print-config"]), heroku).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(printed.contains("http_broadcast_port = 5123"), "{printed}");
    assert!(printed.contains("host = \"0.0.0.0\""), "{printed}");

    let err = refused(&dir, &strings(&["--presets=fly"]), &[]).await;
    assert!(err.contains("FLY_REGION"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Nothing a config file or a variable says is taken silently (issue #15):
/// an empty or blank key, a key that chooses the file inside the file, a
/// value of the wrong TOML type (a table, an array or a float where the
/// option takes none, an integer where it takes a string), a negative
/// size, one option set twice differently under two of its names: each
/// stops the start naming the file or variable and the key. What is
/// right (one value under both names, arrays for lists, a tags table,
/// numbers as strings) still loads.
#[tokio::test]
async fn a_config_that_accepts_nothing_silently() {
    let dir = workdir("oddities");
    let file = dir.join("anycable.toml");
    let cases = [
        ("'' = '7'", r#"invalid key """#),
        ("[server]\n'' = 7", r#"invalid key "" in [server]"#),
        ("' port' = 8080", r#"invalid key " port""#),
        ("[server]\nfoo = 1", r#"unknown option "[server] foo""#),
        ("prot = 8080", r#"unknown option "prot""#),
        (
            "config_path = '/etc/other.toml'",
            "config_path has no meaning in a config file",
        ),
        ("help = true", "help has no meaning in a config file"),
        ("[server]\nhost = { a = 1 }", "[server] host is a table"),
        ("host = ['a', 'b']", "host is an array"),
        ("host = 15", "host is an integer"),
        (
            "port = 8080.0",
            "port is a float (\"8080.0\"); option port takes an integer",
        ),
        ("rpc_concurrency = 1e3", "rpc_concurrency is a float"),
        ("port = [8080]", "port is an array"),
        ("port = true", "port is a boolean"),
        ("debug = 1", "debug is an integer"),
        (
            "[disconnector]\nbacklog = -3",
            "[disconnector] backlog = \"-3\": invalid value '-3'",
        ),
        ("max_conn = '-1'", "max_conn = \"-1\": invalid value '-1'"),
        (
            "debug = 'maybe'",
            "debug = \"maybe\": invalid value 'maybe'",
        ),
        (
            "disconnect_backlog = 5\ndisconnect_backlog_size = 6",
            r#"disconnect_backlog = "5" and disconnect_backlog_size = "6" set the same option"#,
        ),
        (
            "port = 8081\n[server]\nport = 8082",
            r#"port = "8081" and [server] port = "8082" set the same option"#,
        ),
    ];
    for (toml, expected) in cases {
        std::fs::write(&file, toml).unwrap();
        let err = refused(&dir, &[], &[]).await;
        assert!(
            err.contains("config file ./anycable.toml") && err.contains(expected),
            "{toml:?} should be refused with {expected:?}: {err}"
        );
    }
    std::fs::write(
        &file,
        "disconnect_backlog = 7\ndisconnect_backlog_size = 7\nport = '8081'\n\
         broadcast_adapter = ['http']\nallowed_origins = ['a.example', 'b.example']\n\
         debug = 'true'\n[server]\nport = 8081\n[metrics]\ntags = { env = 'prod', n = 2 }\n",
    )
    .unwrap();
    let out = command(&dir, &strings(&["--print-config"]), &[])
        .stdout(std::process::Stdio::piped())
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "disconnect_backlog_size = 7",
        "port = 8081",
        "broadcast_adapter = \"http\"",
        "allowed_origins = \"a.example,b.example\"",
        "metrics_tags = \"env:prod,n:2\"",
    ] {
        assert!(printed.lines().any(|l| l == line), "{line}: {printed}");
    }
    std::fs::remove_file(&file).unwrap();

    // Variables: a bad value names the variable, not a flag it never was;
    // ferrocable's old name and the current one set differently is refused.
    let env_cases = [
        (
            vec![("ANYCABLE_PORT", "abc")],
            r#"environment variable ANYCABLE_PORT="abc""#,
        ),
        (vec![("PORT", "-1")], r#"environment variable PORT="-1""#),
        (
            vec![("ANYCABLE_DISCONNECT_BACKLOG_SIZE", "-5")],
            r#"environment variable ANYCABLE_DISCONNECT_BACKLOG_SIZE="-5""#,
        ),
        (
            vec![("ANYCABLE_BROADCAST_ADAPTER", "http,bogus")],
            r#"environment variable ANYCABLE_BROADCAST_ADAPTER="http,bogus": invalid value 'bogus'"#,
        ),
        (
            vec![
                ("ANYCABLE_DISCONNECT_BACKLOG", "5"),
                ("ANYCABLE_DISCONNECT_BACKLOG_SIZE", "6"),
            ],
            "differ: they name the same option",
        ),
    ];
    for (env, expected) in env_cases {
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let err = refused(&dir, &[], &env).await;
        assert!(err.contains(expected), "{env:?}: {err}");
    }
    // A flag given twice, under its alias too: clap refuses it.
    let err = refused(
        &dir,
        &strings(&["--disconnect_backlog=5", "--disconnect_backlog_size=6"]),
        &[],
    )
    .await;
    assert!(err.contains("cannot be used multiple times"), "{err}");
}

/// `PORT` and `ANYCABLE_PORT` set differently: anycable-go takes
/// `ANYCABLE_PORT` without a word (`PORT` is often the platform's); we take
/// it too, and say so.
#[tokio::test]
async fn port_and_anycable_port_differing_is_warned_and_anycable_port_wins() {
    let port = reserve_port();
    let env = [
        ("ANYCABLE_HOST", "127.0.0.1".to_owned()),
        ("ANYCABLE_PORT", port.to_string()),
        ("PORT", "1".to_owned()),
        ("ANYCABLE_BROADCAST_ADAPTER", "http".to_owned()),
    ];
    let bin = start(&workdir("port-alias"), &[], &env, port, "/health").await;
    let logs = bin.stop().await;
    assert!(
        logs.contains(&format!(
            "ANYCABLE_PORT=\\\"{port}\\\" and PORT=\\\"1\\\" differ; ANYCABLE_PORT applies"
        )) || logs.contains(&format!(
            "ANYCABLE_PORT=\"{port}\" and PORT=\"1\" differ; ANYCABLE_PORT applies"
        )),
        "{logs}"
    );
}
