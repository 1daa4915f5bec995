//! Where `protobase copy` reads and writes: a space directory or a space in
//! an object store, addressed as
//!
//! ```text
//! ./space, /var/lib/space                 a space directory (reference layout)
//! file:///srv/bucket/spaces/demo          a local directory used as an object store
//! s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1   (feature s3)
//! node.toml, node.json                    the `fs` or `cloud` backend of a node description
//!                                         (credentials, slot size; env overrides apply)
//! ```
//!
//! A directory side is written file by file, an object-store side slot
//! object by slot object (`<prefix>/wal/<wal>/<slot>`), exactly as the
//! providers lay them out, so the copy opens with either provider.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use protobase::backends::cloud::CloudBlockProvider;
use protobase::backends::cloud::StoreUrl;
use protobase::{BlockProvider, Error, StorageBuilder, WalId};

/// One side of a copy.
#[derive(Debug, Clone)]
pub(crate) enum Endpoint {
    /// A space directory.
    Dir(PathBuf),
    /// A space under `prefix` in an object store.
    Store {
        /// The store.
        store: StoreUrl,
        /// Key prefix of the space.
        prefix: String,
        /// Slot size, when the location says (a node description).
        object_size: Option<u64>,
    },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Dir(d) => write!(f, "directory {}", d.display()),
            Endpoint::Store { store, prefix, .. } => write!(f, "{store} prefix {prefix:?}"),
        }
    }
}

/// The space a node description's backend names.
fn from_config(path: &Path) -> Result<Endpoint, String> {
    let config = protobase::NodeConfig::load(path).map_err(|e| e.to_string())?;
    let mut backend = serde_json::to_value(&config.backend).map_err(|e| e.to_string())?;
    let kind = backend
        .as_object_mut()
        .and_then(|m| m.remove("type"))
        .and_then(|t| t.as_str().map(String::from))
        .unwrap_or_default();
    match kind.as_str() {
        "fs" => serde_json::from_value::<protobase::config::FsBackend>(backend)
            .map(|b| Endpoint::Dir(b.dir))
            .map_err(|e| format!("{}: backend: {e}", path.display())),
        // The backend as loaded (not serialised: that redacts secrets).
        "cloud" => {
            let b = config
                .cloud_backend()
                .ok_or_else(|| format!("{}: backend: not a cloud backend", path.display()))?;
            let store = b
                .store_url()
                .map_err(|e| format!("{}: backend: {e}", path.display()))?;
            let prefix = b
                .full_prefix()
                .map_err(|e| format!("{}: backend: {e}", path.display()))?;
            Ok(Endpoint::Store {
                store,
                prefix,
                object_size: Some(b.object_size),
            })
        }
        other => Err(format!(
            "{}: copy reads and writes fs and cloud backends, not {other:?}",
            path.display()
        )),
    }
}

/// Parses a command-line location.
pub(crate) fn parse(arg: &str) -> Result<Endpoint, String> {
    let path = Path::new(arg);
    let described = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml") || e.eq_ignore_ascii_case("json"));
    if described && path.is_file() {
        return from_config(path);
    }
    if arg.contains("://") || arg.starts_with("file:") {
        let store = StoreUrl::parse(arg).map_err(|e| e.to_string())?;
        let prefix = store.prefix().to_string();
        return Ok(Endpoint::Store {
            store,
            prefix,
            object_size: None,
        });
    }
    Ok(Endpoint::Dir(arg.into()))
}

impl Endpoint {
    /// The slot size of an object-store side (the description's, else
    /// `default`); `None` for a directory.
    pub(crate) fn slot_size(&self, default: u64) -> Option<u64> {
        match self {
            Endpoint::Dir(_) => None,
            Endpoint::Store { object_size, .. } => Some(object_size.unwrap_or(default)),
        }
    }

    /// A provider over this side (object stores: slots of `object_size`,
    /// staging in `staging`, no cache).
    pub(crate) async fn provider(
        &self,
        object_size: u64,
        staging: &Path,
        writable: bool,
    ) -> Result<Arc<dyn BlockProvider>, Error> {
        Ok(match self {
            Endpoint::Dir(dir) => {
                use protobase::backends::fs::FileBlockProvider;
                let dir = dir.clone();
                let p = tokio::task::spawn_blocking(move || {
                    if writable {
                        FileBlockProvider::open(dir)
                    } else {
                        FileBlockProvider::open_read_only(dir)
                    }
                })
                .await
                .map_err(|e| Error::io("opening the space", std::io::Error::other(e)))??;
                Arc::new(p)
            }
            Endpoint::Store { store, prefix, .. } => Arc::new(
                CloudBlockProvider::builder(store.open()?, staging)
                    .prefix(prefix.clone())
                    .object_size(object_size)
                    .no_cache()
                    .build()
                    .await?,
            ),
        })
    }

    /// A read-only storage over this side.
    pub(crate) async fn storage(
        &self,
        object_size: u64,
        staging: &Path,
    ) -> Result<protobase::Storage, Error> {
        let provider = self.provider(object_size, staging, false).await?;
        StorageBuilder::new()
            .with_block_provider(provider)
            .read_only(true)
            .page_cache_size(0)
            .build()
            .await
    }

    /// Raw access to this side's WAL bytes.
    pub(crate) fn sink(&self) -> Result<Sink, Error> {
        Ok(match self {
            Endpoint::Dir(d) => {
                std::fs::create_dir_all(d)
                    .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
                Sink::Dir(d.clone())
            }
            Endpoint::Store { store, prefix, .. } => Sink::Store {
                store: store.open()?,
                prefix: prefix.clone(),
            },
        })
    }
}

