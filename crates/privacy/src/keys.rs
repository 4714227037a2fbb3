//! The key directory: where pseudonym and citizen keys live on disk, and how they are
//! written.
//!
//! Owns the layout below one directory; must not touch anything outside it, and nothing
//! else may write inside it:
//!
//! ```text
//! <key dir>/                                  0700
//!   pseudonym/<tenant>/<purpose>/v<N>.key     0600, 32 random bytes (HMAC-SHA256 key)
//!   vault/<tenant>/<hh>/<hash>.key            0600, 32 random bytes (AES-256-GCM key)
//!   vault/<tenant>/<hh>/<hash>.erased         0600, tombstone: no key material
//! ```
//!
//! Every file is written atomically: a temporary file in the same directory is written,
//! fsynced and then renamed (or hard-linked, when an existing file must never be
//! replaced), and the directory is fsynced. A crash leaves either the old state or the
//! new one, never a half-written key.
//!
//! # Apart from the data
//!
//! [`KeyDir::open`] accepts any path, but the key directory must live **apart from the
//! data directory**: crypto-shredding only works if backups and copies of the data never
//! contain the keys. Call [`KeyDir::check_apart_from`] at start-up to refuse a key
//! directory inside the data directory (or the other way round).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};

/// Length in bytes of every key this crate stores: 256 bits.
pub const KEY_LEN: usize = 32;

/// Errors from the key directory.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file system operation failed.
    #[error(
        "could not {action} `{}`: {source}; check that the key directory exists, is on a local file system and is writable by the user running polity",
        path.display()
    )]
    Io {
        /// What was being done, e.g. "create directory".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The key directory and the data directory overlap.
    #[error(
        "the key directory `{}` and the data directory `{}` overlap (one is inside the other); keys must live apart from the data so that copies and backups of the data never hold them: choose a key directory outside the data directory",
        key_dir.display(),
        data_dir.display()
    )]
    NotApart {
        /// The key directory, resolved.
        key_dir: PathBuf,
        /// The data directory, resolved.
        data_dir: PathBuf,
    },
    /// A key file does not hold exactly [`KEY_LEN`] bytes.
    #[error(
        "key file `{}` holds {len} bytes instead of {KEY_LEN}: it is damaged; restore the key directory from its own backup (never from a data backup)",
        path.display()
    )]
    CorruptKey {
        /// The key file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The operating system's random generator failed.
    #[error(
        "the operating system's random generator failed; polity cannot create keys without it: check that /dev/urandom or getrandom(2) is available"
    )]
    Random,
}

pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> KeyError {
    let path = path.to_path_buf();
    move |source| KeyError::Io {
        action,
        path,
        source,
    }
}

/// Fills a buffer with random bytes from the operating system ([`SystemRandom`]).
pub(crate) fn random_bytes<const N: usize>(rng: &SystemRandom) -> Result<[u8; N], KeyError> {
    let mut buf = [0u8; N];
    rng.fill(&mut buf).map_err(|_| KeyError::Random)?;
    Ok(buf)
}

/// A key directory (see the [module docs](self) for its layout).
///
/// Cheap to clone: it is a path. The directory should be used by one polity process at a
/// time; keys are cached in memory by the users of a `KeyDir`, and a rotation or an
/// erasure made by another process is only seen after a reopen.
#[derive(Debug, Clone)]
pub struct KeyDir {
    root: PathBuf,
}

/// Outcome of [`KeyDir::create_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Created {
    /// The file was created with the given bytes.
    New,
    /// A file already existed there and was left as it was.
    Existed,
}

