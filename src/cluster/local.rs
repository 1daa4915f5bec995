//! A whole cluster on 127.0.0.1 in one process, for tests, benchmarks and
//! examples: every node's listener is bound first (ports chosen by the OS),
//! so every node's configuration can name all the others.

use std::sync::Arc;

use crate::cluster::config::{ClusterConfig, PeerAddress};
use crate::error::{Error, Result};
use crate::transports::TcpNetworkManager;

/// Binds one listener per id on `127.0.0.1:0` and returns each node's
/// configuration (from `base`, with its id, port, the full server list and
/// `psk`) and its TCP network manager (not started yet).
pub fn bind_local_tcp_cluster(
    ids: &[&str],
    psk: &str,
    base: &ClusterConfig,
) -> Result<Vec<(ClusterConfig, Arc<TcpNetworkManager>)>> {
    let listeners = ids
        .iter()
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io("binding 127.0.0.1:0", e))?;
    let servers = ids
        .iter()
        .zip(&listeners)
        .map(|(id, l)| {
            let addr = l
                .local_addr()
                .map_err(|e| Error::io("reading a bound address", e))?;
            Ok(PeerAddress {
                id: id.to_string(),
                address: addr.to_string(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    ids.iter()
        .zip(listeners)
        .zip(&servers)
        .map(|((id, listener), me)| {
            let config = ClusterConfig {
                server_id: id.to_string(),
                host: "127.0.0.1".into(),
                port: me
                    .address
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0),
                servers: servers.clone(),
                psk: Some(psk.to_string()),
                ..base.clone()
            };
            let net = TcpNetworkManager::with_listener(config.tcp_config()?, listener)
                .map_err(|e| Error::invalid("TCP config", e.to_string()))?;
            Ok((config, Arc::new(net)))
        })
        .collect()
}
