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

#[cfg(test)]
mod tests {
    use super::TcpWindow;

    #[test]
    fn a_window_goes_through_the_protocol_unchanged() {
        let w = TcpWindow {
            win: [[1, 2, 3, 4], [5, 6, 7, 8]],
            scale: [7, 14],
            flags: [0x3, 0x10],
            last_end: 9,
            last_win: 10,
            last_index: 2,
            last_dir: 1,
            last_wscale: 6,
            last_flags: 0x4,
        };
        let p = fwd_proto::CtTcpWindow::from(w);
        assert_eq!(
            (p.win, p.scale, p.last_end, p.last_wscale),
            (w.win, w.scale, 9, 6)
        );
        assert_eq!(TcpWindow::from(p), w);
        // And through its JSON, as a listing or an HA peer carries it.
        let back: fwd_proto::CtTcpWindow =
            serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(TcpWindow::from(back), w);
    }
}