impl KeyDir {
    /// Opens a key directory, creating it (mode 0700) if it does not exist.
    ///
    /// Refuses no location, but the directory must live apart from the data directory:
    /// see [`KeyDir::check_apart_from`]. Warns (via `tracing`) when an existing directory
    /// can be read by other users.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let root = path.as_ref().to_path_buf();
        create_dir_private(&root)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = fs::metadata(&root).map_err(io_err("read metadata of", &root))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    message = "key directory is accessible to other users; run chmod 700 on it",
                    path = %root.display(),
                    mode = format_args!("{mode:o}"),
                );
            }
        }
        Ok(KeyDir { root })
    }

    /// The directory's path, as given to [`KeyDir::open`].
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Checks that this key directory and `data_dir` do not overlap: neither may be
    /// inside the other, nor may they be the same directory.
    ///
    /// Both paths are resolved (symbolic links followed, `..` removed) as far as they
    /// exist; a part that does not exist yet is appended as written, so the check also
    /// works before the data directory is created.
    pub fn check_apart_from(&self, data_dir: impl AsRef<Path>) -> Result<(), KeyError> {
        let key_dir = resolve(&self.root)?;
        let data_dir = resolve(data_dir.as_ref())?;
        if key_dir.starts_with(&data_dir) || data_dir.starts_with(&key_dir) {
            return Err(KeyError::NotApart { key_dir, data_dir });
        }
        Ok(())
    }

    /// The absolute location of a path relative to the key directory.
    pub(crate) fn join(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// Reads a key file. `Ok(None)` if it does not exist.
    pub(crate) fn read_key(&self, rel: &Path) -> Result<Option<[u8; KEY_LEN]>, KeyError> {
        let path = self.join(rel);
        let mut bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        let key: Result<[u8; KEY_LEN], _> = bytes.as_slice().try_into();
        let len = bytes.len() as u64;
        // Best effort: do not leave a copy of the key in the freed buffer.
        bytes.fill(0);
        key.map(Some)
            .map_err(|_| KeyError::CorruptKey { path, len })
    }

    /// Whether a file exists (any kind).
    pub(crate) fn exists(&self, rel: &Path) -> Result<bool, KeyError> {
        let path = self.join(rel);
        path.try_exists().map_err(io_err("check", &path))
    }

    /// Creates a file atomically with `bytes`, unless one already exists there (then it
    /// is left untouched, even if another process created it a moment ago). Creates the
    /// parent directories (0700) as needed.
    pub(crate) fn create_file(&self, rel: &Path, bytes: &[u8]) -> Result<Created, KeyError> {
        let path = self.join(rel);
        let (dir, tmp) = self.write_temp(&path, bytes)?;
        // hard_link never replaces an existing file: the first writer wins.
        let linked = fs::hard_link(&tmp, &path);
        fs::remove_file(&tmp).map_err(io_err("remove temporary file", &tmp))?;
        match linked {
            Ok(()) => {
                sync_dir(&dir)?;
                Ok(Created::New)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Created::Existed),
            Err(e) => Err(io_err("create", &path)(e)),
        }
    }

    /// Writes a file atomically with `bytes`, replacing any existing file. Creates the
    /// parent directories (0700) as needed.
    pub(crate) fn replace_file(&self, rel: &Path, bytes: &[u8]) -> Result<(), KeyError> {
        let path = self.join(rel);
        let (dir, tmp) = self.write_temp(&path, bytes)?;
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("rename into place", &path)(e));
        }
        sync_dir(&dir)
    }

    /// Deletes a file and fsyncs its directory. `Ok(false)` if it did not exist.
    pub(crate) fn remove_file(&self, rel: &Path) -> Result<bool, KeyError> {
        let path = self.join(rel);
        match fs::remove_file(&path) {
            Ok(()) => {
                if let Some(dir) = path.parent() {
                    sync_dir(dir)?;
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("delete", &path)(e)),
        }
    }

    /// Lists the file names in a directory below the key directory; empty if the
    /// directory does not exist. Names that are not UTF-8 are skipped.
    pub(crate) fn list(&self, rel: &Path) -> Result<Vec<String>, KeyError> {
        let path = self.join(rel);
        let entries = match fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("list", &path)(e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("list", &path))?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Writes `bytes` to a new temporary file (0600) next to `path`, fsynced.
    fn write_temp(&self, path: &Path, bytes: &[u8]) -> Result<(PathBuf, PathBuf), KeyError> {
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        create_dir_private(&dir)?;
        let suffix: [u8; 8] = random_bytes(&SystemRandom::new())?;
        let name = suffix.iter().fold(String::from(".tmp-"), |mut s, b| {
            s.push_str(&format!("{b:02x}"));
            s
        });
        let tmp = dir.join(name);
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let written = opts
            .open(&tmp)
            .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("write temporary file", &tmp)(e));
        }
        Ok((dir, tmp))
    }
}

/// Creates a directory and its missing parents with mode 0700. Parents that already
/// exist keep their mode.
fn create_dir_private(dir: &Path) -> Result<(), KeyError> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(io_err("create directory", dir))
}

