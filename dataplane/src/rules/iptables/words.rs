//! Lines and words of iptables input: shell quoting (`'…'`, `"…"`, `\`), `#` comments,
//! `\` line continuation. No expansion: `$VAR` and command substitution are errors.

use super::super::Error;
use super::super::ast::Pos;

/// One word with the line and column where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Word {
    pub text: String,
    pub line: u32,
    pub col: u32,
}

impl Word {
    pub const EMPTY: Word = Word {
        text: String::new(),
        line: 0,
        col: 0,
    };
}

/// Logical lines (a trailing `\` joins the next line) with their first line number. The
/// joined text keeps the columns of the first line only; later lines' words are located
/// on the first line.
pub(crate) fn logical_lines(src: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(u32, String)> = None;
    for (i, l) in src.lines().enumerate() {
        let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let (start, mut text) = cur.take().unwrap_or((n, String::new()));
        if let Some(head) = l.strip_suffix('\\') {
            text.push_str(head);
            text.push(' ');
            cur = Some((start, text));
        } else {
            text.push_str(l);
            out.push((start, text));
        }
    }
    if let Some(c) = cur {
        out.push(c);
    }
    out
}

/// Splits a line into words as a POSIX shell would, without expansions.
pub(crate) fn split(line: &str, n: u32) -> Result<Vec<Word>, Error> {
    let mut out = Vec::new();
    let mut cur: Option<(u32, String)> = None;
    let mut chars = line.char_indices().peekable();
    let err = |col: usize, tok: &str, msg: &str| Error {
        line: n,
        col: u32::try_from(col + 1).unwrap_or(u32::MAX),
        token: tok.to_owned(),
        msg: msg.to_owned(),
    };
    while let Some((i, c)) = chars.next() {
        let col = u32::try_from(i + 1).unwrap_or(u32::MAX);
        match c {
            ' ' | '\t' | '\r' => {
                if let Some((c0, w)) = cur.take() {
                    out.push(Word {
                        text: w,
                        line: n,
                        col: c0,
                    });
                }
            }
            '#' if cur.is_none() => break,
            '\'' => {
                let w = &mut cur.get_or_insert((col, String::new())).1;
                loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, ch)) => w.push(ch),
                        None => return Err(err(i, "'", "unterminated quote")),
                    }
                }
            }
            '"' => {
                let w = &mut cur.get_or_insert((col, String::new())).1;
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, ch @ ('"' | '\\' | '$' | '`'))) => w.push(ch),
                            Some((_, ch)) => {
                                w.push('\\');
                                w.push(ch);
                            }
                            None => return Err(err(i, "\"", "unterminated quote")),
                        },
                        Some((j, '$' | '`')) => {
                            return Err(err(j, "$", "shell expansions are not translated"));
                        }
                        Some((_, ch)) => w.push(ch),
                        None => return Err(err(i, "\"", "unterminated quote")),
                    }
                }
            }
            '\\' => {
                let w = &mut cur.get_or_insert((col, String::new())).1;
                if let Some((_, ch)) = chars.next() {
                    w.push(ch);
                }
            }
            '$' | '`' | ';' | '|' | '&' | '>' | '<' | '(' | ')' => {
                return Err(err(
                    i,
                    &c.to_string(),
                    "shell syntax (variables, pipes, redirections, several commands on a \
                     line) is not translated",
                ));
            }
            _ => cur.get_or_insert((col, String::new())).1.push(c),
        }
    }
    if let Some((c0, w)) = cur {
        out.push(Word {
            text: w,
            line: n,
            col: c0,
        });
    }
    Ok(out)
}

/// An error at a word.
pub(crate) fn at(w: &Word, msg: impl Into<String>) -> Error {
    Error {
        line: w.line,
        col: w.col,
        token: w.text.clone(),
        msg: msg.into(),
    }
}

/// Where a word starts, as an AST position.
pub(crate) fn pos(w: &Word) -> Pos {
    Pos {
        line: w.line,
        col: w.col,
    }
}
