//! [`StoreUrl`]: an object store named by a URL and `object_store` options,
//! in configuration files and on the command line.
//!
//! | URL | store | feature |
//! |---|---|---|
//! | `memory://name/prefix` | the process-wide in-memory store `name` ([`shared_memory_store`]) | `cloud` |
//! | `file:///abs/dir/prefix`, `file:rel/dir` | a local directory as the bucket (`LocalFileSystem`; created if missing) | `cloud` |
//! | `s3://bucket/prefix` | S3 or an S3-compatible server | `s3` |
//! | `gs://bucket/prefix` | Google Cloud Storage | `gcs` |
//! | `az://container/prefix` | Azure Blob Storage | `azure` |
//!
//! The URL's path below the bucket is the space's key prefix
//! ([`prefix`](StoreUrl::prefix)); for `file:` URLs the whole path is the
//! directory. Options come from the URL's query (`?endpoint=...&region=...`)
//! and from [`with_option`](StoreUrl::with_option) (a config file's
//! `store_options` table, where the table wins). Every key `object_store`'s
//! builder of that scheme knows is accepted — for S3 `endpoint`, `region`,
//! `access_key_id`, `secret_access_key`, `allow_http`, ...; for GCS
//! `service_account_key`, `application_credentials`, ...; for Azure
//! `account_name`, `access_key`, `use_emulator`, ... — including the HTTP
//! client's options (`timeout`, `connect_timeout`, `pool_idle_timeout`,
//! `allow_invalid_certificates`, ...). The retry of the HTTP client is set
//! with `retry_max_retries`, `retry_timeout` (total, e.g. `30s`),
//! `retry_init_backoff` and `retry_max_backoff`. An unknown key is an
//! error. Credentials not given come from the environment (`AWS_*`,
//! `GOOGLE_*`, `AZURE_*`).
//!
//! An S3 URL with an `endpoint` talks path-style to that server and allows
//! plain HTTP; without any credentials it uses `test`/`test` and region
//! `us-east-1` (what moto, MinIO or SeaweedFS in development accept).
//!
//! `Display` and `Debug` redact secret values (keys naming a secret, key,
//! password, token or signature).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use parking_lot::Mutex;

use crate::error::{Error, ErrorKind, Result};

/// An object store location: a URL plus options; see the [module docs](self).
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    scheme: Scheme,
    /// The bucket, container or memory store name (`file:`: empty).
    bucket: String,
    /// `file:`: the directory; otherwise the key prefix.
    path: String,
    options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Memory,
    File,
    S3,
    Gcs,
    Azure,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Memory => "memory",
            Scheme::File => "file",
            Scheme::S3 => "s3",
            Scheme::Gcs => "gs",
            Scheme::Azure => "az",
        }
    }
}

/// Whether an option's value is a secret (redacted when shown or written).
pub fn is_secret_option(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let k = k.as_str();
    !k.ends_with("key_id")
        && [
            "secret",
            "password",
            "token",
            "signature",
            "sas",
            "access_key",
            "account_key",
            "private_key",
            "service_account_key",
        ]
        .iter()
        .any(|s| k.contains(s))
}

fn invalid(url: &str, reason: impl fmt::Display) -> Error {
    Error::invalid("store", format!("{}: {reason}", redact_url(url)))
}

