//! In-process transport with fault injection, for deterministic protocol tests.
//!
//! An [`InProcessHub`] is a simulated network: [`InProcessHub::node`] creates
//! (or returns) a node, an [`InProcessNetwork`] implementing
//! [`NetworkManager`]; the hub itself is the fault controller.
//!
//! # Faithful to the real transports
//!
//! - Messages travel as [`wire`] frames: every request and response
//!   is encoded and decoded, so anything that would not survive the TCP
//!   transport (serde, the frame limit) fails here too. An oversized request
//!   is refused with [`NetworkError::Protocol`]; an oversized response reaches
//!   the requester as [`Message::Error`].
//! - A handler returning `None` answers [`Message::Ack`].
//! - Each request's handler call runs in its own task; many requests are in
//!   flight at once.
//! - [`stop`](NetworkManager::stop) fails the node's in-flight requests with
//!   [`NetworkError::Stopped`], cancels its running handler calls (requesters
//!   waiting on them get [`NetworkError::Unreachable`]) and returns only when
//!   none is running; no handler call starts afterwards.
//!
//! # Faults
//!
//! All randomness comes from one `fastrand::Rng` seeded by
//! [`InProcessHub::new`], drawn when a request is sent, in send order. Delays
//! use `tokio::time::sleep`, so under a paused clock
//! (`#[tokio::test(start_paused = true)]`, a current-thread runtime) a run is
//! deterministic for a seed and takes no wall-clock time.
//!
//! | fault | effect |
//! |---|---|
//! | drop probability | each request and each response is lost with this probability (the requester times out) |
//! | delay range | each request and each response waits a uniform random time in `[min, max]`; different delays reorder messages |
//! | duplicate probability | a request is delivered twice (two handler calls, independent delays); the first response wins, the other is ignored |
//! | [`partition`](InProcessHub::partition) | messages between groups are lost when they would arrive (timeouts, like a real partition); [`heal`](InProcessHub::heal) ends it |
//! | [`cut`](InProcessHub::cut) | one link lost in both directions, the others up (a partial partition) |
//! | [`kill`](InProcessHub::kill) | the node stops at once (handler calls aborted, own requests fail with [`NetworkError::Stopped`]); requests to it fail with [`NetworkError::Unreachable`], like a refused connection |
//! | [`restart`](InProcessHub::restart) | the node may run again: it is reachable once [`start`](NetworkManager::start) is called with a handler |
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use std::{sync::Arc, time::Duration};
//! use async_trait::async_trait;
//! use protobase::protocol::Message;
//! use protobase::transports::InProcessHub;
//! use protobase::{MessageHandler, NetworkError, NetworkManager, PeerId};
//!
//! #[derive(Debug)]
//! struct Echo;
//! #[async_trait]
//! impl MessageHandler for Echo {
//!     async fn handle(&self, _from: PeerId, message: Message) -> Option<Message> {
//!         Some(message)
//!     }
//! }
//!
//! let hub = InProcessHub::new(42);
//! let (n1, n2) = (hub.node("n1"), hub.node("n2"));
//! n1.start(Arc::new(Echo)).await?;
//! n2.start(Arc::new(Echo)).await?;
//! let second = Duration::from_secs(1);
//! assert_eq!(n1.request(&"n2".into(), Message::Ack, second).await?, Message::Ack);
//!
//! hub.partition(&[&["n1"], &["n2"]]);
//! assert!(matches!(
//!     n1.request(&"n2".into(), Message::Ack, second).await,
//!     Err(NetworkError::Timeout { .. })
//! ));
//! hub.heal();
//! assert!(n1.request(&"n2".into(), Message::Ack, second).await.is_ok());
//! # Ok::<_, NetworkError>(()) }).unwrap();
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::common::{TaskSet, broadcast_with, encode_response};
use crate::network::{MessageHandler, NetworkError, NetworkManager, PeerId, PeerInfo};
use crate::protocol::{Envelope, Message, PROTOCOL_VERSION};
use crate::wire::{self, DEFAULT_MAX_FRAME_BYTES};

