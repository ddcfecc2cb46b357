//! ledgerkit: small, dependency-free building blocks for an append-only ledger.
//!
//! Written for flare-dispatch's fresh-sandbox benchmark (edge/local/bench_fresh_test.go):
//! real code under test, several modules, and a suite whose warm run takes seconds,
//! most of it property-style tests driven by the deterministic generator in [`rng`].
//!
//! ```
//! use ledgerkit::{codec, checksum};
//! let bytes = codec::encode_varints(&[1, 300, u64::MAX]);
//! assert_eq!(codec::decode_varints(&bytes).unwrap(), vec![1, 300, u64::MAX]);
//! assert_eq!(checksum::crc32(b"123456789"), 0xCBF4_3926);
//! ```

pub mod checksum;
pub mod codec;
pub mod expr;
pub mod ledger;
pub mod rng;
pub mod sortedmap;
