//! The two control-protocol lines of the binary sync path, written by hand (docs/ha.md,
//! "Binary event path"): fwd's `subscribe_records` batch (a [`RecordBatch`]) and the
//! daemon's `ha_apply_records` request. Each is byte for byte what serde_json writes
//! for the same value (the tests check it for arbitrary records), but the base64 of the
//! records goes straight into the line: base64's alphabet needs no JSON escaping, so
//! serde_json's per-byte escape check of the text and the intermediate `String` (with its
//! UTF-8 check) are skipped. Everything else on the line (the numbers, the target) is
//! still written by serde_json.
//!
//! [`RecordBatch`]: crate::control::proto::RecordBatch

use crate::control::proto::{HaTarget, PROTOCOL_VERSION};

/// Appends `"`, the base64 of `bytes` (standard alphabet, padded, as
/// [`super::wire::base64_encode`] writes it) and `"`.
fn put_base64_string(out: &mut Vec<u8>, bytes: &[u8]) {
    use base64::Engine as _;
    out.push(b'"');
    let start = out.len();
    // A slice in memory is far shorter than the length that would overflow.
    let n = base64::encoded_len(bytes.len(), true).unwrap_or(0);
    out.resize(start + n, 0);
    let written = out.get_mut(start..).map_or(0, |dst| {
        base64::engine::general_purpose::STANDARD
            .encode_slice(bytes, dst)
            .unwrap_or(0)
    });
    out.truncate(start + written);
    out.push(b'"');
}

/// Appends a value as serde_json writes it (numbers and unit enum variants: no failure).
fn put_json<T: serde::Serialize>(out: &mut Vec<u8>, v: &T) {
    // Writing into a Vec cannot fail, and these types always serialize.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// Appends one `subscribe_records` line: the [`RecordBatch`] of `records` (wire records
/// back to back), then `\n`.
///
/// [`RecordBatch`]: crate::control::proto::RecordBatch
pub fn put_record_batch(
    out: &mut Vec<u8>,
    records: &[u8],
    count: u64,
    lost: u64,
    synced_skipped: u64,
) {
    out.extend_from_slice(br#"{"records":"#);
    put_base64_string(out, records);
    out.extend_from_slice(br#","count":"#);
    put_json(out, &count);
    out.extend_from_slice(br#","lost":"#);
    put_json(out, &lost);
    out.extend_from_slice(br#","synced_skipped":"#);
    put_json(out, &synced_skipped);
    out.extend_from_slice(b"}\n");
}

/// Appends one `ha_apply_records` request line with id `id` (the envelope of
/// [`PROTOCOL_VERSION`]) for `records` (wire records back to back), then `\n`.
pub fn put_apply_records(out: &mut Vec<u8>, id: u64, records: &[u8], target: HaTarget) {
    out.extend_from_slice(br#"{"v":"#);
    put_json(out, &PROTOCOL_VERSION);
    out.extend_from_slice(br#","id":"#);
    put_json(out, &id);
    out.extend_from_slice(br#","request":{"op":"ha_apply_records","records":"#);
    put_base64_string(out, records);
    out.extend_from_slice(br#","target":"#);
    put_json(out, &target);
    out.extend_from_slice(b"}}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::proto::{RecordBatch, Request, RequestEnvelope};
    use crate::ha::wire::base64_encode;
    use proptest::prelude::*;

    fn serde_line<T: serde::Serialize>(v: &T) -> Vec<u8> {
        let mut line = serde_json::to_vec(v).unwrap();
        line.push(b'\n');
        line
    }

    proptest! {
        /// For arbitrary bytes (every length modulo 3, so every padding) and counters,
        /// the hand-written batch line is serde_json's line of the same `RecordBatch`,
        /// and appends after what the buffer held.
        #[test]
        fn record_batch_line_is_serde_jsons(
            records in proptest::collection::vec(any::<u8>(), 0..600),
            count in any::<u64>(),
            lost in any::<u64>(),
            synced_skipped in any::<u64>(),
            before in proptest::collection::vec(any::<u8>(), 0..4),
        ) {
            let mut out = before.clone();
            put_record_batch(&mut out, &records, count, lost, synced_skipped);
            let want = serde_line(&RecordBatch {
                records: base64_encode(&records),
                count,
                lost,
                synced_skipped,
            });
            prop_assert_eq!(&out[..before.len()], &before[..]);
            prop_assert_eq!(&out[before.len()..], &want[..]);
        }

        /// The same for the `ha_apply_records` request line, both targets, any id.
        #[test]
        fn apply_records_line_is_serde_jsons(
            records in proptest::collection::vec(any::<u8>(), 0..600),
            id in any::<u64>(),
            cache in any::<bool>(),
        ) {
            let target = if cache { HaTarget::Cache } else { HaTarget::Workers };
            let mut out = Vec::new();
            put_apply_records(&mut out, id, &records, target);
            let want = serde_line(&RequestEnvelope {
                v: PROTOCOL_VERSION,
                id,
                request: Request::HaApplyRecords {
                    records: base64_encode(&records),
                    target,
                },
            });
            prop_assert_eq!(out, want);
        }
    }
}
