//! UDP header (RFC 768).
//!
//! ```text
//! |          Source Port          |       Destination Port        |
//! |            Length             |           Checksum            |
//! ```
//!
//! [`UdpPacket::check_len`] checks 8 bytes and `8 <= length <= buffer` (`BadUdpLength`);
//! after it succeeds no accessor panics. A length shorter than the buffer is accepted (the
//! rest is trailing data, as Linux trims it).

use super::eth::be16;
use crate::DropReason;

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

pub const HEADER_LEN: usize = field::CHECKSUM.end;
pub const CHECKSUM_OFF: usize = field::CHECKSUM.start;

/// A view of a UDP datagram.
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self, DropReason> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<(), DropReason> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        let len = usize::from(be16(&b[field::LENGTH]));
        if len < HEADER_LEN || len > b.len() {
            return Err(DropReason::BadUdpLength);
        }
        Ok(())
    }

    pub fn src_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    pub fn dst_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::DST_PORT])
    }

    pub fn len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// Whether the length field says there is no payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The payload up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn set_src_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_dst_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testdata::capture;

    #[test]
    fn datagram_from_capture() {
        let f = capture("198.18.0.1.46217 > 198.18.0.2.5003: UDP");
        let u = UdpPacket::new_checked(&f[34..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port(), u.len()), (46217, 5003, 12));
        assert_eq!(u.payload(), b"udp\n");
        assert_ne!(u.checksum(), 0);
    }

    #[test]
    fn bad_lengths() {
        let f = capture("198.18.0.1.46217 > 198.18.0.2.5003: UDP");
        let mut b = f[34..46].to_vec();
        assert_eq!(
            UdpPacket::new_checked(&b[..7]).err(),
            Some(DropReason::Truncated)
        );
        b[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            UdpPacket::new_checked(&b[..]).err(),
            Some(DropReason::BadUdpLength)
        );
        b[4..6].copy_from_slice(&13u16.to_be_bytes());
        assert_eq!(
            UdpPacket::new_checked(&b[..]).err(),
            Some(DropReason::BadUdpLength)
        );
        b[4..6].copy_from_slice(&8u16.to_be_bytes());
        assert!(UdpPacket::new_checked(&b[..]).unwrap().is_empty());
    }
}
