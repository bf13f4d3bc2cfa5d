//! The standalone `ferrocable` binary: a drop-in for anycable-go. Parses the
//! configuration, serves until SIGINT/SIGTERM, shuts down gracefully.

use ferrocable::config::{Config, Files, RpcTransport};
use ferrocable::controller::Controller;
use ferrocable::rpc::{HttpRpcController, RpcController};
use ferrocable::server::Server;
use std::sync::Arc;
use tracing::{error, info};

fn main() {
    // Reads ./anycable.toml by default, as anycable-go does.
    let config = match Config::load_from(std::env::args_os(), Files::Default) {
        Ok(c) => c,
        Err(e) => e.exit(), // usage errors exit with 2, --help / --version with 0
    };
    if config.print_config {
        print!("{}", config.to_toml());
        return;
    }
    ferrocable::logging::init(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(run(Arc::new(config)));
    std::process::exit(code);
}

async fn run(config: Arc<Config>) -> i32 {
    let metrics = Arc::new(config.metrics());
    let controller: Result<Arc<dyn Controller>, String> = match config.rpc_transport() {
        RpcTransport::Grpc => {
            RpcController::from_config(&config, metrics.clone()).map(|c| Arc::new(c) as _)
        }
        RpcTransport::Http => HttpRpcController::new(
            &config.rpc_host,
            config.effective_http_rpc_secret().as_deref(),
            config.rpc_concurrency,
            config.rpc_call_timeout(),
            config.rpc_client_tls().as_ref(),
            metrics.clone(),
        )
        .map(|c| Arc::new(c) as _),
    };
    let controller = match controller {
        Ok(c) => c,
        Err(e) => {
            error!("{e}");
            return 2;
        }
    };
    let listener = match ferrocable::server::bind(&config.host, config.port, false).await {
        Ok(l) => l,
        Err(e) => {
            error!(host = %config.host, port = config.port, error = %e, "cannot listen");
            return 1;
        }
    };
    info!(
        version = env!("CARGO_PKG_VERSION"),
        rpc_host = %config.rpc_host,
        rpc_impl = ?config.rpc_transport(),
        broadcast_adapter = ?config.broadcast_adapter,
        "ferrocable starting"
    );
    let server = match Server::start(config.clone(), controller, metrics) {
        Ok(s) => s,
        Err(e) => {
            error!("refusing to start: {e}");
            return 2;
        }
    };
    server.serve(listener, first_shutdown_signal()).await;
    0
}

/// A second SIGINT/SIGTERM during a graceful shutdown exits at once.
fn exit_on_second_signal() {
    tokio::spawn(async {
        shutdown_signal().await;
        tracing::warn!("second signal: exiting without waiting");
        std::process::exit(1);
    });
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
}

async fn first_shutdown_signal() {
    shutdown_signal().await;
    exit_on_second_signal();
}
