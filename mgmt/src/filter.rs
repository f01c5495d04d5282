//! Query parameters of the conntrack routes: parsed and validated here, so that a typo is
//! a 400 naming the parameter instead of a filter that silently matches everything.

use std::net::IpAddr;

use dataplane::conntrack::filter as ct;
use fwd_proto::{CtFilter, EventType, MAX_PAGE};

use crate::error::ApiError;

/// Default page size of `GET /api/v1/conntrack`.
pub const DEFAULT_PAGE: u32 = 100;

/// TCP states as `conntrack` prints them (fwd's filter takes exactly these).
pub const TCP_STATES: &[&str] = &ct::TCP_STATES;

/// Status flags accepted by `status=` (fwd's filter's published ones).
pub const STATUS_FLAGS: &[&str] = &ct::STATUS_NAMES;

/// Protocol names fwd's filter knows; any number 0..=255 too.
pub const PROTO_NAMES: &[&str] = &ct::PROTO_NAMES;

/// Everything the conntrack routes take from the query string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CtQuery {
    pub filter: CtFilter,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
    pub all: bool,
    pub events: Vec<EventType>,
}

/// Which non-filter parameters a route accepts.
#[derive(Clone, Copy, Debug)]
pub enum Extra {
    Page,
    All,
    Events,
    None,
}

