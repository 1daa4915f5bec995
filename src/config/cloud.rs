//! `type = "cloud"` backend (feature `cloud`): a
//! [`CloudBlockProvider`] over an
//! object store described by `[backend.store]` (tagged by `type`):
//!
//! | `store.type` | fields |
//! |---|---|
//! | `local` | `dir`: a directory used as a bucket |
//! | `memory` | `name`: stores with one name are shared within the process |
//! | `s3` | `bucket`, `endpoint`, `region`, `access_key_id`, `secret_access_key` (feature `s3`) |
//!
//! S3 credentials not in the file come from the usual `AWS_*` variables, and
//! any key can be overridden from the environment
//! (`PROTOBASE_BACKEND__STORE__SECRET_ACCESS_KEY`, see [`super::env`]).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::BuildContext;
use super::backend::{BackendConfig, resolve};
use crate::backends::cloud::{
    CloudBlockProvider, DEFAULT_CACHE_SIZE, DEFAULT_OBJECT_SIZE, DEFAULT_UPLOAD_INTERVAL_MS,
    Durability,
};
use crate::builder::StorageBuilder;
use crate::error::{Error, Result};

/// What a commit waits for (see [`Durability`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityConfig {
    /// The local staging fsync (default).
    #[default]
    Local,
    /// The object store.
    Cloud,
}

/// The object store of a cloud backend.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum StoreConfig {
    /// A local directory as the bucket (`object_store`'s `LocalFileSystem`).
    Local {
        /// The directory (created if missing; relative to the config file).
        dir: PathBuf,
    },
    /// An in-memory store; every storage naming the same `name` in one
    /// process shares it.
    Memory {
        /// Name of the shared store (default `"default"`).
        #[serde(default)]
        name: Option<String>,
    },
    /// S3 or an S3-compatible server (feature `s3`).
    S3 {
        /// The bucket (must exist).
        bucket: String,
        /// Endpoint of a compatible server (`http://127.0.0.1:9000`):
        /// path-style requests, plain HTTP allowed.
        #[serde(default)]
        endpoint: Option<String>,
        /// Region (default: `AWS_REGION`, or `us-east-1` with an endpoint).
        #[serde(default)]
        region: Option<String>,
        /// Access key id (default: `AWS_ACCESS_KEY_ID`).
        #[serde(default)]
        access_key_id: Option<String>,
        /// Secret key (default: `AWS_SECRET_ACCESS_KEY`).
        #[serde(default)]
        secret_access_key: Option<String>,
    },
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreConfig::Local { dir } => f.debug_struct("Local").field("dir", dir).finish(),
            StoreConfig::Memory { name } => f.debug_struct("Memory").field("name", name).finish(),
            StoreConfig::S3 {
                bucket,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
            } => f
                .debug_struct("S3")
                .field("bucket", bucket)
                .field("endpoint", endpoint)
                .field("region", region)
                .field("access_key_id", access_key_id)
                .field(
                    "secret_access_key",
                    &secret_access_key.as_ref().map(|_| "<redacted>"),
                )
                .finish(),
        }
    }
}

impl StoreConfig {
    /// Opens the store.
    pub fn open(&self) -> Result<Arc<dyn ObjectStore>> {
        let fail = |e: object_store::Error| Error::Backend {
            backend: "object store".into(),
            message: e.to_string(),
        };
        match self {
            StoreConfig::Local { dir } => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
                let store =
                    object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(fail)?;
                Ok(Arc::new(store))
            }
            StoreConfig::Memory { name } => {
                Ok(shared_memory_store(name.as_deref().unwrap_or("default")))
            }
            #[cfg(feature = "s3")]
            StoreConfig::S3 {
                bucket,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
            } => {
                use object_store::aws::AmazonS3Builder;
                let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
                let env = |k: &str| std::env::var_os(k).is_some();
                if let Some(ep) = endpoint {
                    b = b
                        .with_endpoint(ep)
                        .with_allow_http(true)
                        .with_virtual_hosted_style_request(false);
                    if access_key_id.is_none() && !env("AWS_ACCESS_KEY_ID") {
                        b = b.with_access_key_id("test").with_secret_access_key("test");
                    }
                    if region.is_none() && !env("AWS_REGION") && !env("AWS_DEFAULT_REGION") {
                        b = b.with_region("us-east-1");
                    }
                }
                if let Some(r) = region {
                    b = b.with_region(r);
                }
                if let Some(k) = access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(s) = secret_access_key {
                    b = b.with_secret_access_key(s);
                }
                Ok(Arc::new(b.build().map_err(fail)?))
            }
            #[cfg(not(feature = "s3"))]
            StoreConfig::S3 { .. } => Err(Error::invalid(
                "store",
                "type = \"s3\" needs protobase built with feature `s3`",
            )),
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        if let StoreConfig::Local { dir } = self {
            resolve(base, dir);
        }
    }
}

