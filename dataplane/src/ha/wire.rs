//! The sync datagram: a versioned header with a CRC-32, then records (docs/ha.md, "Wire
//! format"). Encoding and decoding only: no I/O. The decoder never panics: every
//! malformed datagram is a [`DecodeError`] (the daemon counts it by [`DecodeError::name`]).
//!
//! ```text
//!  0       2   3    4       6       8              12             16             20
//! +-------+---+----+-------+-------+--------------+--------------+--------------+
//! | magic |ver|type|  len  | count |   session    |     seq      |    crc32     |
//! +-------+---+----+-------+-------+--------------+--------------+--------------+
//! ```
//!
//! All fields big-endian. `len` is the whole datagram; `crc32` (IEEE) covers the datagram
//! with the CRC field zeroed. DATA carries `count` records; ACK and NACK carry a range
//! `from, to` (inclusive, 8 bytes); SKIP the same range (the sender no longer holds it);
//! RESYNC and ALIVE carry nothing (ALIVE's `seq` is the sender's next sequence number).

use crate::conntrack::{FlowKey, Synced, TcpState, TcpWindow};
use crate::helper::HelperKind;
use crate::wire::{Addr, Family};

/// `"FH"`: fwd HA.
pub const MAGIC: u16 = 0x4648;
/// Version of this layout; a peer with another is refused (counted), never guessed at.
pub const VERSION: u8 = 1;
/// Header bytes.
pub const HEADER_LEN: usize = 20;
/// Largest datagram we build by default (fits a 1500-byte MTU with IPv6 + UDP headers).
pub const MAX_DATAGRAM: usize = 1400;
/// The range a configured datagram size may take: at least the largest record (an IPv6
/// UPDATE with its window) plus the header, at most what the 16-bit `len` and a UDP
/// payload hold. Larger datagrams mean fewer per-datagram costs (syscalls, ACKs) for the
/// same records; above the path's MTU the IP layer fragments them (a lost fragment loses
/// the datagram, which the reliability protocol resends).
pub const DATAGRAM_RANGE: (usize, usize) = (256, 65_000);

/// Datagram types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Data = 1,
    Ack = 2,
    Nack = 3,
    Resync = 4,
    Alive = 5,
    Skip = 6,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Data,
            2 => Kind::Ack,
            3 => Kind::Nack,
            4 => Kind::Resync,
            5 => Kind::Alive,
            6 => Kind::Skip,
            _ => return None,
        })
    }
}

/// One change of the peer's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// A new connection (`new`) or a changed one.
    Upsert { new: bool, entry: Synced },
    /// The connection of this original tuple is gone.
    Destroy(FlowKey),
    /// An expectation the peer's helper made (a data connection it announced).
    Expect(SyncedExpect),
    /// The peer's expectation of this key is gone (used, replaced or removed).
    ExpectDestroy(ExpectKey),
}

/// What identifies an expectation: the expected connection with its source port a
/// wildcard (`helper::expect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExpectKey {
    pub family: Family,
    pub proto: u8,
    /// Who will open the data connection.
    pub src: Addr,
    /// Where to.
    pub dst: Addr,
    pub dport: u16,
}

/// An expectation as state sync carries it: the key, the helper that made it, the
/// master connection's original tuple (of the same family; its zone is the record's),
/// and the seconds it has left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncedExpect {
    pub key: ExpectKey,
    pub helper: HelperKind,
    pub master: FlowKey,
    pub timeout_s: u32,
}

/// `master_worker` of an expectation applied from the peer: no worker of this box holds
/// its master, so no master here replaces or removes it (the peer's EXPECT_DESTROY or its
/// timeout does), and it is never sent back.
pub const SYNCED_MASTER: u16 = u16::MAX;

impl SyncedExpect {
    /// The expectation `e` with `left_ns` to live, as the peer will apply it.
    pub fn from_expectation(e: &crate::helper::Expectation, left_ns: u64) -> Self {
        SyncedExpect {
            key: ExpectKey::of(e),
            helper: e.helper,
            master: e.master,
            timeout_s: u32::try_from(left_ns.div_ceil(1_000_000_000)).unwrap_or(u32::MAX),
        }
    }

