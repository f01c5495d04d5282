//! TCP sequence adjustment after a helper changed the length of a segment's payload
//! (Linux `nf_conntrack_seqadj.c`).
//!
//! FTP NAT replaces the address text of a `PORT` / `EPRT` / `227` / `229` line with text
//! of another length, so every later byte of that direction sits at another sequence
//! number for the receiver than for the sender. Each direction ([`Way`]) keeps the raw
//! (sender's) sequence number of the last segment rewritten (`pos`), the offset of the
//! bytes up to and including that segment (`before`) and of those after it (`after`).
//! Every packet of the connection then has its `seq` moved by its own direction's offset
//! and its `ack` (and SACK blocks) moved back by the other direction's, as Linux's
//! `nf_ct_seq_adjust` / `nf_ct_sack_adjust`. The conntrack window check sees acks in the
//! sender's raw space through [`SeqAdj::unadjust_ack`] (Linux's `receiver_offset` in
//! `tcp_in_window`).
//!
//! A retransmission of the rewritten segment (the same raw `seq`) changes nothing: the
//! same text is written again and [`SeqAdj::set`] keeps the offsets, as Linux does.

use crate::wire::checksum;

/// TCP header fields (RFC 9293 §3.1).
mod field {
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DOFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const CHECKSUM: usize = 16;
    pub const HEADER_LEN: usize = 20;
}

/// One direction's correction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Way {
    /// The sender's `seq` of the last segment whose length changed.
    pub pos: u32,
    /// Offset of the bytes up to that segment (included).
    pub before: i32,
    /// Offset of the bytes after it.
    pub after: i32,
}

/// Both directions' corrections of one connection, indexed by
/// [`Direction::index`](crate::conntrack::Direction::index).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeqAdj {
    pub way: [Way; 2],
}

/// `a` is after `b` in sequence space (RFC 1323 arithmetic, Linux `after()`).
fn after(a: u32, b: u32) -> bool {
    b.wrapping_sub(a).cast_signed() < 0
}

/// Why a segment could not be adjusted (its TCP options are malformed: Linux drops it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadOptions;

const SACK: u8 = 5;
const ACK_FLAG: u8 = 0x10;

impl Way {
    /// The offset of sequence number `seq` of this direction (Linux `nf_ct_seq_offset`).
    pub fn offset(&self, seq: u32) -> i32 {
        if after(seq, self.pos) {
            self.after
        } else {
            self.before
        }
    }

    /// The offset to take back from an ack (or SACK edge) that acknowledges this
    /// direction's data, as the receiver numbered it.
    fn ack_offset(&self, ack: u32) -> i32 {
        if after(
            ack.wrapping_add_signed(self.before.wrapping_neg()),
            self.pos,
        ) {
            self.after
        } else {
            self.before
        }
    }
}

impl SeqAdj {
    /// Whether any direction has an offset (a connection with none needs no adjustment).
    pub fn active(&self) -> bool {
        self.way.iter().any(|w| w.before != 0 || w.after != 0)
    }

    /// A segment of direction `d` whose raw `seq` is `seq` had its payload length changed
    /// by `off` (Linux `nf_ct_seqadj_set`): recorded unless it is an older segment than the
    /// last correction (a retransmission of it included). Returns whether it was recorded.
    pub fn set(&mut self, d: usize, seq: u32, off: i32) -> bool {
        let Some(w) = self.way.get_mut(d) else {
            return false;
        };
        if off == 0 {
            return false;
        }
        if w.before == w.after || after(seq, w.pos) {
            w.pos = seq;
            w.before = w.after;
            w.after = w.after.wrapping_add(off);
            return true;
        }
        false
    }

    /// The ack of a packet of direction `d`, in the raw space of the other direction's
    /// sender (what the connection tracker compares with that sender's sequence numbers).
    pub fn unadjust_ack(&self, d: usize, ack: u32) -> u32 {
        let o = self.way[1 - (d & 1)].offset(ack.wrapping_sub(1));
        ack.wrapping_add_signed(o.wrapping_neg())
    }

