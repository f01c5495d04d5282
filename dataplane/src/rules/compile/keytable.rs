//! Hash tables over a key of one or more fields: the anonymous sets of concatenations
//! (`ip saddr . tcp dport { 198.18.1.2 . 22 }`) and verdict maps (`ct state vmap { … }`).
//!
//! Tuple-space search, as in the chain classifier: every element value becomes one or more
//! prefixes (a port or address range is split into aligned blocks, an interface name
//! becomes the indices of the ports it names), an element the cross product of its fields'
//! prefixes. Entries with the same prefix lengths on every field share a *shape*: one hash
//! table keyed by the masked field values. A packet costs one hash lookup per shape (a set
//! of exact values has one shape), never a scan over the elements. When elements overlap
//! the first one written wins (nft refuses overlapping elements).

use crate::rules::ast::{Field, Kind, MAX_CONCAT, Value, addr_to_u128, prefix_mask, prefixes};
use rustc_hash::FxHashMap;

/// Most entries one element may expand to (cross product of its fields' prefixes).
const MAX_ENTRIES_PER_ELEMENT: usize = 256;
/// Most distinct shapes (prefix-length combinations) one table may hold.
pub const MAX_SHAPES: usize = 32;

type Key = [u128; MAX_CONCAT];

/// The port indices an interface-name value stands for, or why it names none.
pub(super) type PortsOf<'a> = &'a dyn Fn(Field, &str) -> Result<Vec<u16>, String>;

#[derive(Debug)]
struct Shape {
    masks: Key,
    map: FxHashMap<Key, u32>,
}

#[derive(Debug)]
pub(crate) struct KeyTable {
    fields: Box<[Field]>,
    shapes: Vec<Shape>,
}

fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

/// The inclusive `u128` interval of a value (`None`: an interface name).
pub(super) fn value_interval(kind: Kind, v: &Value) -> Option<(u128, u128)> {
    Some(match v {
        Value::Num(n) => (u128::from(*n), u128::from(*n)),
        Value::Range(a, b) => (u128::from(*a), u128::from(*b)),
        Value::Prefix(a, len) => {
            let m = prefix_mask(kind, *len);
            let lo = addr_to_u128(*a) & m;
            (lo, lo | !m)
        }
        Value::AddrRange(a, b) => (addr_to_u128(*a), addr_to_u128(*b)),
        Value::Str(_) => return None,
    })
}

impl KeyTable {
    /// Builds the table. `ports_of` gives the port indices an interface-name value stands
    /// for; `charge` is asked before entries are added. Errors are messages for the rule.
    pub(super) fn build<'e>(
        fields: &[Field],
        elements: impl Iterator<Item = &'e [Value]>,
        ports_of: PortsOf<'_>,
        charge: &mut dyn FnMut(usize) -> bool,
    ) -> Result<KeyTable, String> {
        let mut t = KeyTable {
            fields: fields.into(),
            shapes: Vec::new(),
        };
        // One field: overlapping elements are refused, as the kernel's interval sets do
        // ("conflicting intervals specified").
        let mut spans = Vec::new();
        for (i, e) in elements.enumerate() {
            if let ([f], [v]) = (fields, e)
                && let Some(span) = value_interval(f.kind(), v)
            {
                spans.push(span);
            }
            // Per field: the (value, prefix length) entries of this element.
            let mut dims: Vec<Vec<(u128, u8)>> = Vec::with_capacity(fields.len());
            for (&f, v) in fields.iter().zip(e) {
                let mut out = Vec::new();
                match (value_interval(f.kind(), v), v) {
                    (Some((lo, hi)), _) => {
                        if !prefixes(lo, hi, 128, &mut out) {
                            return Err("a range too wide to index in a set".into());
                        }
                    }
                    (None, Value::Str(name)) => {
                        out.extend(ports_of(f, name)?.into_iter().map(|p| (u128::from(p), 128)));
                    }
                    (None, _) => return Err("value does not fit this key".into()),
                }
                dims.push(out);
            }
            let n = dims
                .iter()
                .map(Vec::len)
                .fold(1usize, usize::saturating_mul);
            if n > MAX_ENTRIES_PER_ELEMENT {
                return Err(format!(
                    "an element expands to {n} entries, more than {MAX_ENTRIES_PER_ELEMENT}"
                ));
            }
            if !charge(n) {
                return Err("the compile budget is exceeded".into());
            }
            // Odometer over the cross product (an empty dimension: no entries).
            let mut idx = vec![0usize; dims.len()];
            if n == 0 {
                continue;
            }
            loop {
                let (mut key, mut lens) = ([0u128; MAX_CONCAT], [0u8; MAX_CONCAT]);
                for (d, (&j, dim)) in idx.iter().zip(&dims).enumerate() {
                    (key[d], lens[d]) = dim[j];
                }
                t.insert(key, lens, u32::try_from(i).unwrap_or(u32::MAX))?;
                let mut d = 0;
                while d < idx.len() {
                    idx[d] += 1;
                    if idx[d] < dims[d].len() {
                        break;
                    }
                    idx[d] = 0;
                    d += 1;
                }
                if d == idx.len() {
                    break;
                }
            }
        }
        spans.sort_unstable();
        if spans.windows(2).any(|w| w[1].0 <= w[0].1) {
            return Err("conflicting intervals specified (elements overlap)".into());
        }
        Ok(t)
    }

    /// The key's fields.
    pub(crate) fn fields(&self) -> &[Field] {
        &self.fields
    }

    fn insert(&mut self, key: Key, lens: [u8; MAX_CONCAT], elem: u32) -> Result<(), String> {
        let masks = lens.map(mask128);
        let si = match self.shapes.iter().position(|s| s.masks == masks) {
            Some(i) => i,
            None if self.shapes.len() < MAX_SHAPES => {
                self.shapes.push(Shape {
                    masks,
                    map: FxHashMap::default(),
                });
                self.shapes.len() - 1
            }
            None => {
                return Err(format!(
                    "more than {MAX_SHAPES} distinct prefix lengths in one set (split it)"
                ));
            }
        };
        let mut k = key;
        for (x, m) in k.iter_mut().zip(masks) {
            *x &= m;
        }
        self.shapes[si].map.entry(k).or_insert(elem);
        Ok(())
    }

    /// The first element holding the packet's key: `None` when a key field does not apply
    /// to the packet (the match fails, also under `!=`), `Some(None)` when no element
    /// holds the key.
    /// `value` gives a field's value in the packet (the evaluator's `field_value`).
    pub(super) fn lookup(&self, value: impl Fn(Field) -> Option<u128>) -> Option<Option<u32>> {
        let mut key = [0u128; MAX_CONCAT];
        for (k, &f) in key.iter_mut().zip(self.fields.iter()) {
            *k = value(f)?;
        }
        Some(self.find(&key))
    }

    fn find(&self, key: &Key) -> Option<u32> {
        let mut best: Option<u32> = None;
        for s in &self.shapes {
            let mut k = *key;
            for (x, m) in k.iter_mut().zip(s.masks) {
                *x &= m;
            }
            if let Some(&e) = s.map.get(&k)
                && best.is_none_or(|b| e < b)
            {
                best = Some(e);
            }
        }
        best
    }
}
