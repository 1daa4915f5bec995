//! The serving side of the QUIC transport: accepting (or, while stopped,
//! refusing) connections, identifying the peer from its certificate, and
//! answering one request per stream.

use std::sync::{Arc, Weak};

use quinn::VarInt;
use tokio::sync::Semaphore;
use tracing::{Instrument, debug, warn};

use super::{CLOSE_REFUSED, MAX_INBOUND_CONNECTIONS, QuicNode, QuicRun};
use crate::network::PeerId;
use crate::transports::admission::{HandshakeGate, Pending};
use crate::transports::common::answer;
use crate::wire;

/// Accepts connections for the current run, and refuses them while the
/// manager is stopped, until the endpoint closes.
pub(super) async fn accept_loop(node: Weak<QuicNode>, endpoint: quinn::Endpoint) {
    let limit = Arc::new(Semaphore::new(MAX_INBOUND_CONNECTIONS));
    let gate = Arc::new(HandshakeGate::default());
    while let Some(incoming) = endpoint.accept().await {
        let Some(node) = node.upgrade() else {
            incoming.refuse();
            return;
        };
        let Some(run) = node.current_run() else {
            debug!(addr = %incoming.remote_address(), "stopped; refusing a connection");
            incoming.refuse();
            continue;
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            warn!("too many inbound connections; refusing one");
            incoming.refuse();
            continue;
        };
        let addr = incoming.remote_address();
        let Some(pending) = gate.enter(addr.ip()) else {
            debug!(%addr, "too many handshakes from this address; refusing one");
            incoming.refuse();
            continue;
        };
        let serve = serve_inbound(Arc::clone(&node), Arc::clone(&run), incoming, pending);
        // Stopped meanwhile: the dropped connection attempt is refused.
        node.spawn_inbound(&run, addr, permit, serve);
    }
}

/// Serves one inbound connection: handshake, identify the peer, answer its
/// request streams.
async fn serve_inbound(
    node: Arc<QuicNode>,
    run: Arc<QuicRun>,
    incoming: quinn::Incoming,
    pending: Pending,
) {
    let deadline = node.transport.config.read_timeout();
    let Some(conn) = pending.handshake(deadline, incoming).await else {
        return;
    };
    // The certificate verifier admitted only certificates of members; find
    // which one (and whether it connected as a member or a client link).
    let alpn = conn
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol);
    let chain = conn.peer_identity().and_then(|identity| {
        identity
            .downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
            .ok()
    });
    let peer = node
        .transport
        .tls_peers
        .peer_of(alpn.as_deref(), chain.as_deref().map(Vec::as_slice));
    let Some(peer) = peer else {
        warn!("inbound connection without a configured peer's certificate; closing");
        conn.close(VarInt::from_u32(CLOSE_REFUSED), b"unknown peer");
        return;
    };
    tracing::Span::current().record("peer", peer.as_str());
    debug!("authenticated");
    run.serving.inbound.lock().push(conn.clone());
    node.saw(&peer);
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                let call = serve_stream(
                    Arc::clone(&run),
                    conn.clone(),
                    peer.clone(),
                    send,
                    recv,
                    node.transport.config.max_frame_bytes,
                );
                if run
                    .tasks
                    .spawn(call.instrument(tracing::Span::current()))
                    .is_none()
                {
                    break;
                }
            }
            Err(e) => {
                debug!(error = %e, "connection ended");
                break;
            }
        }
    }
    let id = conn.stable_id();
    run.serving.inbound.lock().retain(|c| c.stable_id() != id);
}

/// Answers the request on one stream.
async fn serve_stream(
    run: Arc<QuicRun>,
    conn: quinn::Connection,
    from: PeerId,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    max_frame_bytes: usize,
) {
    let envelope = match wire::read_frame(&mut recv, max_frame_bytes).await {
        Ok(envelope) => envelope,
        Err(e) if e.is_malformed() => {
            warn!(error = %e, "malformed frame from peer; closing the connection");
            conn.close(VarInt::from_u32(CLOSE_REFUSED), b"malformed frame");
            return;
        }
        Err(e) => {
            debug!(error = %e, "request stream ended without a frame");
            return;
        }
    };
    // The call runs to its end even if the requester gives up (as on TCP):
    // handlers are cancelled only when the node stops.
    let handler = run.handler();
    let frame = answer(handler, from, envelope, max_frame_bytes).await;
    if let Err(e) = send.write_all(&frame).await {
        debug!(error = %e, "response not delivered");
        return;
    }
    let _ = send.finish();
}
