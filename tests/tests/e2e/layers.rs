//! The orchestrator's modules form layers: no file imports, directly or through
//! others, a file that imports it back. The test reads every `.rs` file under
//! `orchestrator/src`, builds the file-level import graph and fails on any cycle
//! (a strongly connected component of more than one file, by Tarjan's algorithm),
//! naming the files and the imports that tie them, so that one can be cut.
//!
//! What is an edge, from file X to file Y:
//! - a path, in a `use` (grouped ones included) or inline in code, that starts with
//!   `crate::`, `self::`, `super::`, a child module declared in X (`mod child;` then
//!   `child::f()`), or, in `main.rs`, the library's name (`orchestrator::`), and
//!   names Y's module or an item in it. A path goes to the file of the longest
//!   module prefix it names that is a file: `crate::a::b::C` goes to `a/b.rs` (or
//!   `a/b/mod.rs`) when that file exists, else to `a.rs` (or `a/mod.rs`), else to
//!   the crate root. `self` and `super` are relative to the module the path is in:
//!   the file's (`a/b.rs` is `a::b`, `a/mod.rs` is `a`), plus inline `mod x { }`s.
//! - not: a `mod child;` declaration itself (the module tree is not an import),
//!   comments (doc links like [`crate::x`] included), string literals, and code under
//!   `#[cfg(test)]` (an item, a `use`, an inline `mod tests { }`, or a file declared
//!   `#[cfg(test)] mod x;`): tests may reach anywhere.
//!
//! `main.rs` is the binary's root: its `orchestrator::` paths go into the library.
//! It cannot be on a cycle, but its edges are in the graph.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

use crate::support::workspace;

/// The library's crate name, as `main.rs` spells it.
const LIBRARY: &str = "orchestrator";

#[test]
fn orchestrator_modules_have_no_import_cycles() {
    let src = workspace().join("orchestrator/src");
    let files = read_rs_files(&src);
    assert!(files.iter().any(|(path, _)| path == "lib.rs"), "no lib.rs under {}", src.display());
    let graph = ImportGraph::build(&files, LIBRARY);
    let cycles = graph.cycles();
    assert!(cycles.is_empty(), "{}", graph.report(&cycles, "orchestrator/src/"));
}

