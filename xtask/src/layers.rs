//! One direction of dependency, checked from the sources: every module of this crate
//! imports only from its own layer and the layers below ([`LAYERS`]), and no modules
//! import each other, however indirectly. `cargo xtask lint` runs the check, and so does
//! a test.
//!
//! The graph is read, not compiled: each file is cut into tokens (comments, strings and
//! character literals dropped), and every path that names a module of the crate makes
//! an edge from the file's module to the deepest module the path names: `crate::...`,
//! `super::...` and `self::...` paths (in `use` trees and in code), paths through a
//! child module (`native::start`), and `crate::name!` macros (to the file that exports
//! the macro). Re-exports of the crate root (`pub use cli::Cli`) lead to what they
//! re-export. Inline modules (`mod tests { .. }`) count as their file's module. A cycle
//! is reported with the path it takes, an upward import with its file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first, by top-level module. A module may import from its own layer
/// (without a cycle) and from the layers below it, never from a layer above.
pub const LAYERS: &[(&str, &[&str])] = &[
    // No task knowledge: paths, files, errors, host, processes, signals, secrets, diff, stats.
    ("sys", &["sys"]),
    // What tasks and services share: GitHub's runner interface and REST API, phase
    // timings, the config generator, the machine's requirements.
    ("shared", &["github", "github_api", "timings", "config", "requirements"]),
    // The services of the manifest and the two backends that run them.
    ("services", &["services"]),
    // CI: the pipeline over a session, the workflows' decisions, JUnit, test counts, the
    // run history and its report, the workflow rules.
    ("ci", &["ci"]),
    // The tasks, one module each, and the checks `lint` runs.
    ("tasks", &["test", "lint", "layers", "build_timings", "doc_commands", "test_builds"]),
    // The command tree: flags, and the call into the task.
    ("cli", &["cli"]),
];

/// Imports that break the rule knowingly, each with the reason. An entry that no longer
/// matches anything is reported too, so the list only shrinks.
pub const EXCEPTIONS: &[(&str, &str, &str)] = &[];

/// A module path without the leading `crate`: `services::native`; the root is empty.
type Module = Vec<String>;

/// One import: where it is, and the module it names.
#[derive(Debug, Clone)]
struct Edge {
    from: Module,
    to: Module,
    file: String,
    line: usize,
}

/// The problems of the crate whose `src/` is `src` (`xtask/src`): one line each.
pub fn check_dir(src: &Path) -> anyhow::Result<Vec<String>> {
    let mut files = BTreeMap::new();
    for path in crate::sys::fs::files_below(src, "rs") {
        let relative = path.strip_prefix(src)?.to_string_lossy().replace('\\', "/");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        files.insert(relative, text);
    }
    Ok(check(&files, EXCEPTIONS))
}

/// The problems of a crate given as its files (`lib.rs`, `sys/mod.rs`, ... relative to
/// `src/`): cycles, upward imports, modules no layer names, exceptions no longer needed.
pub fn check(files: &BTreeMap<String, String>, exceptions: &[(&str, &str, &str)]) -> Vec<String> {
    let mut modules: BTreeMap<Module, String> = BTreeMap::new();
    for file in files.keys() {
        if let Some(module) = module_of(file) {
            modules.insert(module, file.clone());
        }
    }
    let known: BTreeSet<Module> = modules.keys().cloned().collect();
    let macros = exported_macros(files);
    let aliases = root_aliases(files.get("lib.rs").map(String::as_str).unwrap_or(""));
    let mut edges = Vec::new();
    for (module, file) in &modules {
        if module.is_empty() {
            continue;
        }
        edges.extend(edges_of(module, file, &files[file], &known, &macros, &aliases));
    }
    let mut problems = Vec::new();
    let mut unplaced = BTreeSet::new();
    for (module, file) in &modules {
        let Some(top) = module.first() else { continue };
        if layer_of(module).is_none() && unplaced.insert(top) {
            problems.push(format!(
                "{file}: module `{top}` is in no layer: add it to LAYERS in xtask/src/layers.rs"
            ));
        }
    }
    let mut used_exceptions = BTreeSet::new();
    for edge in &edges {
        let (Some(from), Some(to)) = (layer_of(&edge.from), layer_of(&edge.to)) else { continue };
        if to <= from {
            continue;
        }
        let exception =
            exceptions.iter().position(|(a, b, _)| *a == edge.from[0] && *b == edge.to[0]);
        if let Some(i) = exception {
            used_exceptions.insert(i);
            continue;
        }
        problems.push(format!(
            "{}:{}: `{}` (layer {}) imports `{}` (layer {}, above it)",
            edge.file,
            edge.line,
            edge.from.join("::"),
            LAYERS[from].0,
            edge.to.join("::"),
            LAYERS[to].0
        ));
    }
    for (i, (from, to, _)) in exceptions.iter().enumerate() {
        if !used_exceptions.contains(&i) {
            problems.push(format!(
                "layers.rs: the exception `{from}` -> `{to}` is no longer needed: remove it"
            ));
        }
    }
    // An import the exceptions accept is no part of a cycle either.
    let excepted =
        |edge: &&Edge| exceptions.iter().any(|(a, b, _)| edge.from[0] == *a && edge.to[0] == *b);
    let edges: Vec<Edge> = edges.iter().filter(|e| !excepted(e)).cloned().collect();
    for cycle in cycles(&edges) {
        problems.push(format!("module cycle: {cycle}"));
    }
    problems
}

