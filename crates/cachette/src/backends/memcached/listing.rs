//! `keys` through `lru_crawler metadump`, and the text commands (`stats`,
//! `flush_all`) that are not meta commands, each on a connection of its
//! own.
//!
//! A dump lists every live item of a server, one line each (`key=… exp=…
//! la=… cas=… fetch=… cls=… size=…`, the key URI-encoded, lines ended by
//! `\n`), then `END`. Only one dump runs at a time on a server (`BUSY`
//! otherwise: retried for a while). The keys of this prefix's current
//! generation are kept, those stored under a digest resolved by reading
//! their item, and every candidate is read back in batches so that an
//! invalidated or foreign item is not listed.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::conn::Server;
use super::keys::ServerKey;
use super::proto;
use super::{MemcachedBackend, NAME, Read, entry};
use crate::backend::KeyStream;
use crate::error::{Error, ErrorKind, Result};
use crate::glob::Pattern;

/// Keys read back per batch while listing.
const CHECK_BATCH: usize = 128;

/// How often a dump refused with `BUSY` is tried again.
const BUSY_RETRIES: usize = 40;

/// Sends a text command on a connection of its own and returns the lines
/// of the answer up to the one `is_end` accepts (not included). Each line
/// must arrive within `response_timeout` of the previous one.
pub(super) async fn text_command(
    server: &Server,
    command: &str,
    is_end: impl Fn(&str) -> bool,
) -> Result<Vec<String>> {
    let timeout = server.timing().response_timeout;
    let mut stream = server.dedicated().await?;
    let no_answer = || {
        Error::new(
            ErrorKind::Timeout,
            NAME,
            format!(
                "{}: no answer to `{command}` within {timeout:?}",
                server.address
            ),
        )
    };
    let broken = |err: std::io::Error| {
        Error::new(
            ErrorKind::Connection,
            NAME,
            format!("{}: the connection broke: {err}", server.address),
        )
    };
    tokio::time::timeout(
        timeout,
        stream.write_all(format!("{command}\r\n").as_bytes()),
    )
    .await
    .map_err(|_| no_answer())?
    .map_err(broken)?;
    let mut reader = BufReader::new(stream);
    let mut lines = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = tokio::time::timeout(timeout, reader.read_until(b'\n', &mut line))
            .await
            .map_err(|_| no_answer())?
            .map_err(broken)?;
        if read == 0 {
            return Err(broken(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if is_end(text) {
            return Ok(lines);
        }
        if text.starts_with("ERROR")
            || text.starts_with("CLIENT_ERROR")
            || text.starts_with("SERVER_ERROR")
        {
            return Err(refusal(text));
        }
        if text.starts_with("BUSY") || text.starts_with("BADCLASS") {
            return Err(Error::new(
                ErrorKind::Backend,
                NAME,
                format!("{}: `{command}`: {text}", server.address),
            ));
        }
        lines.push(text.to_owned());
    }
}

/// An error line in answer to a text command.
fn refusal(line: &str) -> Error {
    if line.contains("not allowed") || line.contains("disabled") {
        return Error::new(
            ErrorKind::Unsupported,
            NAME,
            format!(
                "the server refuses `lru_crawler metadump` ({line}); key listing needs a \
                 server started without `-X` and with the LRU crawler"
            ),
        );
    }
    Error::new(
        ErrorKind::Backend,
        NAME,
        format!("the server answered `{line}`"),
    )
}

/// The keys of `backend` that match `pattern`, server after server.
pub(super) async fn keys(backend: MemcachedBackend, pattern: &str) -> Result<KeyStream> {
    let pattern = Pattern::new(pattern);
    let count = backend.inner.servers.len();
    // The first server now, so that a refusal is the answer to `keys`.
    let first = list_server(&backend, 0, &pattern)
        .await
        .map_err(|err| err.with_operation("keys"))?;
    let rest = stream::iter(1..count)
        .then(move |s| {
            let backend = backend.clone();
            let pattern = pattern.clone();
            async move {
                list_server(&backend, s, &pattern)
                    .await
                    .map_err(|err| err.with_operation("keys"))
            }
        })
        .flat_map(|listed| match listed {
            Ok(keys) => stream::iter(keys.into_iter().map(Ok).collect::<Vec<_>>()),
            Err(err) => stream::iter(vec![Err(err)]),
        });
    Ok(stream::iter(first.into_iter().map(Ok)).chain(rest).boxed())
}

/// The valid keys of this prefix on server `s` that match `pattern`.
async fn list_server(
    backend: &MemcachedBackend,
    s: usize,
    pattern: &Pattern,
) -> Result<Vec<String>> {
    let server = &backend.inner.servers[s];
    // The current generation (a read of it and nothing else).
    let (namespace, _) = backend.on_server(s, "keys", |_, _| 0).await?;
    let mut lines = None;
    for _ in 0..BUSY_RETRIES {
        match text_command(server, "lru_crawler metadump hash", |line| line == "END").await {
            Ok(dumped) => {
                lines = Some(dumped);
                break;
            }
            Err(err) if err.message().contains("BUSY") => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => return Err(err),
        }
    }
    let lines = lines.ok_or_else(|| {
        Error::new(
            ErrorKind::Backend,
            NAME,
            format!("{}: another key dump kept the server busy", server.address),
        )
    })?;
    let digest_marker = format!("{namespace}\u{FF}h:");
    let mut candidates = Vec::new();
    let mut hashed = Vec::new();
    for line in &lines {
        let Some(encoded) = line.split(' ').find_map(|field| field.strip_prefix("key=")) else {
            continue;
        };
        let bytes: Vec<u8> = percent_decode_str(encoded).collect();
        let Ok(stored) = String::from_utf8(bytes) else {
            continue;
        };
        if stored.starts_with(&digest_marker) {
            hashed.push(stored);
        } else if let Some(key) = stored.strip_prefix(&namespace)
            && pattern.matches(key)
        {
            candidates.push(key.to_owned());
        }
    }
    // A key stored under its digest: its item names it.
    for chunk in hashed.chunks(CHECK_BATCH) {
        let mut commands = Vec::new();
        for stored in chunk {
            proto::meta_get(&mut commands, ServerKey::new("", stored).wire(), "v f");
        }
        for response in server.call(commands, chunk.len()).await? {
            let proto::Response::Meta(meta) = response else {
                continue;
            };
            let (Some(flags), Some(value)) = (meta.client_flags, meta.value) else {
                continue;
            };
            if let Ok(entry::Entry { key: Some(key), .. }) = entry::decode(flags, value)
                && pattern.matches(&key)
            {
                candidates.push(key);
            }
        }
    }
    // Read back: only valid entries (tags unchanged) are listed.
    let mut keys = Vec::with_capacity(candidates.len());
    for chunk in candidates.chunks(CHECK_BATCH) {
        let batch: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let reads = backend.read_on(s, &batch, "v f c", "keys").await?;
        for (key, read) in chunk.iter().zip(reads) {
            if matches!(read, Read::Valid { .. }) {
                keys.push(key.clone());
            }
        }
    }
    Ok(keys)
}