/// `url` with the values of secret query parameters replaced.
fn redact_url(url: &str) -> String {
    let Some((head, query)) = url.split_once('?') else {
        return url.to_string();
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

impl StoreUrl {
    /// Parses a store URL (options in its query string are kept).
    pub fn parse(text: &str) -> Result<Self> {
        let (scheme, rest) = text
            .split_once(':')
            .ok_or_else(|| invalid(text, "not a URL (memory://, file://, s3://, gs://, az://)"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "memory" => Scheme::Memory,
            "file" => Scheme::File,
            "s3" | "s3a" => Scheme::S3,
            "gs" | "gcs" => Scheme::Gcs,
            "az" | "azure" | "abfs" => Scheme::Azure,
            other => {
                return Err(invalid(
                    text,
                    format!("unknown scheme {other:?} (memory, file, s3, gs, az)"),
                ));
            }
        };
        let (body, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut options = BTreeMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
            options.insert(decode(k), decode(v));
        }
        let (bucket, path) = match scheme {
            Scheme::File => {
                // file:///abs, file://localhost/abs, file:rel
                let p = match body.strip_prefix("//") {
                    Some(r) => match r.find('/') {
                        Some(0) => r.to_string(),
                        Some(i) if &r[..i] == "localhost" => r[i..].to_string(),
                        _ => {
                            return Err(invalid(
                                text,
                                "a file:// URL needs an absolute path (file:///dir) or use file:relative/dir",
                            ));
                        }
                    },
                    None => body.to_string(),
                };
                if p.is_empty() {
                    return Err(invalid(text, "no directory"));
                }
                (String::new(), decode(&p))
            }
            _ => {
                let r = body.strip_prefix("//").ok_or_else(|| {
                    invalid(
                        text,
                        format!("expected {}://<name>/<prefix>", scheme.as_str()),
                    )
                })?;
                let (b, p) = r.split_once('/').unwrap_or((r, ""));
                if b.is_empty() && scheme != Scheme::Memory {
                    return Err(invalid(text, "no bucket"));
                }
                let b = if b.is_empty() { "default" } else { b };
                (decode(b), decode(p.trim_matches('/')))
            }
        };
        Ok(StoreUrl {
            scheme,
            bucket,
            path,
            options,
        })
    }

    /// Adds (or replaces) an option.
    pub fn with_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }

    /// Adds (or replaces) options.
    pub fn with_options<K: Into<String>, V: Into<String>>(
        mut self,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        for (k, v) in options {
            self.options.insert(k.into(), v.into());
        }
        self
    }

    /// The value of option `key` (from the URL's query or
    /// [`with_option`](Self::with_option)), if set.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options.get(key).map(String::as_str)
    }

    /// The scheme (`memory`, `file`, `s3`, `gs`, `az`).
    pub fn scheme(&self) -> &'static str {
        self.scheme.as_str()
    }

    /// The key prefix the URL's path gives (empty for `file:` URLs and a
    /// bare bucket).
    pub fn prefix(&self) -> &str {
        match self.scheme {
            Scheme::File => "",
            _ => &self.path,
        }
    }

    /// The directory of a `file:` URL.
    pub fn dir(&self) -> Option<&Path> {
        (self.scheme == Scheme::File).then(|| Path::new(&self.path))
    }

    /// Makes a relative `file:` directory relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.scheme == Scheme::File && Path::new(&self.path).is_relative() {
            self.path = base.join(&self.path).to_string_lossy().into_owned();
        }
    }

    /// The URL as written, secrets in the query redacted.
    pub fn to_redacted_string(&self) -> String {
        let mut s = match self.scheme {
            Scheme::File => format!("file://{}", self.path),
            _ if self.path.is_empty() => format!("{}://{}", self.scheme(), self.bucket),
            _ => format!("{}://{}/{}", self.scheme(), self.bucket, self.path),
        };
        let mut sep = '?';
        for (k, v) in &self.options {
            let v = if is_secret_option(k) {
                "<redacted>"
            } else {
                v.as_str()
            };
            s.push(sep);
            s.push_str(&format!("{k}={v}"));
            sep = '&';
        }
        s
    }

    /// Opens the store (its key prefix is [`prefix`](Self::prefix), for
    /// the provider to apply).
    pub fn open(&self) -> Result<Arc<dyn ObjectStore>> {
        let url = self.to_redacted_string();
        let fail = |e: object_store::Error| {
            let kind = match super::store_error_kind(&e) {
                ErrorKind::Unavailable => ErrorKind::Invalid,
                k => k,
            };
            Error::backend_with("object store", format!("{url}: {e}"), kind, e)
        };
        match self.scheme {
            Scheme::Memory => {
                self.no_options(&url)?;
                Ok(shared_memory_store(&self.bucket))
            }
            Scheme::File => {
                self.no_options(&url)?;
                let dir = PathBuf::from(&self.path);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
                let store =
                    object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(fail)?;
                Ok(Arc::new(store))
            }
            Scheme::S3 => self.open_s3(&url, fail),
            Scheme::Gcs => self.open_gcs(&url, fail),
            Scheme::Azure => self.open_azure(&url, fail),
        }
    }

    fn no_options(&self, url: &str) -> Result<()> {
        match self.options.keys().next() {
            Some(k) => Err(invalid(
                url,
                format!("{} stores take no option {k:?}", self.scheme()),
            )),
            None => Ok(()),
        }
    }

    /// The options but the retry ones, and the retry configuration.
    #[cfg_attr(
        not(any(feature = "s3", feature = "gcs", feature = "azure")),
        allow(dead_code)
    )]
    fn split_options(&self, url: &str) -> Result<SplitOptions> {
        let mut rest = Vec::new();
        let mut retry = object_store_retry::Retry::default();
        let mut any = false;
        for (k, v) in &self.options {
            let dur = || {
                parse_duration(v).ok_or_else(|| {
                    invalid(
                        url,
                        format!("{k}: expected a duration like 500ms or 30s, got {v:?}"),
                    )
                })
            };
            match k.as_str() {
                "retry_max_retries" | "max_retries" => {
                    retry.max_retries =
                        Some(v.parse().map_err(|_| {
                            invalid(url, format!("{k}: expected a number, got {v:?}"))
                        })?);
                    any = true;
                }
                "retry_timeout" => {
                    retry.timeout = Some(dur()?);
                    any = true;
                }
                "retry_init_backoff" => {
                    retry.init_backoff = Some(dur()?);
                    any = true;
                }
                "retry_max_backoff" => {
                    retry.max_backoff = Some(dur()?);
                    any = true;
                }
                _ => rest.push((k.clone(), v.clone())),
            }
        }
        Ok((rest, any.then_some(retry)))
    }

    #[cfg(feature = "s3")]
    fn open_s3(
        &self,
        url: &str,
        fail: impl Fn(object_store::Error) -> Error,
    ) -> Result<Arc<dyn ObjectStore>> {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        let (options, retry) = self.split_options(url)?;
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&self.bucket);
        let has = |k: &str| {
            options
                .iter()
                .any(|(o, _)| o.trim_start_matches("aws_") == k)
        };
        let env = |k: &str| std::env::var_os(k).is_some();
        if has("endpoint") || has("endpoint_url") {
            b = b
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false);
            if !has("access_key_id") && !env("AWS_ACCESS_KEY_ID") {
                b = b.with_access_key_id("test").with_secret_access_key("test");
            }
            if !has("region") && !env("AWS_REGION") && !env("AWS_DEFAULT_REGION") {
                b = b.with_region("us-east-1");
            }
        }
        for (k, v) in options {
            let key: AmazonS3ConfigKey = k.parse().map_err(|e| invalid(url, e))?;
            b = b.with_config(key, v);
        }
        if let Some(r) = retry {
            b = b.with_retry(r.config());
        }
        Ok(Arc::new(b.build().map_err(fail)?))
    }

    #[cfg(not(feature = "s3"))]
    fn open_s3(
        &self,
        url: &str,
        _: impl Fn(object_store::Error) -> Error,
    ) -> Result<Arc<dyn ObjectStore>> {
        Err(invalid(
            url,
            "s3:// needs protobase built with feature `s3`",
        ))
    }

    #[cfg(feature = "gcs")]
    fn open_gcs(
        &self,
        url: &str,
        fail: impl Fn(object_store::Error) -> Error,
    ) -> Result<Arc<dyn ObjectStore>> {
        use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
        let (options, retry) = self.split_options(url)?;
        let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(&self.bucket);
        for (k, v) in options {
            let key: GoogleConfigKey = k.parse().map_err(|e| invalid(url, e))?;
            b = b.with_config(key, v);
        }
        if let Some(r) = retry {
            b = b.with_retry(r.config());
        }
        Ok(Arc::new(b.build().map_err(fail)?))
    }

    #[cfg(not(feature = "gcs"))]
    fn open_gcs(
        &self,
        url: &str,
        _: impl Fn(object_store::Error) -> Error,
    ) -> Result<Arc<dyn ObjectStore>> {
        Err(invalid(
            url,
            "gs:// needs protobase built with feature `gcs`",
        ))
    }

    #[cfg(feature = "azure")]
    fn open_azure(
        &self,
        url: &str,
        fail: impl Fn(object_store::Error) -> Error,
    ) -> Result<Arc<dyn ObjectStore>> {
        use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
        let (options, retry) = self.split_options(url)?;
        let mut b = MicrosoftAzureBuilder::from_env().with_container_name(&self.bucket);
        for (k, v) in options {
            let key: AzureConfigKey = k.parse().map_err(|e| invalid(url, e))?;
            b = b.with_config(key, v);
        }
        if let Some(r) = retry {
            b = b.with_retry(r.config());
        }
        Ok(Arc::new(b.build().map_err(fail)?))
    }

    #[cfg(not(feature = "azure"))]
    fn open_azure(
        &self,
        url: &str,
        _: impl Fn(object_store::Error) -> Error,
    ) -> Result<Arc<dyn ObjectStore>> {
        Err(invalid(
            url,
            "az:// needs protobase built with feature `azure`",
        ))
    }
}

