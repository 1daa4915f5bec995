//! A whole cluster on 127.0.0.1 in one process, for tests, benchmarks and
//! examples: every node's listener is bound first (ports chosen by the OS),
//! so every node's configuration can name all the others.

use std::net::SocketAddr;
#[cfg(feature = "tls")]
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
    bind_tcp(ids, base, |config| ClusterConfig {
        psk: Some(psk.to_string()),
        transport: crate::cluster::config::Transport::Tcp,
        ..config
    })
}

/// As [`bind_local_tcp_cluster`], with mutual TLS instead of a pre-shared
/// key: creates a development CA and a certificate per node in `cert_dir`
/// (as [`bind_local_quic_cluster`] does) and configures transport
/// [`Transport::TcpTls`](crate::cluster::Transport::TcpTls).
#[cfg(feature = "tcp-tls")]
pub fn bind_local_tcp_tls_cluster(
    ids: &[&str],
    cert_dir: &Path,
    base: &ClusterConfig,
) -> Result<Vec<(ClusterConfig, Arc<TcpNetworkManager>)>> {
    write_dev_certs(ids, cert_dir)?;
    bind_tcp(ids, base, |config| ClusterConfig {
        transport: crate::cluster::config::Transport::TcpTls,
        tls: Some(dev_tls_files(cert_dir, &config.server_id)),
        ..config
    })
}

#[cfg(feature = "tcp")]
fn bind_tcp(
    ids: &[&str],
    base: &ClusterConfig,
    configure: impl Fn(ClusterConfig) -> ClusterConfig,
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
            let config = configure(node_config(id, addr, &servers, base));
            let net = TcpNetworkManager::with_listener(config.tcp_config()?, listener)
                .map_err(|e| Error::invalid("TCP config", e.to_string()))?;
            Ok((config, Arc::new(net)))
        })
        .collect()
}

/// A development CA and a certificate per node, written to `cert_dir`
/// (`ca.pem`, `<id>.pem`, `<id>.key`).
#[cfg(feature = "tls")]
fn write_dev_certs(ids: &[&str], cert_dir: &Path) -> Result<()> {
    crate::transports::tls::generate_dev_certs(ids)
        .and_then(|certs| certs.write_to(cert_dir).map(|_| ()))
        .map_err(|e| Error::invalid("tls", e.to_string()))
}

/// Node `id`'s files of [`write_dev_certs`].
#[cfg(feature = "tls")]
fn dev_tls_files(cert_dir: &Path, id: &str) -> crate::cluster::config::TlsFiles {
    crate::cluster::config::TlsFiles {
        cert: cert_dir.join(format!("{id}.pem")),
        key: cert_dir.join(format!("{id}.key")),
        ca: Some(cert_dir.join("ca.pem")),
        pinned: Vec::new(),
    }
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
    write_dev_certs(ids, cert_dir)?;
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
                tls: Some(dev_tls_files(cert_dir, id)),
                ..node_config(id, addr, &servers, base)
            };
            let net = QuicNetworkManager::with_socket(config.quic_config()?, socket)
                .map_err(|e| Error::invalid("QUIC config", e.to_string()))?;
            Ok((config, Arc::new(net)))
        })
        .collect()
}
