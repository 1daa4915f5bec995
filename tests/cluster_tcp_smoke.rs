//! Smoke test: a 3-node cluster over TCP on 127.0.0.1.

use protobase::StorageBuilder;
use protobase::cluster::{ClusterConfig, bind_local_tcp_cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_publish_and_read_each_others_atoms() {
    let base = ClusterConfig::default()
        .with_heartbeat_ms(50)
        .with_read_timeout_ms(500)
        .with_retry_interval_ms(20);
    let nodes =
        bind_local_tcp_cluster(&["a", "b", "c"], "smoke test pre-shared key", &base).unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut storages = Vec::new();
    for ((cfg, net), dir) in nodes.into_iter().zip(&dirs) {
        storages.push(
            StorageBuilder::standalone(dir.path())
                .cluster(cfg)
                .with_network_manager(net)
                .build()
                .await
                .unwrap(),
        );
    }
    let p = storages[0].push_bytes(b"written on a").await.unwrap();
    let r = storages[0].set_root(p).await.unwrap();
    assert_eq!(r.sequence, 1);
    // b reads a's record through a page request, and sees the root.
    assert_eq!(
        &storages[1].get_bytes(p).await.unwrap()[..],
        b"written on a"
    );
    // (The majority that acknowledged it may have been a + c: b learns it
    // from the broadcast's straggler delivery or a heartbeat, soon.)
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while storages[1].read_current_root().await.unwrap() != Some(r.clone()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b never saw a's root {r:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // c publishes next, building on a's root.
    let q = storages[2].push_bytes(b"written on c").await.unwrap();
    let r2 = storages[2]
        .update_root(|cur| async move {
            assert_eq!(cur.map(|c| c.sequence), Some(1));
            Ok(q)
        })
        .await
        .unwrap();
    assert_eq!(r2.sequence, 2);
    assert!(r2.term > r.term);
    assert_eq!(
        &storages[0].get_bytes(q).await.unwrap()[..],
        b"written on c"
    );
    for s in &storages {
        s.close().await.unwrap();
    }
}
