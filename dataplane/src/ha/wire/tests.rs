use proptest::prelude::*;

use super::*;

fn v4(a: [u8; 4], b: [u8; 4], sp: u16, dp: u16, proto: u8) -> FlowKey {
    FlowKey {
        src: Addr::from_v4(a),
        dst: Addr::from_v4(b),
        sport: sp,
        dport: dp,
        zone: 3,
        proto,
        family: Family::V4,
    }
}

fn window() -> TcpWindow {
    TcpWindow {
        win: [[1, 2, 3, 4], [5, 6, 7, 8]],
        scale: [7, 2],
        flags: [0x22, 0x20],
        last_end: 0xdead_beef,
        last_win: 512,
        last_index: 3,
        last_dir: 1,
        last_wscale: 7,
        last_flags: 0x80,
    }
}

/// An FTP data connection expected from 203.0.113.9 to 198.51.100.1:50000 (PORT of the
/// control connection 198.18.0.2:40000 -> 203.0.113.9:21, zone 3), 299 s left.
fn ftp_expect() -> SyncedExpect {
    SyncedExpect {
        key: ExpectKey {
            family: Family::V4,
            proto: 6,
            src: Addr::from_v4([203, 0, 113, 9]),
            dst: Addr::from_v4([198, 51, 100, 1]),
            dport: 50000,
        },
        helper: HelperKind::Ftp,
        master: v4([198, 18, 0, 2], [203, 0, 113, 9], 40000, 21, 6),
        timeout_s: 299,
    }
}

