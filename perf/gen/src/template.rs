//! Prebuilt UDP frames. Every frame of a run is the same bytes except the client's source
//! address and port, the two checksums and, on the stamped sample, the 18-byte stamp. The
//! template is built once (with [`frame::udp`]'s layout); per frame the writer stores the
//! varying fields and derives both checksums from partial sums taken once (RFC 1071's
//! sums are additive: the sum of the fixed words plus the sum of the varying ones), so a
//! frame costs a few stores and additions instead of two checksum passes over the frame.
//!
//! Unstamped frames carry a zero payload; a stamped one carries the stamp and its words
//! are added to the UDP sum.

use std::net::Ipv4Addr;

use dataplane::wire::checksum;

use crate::frame::{self, ETH_LEN, IP_LEN, MAGIC, Macs, STAMP_LEN, UDP_LEN};

/// Offsets in the frame.
const IP_CSUM: usize = ETH_LEN + 10;
const IP_SRC: usize = ETH_LEN + 12;
const UDP: usize = ETH_LEN + IP_LEN;
const UDP_SPORT: usize = UDP;
const UDP_CSUM: usize = UDP + 6;
const STAMP: usize = UDP + UDP_LEN;

/// A UDP frame of one length to one destination, ready to be given a source.
#[derive(Debug, Clone)]
pub struct UdpTemplate {
    bytes: Vec<u8>,
    /// Sum of the IPv4 header with the source address and checksum zero, folded to 16
    /// bits (so adding a few more words cannot overflow).
    ip_sum: u32,
    /// Sum of the UDP pseudo header, header and (zero) payload with the source address,
    /// source port and checksum zero, folded to 16 bits.
    udp_sum: u32,
}

/// The two 16-bit words of a 32-bit field, added (at most 0x1fffe).
fn words32(x: u32) -> u32 {
    (x >> 16) + (x & 0xffff)
}

/// The four 16-bit words of a 64-bit field, added (at most 0x3fffc).
fn words64(x: u64) -> u32 {
    let s = (x >> 48) + ((x >> 32) & 0xffff) + ((x >> 16) & 0xffff) + (x & 0xffff);
    u32::try_from(s).unwrap_or(0)
}

impl UdpTemplate {
    /// The frame of `len` bytes without FCS (`MIN_UDP_FRAME..=MAX_FRAME`) from `macs` to
    /// `dst:dport`; `None` when `len` is out of range.
    pub fn new(macs: &Macs, dst: Ipv4Addr, dport: u16, len: usize) -> Option<UdpTemplate> {
        let mut bytes = vec![0u8; len];
        frame::udp(
            &mut bytes,
            macs,
            Ipv4Addr::UNSPECIFIED,
            dst,
            0,
            dport,
            len,
            0,
            0,
        )?;
        // frame::udp always stamps; the template's payload is zero.
        bytes[STAMP..STAMP + STAMP_LEN].fill(0);
        bytes[IP_CSUM..IP_CSUM + 2].fill(0);
        bytes[UDP_CSUM..UDP_CSUM + 2].fill(0);
        let ip_sum = u32::from(checksum::fold(checksum::sum(&bytes[ETH_LEN..UDP])));
        let udp_len = u16::try_from(len - UDP).ok()?;
        let pseudo = checksum::pseudo_v4([0; 4], dst.octets(), 17, udp_len);
        let udp_sum = u32::from(checksum::fold(checksum::add(
            checksum::sum(&bytes[UDP..]),
            pseudo,
        )));
        Some(UdpTemplate {
            bytes,
            ip_sum,
            udp_sum,
        })
    }

    /// Frame length without FCS.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The template bytes (source address and port zero, checksums zero).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Writes the whole frame for source `src:sport` into `buf` (at least [`len`] bytes),
    /// stamped with `(seq, tsc)` when `stamp` is given.
    ///
    /// [`len`]: Self::len
    #[inline]
    pub fn write(&self, buf: &mut [u8], src: u32, sport: u16, stamp: Option<(u64, u64)>) {
        buf[..self.bytes.len()].copy_from_slice(&self.bytes);
        self.patch(buf, src, sport, stamp);
    }

