//! `ct helper` objects and `ct helper set` (nftables' conntrack helper assignment): the
//! text and JSON forms nft lists, the checks the kernel makes when it loads them, and the
//! name to [`HelperKind`] resolution the compiler uses. The helpers themselves are
//! `crate::helper` (docs/helpers.md).
//!
//! ```text
//! table ip t {
//!     ct helper ftp-standard { type "ftp" protocol tcp; }
//!     chain fwd {
//!         type filter hook forward priority filter; policy drop;
//!         ct state established,related accept
//!         tcp dport 21 ct helper set "ftp-standard" accept
//!     }
//! }
//! ```

use super::Error;
use super::ast::{CtHelperObj, Pos, Stmt, Table};
use crate::helper::HelperKind;
use crate::wire::proto;
use serde_json::{Map, Value as J, json};
use std::fmt::Write;

fn proto_name(p: u8) -> &'static str {
    if p == proto::UDP { "udp" } else { "tcp" }
}

/// The helper an object names, when the appliance has it (`type "ftp" protocol tcp`,
/// `type "tftp" protocol udp`).
pub fn kind(h: &CtHelperObj) -> Option<HelperKind> {
    HelperKind::by_name(&h.kind, h.proto)
}

/// The helper `ct helper set "NAME"` gives in table `t`.
pub fn resolve(t: &Table, name: &str) -> Option<HelperKind> {
    t.helpers.iter().find(|h| h.name == name).and_then(kind)
}

/// The kernel's checks: every object names a helper it has, every `ct helper set` an
/// object of its table.
pub fn check(t: &Table) -> Result<(), Error> {
    for h in &t.helpers {
        if kind(h).is_none() {
            return Err(Error::at(
                h.pos,
                &h.name,
                format!(
                    "no conntrack helper `{}` for protocol {} (this appliance has \"ftp\" on tcp \
                     and \"tftp\" on udp)",
                    h.kind,
                    proto_name(h.proto)
                ),
            ));
        }
    }
    for r in t.chains.iter().flat_map(|c| &c.rules) {
        for s in &r.stmts {
            if let Stmt::CtHelperSet(n, pos) = s
                && !t.helpers.iter().any(|h| &h.name == n)
            {
                return Err(Error::at(
                    *pos,
                    n,
                    format!("no ct helper object `{n}` in table {}", t.name),
                ));
            }
        }
    }
    Ok(())
}

/// The object as `nft list ruleset` writes it (one tab of table indentation).
pub fn obj_text(out: &mut String, t: &Table, h: &CtHelperObj) {
    let _ = writeln!(out, "\tct helper {} {{", h.name);
    let _ = writeln!(
        out,
        "\t\ttype \"{}\" protocol {}",
        h.kind,
        proto_name(h.proto)
    );
    let l3 = h.l3proto.unwrap_or(t.family);
    let _ = writeln!(out, "\t\tl3proto {}", l3.name());
    out.push_str("\t}\n");
}

/// The statement's text.
pub fn stmt_text(name: &str) -> String {
    format!("ct helper set \"{name}\"")
}

/// The object as `nft -j list ruleset` writes it.
pub fn obj_json(t: &Table, h: &CtHelperObj, handle: usize) -> J {
    json!({"ct helper": {
        "family": t.family.name(),
        "name": h.name,
        "table": t.name,
        "handle": handle,
        "type": h.kind,
        "protocol": proto_name(h.proto),
        "l3proto": h.l3proto.unwrap_or(t.family).name(),
    }})
}

/// Reads a `{"ct helper": {…}}` object (its table found by the caller).
pub fn read_obj_json(o: &Map<String, J>, path: &str) -> Result<CtHelperObj, Error> {
    let s = |k: &str| {
        o.get(k)
            .and_then(J::as_str)
            .ok_or_else(|| Error::json(path, format!("missing {k}")))
    };
    let name = s("name")?;
    if let Some(m) = super::ident::name_problem(name) {
        return Err(Error::json(path, format!("ct helper name: {m}")));
    }
    let kind = s("type")?;
    if kind.is_empty() || kind.contains(['"', '\\', '\n']) {
        return Err(Error::json(path, "bad helper type"));
    }
    let proto = match s("protocol")? {
        "tcp" => proto::TCP,
        "udp" => proto::UDP,
        p => {
            return Err(Error::json(
                path,
                format!("protocol {p}: expected tcp or udp"),
            ));
        }
    };
    let l3proto =
        match o.get("l3proto").and_then(J::as_str) {
            None => None,
            Some(f) => Some(super::ast::TableFamily::from_name(f).ok_or_else(|| {
                Error::json(path, format!("l3proto {f}: expected ip, ip6 or inet"))
            })?),
        };
    Ok(CtHelperObj {
        name: name.to_owned(),
        kind: kind.to_owned(),
        proto,
        l3proto,
        pos: Pos::default(),
    })
}

