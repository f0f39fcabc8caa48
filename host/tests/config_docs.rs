//! docs/configuration.md's key reference is generated from the config structs' doc comments, whose defaults are checked against the code.
//!
//! The doc comments in `host/src/config/` are the one place a key and its default are written.
//! This test reads those sources, builds the reference (one table per section), and compares it
//! with the generated part of `docs/configuration.md`; `K2_UPDATE_DOCS=1` rewrites it instead. It
//! also checks that every "Default X" a doc comment states is the value the code applies (serde's
//! per-key defaults and the sections' `Default` impls alike), and that every key of the example
//! configs is documented, the values `k2.example.toml` shows being the defaults it says they are.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use k2_ingest::config::{CommitConfig, Config, MaintenanceConfig, PipelineConfig, SinkConfig, WasmConfig};

const BEGIN: &str = "<!-- generated: config keys -->";
const END: &str = "<!-- end generated: config keys -->";
const HOW_TO_UPDATE: &str = "K2_UPDATE_DOCS=1 cargo test -p k2-ingest --test config_docs";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

// ---------------------------------------------------------------------------------------------
// The config sources, read as text: structs with their fields, enums with their variants.

#[derive(Debug, Default)]
struct Item {
    doc: String,
    /// Fields of a struct, variants of an enum.
    members: Vec<Member>,
    is_enum: bool,
    /// Deserialized from a string (`#[serde(try_from = "String")]`), not from a table.
    from_string: bool,
}

#[derive(Debug)]
struct Member {
    name: String,
    doc: String,
    /// A field's type; a tuple variant's inner type (`Sql(SqlCatalogConfig)`); empty otherwise.
    ty: String,
    /// A field with `#[serde(default…)]`.
    has_default: bool,
}

/// Every `pub struct` and `pub enum` of `host/src/config/*.rs`, by name.
fn read_config_sources() -> BTreeMap<String, Item> {
    let dir = repo().join("host/src/config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension() == Some("rs".as_ref()))
        .collect();
    files.sort();
    let mut items = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        parse_items(&text, &mut items);
    }
    items
}

fn parse_items(text: &str, items: &mut BTreeMap<String, Item>) {
    let mut doc: Vec<String> = Vec::new();
    let mut current: Option<(String, Item)> = None;
    let mut has_default = false;
    let mut from_string = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("#[cfg(test)]") {
            break;
        }
        if let Some(d) = trimmed.strip_prefix("///") {
            doc.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            continue;
        }
        if trimmed.starts_with("#[") {
            if trimmed.starts_with("#[serde(") && trimmed.contains("default") && current.is_some() {
                has_default = true;
            }
            if trimmed.starts_with("#[serde(") && trimmed.contains("from = \"String\"") {
                from_string = true;
            }
            continue;
        }
        let joined = doc.join(" ");
        doc.clear();
        if let Some((name, item)) = &mut current {
            if line.starts_with('}') {
                items.insert(name.clone(), std::mem::take(item));
                current = None;
            } else if item.is_enum {
                let v = trimmed.trim_end_matches(',');
                if !v.is_empty() {
                    let (name, ty) = match v.split_once('(') {
                        Some((n, t)) => (n.to_string(), t.trim_end_matches(')').to_string()),
                        None => (v.to_string(), String::new()),
                    };
                    item.members.push(Member { name, doc: joined, ty, has_default: false });
                }
            } else if let Some(field) = trimmed.strip_prefix("pub ")
                && let Some((name, ty)) = field.split_once(": ")
            {
                let ty = ty.trim_end_matches(',').to_string();
                item.members.push(Member { name: name.to_string(), doc: joined, ty, has_default });
                has_default = false;
            }
            continue;
        }
        for (prefix, is_enum) in [("pub struct ", false), ("pub enum ", true)] {
            if let Some(rest) = trimmed.strip_prefix(prefix)
                && let Some(name) = rest.strip_suffix(" {")
            {
                let item = Item { doc: joined.clone(), members: Vec::new(), is_enum, from_string };
                current = Some((name.to_string(), item));
                from_string = false;
            }
        }
    }
}

