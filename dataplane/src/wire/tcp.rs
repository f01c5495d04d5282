//! TCP header (RFC 9293) and its options (MSS, window scale RFC 7323, SACK-permitted and
//! SACK RFC 2018, timestamps RFC 7323).
//!
//! ```text
//! |          Source Port          |       Destination Port        |
//! |                        Sequence Number                        |
//! |                    Acknowledgment Number                      |
//! |  Data |       |C|E|U|A|P|R|S|F|                               |
//! | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//! |           Checksum            |         Urgent Pointer        |
//! |                    Options                    |    Padding    |
//! ```
//!
//! [`TcpPacket::check_len`] checks that the data offset is at least 5 and inside the
//! buffer and that the option list is well framed (`BadTcpHeader`); after it succeeds no
//! accessor panics.

use super::eth::{be16, be32};
use super::{TcpFlags, TcpInfo};
use crate::DropReason;

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ: Range<usize> = 4..8;
    pub const ACK: Range<usize> = 8..12;
    pub const DOFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = field::URGENT.end;
/// Offset of the checksum field.
pub const CHECKSUM_OFF: usize = field::CHECKSUM.start;

/// A TCP option. Unknown kinds and known kinds with a wrong length are `Unknown` (Linux
/// ignores them too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpOption<'a> {
    Mss(u16),
    WindowScale(u8),
    SackPermitted,
    /// Raw SACK blocks (pairs of 32-bit edges).
    Sack(&'a [u8]),
    Timestamps {
        val: u32,
        ecr: u32,
    },
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

/// Iterates over well-framed options; stops at end-of-list or at the first framing error
/// (which `check_len` already reported).
#[derive(Clone, Debug)]
pub struct TcpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = TcpOption<'a>;

    fn next(&mut self) -> Option<TcpOption<'a>> {
        loop {
            let (&kind, tail) = self.rest.split_first()?;
            match kind {
                0 => {
                    self.rest = &[];
                    return None;
                }
                1 => self.rest = tail,
                _ => {
                    let len = usize::from(*tail.first()?);
                    if len < 2 || len > self.rest.len() {
                        self.rest = &[];
                        return None;
                    }
                    let data = &self.rest[2..len];
                    self.rest = &self.rest[len..];
                    return Some(match (kind, data.len()) {
                        (2, 2) => TcpOption::Mss(be16(data)),
                        (3, 1) => TcpOption::WindowScale(data[0]),
                        (4, 0) => TcpOption::SackPermitted,
                        (5, n) if n % 8 == 0 && n > 0 => TcpOption::Sack(data),
                        (8, 8) => TcpOption::Timestamps {
                            val: be32(data),
                            ecr: be32(&data[4..]),
                        },
                        _ => TcpOption::Unknown { kind, data },
                    });
                }
            }
        }
    }
}

