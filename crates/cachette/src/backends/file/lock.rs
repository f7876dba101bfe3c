//! Striped locks on keys, shared by every process that opens the
//! directory.
//!
//! A key's stripe is a mutex (for the threads of this backend) and, on
//! Unix, an exclusive `flock` on the stripe's lock file under
//! `.cachette-locks/` (for other backends and other processes). Every
//! change of an entry file (write, overwrite, delete, touch, removal of an
//! expired or corrupt file, eviction, clear) happens under its stripe,
//! so read-modify-write operations (`incr`, conditional `set`, `touch`)
//! are atomic across processes. Readers take no lock: a rename replaces a
//! file whole, so they see the old entry or the new one.
//!
//! `flock` locks are released by the kernel when a process dies, so a
//! killed writer never leaves a stripe locked.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use parking_lot::{Mutex, MutexGuard};

/// The number of stripes; a power of two.
const STRIPES: usize = 64;

/// The directory of the lock files, inside the cache directory.
pub(super) const LOCK_DIR: &str = ".cachette-locks";

#[derive(Debug)]
pub(super) struct StripeLocks {
    dir: PathBuf,
    /// Each stripe's lock file, opened on first use.
    stripes: Box<[Mutex<Option<File>>]>,
}

/// A held stripe; dropping it releases the lock.
#[derive(Debug)]
pub(super) struct StripeGuard<'a> {
    file: MutexGuard<'a, Option<File>>,
}

impl StripeLocks {
    /// The locks of the cache in `root`; creates the lock directory.
    pub(super) fn open(root: &Path) -> io::Result<Self> {
        let dir = root.join(LOCK_DIR);
        super::files::create_dir(&dir)?;
        Ok(StripeLocks {
            dir,
            stripes: (0..STRIPES).map(|_| Mutex::new(None)).collect(),
        })
    }

    /// Locks the stripe of `hash`, waiting for other threads and processes.
    pub(super) fn lock(&self, hash: u128) -> io::Result<StripeGuard<'_>> {
        let stripe = (hash as usize) & (STRIPES - 1);
        let mut file = self.stripes[stripe].lock();
        if file.is_none() {
            let path = self.dir.join(format!("{stripe:02x}"));
            let mut options = OpenOptions::new();
            options.read(true).write(true).create(true).truncate(false);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            *file = Some(options.open(path)?);
        }
        if let Some(file) = file.as_ref() {
            flock(file, true)?;
        }
        Ok(StripeGuard { file })
    }
}

impl Drop for StripeGuard<'_> {
    fn drop(&mut self) {
        if let Some(file) = self.file.as_ref()
            && let Err(error) = flock(file, false)
        {
            // Closing the file is the only other way to release it.
            tracing::warn!(%error, "file backend: cannot release a stripe lock; closing it");
            *self.file = None;
        }
    }
}

/// Takes (`exclusive`) or releases the `flock` of `file`.
#[cfg(unix)]
fn flock(file: &File, exclusive: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let operation = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_UN
    };
    loop {
        // SAFETY: `flock` takes a file descriptor, which `file` keeps
        // open for the duration of the call, and an operation flag.
        let result = unsafe { libc::flock(file.as_raw_fd(), operation) };
        if result == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Without `flock`, the stripe's mutex is the whole lock: atomic within
/// this backend only (the capabilities say so).
#[cfg(not(unix))]
fn flock(_file: &File, _exclusive: bool) -> io::Result<()> {
    Ok(())
}

/// Whether the locks hold across processes on this platform.
pub(super) const CROSS_PROCESS: bool = cfg!(unix);
