//! Mutual TLS 1.3 over the TCP transport (feature `tcp-tls`), with the
//! certificates and trust settings of the QUIC transport
//! ([`crate::transports::tls`]).
//!
//! Every connection is encrypted and integrity-protected, and both ends are
//! authenticated by certificate: the server accepts only certificates valid
//! for one of its configured peers (or, under the client ALPN, for any
//! member: a client link, served as `client~<member>`), and the client checks
//! that the server presents a certificate for the id it dialled. A node with
//! an untrusted certificate fails the handshake and never gets a frame read.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::network::PeerId;
use crate::transports::tls::{self, TlsConfig, TlsError, TlsPeers};

/// A node's TLS client and server ends.
#[derive(Clone)]
pub(super) struct TcpTls {
    connector: TlsConnector,
    acceptor: TlsAcceptor,
    peers: TlsPeers,
}

/// A TLS stream over TCP, either end.
pub(super) type Stream = tokio_rustls::TlsStream<TcpStream>;

impl TcpTls {
    /// The TLS ends of node `server_id` talking to `peer_ids` (see
    /// [`tls::node_tls`]).
    pub(super) fn new(
        config: &TlsConfig,
        server_id: &str,
        peer_ids: Vec<PeerId>,
    ) -> Result<Self, TlsError> {
        let (client, server, peers) = tls::node_tls(config, server_id, peer_ids)?;
        Ok(TcpTls {
            connector: TlsConnector::from(Arc::new(client)),
            acceptor: TlsAcceptor::from(Arc::new(server)),
            peers,
        })
    }

    /// Client side: the TLS handshake with `peer`, whose certificate must
    /// be valid for its id.
    pub(super) async fn connect(&self, stream: TcpStream, peer: &str) -> Result<Stream, String> {
        let name = tls::server_name(peer).map_err(|e| e.to_string())?;
        let tls = self
            .connector
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        Ok(tokio_rustls::TlsStream::Client(tls))
    }

    /// Server side: the TLS handshake, then the id the peer is served
    /// under, from its certificate and ALPN.
    pub(super) async fn accept(&self, stream: TcpStream) -> Result<(Stream, PeerId), String> {
        let tls = self
            .acceptor
            .accept(stream)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        let (_, session) = tls.get_ref();
        let peer = self
            .peers
            .peer_of(session.alpn_protocol(), session.peer_certificates())
            .ok_or_else(|| "no configured peer's certificate".to_string())?;
        Ok((tokio_rustls::TlsStream::Server(tls), peer))
    }
}
