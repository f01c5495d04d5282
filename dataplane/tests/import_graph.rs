//! The file-level import graph of `dataplane` and `mgmt` has no cycles, and the engine
//! (conntrack, rules, nat, route, wire) does not import the control side.
//!
//! Each source file (tests and `#[cfg(test)]` items left out) is a node; a path it names
//! (`use crate::…`, `use super::…`, `crate::a::b::f()` in code, a child module's name in a
//! `mod.rs`) is an edge to the file that defines the deepest module on the path. A name a
//! module only re-exports is followed to where it is defined, so importing through a
//! facade (`rules::Error`) is an edge to the defining file, while the facade's own
//! `pub use` is an edge from the facade to that file.
//!
//! [`KNOWN_BACK_EDGES`] and [`KNOWN_CONTROL_IMPORTS`] hold today's exceptions, each with
//! its reason: removing their edges must leave no cycle, every listed edge must still
//! exist (fix one, delete its line), and no other engine file may import control.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Edges (from, to) that close a cycle today, with why (none). Anything else: a new
/// cycle fails the test (move what both files need into a leaf below both, as conntrack/state.rs and
/// worker/action.rs, worker/command.rs do). A `#[path]` file holding an `impl` block of
/// its declarer's type names the declarer (`super::Pipeline`), so the declarer names
/// nothing of it: the state such a file keeps is a leaf of its own (worker/fast_state.rs,
/// conntrack/recipe_types.rs, …).
const KNOWN_BACK_EDGES: &[(&str, &str, &str)] = &[];

/// Engine files that import `control` today, with why. (The protocol's types come from the
/// `fwd-proto` crate, below the engine: name them `fwd_proto::…`, not through the
/// `control::proto` re-export.)
const KNOWN_CONTROL_IMPORTS: &[(&str, &str, &str)] = &[];

const ENGINE: &[&str] = &["conntrack/", "rules/", "nat/", "route/", "wire/"];

/// One crate's files: module path (segments) → file (relative to the crate root's dir).
struct Crate {
    name: &'static str,
    modules: BTreeMap<Vec<String>, String>,
    files: BTreeMap<String, FileInfo>,
}

