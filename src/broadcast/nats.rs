//! The NATS broadcast subscriber (`broadcast_adapter=nats`): every message
//! on the subject `nats_channel` is a publication payload, as anycable-go
//! reads it and AnyCable's Ruby `nats` adapter publishes it. Every node
//! subscribes (no queue group), so each gets every broadcast.
//!
//! NATS going away is normal: the client logs it, reconnects without limit
//! (anycable-go stops after `max_reconnect_attempts`; a node here keeps
//! trying, as its Redis subscriber does) and subscribes again when a server
//! is back; clients are served meanwhile. Only invalid server URLs stop it.

use super::{Publish, Reach};
use async_nats::{ConnectOptions, Event, ServerAddr};
use futures_util::StreamExt;
use std::future::Future;
use std::sync::Arc;
use tracing::{error, info, warn};

/// Where to subscribe, from the configuration.
#[derive(Debug, Clone)]
pub struct Options {
    /// URLs, comma separated (`nats_servers`).
    pub servers: String,
    /// The subject (`nats_channel`).
    pub subject: String,
    /// Connect in the order given (`nats_dont_randomize_servers`).
    pub in_order: bool,
}

/// The server list: URLs (`nats://host:4222`, `tls://…`) or `host:port`,
/// comma separated.
pub fn parse_servers(servers: &str) -> Result<Vec<ServerAddr>, String> {
    let addrs = servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ServerAddr>()
                .map_err(|e| format!("{:?}: {e}", without_credentials(s)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err("no server given".into());
    }
    Ok(addrs)
}

/// A server URL as it may be logged: `user:password@` taken out.
fn without_credentials(server: &str) -> String {
    match (server.find("://"), server.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &server[..scheme + 3], &server[at + 1..])
        }
        (None, Some(at)) => server[at + 1..].to_owned(),
        _ => server.to_owned(),
    }
}

/// Runs until `stop` resolves.
pub async fn run(to: Arc<dyn Publish>, options: Options, stop: impl Future<Output = ()>) {
    tokio::select! {
        _ = stop => {}
        _ = subscribe(&*to, options) => {}
    }
}

async fn subscribe(to: &dyn Publish, options: Options) {
    let servers = match parse_servers(&options.servers) {
        Ok(servers) => servers,
        Err(e) => {
            error!(error = %e, "invalid nats_servers; NATS broadcasts are disabled");
            return;
        }
    };
    let mut connect = ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .event_callback(|event| async move {
            match event {
                Event::Connected => info!("connected to NATS"),
                Event::Disconnected => warn!("NATS connection lost; reconnecting"),
                Event::ClientError(e) => warn!(error = %e, "NATS client error"),
                Event::ServerError(e) => warn!(error = %e, "NATS server error"),
                other => info!(event = %other, "NATS"),
            }
        });
    if options.in_order {
        connect = connect.retain_servers_order();
    }
    // With retry_on_initial_connect this returns at once; the client
    // connects (and subscribes) when a server answers.
    let client = match connect.connect(servers).await {
        Ok(client) => client,
        Err(e) => {
            error!(error = %e, "cannot start the NATS client; NATS broadcasts are disabled");
            return;
        }
    };
    let mut messages = match client.subscribe(options.subject.clone()).await {
        Ok(messages) => messages,
        Err(e) => {
            error!(error = %e, subject = %options.subject, "NATS subscribe refused; NATS broadcasts are disabled");
            return;
        }
    };
    let hosts: Vec<String> = options
        .servers
        .split(',')
        .map(|s| without_credentials(s.trim()))
        .collect();
    info!(subject = %options.subject, servers = %hosts.join(","), "subscribed to NATS broadcasts");
    let mut keys = super::FanoutKeys::default();
    while let Some(message) = messages.next().await {
        let key = keys.key(&message.payload);
        let _ = to.publish_payload_from(
            &message.payload,
            "nats",
            Reach::EveryNode { key: Some(&key) },
        );
    }
    warn!("NATS subscription ended");
}

#[cfg(test)]
mod tests {
    use super::{parse_servers, without_credentials};

    #[test]
    fn credentials_are_never_logged() {
        assert_eq!(
            without_credentials("nats://user:s3cret@nats.internal:4222"),
            "nats://nats.internal:4222"
        );
        assert_eq!(without_credentials("user:s3cret@host:4222"), "host:4222");
        assert_eq!(without_credentials("nats://host:4222"), "nats://host:4222");
        let err = parse_servers("nats://user:s3cret@host:notaport").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn server_lists_as_anycable_go_takes_them() {
        assert_eq!(parse_servers("nats://127.0.0.1:4222").unwrap().len(), 1);
        assert_eq!(
            parse_servers("nats://a:4222, nats://b:4223,c:4224")
                .unwrap()
                .len(),
            3
        );
        assert!(parse_servers("").is_err());
        assert!(parse_servers("nats://a:notaport").is_err());
    }
}
