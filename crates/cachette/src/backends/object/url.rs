//! The object-storage URL forms, opened by [`crate::open`]:
//!
//! ```text
//! object+file:///var/cache/app?prefix=…                        (feature `object`)
//! s3://bucket/prefix?region=…&endpoint=…&allow_http=true       (feature `s3`)
//! gs://bucket/prefix                                           (feature `gcs`)
//! az://container/prefix                                        (feature `azure`)
//! ```
//!
//! Every form also takes `timeout` (one operation, default 30 s),
//! `connect_timeout` and `retries` (the clouds: default 5 s and 2),
//! `concurrency` (16), `multipart_threshold` (8 MiB), `default_ttl` and
//! `max_value_len`. Credentials are never part of the URL: the cloud
//! forms read them from the environment and the usual provider chains
//! (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`,
//! instance metadata, `GOOGLE_APPLICATION_CREDENTIALS`,
//! `AZURE_STORAGE_ACCOUNT_NAME`/`AZURE_STORAGE_ACCOUNT_KEY`, …).

use std::sync::Arc;
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
use std::time::Duration;

use super::{NAME, ObjectBackend, ObjectBuilder};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::params::{Opening, Scheme, UrlParams, decode, no_fragment, no_host, parse_url, redact};

/// The local-files scheme.
pub(crate) const LOCAL_SCHEMES: &[Scheme] = &[Scheme {
    name: "object+file",
    feature: "object",
    description: "one object per entry in a local directory (object_store's local files)",
    capabilities: local_capabilities,
    open,
}];

/// The S3 scheme.
#[cfg(feature = "s3")]
pub(crate) const S3_SCHEMES: &[Scheme] = &[Scheme {
    name: "s3",
    feature: "s3",
    description: "one object per entry in an S3 (or S3-compatible) bucket",
    capabilities: ObjectBackend::default_capabilities,
    open,
}];

/// The Google Cloud Storage scheme.
#[cfg(feature = "gcs")]
pub(crate) const GCS_SCHEMES: &[Scheme] = &[Scheme {
    name: "gs",
    feature: "gcs",
    description: "one object per entry in a Google Cloud Storage bucket",
    capabilities: ObjectBackend::default_capabilities,
    open,
}];

/// The Azure Blob Storage scheme.
#[cfg(feature = "azure")]
pub(crate) const AZURE_SCHEMES: &[Scheme] = &[Scheme {
    name: "az",
    feature: "azure",
    description: "one object per entry in an Azure Blob Storage container",
    capabilities: ObjectBackend::default_capabilities,
    open,
}];

/// Local files have no compare-and-swap.
fn local_capabilities() -> crate::Capabilities {
    crate::Capabilities {
        conditional_set: false,
        atomic_incr: false,
        ..ObjectBackend::default_capabilities()
    }
}

/// The parameters every form takes.
const PARAMS: &[&str] = &[
    "prefix",
    "timeout",
    "concurrency",
    "multipart_threshold",
    "default_ttl",
    "max_value_len",
];

/// The parameters of the cloud forms.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
const CLOUD_PARAMS: &[&str] = &["connect_timeout", "retries"];

/// The parameters of `s3://`.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
const S3_PARAMS: &[&str] = &["region", "endpoint", "allow_http"];

fn open(url: &str) -> Opening<'_> {
    Box::pin(async move {
        let backend: Arc<dyn Backend> = Arc::new(builder(url)?.build()?);
        Ok(backend)
    })
}

