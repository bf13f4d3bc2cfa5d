//! TLS on the listeners (`ssl_cert`, `ssl_key`), through the binary as a
//! deployment runs it: a certificate made for the test, real TLS handshakes
//! on 127.0.0.1 (WebSocket, health, HTTP broadcasts), a plaintext client
//! refused without harm, and bad files refused at start.

mod common;

use common::tls::{Certificate, TlsFront};
use common::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// One HTTP/1.1 request over TLS; returns (status, body).
async fn https(
    tls: &Arc<ClientConfig>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut stream = TlsConnector::from(tls.clone()).connect(name, tcp).await?;
    let request = http_request("localhost", method, path, headers, body);
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("the response timed out")?;
    Ok(http_response(&response))
}

/// Opens a wss:// socket as `user` and returns it after its welcome.
async fn connect_wss(tls: &Arc<ClientConfig>, addr: SocketAddr, user: &str) -> Client {
    let mut request = format!("wss://localhost:{}/cable", addr.port())
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert("cookie", format!("user={user}").parse().unwrap());
    headers.insert(
        "sec-websocket-protocol",
        "actioncable-v1-json".parse().unwrap(),
    );
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async_tls_with_config(
            request,
            tcp,
            None,
            Some(Connector::Rustls(tls.clone())),
        ),
    )
    .await
    .expect("the wss handshake timed out")
    .expect("the wss handshake failed");
    let mut client = Client { ws, protocol: None };
    let welcome = client.recv().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    client
}

/// What a plaintext HTTP request to `addr` gets back (nothing, when the
/// listener speaks TLS: the connection is closed or reset).
async fn plaintext_answer(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("the plaintext request was neither answered nor closed");
    String::from_utf8_lossy(&response).into_owned()
}

fn command(args: &[String], env: &[(&str, String)]) -> tokio::process::Command {
    let all = [&["--ignore-config-path".to_owned()], args].concat();
    binary_command(None, &all, env)
}