#[test]
fn import_cycle_checker_finds_cycles_and_only_cycles() {
    let cycles_of = |files: &[(&str, &str)]| {
        let files: Vec<(String, String)> = files.iter().map(|(p, s)| (p.to_string(), s.to_string())).collect();
        let graph = ImportGraph::build(&files, "fixture");
        let cycles = graph.cycles();
        let report = graph.report(&cycles, "");
        (cycles, report)
    };
    let lib = "pub mod a;\npub mod b;\npub mod x;\n";

    // A cycle: a uses crate::b, b uses crate::a::X.
    let (cycles, report) = cycles_of(&[
        ("lib.rs", lib),
        ("a.rs", "use crate::b;\npub struct X;\n"),
        ("b.rs", "pub fn f() -> crate::a::X { crate::a::X }\n"),
    ]);
    assert_eq!(cycles, vec![vec!["a.rs".to_string(), "b.rs".to_string()]], "{report}");
    assert!(report.contains("a.rs:1  use crate::b") && report.contains("b.rs:1  crate::a::X"), "{report}");

    // The back edge only in test code (a cfg(test) module, with tricky literals
    // before its end, a cfg(test) `use` line and a cfg(test) fn) and in comments:
    // no cycle.
    let (cycles, report) = cycles_of(&[
        ("lib.rs", lib),
        ("a.rs", "use crate::b;\npub struct X;\n"),
        (
            "b.rs",
            concat!(
                "//! Not [`crate::a`]: a doc link.\n",
                "/// Nor [`crate::a::X`] /* crate::a */.\n",
                "pub fn f() -> &'static str { \"crate::a::X {\" }\n",
                "#[cfg(test)]\n",
                "use crate::a::X;\n",
                "#[cfg(test)]\n",
                "fn helper<A, B>() where A: Copy, B: Copy { crate::a::X; }\n",
                "#[cfg(test)]\n",
                "mod tests {\n",
                "    use super::*;\n",
                "    use crate::a;\n",
                "    const OPEN: char = '{';\n",
                "    const RAW: &str = r#\"}\"# ;\n",
                "    /* } */ // }\n",
                "    fn g() { let _ = a::X; let _ = '\\''; }\n",
                "}\n",
                "pub fn after_tests() {}\n",
                "pub(in crate::a) fn visible_in_a() {}\n",
            ),
        ),
    ]);
    assert!(cycles.is_empty(), "{report}");

    // Code after the skipped test module still counts.
    let (cycles, report) = cycles_of(&[
        ("lib.rs", lib),
        ("a.rs", "use crate::b;\npub struct X;\n"),
        ("b.rs", "#[cfg(test)]\nmod tests { const C: char = '}'; }\npub fn f() { for _ in crate::a::all() {} }\n"),
    ]);
    assert_eq!(cycles.len(), 1, "{report}");

    // Grouped imports with `self` and nested groups; `super::` in a file module;
    // `x/mod.rs` is module x and its child's `super` is x; a mod.rs's edge to its
    // own child is an edge like any other.
    let files = [
        ("lib.rs", lib),
        ("a.rs", "use crate::{b::{self}, x::{self, y::Z}};\n"),
        ("b.rs", "pub fn f() {}\n"),
        ("x/mod.rs", "pub mod y;\npub use y::Z;\n"),
        ("x/y.rs", "use super::super::a;\npub struct Z;\n"),
    ];
    let owned: Vec<(String, String)> = files.iter().map(|(p, s)| (p.to_string(), s.to_string())).collect();
    let graph = ImportGraph::build(&owned, "fixture");
    let edges: BTreeSet<(String, String)> = graph.edges.keys().cloned().collect();
    let expected: BTreeSet<(String, String)> =
        [("a.rs", "b.rs"), ("a.rs", "x/mod.rs"), ("a.rs", "x/y.rs"), ("x/mod.rs", "x/y.rs"), ("x/y.rs", "a.rs")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
    assert_eq!(edges, expected);
    let cycles = graph.cycles();
    assert_eq!(cycles, vec![vec!["a.rs".to_string(), "x/mod.rs".to_string(), "x/y.rs".to_string()]]);

    // `main.rs` reaches the library by its name; a file declared `#[cfg(test)] mod t;`
    // is left out.
    let (cycles, report) = cycles_of(&[
        ("lib.rs", "pub mod a;\n#[cfg(test)]\nmod t;\n"),
        ("a.rs", "pub fn f() {}\n"),
        ("t.rs", "use crate::a;\n"),
        ("main.rs", "fn main() { fixture::a::f() }\n"),
    ]);
    assert!(cycles.is_empty(), "{report}");
    let graph = ImportGraph::build(
        &[("main.rs".to_string(), "fn main() { fixture::a::f() }\n".to_string()), ("a.rs".to_string(), String::new())],
        "fixture",
    );
    assert!(graph.edges.contains_key(&("main.rs".to_string(), "a.rs".to_string())));
}

/// Every `.rs` file under `dir`, as (path relative to `dir` with `/`, source).
fn read_rs_files(dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap_or_else(|e| panic!("{}: {e}", folder.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(dir).unwrap();
                let name = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>();
                let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                files.push((name.join("/"), source));
            }
        }
    }
    files.sort();
    files
}

/// The file-level import graph of one library crate (and its `main.rs`).
struct ImportGraph {
    files: Vec<String>,
    /// (from, to) -> every import making that edge, as (line, text).
    edges: BTreeMap<(String, String), Vec<(usize, String)>>,
}

