#![no_main]
//! See `protobase::fuzzing::acceptor_log`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| protobase::fuzzing::acceptor_log(data));