    /// Like [`write`](Self::write) for a `buf` that already holds a frame of this template
    /// (any source, stamped or not): only the varying fields are written, the stamp area
    /// cleared when `stamp` is `None`.
    #[inline]
    pub fn patch(&self, buf: &mut [u8], src: u32, sport: u16, stamp: Option<(u64, u64)>) {
        let src_words = words32(src);
        let mut udp = self.udp_sum + src_words + u32::from(sport);
        match stamp {
            Some((seq, tsc)) => {
                buf[STAMP..STAMP + 8].copy_from_slice(&tsc.to_be_bytes());
                buf[STAMP + 8..STAMP + 16].copy_from_slice(&seq.to_be_bytes());
                buf[STAMP + 16..STAMP + 18].copy_from_slice(&MAGIC.to_be_bytes());
                // At most 12 words of 0xffff in all: far from overflowing u32.
                udp += words64(tsc) + words64(seq) + u32::from(MAGIC);
            }
            None => buf[STAMP..STAMP + STAMP_LEN].fill(0),
        }
        buf[IP_SRC..IP_SRC + 4].copy_from_slice(&src.to_be_bytes());
        buf[UDP_SPORT..UDP_SPORT + 2].copy_from_slice(&sport.to_be_bytes());
        let ip = checksum::finish(self.ip_sum + src_words);
        buf[IP_CSUM..IP_CSUM + 2].copy_from_slice(&ip.to_be_bytes());
        let udp = frame::udp_csum_field(checksum::finish(udp));
        buf[UDP_CSUM..UDP_CSUM + 2].copy_from_slice(&udp.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::Flows;
    use crate::frame::{L4, MAX_FRAME, MIN_UDP_FRAME, TEST_MACS as MACS, parse};

    const DST: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);

    /// The full builder's frame for the same fields, unstamped (zero payload, checksum
    /// recomputed from scratch).
    fn reference(src: Ipv4Addr, sport: u16, len: usize, stamp: Option<(u64, u64)>) -> Vec<u8> {
        let mut b = vec![0u8; len];
        let (seq, tsc) = stamp.unwrap_or((0, 0));
        frame::udp(&mut b, &MACS, src, DST, sport, 9, len, seq, tsc).unwrap();
        if stamp.is_none() {
            b[STAMP..STAMP + STAMP_LEN].fill(0);
            b[UDP_CSUM..UDP_CSUM + 2].fill(0);
            let udp_len = u16::try_from(len - UDP).unwrap();
            let pseudo = checksum::pseudo_v4(src.octets(), DST.octets(), 17, udp_len);
            let sum = checksum::add(checksum::sum(&b[UDP..]), pseudo);
            let c = frame::udp_csum_field(checksum::finish(sum));
            b[UDP_CSUM..UDP_CSUM + 2].copy_from_slice(&c.to_be_bytes());
        }
        b
    }

    #[test]
    fn every_frame_has_valid_checksums_and_the_intended_tuple() {
        let flows = Flows::new(Ipv4Addr::new(198, 18, 0, 0), DST, 9, 1 << 20).unwrap();
        for len in [MIN_UDP_FRAME, 61, 128, 1000, MAX_FRAME] {
            let t = UdpTemplate::new(&MACS, DST, 9, len).unwrap();
            assert_eq!(t.len(), len);
            let mut buf = vec![0xa5u8; MAX_FRAME];
            // Flows across the address and port ranges, stamped and not, patched over
            // whatever the previous frame left in the buffer.
            for (k, i) in (0..(1u64 << 20))
                .step_by(4099)
                .chain([65_535, 65_536])
                .enumerate()
            {
                let tu = flows.tuple(i);
                let stamp = (k % 3 == 0).then_some((k as u64 * 7919, u64::MAX - k as u64));
                if k % 2 == 0 {
                    t.write(&mut buf, u32::from(tu.src), tu.sport, stamp);
                } else {
                    t.patch(&mut buf, u32::from(tu.src), tu.sport, stamp);
                }
                let p = parse(&buf[..len]).unwrap();
                assert_eq!((p.src, p.dst, p.sport, p.dport), (tu.src, DST, tu.sport, 9));
                assert_eq!(p.l4, L4::Udp);
                assert!(p.checksums_ok, "flow {i}, len {len}, stamp {stamp:?}");
                assert_eq!(p.stamp, stamp);
                assert_eq!(
                    buf[..len],
                    reference(tu.src, tu.sport, len, stamp)[..],
                    "flow {i}, len {len}: byte for byte as the full builder"
                );
            }
        }
    }

    #[test]
    fn a_checksum_that_sums_to_zero_is_sent_as_ffff() {
        // Search a source whose UDP sum makes the checksum 0: it must go out as 0xffff
        // (0 would mean "no checksum"), and still verify.
        let t = UdpTemplate::new(&MACS, DST, 9, MIN_UDP_FRAME).unwrap();
        let mut buf = vec![0u8; MIN_UDP_FRAME];
        let mut found = false;
        for sport in 1024..=u16::MAX {
            t.write(
                &mut buf,
                u32::from(Ipv4Addr::new(198, 18, 0, 1)),
                sport,
                None,
            );
            if buf[UDP_CSUM..UDP_CSUM + 2] == [0xff, 0xff] {
                found = true;
                assert!(parse(&buf).unwrap().checksums_ok);
                break;
            }
        }
        assert!(found, "some source port gives a zero sum");
    }

    #[test]
    fn lengths_out_of_range_are_refused() {
        assert!(UdpTemplate::new(&MACS, DST, 9, MIN_UDP_FRAME - 1).is_none());
        assert!(UdpTemplate::new(&MACS, DST, 9, MAX_FRAME + 1).is_none());
    }
}
