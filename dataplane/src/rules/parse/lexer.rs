//! The lexer: words, strings, punctuation and newlines, each with its line and column.

use crate::rules::Error;
use crate::rules::ast::Pos;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Tok {
    Word(String),
    Str(String),
    Punct(char),
    Newline,
    Eof,
}

#[derive(Clone, Debug)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) pos: Pos,
}

impl Token {
    pub(super) fn text(&self) -> String {
        match &self.tok {
            Tok::Word(w) => w.clone(),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Punct(c) => c.to_string(),
            Tok::Newline => "newline".into(),
            Tok::Eof => "end of input".into(),
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-' | '*' | '[' | ']' | '$')
}

pub(super) fn lex(src: &str) -> Result<Vec<Token>, Error> {
    let mut out = Vec::new();
    let mut line = 1u32;
    let mut col = 1u32;
    let mut it = src.chars().peekable();
    while let Some(&c) = it.peek() {
        let pos = Pos { line, col };
        if c == '\n' {
            it.next();
            out.push(Token {
                tok: Tok::Newline,
                pos,
            });
            line += 1;
            col = 1;
        } else if c == '\\' {
            // Line continuation.
            it.next();
            col += 1;
            if it.peek() == Some(&'\n') {
                it.next();
                line += 1;
                col = 1;
            }
        } else if c.is_whitespace() {
            it.next();
            col += 1;
        } else if c == '#' {
            while let Some(&c) = it.peek() {
                if c == '\n' {
                    break;
                }
                it.next();
                col += 1;
            }
        } else if c == '"' {
            it.next();
            col += 1;
            let mut s = String::new();
            loop {
                match it.next() {
                    Some('"') => {
                        col += 1;
                        break;
                    }
                    Some('\n') | None => {
                        return Err(Error::at(pos, "\"", "unterminated string"));
                    }
                    Some(ch) => {
                        col += 1;
                        s.push(ch);
                    }
                }
            }
            out.push(Token {
                tok: Tok::Str(s),
                pos,
            });
        } else if is_word_char(c) {
            let mut s = String::new();
            while let Some(&c) = it.peek() {
                if !is_word_char(c) {
                    break;
                }
                s.push(c);
                it.next();
                col += 1;
            }
            out.push(Token {
                tok: Tok::Word(s),
                pos,
            });
        } else if "{};,()|&!=<>@".contains(c) {
            it.next();
            col += 1;
            out.push(Token {
                tok: Tok::Punct(c),
                pos,
            });
        } else {
            return Err(Error::at(pos, &c.to_string(), "unexpected character"));
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: Pos { line, col },
    });
    Ok(out)
}
