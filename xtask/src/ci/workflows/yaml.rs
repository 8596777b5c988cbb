//! A reader for the block-style YAML subset the workflow files are written in: block
//! mappings and sequences, one-line flow sequences (`[a, b]`), plain and quoted
//! scalars, folded and literal block scalars (`>-`, `|`), comments. Anything outside it
//! (anchors, tags, flow mappings, tabs, duplicate keys) is an error naming the line, so
//! a rule never passes on a file it misread. GitHub's own schema check
//! (`check-jsonschema` in `cargo xtask lint`) covers what this reader does not look at.
//!
//! Hand-written because the rules run in `cargo xtask lint`, whose cold build has a
//! budget a YAML crate would spend; the files it reads are this repository's own.

/// A value with the (1-based) line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Scalar(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    /// The value under `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value at `path` of nested mappings.
    pub fn at(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |node, key| node.get(key))
    }

    pub fn str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(text) => Some(text),
            _ => None,
        }
    }

    /// The entries of a mapping (none for anything else).
    pub fn entries(&self) -> &[(String, Node)] {
        match &self.value {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    /// The items of a sequence; a scalar is a sequence of one (`needs: build`).
    pub fn items(&self) -> Vec<&Node> {
        match &self.value {
            Value::Seq(items) => items.iter().collect(),
            Value::Scalar(text) if !text.is_empty() => vec![self],
            _ => Vec::new(),
        }
    }
}

/// One meaningful line: its number, its indentation and its text without the comment.
#[derive(Debug, Clone)]
struct Line {
    number: usize,
    indent: usize,
    text: String,
}

/// Parses a whole file; the root is a mapping.
pub fn parse(text: &str) -> Result<Node, String> {
    let raw: Vec<&str> = text.lines().collect();
    let mut parser = Parser { raw: &raw, lines: Vec::new(), pos: 0 };
    parser.lines = lines(&raw)?;
    let Some(first) = parser.lines.first() else {
        return Ok(Node { line: 1, value: Value::Map(Vec::new()) });
    };
    if first.indent != 0 {
        return Err(format!("line {}: the document must start at column 1", first.number));
    }
    let root = parser.block(0)?;
    if let Some(line) = parser.lines.get(parser.pos) {
        return Err(format!("line {}: unexpected indentation", line.number));
    }
    Ok(root)
}

/// The lines that carry content, comments removed. Block scalars' lines are kept as
/// they are by the parser, which reads them from `raw`.
fn lines(raw: &[&str]) -> Result<Vec<Line>, String> {
    let mut out = Vec::new();
    for (i, line) in raw.iter().enumerate() {
        let body = line.trim_start_matches(' ');
        if body.starts_with('\t') {
            return Err(format!("line {}: a tab in the indentation", i + 1));
        }
        let text = strip_comment(body).trim_end().to_string();
        if text.is_empty() || text == "---" {
            continue;
        }
        out.push(Line { number: i + 1, indent: line.len() - body.len(), text });
    }
    Ok(out)
}

/// `text` before a comment: a `#` at the start or after a space, outside quotes.
fn strip_comment(text: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match quote {
            // `''` inside single quotes is a quote, not the end.
            Some('\'') if c == '\'' && chars.peek().is_some_and(|(_, n)| *n == '\'') => {
                chars.next();
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '#' && previous == ' ' => return &text[..i],
            // A quote opens a quoted scalar only where a scalar starts.
            None if (c == '\'' || c == '"') && matches!(previous, ' ' | '[' | ',') => {
                quote = Some(c)
            }
            None => {}
        }
        previous = c;
    }
    text
}

struct Parser<'r> {
    raw: &'r [&'r str],
    lines: Vec<Line>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Line> {
        self.lines.get(self.pos)
    }

    /// The block (mapping or sequence) whose lines start at column `indent`.
    fn block(&mut self, indent: usize) -> Result<Node, String> {
        let line = self.peek().expect("block called at a line").clone();
        if line.text == "-" || line.text.starts_with("- ") {
            self.sequence(indent)
        } else {
            self.mapping(indent)
        }
    }

    fn mapping(&mut self, indent: usize) -> Result<Node, String> {
        let start = self.peek().map_or(0, |l| l.number);
        let mut entries: Vec<(String, Node)> = Vec::new();
        while let Some(line) = self.peek().cloned() {
            if line.indent < indent || line.text.starts_with("- ") || line.text == "-" {
                break;
            }
            if line.indent > indent {
                return Err(format!("line {}: unexpected indentation", line.number));
            }
            let Some((key, rest)) = split_key(&line.text) else {
                return Err(format!(
                    "line {}: expected `key: value`, found `{}`",
                    line.number, line.text
                ));
            };
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(format!("line {}: duplicate key `{key}`", line.number));
            }
            self.pos += 1;
            let value = self.value_after(&line, indent, rest)?;
            entries.push((key, value));
        }
        Ok(Node { line: start, value: Value::Map(entries) })
    }

    fn sequence(&mut self, indent: usize) -> Result<Node, String> {
        let start = self.peek().map_or(0, |l| l.number);
        let mut items = Vec::new();
        while let Some(line) = self.peek().cloned() {
            if line.indent != indent || !(line.text == "-" || line.text.starts_with("- ")) {
                if line.indent > indent {
                    return Err(format!("line {}: unexpected indentation", line.number));
                }
                break;
            }
            let rest = line.text[1..].trim_start();
            let item_indent = indent + (line.text.len() - rest.len());
            if rest.is_empty() {
                self.pos += 1;
                items.push(self.nested(&line, indent)?);
            } else if split_key(rest).is_some() {
                // `- key: value`: a mapping whose first entry sits on the dash's line.
                self.lines[self.pos].indent = item_indent;
                self.lines[self.pos].text = rest.to_string();
                items.push(self.mapping(item_indent)?);
            } else {
                self.pos += 1;
                items.push(self.value_after(&line, indent, rest)?);
            }
        }
        Ok(Node { line: start, value: Value::Seq(items) })
    }

    /// The value that follows `key:` (or `- `) on `line`: inline, a block scalar, or
    /// the nested block below.
    fn value_after(&mut self, line: &Line, indent: usize, rest: &str) -> Result<Node, String> {
        let at = |value| Ok(Node { line: line.number, value });
        if rest.is_empty() {
            return self.nested(line, indent);
        }
        if let Some(style) = rest.strip_prefix('|').or_else(|| rest.strip_prefix('>')) {
            if !matches!(style, "" | "-" | "+") {
                return Err(format!("line {}: unsupported block scalar `{rest}`", line.number));
            }
            return at(Value::Scalar(self.block_scalar(line, indent, rest.starts_with('>'))));
        }
        match rest.chars().next() {
            Some('&' | '*' | '!' | '{' | '%' | '@' | '`') => {
                Err(format!("line {}: unsupported YAML `{rest}`", line.number))
            }
            Some('[') => at(Value::Seq(flow_sequence(rest, line.number)?)),
            Some('"' | '\'') => at(Value::Scalar(quoted(rest, line.number)?)),
            _ => {
                // A plain scalar may go on over more-indented lines, folded with spaces.
                let mut text = rest.to_string();
                while let Some(next) = self.peek() {
                    if next.indent <= indent {
                        break;
                    }
                    text.push(' ');
                    text.push_str(next.text.trim());
                    self.pos += 1;
                }
                at(Value::Scalar(text))
            }
        }
    }

    /// The block below `line`, or an empty scalar when there is none (`key:` alone).
    fn nested(&mut self, line: &Line, indent: usize) -> Result<Node, String> {
        match self.peek() {
            Some(next) if next.indent > indent => {
                let child = next.indent;
                self.block(child)
            }
            // `key:` followed by `- item` at the key's own column is a sequence.
            Some(next)
                if next.indent == indent
                    && (next.text.starts_with("- ") || next.text == "-")
                    && !line.text.starts_with('-') =>
            {
                self.sequence(indent)
            }
            _ => Ok(Node { line: line.number, value: Value::Scalar(String::new()) }),
        }
    }

    /// The raw lines below `line` that are indented deeper (blank ones included):
    /// joined with newlines (`|`) or spaces (`>`).
    fn block_scalar(&mut self, line: &Line, indent: usize, folded: bool) -> String {
        let mut body: Vec<&str> = Vec::new();
        let mut number = line.number; // 1-based index of the line after `line`
        let mut width: Option<usize> = None;
        while let Some(raw) = self.raw.get(number) {
            let content = raw.trim_start_matches(' ');
            let this_indent = raw.len() - content.len();
            if !content.is_empty() && this_indent <= indent {
                break;
            }
            if content.is_empty() {
                body.push("");
            } else {
                let width = *width.get_or_insert(this_indent);
                body.push(&raw[width.min(this_indent)..]);
            }
            number += 1;
        }
        while self.peek().is_some_and(|l| l.number <= number) {
            self.pos += 1;
        }
        while body.last() == Some(&"") {
            body.pop();
        }
        if folded {
            body.iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
        } else {
            body.join("\n")
        }
    }
}

