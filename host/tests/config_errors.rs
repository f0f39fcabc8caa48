//! Bad configs give the exact error text a user sees: `host/tests/config_errors/NAME.toml` → `NAME.err`.
//!
//! Each fixture is run as `k2-ingest consume --config NAME.toml --topic market.trades.raw` from
//! the fixtures' folder, and its stderr must equal `NAME.err` word for word (the fixtures'
//! absolute folder written as `$DIR`). Every fixture fails before any service is contacted: the
//! broker address is a closed port, and the catalog (where a fixture gets that far) is a SQLite
//! file in a fresh temporary folder. `K2_UPDATE_ERRORS=1` rewrites the `.err` files instead; read
//! the diff before committing it, since it is the text users will see.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HOW_TO_UPDATE: &str = "K2_UPDATE_ERRORS=1 cargo test -p k2-ingest --test config_errors";

/// Longer than any config check takes; reaching it means the run got past the config.
const TIMEOUT: Duration = Duration::from_secs(20);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config_errors")
}

/// What `k2-ingest consume` prints on stderr for the fixture `file`, with logs off so only the
/// error shows (logs carry timestamps; the error line is the same with them on).
fn run(file: &Path, scratch: &Path) -> (Option<i32>, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_k2-ingest"));
    command
        .args(["--log", "off", "consume", "--topic", "market.trades.raw", "--config"])
        .arg(file.file_name().unwrap())
        .current_dir(file.parent().unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The user's environment must not change the outcome: no override of ours applies, except
    // the catalog's files, kept out of the source tree.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("K2_") {
            command.env_remove(key);
        }
    }
    command.env("K2_CATALOG_DATABASE", scratch.join("catalog.db")).env("K2_WAREHOUSE", scratch.join("warehouse"));
    let mut child = command.spawn().expect("spawn k2-ingest");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("{}: still running after {TIMEOUT:?}; a config error must stop it at once", file.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    // The folder as the binary resolved it (relative to its working directory), and as the
    // file system names it, in case the checkout sits behind a symlink.
    let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for dir in [fixtures(), fixtures().canonicalize().unwrap()] {
        stderr = stderr.replace(&*dir.to_string_lossy(), "$DIR");
    }
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

#[test]
fn bad_configs_give_the_exact_error_text() {
    let update = std::env::var_os("K2_UPDATE_ERRORS").is_some();
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension() == Some("toml".as_ref()))
        .collect();
    files.sort();
    assert!(files.len() >= 12, "only {} fixtures in {}", files.len(), fixtures().display());
    let mut failures = Vec::new();
    for file in &files {
        let scratch = tempfile::tempdir().unwrap();
        let (code, stdout, stderr) = run(file, scratch.path());
        let name = file.file_stem().unwrap().to_string_lossy();
        assert_eq!(code, Some(1), "{name}: exit code (stderr: {stderr})");
        assert_eq!(stdout, "", "{name}: nothing on stdout");
        // A topic that cannot start leaves no table behind (none of these gets to its records).
        let tables = scratch.path().join("warehouse");
        let made: Vec<_> =
            walk_files(&tables).into_iter().filter(|p| p.to_string_lossy().contains("/metadata/")).collect();
        assert!(made.is_empty(), "{name}: a table was made: {made:?}");
        let golden = file.with_extension("err");
        if update {
            std::fs::write(&golden, &stderr).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if stderr != expected {
            failures.push(format!("--- {name}.err (expected)\n{expected}--- {name} (got)\n{stderr}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} config errors changed:\n{}\nIf the new text is right, rewrite the .err files with `{HOW_TO_UPDATE}`.",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .flat_map(|e| match e.path().is_dir() {
            true => walk_files(&e.path()),
            false => vec![e.path()],
        })
        .collect()
}
