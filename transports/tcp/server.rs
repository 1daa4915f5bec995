//! The serving side of the TCP transport: accepting connections, the
//! handshake (within its deadline, a bounded number per source address),
//! and answering the requests of each connection concurrently.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{Instrument, debug, warn};

use super::frame_writer::FrameWriter;
use super::{
    IO_BUFFER, MAX_IN_FLIGHT_PER_CONNECTION, MAX_INBOUND_CONNECTIONS, Tcp, TcpNode, TcpRun,
};
use crate::transports::admission::{HandshakeGate, Pending};
use crate::transports::common::answer;
use crate::wire::{self, WireError};

/// Accepts connections until the run ends.
pub(super) async fn accept_loop(node: Arc<TcpNode>, run: Arc<TcpRun>, listener: TcpListener) {
    let limit = Arc::new(Semaphore::new(MAX_INBOUND_CONNECTIONS));
    let gate = Arc::new(HandshakeGate::default());
    loop {
        let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, addr)) => {
                let Some(pending) = gate.enter(addr.ip()) else {
                    debug!(%addr, "too many handshakes from this address; closed");
                    continue;
                };
                let serve = serve_inbound(Arc::clone(&node), Arc::clone(&run), stream, pending);
                if !node.spawn_inbound(&run, addr, permit, serve) {
                    return;
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: do not spin.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one inbound connection: authenticate, then answer its requests.
async fn serve_inbound(node: Arc<TcpNode>, run: Arc<TcpRun>, stream: TcpStream, pending: Pending) {
    let _ = stream.set_nodelay(true);
    let tcp: &Tcp = &node.transport;
    let handshake = tcp.authenticate_inbound(stream, |id| {
        node.by_id.contains_key(id) || crate::network::is_client_id(id)
    });
    let Some((peer, reader, writer)) = pending
        .handshake(tcp.config.read_timeout(), handshake)
        .await
    else {
        return;
    };
    tracing::Span::current().record("peer", peer.as_str());
    debug!("authenticated");
    node.saw(&peer);
    let writer = Arc::new(FrameWriter::new(writer));
    let writer_task = {
        let writer = Arc::clone(&writer);
        async move {
            if let Err(e) = writer.run().await {
                debug!(error = %e, "write failed");
            }
        }
    };
    let Some(writer_handle) = run
        .tasks
        .spawn(writer_task.instrument(tracing::Span::current()))
    else {
        return;
    };
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_CONNECTION));
    let mut reader = BufReader::with_capacity(IO_BUFFER, reader);
    let max_frame_bytes = tcp.config.max_frame_bytes;
    loop {
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            break;
        };
        match wire::read_frame(&mut reader, max_frame_bytes).await {
            Ok(envelope) => {
                let handler = run.handler();
                let writer = Arc::clone(&writer);
                let from = peer.clone();
                let call = async move {
                    let frame = answer(handler, from, envelope, max_frame_bytes).await;
                    let _ = writer.send(frame).await;
                    drop(permit);
                };
                // On a task of its own: a handler that blocks (an fsync) or
                // panics holds up or ends only its own request.
                if run
                    .tasks
                    .spawn(call.instrument(tracing::Span::current()))
                    .is_none()
                {
                    break;
                }
            }
            Err(WireError::Closed) => {
                debug!("peer closed the connection");
                break;
            }
            Err(e) if e.is_malformed() => {
                warn!(error = %e, "malformed frame from peer; closing the connection");
                break;
            }
            Err(e) => {
                debug!(error = %e, "read failed; closing");
                break;
            }
        }
    }
    writer.close("connection ended");
    writer_handle.abort();
}