/// Starts the binary and waits until /health answers 200 over TLS.
async fn start_tls(
    tls: &Arc<ClientConfig>,
    args: &[String],
    env: &[(&str, String)],
    addr: SocketAddr,
) -> tokio::process::Child {
    let mut child = command(args, env).spawn().unwrap();
    wait_serving(
        &mut child,
        &format!("/health over TLS on {addr}"),
        || async {
            matches!(
                https(tls, addr, "GET", "/health", &[], "").await,
                Ok((200, _))
            )
        },
    )
    .await;
    child
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::test]
async fn wss_clients_health_and_broadcasts_over_tls_plaintext_refused() {
    let cert = Certificate::new("serve");
    let tls = cert.client();
    let app = AppServer::start().await;
    let port = reserve_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Certificate by variable, key by flag, as deployments mix them.
    let env = [
        ("ANYCABLE_SSL_CERT", path(&cert.cert())),
        ("ANYCABLE_RPC_HOST", app.addr.to_string()),
        ("ANYCABLE_BROADCAST_ADAPTER", "http".to_owned()),
        ("ANYCABLE_BROADCAST_KEY", "k3y".to_owned()),
    ];
    let args = vec![
        "--host=127.0.0.1".to_owned(),
        format!("--port={port}"),
        format!("--ssl_key={}", path(&cert.key())),
    ];
    let mut child = start_tls(&tls, &args, &env, addr).await;

    let mut client = connect_wss(&tls, addr, "alice").await;
    let identifier = client.join("1").await;
    let connect_url = app
        .app
        .calls()
        .into_iter()
        .find_map(|c| match c {
            Call::Connect { env, .. } => Some(env.url),
            _ => None,
        })
        .expect("a Connect call");
    assert!(connect_url.starts_with("https://"), "{connect_url}");

    // A plaintext client on the TLS port gets no WebSocket...
    let plain = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/cable")),
    )
    .await
    .expect("the plaintext handshake was neither refused nor answered");
    assert!(
        plain.is_err(),
        "a plaintext WebSocket opened on the TLS port"
    );
    // ...nor any HTTP answer.
    let answer = plaintext_answer(addr, "/health").await;
    assert!(
        !answer.contains("HTTP/1.1"),
        "plaintext HTTP answered: {answer}"
    );

    // The broadcast endpoint on the same port, over TLS, reaches the socket
    // opened before the plaintext attempts.
    let body = r#"{"stream":"chat_1","data":"{\"text\":\"hi\"}"}"#;
    let (status, _) = https(
        &tls,
        addr,
        "POST",
        "/_broadcast",
        &[("Authorization", "Bearer k3y")],
        body,
    )
    .await
    .unwrap();
    assert_eq!(status, 201);
    let message = client.recv().await;
    assert_eq!(message["identifier"], identifier, "{message}");
    assert_eq!(message["message"]["text"], "hi", "{message}");

    // A client that does not trust the certificate is refused; the server
    // keeps serving.
    let stranger = Certificate::new("stranger").client();
    assert!(
        https(&stranger, addr, "GET", "/health", &[], "")
            .await
            .is_err(),
        "a client trusting another certificate completed the handshake"
    );
    let _again = connect_wss(&tls, addr, "bob").await;

    send_signal(child.id().unwrap(), libc::SIGTERM);
    let status = tokio::time::timeout(WAIT * 2, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn metrics_and_broadcast_listeners_speak_tls_too() {
    let cert = Certificate::new("listeners");
    let tls = cert.client();
    let app = AppServer::start().await;
    let port = reserve_port();
    let metrics_port = reserve_port();
    let broadcast_port = reserve_port();
    let args = vec![
        "--host=127.0.0.1".to_owned(),
        format!("--port={port}"),
        format!("--rpc_host={}", app.addr),
        format!("--ssl_cert={}", path(&cert.cert())),
        format!("--ssl_key={}", path(&cert.key())),
        "--metrics_host=127.0.0.1".to_owned(),
        format!("--metrics_port={metrics_port}"),
        "--metrics_http=/metrics".to_owned(),
        "--broadcast_adapter=http".to_owned(),
        format!("--http_broadcast_port={broadcast_port}"),
    ];
    let mut child = start_tls(&tls, &args, &[], SocketAddr::from(([127, 0, 0, 1], port))).await;
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    wait_listening(metrics).await;
    let (status, body) = https(&tls, metrics, "GET", "/metrics", &[], "")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("ferrocable_"), "{body}");
    let answer = plaintext_answer(metrics, "/metrics").await;
    assert!(
        !answer.contains("HTTP/1.1"),
        "plaintext HTTP answered: {answer}"
    );

    let broadcasts = SocketAddr::from(([127, 0, 0, 1], broadcast_port));
    wait_listening(broadcasts).await;
    let mut client = connect_wss(&tls, SocketAddr::from(([127, 0, 0, 1], port)), "alice").await;
    client.join("1").await;
    let body = r#"{"stream":"chat_1","data":"{\"text\":\"hey\"}"}"#;
    let (status, _) = https(&tls, broadcasts, "POST", "/_broadcast", &[], body)
        .await
        .unwrap();
    assert_eq!(status, 201);
    assert_eq!(client.recv().await["message"]["text"], "hey");
    assert_eq!(
        http(broadcasts, "POST", "/_broadcast", &[], body).await.0,
        0
    );

    send_signal(child.id().unwrap(), libc::SIGTERM);
    let _ = tokio::time::timeout(WAIT * 2, child.wait()).await;
}

/// Exits with 2; returns stderr.
async fn refused(args: &[String]) -> String {
    let out = command(args, &[]).output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    err
}