/// Fsyncs a directory so that a rename, link or unlink in it is durable.
fn sync_dir(dir: &Path) -> Result<(), KeyError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync directory", dir))
}

/// Resolves a path that may not exist yet: the longest existing ancestor is
/// canonicalized and the rest appended with `.` and `..` applied lexically.
fn resolve(path: &Path) -> Result<PathBuf, KeyError> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(io_err("find the current directory for", path))?
            .join(path)
    };
    let mut tail = Vec::new();
    let mut existing = abs.as_path();
    let base = loop {
        match existing.canonicalize() {
            Ok(c) => break c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => match existing.parent() {
                Some(parent) => {
                    if let Some(name) = existing.file_name() {
                        tail.push(name.to_os_string());
                    } else {
                        // `..` at the end: keep it for the lexical pass.
                        tail.push("..".into());
                    }
                    existing = parent;
                }
                None => break PathBuf::from(existing),
            },
            Err(e) => return Err(io_err("resolve", existing)(e)),
        }
    };
    let mut out = base;
    for part in tail.iter().rev() {
        for c in Path::new(part).components() {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::CurDir => {}
                other => out.push(other.as_os_str()),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apart_directories_pass_and_nested_ones_fail() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = KeyDir::open(tmp.path().join("keys")).unwrap();
        assert!(keys.check_apart_from(tmp.path().join("data")).is_ok());
        // Key dir inside the data dir, data dir inside the key dir, and the same dir.
        assert!(matches!(
            keys.check_apart_from(tmp.path()),
            Err(KeyError::NotApart { .. })
        ));
        assert!(
            keys.check_apart_from(tmp.path().join("keys/data/not-yet"))
                .is_err()
        );
        assert!(keys.check_apart_from(tmp.path().join("keys")).is_err());
        // `..` through a directory that does not exist yet still resolves.
        assert!(
            keys.check_apart_from(tmp.path().join("data/x/../../keys/sub"))
                .is_err()
        );
        assert!(
            keys.check_apart_from(tmp.path().join("data/x/../../data2"))
                .is_ok()
        );
        // A name that merely starts with the key dir's name is not inside it.
        assert!(keys.check_apart_from(tmp.path().join("keys2")).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn apart_check_follows_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("data")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("data"), tmp.path().join("alias")).unwrap();
        let keys = KeyDir::open(tmp.path().join("alias/keys")).unwrap();
        assert!(keys.check_apart_from(tmp.path().join("data")).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn files_are_0600_and_dirs_0700() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let keys = KeyDir::open(tmp.path().join("k")).unwrap();
        let rel = Path::new("a/b/c.key");
        assert_eq!(keys.create_file(rel, &[7; 32]).unwrap(), Created::New);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&keys.join(rel)), 0o600);
        assert_eq!(mode(&keys.join(Path::new("a/b"))), 0o700);
        assert_eq!(mode(&keys.join(Path::new("a"))), 0o700);
        assert_eq!(mode(keys.path()), 0o700);
    }

    #[test]
    fn create_never_replaces_and_leaves_no_temp_files() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = KeyDir::open(tmp.path()).unwrap();
        let rel = Path::new("x/k.key");
        assert_eq!(keys.create_file(rel, &[1; 32]).unwrap(), Created::New);
        assert_eq!(keys.create_file(rel, &[2; 32]).unwrap(), Created::Existed);
        assert_eq!(keys.read_key(rel).unwrap(), Some([1; 32]));
        keys.replace_file(rel, &[3; 32]).unwrap();
        assert_eq!(keys.read_key(rel).unwrap(), Some([3; 32]));
        assert_eq!(
            keys.list(Path::new("x")).unwrap(),
            vec!["k.key".to_string()]
        );
        assert!(keys.remove_file(rel).unwrap());
        assert!(!keys.remove_file(rel).unwrap());
        assert_eq!(keys.read_key(rel).unwrap(), None);
    }

    #[test]
    fn short_key_file_is_reported_as_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = KeyDir::open(tmp.path()).unwrap();
        keys.replace_file(Path::new("k.key"), &[1; 31]).unwrap();
        let err = keys.read_key(Path::new("k.key")).unwrap_err();
        assert!(matches!(err, KeyError::CorruptKey { len: 31, .. }), "{err}");
    }
}
