//! Cluster file storage: three nodes over TCP on 127.0.0.1, in one process.
//!
//! Each node has its own space directory. A record pushed on one node is read
//! on another through a page request; root updates from different nodes are
//! serialised by the majority vote and replicated to every node.
//!
//! ```text
//! cargo run --example cluster
//! ```

use protobase::cluster::{ClusterConfig, bind_local_tcp_cluster};
use protobase::{AtomFormat, Storage, StorageBuilder};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let settings = ClusterConfig::default().with_heartbeat_ms(200);
    // Binds three listeners on OS-chosen ports, so each node's configuration
    // can name the others. In production each node runs in its own process
    // with a ClusterConfig naming the others' host:port and a shared key.
    let mut nodes: Vec<Storage> = Vec::new();
    for (config, network) in
        bind_local_tcp_cluster(&["a", "b", "c"], "example-only-key", &settings)?
    {
        let dir = tmp.path().join(&config.server_id);
        println!(
            "node {} listens on {}:{}",
            config.server_id, config.host, config.port
        );
        nodes.push(
            StorageBuilder::standalone(dir)
                .cluster(config)
                .with_network_manager(network)
                .build()
                .await?,
        );
    }

    // Node a writes an atom and publishes it as the root.
    let doc = nodes[0]
        .push_atom(&serde_json::json!({"from": "a", "n": 1}), AtomFormat::Json)
        .await?;
    let root = nodes[0].set_root(doc).await?;
    println!(
        "a published root #{} (term {}) -> {}",
        root.sequence, root.term, root.pointer
    );

    // Node b has no copy of a's WAL: the read goes to a page request.
    let seen: serde_json::Value = nodes[1].get_atom(root.pointer).await?;
    println!("b reads a's atom remotely: {seen}");

    // Node c builds on the current root (it sees a's, replicated to it).
    let next = nodes[2]
        .update_root(|current| async move {
            let prev = current.map(|r| r.sequence).unwrap_or(0);
            println!("c builds on root #{prev}");
            Ok(doc)
        })
        .await?;
    println!("c published root #{} (term {})", next.sequence, next.term);

    for (name, node) in ["a", "b", "c"].iter().zip(&nodes) {
        let r = node.read_current_root().await?.ok_or("no root")?;
        println!("node {name} sees root #{} term {}", r.sequence, r.term);
    }
    for node in &nodes {
        node.close().await?;
    }
    println!("ok");
    Ok(())
}
