//! Packet mangling statements beside the parser's (`parse/mangle.rs`): their listing
//! (`nft list ruleset`), their `nft -j` JSON form, and their checks. MSS clamping:
//! `tcp option maxseg size set N` lowers the option to N, `set rt mtu` to the route's MTU
//! less 40 (IPv4) or 60 (IPv6) bytes of headers; both leave a smaller MSS, a segment
//! without the option and a malformed option alone (docs/rules.md, "MSS clamping").

use super::Error;
use super::ast::{Field, Hook, Kind, MssValue, Pos};
use serde_json::{Value as J, json};

/// The listing of `ip|ip6 dscp set N` (nft writes a value's name, `cs1`, or its number
/// in hex, `0x3f`).
/// `value` is the number as the listing writes a DSCP (`print::value`).
pub fn dscp_text(f: Field, value: &str) -> String {
    let (proto, _) = f.words();
    format!("{proto} dscp set {value}")
}

/// The `nft -j` form: `{"mangle": {"key": {"payload": {"protocol": "ip", "field":
/// "dscp"}}, "value": "cs1" | 63}}`.
/// `value` is the number in the JSON form of a DSCP (`json::value_json`).
pub fn dscp_json(f: Field, value: J) -> J {
    let (proto, _) = f.words();
    json!({"mangle": {"key": {"payload": {"protocol": proto, "field": "dscp"}}, "value": value}})
}

/// Reads a `mangle` statement's body when it sets `ip|ip6 dscp` (`None`: another key).
pub fn read_dscp_json(body: &J, path: &str) -> Option<Result<(Field, u8), Error>> {
    let p = body.get("key")?.get("payload")?;
    if p.get("field").and_then(J::as_str) != Some("dscp") {
        return None;
    }
    let f = match p.get("protocol").and_then(J::as_str) {
        Some("ip") => Field::IpDscp,
        Some("ip6") => Field::Ip6Dscp,
        _ => return None,
    };
    let v = body.get("value").unwrap_or(&J::Null);
    let n = match v {
        J::String(s) => super::names::lookup(Kind::Dscp, s),
        _ => v.as_u64(),
    };
    Some(
        n.and_then(|n| u8::try_from(n).ok())
            .filter(|&n| n <= 63)
            .map(|n| (f, n))
            .ok_or_else(|| Error::json(path, "the DSCP must be 0-63 or a DSCP name")),
    )
}

/// The listing of `tcp option maxseg size set …`.
pub fn mss_text(v: MssValue) -> String {
    match v {
        MssValue::Num(n) => format!("tcp option maxseg size set {n}"),
        MssValue::RtMtu => "tcp option maxseg size set rt mtu".into(),
    }
}

/// The `nft -j` form: `{"mangle": {"key": {"tcp option": …}, "value": N | {"rt": …}}}`.
pub fn mss_json(v: MssValue) -> J {
    let value = match v {
        MssValue::Num(n) => json!(n),
        MssValue::RtMtu => json!({"rt": {"key": "mtu"}}),
    };
    json!({"mangle": {"key": {"tcp option": {"name": "maxseg", "field": "size"}}, "value": value}})
}

/// Reads a `mangle` statement's body when it sets a TCP option (`None`: another key).
pub fn read_mangle_json(body: &J, path: &str) -> Option<Result<MssValue, Error>> {
    let opt = body.get("key")?.get("tcp option")?;
    let name = opt.get("name").and_then(J::as_str).unwrap_or("");
    let field = opt.get("field").and_then(J::as_str).unwrap_or("");
    if (name, field) != ("maxseg", "size") {
        return Some(Err(Error::json(
            path,
            format!("setting `tcp option {name} {field}` is not supported by this appliance"),
        )));
    }
    let v = body.get("value").unwrap_or(&J::Null);
    if v.get("rt").and_then(|r| r.get("key")).and_then(J::as_str) == Some("mtu") {
        return Some(Ok(MssValue::RtMtu));
    }
    Some(
        v.as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .map(MssValue::Num)
            .ok_or_else(|| Error::json(path, "the MSS must be a number 0-65535 or `rt mtu`")),
    )
}

/// `rt mtu` needs a route: the kernel refuses it in chains of the prerouting and input
/// hooks.
pub fn check_mss(hook: Hook, v: MssValue, pos: Pos) -> Result<(), Error> {
    if v == MssValue::RtMtu && matches!(hook, Hook::Prerouting | Hook::Input) {
        return Err(Error::at(
            pos,
            "rt mtu",
            format!(
                "`rt mtu` needs the route of the packet: not in a chain of the {} hook \
                 (the kernel refuses it there too)",
                hook.name()
            ),
        ));
    }
    Ok(())
}