/// `Option<Vec<T>>` → `T`.
fn inner_type(ty: &str) -> &str {
    let mut ty = ty;
    for wrapper in ["Option<", "Vec<"] {
        if let Some(inner) = ty.strip_prefix(wrapper) {
            ty = inner.strip_suffix('>').unwrap_or(inner);
        }
    }
    ty
}

// ---------------------------------------------------------------------------------------------
// The reference: sections and their keys, walked from `Config`.

struct Section {
    /// `kafka`, `catalog`, `catalog.s3`, `topics`, `topics.validator`.
    path: String,
    heading: String,
    doc: String,
    /// The catalog type this section belongs to, for the sections of a tagged enum.
    variant: Option<String>,
    keys: Vec<Key>,
}

struct Key {
    name: String,
    ty: String,
    required: bool,
    doc: String,
    /// The config struct and field it comes from, for messages.
    origin: String,
    /// A free-form table (`kafka.options`): its entries are the user's, not keys of ours.
    is_map: bool,
}

fn sections(items: &BTreeMap<String, Item>) -> Vec<Section> {
    let mut out = Vec::new();
    walk(items, "Config", "", "", Shape::Table, &mut out);
    out
}

/// How a section is written in the file.
#[derive(Clone)]
enum Shape {
    Table,
    ArrayOfTables,
    /// One variant of a tagged enum: `[catalog]` with `type = "rest"`.
    Tagged(String),
    /// A table inside such a variant: `[catalog.s3]`, for `type = "rest"` only.
    Within(String),
}

fn walk(items: &BTreeMap<String, Item>, name: &str, path: &str, doc: &str, shape: Shape, out: &mut Vec<Section>) {
    let item = items.get(name).unwrap_or_else(|| panic!("no `pub struct {name}` found in host/src/config/*.rs"));
    let heading = match &shape {
        Shape::Tagged(v) => format!("`[{path}]` with `type = \"{v}\"`"),
        Shape::Within(v) => format!("`[{path}]` (with `type = \"{v}\"`)"),
        Shape::ArrayOfTables => format!("`[[{path}]]`"),
        Shape::Table if path.is_empty() => String::new(),
        Shape::Table => format!("`[{path}]`"),
    };
    let variant = match &shape {
        Shape::Tagged(v) | Shape::Within(v) => Some(v.clone()),
        _ => None,
    };
    // The field's doc says what the section is for; the struct's own doc, if any, says more.
    let doc = [doc, item.doc.as_str()].iter().filter(|d| !d.is_empty()).copied().collect::<Vec<_>>().join(" ");
    let index = out.len();
    out.push(Section { path: path.to_string(), heading, doc, variant: variant.clone(), keys: Vec::new() });
    if let Shape::Tagged(v) = &shape {
        out[index].keys.push(Key {
            name: "type".into(),
            ty: "string".into(),
            required: true,
            doc: format!("`\"{v}\"`."),
            origin: format!("{name} (serde tag)"),
            is_map: false,
        });
    }
    for field in &item.members {
        let inner = inner_type(&field.ty);
        let child_path = if path.is_empty() { field.name.clone() } else { format!("{path}.{}", field.name) };
        match items.get(inner) {
            Some(child) if !child.is_enum && !child.from_string => {
                let shape = match (&variant, field.ty.starts_with("Vec<")) {
                    (Some(v), _) => Shape::Within(v.clone()),
                    (None, true) => Shape::ArrayOfTables,
                    (None, false) => Shape::Table,
                };
                walk(items, inner, &child_path, &field.doc, shape, out);
            }
            Some(child) if child.is_enum && child.members.iter().any(|v| !v.ty.is_empty()) => {
                for v in &child.members {
                    let doc = format!("{} {}", field.doc, v.doc);
                    walk(items, &v.ty, &child_path, &doc, Shape::Tagged(v.name.to_lowercase()), out);
                }
            }
            _ => out[index].keys.push(Key {
                name: field.name.clone(),
                ty: render_type(items, &field.ty),
                required: !field.has_default && !field.ty.starts_with("Option<"),
                doc: field.doc.clone(),
                origin: format!("{name}::{}", field.name),
                is_map: field.ty.starts_with("BTreeMap<"),
            }),
        }
    }
}