/// The module a file under `src/` defines; `None` for the binaries (`main.rs`, `bin/`).
fn module_of(file: &str) -> Option<Module> {
    if file == "main.rs" || file.starts_with("bin/") {
        return None;
    }
    let path = file.strip_suffix(".rs")?;
    let mut parts: Vec<String> = path.split('/').map(str::to_string).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    Some(parts)
}

/// The index in [`LAYERS`] of a module's top-level module.
fn layer_of(module: &Module) -> Option<usize> {
    let top = module.first()?;
    LAYERS.iter().position(|(_, members)| members.contains(&top.as_str()))
}

/// Macros exported at the crate root (`#[macro_export] macro_rules! name`), by the
/// module that defines them.
fn exported_macros(files: &BTreeMap<String, String>) -> BTreeMap<String, Module> {
    let mut macros = BTreeMap::new();
    for (file, text) in files {
        let Some(module) = module_of(file) else { continue };
        let tokens = tokens(text);
        for window in tokens.windows(3) {
            if window[0].text == "macro_rules" && window[1].text == "!" {
                macros.insert(window[2].text.clone(), module.clone());
            }
        }
    }
    macros
}

/// Names the crate root brings in with `use` (`pub use cli::Cli`, `use sys::interrupts`):
/// the name, and the path it stands for.
fn root_aliases(lib: &str) -> BTreeMap<String, Vec<String>> {
    let mut aliases = BTreeMap::new();
    for (path, _) in use_paths(&tokens(lib), true) {
        let mut path = path;
        if path.first().is_some_and(|s| s == "crate") {
            path.remove(0);
        }
        if let Some(last) = path.last().cloned()
            && path.len() > 1
        {
            aliases.insert(last, path);
        }
    }
    aliases
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    text: String,
    line: usize,
}

