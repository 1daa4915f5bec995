#![no_main]
//! See `protobase::fuzzing::wal_header`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| protobase::fuzzing::wal_header(data));
