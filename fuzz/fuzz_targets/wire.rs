#![no_main]
//! See `protobase::fuzzing::wire`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| protobase::fuzzing::wire(data));
