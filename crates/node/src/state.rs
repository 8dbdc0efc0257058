//! The state directory: the files a node and the commands beside it keep there (the store,
//! the secret, the node's URL, the node and client keys), made readable by their owner alone.
//! Below the service layer, so that a command without a node (`shoal get`) opens the same
//! store and keys as the node would.

use std::path::{Path, PathBuf};

/// A file of the state directory that could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the secret file {path}: {source}")]
    Secret { path: PathBuf, source: std::io::Error },
    #[error("the key file {path}: {source}")]
    Key { path: PathBuf, source: std::io::Error },
}

/// The name of the store file inside the state directory.
pub const STORE_FILE: &str = "shoal.redb";
/// The name of the secret file inside the state directory.
pub const SECRET_FILE: &str = "secret";
/// The file in the state directory that names the URL of the node running on it, so that
/// commands started beside it hand their work to it instead of opening the store twice.
pub const URL_FILE: &str = "node.url";
/// The node's ed25519 key (its id over iroh), inside the state directory.
pub const KEY_FILE: &str = "node.key";
/// The key the CLI uses when it dials a node over iroh; its id is an owner's.
pub const CLIENT_KEY_FILE: &str = "client.key";
/// The DHT's routing table, kept for a quick restart (addresses, one per line).
pub const DHT_NODES_FILE: &str = "dht-nodes";

/// The node key of `state`, made on first use (owner-only permissions).
pub fn node_key(state: &Path) -> Result<iroh::SecretKey, StateError> {
    let path = state.join(KEY_FILE);
    crate::net::iroh::load_or_create_key(&path).map_err(|source| StateError::Key { path, source })
}

/// The client key of `state`, made on first use (owner-only permissions).
pub fn client_key(state: &Path) -> Result<iroh::SecretKey, StateError> {
    let path = state.join(CLIENT_KEY_FILE);
    crate::net::iroh::load_or_create_key(&path).map_err(|source| StateError::Key { path, source })
}

/// Creates the state directory readable by its owner alone (0700), or makes an existing one of
/// ours so: it holds the secret, the keys, and resume records with mirror credentials. Missing
/// parents are created as `mkdir -p` would.
pub fn prepare_state_dir(state: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if let Some(parent) = state.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(state) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::metadata(state)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other("not a directory"));
    }
    let mode = meta.permissions().mode() & 0o777;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let mine = meta.uid() == unsafe { libc::geteuid() };
    if mode & 0o077 != 0 && mine {
        std::fs::set_permissions(state, std::fs::Permissions::from_mode(mode & 0o700 | 0o700))?;
        tracing::warn!(
            path = %state.display(),
            was = %format!("{mode:03o}"),
            "the state directory was open to other users; it is now the owner's alone (0700)"
        );
    }
    Ok(())
}

/// Makes `path` a file readable and writable by its owner alone (0600): created empty if
/// missing, its mode narrowed if wider. For files of the state directory (the store, whose
/// resume records keep mirror credentials).
pub fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Opens the state store at `path` (made if missing), readable by the owner alone.
pub fn open_store(path: &Path) -> Result<redb::Database, redb::DatabaseError> {
    drop(private_file(path)?);
    redb::Database::create(path)
}

/// Writes `text` to the state directory's file `path`, readable by the owner alone.
pub(crate) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = private_file(path)?;
    file.set_len(0)?;
    file.write_all(text.as_bytes())
}

/// Reads the secret kept in `state`, making one first if there is none. The file is readable by
/// the owner alone. Returns the secret and the file's path.
pub fn load_or_create_secret(state: &Path) -> Result<(String, PathBuf), StateError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = state.join(SECRET_FILE);
    let error = |source| StateError::Secret {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(secret) if !secret.trim().is_empty() => return Ok((secret.trim().to_string(), path)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(error(e)),
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(error)?;
    file.write_all(format!("{secret}\n").as_bytes()).map_err(error)?;
    file.sync_all().map_err(error)?;
    Ok((secret, path))
}