#[derive(Default)]
struct FileInfo {
    /// Names bound by this file's top-level `use` items → the path they name (absolute
    /// module path segments, or `None` for an external crate).
    uses: BTreeMap<String, Option<Vec<String>>>,
    /// Every path the file names (absolute segments).
    paths: Vec<Vec<String>>,
    /// Child modules declared in the file.
    children: BTreeSet<String>,
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn module_of(rel: &str) -> Vec<String> {
    let mut segs: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if matches!(segs.last().map(String::as_str), Some("mod" | "lib")) {
        segs.pop();
    }
    segs
}

/// `(child module, file)` of each `#[path = "file"] mod child;` in `text`, the file
/// relative to the declaring file's directory (as rustc reads it for a module declared
/// in a file, not inline).
fn path_children(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending: Option<String> = None;
    for l in text.lines() {
        let t = l.trim();
        if let Some(rest) = t.strip_prefix("#[path") {
            pending = rest.split('"').nth(1).map(str::to_owned);
            continue;
        }
        if t.starts_with("#[") {
            continue; // other attributes between #[path] and its `mod`
        }
        if let Some(file) = pending.take() {
            let decl = ["mod ", "pub mod ", "pub(crate) mod ", "pub(super) mod "]
                .iter()
                .find_map(|kw| t.strip_prefix(kw));
            if let Some(m) = decl {
                out.push((m.trim_end_matches([';', ' ']).to_owned(), file));
            }
        }
    }
    out
}

/// Each file's module path: from its place in the tree, except that a file declared with
/// `#[path]` is the child of the module that declares it (`worker/fast.rs`, declared in
/// `worker/pipeline.rs`, is `worker::pipeline::fast`, and its `super` is the pipeline).
fn module_paths(texts: &BTreeMap<String, String>) -> BTreeMap<String, Vec<String>> {
    let mut modules: BTreeMap<String, Vec<String>> = texts
        .keys()
        .map(|rel| (rel.clone(), module_of(rel)))
        .collect();
    // Declarers first: a `#[path]` file that declares more is placed before its children.
    for _ in 0..texts.len() {
        let mut changed = false;
        for (rel, text) in texts {
            let dir = rel.rfind('/').map_or("", |i| &rel[..=i]);
            for (child, file) in path_children(text) {
                let target = format!("{dir}{file}");
                let mut m = modules[rel].clone();
                m.push(child);
                if let Some(old) = modules.get_mut(&target)
                    && *old != m
                {
                    *old = m;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    modules
}

/// The source without comments and without `#[cfg(test)]` items (rustfmt layout: an
/// item ends at its first line ending in `;` or at the `}` at its own indentation), and
/// the names of child modules declared under `#[cfg(test)]`.
fn production_text(src: &str) -> (String, Vec<String>) {
    let lines: Vec<&str> = src.lines().collect();
    let (mut out, mut test_mods) = (String::new(), Vec::new());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim_start();
        if t == "#[cfg(test)]" {
            let indent = &line[..line.len() - t.len()];
            i += 1;
            while i < lines.len() && lines[i].trim_start().starts_with("#[") {
                i += 1;
            }
            let Some(item) = lines.get(i) else { break };
            let item = item.trim();
            if item.ends_with(';') {
                if let Some(m) = item
                    .strip_prefix("mod ")
                    .or_else(|| item.strip_prefix("pub(crate) mod "))
                    .or_else(|| item.strip_prefix("pub mod "))
                {
                    test_mods.push(m.trim_end_matches(';').to_owned());
                }
                i += 1;
                continue;
            }
            while i < lines.len() && lines[i] != format!("{indent}}}") {
                i += 1;
            }
            i += 1;
            continue;
        }
        if !t.starts_with("//") {
            out.push_str(strip_trailing_comment(line));
            out.push('\n');
        }
        i += 1;
    }
    (out, test_mods)
}

fn strip_trailing_comment(line: &str) -> &str {
    let mut quotes = 0;
    let b = line.as_bytes();
    for i in 0..b.len() {
        match b[i] {
            b'"' if i == 0 || b[i - 1] != b'\\' => quotes += 1,
            b'/' if b.get(i + 1) == Some(&b'/') && quotes % 2 == 0 => return &line[..i],
            _ => {}
        }
    }
    line
}

/// `a::{b, c::{d, e as f}, self}` → (["a","b"], "b"), (["a","c","d"], "d"), … with the
/// name each binds.
fn expand_use(tree: &str, prefix: &[String], out: &mut Vec<(Vec<String>, String)>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let mut p = prefix.to_vec();
        p.extend(head);
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let (mut depth, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand_use(&inner[start..i], &p, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand_use(&inner[start..], &p, out);
        return;
    }
    let (path, alias) = match tree.split_once(" as ") {
        Some((p, a)) => (p, Some(a.trim())),
        None => (tree, None),
    };
    let mut p = prefix.to_vec();
    p.extend(path.split("::").map(|s| s.trim().to_owned()));
    if p.last().is_some_and(|s| s == "self") {
        p.pop();
    }
    let name = alias.map_or_else(|| p.last().cloned().unwrap_or_default(), str::to_owned);
    out.push((p, name));
}

/// Makes a path absolute from the file's module: `crate::`, `super::`, `self::`, or a
/// child module's name. `None`: another crate (std, dataplane from mgmt, …).
fn absolute(
    segs: &[String],
    module: &[String],
    children: &BTreeSet<String>,
) -> Option<Vec<String>> {
    let mut base = module.to_vec();
    let mut rest = segs;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        Some(first) if children.contains(first) => {}
        _ => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Paths in code starting with `crate::`, `super::`, `self::` or a child module's name.
fn code_paths(text: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !is_ident_char(chars[i])
            || (i > 0 && (is_ident_char(chars[i - 1]) || chars[i - 1] == ':'))
        {
            i += 1;
            continue;
        }
        let mut segs = Vec::new();
        let mut j = i;
        loop {
            let s = j;
            while j < chars.len() && is_ident_char(chars[j]) {
                j += 1;
            }
            segs.push(chars[s..j].iter().collect::<String>());
            if chars.get(j) == Some(&':')
                && chars.get(j + 1) == Some(&':')
                && chars.get(j + 2).is_some_and(|&c| is_ident_char(c))
            {
                j += 2;
            } else {
                break;
            }
        }
        if segs.len() > 1
            && (matches!(segs[0].as_str(), "crate" | "super" | "self")
                || children.contains(&segs[0]))
        {
            out.push(segs);
        }
        i = j.max(i + 1);
    }
    out
}

impl Crate {
    fn load(name: &'static str, src: PathBuf) -> Self {
        let mut paths = Vec::new();
        rs_files(&src, &mut paths);
        let mut c = Crate {
            name,
            modules: BTreeMap::new(),
            files: BTreeMap::new(),
        };
        let mut texts = BTreeMap::new();
        let mut test_mods = BTreeMap::new();
        for p in paths {
            let rel = p
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if rel.starts_with("bin/") {
                continue; // binaries are their own crates
            }
            let (text, tests) = production_text(&std::fs::read_to_string(&p).unwrap());
            test_mods.insert(rel.clone(), tests);
            texts.insert(rel, text);
        }
        let modules = module_paths(&texts);
        let mut test_modules = Vec::new();
        for (rel, tests) in test_mods {
            let module = modules[&rel].clone();
            for t in tests {
                let mut m = module.clone();
                m.push(t);
                test_modules.push(m);
            }
            c.modules.insert(module, rel);
        }
        // Test-only files (and everything below them) are not part of the graph.
        c.modules
            .retain(|m, _| !test_modules.iter().any(|t| m.starts_with(t)));
        let kept: BTreeSet<String> = c.modules.values().cloned().collect();
        for (rel, text) in texts {
            if !kept.contains(&rel) {
                continue;
            }
            let module = modules[&rel].clone();
            let mut info = FileInfo::default();
            for l in text.lines() {
                let t = l.trim();
                for kw in ["mod ", "pub mod ", "pub(crate) mod "] {
                    if let Some(m) = t.strip_prefix(kw) {
                        let m = m.trim_end_matches([';', '{', ' ']);
                        if m.chars().all(is_ident_char) {
                            info.children.insert(m.to_owned());
                        }
                    }
                }
            }
            // `use` items (joined to their `;`) and the code outside them.
            let mut code = String::new();
            let mut rest = text.as_str();
            while let Some(pos) = find_use(rest) {
                code.push_str(&rest[..pos.0]);
                let stmt = &rest[pos.1..];
                let end = stmt.find(';').unwrap_or(stmt.len());
                let top_level = pos.2;
                let mut items = Vec::new();
                expand_use(&stmt[..end], &[], &mut items);
                for (segs, name) in items {
                    let abs = absolute(&segs, &module, &info.children);
                    if let Some(a) = &abs {
                        info.paths.push(a.clone());
                    }
                    if top_level && name != "*" {
                        info.uses.insert(name, abs);
                    }
                }
                rest = &stmt[(end + 1).min(stmt.len())..];
            }
            code.push_str(rest);
            for segs in code_paths(&code, &info.children) {
                if let Some(a) = absolute(&segs, &module, &info.children) {
                    info.paths.push(a);
                }
            }
            c.files.insert(rel, info);
        }
        c
    }

    /// The file defining what `path` names, following re-exports.
    fn resolve(&self, path: &[String], depth: u32) -> Option<String> {
        let mut n = path.len();
        while n > 0 && !self.modules.contains_key(&path[..n]) {
            n -= 1;
        }
        let file = self.modules.get(&path[..n])?;
        if depth < 8
            && let Some(next) = path.get(n)
            && let Some(Some(target)) = self.files.get(file).and_then(|f| f.uses.get(next))
            && target.as_slice() != path
        {
            let mut t = target.clone();
            t.extend(path[n + 1..].iter().cloned());
            return self.resolve(&t, depth + 1).or_else(|| Some(file.clone()));
        }
        Some(file.clone())
    }

    fn edges(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (file, info) in &self.files {
            for p in &info.paths {
                if let Some(to) = self.resolve(p, 0)
                    && &to != file
                {
                    out.insert((self.key(file), self.key(&to)));
                }
            }
        }
        out
    }

    fn key(&self, rel: &str) -> String {
        format!("{}/src/{rel}", self.name)
    }
}

/// `(start of the item, start of its tree, top level)` of the next `use` item.
fn find_use(text: &str) -> Option<(usize, usize, bool)> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        for kw in ["use ", "pub use ", "pub(crate) use ", "pub(super) use "] {
            if t.starts_with(kw) {
                return Some((offset, offset + indent + kw.len(), indent == 0));
            }
        }
        offset += line.len();
    }
    None
}

fn crates() -> Vec<Crate> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    vec![
        Crate::load("dataplane", root.join("dataplane/src")),
        Crate::load("mgmt", root.join("mgmt/src")),
    ]
}

/// Strongly connected components with more than one file (Tarjan).
fn cycles(edges: &BTreeSet<(String, String)>) -> Vec<Vec<String>> {
    let mut adj: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        adj.entry(a).or_default().push(b);
        adj.entry(b).or_default();
    }
    struct St<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(v: &'a str, adj: &BTreeMap<&'a str, Vec<&'a str>>, s: &mut St<'a>) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on.insert(v);
        for &w in &adj[v] {
            if !s.index.contains_key(w) {
                visit(w, adj, s);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = St {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for &v in adj.keys() {
        if !s.index.contains_key(v) {
            visit(v, &adj, &mut s);
        }
    }
    s.out
}

fn all_edges() -> BTreeSet<(String, String)> {
    crates().iter().flat_map(Crate::edges).collect()
}

#[test]
fn no_import_cycles_beyond_the_known_ones() {
    let mut edges = all_edges();
    for (a, b, why) in KNOWN_BACK_EDGES {
        assert!(
            edges.remove(&((*a).to_owned(), (*b).to_owned())),
            "{a} -> {b} ({why}) no longer exists: delete it from KNOWN_BACK_EDGES"
        );
    }
    let found = cycles(&edges);
    let detail: Vec<String> = found
        .iter()
        .map(|c| {
            let inside: Vec<String> = edges
                .iter()
                .filter(|(a, b)| c.contains(a) && c.contains(b))
                .map(|(a, b)| format!("  {a} -> {b}"))
                .collect();
            format!("{}\n{}", c.join(", "), inside.join("\n"))
        })
        .collect();
    assert!(found.is_empty(), "import cycles:\n{}", detail.join("\n\n"));
}

#[test]
fn the_engine_does_not_import_control() {
    let mut known: BTreeSet<(String, String)> = KNOWN_CONTROL_IMPORTS
        .iter()
        .map(|(a, b, _)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    let mut bad = Vec::new();
    for (a, b) in all_edges() {
        let engine = ENGINE
            .iter()
            .any(|e| a.starts_with(&format!("dataplane/src/{e}")));
        if engine
            && b.starts_with("dataplane/src/control/")
            && !known.remove(&(a.clone(), b.clone()))
        {
            bad.push(format!("{a} -> {b}"));
        }
    }
    assert!(
        bad.is_empty(),
        "the engine imports control:\n{}",
        bad.join("\n")
    );
    assert!(
        known.is_empty(),
        "no longer imported, delete from KNOWN_CONTROL_IMPORTS: {known:?}"
    );
}

/// The graph reader itself: a facade's re-export is followed, test items are skipped.
#[test]
fn the_reader_follows_re_exports_and_skips_tests() {
    let edges = all_edges();
    let has = |a: &str, b: &str| edges.contains(&(a.to_owned(), b.to_owned()));
    // `use super::Error` in rules/check.rs names rules::Error, defined in rules/error.rs.
    assert!(has(
        "dataplane/src/rules/check.rs",
        "dataplane/src/rules/error.rs"
    ));
    assert!(!has(
        "dataplane/src/rules/check.rs",
        "dataplane/src/rules/mod.rs"
    ));
    // rules/mod.rs re-exports compile's CompiledRuleset, itself a re-export of
    // compile/ruleset.rs: the edge goes to the defining file, not the facade between.
    assert!(has(
        "dataplane/src/rules/mod.rs",
        "dataplane/src/rules/compile/ruleset.rs"
    ));
    assert!(!has(
        "dataplane/src/rules/mod.rs",
        "dataplane/src/rules/compile/mod.rs"
    ));
    // rules/tests.rs is a #[cfg(test)] module: not a node.
    assert!(
        !edges
            .iter()
            .any(|(a, _)| a == "dataplane/src/rules/tests.rs")
    );
    let (text, mods) = production_text(
        "use a;\n#[cfg(test)]\nmod tests;\n#[cfg(test)]\nmod t {\n    use crate::x;\n}\nfn f() {} // crate::y\n",
    );
    assert_eq!(mods, ["tests"]);
    assert_eq!(text, "use a;\nfn f() {} \n");
    let mut items = Vec::new();
    expand_use("super::{a, b::{c, d as e}, self}", &[], &mut items);
    let names: Vec<&str> = items.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["a", "c", "e", "super"]);
}

/// Files declared with `#[path]` are children of the module that declares them: in the
/// real crate, and in a small crate where the only cycle runs through such a file (read
/// as a child of `worker`, as before, `fast.rs`'s `super` would be `worker/mod.rs` and
/// the cycle would go unseen).
#[test]
fn path_declared_files_are_children_of_their_declarer() {
    let real = &crates()[0];
    let module = |rel: &str| {
        real.modules
            .iter()
            .find(|(_, f)| *f == rel)
            .map(|(m, _)| m.join("::"))
    };
    for (rel, m) in [
        ("worker/fast.rs", "worker::pipeline::fast"),
        ("worker/frag.rs", "worker::pipeline::frag"),
        ("worker/helper.rs", "worker::pipeline::helper"),
        ("worker/facts.rs", "worker::pipeline::facts"),
        ("conntrack/recipe.rs", "conntrack::table::recipe"),
        ("worker/fast_state.rs", "worker::pipeline::fast_state"),
        (
            "conntrack/recipe_types.rs",
            "conntrack::table::recipe_types",
        ),
        ("worker/pipeline.rs", "worker::pipeline"),
    ] {
        assert_eq!(module(rel).as_deref(), Some(m), "{rel}");
    }
    // An `impl` file names its declarer, which names nothing of it: what both use is a
    // leaf below them.
    let edges = real.edges();
    let has = |a: &str, b: &str| edges.contains(&(real.key(a), real.key(b)));
    for (declarer, file, leaf) in [
        (
            "worker/pipeline.rs",
            "worker/fast.rs",
            "worker/fast_state.rs",
        ),
        (
            "worker/pipeline.rs",
            "worker/frag.rs",
            "worker/frag_state.rs",
        ),
        (
            "worker/pipeline.rs",
            "worker/helper.rs",
            "worker/helper_state.rs",
        ),
        (
            "conntrack/table.rs",
            "conntrack/recipe.rs",
            "conntrack/recipe_types.rs",
        ),
        (
            "conntrack/table.rs",
            "conntrack/recipe.rs",
            "conntrack/lanes.rs",
        ),
    ] {
        assert!(has(file, declarer), "{file} -> {declarer}");
        assert!(!has(declarer, file), "{declarer} -> {file}");
        assert!(
            has(declarer, leaf) && has(file, leaf),
            "{declarer}, {file} -> {leaf}"
        );
    }
    assert_eq!(
        path_children("#[path = \"a.rs\"]\n#[allow(x)]\npub(crate) mod b;\nmod c;\n"),
        [("b".to_owned(), "a.rs".to_owned())]
    );

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("import_graph_path_{}", std::process::id()));
    let files = [
        ("lib.rs", "pub mod worker;\n"),
        ("worker/mod.rs", "pub mod pipeline;\n"),
        (
            "worker/pipeline.rs",
            "#[path = \"fast.rs\"]\nmod fast;\npub struct G;\npub fn run() { fast::f(); }\n",
        ),
        (
            "worker/fast.rs",
            "use super::G;\npub fn f() -> Option<G> { None }\n",
        ),
    ];
    for (rel, text) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let small = Crate::load("small", dir.clone());
    let found = cycles(&small.edges());
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        found,
        [vec![
            "small/src/worker/fast.rs".to_owned(),
            "small/src/worker/pipeline.rs".to_owned()
        ]],
        "the cycle through the #[path] file"
    );
}

/// What `mgmt` takes from `dataplane` (its sources, tests left out), by the first two
/// segments after `dataplane::`, with why; docs/architecture.md ("The protocol crate")
/// says the same. The protocol itself comes from `fwd-proto`: nothing here may name
/// `dataplane::control`.
const MGMT_FROM_DATAPLANE: &[(&str, &str)] = &[
    (
        "conntrack::Synced",
        "the HA sync daemon applies and sends entries in this form",
    ),
    (
        "conntrack::filter",
        "the filter's vocabulary: protocol names, TCP states, status flags",
    ),
    (
        "conntrack::tunables",
        "the tunables' static ranges, when fwd does not answer",
    ),
    ("ha::ftfw", "the sync daemon's reliable transport"),
    (
        "ha::line",
        "the ha_apply_records request line, written from the records' bytes",
    ),
    ("ha::wire", "the sync wire format"),
    (
        "rules::ast",
        "fwctl: the table family of an iptables translation",
    ),
    (
        "rules::dynset",
        "fwctl: an element's `timeout 1m30s` in nft's time form",
    ),
    (
        "rules::iptables",
        "fwctl: iptables-restore input translated to nft",
    ),
    (
        "rules::json",
        "fwctl: a ruleset's JSON read back for printing",
    ),
    ("rules::print", "fwctl: `nft -a list ruleset` text"),
];

/// `dataplane::a::b` paths in `text` as `a::b` (a `{` or a non-path character ends one).
fn dataplane_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (pos, _) in text.match_indices("dataplane::") {
        if pos > 0 && text[..pos].ends_with(|c: char| is_ident_char(c) || c == ':') {
            continue;
        }
        let rest = &text[pos + "dataplane::".len()..];
        let segs: Vec<&str> = rest
            .split("::")
            .map(|s| &s[..s.find(|c: char| !is_ident_char(c)).unwrap_or(s.len())])
            .take_while(|s| !s.is_empty())
            .take(2)
            .collect();
        out.insert(segs.join("::"));
    }
    out
}

#[test]
fn mgmt_takes_the_protocol_from_fwd_proto_and_only_the_listed_engine_parts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mgmt/src");
    let mut files = Vec::new();
    rs_files(&root, &mut files);
    let mut used = BTreeSet::new();
    for f in files {
        let (text, _) = production_text(&std::fs::read_to_string(&f).unwrap());
        for p in dataplane_paths(&text) {
            assert!(
                !p.starts_with("control"),
                "{}: names dataplane::{p}: take the protocol from fwd_proto",
                f.display()
            );
            used.insert(p);
        }
    }
    let listed: BTreeSet<String> = MGMT_FROM_DATAPLANE
        .iter()
        .map(|(p, _)| (*p).to_owned())
        .collect();
    assert_eq!(
        used, listed,
        "mgmt's uses of dataplane differ from MGMT_FROM_DATAPLANE (add a new one with its \
         reason, or delete one no longer used)"
    );
    assert_eq!(
        dataplane_paths("use dataplane::ha::wire::{self, Kind};\nx(dataplane::rules::print::f);"),
        BTreeSet::from(["ha::wire".to_owned(), "rules::print".to_owned()])
    );
}

