#![no_main]
//! See `protobase::fuzzing::root_json`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| protobase::fuzzing::root_json(data));