/// The builder of any object-storage URL.
pub(crate) fn builder(url: &str) -> Result<ObjectBuilder> {
    let parsed = parse_url(url, NAME)?;
    no_fragment(&parsed, NAME)?;
    let shown = redact(url);
    let bad = |what: &str| Error::config(NAME, format!("{shown}: {what}"));
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "credentials do not go in the URL; the store reads them from the environment",
        ));
    }
    let scheme = parsed.scheme().to_owned();
    let (mut builder, mut params, path_prefix) = if scheme == "object+file" {
        no_host(
            &parsed,
            NAME,
            &["localhost"],
            "the directory follows `object+file://`, e.g. `object+file:///var/cache/app`",
        )?;
        let dir = decode(parsed.path(), NAME, "the directory")?;
        if dir.is_empty() || dir == "/" {
            return Err(bad("name a directory, e.g. `object+file:///var/cache/app`"));
        }
        // The parameters are checked before anything is created.
        let params = UrlParams::parse(&parsed, NAME, &[PARAMS])?;
        std::fs::create_dir_all(&dir).map_err(|err| {
            Error::config(NAME, format!("cannot create the directory `{dir}`")).with_source(err)
        })?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(|err| {
            Error::config(NAME, format!("cannot open the directory `{dir}`: {err}"))
        })?;
        let builder = ObjectBackend::builder(Arc::new(store))
            .conditional_update(false)
            .shown(format!("object+file://{dir}"));
        (builder, params, String::new())
    } else {
        let bucket = match parsed.host_str() {
            Some(bucket) if !bucket.is_empty() => bucket.to_owned(),
            _ => return Err(bad("the URL names no bucket, e.g. `s3://bucket/prefix`")),
        };
        let prefix = decode(parsed.path().trim_matches('/'), NAME, "the prefix")?;
        let (builder, params) = cloud(&scheme, &bucket, &parsed, &shown)?;
        (builder, params, prefix)
    };
    let prefix = match params.text("prefix") {
        Some(extra) if !path_prefix.is_empty() => format!("{path_prefix}/{extra}"),
        Some(extra) => extra,
        None => path_prefix,
    };
    builder = builder.prefix(prefix);
    if let Some(timeout) = params.duration("timeout")? {
        builder = builder.timeout(timeout);
    }
    if let Some(requests) = params.integer::<usize>("concurrency")? {
        builder = builder.concurrency(requests);
    }
    if let Some(bytes) = params.byte_len("multipart_threshold")? {
        builder = builder.multipart_threshold(bytes);
    }
    if let Some(ttl) = params.duration("default_ttl")? {
        builder = builder.default_ttl(ttl);
    }
    if let Some(len) = params.byte_len("max_value_len")? {
        builder = builder.max_value_len(len);
    }
    Ok(builder)
}

/// The store of a cloud URL, from the environment's credentials.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn cloud(
    scheme: &str,
    bucket: &str,
    parsed: &url::Url,
    shown: &str,
) -> Result<(ObjectBuilder, UrlParams)> {
    use object_store::{BackoffConfig, ClientOptions, RetryConfig};
    let known: &[&[&str]] = if scheme == "s3" {
        &[PARAMS, CLOUD_PARAMS, S3_PARAMS]
    } else {
        &[PARAMS, CLOUD_PARAMS]
    };
    let mut params = UrlParams::parse(parsed, NAME, known)?;
    let connect_timeout = params
        .duration("connect_timeout")?
        .unwrap_or(Duration::from_secs(5));
    let retries = params.integer::<usize>("retries")?.unwrap_or(2);
    let allow_http = params.flag("allow_http")?.unwrap_or(false);
    let options = ClientOptions::new()
        .with_connect_timeout(connect_timeout)
        .with_allow_http(allow_http);
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: retries,
        retry_timeout: Duration::from_secs(30),
    };
    let failed = |err: object_store::Error| {
        Error::config(NAME, format!("{shown}: cannot set up the store: {err}"))
    };
    let store: Arc<dyn object_store::ObjectStore> = match scheme {
        #[cfg(feature = "s3")]
        "s3" => {
            let mut s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_client_options(options)
                .with_retry(retry);
            if let Some(region) = params.text("region") {
                s3 = s3.with_region(region);
            }
            if let Some(endpoint) = params.text("endpoint") {
                s3 = s3.with_endpoint(endpoint);
            }
            Arc::new(s3.with_allow_http(allow_http).build().map_err(failed)?)
        }
        #[cfg(feature = "gcs")]
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_client_options(options)
                .with_retry(retry)
                .build()
                .map_err(failed)?,
        ),
        #[cfg(feature = "azure")]
        "az" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_container_name(bucket)
                .with_client_options(options)
                .with_retry(retry)
                .build()
                .map_err(failed)?,
        ),
        other => {
            return Err(Error::config(
                NAME,
                format!("{shown}: `{other}://` is not compiled in"),
            ));
        }
    };
    let builder = ObjectBackend::builder(store).shown(format!("{scheme}://{bucket}"));
    Ok((builder, params))
}

#[cfg(not(any(feature = "s3", feature = "gcs", feature = "azure")))]
fn cloud(
    scheme: &str,
    _bucket: &str,
    _parsed: &url::Url,
    shown: &str,
) -> Result<(ObjectBuilder, UrlParams)> {
    Err(Error::config(
        NAME,
        format!("{shown}: `{scheme}://` needs the feature `s3`, `gcs` or `azure`"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_name_the_problem_and_never_a_secret() {
        for (url, needle) in [
            ("object+file://", "name a directory"),
            (
                "s3://key:secret@bucket/p",
                "credentials do not go in the URL",
            ),
            (
                "object+file:///tmp/cachette-url-test?prefx=a",
                "unknown parameter `prefx`",
            ),
        ] {
            let err = builder(url).unwrap_err();
            assert!(err.message().contains(needle), "{url}: {err}");
            assert!(!err.to_string().contains("secret"), "{url}: {err}");
        }
    }
}
