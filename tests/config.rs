//! Node descriptions (TOML / JSON): every example config builds its variant,
//! bad configs name the file and the key, environment overrides and the
//! reference `space.config` apply.

use std::path::{Path, PathBuf};

use protobase::config::{ConfigError, NodeConfig, Source, Syntax};
use protobase::{AtomFormat, StorageBuilder};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/configs")
        .join(name)
}

/// Parses an example config with its paths relative to `base` (a temp dir,
/// so tests never write into the source tree) and the given environment.
fn example_in(name: &str, base: &Path, env: &[(&str, &str)]) -> NodeConfig {
    let path = example(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let syntax = if name.ends_with(".json") {
        Syntax::Json
    } else {
        Syntax::Toml
    };
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    NodeConfig::parse(&text, syntax, Source::from(path.as_path()), base, env)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn parse_toml(text: &str, base: &Path) -> Result<NodeConfig, ConfigError> {
    NodeConfig::parse(
        text,
        Syntax::Toml,
        Source("node.toml".into()),
        base,
        Vec::new(),
    )
}

fn err_toml(text: &str) -> ConfigError {
    let dir = tempfile::tempdir().unwrap();
    match parse_toml(text, dir.path()) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e,
    }
}

#[test]
fn the_examples_folder_has_a_config_per_variant() {
    let mut names: Vec<String> = std::fs::read_dir(example(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cloud-cluster.toml",
            "cloud.toml",
            "cluster-node1.toml",
            "cluster-node2.toml",
            "cluster-node3.toml",
            "standalone.json",
            "standalone.toml"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_examples_build_and_store() {
    for name in ["standalone.toml", "standalone.json"] {
        let dir = tempfile::tempdir().unwrap();
        let config = example_in(name, dir.path(), &[]);
        assert_eq!(config.variant(), "standalone", "{name}");
        let storage = config.build().await.unwrap();
        let ptr = storage
            .push_atom(&serde_json::json!({"from": name}), AtomFormat::Json)
            .await
            .unwrap();
        storage.set_root(ptr).await.unwrap();
        storage.close().await.unwrap();
        // The space is where the file said, relative to its directory.
        let space = std::fs::read_dir(dir.path().join("data")).unwrap().count();
        assert_eq!(space, 1, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_example_builds_on_a_local_directory_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_in("cloud.toml", dir.path(), &[]);
    assert_eq!(config.variant(), "cloud");
    let storage = config.build().await.unwrap();
    let ptr = storage.push_bytes(b"in objects").await.unwrap();
    storage.set_root(ptr).await.unwrap(); // durability = cloud: in the store now
    storage.close().await.unwrap();
    let bucket = dir.path().join("data/cloud/bucket/spaces/demo");
    assert!(
        bucket.join("space_root").is_file(),
        "root object in the bucket"
    );
    assert!(bucket.join("wal").is_dir(), "WAL objects in the bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_and_cloud_cluster_examples_build_cluster_nodes() {
    for (name, variant) in [
        ("cluster-node1.toml", "cluster"),
        ("cluster-node2.toml", "cluster"),
        ("cluster-node3.toml", "cluster"),
        ("cloud-cluster.toml", "cloud-cluster"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        // Port 0: a free port, so the test never collides with anything.
        let config = example_in(name, dir.path(), &[("PROTOBASE_CLUSTER__PORT", "0")]);
        assert_eq!(config.variant(), variant, "{name}");
        let cluster = config.cluster.as_ref().unwrap();
        assert_eq!(cluster.port, 0);
        assert_eq!(cluster.cluster_size(), 3);
        assert_eq!(config.node_id(), cluster.server_id);
        let storage = config
            .build()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            storage.network().is_some(),
            "{name}: a cluster node has a network"
        );
        storage.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_in_process_nodes_from_configs_elect_and_publish() {
    let dir = tempfile::tempdir().unwrap();
    let servers = r#"servers = [{ id = "a", address = "a" }, { id = "b", address = "b" }, { id = "c", address = "c" }]"#;
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        let text = format!(
            "[backend]\ntype = \"fs\"\ndir = \"{id}\"\n[cluster]\nserver_id = \"{id}\"\nheartbeat_ms = 100\n{servers}\n[transport]\ntype = \"in_process\"\nhub = \"config-test\"\n"
        );
        let config = parse_toml(&text, dir.path()).unwrap();
        nodes.push(config.build().await.unwrap());
    }
    let ptr = nodes[0].push_bytes(b"from a").await.unwrap();
    let root = nodes[0].set_root(ptr).await.unwrap();
    // b reads a's WAL through a page request, and knows a's root.
    assert_eq!(
        &nodes[1].get_bytes(root.pointer).await.unwrap()[..],
        b"from a"
    );
    let next = nodes[2].set_root(ptr).await.unwrap();
    assert!(next.sequence > root.sequence);
    for n in &nodes {
        n.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_are_cloneable_and_serialise_back_to_toml() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_in("cloud-cluster.toml", dir.path(), &[]);
    let copy = config.clone();
    let text = toml::to_string(&copy).unwrap();
    assert!(text.contains("type = \"cloud\""), "{text}");
    assert!(text.contains("type = \"tcp\""), "{text}");
    let back = parse_toml(&text, dir.path()).unwrap();
    assert_eq!(back.variant(), "cloud-cluster");
    assert_eq!(back.cluster, config.cluster);
    // The psk never shows in Debug output.
    assert!(!format!("{config:?}").contains("example-only-key"));
}

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let dir = tempfile::tempdir().unwrap();
    let config = parse_toml(
        "[backend]\ntype = \"fs\"\ndir = \"s\"\n[cluster]\nserver_id = \"x\"\n",
        dir.path(),
    )
    .unwrap();
    assert_eq!(config.storage, protobase::StorageConfig::default());
    let c = config.cluster.unwrap();
    assert_eq!(
        (
            c.port,
            c.vote_timeout_ms,
            c.read_timeout_ms,
            c.retry_interval_ms,
            c.max_retries
        ),
        (8765, 5_000, 2_000, 1_000, 3)
    );
    assert!(config.transport.is_none() && config.vote.is_none() && config.page_cache.is_none());
}

#[test]
fn unknown_keys_are_named_with_the_file() {
    for (text, key) in [
        ("colour = 1\n[backend]\ntype = \"memory\"\n", "colour"),
        (
            "[storage]\nbufer_size = 1\n[backend]\ntype = \"memory\"\n",
            "storage.bufer_size",
        ),
        ("[backend]\ntype = \"fs\"\ndirr = \"x\"\n", "backend.dirr"),
        (
            "[backend]\ntype = \"memory\"\n[cluster]\nserver_id = \"a\"\nvote_timout_ms = 5\n",
            "cluster.vote_timout_ms",
        ),
        (
            "[backend]\ntype = \"cloud\"\nstaging_dir = \"s\"\nstore = \"file:b\"\nregion = \"x\"\n",
            // Inside a typetag section the path stops at the section.
            "backend.region",
        ),
        (
            "[backend]\ntype = \"memory\"\n[page_cache]\ntype = \"memory\"\nbytes = 5\n",
            "page_cache.bytes",
        ),
    ] {
        let e = err_toml(text);
        let msg = e.to_string();
        assert!(msg.contains("node.toml"), "{msg}");
        assert!(
            msg.contains(&format!("`{}`", key.rsplit('.').next().unwrap())),
            "{msg}"
        );
        assert_eq!(e.key(), Some(key), "{text:?}: {msg}");
    }
}

#[test]
fn bad_values_and_unknown_types_are_named() {
    let e = err_toml("[storage]\nbuffer_size = \"big\"\n[backend]\ntype = \"memory\"\n");
    assert_eq!(e.key(), Some("storage.buffer_size"), "{e}");
    let e = err_toml("[backend]\ntype = \"memory\"\n[cluster]\nport = 70000\n");
    assert_eq!(e.key(), Some("cluster.port"), "{e}");
    let e = err_toml("[backend]\ntype = \"tape\"\n");
    assert_eq!(e.key(), Some("backend.type"), "{e}");
    assert!(e.to_string().contains("tape"), "{e}");
    let e = err_toml("[backend]\ntype = \"memory\"\n[transport]\ntype = \"carrier-pigeon\"\n");
    assert_eq!(e.key(), Some("transport.type"), "{e}");
    let e = err_toml("[backend]\ntype = \"cloud\"\nstaging_dir = \"s\"\nstore = \"ftp://x/y\"\n");
    assert_eq!(e.key(), Some("backend.store"), "{e}");
    assert!(e.to_string().contains("ftp"), "{e}");
    let e = err_toml("[storage]\nbuffer_size = 1\n");
    assert!(e.to_string().contains("backend"), "missing backend: {e}");
    let e = err_toml("[backend\ntype = 1");
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
    assert!(e.to_string().contains("node.toml"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_checked_at_build_time_name_the_file_and_setting() {
    let dir = tempfile::tempdir().unwrap();
    let config = parse_toml(
        "[storage]\nbuffer_size = 0\n[backend]\ntype = \"memory\"\n",
        dir.path(),
    )
    .unwrap();
    let e = config.build().await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("node.toml") && msg.contains("buffer_size"),
        "{msg}"
    );
    // A majority vote without a cluster, a transport without a cluster.
    let config = parse_toml(
        "[backend]\ntype = \"memory\"\n[vote]\ntype = \"majority\"\n",
        dir.path(),
    )
    .unwrap();
    let e = config.build().await.unwrap_err();
    assert!(e.to_string().contains("vote"), "{e}");
    let config = parse_toml(
        "[backend]\ntype = \"memory\"\n[transport]\ntype = \"tcp\"\n",
        dir.path(),
    )
    .unwrap();
    let e = StorageBuilder::from_config(&config).await.unwrap_err();
    assert_eq!(e.key(), Some("transport"), "{e}");
    // A TCP cluster without a key.
    let config = parse_toml(
        "[backend]\ntype = \"memory\"\n[cluster]\nport = 0\n",
        dir.path(),
    )
    .unwrap();
    let e = config.build().await.unwrap_err();
    assert!(e.to_string().contains("psk"), "{e}");
}

#[test]
fn files_missing_or_of_unknown_format_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let e = NodeConfig::load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    assert!(e.to_string().contains("nope.toml"), "{e}");
    let yaml = dir.path().join("node.yaml");
    std::fs::write(&yaml, "backend: {}").unwrap();
    let e = NodeConfig::load(&yaml).unwrap_err();
    assert!(matches!(e, ConfigError::UnknownFormat { .. }), "{e}");
    // JSON files name their keys too.
    let json = dir.path().join("node.json");
    std::fs::write(
        &json,
        r#"{"backend": {"type": "fs", "dir": "x", "mode": 1}}"#,
    )
    .unwrap();
    let e = NodeConfig::load(&json).unwrap_err();
    assert_eq!(e.key(), Some("backend.mode"), "{e}");
    assert!(e.to_string().contains("node.json"), "{e}");
}

#[test]
fn environment_overrides_secrets_and_relative_paths_follow_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(
        &path,
        "[backend]\ntype = \"cloud\"\nstaging_dir = \"st\"\nstore = \"s3://b\"\n\
         [cluster]\nserver_id = \"a\"\n[transport]\ntype = \"tcp\"\n",
    )
    .unwrap();
    let env = [
        ("PROTOBASE_TRANSPORT__PSK", "from-env"),
        (
            "PROTOBASE_BACKEND__STORE_OPTIONS__SECRET_ACCESS_KEY",
            "hidden",
        ),
        ("PROTOBASE_BACKEND__STORE_OPTIONS__ACCESS_KEY_ID", "id"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let config = NodeConfig::load_with_env(&path, env).unwrap();
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("hidden") && !shown.contains("from-env"),
        "{shown}"
    );
    // The overrides reached the components...
    let cloud = config.cloud_backend().unwrap();
    assert_eq!(cloud.store_options["secret_access_key"], "hidden");
    assert_eq!(cloud.store_options["access_key_id"], "id");
    // ...and serialising the configuration redacts the secrets.
    let tree = serde_json::to_value(&config).unwrap();
    let written = tree.to_string();
    assert!(
        !written.contains("hidden") && !written.contains("from-env"),
        "{written}"
    );
    assert_eq!(tree["transport"]["psk"], "<redacted>");
    assert_eq!(
        tree["backend"]["store_options"]["secret_access_key"],
        "<redacted>"
    );
    assert_eq!(tree["backend"]["store_options"]["access_key_id"], "id");
    assert_eq!(
        tree["backend"]["staging_dir"],
        dir.path().join("st").to_str().unwrap()
    );
}

#[test]
fn reference_space_config_fills_the_cluster_section() {
    let dir = tempfile::tempdir().unwrap();
    let space = dir.path().join("space");
    std::fs::create_dir_all(&space).unwrap();
    std::fs::write(
        space.join("space.config"),
        "[cluster]\nserver_id = s1\nhost = 127.0.0.1\nport = 7101\nvote_timeout_ms = 1234\n\
         [servers]\nserver_1 = 127.0.0.1:7101\nserver_2 = 127.0.0.1:7102\nserver_3 = 127.0.0.1:7103\n",
    )
    .unwrap();
    // The node file wins where both set a key.
    let config = parse_toml(
        "[backend]\ntype = \"fs\"\ndir = \"space\"\n[cluster]\nport = 7111\n",
        dir.path(),
    )
    .unwrap();
    let c = config.cluster.expect("space.config makes a cluster node");
    assert_eq!(c.server_id, "s1");
    assert_eq!(c.port, 7111);
    assert_eq!(c.vote_timeout_ms, 1234);
    assert_eq!(c.cluster_size(), 3);
    assert_eq!(c.read_timeout_ms, 2_000, "defaults for the rest");
    // A bad key in space.config names space.config.
    std::fs::write(space.join("space.config"), "[cluster]\ntimeout = 3\n").unwrap();
    let e = parse_toml("[backend]\ntype = \"fs\"\ndir = \"space\"\n", dir.path()).unwrap_err();
    assert_eq!(e.key(), Some("cluster.timeout"));
    assert!(e.to_string().contains("space.config"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_cluster_node_keeps_its_promised_term_beside_its_staging_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = parse_toml(
        "[backend]\ntype = \"cloud\"\nstaging_dir = \"st\"\nstore = \"memory://terms\"\n\
         [cluster]\nserver_id = \"solo\"\nservers = [{ id = \"solo\", address = \"solo\" }]\n\
         [transport]\ntype = \"in_process\"\nhub = \"terms\"\n",
        dir.path(),
    )
    .unwrap();
    assert_eq!(config.variant(), "cloud-cluster");
    let storage = config.build().await.unwrap();
    let ptr = storage.push_bytes(b"x").await.unwrap();
    let root = storage.set_root(ptr).await.unwrap();
    assert!(root.term >= 1, "published under a majority grant");
    storage.close().await.unwrap();
    assert!(dir.path().join("st/cluster_acceptor").is_file());
}

/// `[transport] type = "quic"`: certificate paths relative to the file; a
/// node builds and publishes over QUIC with mutual TLS, and a missing key
/// file is an error naming the transport.
#[cfg(feature = "quic")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_transport_config_builds_a_node_with_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    protobase::transports::generate_dev_certs(&["solo"])
        .unwrap()
        .write_to(dir.path().join("certs"))
        .unwrap();
    let text = |key: &str| {
        format!(
            "[backend]\ntype = \"memory\"\n\
             [cluster]\nserver_id = \"solo\"\nport = 0\nservers = [{{ id = \"solo\", address = \"127.0.0.1:0\" }}]\n\
             [transport]\ntype = \"quic\"\ncert = \"certs/solo.pem\"\nkey = \"{key}\"\nca = \"certs/ca.pem\"\n"
        )
    };
    let config = parse_toml(&text("certs/solo.key"), dir.path()).unwrap();
    assert_eq!(config.variant(), "cluster");
    let storage = config.build().await.unwrap();
    let ptr = storage.push_bytes(b"over quic").await.unwrap();
    let root = storage.set_root(ptr).await.unwrap();
    assert!(root.term >= 1);
    storage.close().await.unwrap();

    let bad = parse_toml(&text("certs/missing.key"), dir.path()).unwrap();
    let err = bad.build().await.unwrap_err().to_string();
    assert!(
        err.contains("node.toml") && err.contains("transport"),
        "{err}"
    );
}

/// `PROTOBASE_CLUSTER__LEASE_MS=9000` works when the file has no
/// `lease_ms` (the field's type decides: a number), a string field takes
/// digits as a string, and a bad value names the variable, not the file.
#[test]
fn environment_overrides_of_keys_absent_from_the_file_are_typed_by_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        "[backend]\ntype = \"memory\"\n[cluster]\nserver_id = \"a\"\n[transport]\ntype = \"tcp\"\n";
    let parse = |env: &[(&str, &str)]| {
        NodeConfig::parse(
            text,
            Syntax::Toml,
            Source("node.toml".into()),
            dir.path(),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    };
    let config = parse(&[
        ("PROTOBASE_CLUSTER__LEASE_MS", "9000"),
        ("PROTOBASE_CLUSTER__PSK", "12345"),
        ("PROTOBASE_STORAGE__BUFFER_SIZE", "4096"), // no [storage]: skipped
    ])
    .unwrap();
    let cluster = config.cluster.as_ref().unwrap();
    assert_eq!(cluster.lease_ms, 9000);
    assert_eq!(cluster.psk.as_deref(), Some("12345"));
    assert_eq!(config.storage.buffer_size, 1 << 20);
    let e = parse(&[("PROTOBASE_CLUSTER__LEASE_MS", "soon")]).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("PROTOBASE_CLUSTER__LEASE_MS"), "{msg}");
    assert!(
        !msg.contains("node.toml"),
        "the file is not to blame: {msg}"
    );
    assert_eq!(e.key(), Some("cluster.lease_ms"), "{msg}");
    // Inside a `type`-tagged section too.
    let e = parse(&[("PROTOBASE_TRANSPORT__MAX_FRAME_BYTES", "lots")]).unwrap_err();
    assert!(
        e.to_string()
            .contains("PROTOBASE_TRANSPORT__MAX_FRAME_BYTES"),
        "{e}"
    );
    let config = parse(&[("PROTOBASE_TRANSPORT__MAX_FRAME_BYTES", "65536")]).unwrap();
    let tree = serde_json::to_value(&config).unwrap();
    assert_eq!(tree["transport"]["max_frame_bytes"], 65536);
}
