//! The one error type of the rule language: a location, the offending token, a message.

use super::ast;

/// A ruleset error: where (1-based line and column; 0:0 for JSON, where `token` is the
/// JSON path), the offending token, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {msg} (at `{token}`)")]
pub struct Error {
    pub line: u32,
    pub col: u32,
    pub token: String,
    pub msg: String,
}

impl Error {
    pub(crate) fn at(pos: ast::Pos, token: &str, msg: impl Into<String>) -> Self {
        Error {
            line: pos.line,
            col: pos.col,
            token: token.to_owned(),
            msg: msg.into(),
        }
    }

    pub(crate) fn json(path: &str, msg: impl Into<String>) -> Self {
        Error {
            line: 0,
            col: 0,
            token: path.to_owned(),
            msg: msg.into(),
        }
    }
}