/// The tokens of Rust source that matter for paths: identifiers (with `$crate` as
/// `crate`), `::` and single punctuation; comments, strings and characters dropped.
fn tokens(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if (c == 'r' || c == 'b') && raw_string_start(&chars, i).is_some() {
            let (hashes, body) = raw_string_start(&chars, i).expect("checked");
            i = body;
            loop {
                if i >= chars.len() {
                    break;
                }
                if chars[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                    i += 1 + hashes;
                    break;
                }
                if chars[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
        } else if c == '"' || (c == 'b' && at(i + 1) == '"') {
            i += if c == 'b' { 2 } else { 1 };
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if at(i) == '\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c == '\'' {
            // A character literal ('a', '\n', '\u{..}') or a lifetime ('a).
            if at(i + 1) == '\\' {
                // Past the quote, the backslash and the escaped character.
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_alphabetic() || c == '_' || (c == '$' && at(i + 1).is_alphabetic()) {
            let start = if c == '$' { i + 1 } else { i };
            i = start;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let word = word.strip_prefix("r#").map(str::to_string).unwrap_or(word);
            out.push(Token { text: word, line });
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c == ':' && at(i + 1) == ':' {
            out.push(Token { text: "::".into(), line });
            i += 2;
        } else {
            out.push(Token { text: c.to_string(), line });
            i += 1;
        }
    }
    out
}

/// For `r"`, `r#"`, `br"`, ... at `i`: the number of `#`s and where the body starts.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    // Not the end of an identifier such as `for` or `bar`.
    if i > 0 && chars.get(i - 1).is_some_and(|c| c.is_alphanumeric() || *c == '_') {
        return None;
    }
    j += 1;
    let hashes = chars[j..].iter().take_while(|c| **c == '#').count();
    (chars.get(j + hashes) == Some(&'"')).then_some((hashes, j + hashes + 1))
}

/// The paths of the `use` items in `tokens` (brace groups expanded, `self` resolved to
/// its parent path, `*` dropped), with their lines. With `top_level_only`, only items
/// outside every brace block (the crate root's own `use`s).
fn use_paths(tokens: &[Token], top_level_only: bool) -> Vec<(Vec<String>, usize)> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i].text.as_str() {
            "{" => depth += 1,
            "}" => depth -= 1,
            "use" if !top_level_only || depth == 0 => {
                let end =
                    (i..tokens.len()).find(|&j| tokens[j].text == ";").unwrap_or(tokens.len());
                expand_use(&tokens[i + 1..end], Vec::new(), &mut out);
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Expands one use tree (`a::{self, b::{c, d}}`) below `prefix`.
fn expand_use(tree: &[Token], prefix: Vec<String>, out: &mut Vec<(Vec<String>, usize)>) {
    let mut path = prefix;
    let mut i = 0;
    while i < tree.len() {
        let token = &tree[i];
        match token.text.as_str() {
            "::" => {}
            "{" => {
                // Split the group at its top-level commas.
                let mut depth = 0;
                let mut start = i + 1;
                let mut j = i + 1;
                while j < tree.len() {
                    match tree[j].text.as_str() {
                        "{" => depth += 1,
                        "}" if depth == 0 => {
                            expand_use(&tree[start..j], path.clone(), out);
                            return;
                        }
                        "}" => depth -= 1,
                        "," if depth == 0 => {
                            expand_use(&tree[start..j], path.clone(), out);
                            start = j + 1;
                        }
                        _ => {}
                    }
                    j += 1;
                }
                return;
            }
            "as" => break,
            "*" => break,
            "self" if !path.is_empty() => {}
            _ if is_ident(&token.text) => path.push(token.text.clone()),
            _ => {}
        }
        i += 1;
    }
    if let Some(line) = tree.first().map(|t| t.line)
        && !path.is_empty()
    {
        out.push((path, line));
    }
}

fn is_ident(text: &str) -> bool {
    text.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The edges of one file whose module is `module`.
fn edges_of(
    module: &Module,
    file: &str,
    text: &str,
    known: &BTreeSet<Module>,
    macros: &BTreeMap<String, Module>,
    aliases: &BTreeMap<String, Vec<String>>,
) -> Vec<Edge> {
    let tokens = tokens(text);
    // Where each inline module starts and ends, so `super` inside `mod tests { .. }`
    // means the file's module.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut scopes: Vec<Vec<String>> = Vec::with_capacity(tokens.len());
    for (i, token) in tokens.iter().enumerate() {
        match token.text.as_str() {
            "{" => {
                depth += 1;
                if i >= 2 && tokens[i - 2].text == "mod" {
                    inline.push((tokens[i - 1].text.clone(), depth));
                }
            }
            "}" => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth -= 1;
            }
            _ => {}
        }
        scopes.push(inline.iter().map(|(name, _)| name.clone()).collect());
    }
    let resolve = |path: &[String], scope: &[String]| -> Option<Module> {
        let mut current: Vec<String> = module.iter().chain(scope).cloned().collect();
        let mut rest = path;
        let absolute: Vec<String> = match rest.first().map(String::as_str) {
            Some("crate") => rest[1..].to_vec(),
            Some("super") => {
                while rest.first().is_some_and(|s| s == "super") {
                    current.pop()?;
                    rest = &rest[1..];
                }
                current.into_iter().chain(rest.iter().cloned()).collect()
            }
            Some("self") => current.into_iter().chain(rest[1..].iter().cloned()).collect(),
            Some(first) => {
                let mut child = current.clone();
                child.push(first.to_string());
                if !known.contains(&child) {
                    return None;
                }
                current.into_iter().chain(rest.iter().cloned()).collect()
            }
            None => return None,
        };
        let absolute = match absolute.first().and_then(|first| aliases.get(first)) {
            Some(target) => target.iter().chain(&absolute[1..]).cloned().collect(),
            None => absolute,
        };
        let target = (1..=absolute.len())
            .rev()
            .map(|n| absolute[..n].to_vec())
            .find(|prefix| known.contains(prefix));
        match target {
            Some(target) => Some(target),
            None if absolute.len() == 1 => macros.get(&absolute[0]).cloned(),
            None => None,
        }
    };
    let mut edges = Vec::new();
    let mut push = |to: Option<Module>, line: usize| {
        // The root only declares modules; an import of the module itself is no edge.
        if let Some(to) = to.filter(|to| !to.is_empty() && to != module) {
            edges.push(Edge { from: module.clone(), to, file: file.to_string(), line });
        }
    };
    // `use` items.
    let mut i = 0;
    let mut use_ranges = Vec::new();
    while i < tokens.len() {
        if tokens[i].text == "use" {
            let end = (i..tokens.len()).find(|&j| tokens[j].text == ";").unwrap_or(tokens.len());
            let mut paths = Vec::new();
            expand_use(&tokens[i + 1..end], Vec::new(), &mut paths);
            for (path, line) in paths {
                push(resolve(&path, &scopes[i]), line);
            }
            use_ranges.push((i, end));
            i = end;
        }
        i += 1;
    }
    // Paths in code: `a::b::c`, read from each identifier that starts one.
    let in_use = |i: usize| use_ranges.iter().any(|(s, e)| (*s..=*e).contains(&i));
    let mut i = 0;
    while i < tokens.len() {
        let starts = is_ident(&tokens[i].text)
            && tokens.get(i + 1).is_some_and(|t| t.text == "::" || t.text == "!")
            && (i == 0 || tokens[i - 1].text != "::")
            && !in_use(i);
        if !starts {
            i += 1;
            continue;
        }
        let mut path = vec![tokens[i].text.clone()];
        let mut j = i + 1;
        while j + 1 < tokens.len() && tokens[j].text == "::" && is_ident(&tokens[j + 1].text) {
            path.push(tokens[j + 1].text.clone());
            j += 2;
        }
        let is_macro = tokens.get(j).is_some_and(|t| t.text == "!");
        if path.len() > 1 || is_macro {
            push(resolve(&path, &scopes[i]), tokens[i].line);
        }
        i = j;
    }
    edges
}

/// The cycles among the modules: for each group of modules that reach each other, one
/// shortest way round (each step with the import that makes it) and, when the group is
/// larger than two, its members.
fn cycles(edges: &[Edge]) -> Vec<String> {
    let mut graph: BTreeMap<&Module, BTreeMap<&Module, &Edge>> = BTreeMap::new();
    for edge in edges {
        graph.entry(&edge.from).or_default().entry(&edge.to).or_insert(edge);
    }
    let nodes: BTreeSet<&Module> = edges.iter().flat_map(|e| [&e.from, &e.to]).collect();
    let reach = |start: &Module| -> BTreeSet<&Module> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start];
        while let Some(node) = stack.pop() {
            for next in graph.get(node).into_iter().flat_map(|n| n.keys()) {
                if seen.insert(*next) {
                    stack.push(next);
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&Module, BTreeSet<&Module>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut reported: BTreeSet<&Module> = BTreeSet::new();
    let mut out = Vec::new();
    for node in &nodes {
        if reported.contains(node) || !reachable[node].contains(node) {
            continue;
        }
        // The group: every module that reaches this one and is reached from it.
        let group: BTreeSet<&Module> =
            reachable[node].iter().filter(|m| reachable[*m].contains(node)).copied().collect();
        reported.extend(group.iter().copied());
        // A shortest way round, through the group only.
        let mut previous: BTreeMap<&Module, &Edge> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([*node]);
        let mut closing = None;
        while let Some(current) = queue.pop_front() {
            for (next, edge) in graph.get(current).into_iter().flatten() {
                if !group.contains(next) {
                    continue;
                }
                if next == node {
                    closing = Some(*edge);
                    queue.clear();
                    break;
                }
                if !previous.contains_key(next) {
                    previous.insert(next, edge);
                    queue.push_back(next);
                }
            }
        }
        let Some(mut edge) = closing else { continue };
        let mut steps = vec![edge];
        while edge.from != **node {
            edge = previous[&edge.from];
            steps.push(edge);
        }
        steps.reverse();
        let text: Vec<String> = steps
            .iter()
            .map(|e| {
                format!("`{}` -> `{}` ({}:{})", e.from.join("::"), e.to.join("::"), e.file, e.line)
            })
            .collect();
        let members: Vec<String> = group.iter().map(|m| format!("`{}`", m.join("::"))).collect();
        let among = match group.len() {
            2 => String::new(),
            n => format!(" ({n} modules reach each other: {}; one way round)", members.join(", ")),
        };
        out.push(format!("{}{among}", text.join(", ")));
    }
    out
}

/// This crate's `src/` directory.
pub fn source_dir() -> PathBuf {
    crate::sys::paths::root().join("xtask").join("src")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_of(files: &[(&str, &str)]) -> BTreeMap<String, String> {
        files.iter().map(|(path, text)| (path.to_string(), text.to_string())).collect()
    }

    #[test]
    fn this_crate_has_one_direction_of_dependency() {
        let problems = check_dir(&source_dir()).unwrap();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn a_cycle_through_a_parent_and_its_child_is_found_with_its_imports() {
        let files = crate_of(&[
            ("lib.rs", "pub mod services;\n"),
            (
                "services/mod.rs",
                "mod native;\npub fn up() { native::start(); }\npub struct Session;\n",
            ),
            ("services/native/mod.rs", "use super::Session;\npub fn start() {}\n"),
        ]);
        let problems = check(&files, &[]);
        assert_eq!(
            problems,
            [
                "module cycle: `services` -> `services::native` (services/mod.rs:2), `services::native` -> `services` (services/native/mod.rs:1)"
            ]
        );
    }

    #[test]
    fn an_import_from_a_higher_layer_is_named_with_its_line() {
        let files = crate_of(&[
            ("lib.rs", "pub mod sys;\npub mod services;\n"),
            ("sys/mod.rs", "pub mod host;\n"),
            (
                "sys/host.rs",
                "// crate::services::up() in a comment is no import\nfn f() {\n    let _ = \"crate::services\";\n    crate::services::up();\n}\n",
            ),
            ("services/mod.rs", "use crate::sys::host;\npub fn up() {}\n"),
        ]);
        assert_eq!(
            check(&files, &[]),
            [
                "sys/host.rs:4: `sys::host` (layer sys) imports `services` (layer services, above it)",
                "module cycle: `services` -> `sys::host` (services/mod.rs:1), `sys::host` -> `services` (sys/host.rs:4)"
            ]
        );
    }

    #[test]
    fn use_trees_macros_and_root_reexports_are_followed() {
        let files = crate_of(&[
            ("lib.rs", "pub mod sys;\npub mod cli;\npub mod lint;\npub use cli::Cli;\n"),
            ("sys/mod.rs", "pub mod error;\n"),
            (
                "sys/error.rs",
                "#[macro_export]\nmacro_rules! user_error { () => { $crate::sys::error::f() } }\npub fn f() {}\n",
            ),
            ("cli.rs", "use crate::{lint, sys::{self, error::f}};\npub struct Cli;\n"),
            ("lint.rs", "fn g() { crate::user_error!(); let _ = crate::Cli; }\n"),
        ]);
        // lint -> cli is upward; the macro leads to sys::error, which is below.
        assert_eq!(
            check(&files, &[])[0],
            "lint.rs:1: `lint` (layer tasks) imports `cli` (layer cli, above it)"
        );
        let edges = edges_of(
            &vec!["cli".to_string()],
            "cli.rs",
            &files["cli.rs"],
            &files.keys().filter_map(|f| module_of(f)).collect(),
            &exported_macros(&files),
            &root_aliases(&files["lib.rs"]),
        );
        let targets: Vec<String> = edges.iter().map(|e| e.to.join("::")).collect();
        assert_eq!(targets, ["lint", "sys", "sys::error"]);
    }

    #[test]
    fn tokens_skip_comments_strings_and_raw_strings() {
        let text = "a::b /* c::d */ \"e::f\" r#\"g::h\"# 'x' '\\n' 'life\n// i::j\nk::l";
        let words: Vec<(String, usize)> =
            tokens(text).into_iter().map(|t| (t.text, t.line)).collect();
        let expected = [("a", 1), ("::", 1), ("b", 1), ("k", 3), ("::", 3), ("l", 3)];
        let expected: Vec<(String, usize)> =
            expected.iter().map(|(t, l)| (t.to_string(), *l)).collect();
        // The lifetime-like `'life` leaves no token of its own.
        assert_eq!(words, expected);
    }
}
