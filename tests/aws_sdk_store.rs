//! The AWS SDK adapter (feature `aws-sdk`) against `object_store`'s own
//! reusable `ObjectStore` test suite, on a real S3-compatible server on
//! 127.0.0.1 (moto, see `tests/support/moto.rs`): the adapter behaves like
//! the stores `CloudBlockProvider` was written against. (The provider's own
//! suite runs on it in `tests/cloud_provider.rs`, module `aws_sdk`.)

use object_store::integration;
use object_store::prefix::PrefixStore;
use protobase::backends::cloud::{AwsSdkStore, aws_sdk_store};

mod support;

/// The adapter under a fresh prefix of the tests' bucket (so the store
/// looks empty), or `None` when S3 tests are disabled.
async fn store() -> Option<PrefixStore<AwsSdkStore>> {
    let endpoint = support::moto::server()?;
    let store = aws_sdk_store(support::moto::TEST_BUCKET, Some(&endpoint)).await;
    let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    Some(PrefixStore::new(store, prefix))
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