/// Fault settings of an [`InProcessHub`]; the default injects nothing.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Probability in `[0, 1]` that a request or a response is lost.
    pub drop_probability: f64,
    /// Probability in `[0, 1]` that a request is delivered twice.
    pub duplicate_probability: f64,
    /// Shortest delay of a request or a response.
    pub min_delay: Duration,
    /// Longest delay of a request or a response.
    pub max_delay: Duration,
}

impl Faults {
    fn sanitized(mut self) -> Self {
        let clamp = |p: f64| if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        self.drop_probability = clamp(self.drop_probability);
        self.duplicate_probability = clamp(self.duplicate_probability);
        if self.min_delay > self.max_delay {
            std::mem::swap(&mut self.min_delay, &mut self.max_delay);
        }
        self
    }
}

/// What happened on an [`InProcessHub`] so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HubStats {
    /// Requests sent (each counted once, duplicated or not).
    pub requests: u64,
    /// Handler calls started (a duplicated request counts twice).
    pub deliveries: u64,
    /// Requests delivered twice.
    pub duplicates: u64,
    /// Requests and responses lost to the drop probability or a partition.
    pub dropped: u64,
}

/// A simulated network of in-process nodes and its fault controller.
///
/// Cloning gives another handle to the same network. See the
/// [module docs](self) for the semantics of each fault.
#[derive(Clone)]
pub struct InProcessHub {
    hub: Arc<Hub>,
}

struct Hub {
    seed: u64,
    next_request_id: AtomicU64,
    state: Mutex<HubState>,
}

struct HubState {
    rng: fastrand::Rng,
    faults: Faults,
    /// Partition groups by node; `None` when the network is whole.
    groups: Option<HashMap<PeerId, usize>>,
    /// Links cut in both directions (pairs in order).
    cuts: std::collections::BTreeSet<(PeerId, PeerId)>,
    nodes: BTreeMap<PeerId, NodeState>,
    stats: HubStats,
    max_frame_bytes: usize,
}

#[derive(Default)]
struct NodeState {
    killed: bool,
    run: Option<Run>,
}

/// One started life of a node: from `start` to `stop` or `kill`.
#[derive(Clone)]
struct Run {
    handler: Arc<dyn MessageHandler>,
    tasks: Arc<TaskSet>,
    /// Set once when the run ends; the node's waiting requests fail with it.
    cancel: Arc<Cancel>,
}

/// Why a run ended, and the signal that wakes its waiting requests (in a
/// stable order, so simulations replay).
#[derive(Default)]
struct Cancel {
    reason: Mutex<Option<NetworkError>>,
    signal: crate::signal::Signal,
}

impl Cancel {
    async fn ended(&self) -> NetworkError {
        self.signal.wait_for(|| self.reason.lock().clone()).await
    }
}

impl Run {
    fn new(handler: Arc<dyn MessageHandler>) -> Self {
        Run {
            handler,
            tasks: Arc::new(TaskSet::new()),
            cancel: Arc::default(),
        }
    }

    /// Ends the run: waiting requests fail with `error`, handler calls are
    /// aborted (awaited by the caller through the returned task set).
    fn end(self, error: NetworkError) -> Arc<TaskSet> {
        *self.cancel.reason.lock() = Some(error);
        self.cancel.signal.bump();
        self.tasks
    }
}

/// The faults drawn for one copy of a request.
#[derive(Debug, Clone, Copy)]
struct CopyPlan {
    drop_request: bool,
    request_delay: Duration,
    drop_response: bool,
    response_delay: Duration,
}

impl HubState {
    fn connected(&self, a: &str, b: &str) -> bool {
        let pair = if a <= b { (a, b) } else { (b, a) };
        if self
            .cuts
            .iter()
            .any(|(x, y)| x.as_str() == pair.0 && y.as_str() == pair.1)
        {
            return false;
        }
        match &self.groups {
            None => true,
            Some(groups) => match (groups.get(a), groups.get(b)) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            },
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.f64() < p
    }