// ---------------------------------------------------------------- the engine's own types

/// Modules that answer in their own types and never name the control protocol
/// (`fwd_proto`, or its `control::proto` re-export): `control` converts (its `conntrack`,
/// `filter` and `worker` files).
const PROTOCOL_FREE: &[&str] = &[
    "wire/",
    "frag/",
    "route/",
    "conntrack/",
    "nat/",
    "helper/",
    "rules/",
    "worker/",
];

/// Whether `line` names the protocol crate or its re-export as a path of its own.
fn names_protocol(line: &str) -> bool {
    ["fwd_proto", "control::proto"].iter().any(|p| {
        line.match_indices(p).any(|(i, _)| {
            !line[..i].ends_with(is_ident_char) && !line[i + p.len()..].starts_with(is_ident_char)
        })
    })
}

#[test]
fn the_engine_does_not_name_the_protocol() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let krate = Crate::load("dataplane", src.clone());
    let mut bad = Vec::new();
    for rel in krate.modules.values() {
        if !PROTOCOL_FREE.iter().any(|m| rel.starts_with(m)) {
            continue;
        }
        let (text, _) = production_text(&std::fs::read_to_string(src.join(rel)).unwrap());
        bad.extend(
            text.lines()
                .filter(|l| names_protocol(l))
                .map(|l| format!("dataplane/src/{rel}: {}", l.trim())),
        );
    }
    assert!(
        bad.is_empty(),
        "the engine names the control protocol (return an engine type, convert it in \
         control):\n{}",
        bad.join("\n")
    );
    assert!(names_protocol("use fwd_proto::{CtEntry, EventLine};"));
    assert!(names_protocol("let e: crate::control::proto::CtEntry;"));
    assert!(!names_protocol("use my_fwd_proto::X; fwd_protocol::Y"));
}
