#![no_main]
//! See `protobase::fuzzing::cache_dir`.
use std::sync::LazyLock;

static DIR: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::tempdir_in(protobase_fuzz::scratch()).expect("a cache directory"));

libfuzzer_sys::fuzz_target!(|data: &[u8]| protobase::fuzzing::cache_dir(DIR.path(), data));
