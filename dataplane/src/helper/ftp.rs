//! The FTP command and reply parser of the FTP helper (Linux `nf_conntrack_ftp.c`): the
//! four lines that announce a data connection.
//!
//! - client to server: `PORT a1,a2,a3,a4,p1,p2` (RFC 959) and `EPRT |af|addr|port|`
//!   (RFC 2428, any printable delimiter);
//! - server to client: `227 … (a1,a2,a3,a4,p1,p2)` (passive) and `229 … (|||port|)`
//!   (extended passive: the address is the server's own).
//!
//! As Linux, a line is recognised only where the TCP payload starts (one command or reply
//! per segment, the way every FTP implementation writes them), the command word is
//! case-insensitive, and the address text must end with its terminator inside the
//! segment. [`parse`] returns the announced address and port and the byte span of their
//! text, so FTP NAT can rewrite exactly that span. Bounded work, no allocation, never
//! panics on any input (fuzzed by `dataplane/fuzz` target `ftp_line`).

use crate::wire::{Addr, Family};

/// Which line announced the data connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FtpKind {
    /// `PORT` (client, IPv4).
    Port,
    /// `EPRT` (client, either family).
    Eprt,
    /// `227` passive reply (server, IPv4).
    Pasv,
    /// `229` extended passive reply (server; no address).
    Epsv,
}

impl FtpKind {
    /// The command or reply code as written on the wire.
    pub fn name(self) -> &'static str {
        match self {
            FtpKind::Port => "PORT",
            FtpKind::Eprt => "EPRT",
            FtpKind::Pasv => "227",
            FtpKind::Epsv => "229",
        }
    }
}

/// One recognised line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FtpLine {
    pub kind: FtpKind,
    /// The address the line names (`None` for `229`: the sender's own address).
    pub addr: Option<Addr>,
    pub port: u16,
    /// Byte offsets in the payload of the address-and-port text (what FTP NAT replaces):
    /// `a1,…,p2` for PORT/227, `|af|addr|port|` for EPRT, `|||port|` for 229.
    pub start: usize,
    pub end: usize,
}

/// Why a payload that starts like an announcement did not give one (counted by the
/// helper; the packet itself is not dropped, as Linux).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FtpError {
    /// The terminator is not in this segment (Linux: "partial").
    Partial,
    /// The address text does not parse.
    Malformed,
}

/// Longest address text Linux reads (`nf_conntrack_ftp` bounds its search the same way).
const MAX_TEXT: usize = 128;

/// Parses the start of a TCP payload of an FTP control connection sent by the client
/// (`from_client`) or the server, on a connection of `family`. `Ok(None)`: not an
/// announcement.
pub fn parse(
    payload: &[u8],
    from_client: bool,
    family: Family,
) -> Result<Option<FtpLine>, FtpError> {
    let pats: &[(&[u8], u8, u8, FtpKind)] = if from_client {
        &[
            (b"PORT", b' ', b'\r', FtpKind::Port),
            (b"EPRT", b' ', b'\r', FtpKind::Eprt),
        ]
    } else {
        &[
            (b"227 ", b'(', b')', FtpKind::Pasv),
            (b"229 ", b'(', b')', FtpKind::Epsv),
        ]
    };
    for &(pat, skip, term, kind) in pats {
        if payload.len() < pat.len() || !payload[..pat.len()].eq_ignore_ascii_case(pat) {
            continue;
        }
        // IPv4-only forms on an IPv6 connection are ignored, as Linux's search table.
        if family == Family::V6 && matches!(kind, FtpKind::Port | FtpKind::Pasv) {
            return Ok(None);
        }
        let rest = &payload[pat.len()..];
        let Some(s) = rest.iter().take(MAX_TEXT).position(|&b| b == skip) else {
            return Err(if rest.len() < MAX_TEXT && !rest.contains(&b'\n') {
                FtpError::Partial
            } else {
                FtpError::Malformed
            });
        };
        let start = pat.len() + s + 1;
        let text_all = &payload[start..];
        let Some(len) = text_all.iter().take(MAX_TEXT).position(|&b| b == term) else {
            return Err(if text_all.len() < MAX_TEXT && !text_all.contains(&b'\n') {
                FtpError::Partial
            } else {
                FtpError::Malformed
            });
        };
        let text = &text_all[..len];
        let (addr, port, used) = match kind {
            FtpKind::Port | FtpKind::Pasv => rfc959(text).ok_or(FtpError::Malformed)?,
            FtpKind::Eprt => eprt(text, family).ok_or(FtpError::Malformed)?,
            FtpKind::Epsv => epsv(text).ok_or(FtpError::Malformed)?,
        };
        return Ok(Some(FtpLine {
            kind,
            addr,
            port,
            start,
            end: start + used,
        }));
    }
    Ok(None)
}

