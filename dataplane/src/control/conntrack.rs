//! The control protocol's form of conntrack's types, converted here so the tracker names
//! none of them: counters ([`Counters`] → [`CtCounters`]), event kinds, a refused tunable
//! (→ a `bad_tunable` [`ControlError`] naming the field), the TCP window, a table entry
//! ([`Snapshot::to_ct_entry`], and back: [`Synced::from_ct_entry`]) and an event line
//! ([`CtEvent::to_line`]). The strings of a listing are written here, on the control
//! thread, not on a worker's lcore.
//!
//! The entry and event conversions are methods of the engine's types (an `impl` block of
//! this crate outside their module), so every caller, `mgmt` included, spells them as
//! before.

use crate::conntrack::filter::{has_ports, proto_name};
use crate::conntrack::key::is_icmp;
use crate::conntrack::table::{ASSURED, DST_NAT, SEEN_REPLY, SRC_NAT, SYNCED};
use crate::conntrack::{
    Counters, CtEvent, EventKind, FlowKey, RefusedTunable, Snapshot, Synced, TcpState, TcpWindow,
};
use crate::control::proto::{
    ControlError, CtCounters, CtEntry, CtTcpWindow, CtTuple, ErrorCode, EventLine, EventType,
};
use crate::wire::{Addr, Family};

impl From<EventKind> for EventType {
    fn from(k: EventKind) -> EventType {
        match k {
            EventKind::New => EventType::New,
            EventKind::Update => EventType::Update,
            EventKind::Destroy => EventType::Destroy,
        }
    }
}

impl From<Counters> for CtCounters {
    fn from(c: Counters) -> CtCounters {
        let s = c.stats;
        CtCounters {
            found: s.found,
            invalid: s.invalid,
            insert: s.insert,
            insert_failed: s.insert_failed,
            drop: s.drop,
            early_drop: s.early_drop,
            error: s.error,
            search_restart: s.search_restart,
            entries: c.entries,
            max: c.max,
        }
    }
}

impl From<RefusedTunable> for ControlError {
    fn from(e: RefusedTunable) -> ControlError {
        let mut err = ControlError::new(ErrorCode::BadTunable, e.reason);
        err.field = e.field;
        err
    }
}

/// `From` both ways between the tracker's window and the protocol's copy. One field list:
/// each side is destructured without `..` and built without defaults, so a field added to
/// either type and not to this list fails to compile.
macro_rules! convert_fields {
    ($($f:ident),* $(,)?) => {
        impl From<TcpWindow> for CtTcpWindow {
            fn from(w: TcpWindow) -> Self {
                let TcpWindow { $($f),* } = w;
                CtTcpWindow { $($f),* }
            }
        }

        impl From<CtTcpWindow> for TcpWindow {
            fn from(w: CtTcpWindow) -> Self {
                let CtTcpWindow { $($f),* } = w;
                TcpWindow { $($f),* }
            }
        }
    };
}

convert_fields!(
    win,
    scale,
    flags,
    last_end,
    last_win,
    last_index,
    last_dir,
    last_wscale,
    last_flags,
);

