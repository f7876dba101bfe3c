//! The files on disk, below the store: opening and reading entry files,
//! creating files and directories with private permissions, flushing
//! directories, and the cache directory's marker.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::NAME;
use super::format::{
    Corruption, FORMAT_VERSION, Header, MAX_HEADER_LEN, decode_fixed, decode_header,
};
use crate::error::{Error, ErrorKind, Result};

/// The marker file that makes a directory a cachette cache.
pub(super) const MARKER: &str = ".cachette-cache";
/// The first line of the marker.
pub(super) const MARKER_TITLE: &str = "cachette file cache";
/// The prefix of temporary files, in the fan-out directory of their entry.
pub(super) const TEMP_PREFIX: &str = ".tmp-";
/// Temporary files older than this were left by a writer that died; scans
/// and `clear` remove them. Younger ones may belong to a writer at work.
pub(super) const STALE_TEMP_AGE: Duration = Duration::from_secs(600);
/// No valid entry file is longer: the largest header and value.
pub(super) const MAX_FILE_LEN: u64 = (MAX_HEADER_LEN + super::MAX_VALUE_LEN) as u64;
/// How much of a file a header read asks for at first; longer headers
/// take a second read.
pub(super) const HEADER_READ: usize = 4096;

/// Which file a read saw, so that a later removal under the lock can make
/// sure it removes that file and not a newer one written meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
}

impl FileId {
    /// When the file was last written, if the file system tells.
    pub(super) fn modified(&self) -> Option<SystemTime> {
        self.modified
    }

    pub(super) fn of(meta: &Metadata) -> Self {
        FileId {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            inode: {
                use std::os::unix::fs::MetadataExt;
                (meta.dev(), meta.ino())
            },
        }
    }
}

/// Creates a directory and its missing parents, each 0700 on Unix.
pub(super) fn create_dir(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// Flushes a directory's entries (a rename or a new file in it) to disk.
pub(super) fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(path)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// A suffix for a temporary file name that no other writer picks: the
/// process id and a random number. The random number alone is not
/// enough: processes started together can seed their generators alike
/// (seen: four processes opening one directory at once drew the same
/// marker name).
pub(super) fn unique_suffix() -> String {
    format!("{:x}-{:016x}", std::process::id(), fastrand::u64(..))
}

/// Creates a new file 0600 that must not exist yet.
pub(super) fn create_new_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// An I/O error as a cachette error: `PermissionDenied` stays itself,
/// everything else is a backend error. The message names the path.
pub(super) fn io_error(what: &str, path: &Path, error: io::Error) -> Error {
    let kind = match error.kind() {
        io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        _ => ErrorKind::Backend,
    };
    Error::new(kind, NAME, format!("cannot {what} {}", path.display())).with_source(error)
}

pub(super) fn is_lower_hex(name: &str, len: usize) -> bool {
    name.len() == len && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Opens a file for reading; `None` if it does not exist or is not a
/// regular file (a directory where an entry should be is left alone).
pub(super) fn open_entry(path: &Path) -> io::Result<Option<(File, Metadata)>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let meta = file.metadata()?;
    Ok(meta.is_file().then_some((file, meta)))
}

/// Reads a whole entry file: its bytes and which file it was.
pub(super) fn read_whole(path: &Path) -> io::Result<Option<(Vec<u8>, FileId)>> {
    let Some((file, meta)) = open_entry(path)? else {
        return Ok(None);
    };
    let id = FileId::of(&meta);
    if meta.len() > MAX_FILE_LEN {
        // Longer than any entry: garbage. Empty bytes decode as corrupt.
        return Ok(Some((Vec::new(), id)));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // `take` spares the size query (`statx`, `lseek`) and the final probe
    // read of `File::read_to_end`: one `read` for the whole file. A file
    // that changed size meanwhile fails the length checks of the format.
    file.take(meta.len()).read_to_end(&mut bytes)?;
    Ok(Some((bytes, id)))
}

/// A decoded (or not) header, the file's size and which file it was.
pub(super) type HeadRead = (Result<Header, Corruption>, u64, FileId);

/// Reads and decodes only the header of an entry file.
pub(super) fn read_head(path: &Path) -> io::Result<Option<HeadRead>> {
    let Some((mut file, meta)) = open_entry(path)? else {
        return Ok(None);
    };
    let (len, id) = (meta.len(), FileId::of(&meta));
    let mut buf = vec![0; usize::try_from(len).unwrap_or(usize::MAX).min(HEADER_READ)];
    if let Err(error) = file.read_exact(&mut buf) {
        return match error.kind() {
            io::ErrorKind::UnexpectedEof => Ok(Some((Err(Corruption::Lengths), len, id))),
            _ => Err(error),
        };
    }
    let header = match decode_fixed(&buf, len) {
        Ok(fixed) if fixed.header_len > buf.len() => {
            let start = buf.len();
            buf.resize(fixed.header_len, 0);
            match file.read_exact(&mut buf[start..]) {
                Ok(()) => decode_header(&buf, len),
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                    Err(Corruption::Lengths)
                }
                Err(error) => return Err(error),
            }
        }
        Ok(_) => decode_header(&buf, len),
        Err(corruption) => Err(corruption),
    };
    Ok(Some((header, len, id)))
}

/// Removes a temporary file if its writer has evidently died.
pub(super) fn remove_stale_temp(path: &Path, now: SystemTime) {
    let stale = fs::symlink_metadata(path)
        .and_then(|meta| meta.modified())
        .is_ok_and(|modified| {
            now.duration_since(modified)
                .is_ok_and(|age| age > STALE_TEMP_AGE)
        });
    if stale && let Err(error) = fs::remove_file(path) {
        tracing::debug!(path = %path.display(), %error, "file backend: cannot remove a stale temporary file");
    }
}

/// Creates the directory if needed, checks who may write to it, and
/// checks or writes its marker.
///
/// Several processes may open a fresh directory at once: each creates it
/// (or finds it made), and each either finds a marker or writes one
/// whole under a temporary name and renames it over any other's.
pub(super) fn prepare_dir(root: &Path, allow_non_empty: bool) -> Result<()> {
    let meta = match fs::metadata(root) {
        Ok(meta) => meta,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            create_dir(root).map_err(|e| io_error("create the cache directory", root, e))?;
            fs::metadata(root).map_err(|e| io_error("open the cache directory", root, e))?
        }
        Err(error) => return Err(io_error("open the cache directory", root, error)),
    };
    if !meta.is_dir() {
        return Err(Error::config(
            NAME,
            format!("{} is not a directory", root.display()),
        ));
    }
    check_root_access(root, &meta)?;
    let marker = root.join(MARKER);
    if let Some(text) = read_marker(&marker)? {
        return check_marker(&marker, &text);
    }
    if !allow_non_empty && has_foreign_files(root)? {
        // Another process may have written its marker, then its lock
        // directory, since the marker was read.
        if let Some(text) = read_marker(&marker)? {
            return check_marker(&marker, &text);
        }
        return Err(Error::config(
            NAME,
            format!(
                "the directory {} is not empty and is not a cachette cache (it has no {MARKER} file); \
                 use an empty or new directory, or set allow_non_empty to adopt it",
                root.display()
            ),
        ));
    }
    // Written whole under a temporary name, then renamed, so that another
    // process never reads half a marker.
    let temp = root.join(format!("{MARKER}.tmp-{}", unique_suffix()));
    let written = create_new_file(&temp)
        .and_then(|mut file| {
            file.write_all(format!("{MARKER_TITLE}\nformat: {FORMAT_VERSION}\n").as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&temp, &marker))
        .and_then(|()| sync_dir(root));
    if let Err(error) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_error("write the cache marker", &marker, error));
    }
    Ok(())
}

