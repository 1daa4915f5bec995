#![cfg_attr(
    not(any(feature = "tcp", feature = "quic")),
    allow(dead_code, unused_macros, unused_imports)
)]
//! One node for every socket transport.
//!
//! TCP and QUIC differ in how they dial, authenticate, listen and carry a
//! request (a multiplexed connection with request ids, a stream per
//! request); everything else a [`NetworkManager`] does is the same and lives
//! here, once: the peer slots and their shared outbound connections,
//! connection retries, request ids and deadlines, broadcast, the runs
//! between `start` and `stop` and the promise that no handler runs after
//! `stop` returns. A transport implements [`Transport`] (rust-libp2p's
//! split between a transport and the swarm that drives it) and its public
//! manager wraps a [`Node`], forwarding [`NetworkManager`] to it with
//! [`forward_network_manager!`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use super::common::{
    LinkConnection, PeerSlot, SocketConfig, TaskSet, bounded_request, broadcast_with,
    encode_request,
};
use crate::network::{MessageHandler, NetworkError, PeerId, PeerInfo};
use crate::protocol::Message;

/// What a socket transport adds to a [`Node`].
pub(crate) trait Transport: Send + Sync + Sized + 'static {
    /// An open outbound connection to one peer, shared by its requests.
    type Link: LinkConnection + Send + Sync + 'static;
    /// What one run of the node keeps of the transport (its listener, the
    /// connections to close at `stop`).
    type Serving: Send + Sync + 'static;
    /// The transport's name in spans and logs.
    const NAME: &'static str;

    /// The transport's configuration.
    type Config: SocketConfig;
    /// Its configuration.
    fn config(&self) -> &Self::Config;

    /// Binds (or takes up again) the listening side for a new run; the
    /// address bound is what `local_addr` reports from then on.
    fn bind(
        node: &Arc<Node<Self>>,
    ) -> impl Future<Output = Result<Self::Serving, NetworkError>> + Send;

    /// Starts serving inbound connections for `run`, just installed (its
    /// tasks go into `run.tasks`).
    fn serve(node: &Arc<Node<Self>>, run: &Arc<Run<Self>>);

    /// One connection attempt to `slot` for `run`: connect and
    /// authenticate.
    fn dial(
        node: &Arc<Node<Self>>,
        run: &Arc<Run<Self>>,
        slot: &Arc<PeerSlot<Self::Link>>,
    ) -> impl Future<Output = Result<Self::Link, NetworkError>> + Send;

    /// Sends request `request_id` (encoded as `frame`) on `link` and waits
    /// for its response (the deadline is the node's).
    fn exchange(
        &self,
        slot: &PeerSlot<Self::Link>,
        link: Self::Link,
        request_id: u64,
        frame: Vec<u8>,
    ) -> impl Future<Output = Result<Message, NetworkError>> + Send;

    /// Called by `stop` once the run's tasks are gone, to close what else
    /// the run holds.
    fn stopped(&self, serving: &Self::Serving) {
        let _ = serving;
    }
}

/// A node of some transport: see the [module docs](self).
pub(crate) struct Node<T: Transport> {
    pub(crate) transport: T,
    /// Peers in configuration order.
    pub(crate) slots: Vec<Arc<PeerSlot<T::Link>>>,
    pub(crate) by_id: HashMap<PeerId, Arc<PeerSlot<T::Link>>>,
    next_request_id: AtomicU64,
    next_run_id: AtomicU64,
    run: Mutex<Option<Arc<Run<T>>>>,
}

/// One started life of a node, from `start` to `stop`.
pub(crate) struct Run<T: Transport> {
    pub(crate) id: u64,
    handler: RwLock<Arc<dyn MessageHandler>>,
    /// Every task of the run: listener, connections, handler calls.
    pub(crate) tasks: TaskSet,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) serving: T::Serving,
}

impl<T: Transport> Run<T> {
    /// The handler requests of this run go to.
    pub(crate) fn handler(&self) -> Arc<dyn MessageHandler> {
        Arc::clone(&*self.handler.read())
    }
}

impl<T: Transport> Node<T> {
    /// A stopped node of `transport`.
    pub(crate) fn new(transport: T) -> Self {
        let slots = PeerSlot::for_peers(transport.config().peers());
        let by_id = slots
            .iter()
            .map(|slot| (slot.id.clone(), Arc::clone(slot)))
            .collect();
        Node {
            transport,
            slots,
            by_id,
            next_request_id: AtomicU64::new(1),
            next_run_id: AtomicU64::new(1),
            run: Mutex::new(None),
        }
    }

