use proptest::prelude::*;

use super::*;

/// A handshake message: type, u24 length, body.
fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap().to_be_bytes();
    let mut out = vec![kind, len[1], len[2], len[3]];
    out.extend_from_slice(body);
    out
}

fn record(kind: u8, fragment: &[u8]) -> Vec<u8> {
    let mut out = vec![kind, 3, 3];
    out.extend_from_slice(&u16::try_from(fragment.len()).unwrap().to_be_bytes());
    out.extend_from_slice(fragment);
    out
}

fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut out = kind.to_be_bytes().to_vec();
    out.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
    out.extend_from_slice(data);
    out
}

fn hello_body(random: [u8; 32], suite: u16, exts: &[Vec<u8>]) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&random);
    b.push(0);
    b.extend_from_slice(&suite.to_be_bytes());
    b.push(0);
    let all: Vec<u8> = exts.concat();
    b.extend_from_slice(&u16::try_from(all.len()).unwrap().to_be_bytes());
    b.extend_from_slice(&all);
    b
}

fn tls13_hello() -> Vec<u8> {
    let mut share = vec![0, 0x1D, 0, 32];
    share.extend_from_slice(&[7; 32]);
    hello_body([1; 32], 0x1301, &[ext(43, &[3, 4]), ext(51, &share)])
}

fn read(bytes: &[u8], depth: Depth) -> Result<Response, WireError> {
    read_response(&mut &bytes[..], depth)
}

#[test]
fn tls13_server_hello() {
    let wire = record(22, &msg(2, &tls13_hello()));
    let Response::Hello(f) = read(&wire, Depth::Flight).unwrap() else {
        panic!("not a hello")
    };
    assert_eq!(f.hello.version(), version::TLS13);
    assert_eq!(f.hello.cipher_suite, 0x1301);
    assert_eq!(f.hello.key_share_group, Some(0x1D));
    assert!(!f.hello.is_retry);
}

#[test]
fn hello_retry_request() {
    let body = hello_body(HRR_RANDOM, 0x1302, &[ext(43, &[3, 4]), ext(51, &[0, 0x17])]);
    let wire = record(22, &msg(2, &body));
    let Response::Hello(f) = read(&wire, Depth::Flight).unwrap() else {
        panic!("not a hello")
    };
    assert!(f.hello.is_retry);
    assert_eq!(f.hello.key_share_group, Some(0x17));
    assert_eq!(f.hello.cipher_suite, 0x1302);
}

#[test]
fn alert_before_hello() {
    assert_eq!(
        read(&record(21, &[2, 70]), Depth::Hello).unwrap(),
        Response::Alert {
            level: 2,
            description: 70
        }
    );
}

/// A TLS 1.2 flight split across records: ServerHello, Certificate, ServerKeyExchange
/// (ECDHE on P-256), CertificateRequest, ServerHelloDone.
#[test]
fn tls12_flight_across_records() {
    let sh = hello_body([2; 32], 0xC02F, &[ext(23, &[]), ext(0xff01, &[0])]);
    let certs = {
        let one = [0x30u8, 0x03, 1, 2, 3];
        let mut entry = vec![0, 0, 5];
        entry.extend_from_slice(&one);
        let mut list = vec![0, 0, 8];
        list.extend_from_slice(&entry);
        list
    };
    let mut ske = vec![3, 0, 0x17, 65, 4];
    ske.extend_from_slice(&[9; 64]);
    ske.extend_from_slice(&[4, 3, 0, 2, 0xAA, 0xBB]);
    let stream = [
        msg(2, &sh),
        msg(11, &certs),
        msg(12, &ske),
        msg(13, &[1, 1, 0, 2, 4, 3, 0, 0]),
        msg(14, &[]),
    ]
    .concat();
    let (a, b) = stream.split_at(50);
    let wire = [record(22, a), record(22, b)].concat();
    let Response::Hello(f) = read(&wire, Depth::Flight).unwrap() else {
        panic!("not a hello")
    };
    assert_eq!(f.hello.version(), version::TLS12);
    assert!(f.hello.extended_master_secret && f.hello.secure_renegotiation);
    assert_eq!(f.certificates, vec![vec![0x30, 0x03, 1, 2, 3]]);
    assert_eq!(f.kx, Some(ServerKx::Ecdhe { group: 0x17 }));
    assert!(f.client_cert_requested);
    // Depth::Hello stops at the ServerHello.
    let Response::Hello(f) = read(&wire, Depth::Hello).unwrap() else {
        panic!("not a hello")
    };
    assert!(f.certificates.is_empty());
}

#[test]
fn dhe_prime_size() {
    let mut p = vec![0u8, 0x7F];
    p.extend_from_slice(&[0xFF; 127]);
    let mut body = u16::try_from(p.len()).unwrap().to_be_bytes().to_vec();
    body.extend_from_slice(&p);
    body.extend_from_slice(&[0, 1, 2, 0, 1, 5]);
    assert_eq!(
        parse_server_key_exchange(&body, false),
        Ok(ServerKx::Dhe { p_bits: 1023 })
    );
}