#[tokio::test]
async fn bad_certificate_or_key_files_stop_it_at_start_naming_them() {
    let cert = Certificate::new("bad");
    let other = Certificate::new("other");
    let port = reserve_port();
    let base = |cert: &Path, key: &Path| {
        vec![
            "--host=127.0.0.1".to_owned(),
            format!("--port={port}"),
            format!("--ssl_cert={}", path(cert)),
            format!("--ssl_key={}", path(key)),
        ]
    };
    let missing = cert.dir.join("missing-key.pem");
    let err = refused(&base(&cert.cert(), &missing)).await;
    assert!(
        err.contains("ssl_key") && err.contains(&path(&missing)),
        "{err}"
    );

    let missing = cert.dir.join("missing-cert.pem");
    let err = refused(&base(&missing, &cert.key())).await;
    assert!(
        err.contains("ssl_cert") && err.contains(&path(&missing)),
        "{err}"
    );

    // A key file holding a certificate, a certificate file holding a key.
    let err = refused(&base(&cert.cert(), &cert.cert())).await;
    assert!(
        err.contains("ssl_key") && err.contains("private key"),
        "{err}"
    );
    let err = refused(&base(&cert.key(), &cert.key())).await;
    assert!(
        err.contains("ssl_cert") && err.contains("certificate"),
        "{err}"
    );

    // Another certificate's key.
    let err = refused(&base(&cert.cert(), &other.key())).await;
    assert!(err.contains("does not go with"), "{err}");

    // One without the other would leave the listeners plaintext.
    let err = refused(&[format!("--ssl_cert={}", path(&cert.cert()))]).await;
    assert!(err.contains("without ssl_key"), "{err}");
    let err = refused(&[format!("--ssl_key={}", path(&cert.key()))]).await;
    assert!(err.contains("without ssl_cert"), "{err}");
}

/// Starts the binary (plaintext listener) with `args` and `env`, waits for
/// /health, and returns what the first client gets first.
async fn first_frame(args: &[String], env: &[(&str, String)]) -> serde_json::Value {
    let (mut child, addr) = start_plain(args, env).await;
    let mut client = connect_raw(
        &format!("ws://{addr}/cable"),
        Some("user=alice"),
        Some("actioncable-v1-json"),
    )
    .await;
    let first = client.recv().await;
    send_signal(child.id().unwrap(), libc::SIGTERM);
    let _ = tokio::time::timeout(WAIT * 2, child.wait()).await;
    first
}

#[tokio::test]
async fn rpc_over_tls_with_a_root_ca_file_or_pem_or_without_verification() {
    let cert = Certificate::new("rpc");
    let app = AppServer::start().await;
    let front = TlsFront::start(&cert, app.addr).await;
    let host = format!("localhost:{}", front.addr.port());

    // The CA as a file (rpc_tls_root_ca alone turns TLS on, as in anycable-go).
    let welcome = first_frame(
        &[
            format!("--rpc_host={host}"),
            format!("--rpc_tls_root_ca={}", path(&cert.cert())),
        ],
        &[],
    )
    .await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let after_file = front.handshakes();
    assert!(after_file >= 1);

    // The CA as PEM content in the variable, TLS turned on by the flag.
    let pem = std::fs::read_to_string(cert.cert()).unwrap();
    let welcome = first_frame(
        &[format!("--rpc_host={host}"), "--rpc_enable_tls".to_owned()],
        &[("ANYCABLE_RPC_TLS_ROOT_CA", pem)],
    )
    .await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert!(front.handshakes() > after_file);

    // Not verified: a self-signed certificate is accepted.
    let welcome = first_frame(
        &[
            format!("--rpc_host={host}"),
            "--rpc_enable_tls".to_owned(),
            "--rpc_tls_verify=false".to_owned(),
        ],
        &[],
    )
    .await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
}

