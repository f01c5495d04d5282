//! TCP options: finding the MSS option the way Linux's `nft_exthdr` does, and lowering
//! its value in place with an incremental checksum update (MSS clamping, nft's `tcp
//! option maxseg size set N|rt mtu`).
//!
//! The walk is the kernel's (`nft_exthdr_tcp_set_eval`, checked against Linux 6.x with
//! real SYNs through a namespace router, `rules_kernel.rs`): options from byte 20 of the
//! header to its data-offset length; EOL (0) and NOP (1), and any option whose length
//! byte is 0, take one byte; the walk does not stop at EOL. The first option of kind 2
//! decides: when it runs past the header or is shorter than 4 bytes the packet is
//! [`Mss::Malformed`] (the kernel's rule ends there, as a failed match does; the packet
//! is left alone), otherwise [`Mss::Found`]. A malformed option of another kind only ends
//! the walk. The same walk gives the option matches their facts ([`read_opts`]).

use super::checksum;
use super::{IpInfo, L4Info};

/// MSS option kind.
const KIND_MSS: u8 = 2;

/// The MSS option of a TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mss {
    /// Not a TCP segment with its header in the frame.
    NotTcp,
    /// No MSS option.
    Absent,
    /// The MSS option's value and the frame offset of its two value bytes.
    Found { off: u16, value: u16 },
    /// The first MSS option runs past the header or is too short.
    Malformed,
}

/// The TCP header of the segment `ip` describes in `frame`, to its data-offset length
/// (`None`: not TCP, or the header is not in the frame).
fn header<'a>(frame: &'a [u8], ip: &IpInfo) -> Option<&'a [u8]> {
    if !matches!(ip.l4, Some(L4Info::Tcp(_))) {
        return None;
    }
    let l4 = usize::from(ip.l4_off);
    // Byte 12: the data offset (header length in 32-bit words) in its high nibble.
    let hlen = usize::from(frame.get(l4 + 12)? >> 4) * 4;
    frame.get(l4..l4 + hlen)
}

/// The options of a TCP header as the kernel walks them: (kind, offset in the header,
/// length). The length may run past the header; the walk then ends.
fn options(hdr: &[u8]) -> impl Iterator<Item = (u8, usize, usize)> + '_ {
    let mut i = super::tcp::HEADER_LEN;
    std::iter::from_fn(move || {
        if i + 1 >= hdr.len() {
            return None;
        }
        let len = match (hdr[i], hdr[i + 1]) {
            (0 | 1, _) | (_, 0) => 1,
            (_, l) => usize::from(l),
        };
        let opt = (hdr[i], i, len);
        i += len;
        Some(opt)
    })
}

/// The MSS option of the TCP segment `ip` describes in `frame`.
pub fn find_mss(frame: &[u8], ip: &IpInfo) -> Mss {
    let Some(hdr) = header(frame, ip) else {
        return Mss::NotTcp;
    };
    let l4 = usize::from(ip.l4_off);
    match options(hdr).find(|&(kind, ..)| kind == KIND_MSS) {
        None => Mss::Absent,
        Some((_, i, len)) if i + len > hdr.len() || len < 4 => Mss::Malformed,
        Some((_, i, _)) => Mss::Found {
            off: u16::try_from(l4 + i + 2).unwrap_or(u16::MAX),
            value: u16::from_be_bytes([hdr[i + 2], hdr[i + 3]]),
        },
    }
}

/// What the TCP option matches read (`tcp option maxseg|window|sack-perm|timestamp
/// exists|missing`, `tcp option maxseg size`, `tcp option window count`), from one walk.
///
/// As the kernel's `nft_exthdr_tcp_eval`: only the first option of a kind counts. It
/// exists when it lies within the header (a truncated one reads as missing); a field is
/// read when the option is also long enough to hold it, otherwise (and when the option
/// is absent) the field's match fails. A segment whose header is not in the frame has no
/// options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Opts {
    /// The packet is TCP (the kernel's implied `meta l4proto tcp`): without it every
    /// option match fails, `missing` included.
    pub tcp: bool,
    /// The options that exist, one bit per [`OptKind`].
    pub present: u8,
    /// `maxseg size`.
    pub mss: Option<u16>,
    /// `window count` (the window scale shift).
    pub wscale: Option<u8>,
}

/// The options a match can test for existence, with their TCP kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptKind {
    Maxseg = 2,
    Window = 3,
    SackPerm = 4,
    Timestamp = 8,
}

impl OptKind {
    const ALL: [OptKind; 4] = [
        OptKind::Maxseg,
        OptKind::Window,
        OptKind::SackPerm,
        OptKind::Timestamp,
    ];