    fn delay(&mut self) -> Duration {
        let (min, max) = (self.faults.min_delay, self.faults.max_delay);
        if max.is_zero() {
            return Duration::ZERO;
        }
        let min_ns = u64::try_from(min.as_nanos()).unwrap_or(u64::MAX);
        let max_ns = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.rng.u64(min_ns..=max_ns))
    }

    fn plan_copy(&mut self) -> CopyPlan {
        let drop = self.faults.drop_probability;
        CopyPlan {
            drop_request: self.chance(drop),
            request_delay: self.delay(),
            drop_response: self.chance(drop),
            response_delay: self.delay(),
        }
    }

    fn plan(&mut self) -> Vec<CopyPlan> {
        let mut plans = vec![self.plan_copy()];
        let duplicate = self.faults.duplicate_probability;
        if self.chance(duplicate) {
            plans.push(self.plan_copy());
            self.stats.duplicates += 1;
        }
        self.stats.requests += 1;
        plans
    }
}

impl InProcessHub {
    /// A network whose random faults are drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        InProcessHub {
            hub: Arc::new(Hub {
                seed,
                next_request_id: AtomicU64::new(1),
                state: Mutex::new(HubState {
                    rng: fastrand::Rng::with_seed(seed),
                    faults: Faults::default(),
                    groups: None,
                    cuts: Default::default(),
                    nodes: BTreeMap::new(),
                    stats: HubStats::default(),
                    max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
                }),
            }),
        }
    }

    /// Sets the largest frame body nodes send or accept (default
    /// [`DEFAULT_MAX_FRAME_BYTES`]).
    pub fn with_max_frame_bytes(self, max_frame_bytes: usize) -> Self {
        self.hub.state.lock().max_frame_bytes = max_frame_bytes;
        self
    }

    /// The seed the hub was created with (print it when a test fails).
    pub fn seed(&self) -> u64 {
        self.hub.seed
    }

    /// The node named `id`, created on first use. Every node of the hub is a
    /// peer of every other one. Calling it again (for instance to model a
    /// restarted process) returns a handle to the same node.
    pub fn node(&self, id: impl Into<PeerId>) -> InProcessNetwork {
        let id = id.into();
        self.hub.state.lock().nodes.entry(id.clone()).or_default();
        InProcessNetwork {
            hub: Arc::clone(&self.hub),
            id,
            started: Arc::default(),
        }
    }

    /// The ids of all nodes, in order.
    pub fn node_ids(&self) -> Vec<PeerId> {
        self.hub.state.lock().nodes.keys().cloned().collect()
    }

    /// Replaces the fault settings (probabilities are clamped to `[0, 1]`).
    pub fn set_faults(&self, faults: Faults) {
        self.hub.state.lock().faults = faults.sanitized();
    }

    /// The current fault settings.
    pub fn faults(&self) -> Faults {
        self.hub.state.lock().faults
    }

    /// Sets the probability that a request or a response is lost.
    pub fn set_drop_probability(&self, probability: f64) {
        let mut state = self.hub.state.lock();
        state.faults = Faults {
            drop_probability: probability,
            ..state.faults
        }
        .sanitized();
    }

    /// Sets the probability that a request is delivered twice.
    pub fn set_duplicate_probability(&self, probability: f64) {
        let mut state = self.hub.state.lock();
        state.faults = Faults {
            duplicate_probability: probability,
            ..state.faults
        }
        .sanitized();
    }

    /// Sets the range of the random delay of every request and response.
    pub fn set_delay(&self, min: Duration, max: Duration) {
        let mut state = self.hub.state.lock();
        state.faults = Faults {
            min_delay: min,
            max_delay: max,
            ..state.faults
        }
        .sanitized();
    }

    /// Removes drops, duplicates and delays (partitions and killed nodes stay).
    pub fn clear_faults(&self) {
        self.hub.state.lock().faults = Faults::default();
    }

    /// Splits the network: nodes talk only within their group. A node named
    /// in no group is cut off from every other node. Replaces any previous
    /// partition.
    ///
    /// ```
    /// # let hub = protobase::transports::InProcessHub::new(1);
    /// hub.partition(&[&["n1", "n2"], &["n3"]]);
    /// ```
    pub fn partition(&self, groups: &[&[&str]]) {
        let mut map = HashMap::new();
        for (index, group) in groups.iter().enumerate() {
            for node in group.iter() {
                map.insert((*node).to_owned(), index);
            }
        }
        self.hub.state.lock().groups = Some(map);
    }

    /// Cuts the link between `a` and `b` (both directions), on top of any
    /// partition: messages between them are lost, others flow.
    pub fn cut(&self, a: &str, b: &str) {
        let pair = if a <= b { (a, b) } else { (b, a) };
        self.hub
            .state
            .lock()
            .cuts
            .insert((pair.0.to_owned(), pair.1.to_owned()));
    }

    /// Ends any partition and restores every cut link.
    pub fn heal(&self) {
        let mut st = self.hub.state.lock();
        st.groups = None;
        st.cuts.clear();
    }

    /// Crashes node `id`: its handler calls are aborted, its own waiting
    /// requests fail with [`NetworkError::Stopped`], requests to it fail with
    /// [`NetworkError::Unreachable`], and `start` is refused until
    /// [`restart`](Self::restart). Unknown ids are ignored.
    pub fn kill(&self, id: &str) {
        let run = {
            let mut state = self.hub.state.lock();
            let Some(node) = state.nodes.get_mut(id) else {
                tracing::warn!(node = id, "kill: no such in-process node");
                return;
            };
            node.killed = true;
            node.run.take()
        };
        if let Some(run) = run {
            run.end(NetworkError::Stopped).abort();
        }
    }

    /// Lets a killed node run again: it is reachable once its
    /// [`start`](NetworkManager::start) is called with a handler.
    pub fn restart(&self, id: &str) {
        if let Some(node) = self.hub.state.lock().nodes.get_mut(id) {
            node.killed = false;
        }
    }

    /// Whether node `id` is killed.
    pub fn is_killed(&self, id: &str) -> bool {
        self.hub
            .state
            .lock()
            .nodes
            .get(id)
            .is_some_and(|node| node.killed)
    }

    /// Counters of what the network did so far.
    pub fn stats(&self) -> HubStats {
        self.hub.state.lock().stats
    }
}

