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
//! - [`controller`]: the contract with the application (one call, one reply);
//!   [`rpc`] maps it to gRPC, with the client the binary uses and the server
//!   `rake ferrocable:rpc` runs; [`call_queue`] hands calls to worker threads
//!   of this process (the gem), [`embedded`] is the gem's stateful controller
//!   over it.
//! - [`fastlane`]: what the server answers without the application (JWT
//!   identification, signed and Turbo streams, whispers).
//! - [`broadcast`]: publications end to end (decoding, Redis pub/sub, the
//!   HTTP endpoint, routing, the key), reaching the node through its `Publish` trait.
//! - [`server`]: HTTP listener, WebSocket upgrade, health, metrics;
//!   [`handshake`] checks the upgrade request, [`origin`] decides which
//!   pages may open a socket; [`tls`] loads certificates and keys for it.
//! - [`config`], [`metrics`], [`logging`]; [`client_log`] keeps what clients
//!   send from flooding or forging the log.

pub mod broadcast;
pub mod broker;
pub mod call_queue;
pub mod client_log;
pub mod config;
pub mod controller;
pub mod disconnect_queue;
pub mod embedded;
pub mod fastlane;
pub mod handshake;
pub mod hub;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod origin;
pub mod outgoing;
pub mod presence;
pub mod protocol;
pub mod rpc;
pub mod server;
pub mod session;
pub mod tls;
pub mod websocket;
pub mod write_budget;
