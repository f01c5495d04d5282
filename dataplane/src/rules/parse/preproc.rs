//! What nft does to a file before reading its commands: `define NAME = VALUE` with
//! `$NAME` uses, and `include "FILE"`. Both work on the lexer's tokens, so the parser
//! never sees them.
//!
//! - A definition holds the tokens up to the end of its line (or `;`), braces included
//!   (`define ports = { 22, 80 }`); a use is replaced by them, at the use's position (an
//!   error in the value points at the use). A name is defined once (`redefinition`, as
//!   nft); an unknown `$NAME` is an error at the use. A value may use earlier names.
//! - `include "FILE"` reads FILE relative to the directory of the file that includes it
//!   (nft 1.0.6 searches its include path instead, `-I`, default `/etc`), only for files
//!   read from disk ([`super::parse_file`], `fwd check`): text sent over the API has no
//!   directory, so `include` there is an error. Definitions are shared with included
//!   files, as in nft's top-level scope. At most [`MAX_DEPTH`] levels (a file including
//!   itself stops there) and [`MAX_FILES`] files.
//!
//! Positions: a token of the `n`th file read (the first is 0) carries `n * LINE_BASE` in
//! its line, which `parse_file` takes apart again to name the file and its line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::lexer::{self, Tok, Token};
use crate::rules::Error;

/// Lines one file may have; a token's line is `file * LINE_BASE + line`.
pub(super) const LINE_BASE: u32 = 1 << 20;

/// Most files one read may include (the line numbers must fit a `u32`).
pub const MAX_FILES: usize = 1024;

/// Most nested includes.
pub const MAX_DEPTH: usize = 16;

/// The files read so far (the first is the one given): where `include` looks, and how an
/// error's line names its file.
#[derive(Debug, Default)]
pub(super) struct Files {
    pub(super) paths: Vec<PathBuf>,
}

/// Expands `define`, `$NAME` and (with `files`) `include` in `toks`, the tokens of file
/// `files.paths[file]` (or of text from elsewhere, with no `files`).
pub(super) fn expand(toks: Vec<Token>, files: Option<&mut Files>) -> Result<Vec<Token>, Error> {
    let mut defs = BTreeMap::new();
    let mut out = Vec::with_capacity(toks.len());
    let mut files = files;
    run(toks, &mut files, 0, 0, &mut defs, &mut out)?;
    out.push(Token {
        tok: Tok::Eof,
        pos: out.last().map(|t| t.pos).unwrap_or_default(),
    });
    Ok(out)
}

fn at_start(out: &[Token]) -> bool {
    matches!(
        out.last().map(|t| &t.tok),
        None | Some(Tok::Newline | Tok::Punct(';' | '{' | '}'))
    )
}

