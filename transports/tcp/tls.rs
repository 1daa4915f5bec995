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

use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::network::{PeerId, client_id, client_member, is_client_id};
use crate::transports::tls::{self, CLIENT_ALPN, TlsConfig, TlsError};

/// A node's TLS client and server ends.
#[derive(Clone)]
pub(super) struct TcpTls {
    connector: TlsConnector,
    acceptor: TlsAcceptor,
    /// Ids a member connection may present (the configured peers).
    peer_ids: Vec<PeerId>,
    /// Ids a client link may present (every member, this node included).
    member_ids: Vec<PeerId>,
}

/// A TLS stream over TCP, either end.
pub(super) type Stream = tokio_rustls::TlsStream<TcpStream>;

impl TcpTls {
    /// The TLS ends of node `server_id` (a client link's id presents its
    /// member's certificate under the client ALPN) talking to `peer_ids`.
    pub(super) fn new(
        config: &TlsConfig,
        server_id: &str,
        peer_ids: Vec<PeerId>,
    ) -> Result<Self, TlsError> {
        let mut client = config.client_config()?;
        if is_client_id(server_id) {
            client.alpn_protocols = vec![CLIENT_ALPN.to_vec()];
        }
        let mut member_ids = peer_ids.clone();
        member_ids.push(client_member(server_id).unwrap_or(server_id).to_string());
        let server = config.server_config(&member_ids)?;
        Ok(TcpTls {
            connector: TlsConnector::from(Arc::new(client)),
            acceptor: TlsAcceptor::from(Arc::new(server)),
            peer_ids,
            member_ids,
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

    /// Server side: the TLS handshake, then the peer's id from its
    /// certificate.
    pub(super) async fn accept(&self, stream: TcpStream) -> Result<(Stream, PeerId), String> {
        let tls = self
            .acceptor
            .accept(stream)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        let (_, session) = tls.get_ref();
        let client = session.alpn_protocol() == Some(CLIENT_ALPN);
        let candidates = if client {
            &self.member_ids
        } else {
            &self.peer_ids
        };
        let peer = session
            .peer_certificates()
            .and_then(<[CertificateDer<'_>]>::first)
            .and_then(|cert| tls::identify(cert, candidates).cloned())
            .ok_or_else(|| "no configured peer's certificate".to_string())?;
        let peer = if client { client_id(&peer) } else { peer };
        Ok((tokio_rustls::TlsStream::Server(tls), peer))
    }
}