impl ImportGraph {
    /// `files` are (path relative to `src/`, source); `library` is the crate's name.
    fn build(files: &[(String, String)], library: &str) -> ImportGraph {
        // Module path -> file, for the library's files (main.rs is the binary's root).
        let mut modules: BTreeMap<Vec<String>, String> = BTreeMap::new();
        for (path, _) in files {
            if let Some(module) = library_module(path) {
                modules.insert(module, path.clone());
            }
        }
        let mut scans = Vec::new();
        let mut test_only: Vec<Vec<String>> = Vec::new();
        for (path, source) in files {
            let is_bin = path == "main.rs";
            let module = if is_bin { Some(Vec::new()) } else { library_module(path) };
            let Some(module) = module else { continue };
            let scan = scan_file(&lex(source), &module, is_bin, library);
            if !is_bin {
                test_only.extend(scan.test_children.iter().map(|child| [module.clone(), vec![child.clone()]].concat()));
            }
            scans.push((path.clone(), is_bin, scan));
        }
        let excluded = |path: &str| {
            library_module(path).is_some_and(|m| path != "main.rs" && test_only.iter().any(|t| m.starts_with(t)))
        };
        let mut graph = ImportGraph { files: Vec::new(), edges: BTreeMap::new() };
        for (path, is_bin, scan) in scans {
            if excluded(&path) {
                continue;
            }
            graph.files.push(path.clone());
            for reference in scan.references {
                // Paths within the binary crate stay in main.rs: no edge.
                if is_bin && !reference.into_library {
                    continue;
                }
                let target = (0..=reference.module.len()).rev().find_map(|k| modules.get(&reference.module[..k]));
                let Some(target) = target else { continue };
                if *target == path || excluded(target) {
                    continue;
                }
                let uses = graph.edges.entry((path.clone(), target.clone())).or_default();
                if !uses.contains(&(reference.line, reference.text.clone())) {
                    uses.push((reference.line, reference.text));
                }
            }
        }
        graph.files.sort();
        graph
    }

    /// The strongly connected components of more than one file, each sorted, by
    /// Tarjan's algorithm.
    fn cycles(&self) -> Vec<Vec<String>> {
        struct Tarjan<'g> {
            successors: Vec<Vec<usize>>,
            names: &'g [String],
            index: Vec<Option<usize>>,
            low: Vec<usize>,
            on_stack: Vec<bool>,
            stack: Vec<usize>,
            next: usize,
            components: Vec<Vec<String>>,
        }
        impl Tarjan<'_> {
            fn visit(&mut self, v: usize) {
                self.index[v] = Some(self.next);
                self.low[v] = self.next;
                self.next += 1;
                self.stack.push(v);
                self.on_stack[v] = true;
                for w in self.successors[v].clone() {
                    match self.index[w] {
                        None => {
                            self.visit(w);
                            self.low[v] = self.low[v].min(self.low[w]);
                        }
                        Some(index) if self.on_stack[w] => self.low[v] = self.low[v].min(index),
                        Some(_) => {}
                    }
                }
                if Some(self.low[v]) == self.index[v] {
                    let mut component = Vec::new();
                    loop {
                        let w = self.stack.pop().unwrap();
                        self.on_stack[w] = false;
                        component.push(self.names[w].clone());
                        if w == v {
                            break;
                        }
                    }
                    if component.len() > 1 {
                        component.sort();
                        self.components.push(component);
                    }
                }
            }
        }
        let position: BTreeMap<&String, usize> = self.files.iter().enumerate().map(|(i, f)| (f, i)).collect();
        let mut successors = vec![Vec::new(); self.files.len()];
        for (from, to) in self.edges.keys() {
            if let (Some(&f), Some(&t)) = (position.get(from), position.get(to)) {
                successors[f].push(t);
            }
        }
        let n = self.files.len();
        let mut tarjan = Tarjan {
            successors,
            names: &self.files,
            index: vec![None; n],
            low: vec![0; n],
            on_stack: vec![false; n],
            stack: Vec::new(),
            next: 0,
            components: Vec::new(),
        };
        for v in 0..n {
            if tarjan.index[v].is_none() {
                tarjan.visit(v);
            }
        }
        tarjan.components.sort();
        tarjan.components
    }

    /// A shortest cycle through the component's first file, within the component.
    fn example_cycle(&self, component: &[String]) -> Vec<String> {
        let members: BTreeSet<&String> = component.iter().collect();
        let start = &component[0];
        let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(file) = queue.pop_front() {
            for (from, to) in self.edges.keys().filter(|(from, _)| from == file) {
                if !members.contains(to) {
                    continue;
                }
                if to == start {
                    let mut path = vec![start.clone()];
                    let mut at = from;
                    while at != start {
                        path.push(at.clone());
                        at = came_from[at];
                    }
                    path.push(start.clone());
                    path.reverse();
                    return path;
                }
                if !came_from.contains_key(to) {
                    came_from.insert(to, from);
                    queue.push_back(to);
                }
            }
        }
        Vec::new()
    }

    fn report(&self, cycles: &[Vec<String>], prefix: &str) -> String {
        let mut out = format!(
            "{} import cycle(s) among the files of {prefix}: each lists its files, then every import \
             between them (file:line and the path); cut edges until no cycle is left.\n",
            cycles.len()
        );
        for (i, component) in cycles.iter().enumerate() {
            out += &format!("\ncycle {} ({} files):\n", i + 1, component.len());
            for file in component {
                out += &format!("    {prefix}{file}\n");
            }
            let example = self.example_cycle(component);
            out += &format!(
                "  e.g. {}\n  imports inside it:\n",
                example.iter().map(|f| format!("{prefix}{f}")).collect::<Vec<_>>().join(" -> ")
            );
            for ((from, to), uses) in &self.edges {
                if !component.contains(from) || !component.contains(to) {
                    continue;
                }
                out += &format!("    {prefix}{from} -> {prefix}{to}\n");
                let mut by_line: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
                for (line, text) in uses {
                    by_line.entry(*line).or_default().push(text);
                }
                for (line, texts) in by_line {
                    out += &format!("        {prefix}{from}:{line}  {}\n", merge_uses(&texts));
                }
            }
        }
        out
    }
}