    fn bit(self) -> u8 {
        match self {
            OptKind::Maxseg => 1,
            OptKind::Window => 2,
            OptKind::SackPerm => 4,
            OptKind::Timestamp => 8,
        }
    }
}

impl Opts {
    /// Whether option `k` exists.
    pub fn has(self, k: OptKind) -> bool {
        self.present & k.bit() != 0
    }
}

/// The options of the TCP segment `ip` describes in `frame` ([`Opts`]).
pub fn read_opts(frame: &[u8], ip: &IpInfo) -> Opts {
    let mut o = Opts {
        tcp: matches!(ip.l4, Some(L4Info::Tcp(_))),
        ..Opts::default()
    };
    let Some(hdr) = header(frame, ip) else {
        return o;
    };
    let mut seen = 0u8;
    for (kind, i, len) in options(hdr) {
        let Some(k) = OptKind::ALL.into_iter().find(|&k| k as u8 == kind) else {
            continue;
        };
        if seen & k.bit() != 0 {
            continue;
        }
        seen |= k.bit();
        if i + len > hdr.len() {
            continue;
        }
        o.present |= k.bit();
        match k {
            OptKind::Maxseg if len >= 4 => {
                o.mss = Some(u16::from_be_bytes([hdr[i + 2], hdr[i + 3]]));
            }
            OptKind::Window if len >= 3 => o.wscale = Some(hdr[i + 2]),
            _ => {}
        }
    }
    o
}

