//! Building an `ObjectStore` from a URL. One function per backend, each gated by its
//! feature; without the feature the function explains which feature to enable.

use crate::{Error, Result};
use object_store::ObjectStore;
use object_store::multipart::MultipartStore;
use std::sync::Arc;

/// A cloud store, as an object store and as the multipart API of the same client (for
/// uploads that can be found and aborted after a crash).
pub(crate) type Cloud = (Arc<dyn ObjectStore>, Arc<dyn MultipartStore>);

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn cloud<T: ObjectStore + MultipartStore>(store: T) -> Cloud {
    let s = Arc::new(store);
    (s.clone(), s)
}

#[cfg_attr(
    not(any(feature = "s3", feature = "gcs", feature = "azure")),
    allow(dead_code)
)]
fn unknown_key(store: &'static str, key: &str) -> Error {
    Error::config(store, format!("unknown option {key:?}"))
}

/// Split tributary's own retry keys from the backend's keys.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn retry_config(
    store: &'static str,
    options: &[(String, String)],
) -> Result<(object_store::RetryConfig, Vec<(String, String)>)> {
    let mut retry = object_store::RetryConfig::default();
    let mut rest = Vec::new();
    for (k, v) in options {
        match k.as_str() {
            "max_retries" => {
                retry.max_retries = v.parse().map_err(|_| {
                    Error::config(store, format!("max_retries {v:?} is not a whole number"))
                })?
            }
            "retry_timeout" => {
                retry.retry_timeout = crate::util::parse_duration(v).ok_or_else(|| {
                    Error::config(
                        store,
                        format!(
                            "retry_timeout {v:?}: expected seconds or a number with ms, s or m"
                        ),
                    )
                })?
            }
            _ => rest.push((k.clone(), v.clone())),
        }
    }
    Ok((retry, rest))
}

#[cfg_attr(
    all(feature = "fs", feature = "s3", feature = "gcs", feature = "azure"),
    allow(dead_code)
)]
fn missing_feature(scheme: &str, feature: &str) -> Error {
    Error::config(
        "store",
        format!("{scheme}:// URLs need tributary's `{feature}` cargo feature"),
    )
}

#[cfg(feature = "fs")]
pub(crate) fn local(dir: &std::path::Path) -> Result<Arc<dyn ObjectStore>> {
    std::fs::create_dir_all(dir).map_err(|e| {
        let message = format!("cannot create folder {}: {e}", dir.display());
        Error::from_local_io("file", message, e)
    })?;
    let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| Error::from_object_store("file", e))?
        .with_automatic_cleanup(false)
        // Durable before committed: the staged file, the rename and the folder are fsynced
        // before a write returns, so no checkpoint is ever saved ahead of data on disk.
        .with_fsync(true);
    Ok(Arc::new(fs))
}

#[cfg(not(feature = "fs"))]
pub(crate) fn local(_dir: &std::path::Path) -> Result<Arc<dyn ObjectStore>> {
    Err(missing_feature("file", "fs"))
}

#[cfg(feature = "s3")]
pub(crate) fn s3(url: &str, options: &[(String, String)]) -> Result<Cloud> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    let mut b = AmazonS3Builder::from_env().with_url(url);
    let (retry, options) = retry_config("s3", options)?;
    b = b.with_retry(retry);
    for (k, v) in &options {
        let key: AmazonS3ConfigKey = k
            .to_ascii_lowercase()
            .parse()
            .map_err(|_| unknown_key("s3", k))?;
        b = b.with_config(key, v);
    }
    Ok(cloud(
        b.build().map_err(|e| Error::from_object_store("s3", e))?,
    ))
}

#[cfg(not(feature = "s3"))]
pub(crate) fn s3(_url: &str, _options: &[(String, String)]) -> Result<Cloud> {
    Err(missing_feature("s3", "s3"))
}

#[cfg(feature = "gcs")]
pub(crate) fn gcs(url: &str, options: &[(String, String)]) -> Result<Cloud> {
    use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
    let mut b = GoogleCloudStorageBuilder::from_env().with_url(url);
    let (retry, options) = retry_config("gcs", options)?;
    b = b.with_retry(retry);
    for (k, v) in &options {
        let key: GoogleConfigKey = k
            .to_ascii_lowercase()
            .parse()
            .map_err(|_| unknown_key("gcs", k))?;
        b = b.with_config(key, v);
    }
    Ok(cloud(
        b.build().map_err(|e| Error::from_object_store("gcs", e))?,
    ))
}

#[cfg(not(feature = "gcs"))]
pub(crate) fn gcs(_url: &str, _options: &[(String, String)]) -> Result<Cloud> {
    Err(missing_feature("gs", "gcs"))
}

#[cfg(feature = "azure")]
pub(crate) fn azure(url: &str, options: &[(String, String)]) -> Result<Cloud> {
    use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
    let mut b = MicrosoftAzureBuilder::from_env().with_url(url);
    let (retry, options) = retry_config("azure", options)?;
    b = b.with_retry(retry);
    for (k, v) in &options {
        let key: AzureConfigKey = k
            .to_ascii_lowercase()
            .parse()
            .map_err(|_| unknown_key("azure", k))?;
        b = b.with_config(key, v);
    }
    Ok(cloud(
        b.build()
            .map_err(|e| Error::from_object_store("azure", e))?,
    ))
}

#[cfg(not(feature = "azure"))]
pub(crate) fn azure(_url: &str, _options: &[(String, String)]) -> Result<Cloud> {
    Err(missing_feature("az", "azure"))
}