    /// The current run, if started.
    pub(crate) fn current_run(&self) -> Option<Arc<Run<T>>> {
        self.run.lock().clone()
    }

    /// Whether a run is going.
    pub(crate) fn is_running(&self) -> bool {
        self.run.lock().is_some()
    }

    /// The slot of configured peer `peer`.
    pub(crate) fn slot(&self, peer: &PeerId) -> Result<&Arc<PeerSlot<T::Link>>, NetworkError> {
        self.by_id
            .get(peer)
            .ok_or_else(|| NetworkError::UnknownPeer(peer.clone()))
    }

    /// Marks `peer` (if configured) as alive: an inbound connection from it
    /// was authenticated.
    pub(crate) fn saw(&self, peer: &PeerId) {
        if let Some(slot) = self.by_id.get(peer) {
            slot.set_alive(true);
        }
    }

    /// Starts a run serving `handler`, or replaces the handler of the
    /// running one.
    pub(crate) async fn start(
        self: &Arc<Self>,
        handler: Arc<dyn MessageHandler>,
    ) -> Result<(), NetworkError> {
        if let Some(run) = self.current_run() {
            *run.handler.write() = handler;
            return Ok(());
        }
        let serving = T::bind(self).await?;
        let run = Arc::new(Run {
            id: self.next_run_id.fetch_add(1, Ordering::Relaxed),
            handler: RwLock::new(handler),
            tasks: TaskSet::new(),
            shutdown: watch::channel(false).0,
            serving,
        });
        {
            let mut current = self.run.lock();
            if let Some(other) = current.as_ref() {
                // A concurrent `start` won; use its run.
                *other.handler.write() = run.handler();
                return Ok(());
            }
            *current = Some(Arc::clone(&run));
        }
        T::serve(self, &run);
        debug!(node = %self.transport.config().server_id(), "serving");
        Ok(())
    }

    /// The open connection to `slot`, opening one if needed.
    async fn connection(
        self: &Arc<Self>,
        run: &Arc<Run<T>>,
        slot: &Arc<PeerSlot<T::Link>>,
        deadline: Instant,
    ) -> Result<T::Link, NetworkError> {
        let result = slot
            .link
            .get(
                &slot.id,
                run.id,
                self.transport.config().retry_policy(),
                deadline,
                || T::dial(self, run, slot),
            )
            .await;
        slot.set_alive(result.is_ok());
        result
    }

    /// Serves one connection accepted from `addr` on `run`'s tasks: `serve`
    /// (its handshake, then its requests) in a span naming the node and the
    /// source, holding `permit` (a place among the node's inbound
    /// connections) until it ends. False once the run has stopped.
    pub(crate) fn spawn_inbound<F>(
        &self,
        run: &Run<T>,
        addr: std::net::SocketAddr,
        permit: tokio::sync::OwnedSemaphorePermit,
        serve: F,
    ) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let span = tracing::debug_span!(
            "conn",
            transport = T::NAME,
            node = %self.transport.config().server_id(),
            peer = tracing::field::Empty,
            %addr,
            dir = "in",
        );
        let task = async move {
            serve.await;
            drop(permit);
        };
        run.tasks
            .spawn(tracing::Instrument::instrument(task, span))
            .is_some()
    }

    /// One request to `peer`, answered or failed by `timeout`.
    pub(crate) async fn request(
        self: &Arc<Self>,
        peer: &PeerId,
        message: Message,
        timeout: Duration,
    ) -> Result<Message, NetworkError> {
        let run = self.current_run().ok_or(NetworkError::Stopped)?;
        let slot = self.slot(peer)?;
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_request(
            peer,
            request_id,
            message,
            self.transport.config().max_frame_bytes(),
        )?;
        let deadline = Instant::now() + timeout;
        let exchange = async {
            let link = self.connection(&run, slot, deadline).await?;
            self.transport.exchange(slot, link, request_id, frame).await
        };
        bounded_request(&run.shutdown, peer, timeout, deadline, exchange, || {
            slot.set_alive(false)
        })
        .await
    }

    /// `message` to every configured peer at once.
    pub(crate) async fn broadcast(
        self: &Arc<Self>,
        message: Message,
        timeout: Duration,
    ) -> Vec<(PeerId, Result<Message, NetworkError>)> {
        let peers = self.slots.iter().map(|slot| slot.id.clone()).collect();
        let node = Arc::clone(self);
        broadcast_with(peers, move |peer| {
            let node = Arc::clone(&node);
            let message = message.clone();
            async move { node.request(&peer, message, timeout).await }
        })
        .await
    }

    /// The configured peers; `alive` while a connection to or from the
    /// peer is up and the last exchange with it succeeded.
    pub(crate) fn peer_infos(&self) -> Vec<PeerInfo> {
        self.slots.iter().map(|slot| slot.info()).collect()
    }

    /// Ends the run: in-flight requests fail with `Stopped`, every task of
    /// the run is gone (no handler runs) when this returns.
    pub(crate) async fn stop(&self) -> Result<(), NetworkError> {
        let run = self.run.lock().take();
        let Some(run) = run else {
            return Ok(());
        };
        run.shutdown.send_replace(true);
        run.tasks.shutdown().await;
        self.transport.stopped(&run.serving);
        for slot in &self.slots {
            slot.link.clear("stopped").await;
            slot.set_alive(false);
        }
        debug!(node = %self.transport.config().server_id(), "stopped");
        Ok(())
    }

    /// What a dropped manager does: ends the run without waiting.
    pub(crate) fn abort(&self) {
        if let Some(run) = self.run.lock().take() {
            run.shutdown.send_replace(true);
            run.tasks.abort();
            self.transport.stopped(&run.serving);
        }
    }
}

