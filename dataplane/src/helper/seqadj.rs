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
        if after(ack.wrapping_add_signed(self.before.wrapping_neg()), self.pos) {
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
                if kind == SACK && len >= 10 && (len - 2) % 8 == 0 {
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
    if at % 2 == 0 {
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
