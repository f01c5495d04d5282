//! IPv6 header (RFC 8200) and the extension-header chain.
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Traffic Class |           Flow Label                  |
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! |                    Source Address (16 bytes)                  |
//! |                 Destination Address (16 bytes)                |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! [`Ipv6Packet::check_len`] checks the fixed header, the version and the payload length
//! against the buffer; after it succeeds no accessor panics. [`walk_ext`] follows the
//! extension headers (hop-by-hop 0, routing 43, fragment 44, destination options 60,
//! AH 51) to the upper-layer protocol. Jumbograms (payload length 0) are not supported.

use super::eth::be16;
use crate::DropReason;

mod field {
    use core::ops::Range;
    pub const VER_TC_FL: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::DST.end;
pub const SRC_OFF: usize = field::SRC.start;
pub const DST_OFF: usize = field::DST.start;
pub const HOP_LIMIT_OFF: usize = field::HOP_LIMIT;

/// Extension header numbers.
pub mod ext {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const NO_NEXT: u8 = 59;
    pub const DEST_OPTS: u8 = 60;
}

/// Longest extension chain followed before giving up with `BadIpOptions`.
pub const MAX_EXT_HEADERS: usize = 8;

/// A view of an IPv6 packet.
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self, DropReason> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` (< 40 bytes), `BadIpVersion`, `BadIpLength` (payload length runs past
    /// the buffer, or 0 with a hop-by-hop header: a jumbogram).
    pub fn check_len(&self) -> Result<(), DropReason> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(DropReason::BadIpVersion);
        }
        let plen = usize::from(be16(&b[field::LENGTH]));
        if HEADER_LEN + plen > b.len() || (plen == 0 && b[field::NXT_HDR] == ext::HOP_BY_HOP) {
            return Err(DropReason::BadIpLength);
        }
        Ok(())
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    pub fn traffic_class(&self) -> u8 {
        let b = self.buffer.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }

    pub fn flow_label(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FL];
        u32::from_be_bytes([0, b[1] & 0x0f, b[2], b[3]])
    }

    pub fn payload_len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LENGTH])
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> [u8; 16] {
        addr16(&self.buffer.as_ref()[field::SRC])
    }

    pub fn dst_addr(&self) -> [u8; 16] {
        addr16(&self.buffer.as_ref()[field::DST])
    }

    /// Everything after the fixed header, up to the payload length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version 6, traffic class and flow label.
    pub fn set_version_tc_flow(&mut self, tc: u8, flow: u32) {
        let v = (6u32 << 28) | (u32::from(tc) << 20) | (flow & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FL].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_payload_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = v;
    }

    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    pub fn set_src_addr(&mut self, a: [u8; 16]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a);
    }

    pub fn set_dst_addr(&mut self, a: [u8; 16]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a);
    }
}

/// The fragment header's fields (RFC 8200 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragInfo {
    /// Fragment offset in bytes.
    pub offset: u16,
    pub more: bool,
    pub ident: u32,
}

/// Where the extension chain ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtChain {
    /// Upper-layer protocol (or 59 no-next-header, 50 ESP, or whatever header follows a
    /// non-first fragment's fragment header).
    pub proto: u8,
    /// Offset of the upper-layer header within the walked slice.
    pub l4_off: usize,
    /// The fragment header, if one was seen.
    pub frag: Option<FragInfo>,
}

/// Follows the extension headers in `payload` (the bytes after the fixed header), starting
/// with `next` (the fixed header's next-header field). Stops at the first header that is
/// not an extension header, or right after a fragment header with a non-zero offset (the
/// rest belongs to another fragment). `Truncated` when a header runs past `payload`;
/// `BadIpOptions` for a hop-by-hop header that is not first, a second fragment header, or
/// a chain longer than [`MAX_EXT_HEADERS`].
pub fn walk_ext(payload: &[u8], mut next: u8) -> Result<ExtChain, DropReason> {
    let mut off = 0usize;
    let mut frag = None;
    for i in 0..=MAX_EXT_HEADERS {
        let len = match next {
            ext::HOP_BY_HOP | ext::ROUTING | ext::DEST_OPTS => {
                if next == ext::HOP_BY_HOP && i != 0 {
                    return Err(DropReason::BadIpOptions);
                }
                let h = payload.get(off..off + 2).ok_or(DropReason::Truncated)?;
                (usize::from(h[1]) + 1) * 8
            }
            ext::AH => {
                let h = payload.get(off..off + 2).ok_or(DropReason::Truncated)?;
                (usize::from(h[1]) + 2) * 4
            }
            ext::FRAGMENT => {
                let h = payload.get(off..off + 8).ok_or(DropReason::Truncated)?;
                if frag.is_some() {
                    return Err(DropReason::BadIpOptions);
                }
                let fo = be16(&h[2..4]);
                let f = FragInfo {
                    offset: fo & 0xfff8,
                    more: fo & 1 != 0,
                    ident: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                };
                frag = Some(f);
                if f.offset != 0 {
                    return Ok(ExtChain {
                        proto: h[0],
                        l4_off: off + 8,
                        frag,
                    });
                }
                8
            }
            _ => {
                return Ok(ExtChain {
                    proto: next,
                    l4_off: off,
                    frag,
                });
            }
        };
        if off + len > payload.len() {
            return Err(DropReason::Truncated);
        }
        next = payload[off];
        off += len;
    }
    Err(DropReason::BadIpOptions)
}

fn addr16(b: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testdata::capture;

    #[test]
    fn echo_from_capture() {
        let f = capture("2001:db8::1 > 2001:db8::2: ICMP6, echo request");
        let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.payload_len(), 64);
        assert_eq!(ip.next_header(), 58);
        assert_eq!(ip.hop_limit(), 64);
        assert_eq!(ip.src_addr()[..4], [0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(ip.dst_addr()[15], 2);
        let c = walk_ext(ip.payload(), ip.next_header()).unwrap();
        assert_eq!(
            c,
            ExtChain {
                proto: 58,
                l4_off: 0,
                frag: None
            }
        );
    }

    #[test]
    fn hop_by_hop_from_capture() {
        let f = capture("HBH ICMP6, multicast listener report");
        let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.next_header(), ext::HOP_BY_HOP);
        let c = walk_ext(ip.payload(), ip.next_header()).unwrap();
        assert_eq!(c.proto, 58);
        assert_eq!(c.l4_off, 8);
        assert_eq!(ip.payload()[c.l4_off], 143); // MLDv2 report
    }

    #[test]
    fn chain_with_fragment_routing_and_ah() {
        // dest-opts(8) -> routing(16) -> AH(12+4=16) -> fragment(8, first) -> UDP
        let mut p = vec![0u8; 8 + 16 + 16 + 8 + 8];
        p[0] = ext::ROUTING;
        p[1] = 0;
        p[8] = ext::AH;
        p[9] = 1;
        p[24] = ext::FRAGMENT;
        p[25] = 2; // (2+2)*4 = 16
        p[40] = 17;
        p[42..44].copy_from_slice(&1u16.to_be_bytes()); // offset 0, M=1
        p[44..48].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        let c = walk_ext(&p, ext::DEST_OPTS).unwrap();
        assert_eq!(c.proto, 17);
        assert_eq!(c.l4_off, 48);
        assert_eq!(
            c.frag,
            Some(FragInfo {
                offset: 0,
                more: true,
                ident: 0xdead_beef
            })
        );
        // Later fragment: stops right after the fragment header.
        p[42..44].copy_from_slice(&(1480u16).to_be_bytes());
        let c = walk_ext(&p, ext::DEST_OPTS).unwrap();
        assert_eq!((c.l4_off, c.frag.unwrap().offset), (48, 1480));
        // Truncated chain.
        assert_eq!(
            walk_ext(&p[..30], ext::DEST_OPTS),
            Err(DropReason::Truncated)
        );
    }

    #[test]
    fn malformed_chains() {
        // Hop-by-hop not first.
        let p = [0u8; 16];
        assert_eq!(walk_ext(&p, ext::DEST_OPTS), Err(DropReason::BadIpOptions));
        // Endless chain of destination options.
        let mut p = vec![0u8; 8 * 12];
        for i in 0..12 {
            p[i * 8] = ext::DEST_OPTS;
        }
        assert_eq!(walk_ext(&p, ext::DEST_OPTS), Err(DropReason::BadIpOptions));
        // Header length beyond the payload.
        assert_eq!(
            walk_ext(&[17, 3, 0, 0, 0, 0, 0, 0], ext::ROUTING),
            Err(DropReason::Truncated)
        );
    }

    #[test]
    fn fixed_header_errors() {
        let f = capture("ICMP6, echo request");
        let b = f[14..].to_vec();
        assert_eq!(
            Ipv6Packet::new_checked(&b[..39]).err(),
            Some(DropReason::Truncated)
        );
        let mut c = b.clone();
        c[0] = 0x40;
        assert_eq!(
            Ipv6Packet::new_checked(&c[..]).err(),
            Some(DropReason::BadIpVersion)
        );
        assert_eq!(
            Ipv6Packet::new_checked(&b[..100]).err(),
            Some(DropReason::BadIpLength)
        );
    }
}