#[tokio::test]
async fn rpc_tls_refuses_an_untrusted_server_and_plaintext_does_not_reach_it() {
    let cert = Certificate::new("rpc-untrusted");
    let other = Certificate::new("rpc-other");
    let app = AppServer::start().await;
    let front = TlsFront::start(&cert, app.addr).await;
    let host = format!("localhost:{}", front.addr.port());
    // Checked against another CA: no handshake completes, no welcome.
    let first = first_frame(
        &[
            format!("--rpc_host={host}"),
            format!("--rpc_tls_root_ca={}", path(&other.cert())),
            "--rpc_request_timeout=1000".to_owned(),
        ],
        &[],
    )
    .await;
    assert_ne!(first["type"], "welcome", "{first}");
    // Plaintext gRPC to the TLS server.
    let first = first_frame(
        &[
            format!("--rpc_host={host}"),
            "--rpc_request_timeout=1000".to_owned(),
        ],
        &[],
    )
    .await;
    assert_ne!(first["type"], "welcome", "{first}");
    assert_eq!(front.handshakes(), 0);
    assert!(app.app.calls().is_empty());

    // A CA option that is neither a file nor PEM stops the start, naming it.
    let out = command(
        &[
            format!("--rpc_host={host}"),
            "--rpc_tls_root_ca=/no/such/ca.pem".to_owned(),
        ],
        &[],
    )
    .output()
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("rpc_tls_root_ca") && err.contains("/no/such/ca.pem"),
        "{err}"
    );
}