/// `key` and the rest of a `key: value` or `key:` line (outside quotes and `${{ }}`).
fn split_key(text: &str) -> Option<(String, &str)> {
    if text.starts_with(['"', '\'', '[', '{', '$']) {
        return None;
    }
    let colon = text.find(": ").or_else(|| text.strip_suffix(':').map(|t| t.len()))?;
    let key = &text[..colon];
    if key.is_empty() || key.contains(['#', '{', '}', '[', ']', '"', '\'']) {
        return None;
    }
    Some((key.trim().to_string(), text[colon + 1..].trim()))
}

fn quoted(text: &str, line: usize) -> Result<String, String> {
    let quote = text.chars().next().expect("quoted scalar starts with its quote");
    let mut out = String::new();
    let mut chars = text[1..].chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if quote == '\'' && chars.peek() == Some(&'\'') => {
                chars.next();
                out.push('\'');
            }
            '\\' if quote == '"' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => break,
            },
            c if c == quote => {
                let after: String = chars.collect();
                if !after.trim().is_empty() {
                    return Err(format!("line {line}: text after a quoted scalar: `{after}`"));
                }
                return Ok(out);
            }
            c => out.push(c),
        }
    }
    Err(format!("line {line}: unterminated quoted scalar `{text}`"))
}

