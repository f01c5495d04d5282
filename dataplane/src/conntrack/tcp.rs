//! The TCP tracker: Linux's `nf_conntrack_proto_tcp.c` state machine and window tracking,
//! re-expressed over the parser's [`TcpInfo`] summary.
//!
//! Differences from Linux are listed in `docs/conntrack.md` ("TCP"): no SACK blocks (the
//! summary carries none, so `sack == ack`), no retransmission counter (so no
//! `nf_conntrack_tcp_timeout_max_retrans`), no NAT sequence offsets (no helpers).

use super::key::Direction;
use super::state::InvalidReason;
pub use super::state::TcpState;
use super::tunables::Tunables;
use crate::wire::{TcpFlags, TcpInfo};

// The transition table of nf_conntrack_proto_tcp.c (Linux 6.x), indexed
// [direction][flag class][old state]. IV = invalid, IG = ignore.
const NO: u8 = 0;
const SS: u8 = 1;
const SR: u8 = 2;
const ES: u8 = 3;
const FW: u8 = 4;
const CW: u8 = 5;
const LA: u8 = 6;
const TW: u8 = 7;
const CL: u8 = 8;
const S2: u8 = 9;
const IV: u8 = 10;
const IG: u8 = 11;

// Flag classes (Linux `enum tcp_bit_set`).
const SYN_SET: u8 = 0;
const SYNACK_SET: u8 = 1;
const FIN_SET: u8 = 2;
const ACK_SET: u8 = 3;
const RST_SET: u8 = 4;
const NONE_SET: u8 = 5;

