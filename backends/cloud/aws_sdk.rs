//! S3 through the AWS SDK (feature `aws-sdk`): an [`ObjectStore`] over an
//! [`aws_sdk_s3::Client`].
//!
//! Why a second S3 client: `object_store`'s own S3 client (feature `s3`,
//! [`s3_store`](super::s3_store)) reads credentials from the environment,
//! instance metadata and web identity, but not the AWS SDK's full provider
//! chain (SSO, `credential_process`, profiles with role chaining...). Users
//! who need that build an `aws_sdk_s3::Client` as they always do and hand it
//! to [`AwsSdkStore::new`]. Because the adapter *is* an `ObjectStore`,
//! [`CloudBlockProvider`](super::CloudBlockProvider) runs on it unchanged:
//! one provider, two clients, one test suite.
//!
//! What it implements: conditional puts (`PutMode::Create` as
//! `If-None-Match: *`, `PutMode::Update` as `If-Match`), GETs with ranges and
//! `If-Match`/`If-None-Match`, HEAD, paginated listing (with and without
//! delimiter), deletes and copies. Multipart uploads are not implemented
//! ([`object_store::Error::NotImplemented`]): the provider writes whole slot
//! objects, 5 MiB by default, with single PUTs.

use std::fmt;
use std::ops::Range;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime as AwsDateTime};
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    Attributes, CopyMode, CopyOptions, Extensions, GetOptions, GetRange, GetResult,
    GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

const STORE: &str = "AwsSdkS3";

/// An [`ObjectStore`] on one bucket, through the AWS SDK for Rust.
#[derive(Debug, Clone)]
pub struct AwsSdkStore {
    client: Client,
    bucket: String,
}

impl AwsSdkStore {
    /// Wraps a client you configured (credentials chain, region, endpoint).
    /// For S3-compatible servers reached by IP, the client needs
    /// `force_path_style(true)`.
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        AwsSdkStore {
            client,
            bucket: bucket.into(),
        }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// An [`AwsSdkStore`] for `bucket`, configured by the AWS SDK's default
/// provider chain (environment, profiles, SSO, IMDS...).
///
/// With `endpoint` (e.g. `http://127.0.0.1:5000` for moto, MinIO or
/// SeaweedFS) requests go to that server, path-style; credentials and the
/// region default to `test`/`test` and `us-east-1` when the environment has
/// none — the same policy as [`s3_store`](super::s3_store).
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use protobase::backends::cloud::{CloudBlockProvider, aws_sdk_store};
///
/// let store = aws_sdk_store("my-bucket", None).await;
/// let provider = CloudBlockProvider::builder(Arc::new(store), "/var/lib/app/staging")
///     .build()
///     .await?;
/// # drop(provider);
/// # Ok(()) }
/// ```
pub async fn aws_sdk_store(bucket: &str, endpoint: Option<&str>) -> AwsSdkStore {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(Credentials::new(
                "test",
                "test",
                None,
                None,
                "protobase",
            ));
        }
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            loader = loader.region(Region::new("us-east-1"));
        }
    }
    let sdk = loader.load().await;
    let conf = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(endpoint.is_some())
        .build();
    AwsSdkStore::new(Client::from_conf(conf), bucket)
}

impl fmt::Display for AwsSdkStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AwsSdkS3({})", self.bucket)
    }
}

/// What a failed request was doing, to pick the `object_store` error.
#[derive(Clone, Copy, PartialEq)]
enum Op {
    Create,
    Update,
    Other,
}

/// Maps an SDK error by its HTTP status, as `object_store`'s S3 client does.
fn map_err<E>(err: SdkError<E, HttpResponse>, path: &str, op: Op) -> object_store::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let source: Box<dyn std::error::Error + Send + Sync> =
        format!("{}", DisplayErrorContext(&err)).into();
    let path = path.to_string();
    match status {
        // If-Match on a missing object: S3 answers 404, the contract says
        // the precondition failed.
        Some(404) if op == Op::Update => object_store::Error::Precondition { path, source },
        Some(404) => object_store::Error::NotFound { path, source },
        Some(304) => object_store::Error::NotModified { path, source },
        Some(412) | Some(409) if op == Op::Create => {
            object_store::Error::AlreadyExists { path, source }
        }
        Some(412) => object_store::Error::Precondition { path, source },
        Some(401) => object_store::Error::Unauthenticated { path, source },
        Some(403) => object_store::Error::PermissionDenied { path, source },
        _ => object_store::Error::Generic {
            store: STORE,
            source,
        },
    }
}

fn generic(msg: impl Into<String>) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: msg.into().into(),
    }
}

fn timestamp(t: Option<&AwsDateTime>) -> chrono::DateTime<chrono::Utc> {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
        .unwrap_or_default()
}

fn size(len: Option<i64>) -> u64 {
    len.and_then(|l| u64::try_from(l).ok()).unwrap_or(0)
}

