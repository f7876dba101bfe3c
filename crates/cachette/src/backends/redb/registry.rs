//! The database files this process has open.
//!
//! redb locks a file for one `Database` at a time, so every `RedbBackend`
//! on the same file in this process shares one `Arc<Database>`, found here
//! by the file's canonical path. The registry holds weak references: the
//! file is closed (and its lock released) when the last backend on it is
//! dropped or closed.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use redb::{Database, DatabaseError, StorageError};

use crate::error::{Error, ErrorKind, Result};

use super::NAME;

static OPEN: Mutex<BTreeMap<PathBuf, Weak<Database>>> = Mutex::new(BTreeMap::new());

/// Opens (or creates) the database at `path`, or returns the one this
/// process already has open. Returns the canonical path too.
pub(super) fn open(path: &Path, cache_size: Option<usize>) -> Result<(PathBuf, Arc<Database>)> {
    let path = resolve(path)?;
    let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
    open.retain(|_, db| db.strong_count() > 0);
    if let Some(db) = open.get(&path).and_then(Weak::upgrade) {
        return Ok((path, db));
    }
    create_private_file(&path)?;
    let mut builder = redb::Builder::new();
    if let Some(bytes) = cache_size {
        builder.set_cache_size(bytes);
    }
    let db = Arc::new(
        builder
            .create(&path)
            .map_err(|err| open_error(&path, err))?,
    );
    open.insert(path.clone(), Arc::downgrade(&db));
    Ok((path, db))
}

/// The absolute path of the file, through its canonical parent directory
/// (created 0700 if missing), so that two spellings of one file share one
/// database.
fn resolve(path: &Path) -> Result<PathBuf> {
    if path.as_os_str().is_empty() {
        return Err(Error::config(NAME, "the database path is empty"));
    }
    let absolute = std::path::absolute(path).map_err(|err| {
        Error::config(
            NAME,
            format!("cannot make `{}` an absolute path", path.display()),
        )
        .with_source(err)
    })?;
    if let Ok(canonical) = fs::canonicalize(&absolute) {
        return Ok(canonical);
    }
    let (Some(parent), Some(name)) = (absolute.parent(), absolute.file_name()) else {
        return Err(Error::config(
            NAME,
            format!("`{}` does not name a file", path.display()),
        ));
    };
    create_private_dir(parent).map_err(|err| {
        Error::new(
            ErrorKind::Backend,
            NAME,
            format!(
                "cannot create the directory `{}` of the database file",
                parent.display()
            ),
        )
        .with_source(err)
    })?;
    let parent = fs::canonicalize(parent).map_err(|err| {
        Error::new(
            ErrorKind::Backend,
            NAME,
            format!("cannot resolve the directory `{}`", parent.display()),
        )
        .with_source(err)
    })?;
    Ok(parent.join(name))
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

/// Creates the database file empty and readable by its owner only (a
/// cache may hold private data); redb initialises an empty file. An
/// existing file is left as it is.
fn create_private_file(path: &Path) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(Error::new(
            ErrorKind::Backend,
            NAME,
            format!("cannot create the database file `{}`", path.display()),
        )
        .with_source(err)),
    }
}

fn open_error(path: &Path, err: DatabaseError) -> Error {
    let path = path.display();
    let (kind, message) = match &err {
        DatabaseError::DatabaseAlreadyOpen => (
            ErrorKind::Backend,
            format!(
                "the database file `{path}` is open in another process; redb allows one process per file"
            ),
        ),
        DatabaseError::UpgradeRequired(_) => (
            ErrorKind::Config,
            format!("the database file `{path}` was written by another major version of redb"),
        ),
        DatabaseError::Storage(StorageError::Corrupted(_)) => (
            ErrorKind::Config,
            format!("`{path}` is not a redb database file, or it is corrupted"),
        ),
        DatabaseError::Storage(StorageError::Io(io))
            if matches!(
                io.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            ) =>
        {
            (
                ErrorKind::Config,
                format!("`{path}` is not a redb database file"),
            )
        }
        _ => (
            ErrorKind::Backend,
            format!("cannot open the database file `{path}`"),
        ),
    };
    Error::new(kind, NAME, message).with_source(err)
}
