//! IPv4 header (RFC 791) with options and fragment fields.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |Type of Service|          Total Length         |
//! |         Identification        |Flags|      Fragment Offset    |
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! |                       Source Address                          |
//! |                    Destination Address                        |
//! |                    Options                    |    Padding    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! [`Ipv4Packet::check_len`] checks version, IHL, total length against the buffer and the
//! option framing; after it succeeds no accessor panics. The buffer may be longer than the
//! total length (Ethernet padding); [`Ipv4Packet::payload`] stops at the total length.

use super::checksum;
use super::eth::be16;
use crate::DropReason;

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = field::DST.end;
/// Offset of the header checksum.
pub const CHECKSUM_OFF: usize = field::CHECKSUM.start;
/// Offset of the source address.
pub const SRC_OFF: usize = field::SRC.start;
/// Offset of the destination address.
pub const DST_OFF: usize = field::DST.start;
/// Offset of the TTL byte.
pub const TTL_OFF: usize = field::TTL;

/// A view of an IPv4 packet.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self, DropReason> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks, in order: 20 bytes present (`Truncated`), version 4 (`BadIpVersion`),
    /// 5 <= IHL and the header fits (`BadIhl`), IHL*4 <= total length <= buffer
    /// (`BadIpLength`), option framing (`BadIpOptions`).
    pub fn check_len(&self) -> Result<(), DropReason> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(DropReason::BadIpVersion);
        }
        let hl = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if hl < HEADER_LEN || hl > b.len() {
            return Err(DropReason::BadIhl);
        }
        let total = usize::from(be16(&b[field::LENGTH]));
        if total < hl || total > b.len() {
            return Err(DropReason::BadIpLength);
        }
        check_options(&b[HEADER_LEN..hl])
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    pub fn total_len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LENGTH])
    }

    pub fn ident(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::IDENT])
    }

    pub fn dont_frag(&self) -> bool {
        self.buffer.as_ref()[field::FLG_OFF.start] & 0x40 != 0
    }

    pub fn more_frags(&self) -> bool {
        self.buffer.as_ref()[field::FLG_OFF.start] & 0x20 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be16(&self.buffer.as_ref()[field::FLG_OFF]) & 0x1fff) << 3
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    pub fn src_addr(&self) -> [u8; 4] {
        let b = &self.buffer.as_ref()[field::SRC];
        [b[0], b[1], b[2], b[3]]
    }

    pub fn dst_addr(&self) -> [u8; 4] {
        let b = &self.buffer.as_ref()[field::DST];
        [b[0], b[1], b[2], b[3]]
    }

    /// The option bytes (between the fixed header and IHL*4).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// Whether the options carry a loose or strict source route (LSRR, SSRR). A list cut
    /// short (framing is `check_len`'s business) ends the walk.
    pub fn has_source_route(&self) -> bool {
        let mut opts = self.options();
        while let Some(&kind) = opts.first() {
            match kind {
                0 => return false,
                1 => opts = &opts[1..],
                option::LSRR | option::SSRR => return true,
                _ => {
                    let len = opts.get(1).map_or(opts.len(), |&l| usize::from(l).max(2));
                    opts = opts.get(len..).unwrap_or(&[]);
                }
            }
        }
        false
    }

    /// Whether the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(checksum::sum(&self.buffer.as_ref()[..self.header_len()]))
    }

    /// The payload, up to the total length.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length in bytes (a multiple of 4, 20..=60).
    pub fn set_version_and_len(&mut self, header_len: u8) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) & 0x0f);
    }

    pub fn set_tos(&mut self, v: u8) {
        self.buffer.as_mut()[field::TOS] = v;
    }

    pub fn set_total_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_ident(&mut self, v: u16) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets DF, MF and the fragment offset (bytes, multiple of 8).
    pub fn set_frag(&mut self, dont_frag: bool, more: bool, offset: u16) {
        let v = (u16::from(dont_frag) << 14) | (u16::from(more) << 13) | ((offset >> 3) & 0x1fff);
        self.buffer.as_mut()[field::FLG_OFF].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_src_addr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a);
    }

    pub fn set_dst_addr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a);
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = checksum::checksum(&self.buffer.as_ref()[..hl]);
        self.set_checksum(c);
    }
}

/// IPv4 option types (RFC 791 §3.1, copied flag included).
pub mod option {
    /// Loose source and record route.
    pub const LSRR: u8 = 0x83;
    /// Strict source and record route.
    pub const SSRR: u8 = 0x89;
}

/// Option framing (RFC 791 §3.1): type 0 ends the list, type 1 is one byte, every other
/// option has a length byte >= 2 that stays inside the option area.
fn check_options(mut opts: &[u8]) -> Result<(), DropReason> {
    while let Some(&kind) = opts.first() {
        match kind {
            0 => return Ok(()),
            1 => opts = &opts[1..],
            _ => {
                let len = usize::from(*opts.get(1).ok_or(DropReason::BadIpOptions)?);
                if len < 2 || len > opts.len() {
                    return Err(DropReason::BadIpOptions);
                }
                opts = &opts[len..];
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testdata::capture;

    #[test]
    fn echo_request_from_capture() {
        let f = capture("198.18.0.1 > 198.18.0.2: ICMP echo request, id 14507");
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.header_len(), 20);
        assert_eq!(ip.total_len(), 84);
        assert_eq!(ip.protocol(), 1);
        assert_eq!(ip.src_addr(), [198, 18, 0, 1]);
        assert_eq!(ip.dst_addr(), [198, 18, 0, 2]);
        assert!(ip.dont_frag());
        assert!(ip.verify_checksum());
        assert_eq!(ip.payload().len(), 64);
    }

    #[test]
    fn fragments_from_capture() {
        let f = capture("ICMP echo request, id 14555");
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(ip.more_frags());
        assert_eq!(ip.frag_offset(), 0);
        let later = capture("198.18.0.1 > 198.18.0.2: ip-proto-1");
        let ip = Ipv4Packet::new_checked(&later[14..]).unwrap();
        assert_eq!(ip.frag_offset(), 1480);
        assert!(ip.verify_checksum());
    }

    #[test]
    fn malformed_headers() {
        let f = capture("ICMP echo request, id 14507");
        let good = f[14..].to_vec();
        assert_eq!(
            Ipv4Packet::new_checked(&good[..19]).err(),
            Some(DropReason::Truncated)
        );
        let mut b = good.clone();
        b[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(DropReason::BadIpVersion)
        );
        b[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(DropReason::BadIhl)
        );
        let mut b = good.clone();
        b[2..4].copy_from_slice(&200u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(DropReason::BadIpLength)
        );
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(DropReason::BadIpLength)
        );
        // IHL 6 with an option whose length byte runs past the header.
        let mut b = good.clone();
        b[0] = 0x46;
        b[20] = 0x07;
        b[21] = 9;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(DropReason::BadIpOptions)
        );
        b[21] = 4; // record route, 4 bytes: fits.
        assert!(Ipv4Packet::new_checked(&b[..]).is_ok());
    }

    #[test]
    fn fill_checksum_matches_capture() {
        let f = capture("ICMP echo request, id 14507");
        let mut b = f[14..34].to_vec();
        let orig = Ipv4Packet::new_unchecked(&b[..]).checksum();
        let mut ip = Ipv4Packet::new_unchecked(&mut b[..]);
        ip.set_checksum(0);
        ip.fill_checksum();
        assert_eq!(ip.checksum(), orig);
    }
}
