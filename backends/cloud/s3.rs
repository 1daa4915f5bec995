//! S3 and S3-compatible stores (feature `s3`): a small helper over
//! [`object_store::aws::AmazonS3Builder`].

use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;

use crate::error::{Error, Result};

/// An S3 store for `bucket`, for use with
/// [`CloudBlockProvider::builder`](super::CloudBlockProvider::builder).
///
/// Configuration starts from the environment
/// ([`AmazonS3Builder::from_env`]: `AWS_ACCESS_KEY_ID`, `AWS_REGION`, ...).
/// With `endpoint` (e.g. `http://127.0.0.1:5000` for moto, MinIO or
/// SeaweedFS) requests go to that server, path-style
/// (`<endpoint>/<bucket>/<key>`), plain HTTP allowed; credentials and the
/// region default to `test`/`test` and `us-east-1` when the environment has
/// none, which such local servers accept.
///
/// Conditional create (`PutMode::Create`, used by the root compare-and-swap)
/// is sent as `If-None-Match: *`, which AWS S3 and most compatible servers
/// support. The bucket must exist.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use protobase::backends::cloud::{CloudBlockProvider, s3_store};
///
/// let store = s3_store("my-bucket", Some("http://127.0.0.1:5000"))?;
/// let provider = CloudBlockProvider::builder(Arc::new(store), "/var/lib/app/staging")
///     .prefix("space")
///     .build()
///     .await?;
/// # drop(provider);
/// # Ok(()) }
/// ```
pub fn s3_store(bucket: &str, endpoint: Option<&str>) -> object_store::Result<AmazonS3> {
    let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(endpoint) = endpoint {
        b = b
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            b = b.with_access_key_id("test").with_secret_access_key("test");
        }
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            b = b.with_region("us-east-1");
        }
    }
    b.build()
}

/// Creates `bucket` on the server `endpoint` (as in [`s3_store`]) unless
/// it exists and is ours: for benchmarks and development servers (moto,
/// MinIO, SeaweedFS). The request is a presigned `PUT /<bucket>` made with
/// the store's own SigV4 signer, so it authenticates exactly as the store's
/// requests do.
pub async fn create_bucket_if_missing(bucket: &str, endpoint: &str) -> Result<()> {
    let fail = |message: String| {
        Error::backend(
            "s3",
            format!("creating bucket {bucket} at {endpoint}: {message}"),
        )
    };
    let store = s3_store(bucket, Some(endpoint)).map_err(|e| fail(e.to_string()))?;
    let url = store
        .signed_url(
            reqwest::Method::PUT,
            &Path::from(""),
            Duration::from_secs(300),
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
    let resp = reqwest::Client::new()
        .put(url)
        .header(reqwest::header::CONTENT_LENGTH, 0)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if status.is_success() || (status.as_u16() == 409 && body.contains("BucketAlreadyOwnedByYou")) {
        Ok(())
    } else {
        Err(fail(format!("HTTP {status}: {body}")))
    }
}