    /// Adjusts the TCP segment `seg` (its header first) of direction `d`: `seq` by this
    /// direction's offset, `ack` and SACK blocks back by the other's, the checksum
    /// updated incrementally. `Err` for malformed options (the caller drops the packet).
    pub fn adjust(&self, d: usize, seg: &mut [u8]) -> Result<(), BadOptions> {
        if seg.len() < field::HEADER_LEN {
            return Err(BadOptions);
        }
        let this = self.way[d & 1];
        let other = self.way[1 - (d & 1)];
        let mut csum = rd16(seg, field::CHECKSUM);
        let seq = rd32(seg, field::SEQ);
        let new = seq.wrapping_add_signed(this.offset(seq));
        csum = checksum::update32(csum, seq, new);
        wr32(seg, field::SEQ, new);
        if seg[field::FLAGS] & ACK_FLAG != 0 {
            let ack = rd32(seg, field::ACK);
            let new = ack.wrapping_add_signed(other.ack_offset(ack).wrapping_neg());
            csum = checksum::update32(csum, ack, new);
            wr32(seg, field::ACK, new);
            let r = sack_adjust(seg, &other, &mut csum);
            wr16(seg, field::CHECKSUM, csum);
            return r;
        }
        wr16(seg, field::CHECKSUM, csum);
        Ok(())
    }
}

/// Moves every SACK block edge back by `other`'s offset (Linux `nf_ct_sack_adjust`: the
/// option walk stops at EOL; a partial option is an error).
fn sack_adjust(seg: &mut [u8], other: &Way, csum: &mut u16) -> Result<(), BadOptions> {
    let hl = usize::from(seg[field::DOFF] >> 4) * 4;
    let end = hl.min(seg.len());
    let mut i = field::HEADER_LEN;
    while i < end {
        match seg[i] {
            0 => return Ok(()),
            1 => i += 1,
            kind => {
                let len = usize::from(*seg.get(i + 1).ok_or(BadOptions)?);
                if i + 1 == end || len < 2 || i + len > end {
                    return Err(BadOptions);
                }
                if kind == SACK && len >= 10 && (len - 2).is_multiple_of(8) {
                    let mut b = i + 2;
                    while b < i + len {
                        let old = rd32(seg, b);
                        let new = old.wrapping_add_signed(other.ack_offset(old).wrapping_neg());
                        // SACK edges sit at any 2-byte alignment: the RFC 1624 update
                        // works word by word from an even offset, which option bytes
                        // after even-length options keep (NOPs may shift it: recompute
                        // over the bytes' own alignment).
                        *csum = update_at(*csum, b, old, new);
                        wr32(seg, b, new);
                        b += 4;
                    }
                }
                i += len;
            }
        }
    }
    Ok(())
}

/// RFC 1624 update of a 32-bit field at offset `at` of the checksummed segment (which
/// starts at an even offset of the pseudo-header sum): an odd offset swaps the bytes'
/// weight, so the update uses the field as the checksum reads it.
fn update_at(csum: u16, at: usize, old: u32, new: u32) -> u16 {
    if at.is_multiple_of(2) {
        return checksum::update32(csum, old, new);
    }
    // At an odd offset the bytes pair with their neighbours: rotate by 8 bits (the
    // one's-complement sum is invariant under byte swapping of every word, RFC 1071).
    checksum::update32(csum, old.rotate_right(8), new.rotate_right(8))
}

fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn rd32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn wr16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn wr32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP header (with `opts`) and `data`, checksummed over the segment alone (the
    /// incremental updates must keep it valid whatever the pseudo-header).
    fn seg(seq: u32, ack: u32, flags: u8, opts: &[u8], data: &[u8]) -> Vec<u8> {
        let hl = 20 + opts.len();
        let mut s = vec![0u8; hl];
        s[4..8].copy_from_slice(&seq.to_be_bytes());
        s[8..12].copy_from_slice(&ack.to_be_bytes());
        s[12] = u8::try_from(hl / 4).unwrap() << 4;
        s[13] = flags;
        s[20..].copy_from_slice(opts);
        s.extend_from_slice(data);
        let c = checksum::checksum(&s);
        s[16..18].copy_from_slice(&c.to_be_bytes());
        s
    }

    fn valid(s: &[u8]) -> bool {
        checksum::verify(checksum::sum(s))
    }

    #[test]
    fn offsets_before_and_after_each_correction() {
        let mut a = SeqAdj::default();
        assert!(!a.active());
        // The client's segment at 1000 grew by 3, then the one at 2000 shrank by 1.
        assert!(a.set(0, 1000, 3));
        assert!(a.set(0, 2000, -1));
        assert!(a.active());
        let w = a.way[0];
        assert_eq!((w.pos, w.before, w.after), (2000, 3, 2));
        assert_eq!(
            w.offset(1000),
            3,
            "an older segment: before the last correction"
        );
        assert_eq!(w.offset(2000), 3, "the corrected segment itself");
        assert_eq!(w.offset(2001), 2);
        // A retransmission of either corrected segment changes nothing.
        assert!(!a.set(0, 2000, -1));
        assert!(!a.set(0, 1000, 3));
        assert_eq!(a.way[0], w);
        // The other direction is untouched; zero changes are not recorded.
        assert_eq!(a.way[1], Way::default());
        assert!(!a.set(1, 5, 0));
        // Sequence numbers wrap.
        let mut b = SeqAdj::default();
        b.set(1, u32::MAX - 2, 5);
        assert_eq!(b.way[1].offset(3), 5);
        assert_eq!(b.way[1].offset(u32::MAX - 3), 0);
    }

    #[test]
    fn seq_moves_forward_and_ack_back_with_the_checksum_kept() {
        let mut a = SeqAdj::default();
        a.set(0, 1000, 3);
        // Client data after the correction: seq + 3.
        let mut s = seg(1030, 77, 0x18, &[], b"LIST\r\n");
        a.adjust(0, &mut s).unwrap();
        assert_eq!(u32::from_be_bytes(s[4..8].try_into().unwrap()), 1033);
        assert_eq!(u32::from_be_bytes(s[8..12].try_into().unwrap()), 77);
        assert!(valid(&s));
        // The server acks what the client sent as the server saw it: 1033 + 6 is the
        // client's 1036 + 3; an ack of the corrected segment's own bytes maps with the
        // offset before it.
        let mut s = seg(77, 1039, 0x10, &[], b"");
        a.adjust(1, &mut s).unwrap();
        assert_eq!(u32::from_be_bytes(s[8..12].try_into().unwrap()), 1036);
        assert!(valid(&s));
        let mut s = seg(77, 1000, 0x10, &[], b"");
        a.adjust(1, &mut s).unwrap();
        assert_eq!(u32::from_be_bytes(s[8..12].try_into().unwrap()), 1000);
        // Without ACK the ack field is left alone.
        let mut s = seg(77, 1039, 0x02, &[], b"");
        a.adjust(1, &mut s).unwrap();
        assert_eq!(u32::from_be_bytes(s[8..12].try_into().unwrap()), 1039);
        // The tracker's view of the server's ack, in the client's raw space.
        assert_eq!(a.unadjust_ack(1, 1039), 1036);
        assert_eq!(a.unadjust_ack(1, 1001), 1001);
    }

    #[test]
    fn sack_blocks_move_back_at_any_alignment() {
        let mut a = SeqAdj::default();
        a.set(0, 1000, -2);
        // NOP NOP SACK(2 blocks): even offsets; then a lone NOP before SACK: odd ones.
        for pre in [&[1u8, 1][..], &[1u8, 1, 1][..]] {
            let mut o = pre.to_vec();
            o.extend_from_slice(&[5, 18]);
            for v in [2000u32, 2100, 900, 950] {
                o.extend_from_slice(&v.to_be_bytes());
            }
            while o.len() % 4 != 0 {
                o.push(0);
            }
            let mut s = seg(5, 2000, 0x10, &o, b"");
            a.adjust(1, &mut s).unwrap();
            let at = 20 + pre.len() + 2;
            let e: Vec<u32> = (0..4)
                .map(|k| u32::from_be_bytes(s[at + 4 * k..at + 4 * k + 4].try_into().unwrap()))
                .collect();
            assert_eq!(e, [2002, 2102, 900, 950], "after the correction: +2");
            assert!(valid(&s), "checksum with prefix {pre:?}");
        }
    }

    #[test]
    fn malformed_options_are_refused() {
        let mut a = SeqAdj::default();
        a.set(0, 1000, 1);
        // An option whose length runs past the header.
        let mut s = seg(5, 2000, 0x10, &[5, 30, 0, 0], b"");
        assert_eq!(a.adjust(1, &mut s), Err(BadOptions));
        let mut s = seg(5, 2000, 0x10, &[8, 1, 0, 0], b"");
        assert_eq!(a.adjust(1, &mut s), Err(BadOptions));
        let mut short = vec![0u8; 19];
        assert_eq!(a.adjust(1, &mut short), Err(BadOptions));
    }
}
