//! Matches on facts beyond the packet summary: `fib`, `ct direction`, `ct expiration`,
//! `ct original|reply ip|ip6 saddr|daddr`, `ct original|reply proto-src|proto-dst`
//! (`meta pkttype` and `ip dscp` read as the other two-word fields), as a match or as a
//! field of a concatenation.

use super::cursor::{Parser, unsupported};
use crate::rules::Error;
use crate::rules::ast::{Field, Pos, Stmt};

impl Parser {
    /// After `ct KEY` for the keys above.
    pub(super) fn ct_fact(&mut self, k: &str, kp: Pos, pos: Pos) -> Result<Stmt, Error> {
        let f = self.ct_fact_field(k, kp)?;
        self.match_rest(f, pos)
    }

    /// The field after `ct KEY` (`direction`, `expiration`, `original …`, `reply …`).
    pub(super) fn ct_fact_field(&mut self, k: &str, kp: Pos) -> Result<Field, Error> {
        match k {
            "direction" => return Ok(Field::CtDirection),
            "expiration" => return Ok(Field::CtExpiration),
            _ => {}
        }
        let (w, wp) = self.word("`ip`, `ip6`, `proto-src` or `proto-dst`")?;
        let key = match w.as_str() {
            "ip" | "ip6" => format!("{w} {}", self.word("`saddr` or `daddr`")?.0),
            "saddr" | "daddr" => {
                return Err(Error::at(
                    wp,
                    &w,
                    format!("cannot determine ip protocol version, use `ip {w}` or `ip6 {w}`"),
                ));
            }
            _ => w.clone(),
        };
        Field::from_words(&format!("ct {k}"), &key)
            .ok_or_else(|| Error::at(kp, k, unsupported(&format!("ct {k} {key}"))))
    }

    /// After `fib`: `daddr type …` or `saddr . iif oif …`.
    pub(super) fn fib(&mut self, pos: Pos) -> Result<Stmt, Error> {
        let f = self.fib_field()?;
        self.match_rest(f, pos)
    }

    /// The field after `fib` (`daddr type`, `saddr . iif oif`).
    pub(super) fn fib_field(&mut self) -> Result<Field, Error> {
        let (first, fp) = self.word("`saddr` or `daddr`")?;
        let mut flags = first;
        // `. iif|oif|mark` extends the lookup; any other `.` ends the field (a
        // concatenation goes on).
        while self.peek_word() == Some(".")
            && matches!(
                self.toks.get(self.i + 1).map(|t| &t.tok),
                Some(super::lexer::Tok::Word(w)) if matches!(w.as_str(), "iif" | "oif" | "mark")
            )
        {
            self.next();
            flags = format!("{flags} . {}", self.word("`iif`, `oif` or `mark`")?.0);
        }
        let (result, _) = self.word("`type`, `oif` or `oifname`")?;
        Field::from_words(&format!("fib {flags}"), &result).ok_or_else(|| {
            Error::at(
                fp,
                &format!("fib {flags} {result}"),
                format!(
                    "{} (only `fib daddr type` and `fib saddr . iif oif`)",
                    unsupported(&format!("fib {flags} {result}"))
                ),
            )
        })
    }
}
