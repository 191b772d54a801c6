//! Files and directories only their owner may read: the data directory (the database,
//! logs, checkouts), the database files and the setup code. Modes are set explicitly
//! rather than left to the process's umask, and tightened on files that already exist.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// `rwx------`
pub const PRIVATE_DIR: u32 = 0o700;
/// `rw-------`
pub const PRIVATE_FILE: u32 = 0o600;

/// Creates `dir` (and its parents) if needed and makes it `0700`.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)?;
    restrict(dir, PRIVATE_DIR)
}

/// Sets `mode` on `path` when it exists with a looser one.
pub fn restrict(path: &Path, mode: u32) -> io::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.permissions().mode() & 0o777 != mode => {
            std::fs::set_permissions(path, Permissions::from_mode(mode))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `path` empty with mode `0600` unless it exists, and makes it `0600` if it does.
pub fn private_file(path: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => restrict(path, PRIVATE_FILE),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to `path`, which only its owner may read.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    private_file(path)?;
    let mut file = OpenOptions::new().write(true).truncate(true).open(path)?;
    file.write_all(bytes)
}

/// The file of a `sqlite:` URL (`sqlite://path`, `sqlite:path`, with or without
/// `?options`), or `None` for an in-memory database.
pub fn sqlite_file(url: &str) -> Option<&Path> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:" && !url.contains("mode=memory"))
        .then(|| Path::new(path))
}

/// Makes the database file owner-only before SQLite opens it: SQLite gives its `-wal` and
/// `-shm` files the database file's mode, and those are tightened too if they exist.
pub fn private_database(url: &str) -> io::Result<()> {
    let Some(path) = sqlite_file(url) else {
        return Ok(());
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    private_file(path)?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        restrict(Path::new(&name), PRIVATE_FILE)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("exists")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite://./data/slipway.db"),
            Some(Path::new("./data/slipway.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:/tmp/x.db?mode=rwc"),
            Some(Path::new("/tmp/x.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://file.db?mode=memory"), None);
    }

    #[test]
    fn loose_modes_are_tightened() {
        let dir = std::env::temp_dir().join(format!("slipway-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).expect("chmod");
        private_dir(&dir).expect("private dir");
        assert_eq!(mode(&dir), PRIVATE_DIR);
        let db = dir.join("x.db");
        std::fs::write(&db, b"").expect("file");
        std::fs::write(dir.join("x.db-wal"), b"").expect("file");
        std::fs::set_permissions(&db, Permissions::from_mode(0o644)).expect("chmod");
        std::fs::set_permissions(dir.join("x.db-wal"), Permissions::from_mode(0o644))
            .expect("chmod");
        private_database(&format!("sqlite://{}", db.display())).expect("private db");
        assert_eq!(mode(&db), PRIVATE_FILE);
        assert_eq!(mode(&dir.join("x.db-wal")), PRIVATE_FILE);
        write_private(&dir.join("code"), b"abc").expect("write");
        assert_eq!(mode(&dir.join("code")), PRIVATE_FILE);
        assert_eq!(std::fs::read(dir.join("code")).expect("read"), b"abc");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
