//! The key of a dynamic set or meter: one value or a concatenation (`ipv4_addr .
//! inet_service`, `ifname . ipv4_addr`) packed into the store's 128 bits, the first type
//! in the highest bits used. Widths: IPv4 address and mark 32 bits, IPv6 address 128, port
//! 16, protocol 8, interface name 16 (the port's index: the name is what a listing shows,
//! the index what the data path reads). A key wider than 128 bits (`ipv6_addr .
//! inet_service`) is refused when the ruleset compiles.

use super::keytable::value_interval;
use crate::rules::ast::{Field, Kind, SetType, Value};
use crate::rules::print;
use serde_json::{Value as J, json};

/// The appliance's ports by name (`compile::PortsByName`, spelled out: the compiled
/// ruleset's module depends on this one).
type PortsByName = std::collections::BTreeMap<String, u16>;

/// The type of a dynamic set's key and what turns its values into store keys and back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynKey {
    pub types: Vec<SetType>,
    /// The appliance's ports (interface names), for `ifname` positions.
    ports: PortsByName,
}

/// The bits a value of `kind` takes in a packed key (`None`: not a dynamic-set key).
pub(crate) fn width(kind: Kind) -> Option<u32> {
    Some(match kind {
        Kind::Addr4 | Kind::Mark => 32,
        Kind::Addr6 => 128,
        Kind::Port | Kind::IfName => 16,
        Kind::Proto => 8,
        _ => return None,
    })
}

/// `key` with value `v` of `kind` appended in the lowest bits (the value cut to its
/// width: an IPv4 address is held as an IPv4-mapped 128-bit number); `None` for a kind no
/// dynamic set holds.
pub(crate) fn push(key: u128, kind: Kind, v: u128) -> Option<u128> {
    let w = width(kind)?;
    let low = if w >= 128 { v } else { v & ((1u128 << w) - 1) };
    Some(key.checked_shl(w).unwrap_or(0) | low)
}

impl DynKey {
    /// The key of `types`, or why a dynamic set cannot hold it.
    pub(crate) fn new(types: Vec<SetType>, ports: &PortsByName) -> Result<Self, String> {
        let bits: u32 = types.iter().filter_map(|t| width(t.kind())).sum();
        if bits > 128 {
            return Err(format!(
                "a dynamic set's key is at most 128 bits; `{}` is {bits}",
                print::types_text(&types)
            ));
        }
        let ports = if types.contains(&SetType::IfName) {
            ports.clone()
        } else {
            PortsByName::new()
        };
        Ok(DynKey { types, ports })
    }

    /// The key type of the statement fields `key` (a meter's).
    pub(crate) fn of_fields(key: &[Field], ports: &PortsByName) -> Result<Self, String> {
        let types = key
            .iter()
            .map(|f| SetType::of_kind(f.kind()))
            .collect::<Option<Vec<_>>>()
            .ok_or(
                "a dynamic set's key holds addresses, ports, protocols, marks and \
                 interface names",
            )?;
        Self::new(types, ports)
    }

    /// The type as nft writes it (`ipv4_addr . inet_service`).
    pub fn type_text(&self) -> String {
        print::types_text(&self.types)
    }

    /// The store key of one element (a value per type): `None` for a range, a shorter
    /// prefix, a wildcard name or a name that is no port's.
    pub fn key(&self, elem: &[Value]) -> Option<u128> {
        if elem.len() != self.types.len() {
            return None;
        }
        let mut key = 0u128;
        for (t, v) in self.types.iter().zip(elem) {
            let x = match (t, v) {
                (SetType::IfName, Value::Str(name)) => u128::from(*self.ports.get(name)?),
                (SetType::IfName, _) => return None,
                _ => value_interval(t.kind(), v)
                    .filter(|(lo, hi)| lo == hi)
                    .map(|(lo, _)| lo)?,
            };
            key = push(key, t.kind(), x)?;
        }
        Some(key)
    }

