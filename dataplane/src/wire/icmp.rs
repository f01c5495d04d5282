//! ICMP (RFC 792) and ICMPv6 (RFC 4443) messages, including neighbour discovery
//! (RFC 4861). Both share the 8-byte layout below; only type numbers differ.
//!
//! ```text
//! |     Type      |     Code      |          Checksum             |
//! |        Identifier / unused    |   Sequence / MTU / pointer    |
//! |     Data: echo payload, or the embedded IP header + 8 bytes, or ND body ...
//! ```
//!
//! [`IcmpPacket::check_len`] only checks the 8-byte header (`Truncated`); after it
//! succeeds no accessor panics. ND accessors check their own extra length and return
//! `None` when the body is too short.

use super::eth::be16;
use crate::DropReason;

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const SEQ: Range<usize> = 6..8;
    pub const ND_TARGET: Range<usize> = 8..24;
}

pub const HEADER_LEN: usize = field::SEQ.end;
pub const CHECKSUM_OFF: usize = field::CHECKSUM.start;
/// Offset of the echo identifier.
pub const IDENT_OFF: usize = field::IDENT.start;
/// Length of an NS/NA message without options.
pub const ND_LEN: usize = field::ND_TARGET.end;

/// ICMP (IPv4) types.
pub mod v4 {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACH: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;

    /// Whether the type carries an embedded datagram.
    pub const fn is_error(t: u8) -> bool {
        matches!(
            t,
            DEST_UNREACH | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAM_PROBLEM
        )
    }
}

/// ICMPv6 types.
pub mod v6 {
    pub const DEST_UNREACH: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const REDIRECT: u8 = 137;

    /// Whether the type carries an embedded datagram (the error types 1..=4).
    pub const fn is_error(t: u8) -> bool {
        matches!(
            t,
            DEST_UNREACH | PACKET_TOO_BIG | TIME_EXCEEDED | PARAM_PROBLEM
        )
    }

    /// ND option types (RFC 4861 §4.6).
    pub const OPT_SOURCE_LLADDR: u8 = 1;
    pub const OPT_TARGET_LLADDR: u8 = 2;

    /// Neighbour advertisement flags (byte 4).
    pub const NA_ROUTER: u8 = 0x80;
    pub const NA_SOLICITED: u8 = 0x40;
    pub const NA_OVERRIDE: u8 = 0x20;
}

/// A view of an ICMP or ICMPv6 message.
#[derive(Debug, Clone, Copy)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        IcmpPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self, DropReason> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<(), DropReason> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        Ok(())
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Echo identifier (bytes 4..6).
    pub fn echo_ident(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::IDENT])
    }

    /// Echo sequence number (bytes 6..8).
    pub fn echo_seq(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::SEQ])
    }

    /// Bytes 4..8 as one value (MTU for packet-too-big, pointer for parameter problem).
    pub fn rest_of_header(&self) -> u32 {
        super::eth::be32(&self.buffer.as_ref()[field::IDENT.start..field::SEQ.end])
    }

    /// Everything after the 8-byte header: echo data, or the embedded datagram.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// NS/NA target address, if the message is long enough.
    pub fn nd_target(&self) -> Option<[u8; 16]> {
        let b = self.buffer.as_ref().get(field::ND_TARGET)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Some(a)
    }

    /// NA flags byte (router / solicited / override).
    pub fn na_flags(&self) -> u8 {
        self.buffer.as_ref()[field::IDENT.start]
    }

    /// The ND options after the NS/NA body (empty if none or too short).
    pub fn nd_options(&self) -> NdOptions<'_> {
        NdOptions {
            rest: self.buffer.as_ref().get(ND_LEN..).unwrap_or(&[]),
        }
    }

    /// The link-layer address in the first source/target link-layer option of type `kind`.
    pub fn nd_lladdr(&self, kind: u8) -> Option<[u8; 6]> {
        self.nd_options()
            .find(|(t, d)| *t == kind && d.len() >= 6)
            .map(|(_, d)| super::eth::mac(d))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }

    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_echo_ident(&mut self, v: u16) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_echo_seq(&mut self, v: u16) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_rest_of_header(&mut self, v: u32) {
        self.buffer.as_mut()[field::IDENT.start..field::SEQ.end].copy_from_slice(&v.to_be_bytes());
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// ND options as (type, data without the 2-byte type/length prefix). Stops at a zero
/// length or an option that runs past the message.
#[derive(Clone, Debug)]
pub struct NdOptions<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for NdOptions<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let len = usize::from(*self.rest.get(1)?) * 8;
        if len == 0 || len > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let item = (self.rest[0], &self.rest[2..len]);
        self.rest = &self.rest[len..];
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testdata::capture;

    #[test]
    fn echo_from_capture() {
        let f = capture("ICMP echo request, id 14507");
        let i = IcmpPacket::new_checked(&f[34..]).unwrap();
        assert_eq!((i.msg_type(), i.msg_code()), (v4::ECHO_REQUEST, 0));
        assert_eq!((i.echo_ident(), i.echo_seq()), (14507, 1));
        assert_eq!(i.data().len(), 56);
    }

    #[test]
    fn neighbour_solicitation_from_capture() {
        let f = capture("neighbor solicitation, who has 2001:db8::2");
        let i = IcmpPacket::new_checked(&f[54..]).unwrap();
        assert_eq!(i.msg_type(), v6::NEIGHBOR_SOLICIT);
        let t = i.nd_target().unwrap();
        assert_eq!((t[0], t[1], t[15]), (0x20, 0x01, 2));
        assert_eq!(
            i.nd_lladdr(v6::OPT_SOURCE_LLADDR),
            Some(super::super::eth::mac(&f[6..12]))
        );
    }

    #[test]
    fn neighbour_advertisement_from_capture() {
        let f = capture("neighbor advertisement, tgt is 2001:db8::2");
        let i = IcmpPacket::new_checked(&f[54..]).unwrap();
        assert_eq!(i.msg_type(), v6::NEIGHBOR_ADVERT);
        assert!(i.na_flags() & v6::NA_SOLICITED != 0);
        assert_eq!(
            i.nd_lladdr(v6::OPT_TARGET_LLADDR),
            Some(super::super::eth::mac(&f[6..12]))
        );
    }

    #[test]
    fn port_unreachable_from_capture() {
        let f = capture("udp port 5003 unreachable");
        let i = IcmpPacket::new_checked(&f[34..]).unwrap();
        assert_eq!((i.msg_type(), i.msg_code()), (v4::DEST_UNREACH, 3));
        assert!(v4::is_error(i.msg_type()));
        assert_eq!(i.data()[0], 0x45);
        assert_eq!(
            IcmpPacket::new_checked(&f[34..41]).err(),
            Some(DropReason::Truncated)
        );
    }

    #[test]
    fn nd_options_stop_on_zero_length() {
        let mut b = [0u8; 32];
        b[0] = v6::NEIGHBOR_SOLICIT;
        b[24] = 1;
        b[25] = 0;
        assert_eq!(IcmpPacket::new_unchecked(&b[..]).nd_options().count(), 0);
        assert_eq!(IcmpPacket::new_unchecked(&b[..20]).nd_target(), None);
    }
}