/// Implements [`NetworkManager`](crate::NetworkManager), the constructor
/// on a bound socket, `local_addr`, `config`, `Debug` and `Display` for a
/// manager holding its [`Node`] in a
/// field `node: Arc<Node<_>>` (whose transport has the fields `config` and
/// `binding`), forwarding to it; `$start_doc` documents the transport's
/// `start`.
macro_rules! forward_network_manager {
    (
        $manager:ident,
        $config:ident,
        $error:ty,
        $with_socket:ident($socket:ty),
        $start_doc:literal
    ) => {
        impl $manager {
            #[doc = concat!(
                "A manager that will serve on `socket` (already bound, for instance to port 0 so ",
                "peers' configurations can name its address before it starts) instead of binding ",
                "[`", stringify!($config), "::listen_addr`]."
            )]
            pub fn $with_socket(config: $config, socket: $socket) -> Result<Self, $error> {
                let addr = socket.local_addr().ok();
                let manager = Self::new(config)?;
                manager.node.transport.binding.preset(socket, addr);
                Ok(manager)
            }

            /// The address this node listens on: known after `start` (or
            /// at once when it was built on a bound socket), kept after
            /// `stop`.
            pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
                self.node.transport.binding.bound()
            }

            /// The configuration.
            pub fn config(&self) -> &$config {
                &self.node.transport.config
            }
        }

        impl std::fmt::Debug for $manager {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($manager))
                    .field("server_id", &self.config().server_id)
                    .field("local_addr", &self.local_addr())
                    .field("running", &self.node.is_running())
                    .finish()
            }
        }

        impl std::fmt::Display for $manager {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let id = &self.config().server_id;
                match self.local_addr() {
                    Some(addr) => write!(f, "{}({id}@{addr})", stringify!($manager)),
                    None => write!(f, "{}({id})", stringify!($manager)),
                }
            }
        }

        #[async_trait::async_trait]
        impl $crate::network::NetworkManager for $manager {
            fn local_id(&self) -> $crate::network::PeerId {
                self.node.transport.config.server_id.clone()
            }

            #[doc = $start_doc]
            async fn start(
                &self,
                handler: std::sync::Arc<dyn $crate::network::MessageHandler>,
            ) -> Result<(), $crate::network::NetworkError> {
                self.node.start(handler).await
            }

            async fn request(
                &self,
                peer: &$crate::network::PeerId,
                message: $crate::protocol::Message,
                timeout: std::time::Duration,
            ) -> Result<$crate::protocol::Message, $crate::network::NetworkError> {
                self.node.request(peer, message, timeout).await
            }

            async fn broadcast(
                &self,
                message: $crate::protocol::Message,
                timeout: std::time::Duration,
            ) -> Vec<(
                $crate::network::PeerId,
                Result<$crate::protocol::Message, $crate::network::NetworkError>,
            )> {
                self.node.broadcast(message, timeout).await
            }

            /// The configured peers; `alive` while a connection to or from
            /// the peer is up and the last exchange with it succeeded.
            fn peers(&self) -> Vec<$crate::network::PeerInfo> {
                self.node.peer_infos()
            }

            async fn stop(&self) -> Result<(), $crate::network::NetworkError> {
                self.node.stop().await
            }
        }
    };
}
pub(crate) use forward_network_manager;
