//! A dynamic set's live elements as `nft list set` and `nft -j list set` write them (what
//! the element API lists: `CompiledRuleset::dynset_elements`).

use super::ast::{Kind, Map};
use super::compile::{DynElement, DynKey};
use super::dynset::duration_text;
use serde_json::{Value as J, json};
use std::fmt::Write as _;

/// One live element as `nft list set` writes it (`198.18.0.1 expires 9m58s784ms`,
/// `198.18.1.2 . 22`, `198.18.0.6 timeout 20s expires 19s996ms`: its own timeout where it
/// is not the set's).
pub fn element_text(key: &DynKey, e: &DynElement) -> String {
    let mut s = key.text(e.key);
    if let Some(ns) = e.timeout_ns {
        let _ = write!(s, " timeout {}", duration_text(ns / 1_000_000));
    }
    if let Some(ns) = e.expires_ns {
        let _ = write!(s, " expires {}", duration_text(ns / 1_000_000));
    }
    s
}

/// One live element as `nft -j list set` writes it: the value (`{"concat": […]}` for a
/// concatenation), or `{"elem": {"val": V, "timeout": SECONDS, "expires": SECONDS}}` for
/// an element with a timeout (`timeout` where it is not the set's).
pub fn element_json(key: &DynKey, e: &DynElement) -> J {
    let v = key.json(e.key);
    if e.expires_ns.is_none() && e.timeout_ns.is_none() {
        return v;
    }
    let mut o = serde_json::Map::new();
    o.insert("val".into(), v);
    if let Some(ns) = e.timeout_ns {
        o.insert("timeout".into(), json!(ns / 1_000_000_000));
    }
    if let Some(ns) = e.expires_ns {
        o.insert("expires".into(), json!(ns / 1_000_000_000));
    }
    json!({ "elem": o })
}

/// Element `i` of map `m` whose elements may time out, as `nft list map` and `nft -j
/// list map` write it: with the store's reading `live` where it has a timeout
/// (`198.18.1.2 timeout 10s expires 9s972ms : accept`, `[{"elem": {"val": "198.18.1.2",
/// "timeout": 10, "expires": 9}}, {"accept": null}]`), else as declared (`198.18.1.4 :
/// drop`); `CompiledRuleset::timed_map_elements` gives the live ones.
pub fn map_element(m: &Map, key: &DynKey, i: usize, live: Option<&DynElement>) -> (String, J) {
    let (e, v) = &m.elements[i];
    let kinds: Vec<Kind> = m.key.iter().map(|t| t.kind()).collect();
    let (k, kj) = match live {
        Some(x) => (element_text(key, x), element_json(key, x)),
        None => (
            super::print::kinds_elem(&kinds, e),
            super::json::kinds_elem_json(&kinds, e),
        ),
    };
    (
        super::print::map_elem(m, k, v),
        super::json::map_elem_json(m, kj, v),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::ast::SetType;
    use crate::rules::compile::PortsByName;

    #[test]
    fn elements_list_as_nft_lists_them() {
        let ports = PortsByName::new();
        let ty = DynKey::new(vec![SetType::Ipv4Addr], &ports).unwrap();
        let a = crate::rules::ast::addr_to_u128(crate::wire::Addr::from_v4([127, 0, 0, 2]));
        let e = DynElement {
            key: a.into(),
            expires_ns: Some(598_784_000_000),
            timeout_ns: None,
        };
        assert_eq!(element_text(&ty, &e), "127.0.0.2 expires 9m58s784ms");
        assert_eq!(
            element_json(&ty, &e).to_string(),
            r#"{"elem":{"expires":598,"val":"127.0.0.2"}}"#
        );
        let port = DynKey::new(vec![SetType::InetService], &ports).unwrap();
        let p = DynElement {
            key: 22.into(),
            expires_ns: None,
            timeout_ns: None,
        };
        assert_eq!(element_text(&port, &p), "22");
        assert_eq!(element_json(&port, &p), json!(22));
        let cat = DynKey::new(vec![SetType::Ipv4Addr, SetType::InetService], &ports).unwrap();
        let c = DynElement {
            key: ((a << 16) | 22).into(),
            expires_ns: Some(9_500_000_000),
            timeout_ns: None,
        };
        assert_eq!(element_text(&cat, &c), "127.0.0.2 . 22 expires 9s500ms");
        assert_eq!(
            element_json(&cat, &c),
            json!({"elem": {"val": {"concat": ["127.0.0.2", 22]}, "expires": 9}})
        );
        // Its own timeout, where it is not the set's (nft 1.0.6's listing of an element
        // added with `update @s { ip daddr timeout 20s }` to a set with `timeout 1m`).
        let own = DynElement {
            key: a.into(),
            expires_ns: Some(19_996_000_000),
            timeout_ns: Some(20_000_000_000),
        };
        assert_eq!(
            element_text(&ty, &own),
            "127.0.0.2 timeout 20s expires 19s996ms"
        );
        assert_eq!(
            element_json(&ty, &own),
            json!({"elem": {"val": "127.0.0.2", "timeout": 20, "expires": 19}})
        );
    }
}
