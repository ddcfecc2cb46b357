//! Property tests of the ledger as a whole: random workloads from a fixed seed.

use ledgerkit::ledger::{decode_log, replay, Ledger, LedgerError, Record, MINT};
use ledgerkit::rng::Rng;

fn workload(r: &mut Rng, n: usize) -> (Ledger, Vec<Record>, usize) {
    let mut l = Ledger::new();
    let mut applied = Vec::new();
    let mut rejected = 0;
    let mut next_account = 1u64;
    for _ in 0..n {
        let pick = |r: &mut Rng, next: u64| r.below(next + 2);
        let rec = match r.below(10) {
            0 => {
                next_account += 1;
                Record::Open { account: next_account - 1 }
            }
            1 => Record::Close { account: pick(r, next_account) },
            2 => Record::Transfer { from: MINT, to: pick(r, next_account), amount: r.range(-5, 10_000) },
            _ => Record::Transfer { from: pick(r, next_account), to: pick(r, next_account), amount: r.range(-5, 3_000) },
        };
        let before = l.log().len();
        match l.apply(&rec) {
            Ok(()) => applied.push(rec),
            Err(_) => {
                assert_eq!(l.log().len(), before, "a rejected record was logged");
                rejected += 1;
            }
        }
        assert_eq!(l.total(), 0, "money appeared or vanished");
    }
    (l, applied, rejected)
}

#[test]
fn money_is_conserved_and_the_log_replays_to_the_same_state() {
    let mut r = Rng::new(51);
    for _ in 0..40 {
        let (l, applied, rejected) = workload(&mut r, 1_500);
        assert!(rejected > 0 && !applied.is_empty());
        let back = decode_log(l.log());
        assert_eq!(back.damaged, None);
        assert_eq!(back.records, applied);
        let l2 = replay(&back.records).expect("a logged record was rejected on replay");
        assert_eq!(l2.accounts(), l.accounts());
        for a in 0..200 {
            assert_eq!(l2.balance(a), l.balance(a));
        }
    }
}

#[test]
fn a_torn_tail_keeps_the_good_prefix() {
    let mut r = Rng::new(52);
    let (l, applied, _) = workload(&mut r, 400);
    let log = l.log();
    let mut last = 0;
    for cut in 0..=log.len() {
        let back = decode_log(&log[..cut]);
        assert!(back.records.len() >= last, "a longer prefix decoded to fewer records");
        last = back.records.len();
        assert_eq!(back.records[..], applied[..back.records.len()]);
        assert_eq!(back.damaged.is_none(), back.good_bytes == cut);
        replay(&back.records).unwrap();
    }
    assert_eq!(last, applied.len());
}

#[test]
fn corruption_is_detected_not_replayed() {
    let mut r = Rng::new(53);
    let (l, applied, _) = workload(&mut r, 300);
    for _ in 0..3_000 {
        let mut log = l.log().to_vec();
        let i = r.below(log.len() as u64) as usize;
        log[i] ^= 1 + r.below(255) as u8;
        let back = decode_log(&log);
        assert!(back.damaged.is_some() || back.records != applied, "a flipped byte went unnoticed");
        assert_eq!(back.records[..], applied[..back.records.len()]);
        assert!(back.good_bytes <= i + 1 || back.records.len() < applied.len());
    }
}

#[test]
fn rejections_name_the_cause() {
    let mut l = Ledger::new();
    assert_eq!(l.apply(&Record::Transfer { from: 1, to: MINT, amount: 5 }), Err(LedgerError::NoSuchAccount(1)));
    l.apply(&Record::Open { account: 1 }).unwrap();
    assert_eq!(l.apply(&Record::Open { account: 1 }), Err(LedgerError::AlreadyOpen(1)));
    assert_eq!(l.apply(&Record::Transfer { from: MINT, to: 1, amount: 0 }), Err(LedgerError::BadAmount(0)));
    l.apply(&Record::Transfer { from: MINT, to: 1, amount: 50 }).unwrap();
    assert_eq!(
        l.apply(&Record::Transfer { from: 1, to: MINT, amount: 51 }),
        Err(LedgerError::Insufficient { account: 1, balance: 50, amount: 51 })
    );
    assert_eq!(l.apply(&Record::Close { account: 1 }), Err(LedgerError::NotEmpty(1)));
    l.apply(&Record::Transfer { from: 1, to: MINT, amount: 50 }).unwrap();
    l.apply(&Record::Close { account: 1 }).unwrap();
    assert_eq!(l.balance(1), None);
    assert_eq!(l.total(), 0);
}
