//! The nftables text parser: a small lexer ([`lexer`]) and a recursive-descent parser over
//! it ([`cursor`] the token cursor, [`ruleset`] tables/sets/chains/rules, [`stmt`] the
//! statements, [`cmd`] nft command scripts); [`value`] parses single values (shared with
//! the JSON reader). Every error carries the line and column of the offending token.

mod cmd;
mod cursor;
mod dynset;
mod facts;
mod helper;
mod lexer;
mod mangle;
mod preproc;
mod ruleset;
mod stmt;
mod tcpopt;
mod value;

pub use cmd::element;
pub(crate) use value::parse_value;

use super::Error;
use super::ast::Ruleset;
use super::edit::HandleMarks;
use lexer::{Tok, Token};

/// Parses nftables text into a [`Ruleset`]: a ruleset file (`flush ruleset` and `table {
/// … }` blocks) or a script of nft commands (`add table`, `add chain`, `add rule`, …,
/// mixed with blocks), which is run on the empty ruleset as `nft -f` runs it after a
/// `flush ruleset`.
pub fn parse(src: &str) -> Result<Ruleset, Error> {
    parse_tokens(preproc::expand(lexer::lex(src)?, None)?)
}

fn parse_tokens(toks: Vec<Token>) -> Result<Ruleset, Error> {
    if has_commands(&toks) {
        return run(toks, Ruleset::default(), &mut HandleMarks::default());
    }
    let mut p = cursor::Parser { toks, i: 0 };
    let mut rs = p.ruleset()?;
    super::dynset::normalize(&mut rs);
    super::validate::ruleset(&rs)?;
    Ok(rs)
}

/// Runs a script of nft commands (and `table { … }` blocks, which merge into tables that
/// exist, as with `nft -f`) on a copy of `base`: all commands or none (the first error,
/// with its line and column, leaves `base` as it was). The result is validated; the
/// caller checks and compiles it (`compile_with`) and publishes it as one generation.
/// New rules get handles after the largest of their table ([`apply_marked`] also never
/// gives one a deleted rule had).
pub fn apply(base: &Ruleset, src: &str) -> Result<Ruleset, Error> {
    apply_marked(base, src, &mut HandleMarks::default())
}

/// [`apply`] with the handles each table has given out in earlier generations
/// (`marks`, updated only when the script applies): a new rule never gets a handle its
/// table gave before, as in the kernel.
pub fn apply_marked(base: &Ruleset, src: &str, marks: &mut HandleMarks) -> Result<Ruleset, Error> {
    let mut m = marks.clone();
    m.observe(base);
    let toks = preproc::expand(lexer::lex(src)?, None)?;
    let rs = run(toks, base.clone(), &mut m)?;
    m.observe(&rs);
    *marks = m;
    Ok(rs)
}

fn run(toks: Vec<Token>, mut rs: Ruleset, marks: &mut HandleMarks) -> Result<Ruleset, Error> {
    let mut p = cursor::Parser { toks, i: 0 };
    p.script(&mut rs, marks)?;
    super::dynset::normalize(&mut rs);
    super::validate::ruleset(&rs)?;
    Ok(rs)
}

/// An error in a file read from disk, naming the file (the one given or one it includes).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}", path.display(), error)]
pub struct FileError {
    pub path: std::path::PathBuf,
    /// The error, its line that of `path`.
    pub error: Error,
}

/// [`parse`] of a file, with its `include "FILE"`s read relative to its directory
/// (`fwd check FILE`); an error names the file it is in.
pub fn parse_file(path: &std::path::Path) -> Result<Ruleset, FileError> {
    let mut files = preproc::Files {
        paths: vec![path.to_path_buf()],
    };
    let result = std::fs::read_to_string(path)
        .map_err(|e| {
            Error::at(
                super::ast::Pos { line: 0, col: 0 },
                &path.display().to_string(),
                e.to_string(),
            )
        })
        .and_then(|text| lexer::lex(&text))
        .and_then(|toks| preproc::numbered(toks, 0))
        .and_then(|toks| preproc::expand(toks, Some(&mut files)))
        .and_then(parse_tokens);
    result.map_err(|mut error| {
        let (path, line) = preproc::locate(&files, error.line);
        error.line = line;
        FileError { path, error }
    })
}

/// Whether a statement at the top level (outside braces) is a command other than
/// `table` and `flush ruleset`.
fn has_commands(toks: &[Token]) -> bool {
    let mut depth = 0usize;
    let mut start = true;
    for (i, t) in toks.iter().enumerate() {
        match &t.tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => depth = depth.saturating_sub(1),
            Tok::Newline | Tok::Punct(';') => {
                start = true;
                continue;
            }
            Tok::Word(w) if depth == 0 && start => {
                let flush_other = w == "flush"
                    && matches!(&toks.get(i + 1).map(|t| &t.tok), Some(Tok::Word(x)) if x != "ruleset");
                if cmd::is_command(w) || flush_other {
                    return true;
                }
            }
            _ => {}
        }
        start = false;
    }
    false
}
