//! The compiled-module cache and the sha256 pin, on the real trades component.

mod common;

use common::{guest_wasm, ok, run};
use k2_ingest::config::WasmConfig;
use k2_ingest::sandbox::{CacheStatus, GuestEngine, sha256_hex};

fn engine_with_cache(dir: &std::path::Path) -> GuestEngine {
    GuestEngine::new(&WasmConfig { cache_dir: Some(dir.to_path_buf()), ..WasmConfig::default() }).unwrap()
}

fn entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect()
}

#[test]
fn a_second_engine_loads_the_compiled_module_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = guest_wasm("k2_trades_validator");
    let sha = sha256_hex(&std::fs::read(&wasm).unwrap());

    let first = engine_with_cache(dir.path()).load(&wasm).unwrap();
    assert_eq!(first.cache_status(), CacheStatus::Compiled);
    assert_eq!(first.sha256(), sha);
    let stored = entries(dir.path());
    assert_eq!(stored.len(), 1, "{stored:?}");
    let name = stored[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with(&format!("{sha}-")) && name.ends_with(".cwasm"), "{name}");

    let second = engine_with_cache(dir.path()).load(&wasm).unwrap();
    assert_eq!(second.cache_status(), CacheStatus::Hit);
    let (rejected, events) = run(&mut second.instantiate(&[]).unwrap(), &[ok("AAPL", 1), ok("AAPL", 3)]);
    assert!(rejected.is_empty() && events.len() == 1, "the cached code runs: {events:?}");
}

#[test]
fn a_damaged_cache_entry_is_recompiled_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = guest_wasm("k2_trades_validator");
    engine_with_cache(dir.path()).load(&wasm).unwrap();
    let entry = entries(dir.path()).remove(0);
    std::fs::write(&entry, b"not compiled code").unwrap();

    let module = engine_with_cache(dir.path()).load(&wasm).unwrap();
    assert_eq!(module.cache_status(), CacheStatus::Compiled);
    assert!(module.instantiate(&[]).is_ok());
    assert_eq!(engine_with_cache(dir.path()).load(&wasm).unwrap().cache_status(), CacheStatus::Hit);
}

#[test]
fn the_cache_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let engine =
        GuestEngine::new(&WasmConfig { cache: false, cache_dir: Some(dir.path().into()), ..WasmConfig::default() })
            .unwrap();
    let module = engine.load(&guest_wasm("k2_trades_validator")).unwrap();
    assert_eq!(module.cache_status(), CacheStatus::NotCached);
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn a_pinned_sha256_must_match() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_cache(dir.path());
    let wasm = guest_wasm("k2_trades_validator");
    let sha = sha256_hex(&std::fs::read(&wasm).unwrap());
    assert!(engine.load_pinned(&wasm, Some(&sha.to_uppercase())).is_ok());

    let wrong = "0".repeat(64);
    let err = engine.load_pinned(&wasm, Some(&wrong)).err().unwrap().to_string();
    assert!(err.contains(&format!("sha256 is {sha}, but the config pins {wrong}")), "{err}");
    assert!(err.contains("k2_trades_validator.wasm"), "names the file: {err}");
}

/// The one entry a load left in `dir`.
fn only_entry(dir: &std::path::Path) -> std::path::PathBuf {
    let mut stored = entries(dir);
    assert_eq!(stored.len(), 1, "{stored:?}");
    stored.remove(0)
}

#[test]
fn an_entry_compiled_from_other_bytes_is_not_run_for_a_pinned_module() {
    let (trades_dir, hostile_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let trades = guest_wasm("k2_trades_validator");
    let sha = sha256_hex(&std::fs::read(&trades).unwrap());
    engine_with_cache(trades_dir.path()).load(&trades).unwrap();
    engine_with_cache(hostile_dir.path()).load(&guest_wasm("k2_hostile_validator")).unwrap();
    // Someone swaps the trades entry for native code compiled from other bytes.
    std::fs::copy(only_entry(hostile_dir.path()), only_entry(trades_dir.path())).unwrap();

    let module = engine_with_cache(trades_dir.path()).load_pinned(&trades, Some(&sha)).unwrap();
    assert_eq!(module.cache_status(), CacheStatus::Compiled, "the swapped entry was refused and replaced");
    assert_eq!(module.info().unwrap().name, "trades", "the pinned bytes run, not the swapped code");
}

#[test]
fn a_cache_folder_writable_by_others_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let wasm = guest_wasm("k2_trades_validator");
    engine_with_cache(dir.path()).load(&wasm).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();

    let module = engine_with_cache(dir.path()).load(&wasm).unwrap();
    assert_eq!(module.cache_status(), CacheStatus::NotCached, "neither read nor written");
    assert!(module.instantiate(&[]).is_ok());
}

#[test]
fn a_cache_entry_writable_by_others_is_not_loaded() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let wasm = guest_wasm("k2_trades_validator");
    engine_with_cache(dir.path()).load(&wasm).unwrap();
    std::fs::set_permissions(only_entry(dir.path()), std::fs::Permissions::from_mode(0o666)).unwrap();

    assert_eq!(engine_with_cache(dir.path()).load(&wasm).unwrap().cache_status(), CacheStatus::Compiled);
}

#[test]
fn cache_writes_do_not_follow_a_planted_symlink() {
    let (dir, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let wasm = guest_wasm("k2_trades_validator");
    engine_with_cache(dir.path()).load(&wasm).unwrap();
    let entry = only_entry(dir.path());
    std::fs::remove_file(&entry).unwrap();
    // Every name the cache might write through points at a file outside the cache folder.
    let victim = elsewhere.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let name = entry.file_name().unwrap().to_str().unwrap();
    // Temporary names count the process's writes; the other tests of this binary write too.
    let pid = std::process::id();
    let temporaries = (0..64).map(|n| dir.path().join(format!(".{name}.{pid}.{n}.tmp")));
    for planted in std::iter::once(entry.clone()).chain(temporaries) {
        std::os::unix::fs::symlink(&victim, planted).unwrap();
    }

    let module = engine_with_cache(dir.path()).load(&wasm).unwrap();
    assert!(module.instantiate(&[]).is_ok());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "the file behind the symlinks is untouched");
}
