#![no_main]
//! See `protobase::fuzzing::root_log`.
use std::sync::LazyLock;

static DIR: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::tempdir_in(protobase_fuzz::scratch()).expect("a space directory"));

libfuzzer_sys::fuzz_target!(|data: &[u8]| protobase::fuzzing::root_log(DIR.path(), data));
