//! A whole cluster on 127.0.0.1 in one process, for tests, benchmarks and
//! examples: every node's listener is bound first (ports chosen by the OS),
//! so every node's configuration can name all the others.

use std::net::SocketAddr;
#[cfg(feature = "quic")]
use std::path::Path;
use std::sync::Arc;

use crate::cluster::config::{ClusterConfig, PeerAddress};
use crate::error::{Error, Result};
#[cfg(feature = "quic")]
use crate::transports::QuicNetworkManager;
#[cfg(feature = "tcp")]
use crate::transports::TcpNetworkManager;

/// Every node's entry of the server list, from its bound address.
fn servers(ids: &[&str], addrs: &[SocketAddr]) -> Vec<PeerAddress> {
    ids.iter()
        .zip(addrs)
        .map(|(id, addr)| PeerAddress {
            id: id.to_string(),
            address: addr.to_string(),
        })
        .collect()
}

/// Node `id`'s configuration: `base` with its id, port and the server list.
fn node_config(
    id: &str,
    addr: SocketAddr,
    servers: &[PeerAddress],
    base: &ClusterConfig,
) -> ClusterConfig {
    ClusterConfig {
        server_id: id.to_string(),
        host: "127.0.0.1".into(),
        port: addr.port(),
        servers: servers.to_vec(),
        ..base.clone()
    }
}

/// Binds one listener per id on `127.0.0.1:0` and returns each node's
/// configuration (from `base`, with its id, port, the full server list and
/// `psk`) and its TCP network manager (not started yet).
#[cfg(feature = "tcp")]
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
    let addrs = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io("reading a bound address", e))?;
    let servers = servers(ids, &addrs);
    ids.iter()
        .zip(listeners)
        .zip(addrs)
        .map(|((id, listener), addr)| {
            let config = ClusterConfig {
                psk: Some(psk.to_string()),
                transport: crate::cluster::config::Transport::Tcp,
                ..node_config(id, addr, &servers, base)
            };
            let net = TcpNetworkManager::with_listener(config.tcp_config()?, listener)
                .map_err(|e| Error::invalid("TCP config", e.to_string()))?;
            Ok((config, Arc::new(net)))
        })
        .collect()
}

/// Binds one UDP socket per id on `127.0.0.1:0`, creates a development CA
/// and a certificate per node in `cert_dir` (`ca.pem`, `<id>.pem`,
/// `<id>.key`), and returns each node's configuration (from `base`, with
/// its id, port, the full server list, transport QUIC and its TLS files)
/// and its QUIC network manager (not started yet).
#[cfg(feature = "quic")]
pub fn bind_local_quic_cluster(
    ids: &[&str],
    cert_dir: &Path,
    base: &ClusterConfig,
) -> Result<Vec<(ClusterConfig, Arc<QuicNetworkManager>)>> {
    let certs = crate::transports::tls::generate_dev_certs(ids)
        .map_err(|e| Error::invalid("tls", e.to_string()))?;
    certs
        .write_to(cert_dir)
        .map_err(|e| Error::invalid("tls", e.to_string()))?;
    let sockets = ids
        .iter()
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io("binding 127.0.0.1:0 (UDP)", e))?;
    let addrs = sockets
        .iter()
        .map(|s| s.local_addr())
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io("reading a bound address", e))?;
    let servers = servers(ids, &addrs);
    ids.iter()
        .zip(sockets)
        .zip(addrs)
        .map(|((id, socket), addr)| {
            let config = ClusterConfig {
                transport: crate::cluster::config::Transport::Quic,
                tls: Some(crate::cluster::config::TlsFiles {
                    cert: cert_dir.join(format!("{id}.pem")),
                    key: cert_dir.join(format!("{id}.key")),
                    ca: Some(cert_dir.join("ca.pem")),
                    pinned: Vec::new(),
                }),
                ..node_config(id, addr, &servers, base)
            };
            let net = QuicNetworkManager::with_socket(config.quic_config()?, socket)
                .map_err(|e| Error::invalid("QUIC config", e.to_string()))?;
            Ok((config, Arc::new(net)))
        })
        .collect()
}
