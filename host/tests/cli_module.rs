//! `k2-ingest module check`, `test` and `list` on real components, and on inputs that are wrong.

mod common;

use std::process::Command;

fn k2(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_k2-ingest")).args(args).env("K2_LOG", "warn").output().unwrap()
}

fn repo(path: &str) -> String {
    format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn test_runs_the_readme_example_and_reports_every_verdict() {
    let wasm = common::guest_wasm("k2_trades_validator");
    let (schema, input) = (repo("schemas/trade.avsc"), repo("schemas/examples/trades.jsonl"));
    for batch in ["1000", "3"] {
        let out = k2(&[
            "module",
            "test",
            wasm.to_str().unwrap(),
            "--schema",
            &schema,
            "--input",
            &input,
            "--batch-records",
            batch,
            "--output",
            "json",
        ]);
        let v = json_of(&out);
        assert_eq!(v["records"], 8);
        assert_eq!(v["accepted"], 5);
        let rejected: Vec<(u64, &str)> = v["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["record"].as_u64().unwrap(), r["code"].as_str().unwrap()))
            .collect();
        assert_eq!(rejected, vec![(3, "price-not-positive"), (5, "side-unknown"), (7, "symbol-format")]);
        // The state carries across batches: split in threes, AAPL's gap is still one event.
        let events = v["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!((events[0]["record"].as_u64(), events[0]["kind"].as_str()), (Some(4), Some("gap")));
        assert_eq!((events[0]["key"].as_str(), events[0]["missing"].as_i64()), (Some("XNAS:AAPL"), Some(2)));
    }
}

#[test]
fn test_names_the_line_and_field_of_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.jsonl");
    let good = std::fs::read_to_string(repo("schemas/examples/trades.jsonl")).unwrap();
    let first = good.lines().next().unwrap();
    std::fs::write(&input, format!("{first}\n\n{}\n", first.replace("\"187.25\"", "\"cheap\""))).unwrap();
    let wasm = common::guest_wasm("k2_trades_validator");
    let out = k2(&[
        "module",
        "test",
        wasm.to_str().unwrap(),
        "--schema",
        &repo("schemas/trade.avsc"),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.jsonl: line 3: price: `cheap` is not a decimal"), "{stderr}");
}

#[test]
fn list_shows_hashes_and_refuses_a_module_that_does_not_match_its_pin() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = common::guest_wasm("k2_trades_validator");
    let sha = k2_ingest::sandbox::sha256_hex(&std::fs::read(&wasm).unwrap());
    let config = |pin: &str| {
        let text = format!(
            "[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\n[catalog]\ntype = \"sql\"\ndatabase = \"c.db\"\nwarehouse = \"wh\"\n\
             [wasm]\ncache_dir = \"cache\"\n\
             [[topics]]\nname = \"t.pinned\"\nschema = \"{schema}\"\n[topics.validator]\nmodule = \"{wasm}\"\nsha256 = \"{pin}\"\n\
             [[topics]]\nname = \"t.plain\"\nschema = \"{schema}\"\n",
            schema = repo("schemas/trade.avsc"),
            wasm = wasm.display(),
        );
        let path = dir.path().join("k2.toml");
        std::fs::write(&path, text).unwrap();
        path
    };
    let path = config(&sha);
    let v = json_of(&k2(&["module", "list", "--config", path.to_str().unwrap(), "--output", "json"]));
    let topics = v["topics"].as_array().unwrap();
    assert_eq!(topics[0]["status"], "ok");
    assert_eq!(topics[0]["sha256"], sha.as_str());
    assert_eq!(topics[0]["name"], "trades");
    assert_eq!(topics[0]["cache"], "compiled");
    assert_eq!(topics[1]["status"], "no validator");
    assert!(dir.path().join("cache").is_dir(), "the cache folder is relative to the config");
    let again = json_of(&k2(&["module", "list", "--config", path.to_str().unwrap(), "--output", "json"]));
    assert_eq!(again["topics"][0]["cache"], "hit");

    let path = config(&"0".repeat(64));
    let out = k2(&["module", "list", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("(does not match the pin)") && stdout.contains("but the config pins 0000"), "{stdout}");
    assert!(stderr.contains("1 validator module(s) of") && stderr.contains("do not load"), "{stderr}");
}

#[test]
fn check_prints_name_versions_and_imports() {
    let wasm = common::guest_wasm("k2_trades_validator");
    let out = k2(&["module", "check", wasm.to_str().unwrap(), "--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "trades");
    assert_eq!(v["wit_version"], "0.2.0");
    let imports: Vec<&str> = v["imports"].as_array().unwrap().iter().map(|i| i.as_str().unwrap()).collect();
    // Unused imports are dropped by the toolchain: the trades validator never logs, so it
    // imports the contract's types and what std pulls in, but not k2:ingest/host.
    assert!(imports.contains(&"k2:ingest/types@0.2.0"), "{imports:?}");
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
