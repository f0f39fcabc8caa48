//! Every relative link in README.md, CHANGELOG.md and docs/*.md reaches an existing file and heading.
//!
//! The README is a front door into docs/; when a page or a section is renamed or moved, the links
//! into it must follow. Anchors are matched as GitHub spells them (lower case, punctuation
//! dropped, spaces as `-`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

fn pages() -> Vec<PathBuf> {
    let root = repo();
    let mut pages = vec![root.join("README.md"), root.join("CHANGELOG.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension() == Some("md".as_ref()))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// Lines outside fenced code blocks.
fn prose(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut fenced = false;
    text.lines().enumerate().filter(move |(_, line)| {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            return false;
        }
        !fenced
    })
}

fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    prose(text).filter(|(_, l)| l.starts_with('#')).map(|(_, l)| anchor(l.trim_start_matches('#'))).collect()
}

/// `](target)` link targets of one line.
fn links(line: &str) -> Vec<&str> {
    line.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &line[at + 2..];
            rest.find(')').map(|end| &rest[..end])
        })
        .filter(|t| !t.contains(' '))
        .collect()
}

#[test]
fn relative_links_reach_a_file_and_a_heading() {
    let root = repo();
    let mut headings: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        for (n, line) in prose(&text) {
            for target in links(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
                let dest = if file.is_empty() { page.clone() } else { page.parent().unwrap().join(file) };
                let where_ = format!("{}:{}: `{target}`", page.strip_prefix(&root).unwrap().display(), n + 1);
                let Ok(dest) = dest.canonicalize() else {
                    broken.push(format!("{where_}: no such file"));
                    continue;
                };
                checked += 1;
                if fragment.is_empty() {
                    continue;
                }
                let known = headings
                    .entry(dest.clone())
                    .or_insert_with(|| std::fs::read_to_string(&dest).map(|t| anchors(&t)).unwrap_or_default());
                if !known.iter().any(|a| a == fragment) {
                    broken.push(format!("{where_}: no heading with that anchor"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links in the docs:\n{}", broken.join("\n"));
    assert!(checked >= 30, "only {checked} links checked: are README.md and docs/ still read?");
}
