#![no_main]
//! See `protobase::fuzzing::cloud_roots`.
use std::sync::LazyLock;

static STAGING: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::tempdir_in(protobase_fuzz::scratch()).expect("a staging directory"));

libfuzzer_sys::fuzz_target!(|data: &[u8]| protobase::fuzzing::cloud_roots(STAGING.path(), data));