    /// An expectation as `conntrack_expect` lists it (a table dump: the daemon answers a
    /// RESYNC with the listing); `None` for a peer's own ([`SYNCED_MASTER`]), a family,
    /// helper or address that does not fit. The listing has no zone: the master's is 0.
    pub fn from_view(v: &crate::control::proto::CtExpectation) -> Option<Self> {
        let family = match v.family.as_str() {
            "ipv4" => Family::V4,
            "ipv6" => Family::V6,
            _ => return None,
        };
        let addr = |ip: std::net::IpAddr| {
            let a = Addr::from(ip);
            (a.to_v4().is_some() == (family == Family::V4)).then_some(a)
        };
        if v.master_worker == SYNCED_MASTER {
            return None;
        }
        Some(SyncedExpect {
            key: ExpectKey {
                family,
                proto: v.proto_num,
                src: addr(v.src)?,
                dst: addr(v.dst)?,
                dport: v.dport,
            },
            helper: HelperKind::by_name(&v.helper, v.proto_num)?,
            master: FlowKey {
                src: addr(v.master_src)?,
                dst: addr(v.master_dst)?,
                sport: v.master_sport,
                dport: v.master_dport,
                zone: 0,
                proto: v.master_proto_num,
                family,
            },
            timeout_s: u32::try_from(v.timeout).unwrap_or(u32::MAX),
        })
    }

    /// The expectation to insert into this box's table (master: [`SYNCED_MASTER`]).
    pub fn to_expectation(&self) -> crate::helper::Expectation {
        crate::helper::Expectation {
            family: self.key.family,
            proto: self.key.proto,
            src: self.key.src,
            dst: self.key.dst,
            dport: self.key.dport,
            helper: self.helper,
            master: self.master,
            master_worker: SYNCED_MASTER,
            master_id: 0,
            // The record carries no NAT: an expectation set up by FTP NAT arrives without
            // the translation its data connection would follow (docs/ha.md, limits).
            nat: None,
        }
    }
}

impl ExpectKey {
    /// The key of expectation `e`.
    pub fn of(e: &crate::helper::Expectation) -> Self {
        ExpectKey {
            family: e.family,
            proto: e.proto,
            src: e.src,
            dst: e.dst,
            dport: e.dport,
        }
    }

    /// The key as a tuple with source port 0 (its wire form).
    fn tuple(&self, zone: u16) -> FlowKey {
        FlowKey {
            src: self.src,
            dst: self.dst,
            sport: 0,
            dport: self.dport,
            zone,
            proto: self.proto,
            family: self.family,
        }
    }
}

/// A decoded datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub kind: Kind,
    /// The sender's random session id (a new one after each start: the receiver resets).
    pub session: u32,
    pub seq: u32,
    /// ACK / NACK / SKIP range (inclusive).
    pub range: Option<(u32, u32)>,
    pub records: Vec<Record>,
}

/// Why a datagram was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("shorter than its header or its length field")]
    Truncated,
    #[error("bad magic")]
    Magic,
    #[error("unsupported version {0}")]
    Version(u8),
    #[error("CRC mismatch")]
    Checksum,
    #[error("unknown datagram type {0}")]
    Type(u8),
    #[error("record {index} at byte {offset} is malformed")]
    Record { index: u16, offset: usize },
    #[error("bytes after the last record")]
    Trailing,
}

impl DecodeError {
    /// Stable counter name.
    pub fn name(&self) -> &'static str {
        match self {
            DecodeError::Truncated => "truncated",
            DecodeError::Magic => "magic",
            DecodeError::Version(_) => "version",
            DecodeError::Checksum => "checksum",
            DecodeError::Type(_) => "type",
            DecodeError::Record { .. } => "record",
            DecodeError::Trailing => "trailing",
        }
    }
}

