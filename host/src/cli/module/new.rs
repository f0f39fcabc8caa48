//! `k2-ingest module new`: scaffold a validator crate that builds as is against the guest SDK.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

/// Create a validator crate that builds as is: one `Validate` impl and `export_validator!`.
///
/// The crate holds Cargo.toml (its own workspace), src/lib.rs with a small working validator and
/// a native test, a copy of the validator SDK this binary was built with (k2-validator-sdk/,
/// unless --sdk names another), a README with the commands to build, check and test it, a
/// rustfmt.toml and a .gitignore.
///
/// The validator rejects records whose `symbol` is empty and tracks `sequence` per symbol
/// (gaps, duplicates, out-of-order, resets), with its state committed with the data. Edit it
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

    /// Depend on the validator SDK in this folder (e.g. the guest/sdk of a k2-ingest checkout)
    /// instead of a copy in the crate. Default: a copy of the SDK this binary was built with.
    #[arg(long, value_name = "PATH")]
    sdk: Option<PathBuf>,
}

/// The SDK's package name, checked so `--sdk` pointing at the wrong folder fails here, not in cargo.
const SDK_PACKAGE: &str = "k2-validator-sdk";

/// Where the crate keeps its copy of the SDK, relative to its folder.
const VENDORED_SDK_DIR: &str = "k2-validator-sdk";

/// The SDK this binary was built with, file by file (relative to guest/sdk), written into each
/// new crate. Why a copy and not a path to the checkout or a registry: the binary may run where
/// no checkout is (a path baked in at compile time dangles once it is moved), and the SDK is not
/// on any registry, so a copy is the one way a user outside the checkout, with no network, gets
/// an SDK; and it is the SDK whose WIT this binary speaks. (The SDK's own two dependencies come
/// from cargo's cache or registry, as any crate's do.) A test checks this list against guest/sdk.
const SDK_FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../../../guest/sdk/Cargo.toml")),
    ("wit/k2-ingest.wit", include_str!("../../../../guest/sdk/wit/k2-ingest.wit")),
    ("src/batch.rs", include_str!("../../../../guest/sdk/src/batch.rs")),
    ("src/component.rs", include_str!("../../../../guest/sdk/src/component.rs")),
    ("src/key.rs", include_str!("../../../../guest/sdk/src/key.rs")),
    ("src/lib.rs", include_str!("../../../../guest/sdk/src/lib.rs")),
    ("src/listing.rs", include_str!("../../../../guest/sdk/src/listing.rs")),
    ("src/reads.rs", include_str!("../../../../guest/sdk/src/reads.rs")),
    ("src/sequence.rs", include_str!("../../../../guest/sdk/src/sequence.rs")),
    ("src/settings.rs", include_str!("../../../../guest/sdk/src/settings.rs")),
    ("src/testing.rs", include_str!("../../../../guest/sdk/src/testing.rs")),
    ("src/verdict.rs", include_str!("../../../../guest/sdk/src/verdict.rs")),
    ("src/words.rs", include_str!("../../../../guest/sdk/src/words.rs")),
];

/// Each file of the crate (relative to its folder) and its embedded template, whose
/// placeholders are `{{key}}`: see [`Placeholders`].
const FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../../templates/validator/Cargo.toml.tmpl")),
    ("src/lib.rs", include_str!("../../../templates/validator/lib.rs.tmpl")),
    ("README.md", include_str!("../../../templates/validator/README.md.tmpl")),
    (".gitignore", include_str!("../../../templates/validator/gitignore.tmpl")),
    // The project's style, so `cargo fmt` leaves the scaffold and the SDK copy as they are.
    ("rustfmt.toml", include_str!("../../../../rustfmt.toml")),
];