fn render_type(items: &BTreeMap<String, Item>, ty: &str) -> String {
    if let Some(inner) = ty.strip_prefix("Option<").and_then(|t| t.strip_suffix('>')) {
        return render_type(items, inner);
    }
    if let Some(inner) = ty.strip_prefix("Vec<").and_then(|t| t.strip_suffix('>')) {
        return format!("array of {}s", render_type(items, inner));
    }
    if let Some(inner) = ty.strip_prefix("BTreeMap<String, ").and_then(|t| t.strip_suffix('>')) {
        return format!("table of {}s", render_type(items, inner));
    }
    match ty {
        "String" => "string".into(),
        "PathBuf" => "path".into(),
        "bool" => "boolean".into(),
        "u8" | "u16" | "u32" | "u64" | "usize" => "integer".into(),
        other => match items.get(other) {
            Some(s) if s.from_string => "string".into(),
            Some(e) if e.is_enum => {
                let values: Vec<String> = e.members.iter().map(|v| format!("`{}`", v.name.to_lowercase())).collect();
                format!("one of {}", values.join(", "))
            }
            _ => panic!("type `{other}` has no rendering in host/tests/config_docs.rs: add one to render_type"),
        },
    }
}

fn markdown(sections: &[Section]) -> String {
    let mut md = String::new();
    for s in sections.iter().filter(|s| !s.keys.is_empty()) {
        if s.heading.is_empty() {
            continue;
        }
        writeln!(md, "### {}\n", s.heading).unwrap();
        if !s.doc.is_empty() {
            writeln!(md, "{}\n", s.doc.trim()).unwrap();
        }
        writeln!(md, "| key | type | meaning |\n|---|---|---|").unwrap();
        for k in &s.keys {
            let ty = if k.required { format!("{}, **required**", k.ty) } else { k.ty.clone() };
            writeln!(md, "| `{}` | {} | {} |", k.name, ty, k.doc.replace('|', "\\|")).unwrap();
        }
        md.push('\n');
    }
    md
}

// ---------------------------------------------------------------------------------------------
// The values the code applies, read from the parsed config's debug output, by key path.

const SQL: &str = r#"
[kafka]
bootstrap_servers = "127.0.0.1:19092"
[catalog]
type = "sql"
database = "catalog.db"
warehouse = "wh"
[registry]
url = "http://127.0.0.1:18081"
[[topics]]
name = "t"
schema = "t.avsc"
[topics.validator]
module = "v.wasm"
"#;

const REST: &str = r#"
[kafka]
bootstrap_servers = "127.0.0.1:19092"
[catalog]
type = "rest"
uri = "http://127.0.0.1:19181"
"#;

fn parse(text: &str) -> Config {
    Config::parse(text, Path::new("/etc/k2/k2.toml"), |_| None).unwrap_or_else(|e| panic!("{e}"))
}

/// `{:#?}` of a config → key path (`catalog.s3.region`, `topics.validator.on_failure`) → value.
fn actual_values(config: &Config) -> BTreeMap<String, String> {
    let debug = format!("{config:#?}");
    let mut stack: Vec<Option<String>> = Vec::new();
    let mut values = BTreeMap::new();
    for line in debug.lines() {
        let line = line.trim();
        if matches!(line, "}" | "}," | ")" | ")," | "]" | "],") {
            stack.pop();
            continue;
        }
        let (name, value) = match line.split_once(": ") {
            Some((n, v)) if n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') => {
                (Some(n.to_string()), v)
            }
            _ => (None, line),
        };
        if value.ends_with('{') || value.ends_with('(') || value.ends_with('[') {
            stack.push(name);
        } else if let Some(name) = name {
            let path: Vec<&str> = stack.iter().flatten().map(String::as_str).chain([name.as_str()]).collect();
            values.insert(path.join("."), value.trim_end_matches(',').to_string());
        } else if let Some(Some(_)) = stack.last() {
            // The value inside `key: Some(`: the key is set.
            let path: Vec<&str> = stack.iter().flatten().map(String::as_str).collect();
            values.insert(path.join("."), format!("Some({})", value.trim_end_matches(',')));
        }
    }
    values
}