/// Writes `new` as the MSS value whose bytes start at frame offset `off` (from
/// [`find_mss`]) and updates the TCP checksum. The value may sit at an odd offset from the
/// header (after one NOP): the update covers the aligned 16-bit words around it. `false`
/// (nothing written) when the offsets fall outside the frame.
pub fn set_mss(frame: &mut [u8], ip: &IpInfo, off: u16, new: u16) -> bool {
    let l4 = usize::from(ip.l4_off);
    let off = usize::from(off);
    let csum_off = l4 + super::tcp::CHECKSUM_OFF;
    // The aligned window (relative to the header) holding the two value bytes.
    let start = off - (off - l4) % 2;
    let end = start + if (off - l4).is_multiple_of(2) { 2 } else { 4 };
    if off < l4 + super::tcp::HEADER_LEN || end > frame.len() || csum_off + 2 > frame.len() {
        return false;
    }
    let mut old = [0u8; 4];
    let w = end - start;
    old[..w].copy_from_slice(&frame[start..end]);
    frame[off..off + 2].copy_from_slice(&new.to_be_bytes());
    let csum = u16::from_be_bytes([frame[csum_off], frame[csum_off + 1]]);
    let csum = checksum::update_bytes(csum, &old[..w], &frame[start..end]);
    frame[csum_off..csum_off + 2].copy_from_slice(&csum.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP SYN from 198.18.1.2 to 198.18.2.2 with `opts` (a multiple of 4 bytes) as its
    /// options, checksums filled, and its summary (made with NOPs in their place: the
    /// parser refuses some of the option lists the walk must answer for).
    pub(crate) fn syn(opts: &[u8]) -> (Vec<u8>, IpInfo) {
        use crate::wire::build::{EthSpec, Frame, IpSpec, L4Spec, TcpSpec};
        use crate::wire::{Addr, TcpFlags};
        let ip = IpSpec::new(
            Addr::from_v4([198, 18, 1, 2]),
            Addr::from_v4([198, 18, 2, 2]),
        );
        let nops = vec![1u8; opts.len()];
        let tcp = TcpSpec {
            sport: 40000,
            dport: 80,
            flags: TcpFlags(TcpFlags::SYN),
            window: 64240,
            payload: &nops,
            ..TcpSpec::default()
        };
        let mut f = Frame::ip(EthSpec::default(), ip, L4Spec::Tcp(tcp))
            .to_vec()
            .expect("frame");
        // The payload becomes the options: a longer data offset, checksums again.
        f[14 + 20 + 12] = u8::try_from((20 + opts.len()) / 4).expect("doff") << 4;
        let ip = parsed(&f).expect("summary");
        f[54..54 + opts.len()].copy_from_slice(opts);
        crate::wire::rewrite::fill_checksums(&mut f, &ip).expect("checksums");
        (f, ip)
    }

    fn parsed(f: &[u8]) -> Option<IpInfo> {
        match crate::wire::parse(f, &crate::wire::TRUST_ALL) {
            Ok(crate::wire::Parsed::Ip(_, ip)) => Some(ip),
            _ => None,
        }
    }

    /// The TCP checksum verifies.
    fn valid(f: &[u8], ip: &IpInfo) -> bool {
        let l4 = usize::from(ip.l4_off);
        let seg = &f[l4..usize::from(ip.l3_off) + usize::from(ip.ip_len)];
        let len = u16::try_from(seg.len()).expect("len");
        let src = ip.src.to_v4().expect("v4");
        let dst = ip.dst.to_v4().expect("v4");
        let s = checksum::pseudo_v4(src, dst, crate::wire::proto::TCP, len);
        checksum::verify(checksum::add(s, checksum::sum(seg)))
    }

    #[test]
    fn walk_as_the_kernel() {
        // The option lists sent through a Linux router (module docs).
        let cases: &[(&[u8], Option<u16>)] = &[
            (&[2, 4, 0x05, 0xb4], Some(1460)),
            (&[1, 1, 1, 1], None),
            (&[5, 0xb4, 0, 0], None),
            (&[0, 0, 0, 0, 2, 4, 0x05, 0xb4], Some(1460)),
            (&[4, 2, 2, 4, 0x05, 0xb4, 1, 1], Some(1460)),
            (&[1, 3, 3, 7, 2, 4, 0x05, 0x78], Some(1400)),
            (&[1, 2, 4, 0x05, 0xb4, 0, 0, 0], Some(1460)),
        ];
        for &(opts, want) in cases {
            let (f, ip) = syn(opts);
            match (find_mss(&f, &ip), want) {
                (Mss::Found { value, .. }, Some(w)) => assert_eq!(value, w, "{opts:?}"),
                (Mss::Absent, None) => {}
                (m, w) => panic!("{opts:?}: {m:?}, want {w:?}"),
            }
        }
        // The parser drops these (`wire::tcp`); the walk must still answer for them.
        for bad in [
            [2u8, 0xff, 5, 0xb4],
            [2, 2, 0, 0],
            [2, 0, 0, 0],
            [2, 3, 0, 0],
        ] {
            let (f, ip) = syn(&bad);
            assert_eq!(find_mss(&f, &ip), Mss::Malformed, "{bad:?}");
        }
    }

    #[test]
    fn rewrite_keeps_the_checksum_valid_at_even_and_odd_offsets() {
        for opts in [
            &[2u8, 4, 0x05, 0xb4][..],
            &[1, 2, 4, 0x05, 0xb4, 0, 0, 0],
            &[1, 1, 1, 2, 4, 0x05, 0xb4, 0],
        ] {
            let (mut f, ip) = syn(opts);
            let Mss::Found { off, value } = find_mss(&f, &ip) else {
                panic!("{opts:?}")
            };
            assert_eq!(value, 1460);
            assert!(set_mss(&mut f, &ip, off, 1360));
            assert!(valid(&f, &ip), "checksum after rewrite, {opts:?}");
            assert_eq!(find_mss(&f, &ip), Mss::Found { off, value: 1360 });
        }
    }

    #[test]
    fn option_facts_as_the_kernel_reads_them() {
        let all = |mss, wscale| Opts {
            tcp: true,
            present: 0b1111,
            mss,
            wscale,
        };
        let cases: &[(&[u8], Opts)] = &[
            // MSS, SACK permitted, timestamp, NOP, window scale 7.
            (
                &[
                    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
                ],
                all(Some(1460), Some(7)),
            ),
            // Only the first option of a kind counts.
            (
                &[2, 4, 0x05, 0xb4, 2, 4, 0x02, 0x18],
                Opts {
                    tcp: true,
                    present: 0b0001,
                    mss: Some(1460),
                    wscale: None,
                },
            ),
            // Too short to hold its field: it exists, its field is not there.
            (
                &[3, 2, 2, 3, 0, 0, 0, 0],
                Opts {
                    tcp: true,
                    present: 0b0011,
                    mss: None,
                    wscale: None,
                },
            ),
            // Running past the header: missing.
            (
                &[1, 1, 4, 2, 1, 1, 8, 10],
                Opts {
                    tcp: true,
                    present: 0b0100,
                    mss: None,
                    wscale: None,
                },
            ),
            // Past the end-of-list byte the walk goes on.
            (
                &[0, 0, 4, 2],
                Opts {
                    tcp: true,
                    present: 0b0100,
                    mss: None,
                    wscale: None,
                },
            ),
        ];
        for &(opts, want) in cases {
            let (f, ip) = syn(opts);
            assert_eq!(read_opts(&f, &ip), want, "{opts:?}");
        }
        // Not TCP: no options, and the matches know it.
        let (f, mut ip) = syn(&[2, 4, 0x05, 0xb4]);
        ip.l4 = None;
        assert_eq!(read_opts(&f, &ip), Opts::default());
    }
}
