//! `type = "cloud"` backend (feature `cloud`): a
//! [`CloudBlockProvider`] over the object store named by the URL `store`
//! ([`StoreUrl`]: `memory://`, `file://`, `s3://`, `gs://`, `az://`) and
//! the `object_store` options of the `[backend.store_options]` table:
//!
//! ```toml
//! [backend]
//! type = "cloud"
//! store = "s3://my-bucket/spaces/a?endpoint=http://127.0.0.1:9000"
//! staging_dir = "data/staging"
//!
//! [backend.store_options]
//! region = "eu-west-1"
//! timeout = "30s"             # HTTP client options
//! retry_max_retries = "3"     # the HTTP client's retry
//! ```
//!
//! Credentials not in the file come from the usual `AWS_*`, `GOOGLE_*`,
//! `AZURE_*` variables, and any key can be set from the environment
//! (`PROTOBASE_BACKEND__STORE_OPTIONS__SECRET_ACCESS_KEY`, see
//! [`super::env`]). Secret options are redacted when a configuration is
//! serialised or shown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::BuildContext;
use super::backend::{BackendConfig, resolve};
use crate::backends::cloud::url::is_secret_option;
use crate::backends::cloud::{
    CloudBlockProvider, DEFAULT_CACHE_SIZE, DEFAULT_OBJECT_SIZE, DEFAULT_UPLOAD_INTERVAL_MS,
    Durability,
};
pub use crate::backends::cloud::{StoreUrl, shared_memory_store};
use crate::builder::StorageBuilder;
use crate::error::Result;

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

/// Writes a store URL with the values of secret query options redacted.
fn redacted_url<S: serde::Serializer>(url: &str, s: S) -> std::result::Result<S::Ok, S::Error> {
    match StoreUrl::parse(url) {
        Ok(u) => s.serialize_str(&u.to_redacted_string()),
        Err(_) => s.serialize_str(url),
    }
}

/// Reads a store URL, checking its form (scheme, bucket) at once.
fn checked_url<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    let url = String::deserialize(d)?;
    StoreUrl::parse(&url).map_err(serde::de::Error::custom)?;
    Ok(url)
}

/// Writes store options with secret values redacted.
fn redacted_options<S: serde::Serializer>(
    options: &BTreeMap<String, String>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(options.len()))?;
    for (k, v) in options {
        let v = if is_secret_option(k) {
            "<redacted>"
        } else {
            v.as_str()
        };
        m.serialize_entry(k, v)?;
    }
    m.end()
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
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudBackend {
    /// The object store, as a URL ([`StoreUrl`]): `s3://bucket/prefix?endpoint=...`,
    /// `gs://bucket`, `az://container`, `file:///dir` (or `file:dir`,
    /// relative to the config file), `memory://name`.
    #[serde(serialize_with = "redacted_url", deserialize_with = "checked_url")]
    pub store: String,
    /// `object_store` options of the store (its builder's keys, HTTP
    /// client options such as `timeout`, and `retry_*`), added to the
    /// URL's query options.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "redacted_options"
    )]
    pub store_options: BTreeMap<String, String>,
    /// Key prefix of the space in the store, below the URL's own path
    /// (default: none).
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

impl std::fmt::Debug for CloudBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options: BTreeMap<&str, &str> = self
            .store_options
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_option(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("CloudBackend")
            .field(
                "store",
                &StoreUrl::parse(&self.store).map_or(self.store.clone(), |u| u.to_string()),
            )
            .field("store_options", &options)
            .field("prefix", &self.prefix)
            .field("staging_dir", &self.staging_dir)
            .field("object_size", &self.object_size)
            .field("upload_interval_ms", &self.upload_interval_ms)
            .field("durability", &self.durability)
            .field("cache_dir", &self.cache_dir)
            .field("cache_size", &self.cache_size)
            .field("page_cache_dir", &self.page_cache_dir)
            .field("page_cache_size", &self.page_cache_size)
            .finish()
    }
}

impl CloudBackend {
    /// The store's URL with the `store_options` added.
    pub fn store_url(&self) -> Result<StoreUrl> {
        Ok(StoreUrl::parse(&self.store)?.with_options(self.store_options.clone()))
    }

    /// The key prefix of the space: the URL's path, then `prefix`.
    pub fn full_prefix(&self) -> Result<String> {
        let url = StoreUrl::parse(&self.store)?;
        Ok([url.prefix(), self.prefix.trim_matches('/')]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("/"))
    }

    /// Opens the store and builds the provider (starts its uploader).
    pub async fn provider(&self) -> Result<CloudBlockProvider> {
        let store = self.store_url()?.open()?;
        let mut b = CloudBlockProvider::builder(store, &self.staging_dir)
            .prefix(self.full_prefix()?)
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

    fn as_cloud(&self) -> Option<&CloudBackend> {
        Some(self)
    }

    fn resolve_paths(&mut self, base: &Path) {
        if let Ok(mut url) = StoreUrl::parse(&self.store)
            && url.dir().is_some_and(|d| d.is_relative())
        {
            url.resolve_paths(base);
            if let Some(d) = url.dir() {
                let query = self.store.split_once('?').map(|(_, q)| q);
                self.store = match query {
                    Some(q) => format!("file://{}?{q}", d.display()),
                    None => format!("file://{}", d.display()),
                };
            }
        }
        resolve(base, &mut self.staging_dir);
        if let Some(d) = &mut self.cache_dir {
            resolve(base, d);
        }
        if let Some(d) = &mut self.page_cache_dir {
            resolve(base, d);
        }
    }
}
