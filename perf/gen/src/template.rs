//! Prebuilt frames: a UDP frame ([`Template::udp`]) or a TCP SYN ([`Template::syn`]).
//! Every frame of a run is the same bytes except the client's source address and port, the
//! two checksums and, on the stamped UDP sample, the 18-byte stamp. The template is built
//! once (with [`frame::udp`]'s or [`frame::tcp`]'s layout); per frame the writer stores the
//! varying fields and derives both checksums from partial sums taken once (RFC 1071's
//! sums are additive: the sum of the fixed words plus the sum of the varying ones), so a
//! frame costs a few stores and additions instead of two checksum passes over the frame.
//!
//! Unstamped UDP frames carry a zero payload; a stamped one carries the stamp and its
//! words are added to the UDP sum. A SYN carries no payload (a 60-byte frame: the 6 bytes
//! of padding are outside the IP datagram and its checksums) and is never stamped.

use std::net::Ipv4Addr;

use dataplane::wire::checksum;

use crate::frame::{
    self, ETH_LEN, IP_LEN, MAGIC, MIN_FRAME, Macs, STAMP_LEN, Segment, TCP_SYN, UDP_LEN,
};

/// Offsets in the frame.
const IP_CSUM: usize = ETH_LEN + 10;
const IP_SRC: usize = ETH_LEN + 12;
const L4: usize = ETH_LEN + IP_LEN;
const SPORT: usize = L4;
const UDP_CSUM: usize = L4 + 6;
const TCP_CSUM: usize = L4 + 16;
const STAMP: usize = L4 + UDP_LEN;

/// The initial sequence number of every SYN (the device tracks windows, not ISNs).
pub const SYN_ISN: u32 = 0x5eed_0001;

/// What follows the IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// UDP, with a stamp area.
    Udp,
    /// A TCP SYN without payload.
    Syn,
}

/// A frame of one kind and length to one destination, ready to be given a source.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
    kind: Kind,
    /// Sum of the IPv4 header with the source address and checksum zero, folded to 16
    /// bits (so adding a few more words cannot overflow).
    ip_sum: u32,
    /// Sum of the L4 pseudo header, header and (zero) payload with the source address,
    /// source port and checksum zero, folded to 16 bits.
    l4_sum: u32,
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

impl Template {
    /// The UDP frame of `len` bytes without FCS (`MIN_UDP_FRAME..=MAX_FRAME`) from `macs`
    /// to `dst:dport`; `None` when `len` is out of range.
    pub fn udp(macs: &Macs, dst: Ipv4Addr, dport: u16, len: usize) -> Option<Template> {
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
        Template::sums(bytes, Kind::Udp, dst, 17, UDP_CSUM)
    }

    /// The TCP SYN (sequence [`SYN_ISN`], window 65535, no options, no payload; a
    /// 60-byte frame) from `macs` to `dst:dport`.
    pub fn syn(macs: &Macs, dst: Ipv4Addr, dport: u16) -> Option<Template> {
        let mut bytes = vec![0u8; MIN_FRAME];
        let seg = Segment {
            src: Ipv4Addr::UNSPECIFIED,
            dst,
            sport: 0,
            dport,
            flags: TCP_SYN,
            seq: SYN_ISN,
            ack: 0,
            stamp: None,
        };
        let n = frame::tcp(&mut bytes, macs, &seg)?;
        bytes.truncate(n);
        Template::sums(bytes, Kind::Syn, dst, 6, TCP_CSUM)
    }

    /// The template of `bytes` (source address and port zero): both checksum fields
    /// cleared, their partial sums taken.
    fn sums(
        mut bytes: Vec<u8>,
        kind: Kind,
        dst: Ipv4Addr,
        proto: u8,
        csum_at: usize,
    ) -> Option<Template> {
        bytes[IP_CSUM..IP_CSUM + 2].fill(0);
        bytes[csum_at..csum_at + 2].fill(0);
        let ip_sum = u32::from(checksum::fold(checksum::sum(&bytes[ETH_LEN..L4])));
        let total = usize::from(u16::from_be_bytes([bytes[ETH_LEN + 2], bytes[ETH_LEN + 3]]));
        let l4 = &bytes[L4..ETH_LEN + total];
        let l4_len = u16::try_from(l4.len()).ok()?;
        let pseudo = checksum::pseudo_v4([0; 4], dst.octets(), proto, l4_len);
        let l4_sum = u32::from(checksum::fold(checksum::add(checksum::sum(l4), pseudo)));
        Some(Template {
            bytes,
            kind,
            ip_sum,
            l4_sum,
        })
    }

    /// Frame length without FCS.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether frames of this template carry a stamp when given one (UDP; a SYN never).
    pub fn stamps(&self) -> bool {
        self.kind == Kind::Udp
    }

