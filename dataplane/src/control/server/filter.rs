//! The connection filter the server evaluates itself (subscriptions, and checking a
//! filter before it is fanned out).

use crate::control::proto::{ControlError, CtEntry, CtFilter, ErrorCode};
use crate::route::Prefix;
use crate::wire::Addr;

/// A [`CtFilter`] with its addresses parsed. Fields the server cannot evaluate on an
/// entry (state, mark, status) are matched on the entry's own fields.
#[derive(Debug, Clone, Default)]
pub struct CompiledFilter {
    raw: CtFilter,
    src: Option<Prefix>,
    dst: Option<Prefix>,
}

pub(super) fn parse_prefix(field: &str, s: &str) -> Result<Prefix, ControlError> {
    let text = if s.contains('/') {
        s.to_string()
    } else if s.contains(':') {
        format!("{s}/128")
    } else {
        format!("{s}/32")
    };
    text.parse::<Prefix>()
        .map_err(|e| ControlError::new(ErrorCode::BadFilter, format!("{s:?}: {e}")).field(field))
}

impl CompiledFilter {
    /// Parses the address fields of `f`.
    pub fn new(f: &CtFilter) -> Result<Self, ControlError> {
        Ok(CompiledFilter {
            raw: f.clone(),
            src: f
                .src
                .as_deref()
                .map(|s| parse_prefix("src", s))
                .transpose()?,
            dst: f
                .dst
                .as_deref()
                .map(|s| parse_prefix("dst", s))
                .transpose()?,
        })
    }

    /// Whether `e` matches every given field (used for event streams).
    pub fn matches(&self, e: &CtEntry) -> bool {
        let f = &self.raw;
        let ip_in = |p: &Option<Prefix>, a: std::net::IpAddr| {
            p.as_ref().is_none_or(|p| p.contains(Addr::from(a)))
        };
        ip_in(&self.src, e.orig.src)
            && ip_in(&self.dst, e.orig.dst)
            && f.sport.is_none_or(|p| e.orig.sport == Some(p))
            && f.dport.is_none_or(|p| e.orig.dport == Some(p))
            && f.proto
                .as_deref()
                .is_none_or(|p| p.eq_ignore_ascii_case(&e.proto) || p == e.proto_num.to_string())
            && f.family.as_deref().is_none_or(|x| x == e.family)
            && f.zone.is_none_or(|z| z == e.zone)
            && f.state
                .as_deref()
                .is_none_or(|s| e.state.as_deref() == Some(s))
            && f.status
                .as_deref()
                .is_none_or(|s| e.status.iter().any(|x| x == s))
    }
}
