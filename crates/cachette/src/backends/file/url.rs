//! The `file://` URL form, opened by [`crate::open`], and the scheme's
//! declaration.

use std::sync::Arc;

use ::url::Url;

use super::{FileBackend, NAME};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::params::{Opening, Scheme, UrlParams, no_fragment, no_host, no_userinfo, parse_url};

/// The `file://` scheme.
pub(crate) const SCHEMES: &[Scheme] = &[Scheme {
    name: "file",
    feature: "file",
    description: "one file per entry, atomic writes, bounded size, shared by processes",
    capabilities: FileBackend::default_capabilities,
    open,
}];

/// The parameters of `file://`, in the order the docs list them.
const PARAMS: &[&str] = &[
    "max_entries",
    "max_bytes",
    "default_ttl",
    "fsync",
    "allow_non_empty",
    "max_key_len",
    "max_value_len",
];

/// What a `file://` URL holds instead of a host or user.
const HINT: &str = "it needs an absolute local path, e.g. `file:///var/cache/app`";

fn open(url: &str) -> Opening<'_> {
    Box::pin(open_dir(url))
}

/// Builds a file backend from `file:///dir?param=value&...`. The directory
/// is created and scanned on a blocking thread (inline outside a runtime).
async fn open_dir(url: &str) -> Result<Arc<dyn Backend>> {
    let builder = builder(&parse_url(url, NAME)?)?;
    let backend =
        crate::backends::common::on_blocking_pool(NAME, "open", move || builder.build()).await?;
    Ok(Arc::new(backend))
}

pub(crate) fn builder(url: &Url) -> Result<super::FileBuilder> {
    no_fragment(url, NAME)?;
    no_userinfo(url, NAME, HINT)?;
    no_host(url, NAME, &["localhost"], HINT)?;
    let dir = url.to_file_path().map_err(|()| {
        Error::config(
            NAME,
            "file:// needs an absolute local path, e.g. `file:///var/cache/app`",
        )
    })?;
    if dir.as_os_str().is_empty() || dir == std::path::Path::new("/") {
        return Err(Error::config(
            NAME,
            "file:// needs a cache directory, e.g. `file:///var/cache/app`",
        ));
    }
    let mut params = UrlParams::parse(url, NAME, &[PARAMS])?;
    let mut builder = FileBackend::builder(dir);
    if let Some(max) = params.integer("max_entries")? {
        builder = builder.max_entries(max);
    }
    if let Some(max) = params.bytes("max_bytes")? {
        builder = builder.max_bytes(max);
    }
    if let Some(ttl) = params.duration("default_ttl")? {
        builder = builder.default_ttl(ttl);
    }
    if let Some(fsync) = params.flag("fsync")? {
        builder = builder.fsync(fsync);
    }
    if let Some(allow) = params.flag("allow_non_empty")? {
        builder = builder.allow_non_empty(allow);
    }
    if let Some(max) = params.byte_len("max_key_len")? {
        builder = builder.max_key_len(max);
    }
    if let Some(max) = params.byte_len("max_value_len")? {
        builder = builder.max_value_len(max);
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn parse(url: &str) -> Result<super::super::FileBuilder> {
        builder(&Url::parse(url).unwrap())
    }

    #[test]
    fn a_url_gives_a_path_and_options() {
        let b = format!(
            "{:?}",
            parse("file:///tmp/my%20cache?max_bytes=64MiB&fsync=true&default_ttl=5m").unwrap()
        );
        assert!(b.contains("\"/tmp/my cache\""), "{b}");
        assert!(
            b.contains("max_bytes: Some(67108864)") && b.contains("fsync: true"),
            "{b}"
        );
        assert!(parse("file://localhost/tmp/x").is_ok());
    }

    #[test]
    fn bad_urls_are_config_errors_that_say_why() {
        for (url, says) in [
            ("file://otherhost/tmp/x", "absolute local path"),
            ("file:///tmp/x?fsync=maybe", "parameter `fsync`"),
            (
                "file:///tmp/x?max_entires=1",
                "unknown parameter `max_entires`",
            ),
            ("file:///", "needs a cache directory"),
            ("file:///tmp/x#frag", "fragment"),
        ] {
            let error = parse(url).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{url}");
            assert!(error.message().contains(says), "{url}: {error}");
        }
    }
}