// Record tags and flags.
const REC_NEW: u8 = 1;
const REC_UPDATE: u8 = 2;
const REC_DESTROY: u8 = 3;
const REC_EXPECT: u8 = 4;
const REC_EXPECT_DESTROY: u8 = 5;
const F_TCP_STATE: u8 = 1;
const F_WINDOW: u8 = 2;
const F_TIMEOUT: u8 = 4;
const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;
/// Bytes of an encoded [`TcpWindow`].
const WINDOW_LEN: usize = 46;

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320): slicing-by-8 tables built at
/// compile time (`CRC_TABLES[0]` is the classic byte table; `[k]` advances a byte's CRC
/// by `k` more zero bytes), so eight bytes cost eight lookups and no serial shift chain.
#[allow(clippy::cast_possible_truncation)] // i < 256
const CRC_TABLES: [[u32; 256]; 8] = {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut j = 1;
    while j < 8 {
        let mut i = 0;
        while i < 256 {
            let c = t[j - 1][i];
            t[j][i] = (c >> 8) ^ t[0][(c & 0xff) as usize];
            i += 1;
        }
        j += 1;
    }
    t
};

/// CRC-32 of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    !crc_update(!0, data)
}

/// Feeds `data` into a running (inverted) CRC-32 state.
#[allow(clippy::cast_possible_truncation)] // the low byte of the state indexes the table
fn crc_update(c: u32, data: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut chunks = data.chunks_exact(8);
    let mut c = c;
    for b in &mut chunks {
        let lo = c ^ u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let hi = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        c = t[7][usize::from(lo as u8)]
            ^ t[6][usize::from((lo >> 8) as u8)]
            ^ t[5][usize::from((lo >> 16) as u8)]
            ^ t[4][usize::from((lo >> 24) as u8)]
            ^ t[3][usize::from(hi as u8)]
            ^ t[2][usize::from((hi >> 8) as u8)]
            ^ t[1][usize::from((hi >> 16) as u8)]
            ^ t[0][usize::from((hi >> 24) as u8)];
    }
    chunks
        .remainder()
        .iter()
        .fold(c, |c, &b| t[0][usize::from((c as u8) ^ b)] ^ (c >> 8))
}

/// Encoded size of a record.
pub fn record_len(r: &Record) -> usize {
    match r {
        Record::Destroy(k) => 6 + tuple_len(k.family),
        Record::Expect(e) => 6 + 2 * tuple_len(e.key.family) + 6,
        Record::ExpectDestroy(k) => 6 + tuple_len(k.family),
        Record::Upsert { entry: e, .. } => {
            6 + 2 * tuple_len(e.orig.family)
                + 2
                + 4
                + if e.timeout_s.is_some() { 4 } else { 0 }
                + if e.tcp_window.is_some() {
                    WINDOW_LEN
                } else {
                    0
                }
        }
    }
}

fn tuple_len(f: Family) -> usize {
    match f {
        Family::V4 => 12,
        Family::V6 => 36,
    }
}