#[rustfmt::skip]
const TABLE: [[[u8; 10]; 6]; 2] = [
    // ORIGINAL      sNO sSS sSR sES sFW sCW sLA sTW sCL sS2
    [
        /* syn    */ [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
        /* synack */ [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */ [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
    // REPLY         sNO sSS sSR sES sFW sCW sLA sTW sCL sS2
    [
        /* syn    */ [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
        /* synack */ [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */ [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
];

/// The flag class of a segment (Linux `get_conntrack_index`).
fn flag_class(f: TcpFlags) -> u8 {
    if f.contains(TcpFlags::RST) {
        RST_SET
    } else if f.contains(TcpFlags::SYN) {
        if f.contains(TcpFlags::ACK) {
            SYNACK_SET
        } else {
            SYN_SET
        }
    } else if f.contains(TcpFlags::FIN) {
        FIN_SET
    } else if f.contains(TcpFlags::ACK) {
        ACK_SET
    } else {
        NONE_SET
    }
}

/// Valid flag combinations (Linux `tcp_valid_flags`; PSH, ECE and CWR always allowed).
pub(crate) fn valid_flags(f: TcpFlags) -> bool {
    const S: u8 = TcpFlags::SYN;
    const A: u8 = TcpFlags::ACK;
    const R: u8 = TcpFlags::RST;
    const F: u8 = TcpFlags::FIN;
    const U: u8 = TcpFlags::URG;
    const VALID: [u8; 9] = [S, S | U, S | A, R, R | A, F | A, F | A | U, A, A | U];
    let v = f.0 & !(TcpFlags::PSH | TcpFlags::ECE | TcpFlags::CWR);
    VALID.contains(&v)
}

// Per-direction flags (Linux IP_CT_TCP_FLAG_*).
const F_WINDOW_SCALE: u8 = 0x01;
const F_SACK_PERM: u8 = 0x02;
const F_CLOSE_INIT: u8 = 0x04;
const F_BE_LIBERAL: u8 = 0x08;
const F_DATA_UNACKNOWLEDGED: u8 = 0x10;
const F_MAXACK_SET: u8 = 0x20;
// `last_flags` only (Linux IP_CT_TCP_SIMULTANEOUS_OPEN).
const L_SIMULTANEOUS_OPEN: u8 = 0x80;

/// Window-tracking state of one direction (Linux `struct ip_ct_tcp_state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Side {
    end: u32,
    maxend: u32,
    maxwin: u32,
    maxack: u32,
    scale: u8,
    flags: u8,
}

/// The tracker's name for [`TcpWindow`] (the state it keeps per connection).
pub(crate) type TcpConn = TcpWindow;
pub use super::window::TcpWindow;

/// What the tracker decided for one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TcpVerdict {
    /// In window: move to `state`, refresh the timeout to `timeout` seconds.
    Accept { state: TcpState, timeout: u32 },
    /// Accepted without touching state or timeout (Linux `sIG`: we may be out of sync).
    Ignore,
    /// `-NF_ACCEPT`: the packet is `ct state invalid`; the entry is unchanged.
    Invalid(InvalidReason),
    /// A SYN reopening a closed or aborted connection: delete the entry and treat the
    /// packet as new (Linux `-NF_REPEAT`).
    Reopen,
}

fn before(a: u32, b: u32) -> bool {
    a.wrapping_sub(b).cast_signed() < 0
}

fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// Sequence number of the end of the segment (SYN and FIN count one).
fn seg_end(t: &TcpInfo) -> u32 {
    t.seq
        .wrapping_add(u32::from(t.payload_len))
        .wrapping_add(u32::from(t.flags.contains(TcpFlags::SYN)))
        .wrapping_add(u32::from(t.flags.contains(TcpFlags::FIN)))
}

/// Linux `MAXACKWINDOW`.
fn max_ack_window(s: &Side) -> u32 {
    s.maxwin.max(66_000)
}

/// Reads the SYN options into `side` (Linux `tcp_options`).
fn syn_options(t: &TcpInfo, side: &mut Side) {
    side.scale = 0;
    side.flags &= F_BE_LIBERAL;
    if t.sack_perm {
        side.flags |= F_SACK_PERM;
    }
    if let Some(ws) = t.wscale {
        side.scale = ws.min(14);
        side.flags |= F_WINDOW_SCALE;
    }
}

impl TcpConn {
    /// This window without its sequence positions: the window scales and the options
    /// each side offered are kept, and each direction's next segment re-seeds its
    /// window as a mid-stream pickup does (`maxwin` 0). What a takeover commits (docs/ha.md):
    /// packets move the positions without events, so the synced ones are stale by then,
    /// and an acknowledgement of data the copy never saw would be out of window. Linux
    /// does the same for an entry conntrackd commits (ctnetlink carries scale and
    /// flags, no positions).
    pub(crate) fn unanchored(&self) -> TcpConn {
        let keep = F_WINDOW_SCALE | F_SACK_PERM | F_BE_LIBERAL;
        TcpConn {
            scale: self.scale,
            flags: [self.flags[0] & keep, self.flags[1] & keep],
            ..TcpConn::default()
        }
    }

    fn side(&self, i: usize) -> Side {
        let [end, maxend, maxwin, maxack] = self.win[i];
        Side {
            end,
            maxend,
            maxwin,
            maxack,
            scale: self.scale[i],
            flags: self.flags[i],
        }
    }

    fn set_side(&mut self, i: usize, s: Side) {
        self.win[i] = [s.end, s.maxend, s.maxwin, s.maxack];
        self.scale[i] = s.scale;
        self.flags[i] = s.flags;
    }

    /// Linux `tcp_new`: the state for the first packet of a connection, or why it cannot
    /// start one.
    pub(crate) fn new(t: &TcpInfo, tun: &Tunables) -> Result<TcpConn, InvalidReason> {
        if !valid_flags(t.flags) {
            return Err(InvalidReason::TcpFlags);
        }
        let class = flag_class(t.flags);
        let next = TABLE[0][usize::from(class)][usize::from(NO)];
        let mut c = TcpConn {
            last_index: NONE_SET,
            ..TcpConn::default()
        };
        let end = seg_end(t);
        let win = u32::from(t.window).max(1);
        if next == SS {
            let mut s0 = Side {
                end,
                maxend: end,
                maxwin: win,
                ..Side::default()
            };
            syn_options(t, &mut s0);
            c.set_side(0, s0);
        } else if next == IV {
            return Err(InvalidReason::TcpState);
        } else if !tun.tcp_loose {
            return Err(InvalidReason::TcpNoLoose);
        } else {
            // Picked up mid-stream: its history is lost, so be liberal with windows.
            c.set_side(
                0,
                Side {
                    end,
                    maxwin: win,
                    maxend: end.wrapping_add(win),
                    flags: F_SACK_PERM | F_BE_LIBERAL,
                    ..Side::default()
                },
            );
            c.flags[1] = F_SACK_PERM | F_BE_LIBERAL;
        }
        Ok(c)
    }

    /// Linux `tcp_packet` for one segment of a tracked connection in state `old`.
    /// `seen_reply` / `assured` are the entry's status bits before this packet.
    pub(crate) fn packet(
        &mut self,
        old: TcpState,
        dir: Direction,
        t: &TcpInfo,
        seen_reply: bool,
        assured: bool,
        tun: &Tunables,
    ) -> TcpVerdict {
        if !valid_flags(t.flags) {
            return TcpVerdict::Invalid(InvalidReason::TcpFlags);
        }
        let d = dir.index();
        let index = flag_class(t.flags);
        let mut old_s = old as u8;
        let mut new_s = TABLE[d][usize::from(index)][usize::from(old_s)];
        let mut skip_window = false;

        match new_s {
            SS if old_s >= TW => {
                let close_init = (self.flags[0] | self.flags[1]) & F_CLOSE_INIT != 0;
                if close_init || (usize::from(self.last_dir) == d && self.last_index == RST_SET) {
                    return TcpVerdict::Reopen;
                }
                if let Some(v) = self.ignore(d, index, t, &mut old_s, &mut new_s) {
                    return v;
                }
            }
            IG => {
                if let Some(v) = self.ignore(d, index, t, &mut old_s, &mut new_s) {
                    return v;
                }
            }
            IV => return TcpVerdict::Invalid(InvalidReason::TcpState),
            S2 => {
                // The table alone cannot finish a simultaneous open: remember it.
                self.last_flags |= L_SIMULTANEOUS_OPEN;
            }
            SR if d == 1 && index == ACK_SET && self.last_flags & L_SIMULTANEOUS_OPEN != 0 => {
                new_s = ES;
            }
            CL if index == RST_SET => {
                let o = 1 - d;
                let mut check_ignored = true;
                if self.flags[o] & F_MAXACK_SET != 0 {
                    let seq = t.seq;
                    let maxack = self.win[o][3];
                    if before(seq, maxack) {
                        return TcpVerdict::Invalid(InvalidReason::TcpWindow);
                    }
                    let established = old_s == ES && assured;
                    let train = self.last_index == ACK_SET
                        && usize::from(self.last_dir) == d
                        && seq == self.last_end;
                    if !established || seq == maxack || train {
                        check_ignored = false;
                    } else {
                        // Inexact RST: keep the state so a challenge ACK can follow
                        // (RFC 5961 §3.2, as Linux does).
                        new_s = old_s;
                    }
                }
                if check_ignored
                    && ((seen_reply && self.last_index == SYN_SET)
                        || (!assured && self.last_index == ACK_SET))
                    && t.ack == self.last_end
                {
                    // RST answering a SYN or ACK we let through while out of sync.
                    skip_window = true;
                }
            }
            _ => {}
        }

        if !skip_window && !self.in_window(old_s, d, index, t, tun) {
            return TcpVerdict::Invalid(InvalidReason::TcpWindow);
        }
        self.last_index = index;
        self.last_dir = u8::from(d == 1);
        let new_state = TcpState::from_u8(new_s);
        if new_s != old_s && new_s == FW {
            self.flags[d] |= F_CLOSE_INIT;
        }
        // Linux's order: (retransmissions: not tracked here), RST, unacknowledged data, a
        // zero last window (no in-window ACK seen yet, e.g. a picked-up connection), else
        // the state's timeout.
        let by_state = tun.tcp[usize::from(new_s)];
        let unacked = (self.flags[0] | self.flags[1]) & F_DATA_UNACKNOWLEDGED != 0;
        let mut timeout = if index == RST_SET {
            tun.tcp[TcpState::Close as usize]
        } else if unacked && by_state > tun.tcp_unacknowledged {
            tun.tcp_unacknowledged
        } else if self.last_win == 0 && by_state > tun.tcp_max_retrans {
            tun.tcp_max_retrans
        } else {
            by_state
        };
        if !seen_reply && new_s == ES && timeout > tun.tcp_unacknowledged {
            // Picked up mid-stream and no reply yet: no 5-day timeout.
            timeout = tun.tcp_unacknowledged;
        }
        TcpVerdict::Accept {
            state: new_state,
            timeout,
        }
    }

    /// The `sIG` path: resynchronise on a SYN/ACK answering a SYN we ignored, else
    /// remember the segment and let it pass untracked (`Some(Ignore)`).
    fn ignore(
        &mut self,
        d: usize,
        index: u8,
        t: &TcpInfo,
        old_s: &mut u8,
        new_s: &mut u8,
    ) -> Option<TcpVerdict> {
        let ld = usize::from(self.last_dir);
        if index == SYNACK_SET && self.last_index == SYN_SET && ld != d && t.ack == self.last_end {
            // Client and server are in sync but we were not: take the ignored SYN's data.
            *old_s = SS;
            *new_s = SR;
            self.set_side(
                ld,
                Side {
                    end: self.last_end,
                    maxend: self.last_end,
                    maxwin: u32::from(self.last_win).max(1),
                    maxack: 0,
                    scale: self.last_wscale,
                    flags: self.last_flags & (F_WINDOW_SCALE | F_SACK_PERM),
                },
            );
            self.set_side(d, Side::default());
            return None;
        }
        self.last_index = index;
        self.last_dir = u8::from(d == 1);
        self.last_end = seg_end(t);
        self.last_win = t.window;
        if index == SYN_SET && d == 0 {
            let mut s = Side::default();
            syn_options(t, &mut s);
            self.last_flags = s.flags & (F_WINDOW_SCALE | F_SACK_PERM);
            self.last_wscale = s.scale;
        }
        Some(TcpVerdict::Ignore)
    }

    /// Linux `tcp_in_window`, with `sack == ack` (the summary carries no SACK blocks).
    fn in_window(&mut self, state: u8, d: usize, index: u8, t: &TcpInfo, tun: &Tunables) -> bool {
        let (sender_i, receiver_i) = (d, 1 - d);
        let syn = t.flags.contains(TcpFlags::SYN);
        let has_ack = t.flags.contains(TcpFlags::ACK);
        let rst = t.flags.contains(TcpFlags::RST);
        let mut seq = t.seq;
        let mut ack = t.ack;
        let win_raw = t.window;
        let mut win = u32::from(win_raw);
        let mut end = seg_end(t);

        let mut sender = self.side(sender_i);
        let mut receiver = self.side(receiver_i);

        if sender.maxwin == 0 {
            if syn {
                // SYN/ACK answering a SYN, or a reply SYN in simultaneous open.
                sender.end = end;
                sender.maxend = end;
                sender.maxwin = win.max(1);
                syn_options(t, &mut sender);
                // RFC 7323 §2.2: scaling only when both sides offered it.
                if !(sender.flags & F_WINDOW_SCALE != 0 && receiver.flags & F_WINDOW_SCALE != 0) {
                    sender.scale = 0;
                    receiver.scale = 0;
                }
                if !has_ack {
                    self.set_side(sender_i, sender);
                    self.set_side(receiver_i, receiver);
                    return true;
                }
            } else {
                // Mid-stream: use what the packet tells.
                sender.end = end;
                let w = (win << sender.scale).max(1);
                sender.maxwin = w;
                sender.maxend = end.wrapping_add(w);
                if receiver.maxwin == 0 {
                    receiver.end = ack;
                    receiver.maxend = ack;
                } else if ack == receiver.end.wrapping_add(1) {
                    // Likely the answer to a keepalive.
                    receiver.end = ack;
                }
            }
        } else if ((state == SS && d == 0) || (state == SR && d == 1)) && after(end, sender.end) {
            // RFC 793: a reinitialised TCP uses sequence numbers above the old ones.
            sender.end = end;
            sender.maxend = end;
            sender.maxwin = win.max(1);
            syn_options(t, &mut sender);
        }

        if !has_ack || (rst && ack == 0) {
            // No ACK (or a broken stack's RST|ACK with ack 0): pretend it acks all.
            ack = receiver.end;
        }
        if rst && seq == 0 && state == SS {
            // RST answering a SYN.
            seq = sender.end;
            end = sender.end;
        }
        let sack = ack;

        let ok = before(seq, sender.maxend.wrapping_add(1))
            && (receiver.maxwin == 0
                || after(
                    end,
                    sender.end.wrapping_sub(receiver.maxwin).wrapping_sub(1),
                ))
            && before(sack, receiver.end.wrapping_add(1))
            && after(
                sack,
                receiver
                    .end
                    .wrapping_sub(max_ack_window(&sender))
                    .wrapping_sub(1),
            );
        if ok {
            if !syn {
                win <<= sender.scale;
            }
            let swin = win.wrapping_add(sack.wrapping_sub(ack));
            if sender.maxwin < swin {
                sender.maxwin = swin;
            }
            if after(end, sender.end) {
                sender.end = end;
                sender.flags |= F_DATA_UNACKNOWLEDGED;
            }
            if has_ack {
                if sender.flags & F_MAXACK_SET == 0 {
                    sender.maxack = ack;
                    sender.flags |= F_MAXACK_SET;
                } else if after(ack, sender.maxack) {
                    sender.maxack = ack;
                }
            }
            if receiver.maxwin != 0 && after(end, sender.maxend) {
                receiver.maxwin = receiver
                    .maxwin
                    .wrapping_add(end.wrapping_sub(sender.maxend));
            }
            if after(sack.wrapping_add(win), receiver.maxend.wrapping_sub(1)) {
                receiver.maxend = sack.wrapping_add(win);
                if win == 0 {
                    receiver.maxend = receiver.maxend.wrapping_add(1);
                }
            }
            if ack == receiver.end {
                receiver.flags &= !F_DATA_UNACKNOWLEDGED;
            }
            if index == ACK_SET {
                // Linux keeps these for its retransmission check.
                self.last_dir = u8::from(d == 1);
                self.last_end = end;
                self.last_win = win_raw;
            }
            self.set_side(sender_i, sender);
            self.set_side(receiver_i, receiver);
            true
        } else {
            // Out of window: only liberal tracking lets it through. The window data of a
            // packet that failed the check is not kept (as in Linux).
            let liberal = sender.flags & F_BE_LIBERAL != 0 || tun.tcp_be_liberal;
            if liberal {
                self.set_side(sender_i, sender);
                self.set_side(receiver_i, receiver);
            }
            liberal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(flags: u8, seq: u32, ack: u32, len: u16) -> TcpInfo {
        TcpInfo {
            sport: 1,
            dport: 2,
            seq,
            ack,
            flags: TcpFlags(flags),
            window: 1000,
            payload_len: len,
            wscale: None,
            sack_perm: false,
            mss: None,
        }
    }

    #[test]
    fn flag_validation_matches_linux_table() {
        let f = |v| valid_flags(TcpFlags(v));
        assert!(f(TcpFlags::SYN));
        assert!(f(TcpFlags::SYN
            | TcpFlags::ACK
            | TcpFlags::ECE
            | TcpFlags::CWR));
        assert!(f(TcpFlags::ACK | TcpFlags::PSH));
        assert!(f(TcpFlags::FIN | TcpFlags::ACK));
        assert!(f(TcpFlags::RST));
        assert!(!f(TcpFlags::SYN | TcpFlags::FIN));
        assert!(!f(TcpFlags::SYN | TcpFlags::RST));
        assert!(!f(TcpFlags::FIN)); // FIN without ACK
        assert!(!f(0)); // null scan
        assert!(!f(0x3f)); // xmas
    }

    #[test]
    fn new_needs_syn_or_loose() {
        let tun = Tunables::default();
        assert!(TcpConn::new(&seg(TcpFlags::SYN, 1, 0, 0), &tun).is_ok());
        assert!(TcpConn::new(&seg(TcpFlags::ACK, 1, 1, 0), &tun).is_ok());
        assert_eq!(
            TcpConn::new(&seg(TcpFlags::SYN | TcpFlags::ACK, 1, 1, 0), &tun),
            Err(InvalidReason::TcpState)
        );
        let strict = Tunables {
            tcp_loose: false,
            ..Tunables::default()
        };
        assert_eq!(
            TcpConn::new(&seg(TcpFlags::ACK, 1, 1, 0), &strict),
            Err(InvalidReason::TcpNoLoose)
        );
    }

    #[test]
    fn state_names_round_trip() {
        for s in TcpState::ALL {
            assert_eq!(TcpState::from_name(s.name()), Some(s));
            assert_eq!(TcpState::from_u8(s as u8), s);
        }
    }

    #[test]
    fn data_beyond_the_window_is_invalid_unless_liberal() {
        let tun = Tunables::default();
        let o = Direction::Original;
        let r = Direction::Reply;
        let mut c = TcpConn::new(&seg(TcpFlags::SYN, 100, 0, 0), &tun).unwrap();
        let st = |v| match v {
            TcpVerdict::Accept { state, .. } => state,
            other => panic!("{other:?}"),
        };
        let s = st(c.packet(
            TcpState::None,
            o,
            &seg(TcpFlags::SYN, 100, 0, 0),
            false,
            false,
            &tun,
        ));
        let s = st(c.packet(
            s,
            r,
            &seg(TcpFlags::SYN | TcpFlags::ACK, 500, 101, 0),
            false,
            false,
            &tun,
        ));
        let s = st(c.packet(s, o, &seg(TcpFlags::ACK, 101, 501, 0), true, false, &tun));
        assert_eq!(s, TcpState::Established);
        // 1000-byte window: a segment starting 5000 bytes ahead is over the upper bound.
        let far = seg(TcpFlags::ACK, 5101, 501, 10);
        let mut c2 = c;
        assert_eq!(
            c2.packet(s, o, &far, true, true, &tun),
            TcpVerdict::Invalid(InvalidReason::TcpWindow)
        );
        let lib = Tunables {
            tcp_be_liberal: true,
            ..Tunables::default()
        };
        assert!(matches!(
            c.packet(s, o, &far, true, true, &lib),
            TcpVerdict::Accept { .. }
        ));
    }
}
