//! The `ferrocable` binary as a user runs it: --help, bad flags, env vars,
//! a config file, serving, JSON logs and SIGTERM.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ferrocable");

#[test]
fn help_lists_anycable_flags_with_defaults() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--host",
        "--port",
        "--path",
        "--health_path",
        "--rpc_host",
        "--rpc_concurrency",
        "--headers",
        "--redis_url",
        "--redis_channel",
        "--broadcast_adapter",
        "--http_broadcast_path",
        "--broadcast_key",
        "--secret",
        "--ping_interval",
        "--max_message_size",
        "--ws_max_pending_size",
        "--allowed_origins",
        "--shutdown_timeout",
        "--disconnect_mode",
        "--metrics_http",
        "--log_level",
        "--log_format",
        "ANYCABLE_RPC_HOST",
        "[default: localhost:50051]",
        "[default: __anycable__]",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn bad_flags_and_values_exit_2_with_a_message() {
    for args in [
        &["--no-such-flag"][..],
        &["--port=http"],
        &["--log_format=xml"],
        &["--rpc_concurrency=0"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("error"), "{args:?}: {err}");
    }
}

fn wait_health(port: u16) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("server did not become healthy on port {port}");
}

#[tokio::test]
async fn serves_from_env_and_file_config_logs_json_and_stops_on_sigterm() {
    let app = AppServer::start().await;
    let port = reserve_port();
    let dir = std::env::temp_dir().join(format!("ferrocable-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ferrocable.toml");
    std::fs::write(
        &file,
        format!(
            "host = \"127.0.0.1\"\nrpc_host = \"{}\"\nbroadcast_adapter = \"http\"\n",
            app.addr
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .env("PORT", port.to_string())
        .env("ANYCABLE_LOG_FORMAT", "json")
        .arg(format!("--config-path={}", file.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::task::spawn_blocking(move || wait_health(port))
        .await
        .unwrap();

    let url = format!("ws://127.0.0.1:{port}/cable");
    let (mut client, _) = connect_user(&url, "alice").await;
    client.join("1").await;
    let reader = tokio::spawn(async move { client.recv_until_close().await });

    let pid = child.id().unwrap();
    let started = Instant::now();
    send_signal(pid, libc::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(5));
    let (frames, close) = reader.await.unwrap();
    assert_eq!(frames[0]["reason"], "server_restart");
    assert_eq!(u16::from(close.unwrap().code), 1001);
    assert_eq!(app.app.disconnects().len(), 1, "{:?}", app.app.calls());

    let mut stderr = String::new();
    use tokio::io::AsyncReadExt;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["message"] == "SIGTERM received"),
        "{stderr}"
    );
    assert!(lines.iter().all(|l| l["level"].is_string()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn readme_configuration_table_is_generated_from_the_flags() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = ferrocable::config::markdown_reference();
    assert!(table.lines().count() > 25);
    assert!(
        readme.contains(&table),
        "README.md's configuration table is stale: run `cargo run --example config_table -- --write`"
    );
}