/// Builds a datagram: the header for `kind`, `session`, `seq`, then `body`.
fn finish(kind: Kind, session: u32, seq: u32, count: u16, body: &[u8]) -> Vec<u8> {
    let len = HEADER_LEN + body.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.push(VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&session.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(body);
    let c = crc32(&out);
    out[16..20].copy_from_slice(&c.to_be_bytes());
    out
}

/// A control datagram (ACK, NACK and SKIP with `range`; RESYNC and ALIVE without).
pub fn encode_control(kind: Kind, session: u32, seq: u32, range: Option<(u32, u32)>) -> Vec<u8> {
    let mut body = Vec::new();
    if let Some((a, b)) = range {
        body.extend_from_slice(&a.to_be_bytes());
        body.extend_from_slice(&b.to_be_bytes());
    }
    finish(kind, session, seq, 0, &body)
}

/// A DATA datagram holding `records` (the caller keeps the total under
/// [`MAX_DATAGRAM`] with [`record_len`]; [`super::ftfw::Sender`] does).
pub fn encode_data(session: u32, seq: u32, records: &[Record]) -> Vec<u8> {
    let mut body = Vec::with_capacity(records.iter().map(record_len).sum());
    for r in records {
        put_record(&mut body, r);
    }
    let count = u16::try_from(records.len()).unwrap_or(u16::MAX);
    encode_data_raw(session, seq, count, &body)
}

/// A DATA datagram around `body`, `count` records already encoded back to back (as
/// [`put_record`] writes them): the binary event path's records go out unchanged.
pub fn encode_data_raw(session: u32, seq: u32, count: u16, body: &[u8]) -> Vec<u8> {
    finish(Kind::Data, session, seq, count, body)
}

/// The records of a datagram that [`decode`] accepted (its body, back to back): what the
/// daemon hands to fwd's `ha_apply_records` without decoding them again.
pub fn data_body(buf: &[u8]) -> &[u8] {
    let len = buf
        .get(4..6)
        .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
    buf.get(HEADER_LEN..len.min(buf.len())).unwrap_or(&[])
}

/// The length of the record that starts `buf`, read from its first three bytes (kind,
/// flags, family) as [`record_len`] computes it; `None` for an unknown kind, flag or
/// family or a record longer than `buf`. Splits a batch of records without decoding them.
pub fn raw_record_len(buf: &[u8]) -> Option<usize> {
    let (&tag, &flags, &family) = (buf.first()?, buf.get(1)?, buf.get(2)?);
    let tuple = match family {
        FAMILY_V4 => tuple_len(Family::V4),
        FAMILY_V6 => tuple_len(Family::V6),
        _ => return None,
    };
    let n = match tag {
        REC_DESTROY | REC_EXPECT_DESTROY if flags == 0 => 6 + tuple,
        REC_EXPECT if flags == 0 => 6 + 2 * tuple + 6,
        REC_NEW | REC_UPDATE if flags & !(F_TCP_STATE | F_WINDOW | F_TIMEOUT) == 0 => {
            6 + 2 * tuple
                + 2
                + 4
                + if flags & F_TIMEOUT != 0 { 4 } else { 0 }
                + if flags & F_WINDOW != 0 { WINDOW_LEN } else { 0 }
        }
        _ => return None,
    };
    (n <= buf.len()).then_some(n)
}

/// Splits a batch of records (back to back) at their boundaries without decoding them:
/// the offset and length of each. A batch that does not end on a record boundary is an
/// error naming the record.
pub fn split_records(body: &[u8]) -> Result<Vec<(usize, usize)>, DecodeError> {
    let mut out = Vec::with_capacity(body.len() / 18);
    let mut pos = 0;
    while pos < body.len() {
        let n = body
            .get(pos..)
            .and_then(raw_record_len)
            .ok_or(DecodeError::Record {
                index: u16::try_from(out.len()).unwrap_or(u16::MAX),
                offset: pos,
            })?;
        out.push((pos, n));
        pos += n;
    }
    Ok(out)
}

/// A batch of records (back to back) as the control protocol carries it: standard base64
/// with padding, inside a JSON string (`ha_apply_records`, `subscribe_records`).
pub fn base64_encode(body: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(body)
}

/// The bytes of a [`base64_encode`]d batch; the error says what is wrong.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| e.to_string())
}

/// Decodes a batch of records (back to back, no header: `ha_apply_records`, the binary
/// event stream). Every record is checked as a datagram's are; any bytes left over are
/// an error.
pub fn decode_records(body: &[u8]) -> Result<Vec<Record>, DecodeError> {
    let mut r = Reader { buf: body, pos: 0 };
    let mut out = Vec::with_capacity(body.len() / 18);
    while r.pos < body.len() {
        let offset = r.pos;
        let index = u16::try_from(out.len()).unwrap_or(u16::MAX);
        out.push(r.record().ok_or(DecodeError::Record { index, offset })?);
    }
    Ok(out)
}

fn put_tuple(out: &mut Vec<u8>, k: &FlowKey) {
    match k.family {
        Family::V4 => {
            out.extend_from_slice(&k.src.0[12..]);
            out.extend_from_slice(&k.dst.0[12..]);
        }
        Family::V6 => {
            out.extend_from_slice(&k.src.0);
            out.extend_from_slice(&k.dst.0);
        }
    }
    out.extend_from_slice(&k.sport.to_be_bytes());
    out.extend_from_slice(&k.dport.to_be_bytes());
}

