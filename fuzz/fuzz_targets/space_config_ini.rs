#![no_main]
//! See `protobase::fuzzing::space_config_ini`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| protobase::fuzzing::space_config_ini(data));
