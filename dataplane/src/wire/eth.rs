//! Ethernet II frames (IEEE 802.3) and the 802.1Q VLAN tag.
//!
//! ```text
//!  0                   6                  12      14
//! +-------------------+-------------------+-------+---------
//! | destination MAC   | source MAC        | type  | payload
//! +-------------------+-------------------+-------+---------
//! 802.1Q: type = 0x8100, then TCI (PCP:3 DEI:1 VID:12), then the inner EtherType.
//! ```
//!
//! Contract (smoltcp style): after [`EthernetFrame::check_len`] (or `new_checked`) has
//! succeeded, no accessor panics. `new_unchecked` views may panic on short buffers.

use crate::DropReason;

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
    // Inside a VLAN tag (offsets from the tag start, i.e. byte 14 of the frame).
    pub const TCI: Range<usize> = 0..2;
    pub const INNER_TYPE: Range<usize> = 2..4;
}

/// Length of the untagged Ethernet header.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Length of an 802.1Q tag.
pub const VLAN_TAG_LEN: usize = field::INNER_TYPE.end;
/// Minimum frame length without FCS (60 bytes).
pub const MIN_FRAME_LEN: usize = 60;

/// EtherTypes the appliance knows.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    pub const IPV6: u16 = 0x86dd;
}

/// A view of an Ethernet II frame.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer and checks that the header fits.
    pub fn new_checked(buffer: T) -> Result<Self, DropReason> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// `Truncated` if the buffer is shorter than the Ethernet header.
    pub fn check_len(&self) -> Result<(), DropReason> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst_addr(&self) -> [u8; 6] {
        mac(&self.buffer.as_ref()[field::DST])
    }

    pub fn src_addr(&self) -> [u8; 6] {
        mac(&self.buffer.as_ref()[field::SRC])
    }

    /// The outer EtherType (0x8100 for a tagged frame).
    pub fn ethertype(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::ETHERTYPE])
    }

    /// Everything after the 14-byte header (a VLAN tag if tagged).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a);
    }

    pub fn set_src_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a);
    }

    pub fn set_ethertype(&mut self, t: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&t.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// A view of an 802.1Q tag (TCI + inner EtherType), starting after the outer EtherType.
#[derive(Debug, Clone, Copy)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanTag { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self, DropReason> {
        let v = Self::new_unchecked(buffer);
        v.check_len()?;
        Ok(v)
    }

    pub fn check_len(&self) -> Result<(), DropReason> {
        if self.buffer.as_ref().len() < VLAN_TAG_LEN {
            return Err(DropReason::Truncated);
        }
        Ok(())
    }

    /// Priority code point (3 bits).
    pub fn pcp(&self) -> u8 {
        self.buffer.as_ref()[0] >> 5
    }

    /// VLAN identifier (12 bits).
    pub fn vid(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::TCI]) & 0x0fff
    }

    pub fn inner_ethertype(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::INNER_TYPE])
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[VLAN_TAG_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    /// Sets the TCI (priority 0, DEI 0, the given VID masked to 12 bits).
    pub fn set_vid(&mut self, vid: u16) {
        self.buffer.as_mut()[field::TCI].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
    }

    pub fn set_inner_ethertype(&mut self, t: u16) {
        self.buffer.as_mut()[field::INNER_TYPE].copy_from_slice(&t.to_be_bytes());
    }
}

pub(crate) fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

pub(crate) fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

pub(crate) fn mac(b: &[u8]) -> [u8; 6] {
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testdata::capture;

    #[test]
    fn arp_request_from_capture() {
        let f = capture("ARP, Request");
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.dst_addr(), [0xff; 6]);
        assert_eq!(e.ethertype(), ethertype::ARP);
        assert_eq!(e.payload().len(), f.len() - 14);
    }

    #[test]
    fn short_frame_is_truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&[0u8; 13][..]).err(),
            Some(DropReason::Truncated)
        );
        assert_eq!(
            VlanTag::new_checked(&[0u8; 3][..]).err(),
            Some(DropReason::Truncated)
        );
    }

    #[test]
    fn vlan_tag_fields() {
        let mut b = [0u8; 4];
        let mut v = VlanTag::new_unchecked(&mut b[..]);
        v.set_vid(0x1234);
        v.set_inner_ethertype(ethertype::IPV6);
        let v = VlanTag::new_checked(&b[..]).unwrap();
        assert_eq!(v.vid(), 0x234);
        assert_eq!(v.pcp(), 0);
        assert_eq!(v.inner_ethertype(), ethertype::IPV6);
    }
}