fn run(
    toks: Vec<Token>,
    files: &mut Option<&mut Files>,
    file: usize,
    depth: usize,
    defs: &mut BTreeMap<String, Vec<Token>>,
    out: &mut Vec<Token>,
) -> Result<(), Error> {
    let mut it = toks.into_iter().peekable();
    while let Some(t) = it.next() {
        match &t.tok {
            Tok::Eof => break,
            Tok::Word(w) if w == "define" && at_start(out) => {
                let (name, npos) = match it.next() {
                    Some(Token {
                        tok: Tok::Word(n),
                        pos,
                    }) if !n.starts_with('$') => (n, pos),
                    Some(x) => return Err(Error::at(x.pos, &x.text(), "expected a name")),
                    None => return Err(Error::at(t.pos, "define", "expected a name")),
                };
                match it.next() {
                    Some(Token {
                        tok: Tok::Punct('='),
                        ..
                    }) => {}
                    Some(x) => return Err(Error::at(x.pos, &x.text(), "expected `=`")),
                    None => return Err(Error::at(npos, &name, "expected `=`")),
                }
                let mut value = Vec::new();
                let mut braces = 0usize;
                while let Some(x) = it.peek() {
                    match x.tok {
                        Tok::Newline | Tok::Eof => break,
                        Tok::Punct(';') if braces == 0 => break,
                        Tok::Punct('{') => braces += 1,
                        Tok::Punct('}') => braces = braces.saturating_sub(1),
                        _ => {}
                    }
                    let x = it.next().unwrap_or_else(|| t.clone());
                    value.extend(substitute(x, defs)?);
                }
                if value.is_empty() {
                    return Err(Error::at(npos, &name, "a definition needs a value"));
                }
                if defs.insert(name.clone(), value).is_some() {
                    return Err(Error::at(npos, &name, format!("redefinition of `{name}`")));
                }
            }
            Tok::Word(w) if w == "include" && at_start(out) => {
                let path = match it.next() {
                    Some(Token {
                        tok: Tok::Str(p), ..
                    }) => p,
                    Some(x) => {
                        return Err(Error::at(x.pos, &x.text(), "expected a quoted file name"));
                    }
                    None => return Err(Error::at(t.pos, "include", "expected a file name")),
                };
                let Some(fs) = files.as_deref_mut() else {
                    return Err(Error::at(
                        t.pos,
                        "include",
                        "`include` reads files, which only a file read from disk may do \
                         (`fwd check FILE`): send the included text itself",
                    ));
                };
                if depth + 1 >= MAX_DEPTH || fs.paths.len() >= MAX_FILES {
                    return Err(Error::at(
                        t.pos,
                        &path,
                        format!(
                            "more than {MAX_DEPTH} nested includes or {MAX_FILES} files \
                             (does a file include itself?)"
                        ),
                    ));
                }
                let dir = fs.paths[file].parent().unwrap_or(Path::new("."));
                let full = dir.join(&path);
                let text = std::fs::read_to_string(&full)
                    .map_err(|e| Error::at(t.pos, &path, format!("{}: {e}", full.display())))?;
                let n = fs.paths.len();
                fs.paths.push(full);
                let inner = numbered(lexer::lex(&text)?, n)?;
                run(inner, files, n, depth + 1, defs, out)?;
            }
            _ => out.extend(substitute(t, defs)?),
        }
    }
    Ok(())
}

/// The tokens of the `n`th file read, their lines moved to `n * LINE_BASE` onwards.
pub(super) fn numbered(mut toks: Vec<Token>, n: usize) -> Result<Vec<Token>, Error> {
    let base = u32::try_from(n)
        .unwrap_or(u32::MAX)
        .saturating_mul(LINE_BASE);
    for x in &mut toks {
        if x.pos.line >= LINE_BASE {
            return Err(Error::at(
                x.pos,
                &x.text(),
                format!("a file read with its includes has at most {LINE_BASE} lines"),
            ));
        }
        x.pos.line += base;
    }
    Ok(toks)
}

/// A `$NAME` token replaced by its definition (at its position); any other as it is.
fn substitute(t: Token, defs: &BTreeMap<String, Vec<Token>>) -> Result<Vec<Token>, Error> {
    let Tok::Word(w) = &t.tok else {
        return Ok(vec![t]);
    };
    let Some(name) = w.strip_prefix('$') else {
        return Ok(vec![t]);
    };
    let value = defs.get(name).ok_or_else(|| {
        Error::at(
            t.pos,
            w,
            format!("unknown variable `${name}` (no `define {name} = …`)"),
        )
    })?;
    Ok(value
        .iter()
        .map(|v| Token {
            tok: v.tok.clone(),
            pos: t.pos,
        })
        .collect())
}

/// The file and line of an error's line.
pub(super) fn locate(files: &Files, line: u32) -> (PathBuf, u32) {
    let n = usize::try_from(line / LINE_BASE).unwrap_or(0);
    let path = files
        .paths
        .get(n)
        .or(files.paths.first())
        .cloned()
        .unwrap_or_default();
    (path, line % LINE_BASE)
}
