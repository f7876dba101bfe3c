//! `keys` through `lru_crawler metadump`, and the text commands (`stats`,
//! `flush_all`) that are not meta commands, each on a connection of its
//! own.
//!
//! A dump lists every live item of a server, one line each (`key=… exp=…
//! la=… cas=… fetch=… cls=… size=…`, the key URI-encoded, lines ended by
//! `\n`), then `END`. Only one dump runs at a time on a server (`BUSY`
//! otherwise: retried for a while). The keys of this prefix's current
//! generation are kept as the dump streams by (the others are never held),
//! those stored under a digest resolved by reading their item, and every
//! candidate is read back in batches so that an invalidated or foreign
//! item is not listed.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::conn::Server;
use super::keys::{DIGEST_MARKER, ServerKey};
use super::proto;
use super::{MemcachedBackend, NAME, Read, entry};
use crate::backend::KeyStream;
use crate::error::{Error, ErrorKind, Result};
use crate::glob::Pattern;

/// Keys read back per batch while listing.
const CHECK_BATCH: usize = 128;

/// How often a dump refused with `BUSY` is tried again.
const BUSY_RETRIES: usize = 40;

/// The longest line of a text answer accepted (a metadump line holds a
/// key of at most 250 bytes, URI-encoded, and a few fields).
const MAX_TEXT_LINE: usize = 4096;

/// Sends a text command on a connection of its own and returns the lines
/// of the answer up to the one `is_end` accepts (not included).
pub(super) async fn text_command(
    server: &Server,
    command: &str,
    is_end: impl Fn(&str) -> bool,
) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    text_lines(server, command, is_end, |line| {
        lines.push(String::from_utf8_lossy(line).into_owned());
    })
    .await?;
    Ok(lines)
}

/// Sends a text command on a connection of its own and hands each line of
/// the answer to `each`, up to the one `is_end` accepts. Each line must
/// arrive within `response_timeout` of the previous one and be at most
/// [`MAX_TEXT_LINE`] bytes long.
async fn text_lines(
    server: &Server,
    command: &str,
    is_end: impl Fn(&str) -> bool,
    mut each: impl FnMut(&[u8]),
) -> Result<()> {
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
    let mut reader = BufReader::new(stream).take(u64::MAX);
    let mut line = Vec::new();
    loop {
        line.clear();
        // At most one line's worth beyond the limit is read.
        reader.set_limit(MAX_TEXT_LINE as u64 + 1);
        let read = tokio::time::timeout(timeout, reader.read_until(b'\n', &mut line))
            .await
            .map_err(|_| no_answer())?
            .map_err(broken)?;
        if read == 0 {
            return Err(broken(std::io::ErrorKind::UnexpectedEof.into()));
        }
        if line.len() > MAX_TEXT_LINE {
            return Err(Error::new(
                ErrorKind::Backend,
                NAME,
                format!(
                    "{}: a line of more than {MAX_TEXT_LINE} bytes in answer to `{command}`",
                    server.address
                ),
            ));
        }
        while matches!(line.last(), Some(b'\r' | b'\n')) {
            line.pop();
        }
        let text = String::from_utf8_lossy(&line);
        if is_end(&text) {
            return Ok(());
        }
        if text.starts_with("ERROR")
            || text.starts_with("CLIENT_ERROR")
            || text.starts_with("SERVER_ERROR")
            || text.starts_with("BUSY")
            || text.starts_with("BADCLASS")
        {
            return Err(refusal(&server.address.to_string(), command, &text));
        }
        each(&line);
    }
}

/// An error line in answer to the text command `command`.
fn refusal(address: &str, command: &str, line: &str) -> Error {
    let line: String = line.chars().take(200).collect();
    let dump = command.starts_with("lru_crawler");
    if dump && (line.contains("not allowed") || line.contains("disabled")) {
        return Error::new(
            ErrorKind::Unsupported,
            NAME,
            format!(
                "{address} refuses `{command}` ({line}); key listing needs a server started \
                 without `-X` and with the LRU crawler"
            ),
        );
    }
    if line.contains("not allowed") {
        return Error::new(
            ErrorKind::Unsupported,
            NAME,
            format!("{address} refuses `{command}` ({line})"),
        );
    }
    Error::new(
        ErrorKind::Backend,
        NAME,
        format!("{address} answered `{line}` to `{command}`"),
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

/// The valid keys of this prefix on server `s` that match `pattern`. The
/// dump is read line by line; only this prefix's matching keys are kept.
async fn list_server(
    backend: &MemcachedBackend,
    s: usize,
    pattern: &Pattern,
) -> Result<Vec<String>> {
    let server = &backend.inner.servers[s];
    // The current generation (a read of it and nothing else).
    let (namespace, _) = backend.on_server(s, "keys", |_, _| 0).await?;
    let namespace = namespace.into_bytes();
    let mut candidates = Vec::new();
    let mut hashed = Vec::new();
    let mut attempts = 0;
    loop {
        candidates.clear();
        hashed.clear();
        let dumped = text_lines(
            server,
            "lru_crawler metadump hash",
            |line| line == "END",
            |line| {
                let Some(encoded) = line
                    .split(|&byte| byte == b' ')
                    .find_map(|field| field.strip_prefix(b"key="))
                else {
                    return;
                };
                let Ok(encoded) = std::str::from_utf8(encoded) else {
                    return;
                };
                let stored: Vec<u8> = percent_decode_str(encoded).collect();
                let Some(rest) = stored.strip_prefix(namespace.as_slice()) else {
                    return;
                };
                if rest.starts_with(DIGEST_MARKER) {
                    hashed.push(stored);
                } else if let Ok(key) = std::str::from_utf8(rest)
                    && pattern.matches(key)
                {
                    candidates.push(key.to_owned());
                }
            },
        )
        .await;
        match dumped {
            Ok(()) => break,
            Err(err) if err.message().contains("BUSY") && attempts < BUSY_RETRIES => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => return Err(err),
        }
    }
    // A key stored under its digest: its item names it.
    for chunk in hashed.chunks(CHECK_BATCH) {
        let mut commands = Vec::new();
        for stored in chunk {
            proto::meta_get(&mut commands, ServerKey::from_stored(stored).wire(), "v f");
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
