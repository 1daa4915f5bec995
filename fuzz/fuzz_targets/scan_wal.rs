#![no_main]
//! See `protobase::fuzzing::scan_wal`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| protobase::fuzzing::scan_wal(data));