/// The key paths `text` sets (`topics.schema`), so their values are not taken for defaults.
fn set_keys(text: &str) -> Vec<String> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
        for (key, value) in table {
            let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            match value {
                toml::Value::Table(t) => walk(&path, t, out),
                toml::Value::Array(a) if a.iter().all(|v| v.is_table()) && !a.is_empty() => {
                    a.iter().for_each(|v| walk(&path, v.as_table().unwrap(), out))
                }
                _ => out.push(path),
            }
        }
    }
    let mut out = Vec::new();
    walk("", &toml::from_str::<toml::Table>(text).unwrap(), &mut out);
    out
}

/// A value the doc comment can state: not absent, not an empty table or list.
fn is_stated_value(value: &str) -> bool {
    !matches!(value, "None" | "{}" | "[]")
}

/// The default a doc comment states, as the code would print it: `Default 1,000,000.` → `1000000`,
/// "Default `earliest`" → `earliest`. `None` for prose defaults ("Default: none").
fn stated_default(doc: &str) -> Option<String> {
    let after = doc.split_once("Default ")?.1.trim_start();
    if let Some(quoted) = after.strip_prefix('`') {
        return Some(quoted.split('`').next()?.to_string());
    }
    let word: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == ',' || *c == '_').collect();
    let word = word.trim_end_matches(',');
    if word.starts_with(|c: char| c.is_ascii_digit()) {
        return Some(word.replace([',', '_'], ""));
    }
    matches!(word, "true" | "false").then(|| word.to_string())
}

/// The code's value in the doc's spelling: strings unquoted, enum variants lower-case.
fn as_doc_spelling(value: &str) -> String {
    value.trim_matches('"').to_lowercase()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn configuration_md_is_generated_from_the_config_doc_comments() {
    let items = read_config_sources();
    let generated = markdown(&sections(&items));
    let path = repo().join("docs/configuration.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (before, rest) = text.split_once(BEGIN).unwrap_or_else(|| panic!("{} lacks `{BEGIN}`", path.display()));
    let (current, after) = rest.split_once(END).unwrap_or_else(|| panic!("{} lacks `{END}`", path.display()));
    let expected = format!("\n\n{generated}");
    if current == expected {
        return;
    }
    if std::env::var_os("K2_UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{before}{BEGIN}{expected}{END}{after}")).unwrap();
        return;
    }
    let first_difference = current
        .lines()
        .zip(expected.lines())
        .find(|(a, b)| a != b)
        .map(|(a, b)| format!("\n  docs:      {a}\n  generated: {b}"))
        .unwrap_or_else(|| "\n  (one is longer)".into());
    panic!(
        "docs/configuration.md is out of date with the doc comments in host/src/config/ (first difference:{first_difference})\n\
         The doc comments are the source: edit them, then regenerate with `{HOW_TO_UPDATE}`."
    );
}

#[test]
fn every_stated_default_is_the_one_the_code_applies() {
    let items = read_config_sources();
    let sql = actual_values(&parse(SQL));
    let rest = actual_values(&parse(REST));
    let set = [SQL, REST].iter().flat_map(|text| set_keys(text)).collect::<BTreeSet<_>>();
    let mut problems = Vec::new();
    let mut checked = 0;
    for section in sections(&items) {
        let actual = if section.variant.as_deref() == Some("rest") { &rest } else { &sql };
        for key in section.keys.iter().filter(|k| !k.required && k.name != "type") {
            let path = format!("{}.{}", section.path, key.name);
            if set.contains(&path) {
                continue;
            }
            let Some(value) = actual.get(&path) else {
                problems.push(format!("{path} ({}): no value in the parsed config's debug output", key.origin));
                continue;
            };
            match (stated_default(&key.doc), is_stated_value(value)) {
                (Some(stated), true) if stated == as_doc_spelling(value) => checked += 1,
                (Some(stated), true) => problems.push(format!(
                    "{path} ({}): the doc comment says default {stated}, the code applies {value}",
                    key.origin
                )),
                (None, true) => problems.push(format!(
                    "{path} ({}): the code applies {value}, but the doc comment states no `Default …`",
                    key.origin
                )),
                (_, false) if !key.doc.contains("Default") => problems.push(format!(
                    "{path} ({}): the doc comment does not say what happens when the key is left out (`Default: …`)",
                    key.origin
                )),
                _ => {}
            }
        }
    }
    // Two librdkafka settings k2-ingest changes are defaults too, written in kafka.options' doc.
    let options = sections(&items).into_iter().flat_map(|s| s.keys).find(|k| k.origin == "KafkaConfig::options");
    let options_doc = options.expect("KafkaConfig::options").doc;
    for (key, value) in k2_ingest::kafka::consumer::FETCH_DEFAULTS {
        if !options_doc.contains(&format!("`{key} = {value}`")) {
            problems.push(format!("kafka.options (KafkaConfig::options): the doc comment must say `{key} = {value}`"));
        }
    }
    assert!(problems.is_empty(), "config doc comments and defaults disagree:\n  {}", problems.join("\n  "));
    assert!(checked >= 25, "only {checked} defaults checked: is the debug output still parsed?");
}

