//! sdk-host's own layout, as `src/lib.rs` declares it for contributors:
//! each top-level module uses only the modules declared above it, so the
//! imports point one way and the declaration order is the architecture;
//! and no source file grows past 1,000 lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// The top-level modules in declaration order, and what each name that
/// `lib.rs` re-exports (`pub use model::DEFAULT_START_NANOS`) comes from.
fn declared() -> (Vec<String>, BTreeMap<String, String>) {
    let lib = std::fs::read_to_string(Path::new(SRC).join("lib.rs")).unwrap();
    let mut modules = Vec::new();
    let mut exports = BTreeMap::new();
    let mut statement = String::new();
    for line in lib.lines().map(str::trim) {
        if let Some(name) = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "))
            .and_then(|rest| rest.strip_suffix(';'))
        {
            modules.push(name.to_string());
        }
        if line.starts_with("pub use ") || !statement.is_empty() {
            statement.push_str(line);
            if line.ends_with(';') {
                let path = statement.trim_start_matches("pub use ");
                let module = path.split("::").next().unwrap().to_string();
                let names = path.rsplit("::").next().unwrap();
                for name in names.trim_matches(|c| "{};".contains(c)).split(',') {
                    let name = name.trim().rsplit(' ').next().unwrap();
                    if !name.is_empty() {
                        exports.insert(name.to_string(), module.clone());
                    }
                }
                statement.clear();
            }
        }
    }
    (modules, exports)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file's code (not its comments) names through
/// `crate::`, resolving names the crate root re-exports.
fn uses(text: &str, exports: &BTreeMap<String, String>) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (at, _) in line.match_indices("crate::") {
            let rest = &line[at + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap().split(',').collect(),
                None => vec![rest],
            };
            for name in names {
                let name: String = name
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.push(exports.get(&name).cloned().unwrap_or(name));
            }
        }
    }
    found
}

#[test]
fn modules_use_only_the_modules_declared_above_them() {
    let (order, exports) = declared();
    assert!(order.len() >= 10, "lib.rs declares {order:?}");
    let rank = |name: &str| order.iter().position(|m| m == name);
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    let mut upward = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(SRC).unwrap();
        let top = relative.components().next().unwrap().as_os_str();
        let top = top.to_str().unwrap().trim_end_matches(".rs");
        let Some(own) = rank(top) else {
            continue; // lib.rs and the binary-free crate root
        };
        let text = std::fs::read_to_string(file).unwrap();
        for used in uses(&text, &exports) {
            if rank(&used).is_some_and(|r| r > own) {
                upward.push(format!("{} uses crate::{used}", relative.display()));
            }
        }
    }
    upward.sort();
    upward.dedup();
    assert!(
        upward.is_empty(),
        "imports must point down the order of src/lib.rs ({}):\n{}",
        order.join(" > "),
        upward.join("\n")
    );
}

#[test]
fn no_source_file_is_over_a_thousand_lines() {
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    let long: Vec<String> = files
        .iter()
        .map(|f| (f, std::fs::read_to_string(f).unwrap().lines().count()))
        .filter(|(_, lines)| *lines > 1000)
        .map(|(f, lines)| format!("{}: {lines} lines", f.display()))
        .collect();
    assert!(long.is_empty(), "split these by domain: {long:?}");
}