/// Why the crate was not created; each message names the input at fault.
#[derive(Debug, thiserror::Error)]
enum NewError {
    #[error("invalid validator name `{name}`: {reason}")]
    BadName { name: String, reason: &'static str },

    #[error("{} already exists: choose another name or --dir", path.display())]
    Exists { path: PathBuf },

    #[error("validator sdk not found at {}: pass --sdk PATH (the guest/sdk folder of a k2-ingest checkout), or leave --sdk out for a copy in the crate", path.display())]
    SdkMissing { path: PathBuf },

    #[error("{} is not the validator sdk (no Cargo.toml of package `{SDK_PACKAGE}`): pass --sdk PATH (the guest/sdk folder of a k2-ingest checkout), or leave --sdk out for a copy in the crate", path.display())]
    NotSdk { path: PathBuf },

    #[error("{} is not valid UTF-8, so Cargo.toml cannot name it", path.display())]
    NotUtf8 { path: PathBuf },
}

/// Where the new crate's SDK comes from.
enum Sdk {
    /// A copy of [`SDK_FILES`] in the crate.
    Vendored,
    /// A folder given with `--sdk`, absolute and checked.
    At(PathBuf),
}

pub fn run(args: NewArgs) -> anyhow::Result<()> {
    check_name(&args.name)?;
    let sdk = match args.sdk.as_deref() {
        Some(path) => Sdk::At(find_sdk(path)?),
        None => Sdk::Vendored,
    };

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
    match &sdk {
        Sdk::Vendored => println!("  Cargo.toml         depends on {SDK_PACKAGE} in {VENDORED_SDK_DIR}/"),
        Sdk::At(path) => println!("  Cargo.toml         depends on {SDK_PACKAGE} at {}", path.display()),
    }
    println!("  src/lib.rs         the validator: one Validate impl and export_validator!, with a native test");
    if let Sdk::Vendored = sdk {
        println!("  {VENDORED_SDK_DIR}/  the validator sdk this k2-ingest was built with");
    }
    println!("  README.md          the commands below and how to use the validator in a config");
    println!("  rustfmt.toml, .gitignore");
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

/// The SDK folder `path`, absolute, after checking it holds the SDK's Cargo.toml.
fn find_sdk(path: &Path) -> Result<PathBuf, anyhow::Error> {
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
fn write_crate(name: &str, sdk: &Sdk, crate_dir: &Path) -> anyhow::Result<()> {
    let absolute = fs::canonicalize(crate_dir).with_context(|| format!("cannot resolve {}", crate_dir.display()))?;
    let placeholders = Placeholders::new(name, sdk, &absolute)?;
    for (file, template) in FILES {
        write_file(&crate_dir.join(file), &placeholders.fill(template))?;
    }
    if let Sdk::Vendored = sdk {
        // Copied as they are: the SDK's files are not templates.
        for (file, text) in SDK_FILES {
            write_file(&crate_dir.join(VENDORED_SDK_DIR).join(file), text)?;
        }
    }
    Ok(())
}

/// Writes `text` to `path`, creating its folder.
fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The values the templates need. Paths are TOML strings (quoted and escaped), since the
/// templates put them in TOML.
struct Placeholders {
    pairs: Vec<(&'static str, String)>,
}

impl Placeholders {
    fn new(name: &str, sdk: &Sdk, crate_dir: &Path) -> Result<Self, NewError> {
        let toml_path = |path: &Path| match path.to_str() {
            Some(s) => Ok(toml::Value::String(s.to_string()).to_string()),
            None => Err(NewError::NotUtf8 { path: path.into() }),
        };
        let lib = lib_name(name);
        let module = crate_dir.join("target/wasm32-wasip2/release").join(format!("{lib}.wasm"));
        let (sdk_path, sdk_origin, sdk_readme) = match sdk {
            Sdk::Vendored => (
                toml_path(Path::new(VENDORED_SDK_DIR))?,
                "The copy in\n# k2-validator-sdk/ is the SDK the k2-ingest that made this crate was built with."
                    .to_string(),
                format!("a copy in `{VENDORED_SDK_DIR}/`, the one the k2-ingest that made this crate was built with"),
            ),
            Sdk::At(path) => (
                toml_path(path)?,
                "It is the\n# folder given to `k2-ingest module new --sdk`.".to_string(),
                format!("`{}`, given to `k2-ingest module new --sdk`", path.display()),
            ),
        };
        Ok(Self {
            pairs: vec![
                ("name", name.to_string()),
                ("lib_name", lib),
                ("type_name", type_name(name)),
                ("sdk_path", sdk_path),
                ("sdk_origin", sdk_origin),
                ("sdk_readme", sdk_readme),
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
        let given = Sdk::At(PathBuf::from("/opt/k2 \"x\"/guest/sdk"));
        for (sdk, path) in [(&Sdk::Vendored, VENDORED_SDK_DIR), (&given, "/opt/k2 \"x\"/guest/sdk")] {
            let p = Placeholders::new("my-checks", sdk, Path::new("/tmp/my-checks")).unwrap();
            for (file, template) in FILES {
                let text = p.fill(template);
                assert!(!text.contains("{{"), "{file} has an unfilled placeholder:\n{text}");
            }
            let manifest: toml::Table = p.fill(FILES[0].1).parse().unwrap();
            assert_eq!(manifest["package"]["name"].as_str(), Some("my-checks"));
            assert_eq!(manifest["dependencies"][SDK_PACKAGE]["path"].as_str(), Some(path));
            assert!(manifest["workspace"].as_table().unwrap().is_empty(), "the crate must be its own workspace");
        }
    }

    /// The SDK folder of this checkout, read at test time.
    fn sdk_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest/sdk")
    }

    #[test]
    fn the_vendored_sdk_is_every_file_of_guest_sdk() {
        let mut on_disk = vec!["Cargo.toml".to_string()];
        for (folder, ext) in [("src", "rs"), ("wit", "wit")] {
            for entry in fs::read_dir(sdk_dir().join(folder)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == ext) {
                    on_disk.push(format!("{folder}/{}", path.file_name().unwrap().to_str().unwrap()));
                }
            }
        }
        on_disk.sort();
        let mut vendored: Vec<String> = SDK_FILES.iter().map(|(f, _)| f.to_string()).collect();
        vendored.sort();
        assert_eq!(vendored, on_disk, "SDK_FILES must list every file of guest/sdk");
        for (file, text) in SDK_FILES {
            assert_eq!(*text, fs::read_to_string(sdk_dir().join(file)).unwrap(), "{file} changed: rebuild");
        }
    }

    #[test]
    fn the_sdk_wit_is_the_contract_byte_for_byte() {
        let contract = include_str!("../../../../wit/k2-ingest.wit");
        let copy = SDK_FILES.iter().find(|(f, _)| *f == "wit/k2-ingest.wit").unwrap().1;
        assert!(copy == contract, "guest/sdk/wit/k2-ingest.wit differs from wit/k2-ingest.wit: copy it over");
        let version = contract.lines().find_map(|l| l.strip_prefix("package k2:ingest@")?.strip_suffix(';')).unwrap();
        let lib = SDK_FILES.iter().find(|(f, _)| *f == "src/lib.rs").unwrap().1;
        assert!(
            lib.contains(&format!("pub const WIT_VERSION: &str = \"{version}\";")),
            "the sdk's WIT_VERSION is not {version}"
        );
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
