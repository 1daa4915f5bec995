//! Space addresses: one syntax for every command that reads or writes a
//! space (`root`, `get`, `put`, `inspect`, `verify`, `copy`).
//!
//! ```text
//! ./space, /var/lib/space                 a space directory (reference layout)
//! file:///srv/bucket/spaces/demo          a local directory used as an object store
//! s3://bucket/prefix?endpoint=URL&region=R   S3 or an S3-compatible server (feature s3)
//! gs://bucket/prefix, az://container/prefix  GCS, Azure (features gcs, azure)
//! memory://                               a fresh in-memory store (copy: a dry run)
//! node.toml, node.json                    a node description: its backend (directory or
//!                                         store, slot size, credentials); a cluster
//!                                         member also names its peers
//! ```
//!
//! The slot size of an object-store space is read from the space itself
//! (the objects' sizes and the skip records that end early-sealed slots,
//! see `space.rs`); a size given on the command line or in a node
//! description must agree with it.
//!
//! This file holds the parser only (the `pointer` fuzz target and
//! `tests/fuzz_regressions.rs` compile it); `space.rs` opens what it names.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use protobase::config::StoreConfig;
use protobase::{Error, NodeConfig};

/// Where an object-store space lives.
#[derive(Debug, Clone)]
pub(crate) enum StoreSpec {
    /// A store of the node configuration's kinds (local directory, S3, ...).
    Config(StoreConfig),
    /// Google Cloud Storage (feature `gcs`).
    #[cfg_attr(not(feature = "gcs"), allow(dead_code))]
    Gcs(String),
    /// Azure Blob Storage (feature `azure`).
    #[cfg_attr(not(feature = "azure"), allow(dead_code))]
    Azure(String),
    /// A fresh in-memory store.
    Memory(Arc<object_store::memory::InMemory>),
}

/// What an address names.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A space directory.
    Dir(PathBuf),
    /// A space under `prefix` in an object store.
    Store {
        /// The store.
        spec: StoreSpec,
        /// Key prefix (no leading or trailing `/`).
        prefix: String,
        /// Slot size stated by the address (a node description), if any.
        object_size: Option<u64>,
    },
}