fn check_prefix(field: &str, v: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad_filter(field, format!("{v:?} is not an address or prefix"));
    let (addr, len) = match v.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| bad())?)),
        None => (v, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len.is_some_and(|l| l > max) {
        return Err(bad());
    }
    Ok(v.to_string())
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// A decimal number, digits only (Rust's `parse` also takes a leading `+`, which the
/// published schema does not).
fn parse_num<T: std::str::FromStr>(field: &str, v: &str, what: &str) -> Result<T, ApiError> {
    let bad = || ApiError::bad_filter(field, format!("{v:?} is not {what}"));
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    v.parse().map_err(|_| bad())
}

/// Parses the query pairs of a conntrack route.
pub fn parse(pairs: &[(String, String)], extra: Extra) -> Result<CtQuery, ApiError> {
    let mut q = CtQuery::default();
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in pairs {
        if seen.contains(&k.as_str()) {
            return Err(ApiError::bad_filter(k, format!("`{k}` is given twice")));
        }
        seen.push(k);
        let f = &mut q.filter;
        match (k.as_str(), extra) {
            ("src", _) => f.src = Some(check_prefix(k, v)?),
            ("dst", _) => f.dst = Some(check_prefix(k, v)?),
            ("reply_src", _) => f.reply_src = Some(check_prefix(k, v)?),
            ("reply_dst", _) => f.reply_dst = Some(check_prefix(k, v)?),
            ("sport", _) => f.sport = Some(parse_num(k, v, "a port number")?),
            ("dport", _) => f.dport = Some(parse_num(k, v, "a port number")?),
            ("zone", _) => f.zone = Some(parse_num(k, v, "a zone number (0..=65535)")?),
            ("proto", _) => {
                let p = v.to_ascii_lowercase();
                if !PROTO_NAMES.contains(&p.as_str()) && p.parse::<u8>().is_err() {
                    return Err(ApiError::bad_filter(
                        k,
                        format!("{v:?} is not a protocol name or number"),
                    ));
                }
                f.proto = Some(p);
            }
            ("state", _) => {
                let s = v.to_ascii_uppercase();
                if !TCP_STATES.contains(&s.as_str()) {
                    return Err(ApiError::bad_filter(
                        k,
                        format!("{v:?} is not a TCP state ({})", TCP_STATES.join(", ")),
                    ));
                }
                f.state = Some(s);
            }
            ("status", _) => {
                let s = v.to_ascii_uppercase();
                if !STATUS_FLAGS.contains(&s.as_str()) {
                    return Err(ApiError::bad_filter(
                        k,
                        format!("{v:?} is not a status flag ({})", STATUS_FLAGS.join(", ")),
                    ));
                }
                f.status = Some(s);
            }
            ("family", _) => {
                let s = match v.to_ascii_lowercase().as_str() {
                    "ipv4" | "inet" => "ipv4",
                    "ipv6" | "inet6" => "ipv6",
                    _ => return Err(ApiError::bad_filter(k, "family is `ipv4` or `ipv6`")),
                };
                f.family = Some(s.to_string());
            }
            ("mark", _) => {
                let ok = match v.split_once('/') {
                    Some((m, mask)) => parse_u32(m).is_some() && parse_u32(mask).is_some(),
                    None => parse_u32(v).is_some(),
                };
                if !ok {
                    return Err(ApiError::bad_filter(
                        k,
                        format!("{v:?} is not a mark (`value` or `value/mask`, decimal or 0x hex)"),
                    ));
                }
                f.mark = Some(v.clone());
            }
            ("cursor", Extra::Page) => q.cursor = Some(v.clone()),
            ("limit", Extra::Page) => {
                let n: u32 = parse_num(k, v, "a page size")?;
                if n == 0 || n > MAX_PAGE {
                    return Err(ApiError::bad_filter(
                        k,
                        format!("limit must be in 1..={MAX_PAGE}"),
                    ));
                }
                q.limit = Some(n);
            }
            ("all", Extra::All) => {
                q.all = match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(ApiError::bad_filter(k, "all is `true` or `false`")),
                }
            }
            ("events", Extra::Events) => {
                for name in v.split(',').filter(|s| !s.is_empty()) {
                    let t = match name.to_ascii_uppercase().as_str() {
                        "NEW" => EventType::New,
                        "UPDATE" => EventType::Update,
                        "DESTROY" => EventType::Destroy,
                        _ => {
                            return Err(ApiError::bad_filter(
                                k,
                                format!("{name:?} is not an event type (NEW, UPDATE, DESTROY)"),
                            ));
                        }
                    };
                    if !q.events.contains(&t) {
                        q.events.push(t);
                    }
                }
            }
            _ => {
                return Err(ApiError::bad_filter(k, format!("unknown parameter `{k}`")));
            }
        }
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn every_filter_is_parsed() {
        let q = parse(
            &pairs(&[
                ("src", "198.18.0.0/24"),
                ("dst", "2001:db8::1"),
                ("sport", "1234"),
                ("dport", "80"),
                ("proto", "TCP"),
                ("state", "established"),
                ("mark", "0x10/0xff"),
                ("zone", "3"),
                ("family", "ipv4"),
                ("status", "assured"),
                ("limit", "5"),
                ("cursor", "abc"),
            ]),
            Extra::Page,
        )
        .unwrap();
        assert_eq!(q.filter.src.as_deref(), Some("198.18.0.0/24"));
        assert_eq!(q.filter.proto.as_deref(), Some("tcp"));
        assert_eq!(q.filter.state.as_deref(), Some("ESTABLISHED"));
        assert_eq!(q.filter.status.as_deref(), Some("ASSURED"));
        assert_eq!(
            (q.filter.sport, q.filter.dport, q.filter.zone),
            (Some(1234), Some(80), Some(3))
        );
        assert_eq!((q.limit, q.cursor.as_deref()), (Some(5), Some("abc")));
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (k, v) in [
            ("src", "198.18.0.0/33"),
            ("dst", "nope"),
            ("sport", "70000"),
            ("proto", "carrier-pigeon"),
            ("state", "SLEEPY"),
            ("mark", "0xZZ"),
            ("family", "ipx"),
            ("status", "HAPPY"),
            ("srcc", "1.2.3.4"),
        ] {
            let e = parse(&pairs(&[(k, v)]), Extra::Page).unwrap_err();
            assert_eq!(
                (e.code.as_str(), e.field.as_deref()),
                ("bad_filter", Some(k)),
                "{k}={v}"
            );
        }
        // Parameters of other routes are unknown here.
        let e = parse(&pairs(&[("all", "true")]), Extra::Page).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("all"));
        let e = parse(&pairs(&[("limit", "0")]), Extra::Page).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("limit"));
        let e = parse(&pairs(&[("dport", "1"), ("dport", "2")]), Extra::None).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("dport"));
    }

    #[test]
    fn events_and_all() {
        let q = parse(&pairs(&[("events", "new,DESTROY,new")]), Extra::Events).unwrap();
        assert_eq!(q.events, vec![EventType::New, EventType::Destroy]);
        assert!(parse(&pairs(&[("all", "true")]), Extra::All).unwrap().all);
        assert!(parse(&pairs(&[("events", "BOOM")]), Extra::Events).is_err());
    }
}
