//! The TCP window-tracking state as plain data, in a file of its own that imports
//! nothing: the tracker (`tcp.rs`) keeps it per connection, state sync and the control
//! protocol (`fwd_proto::CtTcpWindow`, converted field by field by `control::conntrack`)
//! carry it whole (docs/ha.md).

/// Per-connection TCP state (Linux `struct ip_ct_tcp` without the retransmission
/// counter), 48 bytes: the two sides (`tcp.rs`'s `Side`) are stored split so no padding is wasted. The
/// fields are public because state sync carries them whole (docs/ha.md): `win[d]` is
/// `end, maxend, maxwin, maxack` of direction `d`, then the window scales, the per-side
/// flags and the last-segment fields used to spot retransmissions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpWindow {
    pub win: [[u32; 4]; 2],
    pub scale: [u8; 2],
    pub flags: [u8; 2],
    pub last_end: u32,
    pub last_win: u16,
    pub last_index: u8,
    pub last_dir: u8,
    pub last_wscale: u8,
    pub last_flags: u8,
}
