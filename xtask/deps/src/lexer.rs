//! A small Rust lexer: just enough to find crate references without a full parser.
//! It skips whitespace, comments, numbers, char literals and lifetimes; it keeps
//! identifiers, punctuation, string contents (attributes like `with = "foo::bar"` name
//! crates) and doc comments (their code blocks are doc tests).

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok<'a> {
    /// An identifier or keyword; raw identifiers (`r#type`) lose their prefix.
    Ident(&'a str),
    /// Punctuation: `::` is one token, everything else is a single character.
    Punct(&'a str),
    /// The text between the quotes of a string literal (raw or not), escapes untouched.
    Str(&'a str),
    /// The text of one doc comment (`///`, `//!`, `/** */`, `/*! */`) without its marker.
    Doc(&'a str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token<'a> {
    pub tok: Tok<'a>,
    /// 1-based line of the token's first character.
    pub line: u32,
}

impl<'a> Token<'a> {
    pub fn ident(&self) -> Option<&'a str> {
        match self.tok {
            Tok::Ident(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_punct(&self, p: &str) -> bool {
        matches!(self.tok, Tok::Punct(s) if s == p)
    }

    pub fn is_ident(&self, name: &str) -> bool {
        matches!(self.tok, Tok::Ident(s) if s == name)
    }
}

/// Splits `src` into tokens. Never fails: malformed input (an unterminated string or
/// comment) simply ends the token stream, because a scan must not stop on odd files.
pub fn tokenize(src: &str) -> Vec<Token<'_>> {
    Lexer { src, bytes: src.as_bytes(), pos: 0, line: 1, out: Vec::new() }.run()
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    line: u32,
    out: Vec<Token<'a>>,
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_continue(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

impl<'a> Lexer<'a> {
    fn run(mut self) -> Vec<Token<'a>> {
        // A shebang line (`#!/usr/bin/env ...`) is not an inner attribute.
        if self.src.starts_with("#!") && !self.src[2..].trim_start().starts_with('[') {
            self.skip_line();
        }
        while self.pos < self.bytes.len() {
            let b = self.bytes[self.pos];
            match b {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'/' if self.peek(1) == Some(b'/') => self.line_comment(),
                b'/' if self.peek(1) == Some(b'*') => self.block_comment(),
                b'"' => self.string(self.pos + 1, None),
                b'\'' => self.quote(),
                b'0'..=b'9' => self.number(),
                b':' if self.peek(1) == Some(b':') => {
                    self.push(Tok::Punct("::"));
                    self.pos += 2;
                }
                _ if b < 0x80 && !(b as char).is_ascii_alphabetic() && b != b'_' => {
                    let s = &self.src[self.pos..self.pos + 1];
                    self.push(Tok::Punct(s));
                    self.pos += 1;
                }
                _ => self.word(),
            }
        }
        self.out
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    fn push(&mut self, tok: Tok<'a>) {
        self.out.push(Token { tok, line: self.line });
    }

    fn count_lines(&mut self, from: usize, to: usize) {
        self.line += self.bytes[from..to].iter().filter(|&&b| b == b'\n').count() as u32;
    }

    fn skip_line(&mut self) {
        while self.pos < self.bytes.len() && self.bytes[self.pos] != b'\n' {
            self.pos += 1;
        }
    }

    fn line_comment(&mut self) {
        let start = self.pos;
        self.skip_line();
        let text = &self.src[start..self.pos];
        let doc = if text.starts_with("///") && !text.starts_with("////") {
            Some(&text[3..])
        } else {
            text.strip_prefix("//!")
        };
        if let Some(doc) = doc {
            self.push(Tok::Doc(doc));
        }
    }

    fn block_comment(&mut self) {
        let start = self.pos;
        let start_line = self.line;
        self.pos += 2;
        let mut depth = 1;
        while self.pos < self.bytes.len() && depth > 0 {
            if self.bytes[self.pos] == b'/' && self.peek(1) == Some(b'*') {
                depth += 1;
                self.pos += 2;
            } else if self.bytes[self.pos] == b'*' && self.peek(1) == Some(b'/') {
                depth -= 1;
                self.pos += 2;
            } else {
                self.pos += 1;
            }
        }
        let text = &self.src[start..self.pos];
        self.count_lines(start, self.pos);
        let is_doc = (text.starts_with("/**") && !text.starts_with("/***") && text != "/**/")
            || text.starts_with("/*!");
        if is_doc && text.len() >= 5 {
            let inner = &text[3..text.len() - 2];
            self.out.push(Token { tok: Tok::Doc(inner), line: start_line });
        }
    }

    /// A string whose content starts at `content_start`: an ordinary one (`raw_hashes`
    /// None, `\` escapes) ends at a `"`, a raw one at a `"` followed by that many `#`.
    fn string(&mut self, content_start: usize, raw_hashes: Option<usize>) {
        let hashes = raw_hashes.unwrap_or(0);
        let start_line = self.line;
        let mut i = content_start;
        let end = loop {
            match self.bytes.get(i) {
                None => break None,
                Some(b'\\') if raw_hashes.is_none() => i += 2,
                Some(b'"')
                    if self.bytes[i + 1..].iter().take(hashes).filter(|&&b| b == b'#').count()
                        == hashes =>
                {
                    break Some(i);
                }
                Some(_) => i += 1,
            }
        };
        let Some(end) = end else {
            self.count_lines(self.pos, self.bytes.len());
            self.pos = self.bytes.len();
            return;
        };
        let content = &self.src[content_start..end];
        self.count_lines(self.pos, end);
        self.out.push(Token { tok: Tok::Str(content), line: start_line });
        self.pos = end + 1 + hashes;
        // A literal suffix (`"x"suffix`) is part of the literal.
        while let Some(c) = self.src[self.pos..].chars().next().filter(|&c| is_ident_continue(c)) {
            self.pos += c.len_utf8();
        }
    }

    /// `'`: a char literal (`'a'`, `'\n'`, `'\u{1F600}'`) or a lifetime/label (`'a`).
    fn quote(&mut self) {
        let rest = &self.src[self.pos + 1..];
        let mut chars = rest.char_indices();
        match chars.next() {
            Some((_, '\\')) => {
                // Escaped char literal (`'\\'`, `'\''`, `'\u{41}'`): skip the escaped
                // character, then to the closing quote.
                let mut i = self.pos + 3;
                while i < self.bytes.len() && self.bytes[i] != b'\'' && self.bytes[i] != b'\n' {
                    i += if self.bytes[i] == b'\\' { 2 } else { 1 };
                }
                self.pos = (i + 1).min(self.bytes.len());
            }
            Some((_, c)) => {
                let after = self.pos + 1 + c.len_utf8();
                if self.bytes.get(after) == Some(&b'\'') {
                    self.pos = after + 1; // 'x'
                } else if is_ident_start(c) {
                    // Lifetime or label: skip its name so it is not taken for an identifier.
                    self.pos += 1;
                    while let Some(c) = self.src[self.pos..].chars().next() {
                        if !is_ident_continue(c) {
                            break;
                        }
                        self.pos += c.len_utf8();
                    }
                } else {
                    self.pos += 1;
                }
            }
            None => self.pos += 1,
        }
    }

    fn number(&mut self) {
        while self.pos < self.bytes.len() {
            let b = self.bytes[self.pos];
            let continues = b.is_ascii_alphanumeric()
                || b == b'_'
                || (b == b'.' && self.peek(1).is_some_and(|n| n.is_ascii_digit()));
            if !continues {
                break;
            }
            self.pos += 1;
        }
    }

    /// An identifier, or a prefixed literal (`r"..."`, `r#"..."#`, `b"..."`, `br"..."`,
    /// `c"..."`, `cr"..."`, `b'x'`), or a raw identifier (`r#name`).
    fn word(&mut self) {
        let rest = &self.bytes[self.pos..];
        let raw_prefix = if rest.starts_with(b"br") || rest.starts_with(b"cr") {
            Some(2)
        } else if rest.starts_with(b"r") {
            Some(1)
        } else {
            None
        };
        if let Some(p) = raw_prefix {
            let hashes = rest[p..].iter().take_while(|&&b| b == b'#').count();
            if rest.get(p + hashes) == Some(&b'"') {
                self.string(self.pos + p + hashes + 1, Some(hashes));
                return;
            }
            if p == 1 && hashes == 1 && rest.get(2).is_some_and(|&b| is_ident_start(b as char)) {
                self.pos += 2; // r#ident: fall through to the identifier
                return self.plain_ident();
            }
        }
        if (rest.starts_with(b"b\"") || rest.starts_with(b"c\"")) && rest.len() > 1 {
            self.string(self.pos + 2, None);
            return;
        }
        if rest.starts_with(b"b'") {
            self.pos += 1;
            self.quote();
            return;
        }
        self.plain_ident();
    }

    fn plain_ident(&mut self) {
        let start = self.pos;
        let mut first = true;
        while let Some(c) = self.src[self.pos..].chars().next() {
            let ok = if first { is_ident_start(c) } else { is_ident_continue(c) };
            if !ok {
                break;
            }
            first = false;
            self.pos += c.len_utf8();
        }
        if self.pos == start {
            // Not an identifier character (e.g. a non-ASCII symbol): skip it.
            let c = self.src[self.pos..].chars().next().map_or(1, char::len_utf8);
            self.pos += c;
            return;
        }
        self.push(Tok::Ident(&self.src[start..self.pos]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idents(src: &str) -> Vec<&str> {
        tokenize(src).into_iter().filter_map(|t| t.ident()).collect()
    }

    #[test]
    fn comments_are_skipped_and_nested_block_comments_end_correctly() {
        let src = "a // tokio::x\n/* serde /* nested */ still */ b /* */ c";
        assert_eq!(idents(src), ["a", "b", "c"]);
    }

    #[test]
    fn strings_keep_content_but_are_not_identifiers() {
        let toks = tokenize(r#"let s = "tokio::spawn \" x"; t"#);
        assert!(toks.iter().any(|t| t.tok == Tok::Str(r#"tokio::spawn \" x"#)));
        assert_eq!(toks.iter().filter_map(|t| t.ident()).collect::<Vec<_>>(), ["let", "s", "t"]);
    }

    #[test]
    fn raw_and_prefixed_strings() {
        let src = r####"r#"serde "quoted" "# br"x" b"y\"" c"z" r##"a"#b"## end"####;
        let toks = tokenize(src);
        let strs: Vec<_> = toks
            .iter()
            .filter_map(|t| if let Tok::Str(s) = t.tok { Some(s) } else { None })
            .collect();
        assert_eq!(strs, [r#"serde "quoted" "#, "x", r#"y\""#, "z", r##"a"#b"##]);
        assert_eq!(toks.iter().filter_map(|t| t.ident()).collect::<Vec<_>>(), ["end"]);
    }

    #[test]
    fn char_literals_and_lifetimes_are_skipped() {
        let src = "fn f<'tokio>(x: &'tokio str) { let c = 'a'; let q = '\\''; let u = '\\u{41}'; let b = b'z'; 'outer: loop {} }";
        let ids = idents(src);
        assert!(!ids.contains(&"tokio"), "{ids:?}");
        assert!(!ids.contains(&"outer"));
        assert!(!ids.contains(&"z"));
        assert!(ids.contains(&"loop"));
    }

    #[test]
    fn escaped_backslash_and_quote_char_literals_end_where_they_should() {
        let src = "f('\\\\', one_of(['\\\"', 'n', '\\\\'])); g(\"tokio::x\"); h('\\''); after";
        let toks = tokenize(src);
        let ids: Vec<_> = toks.iter().filter_map(|t| t.ident()).collect();
        assert_eq!(ids, ["f", "one_of", "g", "h", "after"], "{toks:?}");
        assert!(toks.iter().any(|t| t.tok == Tok::Str("tokio::x")));
    }

    #[test]
    fn backslash_does_not_escape_in_raw_strings() {
        let toks = tokenize(r##"a(r"\", r"C:\"); b(r#"\"#); c"##);
        let ids: Vec<_> = toks.iter().filter_map(|t| t.ident()).collect();
        assert_eq!(ids, ["a", "b", "c"], "{toks:?}");
    }

    #[test]
    fn non_ascii_after_a_string_is_not_split() {
        // A non-ASCII letter right after a string is a (bogus) literal suffix: it must be
        // skipped as a whole character, not byte by byte.
        assert_eq!(idents("\"a\"\u{e9}\u{241b} b"), ["b"]);
    }

    /// Every source file of this repository lexes with balanced brackets: a string, char
    /// or comment read wrongly would swallow or expose brackets.
    #[test]
    fn the_repositorys_own_sources_lex_with_balanced_brackets() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut stack = vec![root.join("xtask"), root.join("src")];
        let mut files = 0;
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let src = std::fs::read_to_string(&path).unwrap();
                    let mut depth = 0i64;
                    for t in tokenize(&src) {
                        match t.tok {
                            Tok::Punct("(" | "[" | "{") => depth += 1,
                            Tok::Punct(")" | "]" | "}") => depth -= 1,
                            _ => {}
                        }
                    }
                    assert_eq!(depth, 0, "{}", path.display());
                    files += 1;
                }
            }
        }
        assert!(files > 10, "only {files} files found");
    }

    #[test]
    fn raw_identifiers_lose_their_prefix() {
        assert_eq!(idents("r#type r#match"), ["type", "match"]);
    }

    #[test]
    fn path_separator_is_one_token_and_lines_are_counted() {
        let toks = tokenize("a\n::b /* x\ny */\nc");
        assert_eq!(toks[1].tok, Tok::Punct("::"));
        assert_eq!(toks[1].line, 2);
        assert_eq!(toks[3].line, 4);
    }

    #[test]
    fn doc_comments_are_tokens_ordinary_comments_are_not() {
        let toks =
            tokenize("/// outer\n//! inner\n//// not doc\n/** block */\n/*! inner block */\n/***/");
        let docs: Vec<_> = toks
            .iter()
            .filter_map(|t| if let Tok::Doc(s) = t.tok { Some(s) } else { None })
            .collect();
        assert_eq!(docs, [" outer", " inner", " block ", " inner block "]);
    }

    #[test]
    fn numbers_do_not_produce_identifiers() {
        assert_eq!(idents("1u8 0x_ff_u32 1.5e3 t.0 2f64"), ["t"]);
    }

    #[test]
    fn unterminated_input_ends_quietly() {
        assert_eq!(idents("a \"never closed"), ["a"]);
        assert_eq!(idents("b /* never closed"), ["b"]);
    }

    #[test]
    fn shebang_is_skipped_but_inner_attribute_is_not() {
        assert_eq!(idents("#!/usr/bin/env run-cargo-script\nfoo"), ["foo"]);
        assert_eq!(idents("#![allow(x)]"), ["allow", "x"]);
    }
}