/// The text of the marker, `None` if there is none yet.
fn read_marker(marker: &Path) -> Result<Option<String>> {
    match fs::read_to_string(marker) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error("read the cache marker", marker, error)),
    }
}

/// Whether the directory holds anything but markers being written and the
/// lock directory, both of which another opener may be creating.
fn has_foreign_files(root: &Path) -> Result<bool> {
    for entry in fs::read_dir(root).map_err(|e| io_error("list", root, e))? {
        let entry = entry.map_err(|e| io_error("list", root, e))?;
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(MARKER) || n == super::lock::LOCK_DIR);
        if !ours {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Refuses a cache directory that another user owns or that others may
/// write to: they could plant entries that this process would serve, or
/// read what it stores.
fn check_root_access(root: &Path, meta: &Metadata) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if meta.uid() != euid {
            return Err(Error::config(
                NAME,
                format!(
                    "the cache directory {} is owned by another user (uid {}, this process runs as uid {euid}); \
                     use a directory of your own",
                    root.display(),
                    meta.uid()
                ),
            ));
        }
        if meta.mode() & 0o002 != 0 {
            return Err(Error::config(
                NAME,
                format!(
                    "the cache directory {} is writable by others (mode {:o}); \
                     remove that permission (chmod o-w) or use a private directory",
                    root.display(),
                    meta.mode() & 0o7777
                ),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = (root, meta);
    Ok(())
}

/// Checks a marker's text: this format version or an older one.
pub(super) fn check_marker(marker: &Path, text: &str) -> Result<()> {
    let mut lines = text.lines();
    let version = match (lines.next(), lines.next()) {
        (Some(MARKER_TITLE), Some(line)) => line
            .strip_prefix("format: ")
            .and_then(|v| v.trim().parse::<u16>().ok()),
        _ => None,
    };
    match version {
        Some(version) if version <= FORMAT_VERSION => Ok(()),
        Some(version) => Err(Error::config(
            NAME,
            format!(
                "{} says format {version}, which is newer than this build reads ({FORMAT_VERSION})",
                marker.display()
            ),
        )),
        None => Err(Error::config(
            NAME,
            format!("{} is not a cachette marker file", marker.display()),
        )),
    }
}
