#![no_main]
//! See `protobase::fuzzing::page_check`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| protobase::fuzzing::page_check(data));
