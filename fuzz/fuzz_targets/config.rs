#![no_main]
//! See `protobase::fuzzing::config`.
use std::sync::LazyLock;

static BASE: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::tempdir_in(protobase_fuzz::scratch()).expect("a base directory"));

libfuzzer_sys::fuzz_target!(|data: &[u8]| protobase::fuzzing::config(BASE.path(), data));
