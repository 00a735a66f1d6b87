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

/// Characters a key may hold that a URL would read as something else: `%` (an escape), `#` (a
/// fragment), `?` (a query), and what URLs never hold as is (spaces, controls).
const KEY_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'%')
    .add(b'#')
    .add(b'?')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// The URL of the object or prefix `key` in `bucket_url` (`s3://bucket/`), the key taken as it
/// is written: `s3://lake/a%20b.parquet` is the object named `a%20b.parquet`, as the AWS CLI
/// reads it, not `a b.parquet` (the listing table decodes the URL's path once, back to the key).
pub fn key_url(bucket_url: &Url, key: &str) -> Result<Url> {
    let encoded: String = key
        .split('/')
        .map(|part| percent_encoding::utf8_percent_encode(part, KEY_ESCAPES).to_string())
        .collect::<Vec<_>>()
        .join("/");
    bucket_url.join(&encoded).map_err(|e| {
        DataFusionError::Configuration(format!("'{key}' is not a valid key in {bucket_url}: {e}"))
    })
}

/// A table's location in object storage, as a listing table reads it.
#[derive(Debug)]
pub struct ObjectTable {
    pub url: datafusion::datasource::listing::ListingTableUrl,
    /// The extension files must have (`.parquet` under a prefix; any for one object).
    pub extension: &'static str,
}

