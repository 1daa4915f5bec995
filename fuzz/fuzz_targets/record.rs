#![no_main]
//! See `protobase::fuzzing::record`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| protobase::fuzzing::record(data));
