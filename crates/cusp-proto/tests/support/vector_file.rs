//! Parser for the `cusp-vector-1` transcript format (tests/data/vectors/README.md).

use std::collections::BTreeMap;
use std::path::PathBuf;

/// One `[kind name]` section (or the header) as ordered `key: value` lines.
#[derive(Debug, Default, Clone)]
pub struct Section {
    /// The bracket line's text without brackets (empty for the header).
    pub title: String,
    entries: Vec<(String, String)>,
}

impl Section {
    /// The full value of the first line with `key`.
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first space-separated token of `key`'s value; panics with context if absent.
    pub fn get(&self, key: &str) -> &str {
        self.try_get(key)
            .unwrap_or_else(|| panic!("[{}] has no key `{key}`", self.title))
    }

    /// The first token of `key`'s value, if the key exists (an empty value gives "").
    pub fn try_get(&self, key: &str) -> Option<&str> {
        self.raw(key)
            .map(|v| v.split_whitespace().next().unwrap_or(""))
    }

    /// All values of a repeated key, in order.
    pub fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Hex bytes of `key`, `None` when the value is `omitted`.
    pub fn hex(&self, key: &str) -> Option<Vec<u8>> {
        let v = self.get(key);
        if v == "omitted" {
            return None;
        }
        Some(hex::decode(v).unwrap_or_else(|e| panic!("[{}] `{key}` is not hex: {e}", self.title)))
    }

    /// A decimal or `0x` hexadecimal integer.
    pub fn int(&self, key: &str) -> u64 {
        parse_int(self.get(key))
    }

    /// A fixed-size hex field.
    pub fn bytes<const N: usize>(&self, key: &str) -> [u8; N] {
        let v = self
            .hex(key)
            .unwrap_or_else(|| panic!("[{}] `{key}` omitted", self.title));
        v.try_into().unwrap_or_else(|v: Vec<u8>| {
            panic!("[{}] `{key}` has {} bytes, want {N}", self.title, v.len())
        })
    }
}

/// Parse `123` or `0x7b`.
pub fn parse_int(s: &str) -> u64 {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap_or_else(|e| panic!("bad hex int {s}: {e}")),
        None => s.parse().unwrap_or_else(|e| panic!("bad int {s}: {e}")),
    }
}

/// A whole transcript.
#[derive(Debug)]
pub struct VectorFile {
    /// File name without `.txt`.
    pub name: String,
    /// Header keys (`format`, `case`, ...).
    pub header: Section,
    /// `[peer NAME]` sections by name (`client`, `server`, `server#2`).
    pub peers: BTreeMap<String, Section>,
    /// `[session N]` sections by N.
    pub sessions: BTreeMap<u64, Section>,
    /// `[datagram N]` sections in capture order.
    pub datagrams: Vec<Section>,
}

impl VectorFile {
    /// Directory holding the copied vector files.
    pub fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors")
    }

    /// Names (without `.txt`) of every vector file, sorted.
    pub fn all_names() -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(Self::dir())
            .expect("vector dir")
            .filter_map(|e| {
                let n = e.ok()?.file_name().into_string().ok()?;
                n.strip_suffix(".txt").map(str::to_owned)
            })
            .collect();
        v.sort();
        v
    }

    /// Load and parse `tests/data/vectors/NAME.txt`.
    pub fn load(name: &str) -> Self {
        let path = Self::dir().join(format!("{name}.txt"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self::parse(name, &text)
    }

    /// Parse transcript text.
    pub fn parse(name: &str, text: &str) -> Self {
        let mut sections = vec![Section::default()];
        for line in text.lines() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(t) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                sections.push(Section {
                    title: t.to_owned(),
                    entries: Vec::new(),
                });
                continue;
            }
            let (k, v) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("{name}: bad line {line:?}"));
            let cur = sections.last_mut().expect("non-empty");
            cur.entries.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        let mut it = sections.into_iter();
        let header = it.next().expect("header");
        assert_eq!(header.get("format"), "cusp-vector-1", "{name}: format");
        let mut file = VectorFile {
            name: name.to_owned(),
            header,
            peers: BTreeMap::new(),
            sessions: BTreeMap::new(),
            datagrams: Vec::new(),
        };
        for s in it {
            let (kind, arg) = s.title.split_once(' ').unwrap_or((&s.title, ""));
            match kind {
                "peer" => {
                    file.peers.insert(arg.to_owned(), s);
                }
                "session" => {
                    file.sessions.insert(parse_int(arg), s);
                }
                "datagram" => {
                    assert_eq!(
                        parse_int(arg) as usize,
                        file.datagrams.len() + 1,
                        "{name}: datagram order"
                    );
                    file.datagrams.push(s);
                }
                other => panic!("{name}: unknown section kind {other:?}"),
            }
        }
        let declared = file.header.int("datagrams") as usize;
        assert_eq!(declared, file.datagrams.len(), "{name}: datagram count");
        file
    }
}

/// `dir: a->b` split into (sender, receiver).
pub fn direction(d: &Section) -> (&str, &str) {
    d.get("dir").split_once("->").expect("dir a->b")
}

/// A parsed `segment:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentLine {
    /// `CONNECT seq=S service=N`
    Connect { seq: u8, service: u16 },
    /// `DATA id=I eof=E offset_field=F offset=O len=L bytes=HEX|omitted`
    Data {
        id: u16,
        eof: bool,
        offset_field: bool,
        offset: u32,
        len: usize,
        bytes: Option<Vec<u8>>,
    },
    /// `WRITER_RESETS id=I`
    WriterResets { id: u16 },
    /// `READER_RESETS seq=S id=I`
    ReaderResets { seq: u8, id: u16 },
    /// `READER_BARRIER seq=S id=I barrier=B`
    ReaderBarrier { seq: u8, id: u16, barrier: u32 },
}