/// Appends the encoding of `r` to `out` (the form DATA datagrams and the binary event
/// stream carry).
pub fn put_record(out: &mut Vec<u8>, r: &Record) {
    let (tag, key) = match r {
        Record::Upsert { new: true, entry } => (REC_NEW, entry.orig),
        Record::Upsert { new: false, entry } => (REC_UPDATE, entry.orig),
        Record::Destroy(k) => (REC_DESTROY, *k),
        Record::Expect(e) => (REC_EXPECT, e.key.tuple(e.master.zone)),
        Record::ExpectDestroy(k) => (REC_EXPECT_DESTROY, k.tuple(0)),
    };
    let mut flags = 0;
    if let Record::Upsert { entry: e, .. } = r {
        if e.tcp_state.is_some() {
            flags |= F_TCP_STATE;
        }
        if e.tcp_window.is_some() {
            flags |= F_WINDOW;
        }
        if e.timeout_s.is_some() {
            flags |= F_TIMEOUT;
        }
    }
    out.push(tag);
    out.push(flags);
    out.push(match key.family {
        Family::V4 => FAMILY_V4,
        Family::V6 => FAMILY_V6,
    });
    out.push(key.proto);
    out.extend_from_slice(&key.zone.to_be_bytes());
    put_tuple(out, &key);
    if let Record::Expect(e) = r {
        put_tuple(out, &e.master);
        out.push(e.master.proto);
        out.push(e.helper as u8);
        out.extend_from_slice(&e.timeout_s.to_be_bytes());
        return;
    }
    let Record::Upsert { entry: e, .. } = r else {
        return;
    };
    put_tuple(out, &e.reply);
    out.push(e.status);
    out.push(e.tcp_state.map_or(0, |s| s as u8));
    out.extend_from_slice(&e.mark.to_be_bytes());
    if let Some(t) = e.timeout_s {
        out.extend_from_slice(&t.to_be_bytes());
    }
    if let Some(w) = &e.tcp_window {
        for d in &w.win {
            for v in d {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        out.extend_from_slice(&w.scale);
        out.extend_from_slice(&w.flags);
        out.extend_from_slice(&w.last_end.to_be_bytes());
        out.extend_from_slice(&w.last_win.to_be_bytes());
        out.extend_from_slice(&[w.last_index, w.last_dir, w.last_wscale, w.last_flags]);
    }
}

/// A bounds-checked reader: every take is `None` past the end, so a short buffer is an
/// error and never a panic.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn tuple(&mut self, family: Family, proto: u8, zone: u16) -> Option<FlowKey> {
        let (src, dst) = match family {
            Family::V4 => {
                let s = self.take(4)?;
                let d = self.take(4)?;
                (
                    Addr::from_v4([s[0], s[1], s[2], s[3]]),
                    Addr::from_v4([d[0], d[1], d[2], d[3]]),
                )
            }
            Family::V6 => {
                let mut s = [0; 16];
                let mut d = [0; 16];
                s.copy_from_slice(self.take(16)?);
                d.copy_from_slice(self.take(16)?);
                (Addr(s), Addr(d))
            }
        };
        Some(FlowKey {
            src,
            dst,
            sport: self.u16()?,
            dport: self.u16()?,
            zone,
            proto,
            family,
        })
    }
    fn window(&mut self) -> Option<TcpWindow> {
        let mut w = TcpWindow::default();
        for d in &mut w.win {
            for v in d.iter_mut() {
                *v = self.u32()?;
            }
        }
        w.scale = [self.u8()?, self.u8()?];
        w.flags = [self.u8()?, self.u8()?];
        w.last_end = self.u32()?;
        w.last_win = self.u16()?;
        w.last_index = self.u8()?;
        w.last_dir = self.u8()?;
        w.last_wscale = self.u8()?;
        w.last_flags = self.u8()?;
        Some(w)
    }
    /// The rest of an expectation record whose first tuple (`key`, source port 0) is
    /// read. One encoding each: no flags, source port 0, and zone 0 for a destroy.
    fn expect(&mut self, tag: u8, flags: u8, key: FlowKey) -> Option<Record> {
        if flags != 0 || key.sport != 0 {
            return None;
        }
        let k = ExpectKey {
            family: key.family,
            proto: key.proto,
            src: key.src,
            dst: key.dst,
            dport: key.dport,
        };
        if tag == REC_EXPECT_DESTROY {
            return (key.zone == 0).then_some(Record::ExpectDestroy(k));
        }
        let mut master = self.tuple(key.family, 0, key.zone)?;
        master.proto = self.u8()?;
        let helper = HelperKind::from_u8(self.u8()?)?;
        let timeout_s = self.u32()?;
        Some(Record::Expect(SyncedExpect {
            key: k,
            helper,
            master,
            timeout_s,
        }))
    }

    fn record(&mut self) -> Option<Record> {
        let tag = self.u8()?;
        let flags = self.u8()?;
        let family = match self.u8()? {
            FAMILY_V4 => Family::V4,
            FAMILY_V6 => Family::V6,
            _ => return None,
        };
        let proto = self.u8()?;
        let zone = self.u16()?;
        let orig = self.tuple(family, proto, zone)?;
        let new = match tag {
            REC_NEW => true,
            REC_UPDATE => false,
            REC_DESTROY if flags == 0 => return Some(Record::Destroy(orig)),
            REC_EXPECT | REC_EXPECT_DESTROY => return self.expect(tag, flags, orig),
            _ => return None,
        };
        if flags & !(F_TCP_STATE | F_WINDOW | F_TIMEOUT) != 0 {
            return None;
        }
        let reply = self.tuple(family, proto, zone)?;
        let status = self.u8()?;
        let st = self.u8()?;
        let tcp_state = if flags & F_TCP_STATE != 0 {
            let s = TcpState::from_u8(st);
            // from_u8 maps unknown values to None: refuse them instead.
            if s as u8 != st {
                return None;
            }
            Some(s)
        } else if st != 0 {
            // One encoding per record: a state byte without its flag is refused.
            return None;
        } else {
            None
        };
        let mark = self.u32()?;
        let timeout_s = if flags & F_TIMEOUT != 0 {
            Some(self.u32()?)
        } else {
            None
        };
        let tcp_window = if flags & F_WINDOW != 0 {
            Some(self.window()?)
        } else {
            None
        };
        Some(Record::Upsert {
            new,
            entry: Synced {
                orig,
                reply,
                tcp_state,
                tcp_window,
                status,
                mark,
                timeout_s,
            },
        })
    }
}

