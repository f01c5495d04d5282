//! `ct helper` objects in a table and the `ct helper set` statement (`rules/helper.rs`).

use super::cursor::Parser;
use crate::rules::Error;
use crate::rules::ast::{CtHelperObj, Pos, Stmt, TableFamily};
use crate::wire::proto;

impl Parser {
    /// After `ct helper` in a table: `NAME { type "ftp" protocol tcp; [l3proto ip;] }`.
    pub(super) fn ct_helper_obj(&mut self, pos: Pos) -> Result<CtHelperObj, Error> {
        let (name, _) = self.word("helper name")?;
        self.expect_punct('{')?;
        let (mut kind, mut l4, mut l3proto) = (None, None, None);
        loop {
            self.skip_separators();
            if self.is_punct('}') {
                self.next();
                break;
            }
            let (w, wp) = self.word("`type`, `l3proto` or `}`")?;
            match w.as_str() {
                "type" => {
                    kind = Some(self.string("a helper type (\"ftp\")")?);
                    let (p, pp) = self.word("`protocol`")?;
                    if p != "protocol" {
                        return Err(Error::at(pp, &p, "expected `protocol tcp|udp`"));
                    }
                    let (l, lp) = self.word("tcp or udp")?;
                    l4 = Some(match l.as_str() {
                        "tcp" => proto::TCP,
                        "udp" => proto::UDP,
                        _ => return Err(Error::at(lp, &l, "expected `tcp` or `udp`")),
                    });
                }
                "l3proto" => {
                    let (f, fp) = self.word("ip, ip6 or inet")?;
                    l3proto = Some(
                        TableFamily::from_name(&f)
                            .ok_or_else(|| Error::at(fp, &f, "expected ip, ip6 or inet"))?,
                    );
                }
                _ => return Err(Error::at(wp, &w, "expected `type`, `l3proto` or `}`")),
            }
        }
        let (Some(kind), Some(proto)) = (kind, l4) else {
            return Err(Error::at(
                pos,
                &name,
                "a ct helper needs `type \"…\" protocol …`",
            ));
        };
        Ok(CtHelperObj {
            name,
            kind,
            proto,
            l3proto,
            pos,
        })
    }

    /// After `ct helper`: `set "NAME"`. Matching on a connection's helper is refused.
    pub(super) fn ct_helper_stmt(&mut self, pos: Pos) -> Result<Stmt, Error> {
        if !self.eat_word("set") {
            return Err(Error::at(
                pos,
                "ct helper",
                "matching on `ct helper` is not supported by this appliance (only `ct helper set`)",
            ));
        }
        let t = self.peek().pos;
        let name = self.string("a helper object's name")?;
        Ok(Stmt::CtHelperSet(name, t))
    }
}
