//! `k2-ingest module check` on real components and on a file that is not one.

mod common;

use std::process::Command;

fn k2(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_k2-ingest")).args(args).env("K2_LOG", "warn").output().unwrap()
}

#[test]
fn check_prints_name_versions_and_imports() {
    let wasm = common::guest_wasm("k2_trades_validator");
    let out = k2(&["module", "check", wasm.to_str().unwrap(), "--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "trades");
    assert_eq!(v["wit_version"], "0.1.0");
    let imports: Vec<&str> = v["imports"].as_array().unwrap().iter().map(|i| i.as_str().unwrap()).collect();
    // Unused imports are dropped by the toolchain: the trades validator never logs, so it
    // imports the contract's types and what std pulls in, but not k2:ingest/host.
    assert!(imports.contains(&"k2:ingest/types@0.1.0"), "{imports:?}");
    assert!(!imports.iter().any(|i| i.starts_with("wasi:filesystem") || i.starts_with("wasi:sockets")), "{imports:?}");
}

#[test]
fn check_of_a_non_component_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let out = k2(&["module", "check", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not a webassembly component") && stderr.contains("core.wasm"), "{stderr}");
}