/// Reads the statement `{"ct helper": "NAME"}`.
pub fn read_stmt_json(body: &J, path: &str, pos: Pos) -> Result<Stmt, Error> {
    let n = body
        .as_str()
        .ok_or_else(|| Error::json(path, "expected the helper object's name"))?;
    if let Some(m) = super::ident::name_problem(n) {
        return Err(Error::json(path, format!("ct helper name: {m}")));
    }
    Ok(Stmt::CtHelperSet(n.to_owned(), pos))
}

#[cfg(test)]
mod tests {
    use crate::rules::check::check;
    use crate::rules::json::{from_json, to_json};
    use crate::rules::parse::parse;
    use crate::rules::print;

    const SRC: &str = "table inet t {\n\tct helper ftp-standard {\n\t\ttype \"ftp\" protocol \
                       tcp\n\t\tl3proto inet\n\t}\n\n\tct helper tf {\n\t\ttype \"tftp\" \
                       protocol udp\n\t\tl3proto ip\n\t}\n\n\tchain c {\n\t\ttype filter hook \
                       forward priority filter; policy drop;\n\t\tct state established,related \
                       accept\n\t\ttcp dport 21 ct helper set \"ftp-standard\" accept\n\t\tudp \
                       dport 69 ct helper set \"tf\" accept\n\t}\n}\n";

    #[test]
    fn objects_and_statements_list_as_nft_lists_them() {
        // nft's own form (`{ type "ftp" protocol tcp; }` on one line) reads to the same.
        let short = "table inet t {\n ct helper ftp-standard { type \"ftp\" protocol tcp; }\n \
                     ct helper tf { type \"tftp\" protocol udp; l3proto ip; }\n chain c { type \
                     filter hook forward priority 0; policy drop;\n  ct state \
                     established,related accept\n  tcp dport 21 ct helper set \"ftp-standard\" \
                     accept\n  udp dport 69 ct helper set \"tf\" accept\n }\n}\n";
        let rs = parse(short).unwrap();
        check(&rs).unwrap();
        assert_eq!(print::to_text(&rs), SRC);
        assert_eq!(print::to_text(&parse(SRC).unwrap()), SRC);
        assert_eq!(print::first_difference(&parse(SRC).unwrap(), &rs), None);
    }

    #[test]
    fn json_has_nfts_object_and_statement_forms_and_reads_back() {
        let rs = parse(SRC).unwrap();
        let j = to_json(&rs);
        let items = j["nftables"].as_array().unwrap();
        let h = items.iter().find(|i| i.get("ct helper").is_some()).unwrap();
        assert_eq!(
            h["ct helper"],
            serde_json::json!({"family": "inet", "name": "ftp-standard", "table": "t",
                "handle": 2, "type": "ftp", "protocol": "tcp", "l3proto": "inet"})
        );
        let text = j.to_string();
        assert!(text.contains(r#"{"ct helper":"ftp-standard"}"#), "{text}");
        let back = from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(print::to_text(&back), SRC);
    }

    #[test]
    fn unknown_helpers_and_names_are_refused_with_their_location() {
        let e = check(
            &parse("table ip x {\n ct helper h { type \"foo\" protocol tcp; }\n}\n").unwrap(),
        )
        .unwrap_err();
        assert_eq!((e.line, e.token.as_str()), (2, "h"), "{e}");
        let e = check(
            &parse("table ip x {\n ct helper h { type \"ftp\" protocol udp; }\n}\n").unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("ftp"), "{e}");
        let e =
            check(&parse("table ip x {\n chain c {\n  ct helper set \"nope\"\n }\n}\n").unwrap())
                .unwrap_err();
        assert_eq!((e.line, e.token.as_str()), (3, "nope"), "{e}");
        let e = parse("table ip x {\n chain c {\n  ct helper \"ftp\" accept\n }\n}\n").unwrap_err();
        assert!(e.to_string().contains("ct helper"), "{e}");
        let e = parse("table ip x {\n ct helper h { type \"ftp\" protocol tcp; }\n ct helper h { type \"ftp\" protocol tcp; }\n}\n").unwrap_err();
        assert!(e.to_string().contains("duplicate"), "{e}");
    }
}
