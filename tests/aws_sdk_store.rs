//! The AWS SDK adapter (feature `aws-sdk`) against `object_store`'s own
//! reusable `ObjectStore` test suite, on a real S3-compatible server on
//! 127.0.0.1 (moto, see `tests/support/moto.rs`): the adapter behaves like
//! the stores `CloudBlockProvider` was written against. (The provider's own
//! suite runs on it in `tests/cloud_provider.rs`, module `aws_sdk`.)

use object_store::integration;
use protobase::backends::cloud::{AwsSdkStore, aws_sdk_store};

mod support;

/// A store on a fresh bucket, or `None` when S3 tests are disabled.
async fn store() -> Option<AwsSdkStore> {
    let endpoint = support::moto::server()?;
    let bucket = format!("pb-{}", uuid::Uuid::new_v4().simple());
    support::moto::create_bucket(&endpoint, &bucket).unwrap();
    Some(aws_sdk_store(&bucket, Some(&endpoint)).await)
}

macro_rules! suite {
    ($($name:ident $(, $arg:expr)?);* $(;)?) => {
        $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some(s) = store().await else { return };
            integration::$name(&s $(, $arg)?).await;
        })*
    };
}

suite!(
    put_get_delete_list;
    get_opts;
    put_opts, true;
    list_uses_directories_correctly;
    list_with_delimiter;
    rename_and_copy;
    copy_rename_nonexistent_object;
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_nonexistent_object_is_not_found() {
    let Some(s) = store().await else { return };
    let err = integration::get_nonexistent_object(&s, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::NotFound { .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_is_reported_as_not_implemented() {
    use object_store::{ObjectStore, PutMultipartOptions};
    let Some(s) = store().await else { return };
    let err = s
        .put_multipart_opts(&"a/b".into(), PutMultipartOptions::default())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, object_store::Error::NotImplemented { .. }),
        "{err:?}"
    );
}
