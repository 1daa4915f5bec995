#![no_main]
//! See `protobase::fuzzing::pointer`; also the `protobase copy` location
//! parser of the CLI, compiled here from the binary's source.
#[allow(dead_code, unreachable_pub)]
#[path = "../../src/bin/protobase/address.rs"]
mod address;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    protobase::fuzzing::pointer(data);
    if let Ok(s) = std::str::from_utf8(data) {
        protobase::fuzzing::endpoint(s, address::parse(s).map(|e| e.to_string()));
    }
});
