//! `ferrocable-bench`: a load generator for Action Cable servers, with the
//! `BenchmarkChannel` semantics of websocket-shootout and AnyCable's
//! websocket-bench: clients subscribe to `BenchmarkChannel` (stream `all`);
//! `echo` transmits its data back; `broadcast` broadcasts its data to `all`
//! and transmits it back to the sender as `broadcastResult`.
//!
//! Modes: `connect` (avalanche), `idle` (server memory per connection),
//! `broadcast` (round trip at the sender and delivery to everyone), `perform`
//! (echo round trips per second), `suite` (connect + idle + broadcast on one
//! set of connections, as `bench/compare` runs it) and `plot` (the PNG of a
//! results file). Progress goes to stderr; `--json` prints results as JSON.

mod client;
mod floor;
mod plot;
mod report;
mod soak;

use clap::{Args, Parser, Subcommand};
use client::{Fleet, FleetOptions};
use report::{BroadcastReport, ConnectReport, IdleReport, PerformReport, SuiteReport};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "ferrocable-bench",
    about = "Action Cable load generator (BenchmarkChannel)",
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// N clients connect at concurrency K: time to welcome and to confirmation
    Connect(ConnectArgs),
    /// Hold N connections; the server's resident memory per connection
    Idle(IdleArgs),
    /// Broadcast round trips at the sender and delivery across all clients
    Broadcast(BroadcastArgs),
    /// Echo (perform -> transmit) round trips per second
    Perform(PerformArgs),
    /// connect + idle + broadcast on one set of connections
    Suite(SuiteArgs),
    /// Draw the PNG for a bench/compare results file
    Plot(plot::PlotArgs),
    /// This machine's floor: one writer, the same frame to N loopback sockets
    Floor(floor::FloorArgs),
    /// Ferrocable's fan-out measured as the floor is (server CPU per delivery)
    Fanout(floor::FanoutArgs),
    /// (internal) reads and counts frames for `floor` and `fanout`
    #[command(hide = true)]
    Drain(floor::DrainArgs),
    /// Endurance: users coming and going for a while; fails unless the
    /// server's memory, fds, sessions, streams and tasks return to baseline
    Soak(soak::SoakArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// WebSocket URL of the server
    #[arg(long, default_value = "ws://127.0.0.1:8080/cable")]
    url: String,
    /// Number of clients
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Connections opened at once
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Local source addresses used (127.0.0.2, .3, ...), so many connections
    /// do not run out of ephemeral ports
    #[arg(long, default_value_t = 16)]
    source_ips: u8,
    /// Print the result as JSON on stdout
    #[arg(long)]
    json: bool,
    /// Channel identifier the clients subscribe with (e.g. a signed
    /// `{"channel":"$pubsub","signed_stream_name":"..."}` for the fast lane)
    #[arg(long, default_value = r#"{"channel":"BenchmarkChannel"}"#)]
    identifier: String,
    /// A file of channel identifiers, one a line, every client subscribing
    /// to all of them at once (a page with many streams); instead of
    /// --identifier
    #[arg(long)]
    identifiers_file: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct ConnectArgs {
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct IdleArgs {
    #[command(flatten)]
    common: Common,
    /// PID of the server process whose memory is measured
    #[arg(long)]
    pid: u32,
    /// Seconds to let the server settle before reading its memory
    #[arg(long, default_value_t = 2)]
    settle: u64,
}

#[derive(Args, Clone)]
struct BroadcastOptions {
    /// Concurrent senders per sample
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Samples (rounds of concurrent broadcasts)
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// Bytes of padding added to each broadcast payload
    #[arg(long, default_value_t = 0)]
    padding: usize,
    /// Seconds to wait for stragglers after the last sample
    #[arg(long, default_value_t = 10)]
    drain: u64,
}

#[derive(Args)]
struct BroadcastArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    options: BroadcastOptions,
}

#[derive(Args)]
struct PerformArgs {
    #[command(flatten)]
    common: Common,
    /// Seconds of load
    #[arg(long, default_value_t = 10)]
    duration: u64,
}

#[derive(Args)]
struct SuiteArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    options: BroadcastOptions,
    /// PID of the server process whose memory is measured (idle phase)
    #[arg(long)]
    pid: Option<u32>,
    /// Label of the target, copied into the result
    #[arg(long, default_value = "")]
    target: String,
}

fn fleet_options(c: &Common) -> FleetOptions {
    FleetOptions {
        url: c.url.clone(),
        clients: c.clients,
        concurrency: c.concurrency,
        source_ips: c.source_ips.max(1),
        identifiers: match &c.identifiers_file {
            Some(path) => std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("--identifiers-file {}: {e}", path.display()))
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
            None => vec![c.identifier.clone()],
        },
    }
}

pub(crate) fn emit<T: serde::Serialize + std::fmt::Display>(json: bool, value: &T) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("results serialize")
        );
    } else {
        println!("{value}");
    }
}

fn main() {
    let cli = Cli::parse();
    // Floor, fan-out and drain measure threads of their own: no runtime here.
    match &cli.command {
        Command::Floor(a) => return floor::floor(a),
        Command::Fanout(a) => return floor::fanout(a),
        Command::Drain(a) => return floor::drain(a),
        _ => {}
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(cli));
}

async fn run(cli: Cli) {
    match cli.command {
        Command::Connect(a) => {
            let (_fleet, report) = Fleet::connect(fleet_options(&a.common)).await;
            emit(a.common.json, &report);
        }
        Command::Idle(a) => {
            let before = report::rss_kib(a.pid);
            let (fleet, _) = Fleet::connect(fleet_options(&a.common)).await;
            tokio::time::sleep(Duration::from_secs(a.settle)).await;
            let report = IdleReport::new(before, report::rss_kib(a.pid), fleet.connected());
            emit(a.common.json, &report);
        }
        Command::Broadcast(a) => {
            let (fleet, _) = Fleet::connect(fleet_options(&a.common)).await;
            let report = fleet.broadcast(&a.options).await;
            emit(a.common.json, &report);
        }
        Command::Perform(a) => {
            let (fleet, _) = Fleet::connect(fleet_options(&a.common)).await;
            let report: PerformReport = fleet.perform(Duration::from_secs(a.duration)).await;
            emit(a.common.json, &report);
        }
        Command::Suite(a) => {
            let before = a.pid.map(report::rss_kib);
            let (fleet, connect): (Fleet, ConnectReport) =
                Fleet::connect(fleet_options(&a.common)).await;
            let idle = match (a.pid, before) {
                (Some(pid), Some(before)) => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    Some(IdleReport::new(
                        before,
                        report::rss_kib(pid),
                        fleet.connected(),
                    ))
                }
                _ => None,
            };
            let broadcast: BroadcastReport = fleet.broadcast(&a.options).await;
            let report = SuiteReport {
                target: a.target,
                clients: a.common.clients,
                connect,
                idle,
                broadcast,
            };
            emit(a.common.json, &report);
        }
        Command::Plot(a) => plot::draw(&a),
        Command::Floor(_) | Command::Fanout(_) | Command::Drain(_) => unreachable!(),
        Command::Soak(a) => {
            if !soak::run(a).await {
                std::process::exit(1);
            }
        }
    }
}
