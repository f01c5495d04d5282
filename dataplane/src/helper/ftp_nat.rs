//! FTP NAT (Linux `nf_nat_ftp.c` and `nf_nat_mangle_tcp_packet`): the address text of an
//! announcement rewritten to the translated address and port, and the segment rebuilt
//! around it with its IP length and checksums.
//!
//! [`format`] writes the text as Linux does (`a,b,c,d,p1,p2` for PORT and 227,
//! `|1|a.b.c.d|port|` / `|2|addr|port|` for EPRT, `|||port|` for 229; `|` whatever the
//! sender used); [`mangle`] copies the frame into a buffer with the parser's span
//! ([`FtpLine::start`](super::ftp::FtpLine)..`end` of the payload) replaced. The sequence
//! adjustment that the length change makes necessary is `seqadj.rs`'s. No allocation.

use super::ftp::FtpKind;
use crate::wire::rewrite::fill_checksums;
use crate::wire::{Addr, Family, IpInfo, L4Info};
use std::io::Write;

/// Longest text [`format`] writes (`|2|` + the longest IPv6 text + `|65535|`).
pub const MAX_TEXT: usize = 3 + 45 + 7;

/// The replacement text of a `kind` line announcing `addr`:`port` on a connection of
/// `family`, written into `out`; its length. `None` where the family does not fit the
/// line (PORT/227 are IPv4 only).
pub fn format(
    kind: FtpKind,
    family: Family,
    addr: Addr,
    port: u16,
    out: &mut [u8; MAX_TEXT],
) -> Option<usize> {
    let mut w: &mut [u8] = &mut out[..];
    let cap = w.len();
    let v4 = match family {
        Family::V4 => Some(addr.to_v4()?),
        Family::V6 => None,
    };
    let r = match (kind, v4) {
        (FtpKind::Port | FtpKind::Pasv, Some(a)) => write!(
            w,
            "{},{},{},{},{},{}",
            a[0],
            a[1],
            a[2],
            a[3],
            port >> 8,
            port & 0xff
        ),
        (FtpKind::Port | FtpKind::Pasv, None) => return None,
        (FtpKind::Eprt, Some(a)) => write!(w, "|1|{}|{port}|", std::net::Ipv4Addr::from(a)),
        (FtpKind::Eprt, None) => write!(w, "|2|{}|{port}|", std::net::Ipv6Addr::from(addr.0)),
        (FtpKind::Epsv, _) => write!(w, "|||{port}|"),
    };
    r.ok()?;
    Some(cap - w.len())
}

/// Why a segment could not be rewritten (Linux: "cannot mangle packet", dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MangleError {
    /// The span is not inside the payload, or the frame is not a whole TCP segment.
    Span,
    /// The rewritten frame does not fit the buffer, or its IP length overflows.
    NoRoom,
}

/// Copies `frame` (a TCP segment of `ip`) into `out` with payload bytes `start..end`
/// replaced by `text`; the IPv4 total length or IPv6 payload length and the IP and TCP
/// checksums are set for the new length. Bytes after the IP packet (Ethernet padding)
/// are left behind. Returns the new frame length and the summary of the new packet.
pub fn mangle(
    frame: &[u8],
    ip: &IpInfo,
    (start, end): (usize, usize),
    text: &[u8],
    out: &mut [u8],
) -> Result<(usize, IpInfo), MangleError> {
    let Some(L4Info::Tcp(t)) = ip.l4 else {
        return Err(MangleError::Span);
    };
    let l3 = usize::from(ip.l3_off);
    let ip_end = l3 + usize::from(ip.ip_len);
    let pay = ip_end
        .checked_sub(usize::from(t.payload_len))
        .ok_or(MangleError::Span)?;
    if start > end || end > usize::from(t.payload_len) || ip_end > frame.len() {
        return Err(MangleError::Span);
    }
    let new_ip_len = usize::from(ip.ip_len) - (end - start) + text.len();
    let new_ip_len16 = u16::try_from(new_ip_len).map_err(|_| MangleError::NoRoom)?;
    let new_pay_len = usize::from(t.payload_len) - (end - start) + text.len();
    let new_len = l3 + new_ip_len;
    if new_len > out.len() {
        return Err(MangleError::NoRoom);
    }
    let (a, b) = (pay + start, pay + end);
    out[..a].copy_from_slice(&frame[..a]);
    out[a..a + text.len()].copy_from_slice(text);
    out[a + text.len()..new_len].copy_from_slice(&frame[b..ip_end]);
    let len_field = match ip.family {
        Family::V4 => (l3 + 2, new_ip_len16),
        Family::V6 => (
            l3 + 4,
            new_ip_len16.checked_sub(40).ok_or(MangleError::Span)?,
        ),
    };
    out[len_field.0..len_field.0 + 2].copy_from_slice(&len_field.1.to_be_bytes());
    let mut t2 = t;
    t2.payload_len = u16::try_from(new_pay_len).map_err(|_| MangleError::NoRoom)?;
    let new_ip = IpInfo {
        ip_len: new_ip_len16,
        l4: Some(L4Info::Tcp(t2)),
        ..*ip
    };
    fill_checksums(&mut out[..new_len], &new_ip).map_err(|_| MangleError::Span)?;
    Ok((new_len, new_ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(kind: FtpKind, a: Addr, port: u16) -> String {
        let family = if a.to_v4().is_some() {
            Family::V4
        } else {
            Family::V6
        };
        let mut b = [0u8; MAX_TEXT];
        let n = format(kind, family, a, port, &mut b).unwrap();
        String::from_utf8(b[..n].to_vec()).unwrap()
    }

    #[test]
    fn texts_as_linux_writes_them() {
        let a = Addr::from_v4([198, 51, 100, 1]);
        assert_eq!(text(FtpKind::Port, a, 50_000), "198,51,100,1,195,80");
        assert_eq!(text(FtpKind::Pasv, a, 21), "198,51,100,1,0,21");
        assert_eq!(text(FtpKind::Eprt, a, 50_000), "|1|198.51.100.1|50000|");
        assert_eq!(text(FtpKind::Epsv, a, 7), "|||7|");
        let v6 = Addr::from_v6(
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        let t = text(FtpKind::Eprt, v6, 65535);
        assert_eq!(t, "|2|2001:db8:ffff:ffff:ffff:ffff:ffff:ffff|65535|");
        let mut b = [0u8; MAX_TEXT];
        assert_eq!(format(FtpKind::Port, Family::V6, v6, 1, &mut b), None);
    }

    #[test]
    fn the_longest_text_fits() {
        let v4 = Addr::from_v4([255, 255, 255, 255]);
        assert_eq!(text(FtpKind::Port, v4, 65535).len(), 23);
        let a = Addr::from_v6(
            "1111:2222:3333:4444:5555:6666:7777:8888"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        assert!(text(FtpKind::Eprt, a, 65535).len() <= MAX_TEXT);
    }
}