/// A decimal number of at most `max`, from the start of `t`: (value, digits).
/// Ten digits at most (a u64 holds them without overflow).
fn number(t: &[u8], max: u32) -> Option<(u32, usize)> {
    let mut v: u64 = 0;
    let mut n = 0;
    for &b in t.iter().take(10) {
        if !b.is_ascii_digit() {
            break;
        }
        v = v * 10 + u64::from(b - b'0');
        n += 1;
    }
    let v = u32::try_from(v).ok().filter(|&v| v <= max)?;
    (n > 0).then_some((v, n))
}

/// `a1,a2,a3,a4,p1,p2` (Linux `try_rfc959`): six numbers 0..=255 separated by commas.
/// Returns the address, port and the bytes used.
fn rfc959(t: &[u8]) -> Option<(Option<Addr>, u16, usize)> {
    let mut v = [0u8; 6];
    let mut i = 0;
    for (k, slot) in v.iter_mut().enumerate() {
        let (n, d) = number(&t[i..], 255)?;
        *slot = u8::try_from(n).ok()?;
        i += d;
        if k < 5 {
            if t.get(i) != Some(&b',') {
                return None;
            }
            i += 1;
        }
    }
    let port = u16::from_be_bytes([v[4], v[5]]);
    Some((Some(Addr::from_v4([v[0], v[1], v[2], v[3]])), port, i))
}

/// `|af|addr|port|` with any printable delimiter (Linux `try_eprt`): af 1 is IPv4, 2 IPv6,
/// and must be the connection's family.
fn eprt(t: &[u8], family: Family) -> Option<(Option<Addr>, u16, usize)> {
    let &d = t.first()?;
    if !(33..=126).contains(&d) || d.is_ascii_digit() {
        return None;
    }
    let af = match t.get(1..3)? {
        [b'1', x] if *x == d => Family::V4,
        [b'2', x] if *x == d => Family::V6,
        _ => return None,
    };
    if af != family {
        return None;
    }
    let rest = &t[3..];
    let alen = rest.iter().position(|&b| b == d)?;
    let text = std::str::from_utf8(&rest[..alen]).ok()?;
    let addr = match af {
        Family::V4 => Addr::from_v4(text.parse::<std::net::Ipv4Addr>().ok()?.octets()),
        Family::V6 => Addr::from_v6(text.parse::<std::net::Ipv6Addr>().ok()?.octets()),
    };
    let p = &rest[alen + 1..];
    let (port, n) = number(p, 65535)?;
    if p.get(n) != Some(&d) || port == 0 {
        return None;
    }
    Some((Some(addr), u16::try_from(port).ok()?, 3 + alen + 1 + n + 1))
}