impl fmt::Debug for InProcessHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.hub.state.lock();
        f.debug_struct("InProcessHub")
            .field("seed", &self.hub.seed)
            .field("nodes", &state.nodes.keys().collect::<Vec<_>>())
            .field("faults", &state.faults)
            .field("partitioned", &state.groups.is_some())
            .finish()
    }
}

/// One node of an [`InProcessHub`]: a [`NetworkManager`] whose peers are all
/// the hub's other nodes. Cheap to clone (a handle).
///
/// A handle belongs to the run it started: once its node is killed, it
/// sends nothing more, also after the node was restarted and started
/// through another handle (a process that lost power does not speak for
/// the node's next one).
#[derive(Clone)]
pub struct InProcessNetwork {
    hub: Arc<Hub>,
    id: PeerId,
    /// The run this handle started (its cancel signal identifies it).
    started: Arc<Mutex<Option<Arc<Cancel>>>>,
}

impl fmt::Debug for InProcessNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InProcessNetwork({})", self.id)
    }
}

impl fmt::Display for InProcessNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "in-process:{}", self.id)
    }
}

/// The reply slot of one request, shared by the copies of a duplicated
/// request: the first outcome wins.
struct Reply {
    tx: Mutex<Option<oneshot::Sender<Result<Message, NetworkError>>>>,
}

impl Reply {
    fn complete(&self, outcome: Result<Message, NetworkError>) {
        if let Some(tx) = self.tx.lock().take() {
            let _ = tx.send(outcome);
        }
    }
}

/// Held by a handler call: if the call is dropped before it answers (its node
/// stopped or was killed), the requester learns at once.
struct ReplyGuard {
    reply: Option<Arc<Reply>>,
    peer: PeerId,
}

