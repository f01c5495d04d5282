//! The key of a dynamic set or meter: one value or a concatenation (`ipv4_addr .
//! inet_service`, `ifname . ipv4_addr`, `ipv6_addr . inet_service`) packed into a
//! [`Packed`] key of up to 256 bits, the first type in the highest bits used. Widths: IPv4
//! address and mark 32 bits, IPv6 address 128, port 16, protocol 8, interface name 16 (the
//! port's index: the name is what a listing shows, the index what the data path reads). A
//! key of at most 128 bits lives in a narrow store (its `hi` is 0), a wider one in a wide
//! store (`dynstore.rs`); a key wider than 256 bits (`ipv6_addr . ipv6_addr .
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

/// The most bits a key holds.
pub(crate) const MAX_BITS: u32 = 256;

/// A packed key: `hi` the high 128 bits (0 in a key of at most 128 bits), `lo` the low.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Packed {
    pub hi: u128,
    pub lo: u128,
}

impl From<u128> for Packed {
    fn from(lo: u128) -> Self {
        Packed { hi: 0, lo }
    }
}

impl Packed {
    /// The key shifted left by `w` bits (0 < `w` <= 128), the bits past 256 dropped.
    fn shl(self, w: u32) -> Self {
        if w >= 128 {
            return Packed { hi: self.lo, lo: 0 };
        }
        Packed {
            hi: self.hi << w | self.lo >> (128 - w),
            lo: self.lo << w,
        }
    }

    /// The key shifted right by `w` bits (0 < `w` <= 128).
    fn shr(self, w: u32) -> Self {
        if w >= 128 {
            return Packed { hi: 0, lo: self.hi };
        }
        Packed {
            hi: self.hi >> w,
            lo: self.lo >> w | self.hi << (128 - w),
        }
    }
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
pub(crate) fn push(key: Packed, kind: Kind, v: u128) -> Option<Packed> {
    let w = width(kind)?;
    let low = if w >= 128 { v } else { v & ((1u128 << w) - 1) };
    let mut k = key.shl(w);
    k.lo |= low;
    Some(k)
}

impl DynKey {
    /// The key of `types`, or why a dynamic set cannot hold it.
    pub(crate) fn new(types: Vec<SetType>, ports: &PortsByName) -> Result<Self, String> {
        let bits: u32 = types.iter().filter_map(|t| width(t.kind())).sum();
        if bits > MAX_BITS {
            return Err(format!(
                "a dynamic set's key is at most {MAX_BITS} bits; `{}` is {bits}",
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

    /// Whether the key needs a wide store (more than 128 bits).
    pub(crate) fn wide(&self) -> bool {
        self.types
            .iter()
            .filter_map(|t| width(t.kind()))
            .sum::<u32>()
            > 128
    }

    /// The type as nft writes it (`ipv4_addr . inet_service`).
    pub fn type_text(&self) -> String {
        print::types_text(&self.types)
    }

    /// The store key of one element (a value per type): `None` for a range, a shorter
    /// prefix, a wildcard name or a name that is no port's.
    pub fn key(&self, elem: &[Value]) -> Option<Packed> {
        if elem.len() != self.types.len() {
            return None;
        }
        let mut key = Packed::default();
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
    pub fn values(&self, key: Packed) -> Vec<Value> {
        let mut out = Vec::with_capacity(self.types.len());
        let mut rest = key;
        for t in self.types.iter().rev() {
            let w = width(t.kind()).unwrap_or(128);
            let v = if w >= 128 {
                rest.lo
            } else {
                rest.lo & ((1u128 << w) - 1)
            };
            rest = rest.shr(w);
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
    pub fn text(&self, key: Packed) -> String {
        print::kinds_elem(&self.kinds(), &self.values(key))
    }

    /// A store key as `nft -j` writes it (a value, or `{"concat": [V, …]}`).
    pub fn json(&self, key: Packed) -> J {
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
        assert_eq!(
            key,
            Packed::from((0xc612_0102u128 << 16) | 22),
            "each value in its width"
        );
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
            vec![a.clone()]
        );
        let two = DynKey::new(vec![SetType::Ipv4Addr, SetType::Ipv4Addr], &ports).unwrap();
        let b = Value::Prefix(Addr::from_v4([203, 0, 113, 9]), 32);
        let pair = [e[0].clone(), b];
        assert_eq!(two.values(two.key(&pair).unwrap()), pair);
        assert!(!two.wide());
        // Wider than 128 bits: the address's top 16 bits move to `hi`.
        let six = DynKey::new(vec![SetType::Ipv6Addr, SetType::InetService], &ports).unwrap();
        assert!(six.wide());
        let mut x = [0u8; 16];
        x[0] = 0x20;
        x[1] = 0x01;
        x[15] = 0x09;
        let a6 = Value::Prefix(Addr(x), 128);
        let e6 = [a6.clone(), Value::Num(443)];
        let key = six.key(&e6).unwrap();
        assert_eq!(key.hi, 0x2001, "the first value in the highest bits");
        assert_eq!(key.lo & 0xffff, 443);
        assert_eq!(key.lo >> 16 & 0xff, 0x09);
        assert_eq!(six.values(key), e6);
        assert_eq!(six.text(key), "2001::9 . 443");
        let pair6 = DynKey::new(vec![SetType::Ipv6Addr, SetType::Ipv6Addr], &ports).unwrap();
        let p6 = [a6.clone(), a];
        let key = pair6.key(&p6).unwrap();
        assert_eq!(key.lo, u128::MAX);
        assert_eq!(pair6.values(key), p6);
        let err = DynKey::new(
            vec![SetType::Ipv6Addr, SetType::Ipv6Addr, SetType::InetService],
            &ports,
        );
        assert!(err.unwrap_err().contains("272"));
    }
}