/// One line's paths, as one text: the leaves of a grouped `use` under their common
/// prefix again (`use super::{A, B}`), other paths side by side.
fn merge_uses(texts: &[&str]) -> String {
    if texts.len() == 1 || !texts.iter().all(|t| t.starts_with("use ")) {
        return texts.join(", ");
    }
    let split: Vec<Vec<&str>> = texts.iter().map(|t| t["use ".len()..].split("::").collect()).collect();
    let shortest = split.iter().map(Vec::len).min().unwrap_or(0);
    let common = (0..shortest.saturating_sub(1)).take_while(|&k| split.iter().all(|s| s[k] == split[0][k])).count();
    let leaves: Vec<String> = split.iter().map(|s| s[common..].join("::")).collect();
    format!("use {}::{{{}}}", split[0][..common].join("::"), leaves.join(", "))
}

/// The library module a file under `src/` defines: `lib.rs` is the root, `a/b.rs`
/// and `a/b/mod.rs` are `a::b`. None for `main.rs` and `bin/`.
fn library_module(path: &str) -> Option<Vec<String>> {
    if path == "main.rs" || path.starts_with("bin/") {
        return None;
    }
    if path == "lib.rs" {
        return Some(Vec::new());
    }
    let stem = path.strip_suffix("/mod.rs").or_else(|| path.strip_suffix(".rs"))?;
    Some(stem.split('/').map(str::to_string).collect())
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
    /// Any literal (string, char, number) or lifetime: never a path.
    Literal,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

/// Rust source to tokens, without comments; literals (raw strings, byte strings, char
/// literals such as `'{'`) are opaque, so braces inside them do not count.
fn lex(source: &str) -> Vec<Token> {
    let s: Vec<char> = source.chars().collect();
    let n = s.len();
    let at = |i: usize| s.get(i).copied().unwrap_or('\0');
    let is_ident_start = |c: char| c == '_' || c.is_alphabetic();
    let is_ident = |c: char| c == '_' || c.is_alphanumeric();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Skips a quoted string starting at the opening quote; returns the index past it.
    let skip_string = |mut i: usize, line: &mut usize| {
        i += 1;
        while i < n && s[i] != '"' {
            if s[i] == '\\' {
                i += 1;
            }
            if at(i) == '\n' {
                *line += 1;
            }
            i += 1;
        }
        i + 1
    };
    while i < n {
        let c = s[i];
        let start_line = line;
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < n && s[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 1;
            i += 2;
            while i < n && depth > 0 {
                if s[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if s[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                } else {
                    if s[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if c == '"' {
            i = skip_string(i, &mut line);
            tokens.push(Token { tok: Tok::Literal, line: start_line });
        } else if c == '\'' {
            if at(i + 1) == '\\' {
                // An escaped char literal: '\n', '\'', '\u{7f}'.
                i += 3;
                while i < n && s[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                // A lifetime or a label.
                i += 1;
                while i < n && is_ident(s[i]) {
                    i += 1;
                }
            }
            tokens.push(Token { tok: Tok::Literal, line: start_line });
        } else if c.is_ascii_digit() {
            while i < n && (is_ident(s[i]) || (s[i] == '.' && at(i + 1).is_ascii_digit())) {
                i += 1;
            }
            tokens.push(Token { tok: Tok::Literal, line: start_line });
        } else if is_ident_start(c) {
            let begin = i;
            while i < n && is_ident(s[i]) {
                i += 1;
            }
            let word: String = s[begin..i].iter().collect();
            let next = at(i);
            if matches!(word.as_str(), "r" | "br" | "cr") && (next == '"' || next == '#') {
                let mut hashes = 0;
                while at(i + hashes) == '#' {
                    hashes += 1;
                }
                if at(i + hashes) == '"' {
                    // A raw string: ends at `"` and as many `#`s.
                    i += hashes + 1;
                    while i < n && !(s[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#')) {
                        if s[i] == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                    i += hashes + 1;
                    tokens.push(Token { tok: Tok::Literal, line: start_line });
                } else if word == "r" && hashes == 1 && is_ident_start(at(i + 1)) {
                    // A raw identifier: r#type.
                    i += 1;
                    let begin = i;
                    while i < n && is_ident(s[i]) {
                        i += 1;
                    }
                    tokens.push(Token { tok: Tok::Ident(s[begin..i].iter().collect()), line: start_line });
                } else {
                    tokens.push(Token { tok: Tok::Ident(word), line: start_line });
                }
            } else if matches!(word.as_str(), "b" | "c") && next == '"' {
                i = skip_string(i, &mut line);
                tokens.push(Token { tok: Tok::Literal, line: start_line });
            } else if word == "b" && next == '\'' {
                i += if at(i + 1) == '\\' { 2 } else { 1 };
                i += 1;
                while i < n && s[i] != '\'' {
                    i += 1;
                }
                i += 1;
                tokens.push(Token { tok: Tok::Literal, line: start_line });
            } else {
                tokens.push(Token { tok: Tok::Ident(word), line: start_line });
            }
        } else if c == ':' && at(i + 1) == ':' {
            tokens.push(Token { tok: Tok::PathSep, line: start_line });
            i += 2;
        } else {
            tokens.push(Token { tok: Tok::Punct(c), line: start_line });
            i += 1;
        }
    }
    tokens
}

/// A path naming something in a crate, from one file.
#[derive(Debug)]
struct Reference {
    line: usize,
    /// The absolute module path named (items included: resolution trims them).
    module: Vec<String>,
    /// In main.rs: the path goes into the library (`orchestrator::`), not the binary.
    into_library: bool,
    /// The path as written, for the report (`use crate::a::b`, `crate::a::f`).
    text: String,
}

#[derive(Debug, Default)]
struct Scan {
    references: Vec<Reference>,
    /// `#[cfg(test)] mod x;` declared at the file's top level.
    test_children: Vec<String>,
}

fn ident(tokens: &[Token], i: usize) -> Option<&str> {
    match tokens.get(i).map(|t| &t.tok) {
        Some(Tok::Ident(word)) => Some(word),
        _ => None,
    }
}

fn is(tokens: &[Token], i: usize, tok: &Tok) -> bool {
    tokens.get(i).is_some_and(|t| t.tok == *tok)
}

fn punct(tokens: &[Token], i: usize, c: char) -> bool {
    is(tokens, i, &Tok::Punct(c))
}

/// Past the attribute starting at `#` (outer `#[..]` or inner `#![..]`), and whether
/// it is a `#[cfg(..)]` that needs `test` (and says no `not`).
fn attribute(tokens: &[Token], mut i: usize) -> (usize, bool) {
    i += 1;
    if punct(tokens, i, '!') {
        i += 1;
    }
    if !punct(tokens, i, '[') {
        return (i, false);
    }
    let begin = i + 1;
    let mut depth = 0;
    while i < tokens.len() {
        match tokens[i].tok {
            Tok::Punct('[') => depth += 1,
            Tok::Punct(']') => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
        i += 1;
    }
    let inside = &tokens[begin..i.min(tokens.len())];
    let has = |word: &str| inside.iter().any(|t| t.tok == Tok::Ident(word.to_string()));
    let cfg_test = ident(inside, 0) == Some("cfg") && has("test") && !has("not");
    (i + 1, cfg_test)
}

/// Keywords that begin an item or statement, whose own commas (generics, where
/// clauses) do not end it.
const ITEM_KEYWORDS: &[&str] = &[
    "fn",
    "impl",
    "mod",
    "use",
    "struct",
    "enum",
    "union",
    "trait",
    "const",
    "static",
    "type",
    "let",
    "extern",
    "unsafe",
    "async",
    "macro_rules",
    "pub",
];

/// Past the item (or field, variant, statement, match arm) starting at `i`, after
/// its attributes; and the module's name when it is `mod name;`.
fn skip_item(tokens: &[Token], mut i: usize) -> (usize, Option<String>) {
    while punct(tokens, i, '#') {
        i = attribute(tokens, i).0;
    }
    let mut first = i;
    if ident(tokens, first) == Some("pub") {
        first += 1;
        if punct(tokens, first, '(') {
            while first < tokens.len() && !punct(tokens, first, ')') {
                first += 1;
            }
            first += 1;
        }
    }
    let item_like = ident(tokens, i).is_some_and(|w| ITEM_KEYWORDS.contains(&w))
        && (ident(tokens, i) != Some("pub") || ident(tokens, first).is_some_and(|w| ITEM_KEYWORDS.contains(&w)));
    let declared_mod = match (ident(tokens, first), ident(tokens, first + 1)) {
        (Some("mod"), Some(name)) if punct(tokens, first + 2, ';') => Some(name.to_string()),
        _ => None,
    };
    let mut depth = 0usize;
    while i < tokens.len() {
        match tokens[i].tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(close @ (')' | ']' | '}')) => {
                if depth == 0 {
                    // The enclosing block's end: not ours.
                    return (i, declared_mod);
                }
                depth -= 1;
                if depth == 0 && close == '}' {
                    i += 1;
                    if punct(tokens, i, ';') {
                        i += 1;
                    }
                    return (i, declared_mod);
                }
            }
            Tok::Punct(';') if depth == 0 => return (i + 1, declared_mod),
            Tok::Punct(',') if depth == 0 && !item_like => return (i + 1, declared_mod),
            _ => {}
        }
        i += 1;
    }
    (i, declared_mod)
}

/// Expands the use tree at `i` under `prefix` into `out` as (segments, glob, line);
/// returns the index past it.
fn use_tree(tokens: &[Token], mut i: usize, prefix: Vec<String>, out: &mut Vec<(Vec<String>, bool, usize)>) -> usize {
    if is(tokens, i, &Tok::PathSep) {
        i += 1;
    }
    if punct(tokens, i, '{') {
        i += 1;
        while i < tokens.len() && !punct(tokens, i, '}') {
            let before = i;
            i = use_tree(tokens, i, prefix.clone(), out);
            if punct(tokens, i, ',') {
                i += 1;
            }
            if i == before {
                i += 1;
            }
        }
        return i + 1;
    }
    if punct(tokens, i, '*') {
        out.push((prefix, true, tokens[i].line));
        return i + 1;
    }
    let mut path = prefix;
    let mut line = tokens.get(i).map_or(0, |t| t.line);
    while let Some(word) = ident(tokens, i) {
        path.push(word.to_string());
        line = tokens[i].line;
        i += 1;
        if !is(tokens, i, &Tok::PathSep) {
            break;
        }
        i += 1;
        if punct(tokens, i, '{') || punct(tokens, i, '*') {
            return use_tree(tokens, i, path, out);
        }
    }
    if ident(tokens, i) == Some("as") {
        i += 2;
    }
    if !path.is_empty() {
        out.push((path, false, line));
    }
    i
}

/// The references of one file, whose module is `module`.
fn scan_file(tokens: &[Token], module: &[String], is_bin: bool, library: &str) -> Scan {
    // The file's own child modules (`mod x;` or `mod x { }` at its top level), which
    // its paths may start with.
    let mut children = BTreeSet::new();
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate() {
        match token.tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => depth = depth.saturating_sub(1),
            Tok::Ident(ref w) if depth == 0 && w == "mod" => {
                if let Some(name) = ident(tokens, i + 1) {
                    children.insert(name.to_string());
                }
            }
            _ => {}
        }
    }

    let mut scan = Scan::default();
    // Inline modules open here: (name, brace depth outside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    // Resolves a path's segments to an absolute module path.
    let resolve = |segments: &[String], inline: &[(String, usize)]| -> Option<(Vec<String>, bool)> {
        let here: Vec<String> = module.iter().cloned().chain(inline.iter().map(|(name, _)| name.clone())).collect();
        let first = segments.first()?.as_str();
        let (base, rest, into_library) = match first {
            "crate" | "$crate" => (Vec::new(), &segments[1..], false),
            "self" => (here, &segments[1..], false),
            "super" => {
                let supers = segments.iter().take_while(|s| *s == "super").count();
                let base = here.get(..here.len().checked_sub(supers)?)?.to_vec();
                (base, &segments[supers..], false)
            }
            name if is_bin && name == library => (Vec::new(), &segments[1..], true),
            name if inline.is_empty() && children.contains(name) => (here, segments, false),
            _ => return None,
        };
        let absolute = base.into_iter().chain(rest.iter().filter(|s| *s != "self").cloned()).collect();
        Some((absolute, into_library))
    };
    while i < tokens.len() {
        match &tokens[i].tok {
            Tok::Punct('#') => {
                let inner = punct(tokens, i + 1, '!');
                let (end, cfg_test) = attribute(tokens, i);
                i = end;
                if cfg_test && inner {
                    // The rest of the enclosing module or block is test code.
                    let mut d = 0usize;
                    while i < tokens.len() {
                        match tokens[i].tok {
                            Tok::Punct('{') => d += 1,
                            Tok::Punct('}') if d == 0 => break,
                            Tok::Punct('}') => d -= 1,
                            _ => {}
                        }
                        i += 1;
                    }
                } else if cfg_test {
                    let (end, declared_mod) = skip_item(tokens, i);
                    if let Some(name) = declared_mod.filter(|_| inline.is_empty() && depth == 0) {
                        scan.test_children.push(name);
                    }
                    i = end;
                }
                continue;
            }
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, outside)| *outside == depth) {
                    inline.pop();
                }
            }
            Tok::Ident(w) if w == "mod" => {
                if let Some(name) = ident(tokens, i + 1)
                    && punct(tokens, i + 2, '{')
                {
                    inline.push((name.to_string(), depth));
                    depth += 1;
                    i += 3;
                    continue;
                }
            }
            Tok::Ident(w) if w == "use" => {
                let mut paths = Vec::new();
                i = use_tree(tokens, i + 1, Vec::new(), &mut paths);
                while i < tokens.len() && !punct(tokens, i, ';') {
                    i += 1;
                }
                for (segments, glob, line) in paths {
                    if let Some((absolute, into_library)) = resolve(&segments, &inline) {
                        let mut text = segments.join("::");
                        if segments.len() > 1 && segments.last().is_some_and(|s| s == "self") {
                            text = format!("{}::{{self}}", segments[..segments.len() - 1].join("::"));
                        }
                        if glob {
                            text += "::*";
                        }
                        let text = format!("use {text}");
                        scan.references.push(Reference { line, module: absolute, into_library, text });
                    }
                }
            }
            Tok::Ident(first) if is(tokens, i + 1, &Tok::PathSep) => {
                // Not the tail of a longer path or a field, nor a visibility (`pub(in crate::a)`).
                let visibility = i > 2
                    && ident(tokens, i - 1) == Some("in")
                    && punct(tokens, i - 2, '(')
                    && ident(tokens, i - 3) == Some("pub");
                let not_a_path_start =
                    i > 0 && (is(tokens, i - 1, &Tok::PathSep) || punct(tokens, i - 1, '.') || visibility);
                let dollar = i > 0 && punct(tokens, i - 1, '$');
                if !not_a_path_start {
                    let line = tokens[i].line;
                    let mut segments =
                        vec![if dollar && first == "crate" { "$crate".to_string() } else { first.clone() }];
                    let mut j = i + 1;
                    while is(tokens, j, &Tok::PathSep) {
                        let Some(word) = ident(tokens, j + 1) else { break };
                        segments.push(word.to_string());
                        j += 2;
                    }
                    if let Some((absolute, into_library)) = resolve(&segments, &inline) {
                        let text = segments.join("::");
                        scan.references.push(Reference { line, module: absolute, into_library, text });
                    }
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    scan
}
