//! The binary's layers (docs/architecture.md): each module imports only from the layers below
//! it, so no import runs back up and none goes in a circle. Read from the source, so a new
//! `use crate::...` that breaks the order fails here.

use std::collections::BTreeSet;
use std::path::Path;

/// Each top-level module and the top-level modules it may import from (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    ("engine", &[]),
    ("cluster", &["engine"]),
    ("server", &["engine"]),
    ("shell", &["engine"]),
    // Reports draw with the shell's output formats.
    ("report", &["engine", "shell"]),
    (
        "commands",
        &["engine", "cluster", "server", "shell", "report"],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_module_imports_only_from_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut seen = BTreeSet::new();
    let mut wrong = vec![];
    for (module, allowed) in ALLOWED {
        let dir = src.join(module);
        let mut files = vec![];
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
        files.push(src.join(format!("{module}.rs")));
        for file in files.into_iter().filter(|f| f.exists()) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (i, _) in text.match_indices("crate::") {
                let rest = &text[i + "crate::".len()..];
                let target: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                seen.insert(target.clone());
                if target != *module && !allowed.contains(&target.as_str()) {
                    wrong.push(format!("{}: crate::{target}", file.display()));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that run against the layers: {wrong:#?}"
    );
    // Every top-level module is in the table (a new one must be placed in a layer).
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if !["main", "lib"].contains(&name.as_str()) {
            assert!(
                ALLOWED.iter().any(|(m, _)| *m == name),
                "src/{name}: place it in a layer (tests/layers.rs and docs/architecture.md)"
            );
        }
    }
    assert!(seen.contains("engine"), "the check read the sources");
}
