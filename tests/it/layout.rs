//! The shape of `src/` (issue 12): no import cycles, between stages or between files, and no
//! source file over 400 lines besides its unit tests. Read from the tree, so a change that
//! breaks either fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every source file under `src/` (relative path) → its code without the unit tests.
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src readable") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .map(|file| {
            let rel = file
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&file).unwrap();
            (rel, text.split("#[cfg(test)]").next().unwrap().to_string())
        })
        .collect()
}

/// The library's modules (`deliver::lane`) → their code without the unit tests. The binaries
/// sit on top of the library; nothing imports them.
fn modules() -> BTreeMap<String, String> {
    sources()
        .into_iter()
        .filter(|(rel, _)| !rel.starts_with("bin/") && rel != "lib.rs")
        .map(|(rel, code)| {
            let module = rel.trim_end_matches(".rs").trim_end_matches("/mod");
            (module.replace('/', "::"), code)
        })
        .collect()
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap().trim().to_string()];
    };
    let head = tree[..open].trim_end_matches("::");
    let inner = &tree[open + 1..tree.rfind('}').unwrap()];
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|i| !i.trim().is_empty())
        .flat_map(expand)
        .map(|p| match p.as_str() {
            "self" => head.to_string(),
            _ => format!("{head}::{p}"),
        })
        .collect()
}

/// Every `crate::…`, `super::…`, `self::…` and child-module path a module's code names,
/// made absolute.
fn references(module: &str, code: &str, modules: &BTreeMap<String, String>) -> Vec<String> {
    let parent: Vec<&str> = module.split("::").collect();
    let parent = parent[..parent.len() - 1].join("::");
    let absolute = |p: &str| -> Option<String> {
        let p = p.trim();
        if let Some(rest) = p.strip_prefix("crate::") {
            Some(rest.to_string())
        } else if let Some(rest) = p.strip_prefix("super::") {
            Some(if parent.is_empty() {
                rest.to_string()
            } else {
                format!("{parent}::{rest}")
            })
        } else if let Some(rest) = p.strip_prefix("self::") {
            Some(format!("{module}::{rest}"))
        } else {
            // `use child::Item;` in a module's own file names its child module.
            let first = p.split("::").next().unwrap_or_default();
            modules
                .contains_key(&format!("{module}::{first}"))
                .then(|| format!("{module}::{p}"))
        }
    };
    let mut out = Vec::new();
    let mut lines = code.lines();
    while let Some(line) = lines.next() {
        let line = line.trim_start();
        let Some(at) = ["use ", "pub use ", "pub(crate) use "]
            .iter()
            .find_map(|p| line.starts_with(p).then_some(p.len()))
        else {
            continue;
        };
        let mut stmt = line[at..].to_string();
        while !stmt.contains(';') {
            match lines.next() {
                Some(more) => stmt.push_str(more),
                None => break,
            }
        }
        let stmt = stmt.split(';').next().unwrap();
        out.extend(expand(stmt).iter().filter_map(|p| absolute(p)));
    }
    // Paths in code: from the crate, from the parent, or from a child module (`child::f()`).
    let children = modules.keys().filter_map(|m| {
        m.strip_prefix(module)
            .and_then(|rest| rest.strip_prefix("::"))
            .filter(|rest| !rest.contains("::"))
            .map(|child| format!("{child}::"))
    });
    for prefix in ["crate::".to_string(), "super::".to_string()]
        .into_iter()
        .chain(children)
    {
        for (at, _) in code.match_indices(&prefix) {
            let before = code[..at].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let tail: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.extend(absolute(tail.trim_end_matches(':')));
        }
    }
    let mut seen = BTreeSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

/// The module a path lands in: its longest prefix that is a module.
fn owner<'a>(path: &str, modules: &'a BTreeMap<String, String>) -> Option<&'a str> {
    let segs: Vec<&str> = path.split("::").collect();
    (1..=segs.len())
        .rev()
        .find_map(|n| modules.get_key_value(&segs[..n].join("::")))
        .map(|(k, _)| k.as_str())
}

fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, bool>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), false);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next) {
                Some(false) => {
                    let from = stack.iter().position(|n| n == next).unwrap();
                    let mut found = stack[from..].to_vec();
                    found.push(next.clone());
                    return Some(found);
                }
                Some(true) => {}
                None => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_string(), true);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node) {
            if let Some(c) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn graphs() -> (
    BTreeMap<String, BTreeSet<String>>,
    BTreeMap<String, BTreeSet<String>>,
) {
    let modules = modules();
    let (mut files, mut stages) = (BTreeMap::new(), BTreeMap::new());
    for (module, code) in &modules {
        for target in references(module, code, &modules)
            .iter()
            .filter_map(|r| owner(r, &modules))
        {
            if target == module {
                continue;
            }
            files
                .entry(module.clone())
                .or_insert_with(BTreeSet::new)
                .insert(target.to_string());
            let (a, b) = (
                module.split("::").next().unwrap(),
                target.split("::").next().unwrap(),
            );
            if a != b {
                stages
                    .entry(a.to_string())
                    .or_insert_with(BTreeSet::new)
                    .insert(b.to_string());
            }
        }
    }
    (files, stages)
}

#[test]
fn no_import_cycles_between_stages_or_files() {
    let (files, stages) = graphs();
    assert!(
        files.len() > 40,
        "the tree was read: {} modules import others",
        files.len()
    );
    assert!(
        stages["deliver"].contains("retry") && files["fanout"].contains("deliver::delivery"),
        "imports were found: {stages:?}"
    );
    assert_eq!(cycle(&stages), None, "stages import each other");
    assert_eq!(cycle(&files), None, "files import each other");
}

#[test]
fn the_checker_finds_a_cycle_when_there_is_one() {
    let modules: BTreeMap<String, String> = ["api", "api::tokens", "api::tokens::store"]
        .map(|m| (m.to_string(), String::new()))
        .into();
    let code = "use super::{extract::{self, A}, ApiState};\nuse store::B;\n\
                fn f() { crate::db::keys::Keys::new(); store::g(); }";
    let refs = references("api::tokens", code, &modules);
    assert_eq!(
        refs,
        [
            "api::extract",
            "api::extract::A",
            "api::ApiState",
            "api::tokens::store::B",
            "db::keys::Keys::new",
            "api::tokens::store::g"
        ]
    );
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]
    .into();
    assert_eq!(
        cycle(&graph),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}

#[test]
fn no_source_file_is_over_400_lines_besides_its_unit_tests() {
    let long: Vec<(String, usize)> = sources()
        .into_iter()
        .map(|(m, code)| (m, code.lines().count()))
        .filter(|(_, n)| *n > 400)
        .collect();
    assert!(long.is_empty(), "too long: {long:?}");
}