    /// The values of a store key, one per type.
    pub fn values(&self, key: u128) -> Vec<Value> {
        let mut out = Vec::with_capacity(self.types.len());
        let mut rest = key;
        for t in self.types.iter().rev() {
            let w = width(t.kind()).unwrap_or(128);
            let v = if w >= 128 {
                rest
            } else {
                rest & ((1u128 << w) - 1)
            };
            rest = rest.checked_shr(w).unwrap_or(0);
            out.push(match t.kind() {
                Kind::Addr4 => Value::Prefix(
                    crate::wire::Addr::from_v4(u32::try_from(v).unwrap_or(0).to_be_bytes()),
                    32,
                ),
                Kind::Addr6 => Value::Prefix(crate::wire::Addr(v.to_be_bytes()), 128),
                Kind::IfName => Value::Str(
                    self.ports
                        .iter()
                        .find(|(_, i)| u128::from(**i) == v)
                        .map_or_else(|| format!("#{v}"), |(n, _)| n.clone()),
                ),
                _ => Value::Num(u64::try_from(v).unwrap_or(u64::MAX)),
            });
        }
        out.reverse();
        out
    }

    fn kinds(&self) -> Vec<Kind> {
        self.types.iter().map(|t| t.kind()).collect()
    }

    /// A store key as nft writes an element of the set (`198.18.1.2 . 22`).
    pub fn text(&self, key: u128) -> String {
        print::kinds_elem(&self.kinds(), &self.values(key))
    }

    /// A store key as `nft -j` writes it (a value, or `{"concat": [V, …]}`).
    pub fn json(&self, key: u128) -> J {
        let vals = self.values(key);
        let one: Vec<J> = self
            .types
            .iter()
            .zip(&vals)
            .map(|(t, v)| crate::rules::json::value_json(t.kind(), v))
            .collect();
        match <[J; 1]>::try_from(one) {
            Ok([v]) => v,
            Err(all) => json!({ "concat": all }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Addr;

    #[test]
    fn keys_pack_and_list_back() {
        let mut ports = PortsByName::new();
        ports.insert("lan".into(), 0);
        ports.insert("wan".into(), 1);
        let k = DynKey::new(vec![SetType::Ipv4Addr, SetType::InetService], &ports).unwrap();
        let e = [
            Value::Prefix(Addr::from_v4([198, 18, 1, 2]), 32),
            Value::Num(22),
        ];
        let key = k.key(&e).unwrap();
        assert_eq!(key, (0xc612_0102u128 << 16) | 22, "each value in its width");
        assert_eq!(k.text(key), "198.18.1.2 . 22");
        assert_eq!(
            k.json(key),
            json!({"concat": ["198.18.1.2", 22]}),
            "as nft -j lists a concatenated element"
        );
        let i = DynKey::new(vec![SetType::IfName, SetType::Ipv4Addr], &ports).unwrap();
        let key = i.key(&[Value::Str("wan".into()), e[0].clone()]).unwrap();
        assert_eq!(i.text(key), "\"wan\" . 198.18.1.2");
        assert_eq!(i.key(&[Value::Str("dmz".into()), e[0].clone()]), None);
        assert_eq!(i.key(&[Value::Str("wa*".into()), e[0].clone()]), None);
        let one = DynKey::new(vec![SetType::Ipv6Addr], &ports).unwrap();
        let a = Value::Prefix(Addr([0xff; 16]), 128);
        assert_eq!(
            one.values(one.key(std::slice::from_ref(&a)).unwrap()),
            vec![a]
        );
        let two = DynKey::new(vec![SetType::Ipv4Addr, SetType::Ipv4Addr], &ports).unwrap();
        let b = Value::Prefix(Addr::from_v4([203, 0, 113, 9]), 32);
        let pair = [e[0].clone(), b];
        assert_eq!(two.values(two.key(&pair).unwrap()), pair);
        let err = DynKey::new(vec![SetType::Ipv6Addr, SetType::InetService], &ports);
        assert!(err.unwrap_err().contains("144"));
    }
}
