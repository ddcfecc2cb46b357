//! CRC-32 (IEEE, reflected) with a slicing table, and Adler-32, each incremental.

const POLY: u32 = 0xEDB8_8320;

const fn make_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { POLY ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static TABLE: [u32; 256] = make_table();

/// Crc32 is an incremental CRC-32.
#[derive(Clone, Copy, Debug, Default)]
pub struct Crc32 {
    state: u32,
}

impl Crc32 {
    pub fn new() -> Crc32 {
        Crc32 { state: 0 }
    }

    pub fn update(&mut self, data: &[u8]) {
        let mut c = !self.state;
        for &b in data {
            c = TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
        }
        self.state = !c;
    }

    pub fn sum(&self) -> u32 {
        self.state
    }
}

pub fn crc32(data: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(data);
    c.sum()
}

/// crc32_bitwise is the definition, one bit at a time: the reference the table is checked against.
pub fn crc32_bitwise(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { POLY ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

const MOD_ADLER: u32 = 65_521;

/// Adler32 is an incremental Adler-32; it defers the modulo as zlib does.
#[derive(Clone, Copy, Debug)]
pub struct Adler32 {
    a: u32,
    b: u32,
}

impl Default for Adler32 {
    fn default() -> Self {
        Adler32 { a: 1, b: 0 }
    }
}

impl Adler32 {
    pub fn update(&mut self, data: &[u8]) {
        // 5552 is the largest n for which the sums cannot overflow u32 before the modulo.
        for chunk in data.chunks(5552) {
            for &x in chunk {
                self.a += x as u32;
                self.b += self.a;
            }
            self.a %= MOD_ADLER;
            self.b %= MOD_ADLER;
        }
    }

    pub fn sum(&self) -> u32 {
        (self.b << 16) | self.a
    }
}

pub fn adler32(data: &[u8]) -> u32 {
    let mut a = Adler32::default();
    a.update(data);
    a.sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn known_values() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b"The quick brown fox jumps over the lazy dog"), 0x414F_A339);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(b""), 1);
    }

    #[test]
    fn table_matches_the_definition() {
        let mut r = Rng::new(11);
        for _ in 0..3_000 {
            let n = r.below(300) as usize;
            let data = r.bytes(n);
            assert_eq!(crc32(&data), crc32_bitwise(&data));
        }
    }

    #[test]
    fn incremental_equals_one_shot() {
        let mut r = Rng::new(12);
        for _ in 0..2_000 {
            let n = r.below(2_000) as usize;
            let data = r.bytes(n);
            let (mut c, mut a) = (Crc32::new(), Adler32::default());
            let mut rest = &data[..];
            while !rest.is_empty() {
                let k = 1 + r.below(rest.len() as u64) as usize;
                c.update(&rest[..k]);
                a.update(&rest[..k]);
                rest = &rest[k..];
            }
            assert_eq!(c.sum(), crc32(&data));
            assert_eq!(a.sum(), adler32(&data));
        }
    }

    #[test]
    fn adler_does_not_overflow_on_long_runs_of_0xff() {
        let data = vec![0xFFu8; 1 << 20];
        let mut a = 1u64;
        let mut b = 0u64;
        for &x in &data {
            a = (a + x as u64) % MOD_ADLER as u64;
            b = (b + a) % MOD_ADLER as u64;
        }
        assert_eq!(adler32(&data), ((b << 16) | a) as u32);
    }

    #[test]
    fn a_flipped_bit_changes_the_crc() {
        let mut r = Rng::new(13);
        for _ in 0..500 {
            let n = 1 + r.below(256) as usize;
            let mut data = r.bytes(n);
            let before = crc32(&data);
            let i = r.below(n as u64) as usize;
            data[i] ^= 1 << r.below(8);
            assert_ne!(crc32(&data), before);
        }
    }
}
