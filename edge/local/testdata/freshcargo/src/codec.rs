//! Byte encodings a ledger's records use: LEB128 varints, zigzag for signed values,
//! base64 (standard alphabet, padded) and run-length encoding.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Truncated,
    Overflow,
    BadChar(u8),
    BadLength(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "input ends inside a value"),
            DecodeError::Overflow => write!(f, "value does not fit in 64 bits"),
            DecodeError::BadChar(c) => write!(f, "byte {c:#04x} is not in the alphabet"),
            DecodeError::BadLength(n) => write!(f, "length {n} is not a multiple of 4"),
        }
    }
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// get_varint decodes one varint and returns it with the bytes it used.
pub fn get_varint(buf: &[u8]) -> Result<(u64, usize), DecodeError> {
    let mut v = 0u64;
    for (i, &b) in buf.iter().enumerate() {
        if i == 9 && b > 1 {
            return Err(DecodeError::Overflow);
        }
        v |= ((b & 0x7F) as u64) << (7 * i);
        if b < 0x80 {
            return Ok((v, i + 1));
        }
        if i == 9 {
            return Err(DecodeError::Overflow);
        }
    }
    Err(DecodeError::Truncated)
}

pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub fn encode_varints(vs: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    for &v in vs {
        put_varint(&mut out, v);
    }
    out
}

pub fn decode_varints(mut buf: &[u8]) -> Result<Vec<u64>, DecodeError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (v, n) = get_varint(buf)?;
        out.push(v);
        buf = &buf[n..];
    }
    Ok(out)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let b = [chunk[0], if n > 1 { chunk[1] } else { 0 }, if n > 2 { chunk[2] } else { 0 }];
        let w = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= n {
                out.push(B64[(w >> (18 - 6 * i) & 0x3F) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_value(c: u8) -> Result<u32, DecodeError> {
    match c {
        b'A'..=b'Z' => Ok((c - b'A') as u32),
        b'a'..=b'z' => Ok((c - b'a' + 26) as u32),
        b'0'..=b'9' => Ok((c - b'0' + 52) as u32),
        b'+' => Ok(62),
        b'/' => Ok(63),
        _ => Err(DecodeError::BadChar(c)),
    }
}

pub fn base64_decode(s: &str) -> Result<Vec<u8>, DecodeError> {
    let s = s.as_bytes();
    if s.len() % 4 != 0 {
        return Err(DecodeError::BadLength(s.len()));
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (ci, chunk) in s.chunks(4).enumerate() {
        let last = ci == s.len() / 4 - 1;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err(DecodeError::BadChar(b'='));
        }
        let mut w = 0u32;
        for &c in &chunk[..4 - pad] {
            w = w << 6 | b64_value(c)?;
        }
        w <<= 6 * pad as u32;
        let bytes = [(w >> 16) as u8, (w >> 8) as u8, w as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Ok(out)
}

/// rle_encode writes (count, byte) pairs, count 1..=255.
pub fn rle_encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        let mut n = 1;
        while i + n < data.len() && data[i + n] == b && n < 255 {
            n += 1;
        }
        out.push(n as u8);
        out.push(b);
        i += n;
    }
    out
}

pub fn rle_decode(data: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if data.len() % 2 != 0 {
        return Err(DecodeError::Truncated);
    }
    let mut out = Vec::new();
    for pair in data.chunks(2) {
        out.extend(std::iter::repeat_n(pair[1], pair[0] as usize));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn varint_round_trips() {
        let mut r = Rng::new(21);
        for _ in 0..60_000 {
            let vs: Vec<u64> = (0..r.below(16)).map(|_| r.skewed()).collect();
            assert_eq!(decode_varints(&encode_varints(&vs)).unwrap(), vs);
        }
        assert_eq!(encode_varints(&[u64::MAX]).len(), 10);
    }

    #[test]
    fn varint_rejects_truncated_and_overlong() {
        let mut r = Rng::new(22);
        for _ in 0..20_000 {
            let v = r.skewed() | 0x80;
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(get_varint(&buf[..buf.len() - 1]), Err(DecodeError::Truncated));
        }
        assert_eq!(get_varint(&[0xFF; 10]), Err(DecodeError::Overflow));
        assert_eq!(get_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02]), Err(DecodeError::Overflow));
    }

    #[test]
    fn zigzag_round_trips_and_keeps_small_values_small() {
        let mut r = Rng::new(23);
        for _ in 0..200_000 {
            let v = r.next_u64() as i64 >> r.below(64);
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }

    #[test]
    fn base64_round_trips() {
        let mut r = Rng::new(24);
        for _ in 0..8_000 {
            let n = r.below(200) as usize;
            let data = r.bytes(n);
            let s = base64_encode(&data);
            assert_eq!(s.len() % 4, 0);
            assert_eq!(base64_decode(&s).unwrap(), data);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
    }

    #[test]
    fn base64_rejects_bad_input() {
        assert_eq!(base64_decode("Zm9"), Err(DecodeError::BadLength(3)));
        assert_eq!(base64_decode("Zm9*"), Err(DecodeError::BadChar(b'*')));
        assert_eq!(base64_decode("Zg==Zg=="), Err(DecodeError::BadChar(b'=')));
    }

    #[test]
    fn rle_round_trips_and_shrinks_runs() {
        let mut r = Rng::new(25);
        for _ in 0..1_500 {
            let mut data = Vec::new();
            for _ in 0..r.below(40) {
                let b = r.below(4) as u8;
                data.extend(std::iter::repeat_n(b, 1 + r.below(400) as usize));
            }
            let enc = rle_encode(&data);
            assert_eq!(rle_decode(&enc).unwrap(), data);
        }
        assert_eq!(rle_encode(&[7u8; 1000]).len(), 8);
        assert_eq!(rle_decode(&[1]), Err(DecodeError::Truncated));
    }
}
