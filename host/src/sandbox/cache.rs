//! On-disk cache of compiled validator components, keyed by the engine's compatibility hash and the module's sha256.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How a module's compiled code was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    /// Loaded from the cache: no compilation.
    Hit,
    /// Compiled now and stored for next time.
    Compiled,
    /// Compiled now; the cache is off or could not be written (logged).
    NotCached,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Compiled => "compiled",
            CacheStatus::NotCached => "not cached",
        }
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The default cache folder: `$XDG_CACHE_HOME/k2-ingest/modules`, else `~/.cache/k2-ingest/modules`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("k2-ingest").join("modules"))
}

/// Where the compiled form of a module with `sha256` lives for this engine. wasmtime's
/// compatibility hash covers its version and every code-generation setting, so an upgrade
/// or a config change misses and recompiles instead of loading code built for another engine.
fn entry(dir: &Path, engine: &Engine, sha256: &str) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    dir.join(format!("{sha256}-{:016x}.cwasm", h.finish()))
}

/// An entry starts with this, then the sha256 of the module it was compiled from and the
/// sha256 of the compiled code that follows; a file without it is refused.
const MAGIC: &[u8; 8] = b"k2cwasm1";
const HEADER_BYTES: usize = MAGIC.len() + 32 + 32;

/// Why a cache entry or folder was not used.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("is a symlink")]
    Symlink,
    #[error("is owned by uid {owner}, not by this process's uid {uid}")]
    Owner { owner: u32, uid: u32 },
    #[error("is writable by others (mode {mode:o})")]
    Writable { mode: u32 },
    #[error("has no k2 cache header")]
    Header,
    #[error("was compiled from a module with sha256 {found}, not {wanted}")]
    Source { found: String, wanted: String },
    #[error("does not match the digest kept with it")]
    Digest,
    #[error("{0:#}")]
    Wasmtime(wasmtime::Error),
}

/// A cache folder or entry is trusted only when this process's user owns it and nobody else
/// can write it: whoever can write it could hand the host native code to run.
fn check_private(meta: &std::fs::Metadata) -> Result<(), Refusal> {
    use std::os::unix::fs::MetadataExt;
    if meta.file_type().is_symlink() {
        return Err(Refusal::Symlink);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid {
        return Err(Refusal::Owner { owner: meta.uid(), uid });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Refusal::Writable { mode: meta.mode() & 0o7777 });
    }
    Ok(())
}

/// The cache folder, created private if missing, and refused if anyone else can write it.
fn open_dir(dir: &Path) -> Result<(), Refusal> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => check_private(&meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
            check_private(&std::fs::symlink_metadata(dir)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// The component of the module whose sha256 is `sha256`: from the cache when present,
/// private and verified, else compiled with `compile` and stored. Cache trouble never fails a
/// load; it is logged and the module compiled.
///
/// wasmtime's own cache (`Config::cache`) would also work, but it hides whether a load hit,
/// which `module list` reports, and keys entries by a hash we cannot show the operator.
pub fn load_or_compile(
    dir: Option<&Path>,
    engine: &Engine,
    sha256: &str,
    compile: impl FnOnce() -> wasmtime::Result<Component>,
) -> wasmtime::Result<(Component, CacheStatus)> {
    let Some(dir) = dir else { return Ok((compile()?, CacheStatus::NotCached)) };
    if let Err(e) = open_dir(dir) {
        tracing::warn!(path = %dir.display(), error = %e, "module cache folder refused; compiling without the cache");
        return Ok((compile()?, CacheStatus::NotCached));
    }
    let path = entry(dir, engine, sha256);
    match read(&path, engine, sha256) {
        Ok(component) => return Ok((component, CacheStatus::Hit)),
        Err(Refusal::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cached module refused; recompiling"),
    }
    let component = compile()?;
    let status = match store(&path, &component, sha256) {
        Ok(()) => CacheStatus::Compiled,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the module cache; continuing without it");
            CacheStatus::NotCached
        }
    };
    Ok((component, status))
}

/// The entry at `path`, if it is private, was compiled from the module `sha256`, and its code
/// matches the digest kept with it.
fn read(path: &Path, engine: &Engine, sha256: &str) -> Result<Component, Refusal> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path).map_err(|e| {
        // O_NOFOLLOW on a symlink fails with ELOOP.
        if e.raw_os_error() == Some(libc::ELOOP) { Refusal::Symlink } else { Refusal::Io(e) }
    })?;
    check_private(&file.metadata()?)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    if bytes.len() < HEADER_BYTES || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Refusal::Header);
    }
    let (source, rest) = bytes[MAGIC.len()..].split_at(32);
    let (digest, code) = rest.split_at(32);
    if hex::encode(source) != sha256 {
        return Err(Refusal::Source { found: hex::encode(source), wanted: sha256.to_string() });
    }
    if Sha256::digest(code).as_slice() != digest {
        return Err(Refusal::Digest);
    }
    // SAFETY: deserialising trusts the bytes to be wasmtime's own output for this engine. They
    // are: the entry is private to this user, says it was compiled from the module with this
    // sha256 (a pinned module's included), and its code matches the digest written with it;
    // wasmtime itself refuses code from another version or configuration.
    unsafe { Component::deserialize(engine, code) }.map_err(Refusal::Wasmtime)
}

/// Writes the entry (header, then the compiled component) to a new private file beside its
/// final name and renames it into place, so a reader never sees half a file. Neither name is
/// followed if it is a symlink: the new file must not exist yet, and a rename replaces a link.
fn store(path: &Path, component: &Component, sha256: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().expect("cache entries are inside the cache folder");
    let code = component.serialize().map_err(std::io::Error::other)?;
    let source = hex::decode(sha256).map_err(std::io::Error::other)?;
    // Unique per process and per write, so two loads of one module in one process (two topics
    // with the same validator) never share a temporary file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id(),
        WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    // A leftover of a crashed process with this pid, or a planted symlink: removing a link
    // removes the link, not what it points at.
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let written = file
        .write_all(MAGIC)
        .and_then(|()| file.write_all(&source))
        .and_then(|()| file.write_all(&Sha256::digest(&code)))
        .and_then(|()| file.write_all(&code))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