/// The process-wide in-memory store called `name`.
pub fn shared_memory_store(name: &str) -> Arc<dyn ObjectStore> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    let store: Arc<InMemory> = STORES
        .get_or_init(Default::default)
        .lock()
        .entry(name.to_string())
        .or_insert_with(|| Arc::new(InMemory::new()))
        .clone();
    store
}

fn default_object_size() -> u64 {
    DEFAULT_OBJECT_SIZE
}
fn default_upload_interval_ms() -> u64 {
    DEFAULT_UPLOAD_INTERVAL_MS
}
fn default_cache_size() -> u64 {
    DEFAULT_CACHE_SIZE
}

/// `type = "cloud"`: WAL slots and roots in an object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudBackend {
    /// The object store.
    pub store: StoreConfig,
    /// Key prefix of the space in the store (default: none).
    #[serde(default)]
    pub prefix: String,
    /// Local staging directory for WAL bytes not yet uploaded (one provider
    /// per directory; relative to the config file). A cluster node also
    /// keeps its promised-term ceiling here (`cluster_term`).
    pub staging_dir: PathBuf,
    /// Slot (object) size in bytes (default 5 MiB).
    #[serde(default = "default_object_size")]
    pub object_size: u64,
    /// Interval of the background uploader (default 5 000 ms).
    #[serde(default = "default_upload_interval_ms")]
    pub upload_interval_ms: u64,
    /// What a commit waits for (default `local`).
    #[serde(default)]
    pub durability: DurabilityConfig,
    /// Cache of downloaded objects (default `<staging_dir>/cloud_cache`).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Byte budget of the cache directory (default 500 MiB; 0 disables).
    #[serde(default = "default_cache_size")]
    pub cache_size: u64,
    /// Cloud-cluster only: directory of the node's cloud page cache, which
    /// also serves peers (default
    /// `<staging_dir>/cloud_page_cache/server_<server_id>`).
    #[serde(default)]
    pub page_cache_dir: Option<PathBuf>,
    /// Cloud-cluster only: disk budget of the cloud page cache (default
    /// 500 MiB).
    #[serde(default = "default_cache_size")]
    pub page_cache_size: u64,
}

impl CloudBackend {
    /// Opens the store and builds the provider (starts its uploader).
    pub async fn provider(&self) -> Result<CloudBlockProvider> {
        let mut b = CloudBlockProvider::builder(self.store.open()?, &self.staging_dir)
            .prefix(self.prefix.clone())
            .object_size(self.object_size)
            .upload_interval_ms(self.upload_interval_ms)
            .durability(match self.durability {
                DurabilityConfig::Local => Durability::Local,
                DurabilityConfig::Cloud => Durability::Cloud,
            })
            .cache_size(self.cache_size);
        if let Some(dir) = &self.cache_dir {
            b = b.cache_dir(dir);
        }
        b.build().await
    }
}

#[typetag::serde(name = "cloud")]
#[async_trait]
impl BackendConfig for CloudBackend {
    async fn builder(&self, _ctx: &BuildContext<'_>) -> Result<StorageBuilder> {
        // `StorageBuilder::cloud` keeps a cloud-cluster voter's promised
        // term beside the staging files (`cluster_term`, which the staging
        // recovery ignores) and puts the cloud page cache there.
        let mut b = StorageBuilder::cloud(Arc::new(self.provider().await?))
            .cloud_page_cache_size(self.page_cache_size);
        if let Some(dir) = &self.page_cache_dir {
            b = b.cloud_page_cache_dir(dir);
        }
        Ok(b)
    }

    fn is_object_store(&self) -> bool {
        true
    }

    fn resolve_paths(&mut self, base: &Path) {
        self.store.resolve_paths(base);
        resolve(base, &mut self.staging_dir);
        if let Some(d) = &mut self.cache_dir {
            resolve(base, d);
        }
        if let Some(d) = &mut self.page_cache_dir {
            resolve(base, d);
        }
    }
}
