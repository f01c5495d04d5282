//! Refragmentation: a reassembled (and NAT-rewritten) datagram leaves as fragments no
//! larger than the originals, within the output MTU (Linux `ip_do_fragment` /
//! `ip6_fragment` with the `frag_max_size` the defragmenter recorded).
//!
//! - The limit is `min(mtu, geometry.max_size)` (Linux lowers the MTU to
//!   `frag_max_size`). IPv4 with DF on every original fragment, or any IPv6 datagram, whose
//!   largest fragment exceeds the MTU is refused with `PacketTooBig` (Linux sends
//!   fragmentation-needed / packet-too-big; routers do not fragment IPv6).
//! - When every original fragment fits the limit (the normal case: NAT does not change
//!   lengths), the original boundaries are kept: Linux's fast path re-emits the skbs of
//!   its `frag_list` as they came. Otherwise the datagram is cut at the limit rounded down
//!   to 8 bytes (Linux's slow path).
//! - IPv4: every fragment carries the datagram's header, with the options that are not
//!   copied on fragmentation overwritten by NOPs after the first (`ip_options_fragment`);
//!   the identification is the datagram's, the header checksum is computed per fragment.
//!   The L4 checksum lives in the first fragment and was fixed over the whole datagram
//!   by the NAT rewrite, so fragments only slice the payload.
//! - IPv6: the unfragmentable part, then a fragment header with the original id.
//!
//! Buffers: the caller iterates the [`Plan`] and hands one output buffer per [`Piece`] to
//! [`write_fragment`] (an mbuf's data room in the pipeline); nothing allocates.

use super::reasm::{Geometry, Reassembled, sat_u16};
use crate::DropReason;
use crate::wire::Family;
use crate::wire::ipv4::{HEADER_LEN as V4_HEADER_LEN, Ipv4Packet};
use crate::wire::ipv6::{self, Ipv6Packet, ext};

const FRAG_HDR_LEN: usize = 8;

/// One fragment to emit: `len` bytes of the fragmentable part from `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub offset: u16,
    pub len: u16,
    pub more: bool,
}

impl Piece {
    /// Bytes this fragment takes on the wire (IP header included).
    pub fn wire_len(&self, r: &Reassembled) -> usize {
        let fh = if r.geometry.family == Family::V6 {
            FRAG_HDR_LEN
        } else {
            0
        };
        r.hdr_len + fh + usize::from(self.len)
    }
}

/// The fragments of one datagram, in order.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    geometry: Geometry,
    payload_len: u16,
    /// `None`: the original boundaries; `Some(n)`: cut every `n` bytes.
    step: Option<u16>,
    next_index: u8,
    next_offset: u16,
}

impl Plan {
    /// Whether the original fragment boundaries are kept.
    pub fn keeps_original_boundaries(&self) -> bool {
        self.step.is_none()
    }
}

impl Iterator for Plan {
    type Item = Piece;

    fn next(&mut self) -> Option<Piece> {
        if self.next_offset >= self.payload_len {
            return None;
        }
        let offset = self.next_offset;
        let end = match self.step {
            None => {
                let e = *self.geometry.ends.get(usize::from(self.next_index))?;
                self.next_index += 1;
                e
            }
            Some(step) => offset.saturating_add(step).min(self.payload_len),
        };
        self.next_offset = end;
        Some(Piece {
            offset,
            len: end - offset,
            more: end < self.payload_len,
        })
    }
}

/// Plans the fragments of `r` for an egress `mtu`.
pub fn plan(r: &Reassembled, mtu: usize) -> Result<Plan, DropReason> {
    let g = &r.geometry;
    let v6 = g.family == Family::V6;
    let max = usize::from(g.max_size);
    if (v6 || g.df) && max > mtu {
        return Err(DropReason::PacketTooBig);
    }
    let limit = mtu.min(max);
    let overhead = r.hdr_len + if v6 { FRAG_HDR_LEN } else { 0 };
    let payload_len = u16::try_from(r.len - r.hdr_len).map_err(|_| DropReason::PacketTooBig)?;
    let fits = g
        .pieces()
        .all(|(_, len)| overhead + usize::from(len) <= limit);
    let step =
        if fits && g.pieces().map(|(_, l)| usize::from(l)).sum::<usize>() == r.len - r.hdr_len {
            None
        } else {
            let step = limit.saturating_sub(overhead) & !7;
            if step < 8 {
                return Err(DropReason::PacketTooBig);
            }
            Some(sat_u16(step))
        };
    Ok(Plan {
        geometry: *g,
        payload_len,
        step,
        next_index: 0,
        next_offset: 0,
    })
}

/// Writes fragment `piece` of the datagram `dgram` (`r` describes it; NAT already applied)
/// into `out`; returns its length, or `None` when `out` is too short.
pub fn write_fragment(
    dgram: &[u8],
    r: &Reassembled,
    piece: Piece,
    out: &mut [u8],
) -> Option<usize> {
    let hl = r.hdr_len;
    let start = hl + usize::from(piece.offset);
    let data = dgram.get(start..start + usize::from(piece.len))?;
    let total = piece.wire_len(r);
    let out = out.get_mut(..total)?;
    out[..hl].copy_from_slice(&dgram[..hl]);
    match r.geometry.family {
        Family::V4 => {
            if piece.offset != 0 {
                nop_uncopied_options(&mut out[V4_HEADER_LEN..hl]);
            }
            out[hl..].copy_from_slice(data);
            let mut ip = Ipv4Packet::new_unchecked(&mut *out);
            ip.set_total_len(sat_u16(total));
            ip.set_frag(r.geometry.df, piece.more, piece.offset);
            ip.fill_checksum();
        }
        Family::V6 => {
            let nh = usize::from(r.geometry.nh_off);
            let next = dgram[nh];
            out[nh] = ext::FRAGMENT;
            let fo = piece.offset | u16::from(piece.more);
            let fh = &mut out[hl..hl + FRAG_HDR_LEN];
            fh[0] = next;
            fh[1] = 0;
            fh[2..4].copy_from_slice(&fo.to_be_bytes());
            fh[4..8].copy_from_slice(&r.geometry.ident.to_be_bytes());
            out[hl + FRAG_HDR_LEN..].copy_from_slice(data);
            let mut ip = Ipv6Packet::new_unchecked(&mut *out);
            ip.set_payload_len(sat_u16(total - ipv6::HEADER_LEN));
        }
    }
    Some(total)
}

/// Linux `ip_options_fragment`: options without the copied flag become NOPs (the header
/// keeps its length).
fn nop_uncopied_options(opts: &mut [u8]) {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return,
            1 => i += 1,
            kind => {
                let len = opts
                    .get(i + 1)
                    .map_or(opts.len() - i, |&l| usize::from(l).max(2));
                let end = (i + len).min(opts.len());
                if kind & 0x80 == 0 {
                    opts[i..end].fill(1);
                }
                i = end;
            }
        }
    }
}