/// A section left out and a section written empty must get the same values: `Default` impls
/// and serde's per-key default functions are two spellings of one default.
#[test]
fn section_defaults_equal_per_key_defaults() {
    let (head, topics) = SQL.split_once("[[topics]]").unwrap();
    let text = format!("{head}[pipeline]\n[commit]\n[sink]\n[wasm]\n[maintenance]\n[[topics]]{topics}");
    let c = parse(&text);
    assert_eq!(format!("{:?}", c.pipeline), format!("{:?}", PipelineConfig::default()), "[pipeline]");
    assert_eq!(format!("{:?}", c.commit), format!("{:?}", CommitConfig::default()), "[commit]");
    assert_eq!(format!("{:?}", c.sink), format!("{:?}", SinkConfig::default()), "[sink]");
    assert_eq!(format!("{:?}", c.wasm), format!("{:?}", WasmConfig::default()), "[wasm]");
    assert_eq!(format!("{:?}", c.maintenance), format!("{:?}", MaintenanceConfig::default()), "[maintenance]");
}

/// `[section]`, `[[section]]` and `key = value` lines of an example config, commented out or
/// not (a commented key is still a key a reader may copy): (section path, key, value text).
fn example_keys(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("# ").unwrap_or(line);
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split_once("]]")).map(|(n, _)| n) {
            section = name.to_string();
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split_once(']')).map(|(n, _)| n) {
            section = name.to_string();
        } else if let Some((key, value)) = line.split_once(" = ") {
            let key = key.trim();
            let is_key = key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                || (key.starts_with('"') && key.ends_with('"'));
            if is_key && !key.is_empty() {
                keys.push((section.clone(), key.trim_matches('"').to_string(), value.to_string()));
            }
        }
    }
    keys
}

#[test]
fn every_key_of_the_example_configs_is_documented_and_shown_defaults_are_the_defaults() {
    let sections = sections(&read_config_sources());
    let documented: BTreeSet<String> =
        sections.iter().flat_map(|s| s.keys.iter().map(move |k| format!("{}.{}", s.path, k.name))).collect();
    let maps: BTreeSet<String> = sections
        .iter()
        .flat_map(|s| s.keys.iter().filter(|k| k.is_map).map(move |k| format!("{}.{}", s.path, k.name)))
        .collect();
    let required: BTreeSet<String> = sections
        .iter()
        .flat_map(|s| s.keys.iter().filter(|k| k.required).map(move |k| format!("{}.{}", s.path, k.name)))
        .collect();
    let defaults = actual_values(&parse(SQL));
    let mut problems = Vec::new();
    let mut shown = 0;
    for file in ["k2.example.toml", "k2.rest.example.toml"] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        for (section, key, value) in example_keys(&text) {
            if maps.contains(&section) {
                continue;
            }
            let path = format!("{section}.{key}");
            if !documented.contains(&path) {
                problems.push(format!("{file}: `{key}` under [{section}] is not a documented key"));
                continue;
            }
            // k2.example.toml promises that a value shown outside [[topics]] is the default.
            if file != "k2.example.toml" || section.starts_with("topics") || required.contains(&path) {
                continue;
            }
            let Some(default) = defaults.get(&path).filter(|d| is_stated_value(d)) else { continue };
            let value = value.split(" #").next().unwrap().trim();
            if value.trim_matches('"').to_lowercase() != as_doc_spelling(default) {
                problems.push(format!("{file}: {path} = {value}, but the default is {default}"));
            }
            shown += 1;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(shown >= 15, "only {shown} shown defaults checked: is k2.example.toml still read?");
}
