//! Fragment trains Linux sent and forwarded (`testdata/capture.sh`): a 4000-byte UDP
//! datagram per family fragmented by the sender on a 1500-byte MTU (`in:`), and the same
//! datagram after a Linux router reassembled it, masqueraded it and refragmented it
//! (`out:`). Frames start with their Ethernet header.

const FORWARDED: &str = include_str!("testdata/linux-forwarded.txt");

/// The IP packets (Ethernet header removed) whose description starts with `prefix`
/// (`"in: IP "`, `"out: IP6 "`, ...), in capture order.
pub fn linux(prefix: &str) -> Vec<Vec<u8>> {
    crate::wire::testdata::read(FORWARDED)
        .into_iter()
        .filter(|(d, _)| d.starts_with(prefix))
        .map(|(_, f)| f[14..].to_vec())
        .collect()
}