/// Decodes one datagram.
pub fn decode(buf: &[u8]) -> Result<Datagram, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::Truncated);
    }
    let be16 = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
    let be32 = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    if be16(0) != MAGIC {
        return Err(DecodeError::Magic);
    }
    if buf[2] != VERSION {
        return Err(DecodeError::Version(buf[2]));
    }
    let len = usize::from(be16(4));
    if len < HEADER_LEN || len > buf.len() {
        return Err(DecodeError::Truncated);
    }
    let buf = &buf[..len];
    let crc = be32(16);
    let mut copy = [0u8; HEADER_LEN];
    copy.copy_from_slice(&buf[..HEADER_LEN]);
    copy[16..20].fill(0);
    let c = !crc_update(crc_update(!0, &copy), &buf[HEADER_LEN..]);
    if c != crc {
        return Err(DecodeError::Checksum);
    }
    let kind = Kind::from_u8(buf[3]).ok_or(DecodeError::Type(buf[3]))?;
    let count = be16(6);
    let mut d = Datagram {
        kind,
        session: be32(8),
        seq: be32(12),
        range: None,
        records: Vec::new(),
    };
    let mut r = Reader {
        buf,
        pos: HEADER_LEN,
    };
    match kind {
        Kind::Ack | Kind::Nack | Kind::Skip => {
            let a = r.u32().ok_or(DecodeError::Truncated)?;
            let b = r.u32().ok_or(DecodeError::Truncated)?;
            d.range = Some((a, b));
        }
        Kind::Data => {
            // Bounded by the datagram: a record is at least 18 bytes.
            d.records.reserve(usize::from(count).min(len / 18));
            for index in 0..count {
                let offset = r.pos;
                let rec = r.record().ok_or(DecodeError::Record { index, offset })?;
                d.records.push(rec);
            }
        }
        Kind::Resync | Kind::Alive => {}
    }
    if r.pos != len {
        return Err(DecodeError::Trailing);
    }
    Ok(d)
}

#[cfg(test)]
mod tests;