/// A CA, and certificates it signed for a server (localhost, 127.0.0.1) and a
/// client, as PEM files in a directory of the test's own.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa,
            KeyPair,
        };
        // Distinct names: a certificate whose subject is its issuer's name
        // would read as self-signed to OpenSSL (redis-server).
        let named = |names: Vec<String>, cn: &str| {
            let mut params = CertificateParams::new(names).unwrap();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, cn);
            params.distinguished_name = dn;
            params
        };
        let dir =
            std::env::temp_dir().join(format!("ferrocable-pki-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = named(Vec::new(), "ferrocable test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        for (who, names) in [
            (
                "server",
                vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            ),
            ("client", vec!["client".to_owned()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let cert = named(names, who).signed_by(&key, &ca).unwrap();
            std::fs::write(dir.join(format!("{who}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{who}.key")), key.serialize_pem()).unwrap();
        }
        Pki { dir }
    }

    fn file(&self, name: &str) -> String {
        path(&self.dir.join(name))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A redis-server serving TLS (client certificates required, signed by the
/// PKI's CA) and, for the test's own commands, plaintext on its `port`.
struct TlsRedis {
    tls_port: u16,
    plain: RedisServer,
}

impl TlsRedis {
    fn start(pki: &Pki) -> TlsRedis {
        let tls_port = reserve_port();
        let plain = RedisServer::start_with(&[
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            pki.file("server.pem"),
            "--tls-key-file".into(),
            pki.file("server.key"),
            "--tls-ca-cert-file".into(),
            pki.file("ca.pem"),
            "--tls-auth-clients".into(),
            "yes".into(),
        ]);
        TlsRedis { tls_port, plain }
    }

    fn url(&self) -> String {
        format!("rediss://localhost:{}", self.tls_port)
    }
}

/// The binary with a plaintext listener; returns it once /health answers.
async fn start_plain(
    args: &[String],
    env: &[(&str, String)],
) -> (tokio::process::Child, SocketAddr) {
    let port = reserve_port();
    let mut all = vec!["--host=127.0.0.1".to_owned(), format!("--port={port}")];
    all.extend_from_slice(args);
    let mut child = command(&all, env).spawn().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_serving(&mut child, &format!("/health on {addr}"), || {
        answers_200(addr, "/health")
    })
    .await;
    (child, addr)
}

/// Reads the child's log until a line contains `what`; returns the log so far.
async fn wait_log(child: &mut tokio::process::Child, what: &str) -> String {
    use tokio::io::AsyncBufReadExt;
    let stderr = child.stderr.as_mut().unwrap();
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut log = String::new();
    let found = tokio::time::timeout(WAIT * 2, async {
        while let Ok(Some(line)) = lines.next_line().await {
            log.push_str(&line);
            log.push('\n');
            if line.contains(what) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(found, Ok(true)), "no {what:?} in the log:\n{log}");
    log
}

fn redis_args(redis: &TlsRedis, extra: &[String]) -> Vec<String> {
    let mut args = vec![
        "--broadcast_adapter=redis".to_owned(),
        format!("--redis_url={}", redis.url()),
        "--rpc_host=127.0.0.1:1".to_owned(),
    ];
    args.extend_from_slice(extra);
    args
}

#[tokio::test]
async fn rediss_broadcasts_with_a_verified_server_and_a_client_certificate() {
    let pki = Pki::new("redis");
    let redis = TlsRedis::start(&pki);
    let app = AppServer::start().await;
    let client_cert = [
        format!("--redis_tls_client_cert_path={}", pki.file("client.pem")),
        format!("--redis_tls_client_key_path={}", pki.file("client.key")),
    ];
    let mut args = redis_args(
        &redis,
        &[
            "--redis_tls_verify".to_owned(),
            format!("--redis_tls_ca_cert_path={}", pki.file("ca.pem")),
        ],
    );
    args.extend_from_slice(&client_cert);
    args.retain(|a| !a.starts_with("--rpc_host"));
    args.push(format!("--rpc_host={}", app.addr));
    let (mut child, addr) = start_plain(&args, &[]).await;
    redis.plain.wait_subscribers("__anycable__", 1).await;
    let (mut client, _) = connect_user(&format!("ws://{addr}/cable"), "alice").await;
    let identifier = client.join("1").await;
    let payload = r#"{"stream":"chat_1","data":"{\"text\":\"over tls\"}"}"#;
    assert_eq!(redis.plain.publish("__anycable__", payload).await, 1);
    let message = client.recv().await;
    assert_eq!(message["identifier"], identifier, "{message}");
    assert_eq!(message["message"]["text"], "over tls", "{message}");
    send_signal(child.id().unwrap(), libc::SIGTERM);
    let log = wait_log(&mut child, "SIGTERM received").await;
    assert!(!log.contains("not checked"), "{log}");
}

#[tokio::test]
async fn rediss_without_verification_warns_and_subscribes() {
    let pki = Pki::new("redis-unverified");
    let redis = TlsRedis::start(&pki);
    let args = redis_args(
        &redis,
        &[
            format!("--redis_tls_client_cert_path={}", pki.file("client.pem")),
            format!("--redis_tls_client_key_path={}", pki.file("client.key")),
        ],
    );
    let (mut child, _) = start_plain(&args, &[]).await;
    redis.plain.wait_subscribers("__anycable__", 1).await;
    send_signal(child.id().unwrap(), libc::SIGTERM);
    wait_log(&mut child, "redis_tls_verify is off").await;
}

#[tokio::test]
async fn rediss_refuses_an_unknown_server_and_needs_the_client_certificate() {
    let pki = Pki::new("redis-refused");
    let redis = TlsRedis::start(&pki);
    // Checked against the system's CAs, which do not know the test's CA.
    let args = redis_args(
        &redis,
        &[
            "--redis_tls_verify".to_owned(),
            format!("--redis_tls_client_cert_path={}", pki.file("client.pem")),
            format!("--redis_tls_client_key_path={}", pki.file("client.key")),
        ],
    );
    let (mut child, _) = start_plain(&args, &[]).await;
    wait_log(&mut child, "cannot connect to Redis").await;
    // Verified, but no client certificate: the server refuses.
    let args = redis_args(
        &redis,
        &[
            "--redis_tls_verify".to_owned(),
            format!("--redis_tls_ca_cert_path={}", pki.file("ca.pem")),
        ],
    );
    let (mut second, _) = start_plain(&args, &[]).await;
    let log = wait_log(&mut second, "retrying").await;
    assert!(!log.contains("subscribed to Redis"), "{log}");
    assert_eq!(subscribers(&redis.plain).await, 0);
    drop(child);

    // A client key that cannot be read stops the start, naming it.
    let missing = pki.dir.join("missing.key");
    let out = command(
        &redis_args(
            &redis,
            &[
                format!("--redis_tls_client_cert_path={}", pki.file("client.pem")),
                format!("--redis_tls_client_key_path={}", path(&missing)),
            ],
        ),
        &[],
    )
    .output()
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("redis_tls_client_key_path") && err.contains(&path(&missing)),
        "{err}"
    );
}

/// How many subscribers `__anycable__` has now.
async fn subscribers(redis: &RedisServer) -> i64 {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("__anycable__")
        .query_async(&mut conn)
        .await
        .unwrap();
    counts[0].1
}
