//! The TFTP helper's check (Linux `nf_conntrack_tftp.c`): a read (opcode 1) or write
//! (opcode 2) request from the client makes an expectation for the server's answer,
//! which comes from a new port of the server to the client's port (RFC 1350 §4).

/// Whether a UDP payload sent by the client is a TFTP read or write request.
pub fn is_request(payload: &[u8]) -> bool {
    matches!(payload, [0, 1 | 2, ..])
}

#[cfg(test)]
mod tests {
    #[test]
    fn read_and_write_requests_only() {
        assert!(super::is_request(b"\x00\x01file\x00octet\x00"));
        assert!(super::is_request(b"\x00\x02file\x00octet\x00"));
        assert!(!super::is_request(b"\x00\x03\x00\x01data"));
        assert!(!super::is_request(b"\x00"));
        assert!(!super::is_request(b""));
    }
}