/// `[a, "b", 1]` on one line.
fn flow_sequence(text: &str, line: usize) -> Result<Vec<Node>, String> {
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| format!("line {line}: a flow sequence must close on its line: `{text}`"))?;
    let mut items = Vec::new();
    let mut item = String::new();
    let mut quote: Option<char> = None;
    let mut push = |item: &mut String| -> Result<(), String> {
        let trimmed = item.trim();
        if !trimmed.is_empty() {
            let value = match trimmed.starts_with(['"', '\'']) {
                true => quoted(trimmed, line)?,
                false => trimmed.to_string(),
            };
            items.push(Node { line, value: Value::Scalar(value) });
        }
        item.clear();
        Ok(())
    };
    for c in inner.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, ',') => {
                push(&mut item)?;
                continue;
            }
            (None, '[' | '{') => {
                return Err(format!("line {line}: nested flow collections are not supported"));
            }
            _ => {}
        }
        item.push(c);
    }
    push(&mut item)?;
    Ok(items)
}

/// The text of line `number` (1-based) as written, comment included.
pub fn raw_line(text: &str, number: usize) -> &str {
    text.lines().nth(number.saturating_sub(1)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKFLOW: &str = r#"# A comment
name: CI

on:
  pull_request:
    types: [opened, "labeled"] # trailing comment
  schedule:
    - cron: "17 3 * * *"

jobs:
  build:
    name: Build once
    needs: mode
    if: >-
      !cancelled()
      && needs.mode.result == 'success'
    steps:
      - uses: actions/checkout@abc # v1.2.3
        with:
          fetch-depth: 0
      - run: cargo xtask lint
      -
        name: odd but valid
      - run: |
          echo one
          echo two
  other:
    needs:
    - build
    - mode
    env:
      QUOTED: 'it''s # not a comment'
"#;

    #[test]
    fn the_subset_parses_into_the_tree_github_reads() {
        let root = parse(WORKFLOW).unwrap();
        assert_eq!(root.at(&["name"]).unwrap().str(), Some("CI"));
        let types: Vec<_> = root
            .at(&["on", "pull_request", "types"])
            .unwrap()
            .items()
            .iter()
            .map(|n| n.str().unwrap().to_string())
            .collect();
        assert_eq!(types, ["opened", "labeled"]);
        let cron = root.at(&["on", "schedule"]).unwrap().items()[0].get("cron").unwrap();
        assert_eq!(cron.str(), Some("17 3 * * *"));
        let build = root.at(&["jobs", "build"]).unwrap();
        assert_eq!(build.get("needs").unwrap().items().len(), 1);
        assert_eq!(
            build.get("if").unwrap().str(),
            Some("!cancelled() && needs.mode.result == 'success'")
        );
        let steps = build.get("steps").unwrap().items();
        assert_eq!(steps.len(), 4);
        assert_eq!(steps[0].get("uses").unwrap().str(), Some("actions/checkout@abc"));
        assert_eq!(steps[0].get("uses").unwrap().line, 18);
        assert_eq!(steps[0].at(&["with", "fetch-depth"]).unwrap().str(), Some("0"));
        assert_eq!(steps[1].get("run").unwrap().str(), Some("cargo xtask lint"));
        assert_eq!(steps[2].get("name").unwrap().str(), Some("odd but valid"));
        assert_eq!(steps[3].get("run").unwrap().str(), Some("echo one\necho two"));
        let other = root.at(&["jobs", "other"]).unwrap();
        assert_eq!(other.get("needs").unwrap().items().len(), 2);
        assert_eq!(other.at(&["env", "QUOTED"]).unwrap().str(), Some("it's # not a comment"));
        assert_eq!(raw_line(WORKFLOW, 18).trim(), "- uses: actions/checkout@abc # v1.2.3");
    }

    #[test]
    fn what_it_does_not_read_is_an_error_with_its_line() {
        let err = |text: &str| parse(text).unwrap_err();
        assert!(
            err("a: 1\na: 2\n").starts_with("line 2: duplicate key `a`"),
            "{}",
            err("a: 1\na: 2\n")
        );
        assert!(err("a: &anchor 1\n").starts_with("line 1: unsupported YAML"));
        assert!(err("a: {b: 1}\n").starts_with("line 1: unsupported YAML"));
        assert!(err("a:\n\tb: 1\n").starts_with("line 2: a tab"));
        assert!(err("a: [1, 2\n").starts_with("line 1: a flow sequence must close"));
        assert!(err("a: 'x\n").starts_with("line 1: unterminated"));
        assert!(err("a:\n  b: 1\n c: 2\n").contains("unexpected indentation"));
        assert!(err("just text\n").starts_with("line 1: expected `key: value`"));
    }
}
