//! Admission of inbound connections before they authenticate (TCP and
//! QUIC): at most [`MAX_HANDSHAKES_PER_SOURCE`] connections from one IP
//! address may be in their handshake at once.
//!
//! A handshake costs the node a task, a socket and (with TLS) a little
//! cryptography until it completes or its deadline passes
//! (the transport's `read_timeout_ms`). Without a limit
//! per source, one host opening idle connections could hold every inbound
//! slot (1 024 per node) and keep the node's peers out
//! until the deadlines free them. Connections beyond the limit are closed at
//! once, before anything is read. Authenticated connections do not count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

/// Connections from one IP address that may be in their handshake at once.
pub const MAX_HANDSHAKES_PER_SOURCE: usize = 64;

/// Counts handshakes in progress per source address.
#[derive(Debug, Default)]
pub(crate) struct HandshakeGate {
    pending: Mutex<HashMap<IpAddr, usize>>,
}

/// A handshake in progress; leaving it (drop) frees its place.
#[derive(Debug)]
pub(crate) struct Pending {
    gate: Arc<HandshakeGate>,
    source: IpAddr,
}

impl Pending {
    /// Runs an inbound connection's `handshake` within `deadline`, then
    /// frees the place: what it authenticated, or `None` (logged) when it
    /// failed or ran out of time.
    pub(crate) async fn handshake<T, E: std::fmt::Display>(
        self,
        deadline: std::time::Duration,
        handshake: impl std::future::IntoFuture<Output = Result<T, E>>,
    ) -> Option<T> {
        let outcome = tokio::time::timeout(deadline, handshake.into_future()).await;
        // Done or failed, the handshake is over.
        drop(self);
        match outcome {
            Ok(Ok(authenticated)) => Some(authenticated),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "refused an inbound connection");
                None
            }
            Err(_) => {
                tracing::warn!("refused an inbound connection: handshake timed out");
                None
            }
        }
    }
}

impl HandshakeGate {
    /// A place for a handshake from `source`, or `None` when that source
    /// has [`MAX_HANDSHAKES_PER_SOURCE`] in progress already.
    pub(crate) fn enter(self: &Arc<Self>, source: IpAddr) -> Option<Pending> {
        let mut pending = self.pending.lock();
        let count = pending.entry(source).or_insert(0);
        if *count >= MAX_HANDSHAKES_PER_SOURCE {
            return None;
        }
        *count += 1;
        Some(Pending {
            gate: Arc::clone(self),
            source,
        })
    }

    #[cfg(test)]
    fn in_progress(&self, source: IpAddr) -> usize {
        self.pending.lock().get(&source).copied().unwrap_or(0)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut pending = self.gate.pending.lock();
        if let Some(count) = pending.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                pending.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_is_capped_and_others_are_not_affected() {
        let gate = Arc::new(HandshakeGate::default());
        let flood: IpAddr = "127.0.0.2".parse().unwrap();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<Pending> = (0..MAX_HANDSHAKES_PER_SOURCE)
            .map(|_| gate.enter(flood).expect("below the cap"))
            .collect();
        assert!(gate.enter(flood).is_none(), "past the cap");
        let other = gate.enter(peer).expect("another source is not capped");
        assert_eq!(gate.in_progress(flood), MAX_HANDSHAKES_PER_SOURCE);
        drop(held);
        assert_eq!(gate.in_progress(flood), 0);
        assert!(gate.enter(flood).is_some(), "places are freed");
        drop(other);
        assert!(gate.pending.lock().is_empty(), "no entry left behind");
    }
}