/// Writes WAL chunks where the matching provider will find them.
#[derive(Debug)]
pub(crate) enum Sink {
    /// `<dir>/<wal>` files.
    Dir(PathBuf),
    /// `<prefix>/wal/<wal>/<slot>` objects; a chunk is one slot.
    Store {
        /// The store.
        store: Arc<dyn ObjectStore>,
        /// Key prefix.
        prefix: String,
    },
}

fn backend(what: String, e: object_store::Error) -> Error {
    let kind = protobase::backends::cloud::store_error_kind(&e);
    Error::backend_with("object store", format!("{what}: {e}"), kind, e)
}

impl Sink {
    fn key(prefix: &str, rest: &str) -> Key {
        if prefix.is_empty() {
            Key::from(rest)
        } else {
            Key::from(format!("{prefix}/{rest}"))
        }
    }

    fn slot_key(prefix: &str, wal: WalId, slot: u64) -> Key {
        Self::key(prefix, &format!("wal/{wal}/{slot}"))
    }

    /// The bytes stored for chunk `index` (`None`: absent). `len` is the
    /// chunk's length in the source; a directory returns at most that much.
    pub(crate) async fn read_chunk(
        &self,
        wal: WalId,
        index: u64,
        start: u64,
        len: u64,
    ) -> Result<Option<Bytes>, Error> {
        match self {
            Sink::Dir(dir) => {
                let path = dir.join(wal.to_string());
                tokio::task::spawn_blocking(move || {
                    let file = match std::fs::File::open(&path) {
                        Ok(f) => f,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
                    };
                    let size = file
                        .metadata()
                        .map_err(|e| Error::io(format!("reading size of {}", path.display()), e))?
                        .len();
                    if size <= start {
                        return Ok(None);
                    }
                    let n = len.min(size - start) as usize;
                    let mut buf = vec![0u8; n];
                    file.read_exact_at(&mut buf, start)
                        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                    Ok(Some(Bytes::from(buf)))
                })
                .await
                .map_err(|e| Error::io("reading the destination", std::io::Error::other(e)))?
            }
            Sink::Store { store, prefix } => {
                let key = Self::slot_key(prefix, wal, index);
                match store.get(&key).await {
                    Ok(r) => Ok(Some(
                        r.bytes()
                            .await
                            .map_err(|e| backend(format!("reading {key}"), e))?,
                    )),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(backend(format!("reading {key}"), e)),
                }
            }
        }
    }

    /// Stores chunk `index` (bytes `[start, start + data.len())`).
    pub(crate) async fn write_chunk(
        &self,
        wal: WalId,
        index: u64,
        start: u64,
        data: Bytes,
    ) -> Result<(), Error> {
        match self {
            Sink::Dir(dir) => {
                let path = dir.join(wal.to_string());
                tokio::task::spawn_blocking(move || {
                    let file = OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(&path)
                        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
                    file.write_all_at(&data, start)
                        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
                })
                .await
                .map_err(|e| Error::io("writing the destination", std::io::Error::other(e)))?
            }
            Sink::Store { store, prefix } => {
                let key = Self::slot_key(prefix, wal, index);
                store
                    .put(&key, PutPayload::from(data))
                    .await
                    .map(|_| ())
                    .map_err(|e| backend(format!("writing {key}"), e))
            }
        }
    }

    /// Makes a WAL of `len` bytes durable (directories: length, fsync).
    pub(crate) async fn finish_wal(&self, wal: WalId, len: u64) -> Result<(), Error> {
        let Sink::Dir(dir) = self else {
            return Ok(());
        };
        let path = dir.join(wal.to_string());
        tokio::task::spawn_blocking(move || {
            let ctx = |e| Error::io(format!("finishing {}", path.display()), e);
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(ctx)?;
            // A longer file (left by another space's WAL of this id) would
            // not be this WAL.
            if file.metadata().map_err(ctx)?.len() != len {
                file.set_len(len).map_err(ctx)?;
            }
            file.sync_all().map_err(ctx)
        })
        .await
        .map_err(|e| Error::io("finishing the destination", std::io::Error::other(e)))?
    }

    /// Makes the directory entries durable (directories only).
    pub(crate) async fn sync(&self) -> Result<(), Error> {
        let Sink::Dir(dir) = self else {
            return Ok(());
        };
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
        })
        .await
        .map_err(|e| Error::io("syncing the destination", std::io::Error::other(e)))?
    }

    /// Stores the space configuration (`space.config`) unless identical.
    pub(crate) async fn write_config(&self, data: Bytes) -> Result<bool, Error> {
        match self {
            Sink::Dir(dir) => {
                let path = dir.join("space.config");
                if std::fs::read(&path).is_ok_and(|old| old == data) {
                    return Ok(false);
                }
                std::fs::write(&path, &data)
                    .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
                Ok(true)
            }
            Sink::Store { store, prefix } => {
                let key = Self::key(prefix, "space.config");
                if let Ok(r) = store.get(&key).await
                    && r.bytes().await.is_ok_and(|old| old == data)
                {
                    return Ok(false);
                }
                store
                    .put(&key, PutPayload::from(data))
                    .await
                    .map_err(|e| backend(format!("writing {key}"), e))?;
                Ok(true)
            }
        }
    }
}
