//! ARP for Ethernet/IPv4 (RFC 826).
//!
//! ```text
//! htype(2) ptype(2) hlen(1) plen(1) oper(2) sha(6) spa(4) tha(6) tpa(4)   = 28 bytes
//! ```
//!
//! After [`ArpPacket::check_len`] succeeds no accessor panics. `check_len` also rejects
//! anything but Ethernet (htype 1, hlen 6) over IPv4 (ptype 0x0800, plen 4) with `BadArp`.

use super::ArpInfo;
use super::eth::{be16, mac};
use crate::DropReason;

mod field {
    use core::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;
pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self, DropReason> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` if shorter than 28 bytes; `BadArp` if not Ethernet/IPv4 or the
    /// operation is neither request nor reply.
    pub fn check_len(&self) -> Result<(), DropReason> {
        let b = self.buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(DropReason::Truncated);
        }
        if be16(&b[field::HTYPE]) != 1
            || be16(&b[field::PTYPE]) != 0x0800
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(DropReason::BadArp);
        }
        let op = be16(&b[field::OPER]);
        if op != OP_REQUEST && op != OP_REPLY {
            return Err(DropReason::BadArp);
        }
        Ok(())
    }

    pub fn operation(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::OPER])
    }

    pub fn sender_mac(&self) -> [u8; 6] {
        mac(&self.buffer.as_ref()[field::SHA])
    }

    pub fn sender_ip(&self) -> [u8; 4] {
        ip4(&self.buffer.as_ref()[field::SPA])
    }

    pub fn target_mac(&self) -> [u8; 6] {
        mac(&self.buffer.as_ref()[field::THA])
    }

    pub fn target_ip(&self) -> [u8; 4] {
        ip4(&self.buffer.as_ref()[field::TPA])
    }

    /// The summary the pipeline uses.
    pub fn info(&self) -> ArpInfo {
        ArpInfo {
            operation: self.operation(),
            sender_mac: self.sender_mac(),
            sender_ip: self.sender_ip(),
            target_mac: self.target_mac(),
            target_ip: self.target_ip(),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes the fixed Ethernet/IPv4 header fields and every address from `info`.
    pub fn fill(&mut self, info: &ArpInfo) {
        let b = self.buffer.as_mut();
        b[field::HTYPE].copy_from_slice(&1u16.to_be_bytes());
        b[field::PTYPE].copy_from_slice(&0x0800u16.to_be_bytes());
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        b[field::OPER].copy_from_slice(&info.operation.to_be_bytes());
        b[field::SHA].copy_from_slice(&info.sender_mac);
        b[field::SPA].copy_from_slice(&info.sender_ip);
        b[field::THA].copy_from_slice(&info.target_mac);
        b[field::TPA].copy_from_slice(&info.target_ip);
    }
}

fn ip4(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testdata::capture;

    #[test]
    fn reply_from_capture() {
        let f = capture("ARP, Reply");
        let a = ArpPacket::new_checked(&f[14..]).unwrap();
        assert_eq!(a.operation(), OP_REPLY);
        assert_eq!(a.sender_ip(), [198, 18, 0, 2]);
        assert_eq!(a.target_ip(), [198, 18, 0, 1]);
        assert_eq!(a.sender_mac(), [0xe2, 0xe8, 0xf6, 0x8f, 0xa9, 0x64]);
    }

    #[test]
    fn fill_round_trips() {
        let info = ArpInfo {
            operation: OP_REQUEST,
            sender_mac: [2, 0, 0, 0, 0, 1],
            sender_ip: [192, 0, 2, 1],
            target_mac: [0; 6],
            target_ip: [192, 0, 2, 2],
        };
        let mut b = [0u8; PACKET_LEN];
        ArpPacket::new_unchecked(&mut b[..]).fill(&info);
        assert_eq!(ArpPacket::new_checked(&b[..]).unwrap().info(), info);
    }

    #[test]
    fn malformed() {
        let f = capture("ARP, Request");
        let mut a = f[14..].to_vec();
        assert_eq!(
            ArpPacket::new_checked(&a[..27]).err(),
            Some(DropReason::Truncated)
        );
        a[5] = 16; // plen 16: not IPv4
        assert_eq!(
            ArpPacket::new_checked(&a[..]).err(),
            Some(DropReason::BadArp)
        );
        a[5] = 4;
        a[7] = 3; // RARP request
        assert_eq!(
            ArpPacket::new_checked(&a[..]).err(),
            Some(DropReason::BadArp)
        );
    }
}
