//! Every datagram of the reference captures in `shared/vectors` (format
//! `cusp-vector-1`, see its README) through the wire layer: types and header
//! fields, HELLO/WELCOME fields and exact re-emission, NOSTATE tokens, and
//! every listed DATA payload parsed into exactly the listed segments and
//! re-encoded to the same bytes.
//!
//! The directory is `$CUSP_VECTORS`, else `../../../shared/vectors` relative to
//! this crate (the project layout under `/work`). If it is absent the test
//! reports that and passes.

use std::collections::HashMap;
use std::path::PathBuf;

use cusp_proto::wire::datagram::{Datagram, tail_token};
use cusp_proto::wire::segment::{PayloadWriter, Segment, Segments};
use cusp_proto::wire::seq::truncate28;

fn vectors_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CUSP_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
        });
    dir.is_dir().then_some(dir)
}

/// One `[datagram N]` section: repeated keys keep their order.
struct Section {
    n: usize,
    fields: Vec<(String, String)>,
}

impl Section {
    fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn first(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| v.split_whitespace().next())
    }
    fn hex(&self, key: &str) -> Option<Vec<u8>> {
        match self.get(key) {
            Some("") => Some(Vec::new()),
            Some(_) => match self.first(key)? {
                "omitted" => None,
                t => Some(hex::decode(t).unwrap()),
            },
            None => None,
        }
    }
    fn num(&self, key: &str) -> u64 {
        let t = self.first(key).unwrap();
        match t.strip_prefix("0x") {
            Some(x) => u64::from_str_radix(x, 16).unwrap(),
            None => t.parse().unwrap(),
        }
    }
}

fn sections(text: &str) -> Vec<Section> {
    let mut out = Vec::new();
    let mut cur: Option<Section> = None;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            if let Some(s) = cur.take() {
                out.push(s);
            }
            if let Some(n) = name.strip_prefix("datagram ") {
                cur = Some(Section {
                    n: n.trim_end_matches(']').parse().unwrap(),
                    fields: Vec::new(),
                });
            }
            continue;
        }
        if let (Some(s), Some((k, v))) = (cur.as_mut(), line.split_once(':')) {
            s.fields.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out.extend(cur);
    out
}