    /// The template bytes (source address and port zero, checksums zero).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Writes the whole frame for source `src:sport` into `buf` (at least [`len`] bytes),
    /// stamped with `(seq, tsc)` when `stamp` is given and the template [`stamps`].
    ///
    /// [`len`]: Self::len
    /// [`stamps`]: Self::stamps
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
        let mut l4 = self.l4_sum + src_words + u32::from(sport);
        if self.kind == Kind::Udp {
            match stamp {
                Some((seq, tsc)) => {
                    buf[STAMP..STAMP + 8].copy_from_slice(&tsc.to_be_bytes());
                    buf[STAMP + 8..STAMP + 16].copy_from_slice(&seq.to_be_bytes());
                    buf[STAMP + 16..STAMP + 18].copy_from_slice(&MAGIC.to_be_bytes());
                    // At most 12 words of 0xffff in all: far from overflowing u32.
                    l4 += words64(tsc) + words64(seq) + u32::from(MAGIC);
                }
                None => buf[STAMP..STAMP + STAMP_LEN].fill(0),
            }
        }
        buf[IP_SRC..IP_SRC + 4].copy_from_slice(&src.to_be_bytes());
        buf[SPORT..SPORT + 2].copy_from_slice(&sport.to_be_bytes());
        let ip = checksum::finish(self.ip_sum + src_words);
        buf[IP_CSUM..IP_CSUM + 2].copy_from_slice(&ip.to_be_bytes());
        let l4 = checksum::finish(l4);
        match self.kind {
            Kind::Udp => buf[UDP_CSUM..UDP_CSUM + 2]
                .copy_from_slice(&frame::udp_csum_field(l4).to_be_bytes()),
            Kind::Syn => buf[TCP_CSUM..TCP_CSUM + 2].copy_from_slice(&l4.to_be_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::Flows;
    use crate::frame::{L4, MAX_FRAME, MIN_UDP_FRAME, TEST_MACS as MACS, parse};
    use crate::frame::{MIN_FRAME, Segment, TCP_SYN};

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
            let udp_len = u16::try_from(len - L4).unwrap();
            let pseudo = checksum::pseudo_v4(src.octets(), DST.octets(), 17, udp_len);
            let sum = checksum::add(checksum::sum(&b[L4..]), pseudo);
            let c = frame::udp_csum_field(checksum::finish(sum));
            b[UDP_CSUM..UDP_CSUM + 2].copy_from_slice(&c.to_be_bytes());
        }
        b
    }

    #[test]
    fn every_frame_has_valid_checksums_and_the_intended_tuple() {
        let flows = Flows::new(Ipv4Addr::new(198, 18, 0, 0), DST, 9, 1 << 20).unwrap();
        for len in [MIN_UDP_FRAME, 61, 128, 1000, MAX_FRAME] {
            let t = Template::udp(&MACS, DST, 9, len).unwrap();
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
        let t = Template::udp(&MACS, DST, 9, MIN_UDP_FRAME).unwrap();
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
    fn every_syn_is_a_valid_syn_of_its_flow_byte_for_byte() {
        let flows = Flows::new(Ipv4Addr::new(198, 18, 0, 0), DST, 80, 1 << 20).unwrap();
        let t = Template::syn(&MACS, DST, 80).unwrap();
        assert_eq!(t.len(), MIN_FRAME);
        assert!(!t.stamps());
        // Start from a stamped UDP frame in the buffer: `write` must leave nothing of it.
        let mut buf = vec![0u8; MAX_FRAME];
        Template::udp(&MACS, DST, 9, MAX_FRAME).unwrap().write(
            &mut buf,
            0xc612_0001,
            7,
            Some((1, 2)),
        );
        for (k, i) in (0..(1u64 << 20))
            .step_by(4099)
            .chain([65_535, 65_536, (1 << 20) - 1])
            .enumerate()
        {
            let tu = flows.tuple(i);
            // A stamp given to a SYN template is ignored.
            let stamp = (k % 3 == 0).then_some((k as u64, 99));
            if k == 0 {
                t.write(&mut buf, u32::from(tu.src), tu.sport, stamp);
            } else {
                t.patch(&mut buf, u32::from(tu.src), tu.sport, stamp);
            }
            let f = &buf[..t.len()];
            let p = parse(f).unwrap();
            assert_eq!(
                (p.src, p.dst, p.sport, p.dport),
                (tu.src, DST, tu.sport, 80)
            );
            assert_eq!(
                p.l4,
                L4::Tcp {
                    flags: TCP_SYN,
                    seq: SYN_ISN,
                    ack: 0,
                    payload: 0
                },
                "flow {i}"
            );
            assert!(p.checksums_ok, "flow {i}");
            assert_eq!(p.stamp, None);
            // The full builder's frame of the same segment, checksums computed in one pass.
            let mut r = vec![0u8; MIN_FRAME];
            let seg = Segment {
                src: tu.src,
                dst: DST,
                sport: tu.sport,
                dport: 80,
                flags: TCP_SYN,
                seq: SYN_ISN,
                ack: 0,
                stamp: None,
            };
            assert_eq!(frame::tcp(&mut r, &MACS, &seg), Some(MIN_FRAME));
            assert_eq!(f, &r[..], "flow {i}: byte for byte as the full builder");
        }
    }

    #[test]
    fn a_syn_is_what_the_dataplane_parser_takes_as_a_new_tcp_connection() {
        use dataplane::wire::{L4Info, Parsed as Wire, VERIFY_ALL, parse as wire_parse};
        let t = Template::syn(&MACS, DST, 443).unwrap();
        let mut buf = vec![0u8; MIN_FRAME];
        t.write(
            &mut buf,
            u32::from(Ipv4Addr::new(198, 19, 255, 254)),
            65_535,
            None,
        );
        let Ok(Wire::Ip(_, ip)) = wire_parse(&buf, &VERIFY_ALL) else {
            panic!("fwd's parser refuses the SYN");
        };
        match ip.l4 {
            Some(L4Info::Tcp(t)) => assert_eq!(
                (t.flags.0, t.sport, t.dport, t.seq, t.payload_len),
                (TCP_SYN, 65_535, 443, SYN_ISN, 0)
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lengths_out_of_range_are_refused() {
        assert!(Template::udp(&MACS, DST, 9, MIN_UDP_FRAME - 1).is_none());
        assert!(Template::udp(&MACS, DST, 9, MAX_FRAME + 1).is_none());
    }
}
