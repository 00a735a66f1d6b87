//! Object storage: `s3://bucket/prefix/` tables on every command, a cluster's scheduler and its
//! executors. Credentials, region and endpoint come from the standard AWS environment variables,
//! read when a bucket is first used, as datafusion-cli reads them: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL` (an
//! S3-compatible server) and `AWS_ALLOW_HTTP=true` (a plain-HTTP endpoint).

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use url::Url;

/// DataFusion's registry (the local file system, and stores registered explicitly), plus an S3
/// store per bucket, made from the environment the first time a `s3://` URL of that bucket is
/// read and kept for the process.
#[derive(Debug, Default)]
pub struct Stores {
    registered: DefaultObjectStoreRegistry,
}

impl Stores {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

impl ObjectStoreRegistry for Stores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.registered.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.registered.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        match self.registered.get_store(url) {
            Ok(store) => Ok(store),
            Err(_) if url.scheme() == "s3" => {
                let store = s3_store(url)?;
                // Two first reads of one bucket may race: both stores work, the later one stays.
                self.registered.register_store(url, store.clone());
                Ok(store)
            }
            Err(e) => Err(e),
        }
    }
}

/// An S3 store for the bucket of `url`, configured from the `AWS_*` environment variables.
fn s3_store(url: &Url) -> Result<Arc<dyn ObjectStore>> {
    let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| {
        DataFusionError::Configuration(format!("'{url}' names no bucket (s3://BUCKET/PREFIX/)"))
    })?;
    let store = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .map_err(|e| {
            DataFusionError::Configuration(format!(
                "cannot set up S3 for '{url}' from the AWS_* environment variables: {e}"
            ))
        })?;
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_get_a_store_per_bucket_and_local_paths_the_file_system() {
        let stores = Stores::default();
        let a = stores
            .get_store(&Url::parse("s3://bucket-a/x/").unwrap())
            .unwrap();
        let again = stores
            .get_store(&Url::parse("s3://bucket-a/y.parquet").unwrap())
            .unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        let b = stores
            .get_store(&Url::parse("s3://bucket-b/").unwrap())
            .unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(
            stores
                .get_store(&Url::parse("file:///tmp").unwrap())
                .is_ok()
        );
        let err = stores
            .get_store(&Url::parse("gs://bucket/").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("gs://bucket"), "{err}");
    }
}