impl Synced {
    /// The synced form of a control-protocol entry (what [`Snapshot::to_ct_entry`] wrote):
    /// the inverse conversion, for entries a sync peer sent. Errors name the field.
    pub fn from_ct_entry(e: &CtEntry) -> Result<Synced, ControlError> {
        let bad = |field: &str, msg: String| {
            let mut err = ControlError::new(ErrorCode::BadRequest, msg);
            err.field = Some(field.to_string());
            err
        };
        let family = match e.family.as_str() {
            "ipv4" => Family::V4,
            "ipv6" => Family::V6,
            f => return Err(bad("family", format!("{f:?} is not ipv4 or ipv6"))),
        };
        let key = |name: &str, t: &CtTuple| -> Result<FlowKey, ControlError> {
            let v4 = t.src.is_ipv4() && t.dst.is_ipv4();
            if v4 != (family == Family::V4) {
                return Err(bad(name, "address family differs from the entry's".into()));
            }
            let icmp = is_icmp(family, e.proto_num);
            let (sport, dport) = if icmp {
                (t.icmp_id.unwrap_or(0), t.icmp_type.map_or(0, u16::from))
            } else {
                (t.sport.unwrap_or(0), t.dport.unwrap_or(0))
            };
            Ok(FlowKey {
                src: Addr::from(t.src),
                dst: Addr::from(t.dst),
                sport,
                dport,
                zone: e.zone,
                proto: e.proto_num,
                family,
            })
        };
        let tcp_state = match &e.state {
            Some(n) => Some(
                TcpState::from_name(n)
                    .ok_or_else(|| bad("state", format!("unknown TCP state {n:?}")))?,
            ),
            None => None,
        };
        let mut status = 0;
        for f in &e.status {
            status |= match f.as_str() {
                "SEEN_REPLY" => SEEN_REPLY,
                "ASSURED" => ASSURED,
                "UNREPLIED" | "SRC_NAT" | "DST_NAT" | "SYNCED" | "CONFIRMED" => 0,
                _ => return Err(bad("status", format!("unknown status flag {f:?}"))),
            };
        }
        Ok(Synced {
            orig: key("orig", &e.orig)?,
            reply: key("reply", &e.reply)?,
            tcp_state,
            tcp_window: e.tcp_window.map(Into::into),
            status,
            mark: e.mark,
            timeout_s: Some(u32::try_from(e.timeout).unwrap_or(u32::MAX)),
        })
    }
}

fn tuple(k: &FlowKey, packets: u64, bytes: u64) -> CtTuple {
    let icmp = is_icmp(k.family, k.proto);
    let ports = has_ports(k.proto);
    CtTuple {
        src: k.src.to_ip(),
        dst: k.dst.to_ip(),
        sport: ports.then_some(k.sport),
        dport: ports.then_some(k.dport),
        icmp_type: icmp.then(|| u8::try_from(k.dport).unwrap_or(u8::MAX)),
        icmp_code: icmp.then_some(0),
        icmp_id: icmp.then_some(k.sport),
        packets,
        bytes,
    }
}

impl Snapshot {
    /// The control protocol's form of the entry, listed by worker `worker`.
    pub fn to_ct_entry(&self, worker: u16) -> CtEntry {
        let o = &self.orig;
        let mut status = Vec::new();
        if self.status & SEEN_REPLY == 0 {
            status.push("UNREPLIED".to_string());
        } else {
            status.push("SEEN_REPLY".to_string());
        }
        if self.status & ASSURED != 0 {
            status.push("ASSURED".to_string());
        }
        if self.status & SRC_NAT != 0 {
            status.push("SRC_NAT".to_string());
        }
        if self.status & DST_NAT != 0 {
            status.push("DST_NAT".to_string());
        }
        if self.status & SYNCED != 0 {
            status.push("SYNCED".to_string());
        }
        CtEntry {
            family: match o.family {
                Family::V4 => "ipv4",
                Family::V6 => "ipv6",
            }
            .to_string(),
            proto: proto_name(o.proto),
            proto_num: o.proto,
            state: self.tcp_state.map(|s| s.name().to_string()),
            timeout: self.timeout_s,
            orig: tuple(o, self.packets[0], self.bytes[0]),
            reply: tuple(&self.reply, self.packets[1], self.bytes[1]),
            status,
            mark: self.mark,
            zone: o.zone,
            worker,
            tcp_window: self.tcp_window.map(Into::into),
        }
    }
}

impl CtEvent {
    /// The event-stream line for this event of worker `worker`.
    pub fn to_line(&self, timestamp_ms: u64, worker: u16, lost: u64) -> EventLine {
        EventLine {
            kind: self.kind.into(),
            timestamp_ms,
            entry: self.entry.to_ct_entry(worker),
            lost,
        }
    }
}