fn range_header(r: &GetRange) -> object_store::Result<String> {
    Ok(match r {
        GetRange::Bounded(r) if r.end > r.start => format!("bytes={}-{}", r.start, r.end - 1),
        GetRange::Bounded(r) => return Err(generic(format!("empty range {r:?}"))),
        GetRange::Offset(o) => format!("bytes={o}-"),
        GetRange::Suffix(n) => format!("bytes=-{n}"),
    })
}

/// Parses `bytes <first>-<last>/<total>` into (range, total size).
fn content_range(header: &str) -> Option<(Range<u64>, u64)> {
    let rest = header.strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let first: u64 = first.parse().ok()?;
    let last: u64 = last.parse().ok()?;
    let total: u64 = total.parse().ok()?;
    (first <= last && last < total).then_some((first..last + 1, total))
}

/// The `x-amz-copy-source` header: `<bucket>/<key>`, URL-encoded (the SDK
/// sends it as given). Keys of `object_store` paths may hold `%` escapes of
/// their own, which must be escaped again.
fn copy_source(bucket: &str, from: &Path) -> String {
    let mut out = String::with_capacity(bucket.len() + from.as_ref().len() + 1);
    for b in bucket
        .bytes()
        .chain(std::iter::once(b'/'))
        .chain(from.as_ref().bytes())
    {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_path(key: &str) -> object_store::Result<Path> {
    Path::parse(key).map_err(|source| object_store::Error::InvalidPath { source })
}

/// The S3 prefix listing `prefix` in `object_store`'s sense (its children).
fn list_prefix(prefix: Option<&Path>) -> Option<String> {
    prefix
        .filter(|p| !p.as_ref().is_empty())
        .map(|p| format!("{}/", p.as_ref()))
}

/// One page of ListObjectsV2.
struct Page {
    objects: Vec<ObjectMeta>,
    prefixes: Vec<Path>,
    next: Option<String>,
}

impl AwsSdkStore {
    async fn list_page(
        &self,
        prefix: Option<&str>,
        delimiter: bool,
        token: Option<String>,
    ) -> object_store::Result<Page> {
        let mut req = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_prefix(prefix.map(str::to_string))
            .set_continuation_token(token);
        if delimiter {
            req = req.delimiter("/");
        }
        let out = req
            .send()
            .await
            .map_err(|e| map_err(e, prefix.unwrap_or(""), Op::Other))?;
        let objects = out
            .contents()
            .iter()
            .map(|o| {
                Ok(ObjectMeta {
                    location: parse_path(o.key().unwrap_or_default())?,
                    last_modified: timestamp(o.last_modified()),
                    size: size(o.size()),
                    e_tag: o.e_tag().map(str::to_string),
                    version: None,
                })
            })
            .collect::<object_store::Result<Vec<_>>>()?;
        let prefixes = out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix())
            .map(|p| parse_path(p.trim_end_matches('/')))
            .collect::<object_store::Result<Vec<_>>>()?;
        let next = match out.is_truncated() {
            Some(true) => out.next_continuation_token().map(str::to_string),
            _ => None,
        };
        Ok(Page {
            objects,
            prefixes,
            next,
        })
    }
}

#[async_trait]
impl ObjectStore for AwsSdkStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let body = Bytes::from(payload);
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(location.as_ref())
            .body(ByteStream::from(body));
        let op = match &opts.mode {
            PutMode::Overwrite => Op::Other,
            PutMode::Create => {
                req = req.if_none_match("*");
                Op::Create
            }
            PutMode::Update(v) => {
                let etag = v.e_tag.clone().ok_or_else(|| {
                    generic(format!(
                        "update of {location} needs an ETag (S3 has no version CAS)"
                    ))
                })?;
                req = req.if_match(etag);
                Op::Update
            }
        };
        let out = req
            .send()
            .await
            .map_err(|e| map_err(e, location.as_ref(), op))?;
        Ok(PutResult {
            e_tag: out.e_tag().map(str::to_string),
            version: out.version_id().map(str::to_string),
            extensions: Extensions::default(),
        })
    }

    async fn put_multipart_opts(
        &self,
        _location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(object_store::Error::NotImplemented {
            operation: "put_multipart".into(),
            implementer: STORE.into(),
        })
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let key = location.as_ref();
        if options.head {
            let out = self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .set_if_match(options.if_match.clone())
                .set_if_none_match(options.if_none_match.clone())
                .set_version_id(options.version.clone())
                .send()
                .await
                .map_err(|e| map_err(e, key, Op::Other))?;
            let meta = ObjectMeta {
                location: location.clone(),
                last_modified: timestamp(out.last_modified()),
                size: size(out.content_length()),
                e_tag: out.e_tag().map(str::to_string),
                version: out.version_id().map(str::to_string),
            };
            options.check_preconditions(&meta)?;
            return Ok(GetResult {
                payload: GetResultPayload::Stream(stream::empty().boxed()),
                range: 0..meta.size,
                meta,
                attributes: Attributes::default(),
                extensions: Extensions::default(),
            });
        }
        let range = options.range.as_ref().map(range_header).transpose()?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range)
            .set_if_match(options.if_match.clone())
            .set_if_none_match(options.if_none_match.clone())
            .set_version_id(options.version.clone())
            .send()
            .await
            .map_err(|e| map_err(e, key, Op::Other))?;
        let len = size(out.content_length());
        let (range, total) = match out.content_range() {
            Some(h) => content_range(h)
                .ok_or_else(|| generic(format!("bad Content-Range {h:?} for {key}")))?,
            None => (0..len, len),
        };
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified: timestamp(out.last_modified()),
            size: total,
            e_tag: out.e_tag().map(str::to_string),
            version: out.version_id().map(str::to_string),
        };
        options.check_preconditions(&meta)?;
        let body = stream::unfold(out.body, |mut body| async move {
            match body.next().await {
                Some(Ok(chunk)) => Some((Ok(chunk), body)),
                Some(Err(e)) => Some((Err(generic(format!("reading body: {e}"))), body)),
                None => None,
            }
        })
        .fuse()
        .boxed();
        Ok(GetResult {
            payload: GetResultPayload::Stream(body),
            meta,
            range,
            attributes: Attributes::default(),
            extensions: Extensions::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let this = self.clone();
        locations
            .and_then(move |path| {
                let this = this.clone();
                async move {
                    this.client
                        .delete_object()
                        .bucket(&this.bucket)
                        .key(path.as_ref())
                        .send()
                        .await
                        .map_err(|e| map_err(e, path.as_ref(), Op::Other))?;
                    Ok(path)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let this = self.clone();
        let prefix = list_prefix(prefix);
        // State: the continuation token, `None` once the last page was read.
        stream::try_unfold(Some(None::<String>), move |state| {
            let this = this.clone();
            let prefix = prefix.clone();
            async move {
                let Some(token) = state else {
                    return Ok::<_, object_store::Error>(None);
                };
                let page = this.list_page(prefix.as_deref(), false, token).await?;
                let next = page.next.map(Some);
                Ok(Some((stream::iter(page.objects.into_iter().map(Ok)), next)))
            }
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let prefix = list_prefix(prefix);
        let mut result = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Extensions::default(),
        };
        let mut token = None;
        loop {
            let page = self.list_page(prefix.as_deref(), true, token).await?;
            result.objects.extend(page.objects);
            result.common_prefixes.extend(page.prefixes);
            match page.next {
                Some(t) => token = Some(t),
                None => return Ok(result),
            }
        }
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        if options.mode == CopyMode::Create {
            // A missing source is the more useful error.
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(from.as_ref())
                .send()
                .await
                .map_err(|e| map_err(e, from.as_ref(), Op::Other))?;
            return Err(object_store::Error::NotSupported {
                source: "copy-if-not-exists is not supported by S3".into(),
            });
        }
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(to.as_ref())
            .copy_source(copy_source(&self.bucket, from))
            .send()
            .await
            .map_err(|e| map_err(e, from.as_ref(), Op::Other))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses_and_rejects() {
        assert_eq!(content_range("bytes 0-99/1000"), Some((0..100, 1000)));
        assert_eq!(content_range("bytes 5-5/6"), Some((5..6, 6)));
        assert_eq!(content_range("bytes 9-5/10"), None);
        assert_eq!(content_range("bytes 0-10/10"), None);
        assert_eq!(content_range("bytes */10"), None);
        assert_eq!(content_range("items 0-1/2"), None);
    }

    #[test]
    fn range_headers() {
        assert_eq!(
            range_header(&GetRange::Bounded(10..20)).unwrap(),
            "bytes=10-19"
        );
        assert_eq!(range_header(&GetRange::Offset(7)).unwrap(), "bytes=7-");
        assert_eq!(range_header(&GetRange::Suffix(3)).unwrap(), "bytes=-3");
        assert!(range_header(&GetRange::Bounded(4..4)).is_err());
    }

    #[test]
    fn copy_source_escapes_key_escapes() {
        let p = Path::from("🙀/a b.parquet");
        assert_eq!(p.as_ref(), "%F0%9F%99%80/a b.parquet");
        assert_eq!(
            copy_source("bk", &p),
            "bk/%25F0%259F%2599%2580/a%20b.parquet"
        );
    }

    #[test]
    fn list_prefixes_are_directories() {
        assert_eq!(list_prefix(None), None);
        assert_eq!(list_prefix(Some(&Path::from(""))), None);
        assert_eq!(list_prefix(Some(&Path::from("a/b"))), Some("a/b/".into()));
    }
}