fn kv(tokens: &[&str]) -> HashMap<String, String> {
    tokens
        .iter()
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Checks a parsed segment against one `segment:` line; `bytes=omitted` skips the content.
fn check_segment(s: &Segment<'_>, line: &str, at: &str) {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let f = kv(&tokens[1..]);
    let n = |k: &str| -> u64 {
        f[k].parse()
            .unwrap_or_else(|_| panic!("{at}: field {k} in {line}"))
    };
    match (tokens[0], s) {
        ("CONNECT", Segment::Connect { seq, service }) => {
            assert_eq!(
                (u64::from(*seq), u64::from(*service)),
                (n("seq"), n("service")),
                "{at}"
            );
        }
        (
            "DATA",
            Segment::Data {
                id,
                offset,
                eof,
                explicit_offset,
                bytes,
            },
        ) => {
            assert_eq!(u64::from(*id), n("id"), "{at}");
            assert_eq!(u64::from(*offset), n("offset"), "{at}");
            assert_eq!(*eof, n("eof") == 1, "{at}");
            assert_eq!(*explicit_offset, n("offset_field") == 1, "{at}");
            assert_eq!(bytes.len() as u64, n("len"), "{at}");
            if f["bytes"] != "omitted" {
                assert_eq!(*bytes, &hex::decode(&f["bytes"]).unwrap()[..], "{at}");
            }
            // The writer rule: an offset field exactly when the offset is not 0.
            assert_eq!(*explicit_offset, *offset != 0, "{at}");
        }
        ("WRITER_RESETS", Segment::WriterResets { id }) => {
            assert_eq!(u64::from(*id), n("id"), "{at}")
        }
        ("READER_RESETS", Segment::ReaderResets { seq, id }) => {
            assert_eq!(
                (u64::from(*seq), u64::from(*id)),
                (n("seq"), n("id")),
                "{at}"
            );
        }
        ("READER_BARRIER", Segment::ReaderBarrier { seq, id, barrier }) => {
            assert_eq!(
                (u64::from(*seq), u64::from(*id), u64::from(*barrier)),
                (n("seq"), n("id"), n("barrier")),
                "{at}"
            );
        }
        (kind, s) => panic!("{at}: expected {kind}, parsed {s:?}"),
    }
}

#[test]
fn all_reference_vectors() {
    let Some(dir) = vectors_dir() else {
        eprintln!("vector directory not found; set CUSP_VECTORS to run this test");
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "txt"));
    files.sort();
    assert!(!files.is_empty());
    let (mut datagrams, mut payloads, mut segments) = (0, 0, 0);
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        let secs = sections(&text);
        let by_n: HashMap<usize, &Section> = secs.iter().map(|s| (s.n, s)).collect();
        for sec in &secs {
            let at = format!("{name} datagram {}", sec.n);
            let ty = sec.first("type").unwrap();
            let hex = sec.hex("hex");
            if let Some(bytes) = &hex {
                assert_eq!(bytes.len() as u64, sec.num("len"), "{at}");
                datagrams += 1;
                let d = Datagram::parse(bytes).unwrap_or_else(|e| panic!("{at}: {e}"));
                match (ty, d) {
                    ("HELLO", Datagram::Hello(n))
                    | ("WELCOME", Datagram::Welcome(cusp_proto::wire::Welcome { body: n, .. })) => {
                        assert_eq!(n.static_key[..], sec.hex("B").unwrap()[..], "{at}");
                        assert_eq!(n.ephemeral[..], sec.hex("Y").unwrap()[..], "{at}");
                        assert_eq!(
                            u64::from(n.bits.public_key.mask()),
                            sec.num("publickey_mask"),
                            "{at}"
                        );
                        assert_eq!(
                            u64::from(n.bits.symmetric.mask()),
                            sec.num("symmetric_mask"),
                            "{at}"
                        );
                        assert_eq!(n.address.to_string(), sec.first("address").unwrap(), "{at}");
                        let flags = sec.get("flags").unwrap();
                        assert_eq!(flags.contains("resume=1"), n.bits.resume, "{at}");
                        assert_eq!(flags.contains("noEncrypt=1"), n.bits.no_encrypt, "{at}");
                        let mut out = [0u8; 94];
                        let len = d.emit(&mut out).unwrap();
                        assert_eq!(out[..len], bytes[..], "{at}: re-emission");
                    }
                    ("DATA", Datagram::Data(x)) => {
                        assert_eq!(x.header.tsn28, truncate28(sec.num("tsn")), "{at}");
                        assert_eq!(x.header.asn28, truncate28(sec.num("asn")), "{at}");
                        assert_eq!(u64::from(x.header.acklen), sec.num("acklen"), "{at}");
                        assert_eq!(x.header.finish, sec.num("finish") == 1, "{at}");
                        assert_eq!(x.mac()[..], sec.hex("mac").unwrap()[..], "{at}");
                        if let Some(c) = sec.hex("ciphertext") {
                            assert_eq!(x.ciphertext(), &c[..], "{at}");
                        }
                    }
                    ("NOSTATE", Datagram::Nostate { token }) => {
                        assert_eq!(token, &sec.hex("token").unwrap()[..], "{at}");
                        let of: usize = sec.num("token_of_datagram") as usize;
                        if let Some(orig) = by_n.get(&of).and_then(|s| s.hex("hex")) {
                            assert_eq!(tail_token(&orig), token, "{at}");
                        }
                    }
                    (t, d) => panic!("{at}: listed as {t}, parsed as {d:?}"),
                }
            }
            // Stream payloads (also for DATA datagrams whose `hex` was omitted).
            let lines: Vec<&str> = sec
                .fields
                .iter()
                .filter(|(k, _)| k == "segment")
                .map(|(_, v)| v.as_str())
                .collect();
            if let Some(payload) = sec.hex("payload") {
                payloads += 1;
                let parsed: Vec<Segment<'_>> = Segments::new(&payload)
                    .collect::<Result<_, _>>()
                    .unwrap_or_else(|e| panic!("{at}: payload rejected: {e}"));
                assert_eq!(parsed.len(), lines.len(), "{at}: segment count");
                for (s, line) in parsed.iter().zip(&lines) {
                    check_segment(s, line, &at);
                }
                segments += parsed.len();
                let mut buf = vec![0u8; payload.len()];
                let mut w = PayloadWriter::new(&mut buf);
                for s in &parsed {
                    w.push(s).unwrap();
                }
                assert_eq!(w.finish(), Ok(payload.len()), "{at}");
                assert_eq!(buf, payload, "{at}: payload re-encoding");
            }
        }
    }
    eprintln!("checked {datagrams} datagrams, {payloads} payloads, {segments} segments");
    assert!(datagrams > 100 && segments > 100);
}
