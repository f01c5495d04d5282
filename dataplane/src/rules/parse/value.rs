//! Value parsing from one word: numbers, names, addresses, prefixes, ranges, NAT targets.
//! Shared by the text parser and the JSON reader.

use crate::rules::ast::*;
use crate::rules::{names, validate};
use crate::wire::Addr;

pub(crate) fn parse_num(s: &str) -> Option<u64> {
    if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

pub(super) fn parse_addr(kind: Kind, s: &str) -> Result<Addr, String> {
    match kind {
        Kind::Addr4 => s
            .parse::<std::net::Ipv4Addr>()
            .map(|a| Addr::from_v4(a.octets()))
            .map_err(|_| "expected an IPv4 address".into()),
        _ => s
            .parse::<std::net::Ipv6Addr>()
            .map(|a| Addr::from_v6(a.octets()))
            .map_err(|_| "expected an IPv6 address".into()),
    }
}

/// Parses one value of `kind` from a word.
pub(crate) fn parse_value(kind: Kind, w: &str) -> Result<Value, String> {
    match kind {
        Kind::Addr4 | Kind::Addr6 => {
            let max = if kind == Kind::Addr4 { 32 } else { 128 };
            if let Some((a, l)) = w.split_once('/') {
                let len: u8 = l.parse().map_err(|_| "bad prefix length".to_string())?;
                if len > max {
                    return Err("prefix length too long".into());
                }
                let a = parse_addr(kind, a)?;
                if addr_to_u128(a) & !prefix_mask(kind, len) != 0 {
                    return Err("address has bits set beyond the prefix length".into());
                }
                Ok(Value::Prefix(a, len))
            } else if let Some((a, b)) = w.split_once('-') {
                let (a, b) = (parse_addr(kind, a)?, parse_addr(kind, b)?);
                if a > b {
                    return Err("empty address range".into());
                }
                Ok(Value::AddrRange(a, b))
            } else {
                Ok(Value::Prefix(parse_addr(kind, w)?, max))
            }
        }
        Kind::IfName => {
            let v = Value::Str(w.to_owned());
            match validate::value_problem(kind, &v) {
                Some(m) => Err(m),
                None => Ok(v),
            }
        }
        _ => {
            let max = validate::max_value(kind);
            let num = |s: &str| -> Result<u64, String> {
                let v = names::lookup(kind, s)
                    .or_else(|| match kind {
                        Kind::Millis => crate::rules::facts::parse_millis(s),
                        _ => parse_num(s),
                    })
                    .ok_or_else(|| format!("unknown value `{s}`"))?;
                if v > max {
                    return Err(format!("value {v} out of range (max {max})"));
                }
                Ok(v)
            };
            if let Some(v) = names::lookup(kind, w) {
                return Ok(Value::Num(v));
            }
            if let Some((a, b)) = w.split_once('-')
                && !a.is_empty()
            {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err("empty range".into());
                }
                return Ok(Value::Range(a, b));
            }
            num(w).map(Value::Num)
        }
    }
}

type NatTarget = (Option<(Addr, Addr)>, Option<(u16, u16)>);

/// `ADDR[-ADDR][:PORT[-PORT]]`, `[V6]:PORT`, `:PORT[-PORT]`.
pub(crate) fn parse_nat_target(w: &str) -> Result<NatTarget, String> {
    let (addr_part, port_part) = if let Some(rest) = w.strip_prefix('[') {
        let (a, after) = rest.split_once(']').ok_or("missing `]`")?;
        match after {
            "" => (a, None),
            _ => (
                a,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or("expected `:PORT` after `]`")?,
                ),
            ),
        }
    } else if let Some(p) = w.strip_prefix(':') {
        ("", Some(p))
    } else if w.contains('.') {
        match w.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (w, None),
        }
    } else {
        (w, None)
    };
    let addr = if addr_part.is_empty() {
        None
    } else {
        let kind = if addr_part.contains(':') {
            Kind::Addr6
        } else {
            Kind::Addr4
        };
        match addr_part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_addr(kind, a)?, parse_addr(kind, b)?);
                if a > b {
                    return Err("empty address range".into());
                }
                Some((a, b))
            }
            None => {
                let a = parse_addr(kind, addr_part)?;
                Some((a, a))
            }
        }
    };
    let ports = match port_part {
        None => None,
        Some(p) => {
            let num = |s: &str| -> Result<u16, String> {
                s.parse::<u16>().map_err(|_| format!("bad port `{s}`"))
            };
            let (a, b) = match p.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(p)?, num(p)?),
            };
            if a > b {
                return Err("empty port range".into());
            }
            Some((a, b))
        }
    };
    Ok((addr, ports))
}