/// A parsed space address.
#[derive(Debug, Clone)]
pub(crate) struct Address {
    /// As given on the command line.
    pub(crate) text: String,
    /// What it names.
    pub(crate) kind: Kind,
    /// The node description it was read from, if any.
    pub(crate) node: Option<NodeConfig>,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// An address error: names the address and what is wrong.
pub(crate) fn bad(
    address: impl fmt::Display,
    what: impl fmt::Display,
) -> Box<dyn std::error::Error> {
    format!("{address}: {what}").into()
}

/// Whether `path` looks like a node description.
fn is_description(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml") || e.eq_ignore_ascii_case("json"))
}

impl Address {
    /// Parses a command-line address.
    pub(crate) fn parse(arg: &str) -> Result<Address, Box<dyn std::error::Error>> {
        let text = arg.to_string();
        if arg.trim().is_empty() {
            // (The raw argument is named, so a blank one shows as itself.)
            let shown = if arg.is_empty() { "\"\"" } else { arg };
            return Err(bad(
                shown,
                "an empty space address (give a directory, URL or node config)",
            ));
        }
        let path = Path::new(arg);
        if is_description(path) && !arg.contains("://") {
            if !path.is_file() {
                return Err(bad(arg, "no such node description (file not found)"));
            }
            return Self::from_description(arg, path);
        }
        if let Some(rest) = arg.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(bad(arg, "a file:// URL needs an absolute path"));
            }
            return Ok(Address {
                text,
                kind: Kind::Store {
                    spec: StoreSpec::Config(StoreConfig::Local { dir: rest.into() }),
                    prefix: String::new(),
                    object_size: None,
                },
                node: None,
            });
        }
        if let Some(rest) = arg.strip_prefix("memory://") {
            if !rest.is_empty() && rest != "/" {
                return Err(bad(arg, "memory:// takes no path"));
            }
            return Ok(Address {
                text,
                kind: Kind::Store {
                    spec: StoreSpec::Memory(Arc::new(object_store::memory::InMemory::new())),
                    prefix: String::new(),
                    object_size: None,
                },
                node: None,
            });
        }
        for (scheme, make) in [("s3://", 0u8), ("gs://", 1u8), ("az://", 2u8)] {
            if let Some(rest) = arg.strip_prefix(scheme) {
                return Self::bucket_url(arg, rest, make);
            }
        }
        if arg.contains("://") {
            return Err(bad(
                arg,
                "unknown scheme (use a path, file://, s3://, gs://, az://, memory:// or a node \
                 description .toml/.json)",
            ));
        }
        Ok(Address {
            text,
            kind: Kind::Dir(arg.into()),
            node: None,
        })
    }

    fn bucket_url(arg: &str, rest: &str, which: u8) -> Result<Address, Box<dyn std::error::Error>> {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(bad(arg, "no bucket"));
        }
        let mut endpoint = None;
        let mut region = None;
        let mut instance = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("endpoint", v)) if which == 0 => endpoint = Some(v.to_string()),
                Some(("region", v)) if which == 0 => region = Some(v.to_string()),
                Some(("credentials", "instance")) if which == 0 => instance = true,
                _ => {
                    return Err(bad(
                        arg,
                        format!(
                            "unknown query parameter {pair:?} (s3:// takes endpoint, region, \
                             credentials=instance)"
                        ),
                    ));
                }
            }
        }
        let spec = match which {
            0 => {
                let env = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
                let has_credentials = env("AWS_ACCESS_KEY_ID")
                    || env("AWS_WEB_IDENTITY_TOKEN_FILE")
                    || env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                    || env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
                if endpoint.is_none() && !has_credentials && !instance {
                    return Err(bad(
                        arg,
                        "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for an \
                         S3-compatible server add ?endpoint=http://host:port; on EC2 with an \
                         instance role add ?credentials=instance)",
                    ));
                }
                StoreSpec::Config(StoreConfig::S3 {
                    bucket: bucket.to_string(),
                    endpoint,
                    region,
                    access_key_id: None,
                    secret_access_key: None,
                })
            }
            1 => StoreSpec::Gcs(bucket.to_string()),
            _ => StoreSpec::Azure(bucket.to_string()),
        };
        Ok(Address {
            text: arg.to_string(),
            kind: Kind::Store {
                spec,
                prefix: prefix.trim_matches('/').to_string(),
                object_size: None,
            },
            node: None,
        })
    }

    /// The space a node description's backend names.
    fn from_description(arg: &str, path: &Path) -> Result<Address, Box<dyn std::error::Error>> {
        let config = NodeConfig::load(path)?;
        let mut backend = serde_json::to_value(&config.backend)?;
        let kind = backend
            .as_object_mut()
            .and_then(|m| m.remove("type"))
            .and_then(|t| t.as_str().map(String::from))
            .unwrap_or_default();
        let kind = match kind.as_str() {
            "fs" => Kind::Dir(
                serde_json::from_value::<protobase::config::FsBackend>(backend)
                    .map_err(|e| bad(arg, format!("backend: {e}")))?
                    .dir,
            ),
            "cloud" => {
                let b = serde_json::from_value::<protobase::config::CloudBackend>(backend)
                    .map_err(|e| bad(arg, format!("backend: {e}")))?;
                Kind::Store {
                    spec: StoreSpec::Config(b.store),
                    prefix: b.prefix,
                    object_size: Some(b.object_size),
                }
            }
            other => {
                return Err(bad(
                    arg,
                    format!(
                        "commands read and write fs and cloud backends, not {other:?} (an \
                         in-memory space lives only inside its process)"
                    ),
                ));
            }
        };
        Ok(Address {
            text: arg.to_string(),
            kind,
            node: Some(config),
        })
    }

    /// The cluster section of the node description, if this is a member's.
    pub(crate) fn cluster(&self) -> Option<&protobase::cluster::ClusterConfig> {
        self.node.as_ref().and_then(|n| n.cluster.as_ref())
    }

    /// The directory of a directory space.
    pub(crate) fn dir(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Dir(d) => Some(d),
            Kind::Store { .. } => None,
        }
    }

    /// Whether this is a fresh in-memory store.
    pub(crate) fn is_memory(&self) -> bool {
        matches!(
            self.kind,
            Kind::Store {
                spec: StoreSpec::Memory(_),
                ..
            }
        )
    }

    /// Opens the object store of a store address.
    pub(crate) fn open_store(&self) -> Result<(Arc<dyn ObjectStore>, String), Error> {
        let Kind::Store { spec, prefix, .. } = &self.kind else {
            return Err(Error::invalid("address", format!("{self} is a directory")));
        };
        let store: Arc<dyn ObjectStore> = match spec {
            StoreSpec::Config(c) => {
                if let StoreConfig::S3 {
                    endpoint: None,
                    access_key_id: None,
                    ..
                } = c
                    && self.node.is_some()
                    && std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
                    && std::env::var_os("AWS_WEB_IDENTITY_TOKEN_FILE").is_none()
                {
                    return Err(Error::invalid(
                        "address",
                        format!(
                            "{self}: no S3 credentials: set backend.store.access_key_id or \
                             AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
                        ),
                    ));
                }
                c.open()?
            }
            #[cfg(feature = "gcs")]
            StoreSpec::Gcs(bucket) => {
                Arc::new(protobase::backends::cloud::gcs_store(bucket).map_err(|e| {
                    Error::Backend {
                        backend: "gcs".into(),
                        message: format!("{self}: {e}"),
                    }
                })?)
            }
            #[cfg(feature = "azure")]
            StoreSpec::Azure(container) => Arc::new(
                protobase::backends::cloud::azure_store(container, false).map_err(|e| {
                    Error::Backend {
                        backend: "azure".into(),
                        message: format!("{self}: {e}"),
                    }
                })?,
            ),
            #[allow(unreachable_patterns)]
            StoreSpec::Gcs(_) | StoreSpec::Azure(_) => {
                return Err(Error::invalid(
                    "address",
                    format!("{self}: this protobase was built without the gcs/azure features"),
                ));
            }
            StoreSpec::Memory(m) => m.clone(),
        };
        Ok((store, prefix.clone()))
    }

    /// The slot size this address states (a node description's), if any.
    pub(crate) fn stated_object_size(&self) -> Option<u64> {
        match &self.kind {
            Kind::Store { object_size, .. } => *object_size,
            Kind::Dir(_) => None,
        }
    }
}

/// Parses a location as `protobase copy` did (the fuzz target's entry):
/// an error message names the argument.
#[allow(dead_code)] // used by the `pointer` fuzz target and its regression test
pub(crate) fn parse(arg: &str) -> Result<Address, String> {
    Address::parse(arg).map_err(|e| e.to_string())
}
