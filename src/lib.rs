//! Ferrocable's core: an Action Cable server with AnyCable's RPC contract
//! and broadcast formats.
//!
//! - [`protocol`]: the client protocol (decode client frames, encode replies).
//! - [`session`]: one client connection (the reader: commands, replies,
//!   subscriptions); [`outgoing`]: its queue to the socket, the writer
//!   and closing; [`write_budget`] bounds the bytes waiting for it.
//! - [`hub`]: stream → subscribers, and the fan-out of broadcasts.
//! - [`node`]: all sessions, identifiers, publications, pings, shutdown;
//!   [`disconnect_queue`] paces the Disconnect calls.
//! - [`controller`]: the contract with the application; [`rpc`] speaks it over gRPC,
//!   [`embedded`] hands it to worker threads of this process (the gem).
//! - [`rpc_server`]: `anycable.RPC` served from this process's workers (`rake ferrocable:rpc`).
//! - [`broadcast`]: publications end to end (decoding, Redis pub/sub, the
//!   HTTP endpoint, routing), reaching the node through its `Publish` trait.
//! - [`server`]: HTTP listener, WebSocket upgrade, health, metrics;
//!   [`handshake`] checks the upgrade request, [`origin`] decides which
//!   pages may open a socket.
//! - [`config`], [`metrics`], [`logging`]; [`client_log`] keeps what clients
//!   send from flooding or forging the log.

pub mod broadcast;
pub mod client_log;
pub mod config;
pub mod controller;
pub mod disconnect_queue;
pub mod embedded;
pub mod handshake;
pub mod hub;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod origin;
pub mod outgoing;
pub mod protocol;
pub mod rpc;
pub mod rpc_server;
pub mod server;
pub mod session;
pub mod write_budget;