impl ReplyGuard {
    fn disarm(mut self) -> Option<Arc<Reply>> {
        self.reply.take()
    }
}

impl Drop for ReplyGuard {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            reply.complete(Err(NetworkError::Unreachable {
                peer: self.peer.clone(),
                reason: "peer stopped while handling the request".into(),
            }));
        }
    }
}

fn protocol_error(peer: &str, e: &wire::WireError) -> NetworkError {
    NetworkError::Protocol {
        peer: peer.to_owned(),
        reason: e.to_string(),
    }
}

/// Carries one copy of a request to `to`, runs its handler there and sends
/// the response back.
async fn deliver(
    hub: Arc<Hub>,
    from: PeerId,
    to: PeerId,
    request_id: u64,
    frame: Arc<[u8]>,
    plan: CopyPlan,
    reply: Arc<Reply>,
) {
    if !plan.request_delay.is_zero() {
        tokio::time::sleep(plan.request_delay).await;
    }
    let (run, max_frame_bytes) = {
        let mut state = hub.state.lock();
        if plan.drop_request || !state.connected(&from, &to) {
            state.stats.dropped += 1;
            return;
        }
        let run = match state.nodes.get(&to) {
            Some(NodeState {
                killed: false,
                run: Some(run),
            }) => run.clone(),
            Some(node) => {
                let reason = if node.killed {
                    "peer is killed"
                } else {
                    "peer is not running"
                };
                drop(state);
                reply.complete(Err(NetworkError::Unreachable {
                    peer: to,
                    reason: reason.into(),
                }));
                return;
            }
            None => return,
        };
        state.stats.deliveries += 1;
        (run, state.max_frame_bytes)
    };
    let guard = ReplyGuard {
        reply: Some(reply),
        peer: to.clone(),
    };
    let handler = Arc::clone(&run.handler);
    // Spawned in the target's task set: refused (and the guard dropped,
    // answering Unreachable) if the target stopped in the meantime.
    run.tasks.spawn(async move {
        let message = match wire::decode_frame(&frame, max_frame_bytes) {
            Ok((envelope, _)) => envelope.message,
            Err(e) => {
                if let Some(reply) = guard.disarm() {
                    reply.complete(Err(protocol_error(&from, &e)));
                }
                return;
            }
        };
        let response = handler
            .handle(from.clone(), message)
            .await
            .unwrap_or(Message::Ack);
        let response: Arc<[u8]> = encode_response(request_id, response, max_frame_bytes).into();
        if let Some(reply) = guard.disarm() {
            tokio::spawn(respond(hub, to, from, response, plan, reply));
        }
    });
}

/// Carries a response from `from` (the responder) back to `to`.
async fn respond(
    hub: Arc<Hub>,
    from: PeerId,
    to: PeerId,
    frame: Arc<[u8]>,
    plan: CopyPlan,
    reply: Arc<Reply>,
) {
    if !plan.response_delay.is_zero() {
        tokio::time::sleep(plan.response_delay).await;
    }
    let max_frame_bytes = {
        let mut state = hub.state.lock();
        if plan.drop_response || !state.connected(&from, &to) {
            state.stats.dropped += 1;
            return;
        }
        state.max_frame_bytes
    };
    match wire::decode_frame(&frame, max_frame_bytes) {
        Ok((envelope, _)) => reply.complete(Ok(envelope.message)),
        Err(e) => reply.complete(Err(protocol_error(&from, &e))),
    }
}

impl InProcessNetwork {
    fn peer_ids(&self) -> Vec<PeerId> {
        let state = self.hub.state.lock();
        state
            .nodes
            .keys()
            .filter(|id| **id != self.id)
            .cloned()
            .collect()
    }

