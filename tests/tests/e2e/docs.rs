//! Every relative link in `README.md` and `docs/**/*.md` leads somewhere: the file
//! or folder it names exists, relative to the Markdown file (`/…` relative to the
//! workspace). Inline links and images (`[text](target)`, `![alt](target)`) and
//! reference definitions (`[label]: target`) are checked; absolute URLs (`scheme:`),
//! pure anchors (`#…`), and anything in fenced code blocks or inline code spans are
//! not. An anchor after a path (`file.md#part`) is dropped: the file must exist.

use crate::support::workspace;

#[test]
fn relative_links_in_readme_and_docs_resolve() {
    let root = workspace();
    let mut files = vec![root.join("README.md")];
    let mut pending = vec![root.join("docs")];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap_or_else(|e| panic!("{}: {e}", folder.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (line, target) in relative_links(&text) {
            checked += 1;
            let path = if let Some(from_root) = target.strip_prefix('/') {
                root.join(from_root)
            } else {
                file.parent().unwrap().join(&target)
            };
            if !path.exists() {
                let shown = file.strip_prefix(&root).unwrap_or(file);
                broken.push(format!("{}:{line} -> {target}", shown.display()));
            }
        }
    }
    assert!(checked > 0, "no relative links found in {} Markdown files: is the parser broken?", files.len());
    assert!(
        broken.is_empty(),
        "{} broken relative link(s) (file:line -> target, relative to the file):\n  {}",
        broken.len(),
        broken.join("\n  ")
    );
}

#[test]
fn the_link_checker_finds_links_and_skips_code_urls_and_anchors() {
    let text = concat!(
        "See [the runbook](docs/runbook.md#local-kind) and ![a picture](docs/page.png \"title\").\n",
        "A [site](https://example.com), [mail](mailto:a@b.c), [an anchor](#api), `[code](no.md)`.\n",
        "``[`x`](no2.md)`` and [a link with `code`](yes.md) and [angle](<with space.md>).\n",
        "```sh\n",
        "[fenced](no3.md)\n",
        "```\n",
        "~~~\n",
        "[tilde fenced](no4.md)\n",
        "~~~\n",
        "[ref]: ../elsewhere/ \"title\"\n",
        "[web]: https://example.com\n",
        "[nested [brackets]](a(b).md) [multi-line\n",
        "text](second.md) and [encoded](my%20file.md)\n",
    );
    let links: Vec<(usize, String)> = relative_links(text);
    let expected = [
        (1, "docs/runbook.md"),
        (1, "docs/page.png"),
        (3, "yes.md"),
        (3, "with space.md"),
        (10, "../elsewhere/"),
        (12, "a(b).md"),
        (13, "second.md"),
        (13, "my file.md"),
    ];
    let expected: Vec<(usize, String)> = expected.iter().map(|(l, t)| (*l, t.to_string())).collect();
    assert_eq!(links, expected);
}

/// The relative link targets of a Markdown text, as (line, target without anchor or
/// query, percent-decoded), in order.
fn relative_links(text: &str) -> Vec<(usize, String)> {
    let mut links = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = raw.trim_start();
        let run = |c: char| trimmed.chars().take_while(|&x| x == c).count();
        match fence {
            Some((c, length)) => {
                if run(c) >= length && trimmed.trim_start_matches(c).trim().is_empty() {
                    fence = None;
                }
                continue;
            }
            None => {
                if let Some(c) = ['`', '~'].into_iter().find(|&c| run(c) >= 3) {
                    fence = Some((c, run(c)));
                    continue;
                }
            }
        }
        let line = without_code_spans(raw);
        // A reference definition: `[label]: target`.
        let definition = line.trim_start();
        if let Some(rest) = definition.strip_prefix('[').filter(|_| raw.len() - raw.trim_start().len() < 4)
            && let Some(end) = rest.find("]:")
            && !rest[..end].starts_with('^')
        {
            let target = rest[end + 2..].split_whitespace().next().unwrap_or("");
            if let Some(target) = relative(target.trim_start_matches('<').trim_end_matches('>')) {
                links.push((number, target));
            }
            continue;
        }
        // Inline links and images: `](target)`, the target with balanced parentheses.
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i + 1 < chars.len() {
            if chars[i] == ']' && chars[i + 1] == '(' {
                let begin = i + 2;
                let mut j = begin;
                let target: String = if chars.get(j) == Some(&'<') {
                    while j < chars.len() && chars[j] != '>' {
                        j += 1;
                    }
                    chars[begin + 1..j.min(chars.len())].iter().collect()
                } else {
                    let mut depth = 0;
                    while j < chars.len() && !chars[j].is_whitespace() {
                        match chars[j] {
                            '(' => depth += 1,
                            ')' if depth == 0 => break,
                            ')' => depth -= 1,
                            _ => {}
                        }
                        j += 1;
                    }
                    chars[begin..j].iter().collect()
                };
                if let Some(target) = relative(&target) {
                    links.push((number, target));
                }
                i = j;
            }
            i += 1;
        }
    }
    links
}

/// The line with its inline code spans (a run of backticks to the next run of the
/// same length) blanked out.
fn without_code_spans(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let length = chars[i..].iter().take_while(|&&c| c == '`').count();
        let mut j = i + length;
        let mut close = None;
        while j < chars.len() {
            let run = chars[j..].iter().take_while(|&&c| c == '`').count();
            if run == length {
                close = Some(j);
                break;
            }
            j += run.max(1);
        }
        match close {
            Some(j) => {
                out.extend(std::iter::repeat_n(' ', j + length - i));
                i = j + length;
            }
            None => {
                // No closing run: the backticks are literal text.
                out.extend(std::iter::repeat_n('`', length));
                i += length;
            }
        }
    }
    out
}

/// The path part of a link target, if it is a relative (or root-relative) path: not
/// empty, not an anchor, not a URL with a scheme.
fn relative(target: &str) -> Option<String> {
    let target = target.trim();
    if target.is_empty() || target.starts_with('#') || target.starts_with("//") {
        return None;
    }
    let scheme = target.split_once(':').is_some_and(|(scheme, _)| {
        scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if scheme {
        return None;
    }
    let path = target.split(['#', '?']).next().unwrap_or("");
    if path.is_empty() {
        return None;
    }
    Some(percent_decoded(path))
}

fn percent_decoded(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((high * 16 + low) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
