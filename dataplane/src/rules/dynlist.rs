//! A dynamic set's live elements as `nft list set` and `nft -j list set` write them (what
//! the element API lists: `CompiledRuleset::dynset_elements`).

use super::ast::{Kind, SetType, Value};
use super::compile::DynElement;
use super::dynset::duration_text;
use serde_json::{Value as J, json};
use std::fmt::Write as _;

/// The value of a dynamic set's key (`key` as the store holds it).
pub fn key_value(ty: SetType, key: u128) -> Value {
    match ty.kind() {
        Kind::Addr4 => Value::Prefix(crate::wire::Addr(key.to_be_bytes()), 32),
        Kind::Addr6 => Value::Prefix(crate::wire::Addr(key.to_be_bytes()), 128),
        _ => Value::Num(u64::try_from(key).unwrap_or(u64::MAX)),
    }
}

/// A live element's key as nft writes a value of the set's type (`198.18.0.1`).
pub fn key_text(ty: SetType, key: u128) -> String {
    super::print::value(ty.kind(), &key_value(ty, key))
}

/// One live element as `nft list set` writes it (`198.18.0.1 expires 9m58s784ms`; the
/// element's own timeout is not kept, so `timeout` is not written).
pub fn element_text(ty: SetType, e: &DynElement) -> String {
    let mut s = key_text(ty, e.key);
    if let Some(ns) = e.expires_ns {
        let _ = write!(s, " expires {}", duration_text(ns / 1_000_000));
    }
    s
}

/// One live element as `nft -j list set` writes it: the value, or `{"elem": {"val": V,
/// "expires": SECONDS}}` for an element with a timeout.
pub fn element_json(ty: SetType, e: &DynElement) -> J {
    let v = super::json::value_json(ty.kind(), &key_value(ty, e.key));
    match e.expires_ns {
        Some(ns) => json!({"elem": {"val": v, "expires": ns / 1_000_000_000}}),
        None => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_list_as_nft_lists_them() {
        let a = crate::rules::ast::addr_to_u128(crate::wire::Addr::from_v4([127, 0, 0, 2]));
        let e = DynElement {
            key: a,
            expires_ns: Some(598_784_000_000),
        };
        assert_eq!(
            element_text(SetType::Ipv4Addr, &e),
            "127.0.0.2 expires 9m58s784ms"
        );
        assert_eq!(
            element_json(SetType::Ipv4Addr, &e).to_string(),
            r#"{"elem":{"expires":598,"val":"127.0.0.2"}}"#
        );
        let p = DynElement {
            key: 22,
            expires_ns: None,
        };
        assert_eq!(element_text(SetType::InetService, &p), "22");
        assert_eq!(element_json(SetType::InetService, &p), json!(22));
    }
}
