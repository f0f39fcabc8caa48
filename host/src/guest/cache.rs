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

/// The component of the module whose sha256 is `sha256`: from the cache when present and
/// loadable, else compiled with `compile` and stored. Cache trouble never fails a load; it
/// is logged and the module compiled.
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
    let path = entry(dir, engine, sha256);
    if path.is_file() {
        // SAFETY: deserialising runs no guest code but trusts the file to be wasmtime's own
        // output. The file is named by the sha256 of the source and was written by this
        // program into the operator's cache folder; wasmtime refuses files from another
        // version or configuration. Whoever can write that folder can already replace the
        // binary's inputs, so it is within the same trust boundary as the config file.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok((component, CacheStatus::Hit)),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cached module unusable; recompiling"),
        }
    }
    let component = compile()?;
    let status = match store(&path, &component) {
        Ok(()) => CacheStatus::Compiled,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the module cache; continuing without it");
            CacheStatus::NotCached
        }
    };
    Ok((component, status))
}

/// Writes the compiled component beside its final name and renames it into place, so a
/// reader never sees half a file.
fn store(path: &Path, component: &Component) -> std::io::Result<()> {
    let dir = path.parent().expect("cache entries are inside the cache folder");
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