    async fn send_request(
        &self,
        peer: &PeerId,
        message: Message,
        timeout: Duration,
    ) -> Result<Message, NetworkError> {
        let (cancel, max_frame_bytes) = {
            let state = self.hub.state.lock();
            let Some(me) = state.nodes.get(&self.id) else {
                return Err(NetworkError::Stopped);
            };
            let Some(run) = &me.run else {
                return Err(NetworkError::Stopped);
            };
            if let Some(mine) = &*self.started.lock()
                && !Arc::ptr_eq(mine, &run.cancel)
            {
                // The node was killed since this handle started.
                return Err(NetworkError::Stopped);
            }
            if *peer == self.id || !state.nodes.contains_key(peer) {
                return Err(NetworkError::UnknownPeer(peer.clone()));
            }
            (run.cancel.clone(), state.max_frame_bytes)
        };
        let request_id = self.hub.next_request_id.fetch_add(1, Ordering::Relaxed);
        let envelope = Envelope {
            version: PROTOCOL_VERSION,
            request_id,
            message,
        };
        let frame: Arc<[u8]> = wire::encode_frame(&envelope, max_frame_bytes)
            .map_err(|e| protocol_error(peer, &e))?
            .into();
        let plans = self.hub.state.lock().plan();

        let (tx, rx) = oneshot::channel();
        let reply = Arc::new(Reply {
            tx: Mutex::new(Some(tx)),
        });
        for plan in plans {
            tokio::spawn(deliver(
                Arc::clone(&self.hub),
                self.id.clone(),
                peer.clone(),
                request_id,
                Arc::clone(&frame),
                plan,
                Arc::clone(&reply),
            ));
        }
        drop(reply);

        let answer = async {
            match rx.await {
                Ok(outcome) => outcome,
                // Every copy was lost: nothing will come, wait for the timeout.
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            ended = cancel.ended() => Err(ended),
            outcome = tokio::time::timeout(timeout, answer) => {
                outcome.unwrap_or_else(|_| Err(NetworkError::Timeout { peer: peer.clone(), timeout }))
            }
        }
    }
}

#[async_trait]
impl NetworkManager for InProcessNetwork {
    fn local_id(&self) -> PeerId {
        self.id.clone()
    }

    /// Starts the node (again, after `stop` or a hub `restart`). Refused with
    /// [`NetworkError::Unreachable`] while the node is killed. On a running
    /// node it replaces the handler.
    async fn start(&self, handler: Arc<dyn MessageHandler>) -> Result<(), NetworkError> {
        let mut state = self.hub.state.lock();
        let node = state.nodes.entry(self.id.clone()).or_default();
        if node.killed {
            return Err(NetworkError::Unreachable {
                peer: self.id.clone(),
                reason: "node is killed; restart it first".into(),
            });
        }
        match &mut node.run {
            Some(run) => run.handler = handler,
            None => node.run = Some(Run::new(handler)),
        }
        if let Some(run) = &node.run {
            *self.started.lock() = Some(run.cancel.clone());
        }
        Ok(())
    }

    async fn request(
        &self,
        peer: &PeerId,
        message: Message,
        timeout: Duration,
    ) -> Result<Message, NetworkError> {
        self.send_request(peer, message, timeout).await
    }

    async fn broadcast(
        &self,
        message: Message,
        timeout: Duration,
    ) -> Vec<(PeerId, Result<Message, NetworkError>)> {
        let this = self.clone();
        broadcast_with(self.peer_ids(), move |peer| {
            let this = this.clone();
            let message = message.clone();
            async move { this.send_request(&peer, message, timeout).await }
        })
        .await
    }

    /// Every other node of the hub; `alive` when it is started, not killed
    /// and not partitioned away from this node.
    fn peers(&self) -> Vec<PeerInfo> {
        let state = self.hub.state.lock();
        state
            .nodes
            .iter()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, node)| PeerInfo {
                id: id.clone(),
                address: format!("in-process:{id}"),
                alive: !node.killed && node.run.is_some() && state.connected(&self.id, id),
            })
            .collect()
    }

    async fn stop(&self) -> Result<(), NetworkError> {
        let run = self
            .hub
            .state
            .lock()
            .nodes
            .get_mut(&self.id)
            .and_then(|node| node.run.take());
        if let Some(run) = run {
            run.end(NetworkError::Stopped).shutdown().await;
        }
        Ok(())
    }
}
