//! The core's module dependencies have no cycle, and follow the order
//! docs/ARCHITECTURE.md gives (its module map): every module of `src/` is
//! listed there once, and uses (`crate::<module>` in code, comments aside)
//! only modules on the lines above its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every `.rs` file under `dir`.
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

/// The top-level module a file of `src/` belongs to (`broadcast/redis.rs`
/// is `broadcast`); none for the crate roots.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// The modules `code` names as `crate::<module>`, comment lines aside.
fn uses(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (at, _) in line.match_indices("crate::") {
            let rest = &line[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            // `ferrocable::crate::` does not occur; `$crate::` (macros) names no module.
            if !name.is_empty() && !line[..at].ends_with('$') {
                found.insert(name);
            }
        }
    }
    found
}

/// Module → the modules it uses, from the source.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let mut deps = uses(&std::fs::read_to_string(&file).unwrap());
        deps.remove(&module);
        graph.entry(module).or_default().extend(deps);
    }
    graph
}

/// The layers of the documented order: the lines of the `text` block that
/// follows "The dependency order" in docs/ARCHITECTURE.md.
fn documented_layers() -> Vec<Vec<String>> {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/ARCHITECTURE.md")).unwrap();
    let section = doc
        .split_once("The dependency order")
        .expect("docs/ARCHITECTURE.md gives the dependency order")
        .1;
    let block = section
        .split_once("```text\n")
        .expect("the order is a text block")
        .1
        .split_once("```")
        .unwrap()
        .0;
    block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').map(|m| m.trim().to_owned()).collect())
        .collect()
}

#[test]
fn the_module_graph_has_no_cycle() {
    // Kahn's algorithm: repeatedly take the modules whose uses are all taken.
    let graph = graph();
    let mut done = BTreeSet::new();
    while done.len() < graph.len() {
        let ready: Vec<_> = graph
            .iter()
            .filter(|(m, deps)| !done.contains(*m) && deps.iter().all(|d| done.contains(d)))
            .map(|(m, _)| m.clone())
            .collect();
        assert!(
            !ready.is_empty(),
            "a module cycle among: {:?}",
            graph
                .iter()
                .filter(|(m, _)| !done.contains(*m))
                .collect::<BTreeMap<_, _>>()
        );
        done.extend(ready);
    }
}

#[test]
fn modules_follow_the_documented_order() {
    let graph = graph();
    let layers = documented_layers();
    let mut layer_of = BTreeMap::new();
    for (i, layer) in layers.iter().enumerate() {
        for module in layer {
            assert!(
                layer_of.insert(module.clone(), i).is_none(),
                "{module} is listed twice in docs/ARCHITECTURE.md's dependency order"
            );
        }
    }
    let listed: BTreeSet<_> = layer_of.keys().cloned().collect();
    let actual: BTreeSet<_> = graph.keys().cloned().collect();
    assert_eq!(
        listed, actual,
        "docs/ARCHITECTURE.md's dependency order lists exactly the modules of src/"
    );
    for (module, deps) in &graph {
        for dep in deps {
            assert!(
                layer_of[dep] < layer_of[module],
                "{module} uses {dep}, which docs/ARCHITECTURE.md's dependency order puts on the same line or below"
            );
        }
    }
}

#[test]
fn the_reader_finds_uses_and_skips_comments() {
    // The checks above are only as good as this reader.
    let code = "use crate::hub::Via;\n// see crate::server\nlet x = crate::node::lock(m);\nmacro_rules! m { () => { $crate::client_log::X } }\n";
    assert_eq!(
        uses(code),
        ["hub", "node"].iter().map(|s| s.to_string()).collect()
    );
}