/// A view of a TCP segment.
#[derive(Debug, Clone, Copy)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self, DropReason> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` below 20 bytes; `BadTcpHeader` for a data offset below 5 or past the
    /// buffer, or a malformed option list.
    pub fn check_len(&self) -> Result<(), DropReason> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        let hl = usize::from(b[field::DOFF] >> 4) * 4;
        if hl < HEADER_LEN || hl > b.len() {
            return Err(DropReason::BadTcpHeader);
        }
        let mut opts = &b[HEADER_LEN..hl];
        while let Some((&kind, tail)) = opts.split_first() {
            match kind {
                0 => break,
                1 => opts = tail,
                _ => {
                    let len = usize::from(*tail.first().ok_or(DropReason::BadTcpHeader)?);
                    if len < 2 || len > opts.len() {
                        return Err(DropReason::BadTcpHeader);
                    }
                    opts = &opts[len..];
                }
            }
        }
        Ok(())
    }

    pub fn src_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    pub fn dst_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::DST_PORT])
    }

    pub fn seq_number(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::SEQ])
    }

    pub fn ack_number(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::ACK])
    }

    /// Header length in bytes (data offset * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DOFF] >> 4) * 4
    }

    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    pub fn window_len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::WINDOW])
    }

    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    pub fn urgent_at(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::URGENT])
    }

    pub fn options(&self) -> TcpOptions<'_> {
        TcpOptions {
            rest: &self.buffer.as_ref()[HEADER_LEN..self.header_len()],
        }
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// The summary for conntrack; `payload_len` is the buffer length minus the header
    /// (the caller passes exactly the IP payload). MSS / window scale / SACK-permitted are
    /// taken from the last occurrence of each option, as Linux does.
    pub fn info(&self) -> TcpInfo {
        let mut info = TcpInfo {
            sport: self.src_port(),
            dport: self.dst_port(),
            seq: self.seq_number(),
            ack: self.ack_number(),
            flags: self.flags(),
            window: self.window_len(),
            payload_len: u16::try_from(self.payload().len()).unwrap_or(u16::MAX),
            wscale: None,
            sack_perm: false,
            mss: None,
        };
        for opt in self.options() {
            match opt {
                TcpOption::Mss(m) => info.mss = Some(m),
                // RFC 7323 §2.3: shift counts above 14 are treated as 14.
                TcpOption::WindowScale(w) => info.wscale = Some(w.min(14)),
                TcpOption::SackPermitted => info.sack_perm = true,
                _ => {}
            }
        }
        info
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    pub fn set_src_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_dst_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_seq_number(&mut self, v: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_ack_number(&mut self, v: u32) {
        self.buffer.as_mut()[field::ACK].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the data offset from a header length in bytes (multiple of 4, 20..=60).
    pub fn set_header_len(&mut self, len: u8) {
        self.buffer.as_mut()[field::DOFF] = (len / 4) << 4;
    }

    pub fn set_flags(&mut self, f: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = f.0;
    }

    pub fn set_window_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::WINDOW].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_urgent_at(&mut self, v: u16) {
        self.buffer.as_mut()[field::URGENT].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testdata::capture;

    #[test]
    fn syn_from_capture() {
        let f = capture("198.18.0.1.44370 > 198.18.0.2.5001: Flags [S]");
        let t = TcpPacket::new_checked(&f[34..]).unwrap();
        assert_eq!((t.src_port(), t.dst_port()), (44370, 5001));
        assert_eq!(t.seq_number(), 3_718_614_756);
        assert_eq!(t.flags().0, TcpFlags::SYN);
        assert_eq!(t.window_len(), 64240);
        let opts: Vec<_> = t.options().collect();
        assert_eq!(
            opts,
            vec![
                TcpOption::Mss(1460),
                TcpOption::SackPermitted,
                TcpOption::Timestamps {
                    val: 2_040_037_483,
                    ecr: 0
                },
                TcpOption::WindowScale(10),
            ]
        );
        let info = t.info();
        assert_eq!(
            (info.mss, info.wscale, info.sack_perm),
            (Some(1460), Some(10), true)
        );
        assert_eq!(info.payload_len, 0);
    }

    #[test]
    fn data_segment_from_capture() {
        let f = capture("Flags [P.], seq 1:7");
        let t = TcpPacket::new_checked(&f[34..]).unwrap();
        assert_eq!(t.flags().0, TcpFlags::PSH | TcpFlags::ACK);
        assert_eq!(t.payload(), b"hello\n");
        assert_eq!(t.info().payload_len, 6);
    }

    #[test]
    fn malformed() {
        let f = capture("Flags [S]");
        let good = f[34..].to_vec();
        assert_eq!(
            TcpPacket::new_checked(&good[..19]).err(),
            Some(DropReason::Truncated)
        );
        let mut b = good.clone();
        b[12] = 0x40; // data offset 4
        assert_eq!(
            TcpPacket::new_checked(&b[..]).err(),
            Some(DropReason::BadTcpHeader)
        );
        b[12] = 0xf0; // 60 bytes, past the 40-byte segment
        assert_eq!(
            TcpPacket::new_checked(&b[..]).err(),
            Some(DropReason::BadTcpHeader)
        );
        let mut b = good.clone();
        b[21] = 1; // MSS option length 1
        assert_eq!(
            TcpPacket::new_checked(&b[..]).err(),
            Some(DropReason::BadTcpHeader)
        );
        b[21] = 30; // runs past the header
        assert_eq!(
            TcpPacket::new_checked(&b[..]).err(),
            Some(DropReason::BadTcpHeader)
        );
    }
}
