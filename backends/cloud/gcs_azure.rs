//! Google Cloud Storage (feature `gcs`) and Azure Blob Storage (feature
//! `azure`): small helpers over `object_store`'s builders, as
//! [`s3_store`](super::s3_store) is for S3. The provider needs nothing else
//! from them: both stores implement put-if-absent (`PutMode::Create`), which
//! the root chain uses.

#[cfg(feature = "azure")]
use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};
#[cfg(feature = "gcs")]
use object_store::gcp::{GoogleCloudStorage, GoogleCloudStorageBuilder};

/// A Google Cloud Storage store for `bucket`, configured from the
/// environment (`GOOGLE_SERVICE_ACCOUNT`, `GOOGLE_APPLICATION_CREDENTIALS`,
/// ...; see [`GoogleCloudStorageBuilder::from_env`]).
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use protobase::backends::cloud::{CloudBlockProvider, gcs_store};
///
/// let store = gcs_store("my-bucket")?;
/// let provider = CloudBlockProvider::builder(Arc::new(store), "/var/lib/app/staging")
///     .build()
///     .await?;
/// # drop(provider);
/// # Ok(()) }
/// ```
#[cfg(feature = "gcs")]
pub fn gcs_store(bucket: &str) -> object_store::Result<GoogleCloudStorage> {
    GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .build()
}

/// An Azure Blob Storage store for `container`, configured from the
/// environment (`AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`,
/// ...; see [`MicrosoftAzureBuilder::from_env`]). With `emulator`, requests
/// go to Azurite on `127.0.0.1:10000` with its well-known development
/// account (`AZURITE_BLOB_STORAGE_URL` overrides the address).
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use protobase::backends::cloud::{CloudBlockProvider, azure_store};
///
/// let store = azure_store("my-container", false)?;
/// let provider = CloudBlockProvider::builder(Arc::new(store), "/var/lib/app/staging")
///     .build()
///     .await?;
/// # drop(provider);
/// # Ok(()) }
/// ```
#[cfg(feature = "azure")]
pub fn azure_store(container: &str, emulator: bool) -> object_store::Result<MicrosoftAzure> {
    MicrosoftAzureBuilder::from_env()
        .with_container_name(container)
        .with_use_emulator(emulator)
        .build()
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "azure")]
    #[test]
    fn azure_emulator_store_builds_without_credentials() {
        let store = super::azure_store("protobase", true).unwrap();
        assert!(store.to_string().contains("protobase"), "{store}");
    }
}
