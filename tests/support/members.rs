//! In-memory cluster members on an in-process hub: a test's nodes, each
//! with the acceptor state it is given (shared to model a restart) and
//! randomness seeded from its id, so that a test replays.

use std::sync::Arc;

use protobase::cluster::{AcceptorStore, ClusterConfig};
use protobase::transports::InProcessHub;
use protobase::{Storage, StorageBuilder};

/// The member `config.server_id` of `hub`, keeping its acceptor state in
/// `acceptor`.
pub async fn in_memory_member(
    hub: &InProcessHub,
    config: ClusterConfig,
    acceptor: Arc<dyn AcceptorStore>,
) -> Storage {
    let id = config.server_id.clone();
    StorageBuilder::in_memory()
        .cluster(config)
        .with_network_manager(Arc::new(hub.node(id.clone())))
        .with_acceptor_store(acceptor)
        .rng_seed(u64::from(id.as_bytes()[0]))
        .build()
        .await
        .unwrap()
}
