//! Test helpers: an independent decoder of single segments (`spec/streams.md` §1.3).

/// A decoded segment (owned), as far as the stream tests need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Data {
        id: u16,
        offset: u32,
        eof: bool,
        bytes: Vec<u8>,
    },
    WriterResets {
        id: u16,
    },
    ReaderResets {
        seq: u8,
        id: u16,
    },
    ReaderBarrier {
        seq: u8,
        id: u16,
        barrier: u32,
    },
    Connect {
        seq: u8,
        service: u16,
    },
}

/// Decodes the segment at the start of `p` and returns it with its length;
/// checks that padding and reserved bits are zero.
pub(crate) fn parse_one(p: &[u8]) -> Option<(Seg, usize)> {
    let h = u32::from_be_bytes(p.get(..4)?.try_into().ok()?);
    let ty = h >> 28;
    let id = h as u16;
    let seq = ((h >> 24) & 0xF) as u8;
    match ty {
        0..=3 => {
            let len = ((h >> 16) & 0xFFF) as usize;
            let hdr = if ty & 2 != 0 { 8 } else { 4 };
            let need = hdr + ((len + 3) & !3);
            let body = p.get(hdr..need)?;
            assert!(body[len..].iter().all(|&b| b == 0), "padding is zero");
            let offset = if hdr == 8 {
                u32::from_be_bytes(p[4..8].try_into().ok()?)
            } else {
                0
            };
            assert!(hdr == 4 || offset != 0, "explicit offset only when != 0");
            let seg = Seg::Data {
                id,
                offset,
                eof: ty & 1 != 0,
                bytes: body[..len].to_vec(),
            };
            Some((seg, need))
        }
        4 => {
            assert_eq!(h & 0x0FFF_0000, 0);
            Some((Seg::WriterResets { id }, 4))
        }
        5 => {
            assert_eq!(h & 0x00FF_0000, 0);
            Some((Seg::ReaderResets { seq, id }, 4))
        }
        6 => {
            assert_eq!(h & 0x00FF_0000, 0);
            let barrier = u32::from_be_bytes(p.get(4..8)?.try_into().ok()?);
            Some((Seg::ReaderBarrier { seq, id, barrier }, 8))
        }
        7 => Some((Seg::Connect { seq, service: id }, 4)),
        _ => None,
    }
}
