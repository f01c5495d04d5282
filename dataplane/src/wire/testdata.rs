//! Real frames captured with `tcpdump -xx` on a veth pair between two namespaces
//! (`testdata/capture.sh`: ping, ping -6, nc over TCP/UDP v4/v6, a fragmented ping, ICMP
//! port unreachable v4/v6, ARP, neighbour discovery, MLD with hop-by-hop options; UDP with
//! LSRR and SSRR options in a file of their own). TX checksum offload was off, so every
//! checksum in them is complete.

const CAPTURES: &str = include_str!("testdata/captures.txt");

const SOURCE_ROUTED: &str = include_str!("testdata/source-routed.txt");

/// Every captured frame with tcpdump's one-line description.
pub fn captures() -> Vec<(String, Vec<u8>)> {
    read(CAPTURES)
}

/// Frames Linux sent with loose and strict source route options (`IP_OPTIONS` on a UDP
/// socket, `testdata/capture.sh`), kept apart: no stage may forward them.
pub fn source_routed() -> Vec<(String, Vec<u8>)> {
    read(SOURCE_ROUTED)
}

/// `tcpdump -xx` output: a description line, then `0xOFFS:  hex` lines.
pub(crate) fn read(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for line in text.lines() {
        if let Some(hex) = line.trim_start().strip_prefix("0x") {
            let (_, bytes) = hex.split_once(':').expect("offset colon");
            let last = out.last_mut().expect("hex before a header line");
            for word in bytes.split_whitespace() {
                for i in (0..word.len()).step_by(2) {
                    last.1
                        .push(u8::from_str_radix(&word[i..i + 2], 16).expect("hex"));
                }
            }
        } else if !line.trim().is_empty() {
            out.push((line.to_string(), Vec::new()));
        }
    }
    out
}

/// The first captured frame whose description contains `needle`.
pub fn capture(needle: &str) -> Vec<u8> {
    captures()
        .into_iter()
        .find(|(d, _)| d.contains(needle))
        .unwrap_or_else(|| panic!("no capture matching {needle:?}"))
        .1
}
