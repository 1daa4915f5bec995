//! A node's two TLS ends and the name it serves a connection under, for
//! every transport that speaks mutual TLS (QUIC, TCP with feature
//! `tcp-tls`), so that the rules live in one place:
//!
//! - a member connects under the member ALPN with a certificate valid for
//!   one of the node's configured peers, and is served under that id;
//! - a client link (`client~<member>`, see
//!   [`client_id`](crate::network::client_id)) connects under the client
//!   ALPN ([`CLIENT_ALPN`]) with any member's certificate, this node's
//!   included, and is served as `client~<member>` (never a member).

use rustls_pki_types::CertificateDer;

use super::{CLIENT_ALPN, TlsConfig, TlsError, identify};
use crate::network::{PeerId, client_id, client_member, is_client_id};

/// The member whose certificate node `server_id` presents (a client link
/// presents its member's).
pub(crate) fn identity_of(server_id: &str) -> &str {
    client_member(server_id).unwrap_or(server_id)
}

/// Who may connect to a node over TLS, and under which name it is served.
#[derive(Debug, Clone)]
pub(crate) struct TlsPeers {
    /// Ids a member connection may present (the configured peers).
    peer_ids: Vec<PeerId>,
    /// Ids a client link may present (every member, this node included).
    member_ids: Vec<PeerId>,
}

impl TlsPeers {
    /// The id a connection that completed its handshake under `alpn`, with
    /// the certificate `chain`, is served under; `None` when the chain names
    /// no one it may name.
    pub(crate) fn peer_of(
        &self,
        alpn: Option<&[u8]>,
        chain: Option<&[CertificateDer<'_>]>,
    ) -> Option<PeerId> {
        let client = alpn == Some(CLIENT_ALPN);
        let candidates = if client {
            &self.member_ids
        } else {
            &self.peer_ids
        };
        let id = identify(chain?.first()?, candidates)?;
        Some(if client { client_id(id) } else { id.clone() })
    }
}

/// The client and server TLS configurations of node `server_id` talking to
/// `peer_ids` (a client link's client end offers the client ALPN), and the
/// names it serves connections under.
pub(crate) fn node_tls(
    config: &TlsConfig,
    server_id: &str,
    peer_ids: Vec<PeerId>,
) -> Result<(rustls::ClientConfig, rustls::ServerConfig, TlsPeers), TlsError> {
    let mut client = config.client_config()?;
    if is_client_id(server_id) {
        client.alpn_protocols = vec![CLIENT_ALPN.to_vec()];
    }
    let mut member_ids = peer_ids.clone();
    member_ids.push(identity_of(server_id).to_string());
    let server = config.server_config(&member_ids)?;
    Ok((
        client,
        server,
        TlsPeers {
            peer_ids,
            member_ids,
        },
    ))
}