/// A masqueraded TCP connection (198.18.0.2:40000 -> 203.0.113.9:443 leaving as
/// 198.51.100.1:61000) with its window, a v6 UDP one without timeout, a destroy, an FTP
/// expectation and an expectation's destroy.
fn sample() -> Vec<Record> {
    let orig = v4([198, 18, 0, 2], [203, 0, 113, 9], 40000, 443, 6);
    let reply = v4([203, 0, 113, 9], [198, 51, 100, 1], 443, 61000, 6);
    let tcp = Synced {
        orig,
        reply,
        tcp_state: Some(TcpState::Established),
        tcp_window: Some(window()),
        status: 0x06,
        mark: 0xabcd,
        timeout_s: Some(431_999),
    };
    let k6 = FlowKey {
        src: Addr([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        dst: Addr([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]),
        sport: 5353,
        dport: 53,
        zone: 0,
        proto: 17,
        family: Family::V6,
    };
    let udp = Synced {
        orig: k6,
        reply: k6.inverse(),
        tcp_state: None,
        tcp_window: None,
        status: 0x02,
        mark: 0,
        timeout_s: None,
    };
    vec![
        Record::Upsert {
            new: true,
            entry: tcp,
        },
        Record::Upsert {
            new: false,
            entry: udp,
        },
        Record::Destroy(orig),
        Record::Expect(ftp_expect()),
        Record::ExpectDestroy(ExpectKey {
            family: Family::V6,
            proto: 17,
            ..ExpectKey::of(&ftp_expect().to_expectation())
        }),
    ]
}

#[test]
fn an_expectation_record_has_its_documented_layout_and_converts_both_ways() {
    let e = ftp_expect();
    let mut b = Vec::new();
    put_record(&mut b, &Record::Expect(e));
    assert_eq!(b.len(), 36, "docs/ha.md: 36 bytes for IPv4");
    assert_eq!(
        &b[..6],
        &[4, 0, 4, 6, 0, 3],
        "kind, flags, family, proto, zone"
    );
    assert_eq!(
        &b[6..18],
        &[203, 0, 113, 9, 198, 51, 100, 1, 0, 0, 0xc3, 0x50]
    );
    assert_eq!(
        &b[18..30],
        &[198, 18, 0, 2, 203, 0, 113, 9, 0x9c, 0x40, 0, 21]
    );
    assert_eq!(
        &b[30..],
        &[6, 1, 0, 0, 1, 43],
        "master proto, helper, timeout"
    );
    let mut d = Vec::new();
    put_record(&mut d, &Record::ExpectDestroy(e.key));
    assert_eq!(d, [&[5, 0, 4, 6, 0, 0][..], &b[6..18]].concat());
    // Into this box's table as the peer's, and back with the time left.
    let x = e.to_expectation();
    assert_eq!(x.master_worker, SYNCED_MASTER);
    assert_eq!(
        (x.src, x.dst, x.dport, x.helper),
        (e.key.src, e.key.dst, 50000, HelperKind::Ftp)
    );
    assert_eq!(SyncedExpect::from_expectation(&x, 298_500_000_000), e);
    // One encoding: a source port, flags, or a destroy's zone are refused.
    for (at, v) in [(14, 1), (1, 1), (5, 1)] {
        let mut bad = if at == 5 { d.clone() } else { b.clone() };
        bad[at] = v;
        assert!(decode_records(&bad).is_err(), "byte {at}");
    }
    let mut bad = b.clone();
    bad[31] = 9;
    assert!(decode_records(&bad).is_err(), "an unknown helper");
}

#[test]
fn data_roundtrip_keeps_every_field() {
    let recs = sample();
    let bytes = encode_data(0x1234_5678, 42, &recs);
    assert_eq!(
        bytes.len(),
        HEADER_LEN + recs.iter().map(record_len).sum::<usize>()
    );
    let d = decode(&bytes).unwrap();
    assert_eq!(d.kind, Kind::Data);
    assert_eq!(d.session, 0x1234_5678);
    assert_eq!(d.seq, 42);
    assert_eq!(d.records, recs);
}

#[test]
fn control_roundtrip() {
    for k in [Kind::Ack, Kind::Nack, Kind::Skip] {
        let d = decode(&encode_control(k, 7, 9, Some((3, 5)))).unwrap();
        assert_eq!((d.kind, d.session, d.seq, d.range), (k, 7, 9, Some((3, 5))));
    }
    for k in [Kind::Resync, Kind::Alive] {
        let d = decode(&encode_control(k, 7, 9, None)).unwrap();
        assert_eq!((d.kind, d.range), (k, None));
    }
}

#[test]
fn crc_is_ieee() {
    // The check value of CRC-32/ISO-HDLC.
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
}

/// The bitwise definition (no table), for the sliced one to agree with.
fn crc32_bitwise(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn sliced_crc_matches_the_bitwise_definition_at_every_length_and_alignment() {
    let data: Vec<u8> = (0..300u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
        .collect();
    for start in 0..9 {
        for len in 0..(data.len() - start) {
            let d = &data[start..start + len];
            assert_eq!(crc32(d), crc32_bitwise(d), "start {start} len {len}");
        }
    }
}

#[test]
fn malformed_datagrams_are_errors() {
    let good = encode_data(1, 1, &sample());
    assert_eq!(decode(&good[..10]), Err(DecodeError::Truncated));
    assert_eq!(decode(&good[..good.len() - 1]), Err(DecodeError::Truncated));
    let mut b = good.clone();
    b[0] ^= 1;
    assert_eq!(decode(&b), Err(DecodeError::Magic));
    let mut b = good.clone();
    b[2] = 2;
    assert_eq!(decode(&b), Err(DecodeError::Version(2)));
    let mut b = good.clone();
    let last = b.len() - 1;
    b[last] ^= 0x40;
    assert_eq!(decode(&b), Err(DecodeError::Checksum));
    // Valid CRC, unknown type.
    let mut b = good.clone();
    b[3] = 9;
    b[16..20].fill(0);
    let c = crc32(&b);
    b[16..20].copy_from_slice(&c.to_be_bytes());
    assert_eq!(decode(&b), Err(DecodeError::Type(9)));
    // Valid CRC, one record more than the body holds.
    let mut b = good.clone();
    b[7] += 1;
    b[16..20].fill(0);
    let c = crc32(&b);
    b[16..20].copy_from_slice(&c.to_be_bytes());
    assert!(matches!(
        decode(&b),
        Err(DecodeError::Record { index: 5, .. })
    ));
    // Valid CRC, one record fewer: bytes left over.
    let mut b = good;
    b[7] -= 1;
    b[16..20].fill(0);
    let c = crc32(&b);
    b[16..20].copy_from_slice(&c.to_be_bytes());
    assert_eq!(decode(&b), Err(DecodeError::Trailing));
}

/// Re-stamps the CRC so the decoder reaches the body.
fn restamp(mut b: Vec<u8>) -> Vec<u8> {
    if b.len() >= HEADER_LEN {
        b[16..20].fill(0);
        let c = crc32(&b);
        b[16..20].copy_from_slice(&c.to_be_bytes());
    }
    b
}

fn arb_key() -> impl Strategy<Value = FlowKey> {
    (
        any::<bool>(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        any::<u8>(),
    )
        .prop_map(|(v6, s, d, sp, dp, zone, proto)| {
            let (family, src, dst) = if v6 {
                (Family::V6, Addr(s), Addr(d))
            } else {
                let a = |x: [u8; 16]| Addr::from_v4([x[0], x[1], x[2], x[3]]);
                (Family::V4, a(s), a(d))
            };
            FlowKey {
                src,
                dst,
                sport: sp,
                dport: dp,
                zone,
                proto,
                family,
            }
        })
}

fn arb_record() -> impl Strategy<Value = Record> {
    (
        arb_key(),
        arb_key(),
        0u8..6,
        proptest::option::of(0u8..10),
        any::<bool>(),
        any::<u8>(),
        any::<u32>(),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|(orig, r, kind, st, win, status, mark, timeout_s)| {
            let key = ExpectKey {
                family: orig.family,
                proto: orig.proto,
                src: orig.src,
                dst: orig.dst,
                dport: orig.dport,
            };
            match kind {
                3 => return Record::Destroy(orig),
                4 => {
                    return Record::Expect(SyncedExpect {
                        key,
                        helper: if status % 2 == 0 {
                            HelperKind::Ftp
                        } else {
                            HelperKind::Tftp
                        },
                        master: FlowKey {
                            family: orig.family,
                            src: if orig.family == Family::V4 {
                                Addr::from_v4([r.src.0[12], r.src.0[13], r.src.0[14], r.src.0[15]])
                            } else {
                                r.src
                            },
                            dst: orig.dst,
                            ..r
                        },
                        timeout_s: mark,
                    });
                }
                5 => return Record::ExpectDestroy(key),
                _ => {}
            }
            // The reply tuple shares the original's family, protocol and zone.
            let reply = FlowKey {
                family: orig.family,
                proto: orig.proto,
                zone: orig.zone,
                src: if orig.family == Family::V4 {
                    Addr::from_v4([r.src.0[12], r.src.0[13], r.src.0[14], r.src.0[15]])
                } else {
                    r.src
                },
                dst: if orig.family == Family::V4 {
                    Addr::from_v4([r.dst.0[12], r.dst.0[13], r.dst.0[14], r.dst.0[15]])
                } else {
                    r.dst
                },
                ..r
            };
            Record::Upsert {
                new: kind == 0,
                entry: Synced {
                    orig,
                    reply,
                    tcp_state: st.map(TcpState::from_u8),
                    tcp_window: win.then(window),
                    status,
                    mark,
                    timeout_s,
                },
            }
        })
}

proptest! {
    #[test]
    fn any_records_roundtrip(recs in proptest::collection::vec(arb_record(), 0..12),
                             session: u32, seq: u32) {
        let b = encode_data(session, seq, &recs);
        let d = decode(&b).unwrap();
        prop_assert_eq!(d.records, recs);
        prop_assert_eq!((d.session, d.seq), (session, seq));
    }

    /// Arbitrary bytes, with or without a valid header and CRC: an error or a datagram,
    /// never a panic; and a decoded datagram encodes back to the same bytes.
    #[test]
    fn garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..600),
                            kind in 0u8..8, count: u16) {
        let _ = decode(&body);
        let mut b = encode_control(Kind::Resync, 1, 2, None);
        b.extend_from_slice(&body);
        let len = u16::try_from(b.len()).unwrap();
        b[3] = kind;
        b[4..6].copy_from_slice(&len.to_be_bytes());
        b[6..8].copy_from_slice(&count.to_be_bytes());
        let b = restamp(b);
        if let Ok(d) = decode(&b) && d.kind == Kind::Data {
            prop_assert_eq!(encode_data(d.session, d.seq, &d.records), b);
        }
    }

    /// Any single flipped bit of a valid datagram is refused (CRC-32 detects all
    /// single-bit errors; a flip in the length field is refused as truncated).
    #[test]
    fn flipped_bit_is_refused(bit in 0usize..(8 * 200)) {
        let good = encode_data(5, 6, &sample());
        let bit = bit % (8 * good.len());
        let mut b = good;
        b[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(decode(&b).is_err());
    }
}

fn body_of(recs: &[Record]) -> Vec<u8> {
    let mut body = Vec::new();
    for r in recs {
        put_record(&mut body, r);
    }
    body
}

#[test]
fn a_batch_splits_at_record_boundaries_and_decodes_back() {
    let recs = sample();
    let body = body_of(&recs);
    let parts = split_records(&body).unwrap();
    let lens: Vec<usize> = parts.iter().map(|&(_, n)| n).collect();
    let want: Vec<usize> = recs.iter().map(record_len).collect();
    assert_eq!(lens, want, "raw_record_len agrees with record_len");
    assert_eq!(decode_records(&body).unwrap(), recs);
    // The records of a datagram are its body: what ha_apply_records is handed.
    let d = encode_data(1, 2, &recs);
    assert_eq!(data_body(&d), &body[..]);
    assert_eq!(
        encode_data_raw(1, 2, u16::try_from(recs.len()).unwrap(), &body),
        d
    );
    // Through base64 (the control protocol's carrier) and back.
    let text = base64_encode(&body);
    assert_eq!(base64_decode(&text).unwrap(), body);
    assert!(base64_decode("not base64!").is_err());
}

#[test]
fn a_truncated_or_garbled_batch_is_an_error_naming_the_record() {
    let recs = sample();
    let body = body_of(&recs);
    let first = record_len(&recs[0]);
    for cut in [1, 5, first + 3, body.len() - 1] {
        assert!(
            matches!(split_records(&body[..cut]), Err(DecodeError::Record { .. })),
            "cut at {cut}"
        );
        assert!(decode_records(&body[..cut]).is_err(), "cut at {cut}");
    }
    // The second record's kind byte garbled: index 1, at its offset.
    let mut bad = body.clone();
    bad[first] = 9;
    assert_eq!(
        split_records(&bad),
        Err(DecodeError::Record {
            index: 1,
            offset: first
        })
    );
    assert_eq!(
        decode_records(&bad),
        Err(DecodeError::Record {
            index: 1,
            offset: first
        })
    );
    assert_eq!(decode_records(&[]).unwrap(), Vec::new());
}

proptest! {
    /// Any records back to back split where they were joined and decode to themselves.
    #[test]
    fn any_batch_roundtrips(recs in proptest::collection::vec(arb_record(), 0..40)) {
        let body = body_of(&recs);
        let parts = split_records(&body).unwrap();
        prop_assert_eq!(parts.len(), recs.len());
        prop_assert_eq!(decode_records(&body).unwrap(), recs);
    }

    /// Arbitrary bytes as a batch: an error or records, never a panic; whatever decodes
    /// splits the same way and encodes back to the same bytes.
    #[test]
    fn garbage_batches_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let split = split_records(&body);
        if let Ok(recs) = decode_records(&body) {
            prop_assert_eq!(body_of(&recs), body.clone());
            prop_assert_eq!(split.map(|p| p.len()), Ok(recs.len()));
        }
    }
}