/// A store's options but the retry ones, and its retry settings.
type SplitOptions = (Vec<(String, String)>, Option<object_store_retry::Retry>);

/// The retry options of the HTTP stores.
mod object_store_retry {
    use std::time::Duration;

    #[derive(Debug, Default)]
    pub(super) struct Retry {
        pub(super) max_retries: Option<usize>,
        pub(super) timeout: Option<Duration>,
        pub(super) init_backoff: Option<Duration>,
        pub(super) max_backoff: Option<Duration>,
    }

    impl Retry {
        #[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
        pub(super) fn config(&self) -> object_store::RetryConfig {
            let mut c = object_store::RetryConfig::default();
            if let Some(n) = self.max_retries {
                c.max_retries = n;
            }
            if let Some(t) = self.timeout {
                c.retry_timeout = t;
            }
            if let Some(b) = self.init_backoff {
                c.backoff.init_backoff = b;
            }
            if let Some(b) = self.max_backoff {
                c.backoff.max_backoff = b;
            }
            c
        }
    }
}

/// Parses `500ms`, `30s`, `2m` or a plain number of seconds.
fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let (num, unit) = match v.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&v[..i], v[i..].trim()),
        None => (v, "s"),
    };
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// Percent-decodes a URL component (`%2F` → `/`).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_redacted_string())
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({})", self.to_redacted_string())
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        StoreUrl::parse(s)
    }
}