/// `|||port|` (Linux `try_epsv_response`): three delimiters, the port, the delimiter.
fn epsv(t: &[u8]) -> Option<(Option<Addr>, u16, usize)> {
    let &d = t.first()?;
    if !(33..=126).contains(&d) || t.get(1) != Some(&d) || t.get(2) != Some(&d) {
        return None;
    }
    let (port, n) = number(&t[3..], 65535)?;
    if t.get(3 + n) != Some(&d) || port == 0 {
        return None;
    }
    Some((None, u16::try_from(port).ok()?, 3 + n + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> Option<Addr> {
        Some(Addr::from_v4(a))
    }

    #[test]
    fn port_command_gives_address_port_and_the_span_of_its_text() {
        let p = b"PORT 198,51,100,2,195,80\r\n";
        let l = parse(p, true, Family::V4).unwrap().unwrap();
        assert_eq!(l.kind, FtpKind::Port);
        assert_eq!(l.addr, v4([198, 51, 100, 2]));
        assert_eq!(l.port, 195 * 256 + 80);
        assert_eq!(&p[l.start..l.end], b"198,51,100,2,195,80");
        // Case-insensitive command word, as Linux.
        let l = parse(b"port 1,2,3,4,0,21\r\n", true, Family::V4)
            .unwrap()
            .unwrap();
        assert_eq!(l.port, 21);
    }

    #[test]
    fn pasv_reply_is_read_between_the_parentheses() {
        let p = b"227 Entering Passive Mode (203,0,113,5,39,16).\r\n";
        let l = parse(p, false, Family::V4).unwrap().unwrap();
        assert_eq!(l.kind, FtpKind::Pasv);
        assert_eq!(l.addr, v4([203, 0, 113, 5]));
        assert_eq!(l.port, 39 * 256 + 16);
        assert_eq!(&p[l.start..l.end], b"203,0,113,5,39,16");
    }

    #[test]
    fn eprt_and_epsv_for_both_families() {
        let p = b"EPRT |1|198.18.0.7|40001|\r\n";
        let l = parse(p, true, Family::V4).unwrap().unwrap();
        assert_eq!(
            (l.kind, l.addr, l.port),
            (FtpKind::Eprt, v4([198, 18, 0, 7]), 40001)
        );
        assert_eq!(&p[l.start..l.end], b"|1|198.18.0.7|40001|");
        let p = b"EPRT !2!2001:db8::7!40002!\r\n";
        let l = parse(p, true, Family::V6).unwrap().unwrap();
        assert_eq!(
            l.addr,
            Some(Addr::from_v6(
                "2001:db8::7"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets()
            ))
        );
        assert_eq!(l.port, 40002);
        // The family must be the connection's.
        assert_eq!(
            parse(b"EPRT |2|2001:db8::7|1|\r\n", true, Family::V4),
            Err(FtpError::Malformed)
        );
        let p = b"229 Entering Extended Passive Mode (|||6446|)\r\n";
        let l = parse(p, false, Family::V6).unwrap().unwrap();
        assert_eq!((l.kind, l.addr, l.port), (FtpKind::Epsv, None, 6446));
        assert_eq!(&p[l.start..l.end], b"|||6446|");
    }

    #[test]
    fn other_lines_and_directions_are_not_announcements() {
        assert_eq!(parse(b"USER anonymous\r\n", true, Family::V4), Ok(None));
        assert_eq!(
            parse(b"227 x (1,2,3,4,5,6)\r\n", true, Family::V4),
            Ok(None)
        );
        assert_eq!(parse(b"PORT 1,2,3,4,5,6\r\n", false, Family::V4), Ok(None));
        assert_eq!(parse(b"PORT 1,2,3,4,5,6\r\n", true, Family::V6), Ok(None));
        assert_eq!(parse(b"", true, Family::V4), Ok(None));
        assert_eq!(parse(b" PORT 1,2,3,4,5,6\r\n", true, Family::V4), Ok(None));
    }

    #[test]
    fn malformed_and_partial_lines_are_errors() {
        assert_eq!(
            parse(b"PORT 1,2,3,4,5\r\n", true, Family::V4),
            Err(FtpError::Malformed)
        );
        assert_eq!(
            parse(b"PORT 1,2,3,256,5,6\r\n", true, Family::V4),
            Err(FtpError::Malformed)
        );
        assert_eq!(
            parse(b"PORT 1,2,3,4,5,6", true, Family::V4),
            Err(FtpError::Partial)
        );
        assert_eq!(
            parse(b"229 x (|||0|)\r\n", false, Family::V4),
            Err(FtpError::Malformed)
        );
        assert_eq!(
            parse(b"229 x (|||99999|)\r\n", false, Family::V4),
            Err(FtpError::Malformed)
        );
        assert_eq!(
            parse(b"EPRT |1|1.2.3.4|5\r\n", true, Family::V4),
            Err(FtpError::Malformed)
        );
        assert_eq!(
            parse(b"EPRT |1|1.2.3.4|\r\n", true, Family::V4),
            Err(FtpError::Malformed)
        );
        // Ten digits overflow a u32 (found by the fuzz target).
        assert_eq!(
            parse(b"PORT 198,51,100,2,7777777777,1\r\n", true, Family::V4),
            Err(FtpError::Malformed)
        );
    }

    #[test]
    fn every_prefix_of_a_valid_line_is_handled_without_panic() {
        let lines: [&[u8]; 4] = [
            b"PORT 198,51,100,2,195,80\r\n",
            b"EPRT |1|198.18.0.7|40001|\r\n",
            b"227 Entering Passive Mode (203,0,113,5,39,16).\r\n",
            b"229 Entering Extended Passive Mode (|||6446|)\r\n",
        ];
        for l in lines {
            for n in 0..=l.len() {
                for c in [true, false] {
                    let _ = parse(&l[..n], c, Family::V4);
                }
            }
        }
    }
}