impl SegmentLine {
    /// The line form of a parsed segment, DATA bytes included.
    pub fn from_segment(s: &cusp_proto::wire::Segment<'_>) -> Self {
        use cusp_proto::wire::Segment;
        match *s {
            Segment::Data {
                id,
                offset,
                eof,
                explicit_offset,
                bytes,
            } => SegmentLine::Data {
                id,
                eof,
                offset_field: explicit_offset,
                offset,
                len: bytes.len(),
                bytes: Some(bytes.to_vec()),
            },
            Segment::WriterResets { id } => SegmentLine::WriterResets { id },
            Segment::ReaderResets { seq, id } => SegmentLine::ReaderResets { seq, id },
            Segment::ReaderBarrier { seq, id, barrier } => {
                SegmentLine::ReaderBarrier { seq, id, barrier }
            }
            Segment::Connect { seq, service } => SegmentLine::Connect { seq, service },
        }
    }

    /// Parse one `segment:` value.
    pub fn parse(s: &str) -> Self {
        let mut words = s.split_whitespace();
        let kind = words.next().expect("segment kind");
        let kv: BTreeMap<&str, &str> = words.filter_map(|w| w.split_once('=')).collect();
        let n = |k: &str| {
            parse_int(
                kv.get(k)
                    .unwrap_or_else(|| panic!("segment {s:?} lacks {k}")),
            )
        };
        match kind {
            "CONNECT" => SegmentLine::Connect {
                seq: n("seq") as u8,
                service: n("service") as u16,
            },
            "DATA" => SegmentLine::Data {
                id: n("id") as u16,
                eof: n("eof") == 1,
                offset_field: n("offset_field") == 1,
                offset: n("offset") as u32,
                len: n("len") as usize,
                bytes: match kv.get("bytes") {
                    Some(&"omitted") => None,
                    Some(h) => Some(hex::decode(h).expect("segment bytes hex")),
                    None if n("len") == 0 => Some(Vec::new()),
                    None => panic!("segment {s:?} lacks bytes"),
                },
            },
            "WRITER_RESETS" => SegmentLine::WriterResets { id: n("id") as u16 },
            "READER_RESETS" => SegmentLine::ReaderResets {
                seq: n("seq") as u8,
                id: n("id") as u16,
            },
            "READER_BARRIER" => SegmentLine::ReaderBarrier {
                seq: n("seq") as u8,
                id: n("id") as u16,
                barrier: n("barrier") as u32,
            },
            other => panic!("unknown segment kind {other}"),
        }
    }
}

/// One stream as the transcript's client sent it: service, bytes, end, reset.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StreamSeen {
    /// Service of the CONNECT that created it.
    pub service: u16,
    /// Stream bytes (cleared after a writer reset: unread data is discarded).
    pub bytes: Vec<u8>,
    /// The EOF was sent (and no reset).
    pub finished: bool,
    /// The writer reset it.
    pub reset: bool,
}

/// What the transcript says the client sent, per stream id (ids restart after a wipe, so
/// each CONNECT starts a new incarnation; the list keeps them in order).
pub fn expected_client_streams(file: &VectorFile) -> Vec<(u16, StreamSeen)> {
    let mut exp: Vec<(u16, StreamSeen)> = Vec::new();
    let mut current: BTreeMap<u16, usize> = BTreeMap::new();
    for d in &file.datagrams {
        // The first DATA to a restarted server (V5) reaches no stream state: it is answered
        // by NOSTATE, not delivered.
        let restarted = d
            .all("note")
            .any(|n| n.contains("server process restarted"));
        if d.get("type") != "DATA" || direction(d).0 != "client" || restarted {
            continue;
        }
        let mut connect = None;
        for line in d.all("segment") {
            match SegmentLine::parse(line) {
                SegmentLine::Connect { service, .. } => connect = Some(service),
                SegmentLine::Data {
                    id,
                    eof,
                    offset,
                    bytes,
                    ..
                } => {
                    if let Some(service) = connect.take() {
                        // A CONNECT repeats on every segment until acknowledged (explicit
                        // offsets); a new incarnation of the id starts at offset 0 after the
                        // previous one ended, or after a wipe (V5).
                        let same = current.get(&id).is_some_and(|&i| {
                            let s = &exp[i].1;
                            s.service == service && (offset > 0 || !(s.finished || s.reset))
                        });
                        if !same {
                            current.insert(id, exp.len());
                            exp.push((
                                id,
                                StreamSeen {
                                    service,
                                    ..StreamSeen::default()
                                },
                            ));
                        }
                    }
                    let s = &mut exp[current[&id]].1;
                    let b = bytes.expect("bytes recorded");
                    let end = offset as usize + b.len();
                    if s.bytes.len() < end {
                        s.bytes.resize(end, 0);
                    }
                    s.bytes[offset as usize..end].copy_from_slice(&b);
                    s.finished |= eof;
                }
                SegmentLine::WriterResets { id } => exp[current[&id]].1.reset = true,
                other => panic!("client sent a reader segment {other:?}"),
            }
        }
    }
    for (_, s) in &mut exp {
        if s.reset {
            s.finished = false;
            s.bytes.clear();
        }
    }
    exp
}
