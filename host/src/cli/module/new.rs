//! `k2-ingest module new`: scaffold a validator crate that builds as is against the guest SDK.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

/// Create a validator crate that builds as is: one `Validate` impl and `export_validator!`.
///
/// The crate holds Cargo.toml (depending on the k2 validator SDK by path, its own workspace),
/// src/lib.rs with a small working validator and a native test, a README with the commands to
/// build, check and test it, and a .gitignore.
///
/// The validator rejects records whose `symbol` is empty and tracks `sequence` per symbol
/// (gaps, duplicates, out-of-order, resets), with its state in snapshot/restore. Edit it
/// from there.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    k2-ingest module new my-checks --dir validators\n  \
    cd validators/my-checks\n  \
    cargo build --release --target wasm32-wasip2\n  \
    k2-ingest module check target/wasm32-wasip2/release/my_checks.wasm")]
pub struct NewArgs {
    /// The crate's name: lower-case letters, digits, `-` and `_`, starting with a letter.
    name: String,

    /// The folder to create the crate in (created if missing).
    #[arg(long, value_name = "PARENT", default_value = ".")]
    dir: PathBuf,

    /// The validator SDK: the guest/sdk folder of a k2-ingest checkout. Default: the one this
    /// binary was built from.
    #[arg(long, value_name = "PATH")]
    sdk: Option<PathBuf>,
}

/// The SDK of the checkout this binary was built from; gone if the binary was moved elsewhere.
const BUILT_WITH_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest/sdk");

/// The SDK's package name, checked so `--sdk` pointing at the wrong folder fails here, not in cargo.
const SDK_PACKAGE: &str = "k2-validator-sdk";

/// Each file of the crate (relative to its folder) and its embedded template, whose
/// placeholders are `{{key}}`: see [`Placeholders`].
const FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../../templates/validator/Cargo.toml.tmpl")),
    ("src/lib.rs", include_str!("../../../templates/validator/lib.rs.tmpl")),
    ("README.md", include_str!("../../../templates/validator/README.md.tmpl")),
    (".gitignore", include_str!("../../../templates/validator/gitignore.tmpl")),
];

/// Why the crate was not created; each message names the input at fault.
#[derive(Debug, thiserror::Error)]
enum NewError {
    #[error("invalid validator name `{name}`: {reason}")]
    BadName { name: String, reason: &'static str },

    #[error("{} already exists: choose another name or --dir", path.display())]
    Exists { path: PathBuf },

    #[error("validator sdk not found at {}: pass --sdk PATH (the guest/sdk folder of a k2-ingest checkout)", path.display())]
    SdkMissing { path: PathBuf },

    #[error("{} is not the validator sdk (no Cargo.toml of package `{SDK_PACKAGE}`): pass --sdk PATH (the guest/sdk folder of a k2-ingest checkout)", path.display())]
    NotSdk { path: PathBuf },

    #[error("{} is not valid UTF-8, so Cargo.toml cannot name it", path.display())]
    NotUtf8 { path: PathBuf },
}

pub fn run(args: NewArgs) -> anyhow::Result<()> {
    check_name(&args.name)?;
    let sdk = find_sdk(args.sdk.as_deref())?;

    fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let crate_dir = args.dir.join(&args.name);
    // create_dir, not create_dir_all: it fails on an existing folder (or file) atomically.
    match fs::create_dir(&crate_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(NewError::Exists { path: crate_dir }.into()),
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", crate_dir.display())),
    }
    if let Err(e) = write_crate(&args.name, &sdk, &crate_dir) {
        // The folder is ours (create_dir succeeded), so a half-written crate is removed.
        let _ = fs::remove_dir_all(&crate_dir);
        return Err(e);
    }

    let lib = lib_name(&args.name);
    println!("created validator crate `{}` in {}", args.name, crate_dir.display());
    println!("  Cargo.toml   depends on {SDK_PACKAGE} at {}", sdk.display());
    println!("  src/lib.rs   the validator: one Validate impl and export_validator!, with a native test");
    println!("  README.md    the commands below and how to use the validator in a config");
    println!("  .gitignore");
    println!();
    println!("next:");
    println!("  cd {}", shell_word(&crate_dir.display().to_string()));
    println!("  cargo build --release --target wasm32-wasip2");
    println!("  k2-ingest module check target/wasm32-wasip2/release/{lib}.wasm");
    println!("  cargo test");
    println!(
        "  k2-ingest module test target/wasm32-wasip2/release/{lib}.wasm --schema SCHEMA.avsc --input RECORDS.jsonl [--setting key=value]..."
    );
    Ok(())
}

/// Accepts what cargo accepts as a package name and Rust as a crate name, minus what the
/// template could not compile: a keyword, a built-in crate, or the SDK itself.
fn check_name(name: &str) -> Result<(), NewError> {
    let bad = |reason| Err(NewError::BadName { name: name.to_string(), reason });
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
        return bad("it must start with a lower-case letter");
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
        return bad("use only lower-case letters, digits, `-` and `_`");
    }
    // crates.io's limit; longer names only make longer file names.
    if name.len() > 64 {
        return bad("it is longer than 64 characters");
    }
    if RUST_KEYWORDS.contains(&name) {
        return bad("it is a Rust keyword");
    }
    if ["std", "core", "alloc", "proc_macro", "proc-macro", "test"].contains(&name) {
        return bad("it is the name of a built-in Rust crate");
    }
    if lib_name(name) == lib_name(SDK_PACKAGE) {
        return bad("it is the name of the validator sdk the crate depends on");
    }
    Ok(())
}

