//! An append-only ledger: records framed as `varint length, payload, CRC-32`, replayed
//! into balances; a torn or corrupted tail is detected and the good prefix kept.

use crate::checksum::crc32;
use crate::codec::{get_varint, put_varint, unzigzag, zigzag, DecodeError};
use crate::sortedmap::SortedMap;

/// The account money is minted from: its balance is minus everything in circulation.
pub const MINT: u64 = 0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Open { account: u64 },
    Transfer { from: u64, to: u64, amount: i64 },
    Close { account: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerError {
    NoSuchAccount(u64),
    AlreadyOpen(u64),
    Insufficient { account: u64, balance: i64, amount: i64 },
    NotEmpty(u64),
    BadAmount(i64),
}

impl Record {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut p = Vec::new();
        match *self {
            Record::Open { account } => {
                p.push(1);
                put_varint(&mut p, account);
            }
            Record::Transfer { from, to, amount } => {
                p.push(2);
                put_varint(&mut p, from);
                put_varint(&mut p, to);
                put_varint(&mut p, zigzag(amount));
            }
            Record::Close { account } => {
                p.push(3);
                put_varint(&mut p, account);
            }
        }
        put_varint(out, p.len() as u64);
        out.extend_from_slice(&p);
        out.extend_from_slice(&crc32(&p).to_le_bytes());
    }

    fn decode_payload(p: &[u8]) -> Result<Record, DecodeError> {
        let (&tag, mut rest) = p.split_first().ok_or(DecodeError::Truncated)?;
        let mut next = || -> Result<u64, DecodeError> {
            let (v, n) = get_varint(rest)?;
            rest = &rest[n..];
            Ok(v)
        };
        match tag {
            1 => Ok(Record::Open { account: next()? }),
            2 => Ok(Record::Transfer { from: next()?, to: next()?, amount: unzigzag(next()?) }),
            3 => Ok(Record::Close { account: next()? }),
            t => Err(DecodeError::BadChar(t)),
        }
    }
}

/// Replay is what a log decodes to: the records of its good prefix, and why it stopped early.
#[derive(Debug)]
pub struct Replay {
    pub records: Vec<Record>,
    pub good_bytes: usize,
    pub damaged: Option<String>,
}

pub fn decode_log(mut buf: &[u8]) -> Replay {
    let total = buf.len();
    let mut records = Vec::new();
    while !buf.is_empty() {
        let at = total - buf.len();
        let stop = |why: String| Replay { records: Vec::new(), good_bytes: at, damaged: Some(why) };
        let (n, used) = match get_varint(buf) {
            Ok(x) => x,
            Err(e) => return Replay { records, ..stop(format!("length at {at}: {e}")) },
        };
        let n = n as usize;
        if buf.len() < used + n + 4 {
            return Replay { records, ..stop(format!("record at {at} is torn")) };
        }
        let p = &buf[used..used + n];
        let sum = u32::from_le_bytes(buf[used + n..used + n + 4].try_into().unwrap());
        if crc32(p) != sum {
            return Replay { records, ..stop(format!("record at {at}: checksum mismatch")) };
        }
        match Record::decode_payload(p) {
            Ok(r) => records.push(r),
            Err(e) => return Replay { records, ..stop(format!("record at {at}: {e}")) },
        }
        buf = &buf[used + n + 4..];
    }
    Replay { records, good_bytes: total, damaged: None }
}

#[derive(Debug, Default)]
pub struct Ledger {
    balances: SortedMap<u64, i64>,
    log: Vec<u8>,
}

impl Ledger {
    pub fn new() -> Ledger {
        let mut l = Ledger::default();
        l.balances.insert(MINT, 0);
        l
    }

    pub fn balance(&self, account: u64) -> Option<i64> {
        self.balances.get(&account).copied()
    }

    pub fn accounts(&self) -> usize {
        self.balances.len()
    }

    pub fn log(&self) -> &[u8] {
        &self.log
    }

    /// apply checks a record against the balances, then applies and logs it; a rejected
    /// record changes nothing.
    pub fn apply(&mut self, r: &Record) -> Result<(), LedgerError> {
        match *r {
            Record::Open { account } => {
                if self.balances.get(&account).is_some() {
                    return Err(LedgerError::AlreadyOpen(account));
                }
                self.balances.insert(account, 0);
            }
            Record::Transfer { from, to, amount } => {
                if amount <= 0 {
                    return Err(LedgerError::BadAmount(amount));
                }
                let fb = self.balance(from).ok_or(LedgerError::NoSuchAccount(from))?;
                self.balance(to).ok_or(LedgerError::NoSuchAccount(to))?;
                if from != MINT && fb < amount {
                    return Err(LedgerError::Insufficient { account: from, balance: fb, amount });
                }
                let nf = fb.checked_sub(amount).ok_or(LedgerError::BadAmount(amount))?;
                let tb = self.balance(to).unwrap();
                let nt = if from == to { nf + amount } else { tb.checked_add(amount).ok_or(LedgerError::BadAmount(amount))? };
                *self.balances.get_mut(&from).unwrap() = nf;
                *self.balances.get_mut(&to).unwrap() = nt;
            }
            Record::Close { account } => {
                match self.balance(account) {
                    None => return Err(LedgerError::NoSuchAccount(account)),
                    Some(b) if b != 0 || account == MINT => return Err(LedgerError::NotEmpty(account)),
                    Some(_) => {}
                }
                self.balances.remove(&account);
            }
        }
        r.encode(&mut self.log);
        Ok(())
    }

    /// total is the sum of every balance: always zero, money only moves.
    pub fn total(&self) -> i128 {
        let mut t = 0i128;
        self.balances.range(&0, &u64::MAX, &mut |_, b| t += *b as i128);
        t + self.balance(u64::MAX).unwrap_or(0) as i128
    }
}

pub fn replay(records: &[Record]) -> Result<Ledger, (usize, LedgerError)> {
    let mut l = Ledger::new();
    for (i, r) in records.iter().enumerate() {
        l.apply(r).map_err(|e| (i, e))?;
    }
    Ok(l)
}
