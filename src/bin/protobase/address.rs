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
//! Store URLs are `protobase::backends::cloud::StoreUrl`s: their query
//! takes the store's `object_store` options (`endpoint`, `region`,
//! `access_key_id`, `timeout`, `retry_max_retries`, ...). An `s3://` URL
//! with neither an endpoint nor credentials (options or `AWS_*`) is refused
//! at once, unless it says `credentials=instance` (EC2 instance role).
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
use protobase::backends::cloud::StoreUrl;
use protobase::backends::cloud::url::is_secret_option;
use protobase::{Error, NodeConfig};

/// What an address names.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A space directory.
    Dir(PathBuf),
    /// A space under `prefix` in an object store.
    Store {
        /// The store.
        url: StoreUrl,
        /// Key prefix (no leading or trailing `/`).
        prefix: String,
        /// Slot size stated by the address (a node description), if any.
        object_size: Option<u64>,
    },
}

/// A parsed space address.
#[derive(Debug, Clone)]
pub(crate) struct Address {
    /// As given on the command line (for a store URL: secrets redacted).
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
        if !arg.contains("://") && !arg.starts_with("file:") {
            return Ok(Address {
                text: arg.to_string(),
                kind: Kind::Dir(arg.into()),
                node: None,
            });
        }
        // Shown without the query's secrets; the error of a URL that does
        // not parse names the address as typed up to its query.
        let shown = arg.split_once('?').map_or(arg, |(a, _)| a);
        let (text, instance) = without_instance_flag(arg);
        let url = StoreUrl::parse(&text).map_err(|e| {
            let e = e.to_string();
            let e = e.strip_prefix("invalid store: ").unwrap_or(&e).to_string();
            if e.contains(shown) {
                e.into()
            } else {
                bad(shown, e)
            }
        })?;
        if url.scheme() == "s3" && !instance && !has_s3_credentials(&url) {
            return Err(bad(
                shown,
                "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for an \
                 S3-compatible server add ?endpoint=http://host:port; on EC2 with an instance \
                 role add ?credentials=instance)",
            ));
        }
        let prefix = url.prefix().to_string();
        Ok(Address {
            text: redacted(arg),
            kind: Kind::Store {
                url,
                prefix,
                object_size: None,
            },
            node: None,
        })
    }

    /// The space a node description's backend names.
    fn from_description(arg: &str, path: &Path) -> Result<Address, Box<dyn std::error::Error>> {
        let config = NodeConfig::load(path)?;
        let kind = if let Some(b) = config.cloud_backend() {
            let url = b
                .store_url()
                .map_err(|e| bad(arg, format!("backend: {e}")))?;
            let prefix = b
                .full_prefix()
                .map_err(|e| bad(arg, format!("backend: {e}")))?;
            if url.scheme() == "s3" && !has_s3_credentials(&url) {
                return Err(bad(
                    arg,
                    "no S3 credentials: set access_key_id and secret_access_key in \
                     [backend.store_options] (or the store URL), or AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY",
                ));
            }
            Kind::Store {
                url,
                prefix,
                object_size: Some(b.object_size),
            }
        } else if let Some(dir) = config.backend.space_dir() {
            Kind::Dir(dir.to_path_buf())
        } else {
            let kind = serde_json::to_value(&config.backend)?
                .get("type")
                .and_then(|t| t.as_str().map(String::from))
                .unwrap_or_default();
            return Err(bad(
                arg,
                format!(
                    "commands read and write fs and cloud backends, not {kind:?} (an in-memory \
                     space lives only inside its process)"
                ),
            ));
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

    /// Whether this is an in-memory store (fresh in this process).
    pub(crate) fn is_memory(&self) -> bool {
        matches!(&self.kind, Kind::Store { url, .. } if url.scheme() == "memory")
    }

    /// Opens the object store of a store address.
    pub(crate) fn open_store(&self) -> Result<(Arc<dyn ObjectStore>, String), Error> {
        let Kind::Store { url, prefix, .. } = &self.kind else {
            return Err(Error::invalid("address", format!("{self} is a directory")));
        };
        Ok((url.open()?, prefix.clone()))
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

/// `arg` without a `credentials=instance` query parameter, and whether it
/// had one.
fn without_instance_flag(arg: &str) -> (String, bool) {
    let Some((head, query)) = arg.split_once('?') else {
        return (arg.to_string(), false);
    };
    let mut instance = false;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|p| {
            let flag = *p == "credentials=instance";
            instance |= flag;
            !flag
        })
        .collect();
    if rest.iter().all(|p| p.is_empty()) {
        (head.to_string(), instance)
    } else {
        (format!("{head}?{}", rest.join("&")), instance)
    }
}

/// Whether an S3 store has an endpoint (a development server: test
/// credentials) or credentials, in its options or the environment.
fn has_s3_credentials(url: &StoreUrl) -> bool {
    let opt = |k: &str| {
        url.option(k)
            .or_else(|| url.option(&format!("aws_{k}")))
            .is_some()
    };
    let env = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    opt("endpoint")
        || opt("endpoint_url")
        || opt("access_key_id")
        || env("AWS_ACCESS_KEY_ID")
        || env("AWS_WEB_IDENTITY_TOKEN_FILE")
        || env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        || env("AWS_CONTAINER_CREDENTIALS_FULL_URI")
}

/// `arg` with the values of secret query options replaced.
fn redacted(arg: &str) -> String {
    let Some((head, query)) = arg.split_once('?') else {
        return arg.to_string();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if is_secret_option(k) => format!("{k}=<redacted>"),
            _ => p.to_string(),
        })
        .collect();
    format!("{head}?{}", pairs.join("&"))
}