/// Strict and reserved keywords of Rust 2024; none can name a crate.
const RUST_KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate", "do", "dyn", "else",
    "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "macro", "match", "mod",
    "move", "mut", "override", "priv", "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true",
    "try", "type", "typeof", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// The SDK folder, absolute, after checking it holds the SDK's Cargo.toml.
fn find_sdk(given: Option<&Path>) -> Result<PathBuf, anyhow::Error> {
    let path = given.unwrap_or(Path::new(BUILT_WITH_SDK));
    let sdk = match fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(NewError::SdkMissing { path: path.into() }.into()),
        Err(e) => return Err(e).with_context(|| format!("validator sdk {}", path.display())),
    };
    let manifest = fs::read_to_string(sdk.join("Cargo.toml")).ok().and_then(|text| text.parse::<toml::Table>().ok());
    let name = manifest.as_ref().and_then(|m| m.get("package")?.get("name")?.as_str());
    if name != Some(SDK_PACKAGE) {
        return Err(NewError::NotSdk { path: sdk }.into());
    }
    Ok(sdk)
}

/// Writes every file of the crate into `crate_dir`, which exists and is empty.
fn write_crate(name: &str, sdk: &Path, crate_dir: &Path) -> anyhow::Result<()> {
    let absolute = fs::canonicalize(crate_dir).with_context(|| format!("cannot resolve {}", crate_dir.display()))?;
    let placeholders = Placeholders::new(name, sdk, &absolute)?;
    for (file, template) in FILES {
        let path = crate_dir.join(file);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        fs::write(&path, placeholders.fill(template)).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The values the templates need. Paths are TOML strings (quoted and escaped), since the
/// templates put them in TOML.
struct Placeholders {
    pairs: Vec<(&'static str, String)>,
}

impl Placeholders {
    fn new(name: &str, sdk: &Path, crate_dir: &Path) -> Result<Self, NewError> {
        let toml_path = |path: &Path| match path.to_str() {
            Some(s) => Ok(toml::Value::String(s.to_string()).to_string()),
            None => Err(NewError::NotUtf8 { path: path.into() }),
        };
        let lib = lib_name(name);
        let module = crate_dir.join("target/wasm32-wasip2/release").join(format!("{lib}.wasm"));
        Ok(Self {
            pairs: vec![
                ("name", name.to_string()),
                ("lib_name", lib),
                ("type_name", type_name(name)),
                ("sdk_path", toml_path(sdk)?),
                ("module_path", toml_path(&module)?),
            ],
        })
    }

    /// Replaces each `{{key}}` in one pass, so a value that happens to contain `{{…}}` is
    /// left as it is. Text that is not a known placeholder is copied unchanged.
    fn fill(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len() + 256);
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let value = after.find("}}").and_then(|end| {
                let key = &after[..end];
                self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| (v, end))
            });
            match value {
                Some((v, end)) => {
                    out.push_str(v);
                    rest = &after[end + 2..];
                }
                None => {
                    out.push_str("{{");
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// The library's name, as cargo names the .wasm: `-` becomes `_`.
fn lib_name(name: &str) -> String {
    name.replace('-', "_")
}

/// The validator's type: the name in UpperCamelCase, ending in `Validator`
/// (`my-checks` -> `MyChecksValidator`), so it cannot clash with the SDK's `Batch` or `Settings`.
fn type_name(name: &str) -> String {
    let mut out: String = name
        .split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase()).into_iter().chain(chars).collect::<String>()
        })
        .collect();
    if !out.ends_with("Validator") {
        out.push_str("Validator");
    }
    out
}

/// `word` quoted for a POSIX shell if it needs it, so the printed `cd` can be pasted.
fn shell_word(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_cargo_and_rust() {
        for good in ["trades", "my-checks", "v2_quotes", "a1"] {
            check_name(good).unwrap();
        }
        for (bad, reason) in [
            ("", "start with"),
            ("1st", "start with"),
            ("-x", "start with"),
            ("MyChecks", "start with"),
            ("my checks", "only lower-case"),
            ("my.checks", "only lower-case"),
            ("fn", "keyword"),
            ("test", "built-in"),
            ("k2_validator_sdk", "sdk"),
        ] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")) && err.contains(reason), "{bad}: {err}");
        }
    }

    #[test]
    fn type_names_are_camel_case_validators() {
        assert_eq!(type_name("my-checks"), "MyChecksValidator");
        assert_eq!(type_name("v2__quotes"), "V2QuotesValidator");
        assert_eq!(type_name("trades-validator"), "TradesValidator");
    }

    #[test]
    fn every_placeholder_is_filled() {
        let p =
            Placeholders::new("my-checks", Path::new("/opt/k2 \"x\"/guest/sdk"), Path::new("/tmp/my-checks")).unwrap();
        for (file, template) in FILES {
            let text = p.fill(template);
            assert!(!text.contains("{{"), "{file} has an unfilled placeholder:\n{text}");
        }
        let manifest: toml::Table = p.fill(FILES[0].1).parse().unwrap();
        assert_eq!(manifest["package"]["name"].as_str(), Some("my-checks"));
        assert_eq!(manifest["dependencies"][SDK_PACKAGE]["path"].as_str(), Some("/opt/k2 \"x\"/guest/sdk"));
        assert!(manifest["workspace"].as_table().unwrap().is_empty(), "the crate must be its own workspace");
    }

    #[test]
    fn fill_is_one_pass() {
        let p = Placeholders { pairs: vec![("a", "{{b}}".into()), ("b", "no".into())] };
        assert_eq!(p.fill("x {{a}} {{c}} {{b}} {{"), "x {{b}} {{c}} no {{");
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(shell_word("validators/my-checks"), "validators/my-checks");
        assert_eq!(shell_word("my dir/it's"), r"'my dir/it'\''s'");
    }
}