#[test]
fn malformed_answers_are_typed_errors() {
    let good = tls13_hello();
    let mut dup = hello_body([1; 32], 0x1301, &[ext(43, &[3, 4]), ext(43, &[3, 4])]);
    let long_sid = {
        let mut b = good.clone();
        b[34] = 33;
        b
    };
    let hrr_12 = hello_body(HRR_RANDOM, 0x1301, &[ext(51, &[0, 0x17])]);
    let mut big_record = vec![22, 3, 3];
    big_record.extend_from_slice(&u16::MAX.to_be_bytes());
    let huge_msg = record(22, &[2, 0xFF, 0xFF, 0xFF]);
    let cases: Vec<(&str, Vec<u8>, WireError)> = vec![
        ("nothing", vec![], WireError::Closed),
        ("half a header", vec![22, 3], WireError::Closed),
        (
            "not TLS",
            b"HTTP/1.1 400 Bad Request\r\n".to_vec(),
            WireError::Malformed("not a TLS record"),
        ),
        (
            "SSLv2-style version",
            vec![22, 2, 0, 0, 1, 0],
            WireError::Malformed("record version is not 3.x"),
        ),
        (
            "record over 2^14+2048",
            big_record,
            WireError::TooLong("record"),
        ),
        (
            "handshake message over the bound",
            huge_msg,
            WireError::TooLong("handshake message"),
        ),
        (
            "truncated fragment",
            record(22, &msg(2, &good))[..20].to_vec(),
            WireError::Closed,
        ),
        (
            "truncated hello",
            record(22, &msg(2, &good[..40])),
            WireError::Truncated,
        ),
        (
            "session id over 32",
            record(22, &msg(2, &long_sid)),
            WireError::Malformed("session id longer than 32 bytes"),
        ),
        (
            "duplicate extension",
            record(22, &msg(2, &dup)),
            WireError::Malformed("duplicate extension in ServerHello"),
        ),
        (
            "HRR without TLS 1.3",
            record(22, &msg(2, &hrr_12)),
            WireError::Malformed("HelloRetryRequest without TLS 1.3"),
        ),
        (
            "certificate first",
            record(22, &msg(11, &[0, 0, 0])),
            WireError::UnexpectedMessage(11),
        ),
        (
            "application data first",
            record(23, &[1, 2, 3]),
            WireError::UnexpectedRecord(23),
        ),
        (
            "empty alert",
            record(21, &[]),
            WireError::Malformed("empty record"),
        ),
        ("one-byte alert", record(21, &[2]), WireError::Truncated),
    ];
    for (what, wire, want) in cases {
        assert_eq!(read(&wire, Depth::Flight), Err(want), "{what}");
    }
    // Bytes after the extensions block.
    dup = good.clone();
    dup.push(0);
    assert_eq!(
        parse_server_hello(&dup),
        Err(WireError::Malformed(
            "bytes after the ServerHello extensions"
        ))
    );
    // A certificate list that claims more than it has, and an empty certificate.
    assert_eq!(
        parse_certificate(&[0, 0, 9, 0, 0, 1, 1]),
        Err(WireError::Truncated)
    );
    assert_eq!(
        parse_certificate(&[0, 0, 3, 0, 0, 0]),
        Err(WireError::Malformed("empty certificate"))
    );
    // ServerKeyExchange on explicit curves; an all-zero DH prime.
    assert!(parse_server_key_exchange(&[1, 0, 0], true).is_err());
    assert_eq!(
        parse_server_key_exchange(&[0, 1, 0, 0, 1, 2, 0, 1, 3], false),
        Err(WireError::Malformed("zero DH prime"))
    );
}

#[test]
fn a_server_that_never_stops_is_cut_off() {
    // Endless empty-ish ChangeCipherSpec records: the flight budget ends it.
    let one = record(20, &[1]);
    let endless = one
        .iter()
        .copied()
        .cycle()
        .take(MAX_FLIGHT + 100)
        .collect::<Vec<_>>();
    assert_eq!(
        read(&endless, Depth::Flight),
        Err(WireError::TooLong("server flight"))
    );
    // A handshake message announced as large and sent in many records: refused at the
    // message bound, not buffered without end.
    let mut wire = record(22, &msg(11, &[])[..1]);
    wire.extend(record(22, &[0x04, 0x00, 0x01]));
    assert_eq!(
        read(
            &[record(22, &msg(2, &hello_body([3; 32], 0x002F, &[]))), wire].concat(),
            Depth::Flight
        ),
        Err(WireError::TooLong("handshake message"))
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = read(&bytes, Depth::Flight);
        let _ = parse_server_hello(&bytes);
        let _ = parse_certificate(&bytes);
        let _ = parse_server_key_exchange(&bytes, true);
        let _ = parse_server_key_exchange(&bytes, false);
    }

    #[test]
    fn arbitrary_records_never_panic(
        kind in 20u8..=24,
        fragments in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 1..8),
    ) {
        let wire: Vec<u8> = fragments.iter().flat_map(|f| record(kind, f)).collect();
        let _ = read(&wire, Depth::Flight);
    }

    #[test]
    fn hello_survives_every_truncation(cut in 0usize..200) {
        let body = tls13_hello();
        let cut = cut.min(body.len());
        // Cut right after the compression method it is a valid hello without extensions.
        if cut < body.len() && cut != 38 {
            prop_assert!(parse_server_hello(&body[..cut]).is_err());
        }
    }
}