/// The process-wide in-memory store called `name`: every `memory://name`
/// in one process is the same store.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_store_bucket_prefix_and_options() {
        let u = StoreUrl::parse("s3://bucket/spaces/a?endpoint=http://127.0.0.1:9000&region=eu")
            .unwrap();
        assert_eq!(u.scheme(), "s3");
        assert_eq!(u.prefix(), "spaces/a");
        assert_eq!(u.options["endpoint"], "http://127.0.0.1:9000");
        let m = StoreUrl::parse("memory://shared/p").unwrap();
        assert_eq!((m.bucket.as_str(), m.prefix()), ("shared", "p"));
        let f = StoreUrl::parse("file:///srv/bucket").unwrap();
        assert_eq!(f.dir(), Some(Path::new("/srv/bucket")));
        let mut r = StoreUrl::parse("file:data/bucket").unwrap();
        r.resolve_paths(Path::new("/etc/pb"));
        assert_eq!(r.dir(), Some(Path::new("/etc/pb/data/bucket")));
        for bad in [
            "ftp://x",
            "nourl",
            "s3:///prefix",
            "file://host/dir",
            "s3:bucket",
        ] {
            let e = StoreUrl::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Invalid, "{bad}: {e}");
        }
    }

    #[test]
    fn secrets_are_redacted() {
        let u = StoreUrl::parse("s3://b?secret_access_key=hunter2&access_key_id=AKIA").unwrap();
        let shown = format!("{u} {u:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("AKIA"), "{shown}");
        assert!(is_secret_option("aws_secret_access_key"));
        assert!(is_secret_option("azure_storage_account_key"));
        assert!(!is_secret_option("aws_access_key_id"));
    }

    #[test]
    fn memory_and_file_stores_open_and_unknown_options_fail() {
        let a = StoreUrl::parse("memory://url-test")
            .unwrap()
            .open()
            .unwrap();
        let b = StoreUrl::parse("memory://url-test/other")
            .unwrap()
            .open()
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one store per name");
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/bucket", dir.path().display());
        StoreUrl::parse(&url).unwrap().open().unwrap();
        assert!(dir.path().join("bucket").is_dir());
        let e = StoreUrl::parse("memory://x?timeout=1s")
            .unwrap()
            .open()
            .unwrap_err();
        assert!(e.to_string().contains("timeout"), "{e}");
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("x"), None);
    }

    #[cfg(feature = "s3")]
    #[test]
    fn s3_options_and_client_options_are_checked() {
        StoreUrl::parse("s3://b/p?endpoint=http://127.0.0.1:1&timeout=5s&connect_timeout=1s&retry_max_retries=2&retry_timeout=10s")
            .unwrap()
            .open()
            .unwrap();
        let e = StoreUrl::parse("s3://b?no_such_option=1")
            .unwrap()
            .open()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
        assert!(e.to_string().contains("no_such_option"), "{e}");
        let e = StoreUrl::parse("s3://b?retry_timeout=soon")
            .unwrap()
            .open()
            .unwrap_err();
        assert!(e.to_string().contains("retry_timeout"), "{e}");
    }
}