/// Resolves `path` (`s3://bucket`, `s3://bucket/prefix/`, `s3://bucket/key.parquet`, or a glob
/// such as `s3://bucket/2024-*.parquet`) against the store, the way a local path is resolved:
/// an existing object is one file; otherwise a glob if it has glob characters; otherwise a
/// prefix (with or without its trailing slash), of which every `.parquet` object is read and
/// must start with Parquet's magic bytes (other objects are skipped, as in a local directory).
/// Errors name the table and the path.
pub async fn object_table(
    store: &Arc<dyn ObjectStore>,
    table: &str,
    path: &str,
) -> Result<ObjectTable> {
    use datafusion::datasource::listing::ListingTableUrl;
    use futures::{StreamExt, TryStreamExt};
    use object_store::ObjectStoreExt;
    use object_store::path::Path;

    let bad = |why: String| DataFusionError::Plan(format!("table '{table}': {why}"));
    let (scheme, rest) = path
        .split_once("://")
        .ok_or_else(|| bad(format!("'{path}' is not a URL")))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad(format!(
            "'{path}' names no bucket ({scheme}://BUCKET/PREFIX/)"
        )));
    }
    let bucket_url =
        Url::parse(&format!("{scheme}://{bucket}/")).map_err(|e| bad(format!("'{path}': {e}")))?;
    let store_error = |e: object_store::Error| bad(format!("cannot read '{path}': {e}"));
    // One object, when the key names one.
    if !key.is_empty() && !key.ends_with('/') {
        let object = Path::parse(key).map_err(|e| bad(format!("'{path}': {e}")))?;
        match store.head(&object).await {
            Ok(_) => {
                let url = ListingTableUrl::try_new(key_url(&bucket_url, key)?, None)?;
                return Ok(ObjectTable { url, extension: "" });
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_error(e)),
        }
        // A glob: the prefix before the first segment with a glob character, and the pattern.
        if let Some(at) = key.find(['*', '?', '[']) {
            let dir_end = key[..at].rfind('/').map_or(0, |i| i + 1);
            let (dir, pattern) = key.split_at(dir_end);
            let glob = glob::Pattern::new(pattern)
                .map_err(|e| bad(format!("'{path}': invalid glob: {e}")))?;
            let url = ListingTableUrl::try_new(key_url(&bucket_url, dir)?, Some(glob))?;
            return Ok(ObjectTable { url, extension: "" });
        }
    }
    // A prefix: every `.parquet` object below it, each checked.
    let prefix_key = match key.trim_end_matches('/') {
        "" => String::new(),
        k => format!("{k}/"),
    };
    let prefix = (!prefix_key.is_empty())
        .then(|| Path::parse(&prefix_key))
        .transpose()
        .map_err(|e| bad(format!("'{path}': {e}")))?;
    let objects: Vec<object_store::ObjectMeta> = store
        .list(prefix.as_ref())
        .try_filter(|o| futures::future::ready(o.location.as_ref().ends_with(".parquet")))
        .try_collect()
        .await
        .map_err(store_error)?;
    if objects.is_empty() {
        return Err(bad(format!(
            "no .parquet objects under '{scheme}://{bucket}/{prefix_key}'"
        )));
    }
    let checks = futures::stream::iter(objects)
        .map(|o| {
            let store = store.clone();
            async move {
                let name = format!("{scheme}://{bucket}/{}", o.location);
                let not_parquet = |why: &str| {
                    DataFusionError::Plan(format!(
                        "table '{table}': '{name}' is not a Parquet file ({why})"
                    ))
                };
                if o.size < 4 {
                    return Err(not_parquet(if o.size == 0 {
                        "it is empty"
                    } else {
                        "it is too short"
                    }));
                }
                let magic = store.get_range(&o.location, 0..4).await.map_err(|e| {
                    DataFusionError::Plan(format!("table '{table}': cannot read '{name}': {e}"))
                })?;
                if magic.as_ref() != b"PAR1" {
                    return Err(not_parquet("it does not start with the PAR1 magic bytes"));
                }
                Ok(())
            }
        })
        .buffer_unordered(16);
    checks.try_collect::<Vec<()>>().await?;
    let url = ListingTableUrl::try_new(key_url(&bucket_url, &prefix_key)?, None)?;
    Ok(ObjectTable {
        url,
        extension: ".parquet",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_taken_as_written() {
        use datafusion::datasource::listing::ListingTableUrl;
        let bucket = Url::parse("s3://lake/").unwrap();
        for key in [
            "a%20b.parquet",
            "dir/x#1.parquet",
            "q?.parquet",
            "sp ace/é.parquet",
            "",
        ] {
            let url = ListingTableUrl::try_new(key_url(&bucket, key).unwrap(), None).unwrap();
            assert_eq!(url.prefix().as_ref(), key.trim_end_matches('/'), "{key}");
        }
    }

    #[tokio::test]
    async fn objects_prefixes_and_globs_resolve_like_local_paths() {
        use object_store::memory::InMemory;
        use object_store::{ObjectStoreExt, PutPayload};
        let mem = Arc::new(InMemory::new());
        let parquet = || PutPayload::from_static(b"PAR1....PAR1");
        for k in [
            "shop/a%20b.parquet",
            "shop/x#1.parquet",
            "shop/notes.txt",
            "other/q?.parquet",
        ] {
            mem.put(&object_store::path::Path::parse(k).unwrap(), parquet())
                .await
                .unwrap();
        }
        let store: Arc<dyn ObjectStore> = mem.clone();
        let t = object_table(&store, "t", "s3://lake/shop/a%20b.parquet")
            .await
            .unwrap();
        assert_eq!(t.url.prefix().as_ref(), "shop/a%20b.parquet");
        assert_eq!(t.extension, "");
        let t = object_table(&store, "t", "s3://lake/other/q?.parquet")
            .await
            .unwrap();
        assert_eq!(
            t.url.prefix().as_ref(),
            "other/q?.parquet",
            "an existing key, not a glob"
        );
        for p in ["s3://lake/shop", "s3://lake/shop/"] {
            let t = object_table(&store, "t", p).await.unwrap();
            assert_eq!(t.url.prefix().as_ref(), "shop", "{p}");
            assert_eq!(t.extension, ".parquet");
        }
        let whole = object_table(&store, "t", "s3://lake").await.unwrap();
        assert_eq!(whole.extension, ".parquet");
        assert_eq!(
            object_table(&store, "t", "s3://lake/")
                .await
                .unwrap()
                .url
                .prefix()
                .as_ref(),
            whole.url.prefix().as_ref()
        );
        let g = object_table(&store, "t", "s3://lake/shop/*.parquet")
            .await
            .unwrap();
        assert_eq!(g.url.prefix().as_ref(), "shop");
        let e = object_table(&store, "t", "s3://lake/nothing/")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no .parquet objects") && e.contains("'t'"),
            "{e}"
        );
        mem.put(
            &object_store::path::Path::parse("bad/x.parquet").unwrap(),
            PutPayload::from_static(b"hello"),
        )
        .await
        .unwrap();
        let e = object_table(&store, "t", "s3://lake/bad")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad/x.parquet") && e.contains("not a Parquet file"),
            "{e}"
        );
    }

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
