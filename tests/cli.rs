//! The `protobase` command line, driven as scripts drive it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_protobase"))
}

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn protobase");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn ok(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let out = run(args, stdin);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn json_lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn pointer(v: &serde_json::Value) -> String {
    format!(
        "{}:{}",
        v["transaction_id"].as_str().unwrap(),
        v["offset"].as_u64().unwrap()
    )
}

fn space() -> (tempfile::TempDir, String) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("space").to_str().unwrap().to_string();
    (t, d)
}

#[test]
fn put_then_get_round_trips_raw_bytes() {
    let (_t, dir) = space();
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let out = json_lines(&ok(&["put", &dir], &data));
    assert_eq!(out.len(), 1);
    let got = ok(&["get", &dir, &pointer(&out[0])], b"");
    assert_eq!(got, data);
}

#[test]
fn json_and_msgpack_records_decode_with_json_flag() {
    let (_t, dir) = space();
    let doc = br#"{"name":"\u00f1and\u00fa","n":[1,2,{"x":null}]}"#;
    for format in ["json", "msgpack"] {
        let out = json_lines(&ok(&["put", &dir, "--format", format], doc));
        let got = json_lines(&ok(&["get", &dir, &pointer(&out[0]), "--json"], b""));
        assert_eq!(
            got[0],
            serde_json::from_slice::<serde_json::Value>(doc).unwrap()
        );
    }
    // Raw records have no JSON form.
    let out = json_lines(&ok(&["put", &dir], b"plain"));
    let r = run(&["get", &dir, &pointer(&out[0]), "--json"], b"");
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("format"));
}

#[test]
fn invalid_json_is_refused() {
    let (_t, dir) = space();
    let r = run(&["put", &dir, "--format", "json"], b"{not json");
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("not JSON"));
    assert!(r.stdout.is_empty());
    let r = run(&["put", &dir], b"");
    assert_eq!(r.status.code(), Some(1), "empty stdin is empty data");
}

#[test]
fn root_exit_codes_and_root_publishing() {
    let (_t, dir) = space();
    std::fs::create_dir_all(&dir).unwrap();
    assert_eq!(run(&["root", &dir], b"").status.code(), Some(3));
    let out = json_lines(&ok(&["put", &dir, "--root"], b"first"));
    let root = json_lines(&ok(&["root", &dir], b""));
    assert_eq!(pointer(&root[0]), pointer(&out[0]));
    assert_eq!(root[0]["sequence"], 1);
}

#[test]
fn lines_mode_pushes_one_record_per_line_and_publishes_each() {
    let (_t, dir) = space();
    let input = b"{\"i\":1}\n{\"i\":2}\r\n{\"i\":3}\n";
    let out = json_lines(&ok(
        &["put", &dir, "--lines", "--root", "--format", "json"],
        input,
    ));
    assert_eq!(out.len(), 3);
    for (i, p) in out.iter().enumerate() {
        let v = json_lines(&ok(&["get", &dir, &pointer(p), "--json"], b""));
        assert_eq!(v[0]["i"], i as u64 + 1);
    }
    let root = json_lines(&ok(&["root", &dir], b""));
    assert_eq!(pointer(&root[0]), pointer(&out[2]));
    assert_eq!(root[0]["sequence"], 3);
    // An empty line in the middle is an error naming the line.
    let r = run(&["put", &dir, "--lines"], b"a\n\nb\n");
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("line 2"));
    assert_eq!(
        json_lines(&r.stdout).len(),
        1,
        "line 1 was pushed and reported"
    );
}

#[test]
fn bad_pointers_and_usage_fail_cleanly() {
    let (_t, dir) = space();
    ok(&["put", &dir], b"x");
    for bad in [
        "nonsense",
        "8ee74877-149a-46a7-a291-f4a7a50ff71d:notanumber",
    ] {
        let r = run(&["get", &dir, bad], b"");
        assert_eq!(r.status.code(), Some(1), "{bad}");
        assert!(String::from_utf8_lossy(&r.stderr).contains("pointer"));
    }
    let r = run(
        &["get", &dir, "8ee74877-149a-46a7-a291-f4a7a50ff71d:40"],
        b"",
    );
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("not found"));
    assert_eq!(run(&["frobnicate"], b"").status.code(), Some(2));
    assert_eq!(run(&["root"], b"").status.code(), Some(2));
    let r = run(&["root", "/nonexistent/space"], b"");
    assert_eq!(r.status.code(), Some(1));
}

fn only_wal(dir: &str) -> std::path::PathBuf {
    let mut wals: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() == 36)
        })
        .collect();
    assert_eq!(wals.len(), 1);
    wals.pop().unwrap()
}

#[test]
fn inspect_counts_and_verify_detects_corruption_and_torn_tails() {
    let (_t, dir) = space();
    let out = json_lines(&ok(
        &["put", &dir, "--lines", "--root"],
        b"one\ntwo\nthree\n",
    ));
    let inspect = String::from_utf8(ok(&["inspect", &dir], b"")).unwrap();
    assert!(inspect.contains("1 WALs"), "{inspect}");
    let line = inspect
        .lines()
        .find(|l| l.starts_with(out[0]["transaction_id"].as_str().unwrap()))
        .unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[2], "3", "{line}");
    assert_eq!(cols[3], "native");
    assert_eq!(run(&["verify", &dir], b"").status.code(), Some(0));

    // Flip a payload byte of the middle record: corruption.
    let wal = only_wal(&dir);
    let mut bytes = std::fs::read(&wal).unwrap();
    let mid = out[1]["offset"].as_u64().unwrap() as usize + 9;
    bytes[mid] ^= 0xff;
    std::fs::write(&wal, &bytes).unwrap();
    let r = run(&["verify", &dir], b"");
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stdout).contains("CORRUPT"));
    bytes[mid] ^= 0xff;

    // Cut the last record short (behind it: the 13-byte close mark the
    // last writer left): a torn tail, and the root now points at it.
    bytes.truncate(bytes.len() - 13 - 2);
    std::fs::write(&wal, &bytes).unwrap();
    let r = run(&["verify", &dir], b"");
    let stdout = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(stdout.contains("torn tail"), "{stdout}");
    assert!(stdout.contains("ROOT"), "{stdout}");
    assert_eq!(r.status.code(), Some(1), "the root is unreadable");
}

/// Every `protobase put` is a process run: they continue one WAL instead
/// of leaving a WAL file each (issue 15), and a torn tail one of them left
/// is cut by the next.
#[test]
fn put_runs_continue_one_wal_and_cut_a_torn_tail() {
    let (_t, dir) = space();
    let mut puts = Vec::new();
    for i in 0..6u32 {
        let data = format!("record {i}");
        let args: &[&str] = if i % 2 == 0 {
            &["put", &dir, "--root"]
        } else {
            &["put", &dir]
        };
        let out = json_lines(&ok(args, data.as_bytes()));
        puts.push((pointer(&out[0]), data));
    }
    let wal = only_wal(&dir);
    // A crash's torn tail: half a record's worth of garbage.
    let mut f = std::fs::OpenOptions::new().append(true).open(&wal).unwrap();
    f.write_all(&[0x17; 11]).unwrap();
    drop(f);
    assert_eq!(
        run(&["verify", &dir, "--strict"], b"").status.code(),
        Some(1)
    );
    let out = json_lines(&ok(&["put", &dir, "--root"], b"after the tail"));
    puts.push((pointer(&out[0]), "after the tail".into()));
    assert_eq!(only_wal(&dir), wal);
    assert_eq!(
        run(&["verify", &dir, "--strict"], b"").status.code(),
        Some(0)
    );
    for (ptr, data) in &puts {
        assert_eq!(ok(&["get", &dir, ptr], b""), data.as_bytes());
    }
}

#[test]
fn verify_tolerates_a_torn_tail_unless_strict() {
    let (_t, dir) = space();
    let out = json_lines(&ok(&["put", &dir, "--root"], b"kept"));
    let tail = json_lines(&ok(&["put", &dir], b"unacknowledged tail"));
    let wal = Path::new(&dir).join(tail[0]["transaction_id"].as_str().unwrap());
    let len = std::fs::metadata(&wal).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
    f.set_len(len - 3).unwrap();
    assert_eq!(run(&["verify", &dir], b"").status.code(), Some(0));
    assert_eq!(
        run(&["verify", &dir, "--strict"], b"").status.code(),
        Some(1)
    );
    assert_eq!(ok(&["get", &dir, &pointer(&out[0])], b""), b"kept");
}

#[test]
fn reads_the_reference_space() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/python-space/space");
    let dir = dir.to_str().unwrap();
    let root = json_lines(&ok(&["root", dir], b""));
    assert_eq!(
        pointer(&root[0]),
        "8ee74877-149a-46a7-a291-f4a7a50ff71d:1292470"
    );
    let atom = json_lines(&ok(&["get", dir, &pointer(&root[0]), "--json"], b""));
    assert_eq!(atom[0]["name"], "atom-895222");
    assert_eq!(atom[0]["text"], "ñandú €");
    let r = run(&["verify", dir], b"");
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );
    let inspect = String::from_utf8(ok(&["inspect", dir], b"")).unwrap();
    assert!(
        inspect.contains("reference") && inspect.contains("empty"),
        "{inspect}"
    );
}

#[test]
fn certs_writes_a_ca_and_node_certificates_that_load_as_tls_settings() {
    use protobase::cluster::TlsFiles;
    use protobase::transports::{TlsConfig, Trust};

    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("certs");
    let out_str = out_dir.to_str().unwrap();
    let lines = json_lines(&ok(&["certs", "--out", out_str, "node-a", "node-b"], b""));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["files"].as_array().unwrap().len(), 6);
    assert_eq!(lines[0]["transport"], "quic");
    for id in ["node-a", "node-b"] {
        // Each node's `tls` section is a ClusterConfig::tls value.
        let files: TlsFiles = serde_json::from_value(lines[0]["tls"][id].clone()).unwrap();
        let trust = Trust::ca_from_pem_file(files.ca.as_ref().unwrap()).unwrap();
        let tls = TlsConfig::from_pem_files(&files.cert, &files.key, trust).unwrap();
        tls.check_identity(id).unwrap();
        assert!(tls.check_identity("someone-else").is_err());
    }

    // No ids, or an id that cannot be a certificate name: usage error or
    // failure, nothing half-written for the bad name.
    assert!(!run(&["certs", "--out", out_str], b"").status.success());
    let bad = run(
        &[
            "certs",
            "--out",
            dir.path().join("bad").to_str().unwrap(),
            "not a name",
        ],
        b"",
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not a name"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(!dir.path().join("bad").exists());
}

/// `put DIR --root` into a directory that belongs to a cluster node (it
/// holds the node's acceptor state) or that is a cloud provider's staging
/// area is refused with a clear error: publishing there would bypass the
/// cluster's vote. Reading stays possible.
#[test]
fn put_refuses_a_cluster_nodes_directory_and_a_staging_area() {
    let (_t, dir) = space();
    ok(&["put", &dir, "--root"], b"standalone first");
    std::fs::write(Path::new(&dir).join("cluster_acceptor"), b"{}").unwrap();
    let out = run(&["put", &dir, "--root"], b"sneaked in");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("belongs to a cluster node"), "{err}");
    // Read-only commands still work on it.
    ok(&["root", &dir], b"");

    let (_t2, staging) = space();
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(Path::new(&staging).join("staging.lock"), b"").unwrap();
    let out = run(&["put", &staging, "--root"], b"into staging");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("staging directory"), "{err}");
}

// ---------------------------------------------------------------------------
// Issue 12: operator tools that never lie.
// ---------------------------------------------------------------------------

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `verify` (and the other readers) on an empty, mistyped or missing
/// directory is an error naming the address, not "0 problems".
#[test]
fn verify_refuses_empty_mistyped_and_missing_spaces() {
    let (t, dir) = space();
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let empty = empty.to_str().unwrap();
    let r = run(&["verify", empty], b"");
    assert_eq!(r.status.code(), Some(1), "{}", stdout_of(&r));
    assert!(
        stderr_of(&r).contains("holds no space"),
        "{}",
        stderr_of(&r)
    );
    assert!(!stdout_of(&r).contains("0 problems"));
    let missing = t.path().join("mistyped");
    let r = run(&["verify", missing.to_str().unwrap()], b"");
    assert_eq!(r.status.code(), Some(1));
    let err = stderr_of(&r);
    assert!(
        err.contains("mistyped") && err.contains("no such directory"),
        "{err}"
    );
    let file = t.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let r = run(&["inspect", file.to_str().unwrap()], b"");
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr_of(&r).contains("not a directory"));
    // An existing empty directory has no root: exit 3 as before.
    assert_eq!(run(&["root", empty], b"").status.code(), Some(3));
    // A real space is fine.
    ok(&["put", &dir, "--root"], b"x");
    assert_eq!(run(&["verify", &dir], b"").status.code(), Some(0));
}

/// `put --format msgpack|json` accepts exactly one value whose numbers
/// round-trip; `get --json` keeps every digit.
#[test]
fn put_validates_at_the_door_and_get_keeps_integer_precision() {
    let (_t, dir) = space();
    for (format, input, says) in [
        ("msgpack", &b"hello world"[..], "trailing bytes"),
        ("msgpack", b"{\"a\":1}garbage", "trailing bytes"),
        ("json", b"{\"a\":1}garbage", "not JSON"),
        ("json", b"1e400", "overflows"),
        (
            "json",
            b"12345678901234567890123",
            "does not fit in 64 bits",
        ),
        (
            "msgpack",
            b"12345678901234567890123",
            "does not fit in 64 bits",
        ),
        ("json", b"[1e-400]", "underflows"),
    ] {
        let r = run(&["put", &dir, "--format", format], input);
        assert_eq!(r.status.code(), Some(1), "{format} {input:?}");
        assert!(stderr_of(&r).contains(says), "{format}: {}", stderr_of(&r));
        assert!(r.stdout.is_empty());
    }
    // Nothing was stored by the refusals.
    assert!(!Path::new(&dir).join("space_root").exists());
    for format in ["json", "msgpack"] {
        let doc = br#"{"big": 9007199254740993, "max": 18446744073709551615, "neg": -9223372036854775808, "f": 0.1}"#;
        let out = json_lines(&ok(&["put", &dir, "--format", format], doc));
        let got = ok(&["get", &dir, &pointer(&out[0]), "--json"], b"");
        let text = String::from_utf8(got).unwrap();
        for digits in [
            "9007199254740993",
            "18446744073709551615",
            "-9223372036854775808",
            "0.1",
        ] {
            assert!(text.contains(digits), "{format}: {text}");
        }
    }
    // A JSON record another writer stored with a big integer prints exactly.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ptr = rt.block_on(async {
        let s = protobase::Storage::open(&dir).await.unwrap();
        let p = s
            .push_record(
                protobase::Format::Json,
                b"{ \"n\" : 12345678901234567890123 }",
            )
            .await
            .unwrap();
        s.close().await.unwrap();
        p
    });
    let got = ok(&["get", &dir, &ptr.to_string(), "--json"], b"");
    assert_eq!(got, b"{\"n\":12345678901234567890123}\n");
    // MessagePack with a NaN has no JSON form: an error, not `null`.
    let nan = rmp_serde::to_vec(&f64::NAN).unwrap();
    let ptr = rt.block_on(async {
        let s = protobase::Storage::open(&dir).await.unwrap();
        let p = s
            .push_record(protobase::Format::MessagePack, &nan)
            .await
            .unwrap();
        s.close().await.unwrap();
        p
    });
    let r = run(&["get", &dir, &ptr.to_string(), "--json"], b"");
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr_of(&r).contains("no JSON form"), "{}", stderr_of(&r));
}

/// A native WAL whose header is zeroed is corruption: `get` refuses the
/// tampered record instead of reading it without its CRC.
#[test]
fn a_zeroed_native_header_is_corruption_not_a_reference_wal() {
    let (_t, dir) = space();
    let out = json_lines(&ok(
        &["put", &dir, "--format", "json", "--root"],
        br#"{"amount": 100}"#,
    ));
    let wal = only_wal(&dir);
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[..32].fill(0);
    // Tamper with the payload too: a reference reading would return it.
    let at = out[0]["offset"].as_u64().unwrap() as usize + 9 + 11;
    assert_eq!(bytes[at], b'1');
    bytes[at] = b'9';
    std::fs::write(&wal, &bytes).unwrap();
    let r = run(&["get", &dir, &pointer(&out[0]), "--json"], b"");
    assert_eq!(r.status.code(), Some(1), "{}", stdout_of(&r));
    assert!(r.stdout.is_empty());
    assert!(
        stderr_of(&r).contains("damaged WAL header"),
        "{}",
        stderr_of(&r)
    );
    let r = run(&["verify", &dir], b"");
    assert_eq!(r.status.code(), Some(1));
    assert!(stdout_of(&r).contains("CORRUPT"), "{}", stdout_of(&r));
    let inspect = stdout_of(&run(&["inspect", &dir], b""));
    assert!(inspect.contains("damaged"), "{inspect}");
}

/// `get` takes the pointer `put` prints (JSON) and the line `root` prints.
#[test]
fn get_accepts_the_json_pointer_put_prints() {
    let (_t, dir) = space();
    let printed = ok(&["put", &dir, "--root"], b"payload");
    let line = String::from_utf8(printed).unwrap();
    assert_eq!(ok(&["get", &dir, line.trim()], b""), b"payload");
    let root = String::from_utf8(ok(&["root", &dir], b"")).unwrap();
    assert_eq!(ok(&["get", &dir, root.trim()], b""), b"payload");
    let r = run(&["get", &dir, "{\"transaction_id\": 5}"], b"");
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr_of(&r).contains("pointer"));
}

/// Output into a closed pipe ends the command quietly (no panic, exit 0).
#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    let (_t, dir) = space();
    ok(&["put", &dir, "--lines", "--root"], b"a\nb\nc\n");
    for args in [
        vec!["inspect", &dir],
        vec!["verify", &dir],
        vec!["root", &dir],
    ] {
        let mut child = bin()
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end before the command writes anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = stderr_of(&out);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

/// Every subcommand's `--help` lists its exit codes.
#[test]
fn every_subcommand_help_lists_exit_codes() {
    for cmd in [
        "root",
        "get",
        "put",
        "inspect",
        "verify",
        "certs",
        "bench",
        "node",
        "status",
        "copy",
        "gc",
        "history",
        "checkpoint",
        "prune",
    ] {
        let help = stdout_of(&run(&[cmd, "--help"], b""));
        assert!(help.contains("Exit codes:"), "{cmd}: {help}");
    }
    let top = stdout_of(&run(&["--help"], b""));
    assert!(top.contains("s3://") && top.contains("Exit codes"), "{top}");
}

/// `put --root --if-root` publishes only over the expected root (exit 5
/// otherwise, nothing published).
#[test]
fn put_if_root_is_a_compare_and_swap() {
    let (_t, dir) = space();
    let first = json_lines(&ok(&["put", &dir, "--root", "--if-root", "none"], b"one"));
    let r = run(&["put", &dir, "--root", "--if-root", "none"], b"two");
    assert_eq!(r.status.code(), Some(5), "{}", stderr_of(&r));
    let root_line = String::from_utf8(ok(&["root", &dir], b"")).unwrap();
    assert_eq!(
        pointer(&json_lines(root_line.as_bytes())[0]),
        pointer(&first[0])
    );
    // The line `root` printed is the expectation of the next update.
    let second = json_lines(&ok(
        &["put", &dir, "--root", "--if-root", root_line.trim()],
        b"two",
    ));
    let r = run(
        &["put", &dir, "--root", "--if-root", root_line.trim()],
        b"three",
    );
    assert_eq!(r.status.code(), Some(5));
    let root = json_lines(&ok(&["root", &dir], b""));
    assert_eq!(pointer(&root[0]), pointer(&second[0]));
    assert_eq!(root[0]["sequence"], 2);
}

/// Object-store spaces and node descriptions are addresses of every
/// command; a mistyped prefix and S3 without credentials are errors that
/// say what is missing.
#[test]
fn stores_and_node_descriptions_are_addresses_everywhere() {
    let t = tempfile::tempdir().unwrap();
    let bucket = t.path().join("bucket");
    let url = format!("file://{}/spaces/one", bucket.display());
    let first = json_lines(&ok(
        &["put", &url, "--root", "--object-size", "4096"],
        b"in a store",
    ));
    let second = json_lines(&ok(
        &["put", &url, "--lines", "--root", "--format", "json"],
        b"{\"i\":1}\n{\"i\":2}\n",
    ));
    assert_eq!(second.len(), 2);
    let root = json_lines(&ok(&["root", &url], b""));
    assert_eq!(pointer(&root[0]), pointer(&second[1]));
    assert_eq!(ok(&["get", &url, &pointer(&first[0])], b""), b"in a store");
    let inspect = stdout_of(&run(&["inspect", &url], b""));
    assert!(inspect.contains("4096-byte slots"), "{inspect}");
    assert_eq!(run(&["verify", &url], b"").status.code(), Some(0));

    // The same space through a cloud node's description.
    let node = t.path().join("cloud.toml");
    std::fs::write(
        &node,
        "[backend]\ntype = \"cloud\"\nprefix = \"spaces/one\"\nstaging_dir = \"staging\"\n\
         object_size = 4096\nstore = \"file:bucket\"\n",
    )
    .unwrap();
    let node = node.to_str().unwrap();
    assert_eq!(
        pointer(&json_lines(&ok(&["root", node], b""))[0]),
        pointer(&second[1])
    );
    let v = json_lines(&ok(&["get", node, &pointer(&second[0]), "--json"], b""));
    assert_eq!(v[0]["i"], 1);
    assert_eq!(run(&["verify", node], b"").status.code(), Some(0));
    let third = json_lines(&ok(&["put", node, "--root"], b"through the node"));
    assert_eq!(
        ok(&["get", &url, &pointer(&third[0])], b""),
        b"through the node"
    );

    // A mistyped prefix holds no space; a wrong slot size is refused.
    let typo = format!("file://{}/spaces/onee", bucket.display());
    let r = run(&["verify", &typo], b"");
    assert_eq!(r.status.code(), Some(1));
    assert!(
        stderr_of(&r).contains("holds no space"),
        "{}",
        stderr_of(&r)
    );
    let r = run(&["inspect", &url, "--object-size", "1024"], b"");
    assert_eq!(r.status.code(), Some(1));
    assert!(
        stderr_of(&r).contains("4096-byte slots"),
        "{}",
        stderr_of(&r)
    );

    // S3 without an endpoint or credentials: "no credentials", at once.
    let r = bin()
        .args(["root", "s3://bucket/p"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert!(
        stderr_of(&r).contains("no credentials"),
        "{}",
        stderr_of(&r)
    );
    let r = run(&["root", "ftp://x/y"], b"");
    assert!(stderr_of(&r).contains("unknown scheme"));
    let r = run(&["root", "memory://"], b"");
    assert_eq!(r.status.code(), Some(1));
}

/// A development CA is reused: certificates issued before stay valid.
#[test]
fn certs_reuses_the_ca_unless_forced() {
    use protobase::cluster::TlsFiles;
    use protobase::transports::{TlsConfig, Trust};

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let out = out.to_str().unwrap();
    let first = json_lines(&ok(&["certs", "--out", out, "a", "b"], b""));
    assert_eq!(first[0]["ca_reused"], false);
    let ca_before = std::fs::read(dir.path().join("certs/ca.pem")).unwrap();
    let second = json_lines(&ok(&["certs", "--out", out, "c"], b""));
    assert_eq!(second[0]["ca_reused"], true);
    assert_eq!(
        std::fs::read(dir.path().join("certs/ca.pem")).unwrap(),
        ca_before
    );
    let verifies = |id: &str| {
        let files: TlsFiles = serde_json::from_value(serde_json::json!({
            "cert": dir.path().join(format!("certs/{id}.pem")),
            "key": dir.path().join(format!("certs/{id}.key")),
            "ca": dir.path().join("certs/ca.pem"),
        }))
        .unwrap();
        let trust = Trust::ca_from_pem_file(files.ca.as_ref().unwrap()).unwrap();
        let tls = TlsConfig::from_pem_files(&files.cert, &files.key, trust).unwrap();
        // A server configuration of `a` trusting the CA admits `id`'s
        // certificate only if the CA issued it.
        tls.check_identity(id).is_ok()
            && std::fs::read(&files.cert).is_ok_and(|pem| {
                let ca = std::fs::read(files.ca.as_ref().unwrap()).unwrap();
                issued_by(&pem, &ca)
            })
    };
    for id in ["a", "b", "c"] {
        assert!(verifies(id), "{id}");
    }
    // A CA without its key is refused; --force replaces the CA.
    std::fs::remove_file(dir.path().join("certs/ca.key")).unwrap();
    let r = run(&["certs", "--out", out, "d"], b"");
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr_of(&r).contains("--force"), "{}", stderr_of(&r));
    let forced = json_lines(&ok(&["certs", "--out", out, "--force", "a"], b""));
    assert_eq!(forced[0]["ca_reused"], false);
    assert!(verifies("a"));
    assert!(!verifies("b"), "b was issued by the replaced CA");
}

/// Whether the certificate `pem` verifies against the CA `ca_pem` (a QUIC
/// node trusting that CA accepts it).
fn issued_by(pem: &[u8], ca_pem: &[u8]) -> bool {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, UnixTime};
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(ca.unwrap()).unwrap();
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .unwrap();
    let cert = CertificateDer::pem_slice_iter(pem).next().unwrap().unwrap();
    verifier
        .verify_client_cert(&cert, &[], UnixTime::now())
        .is_ok()
}

/// Kills a child that outlives `limit` (a hung test fails instead of
/// blocking forever); not a timing assertion.
struct Watchdog(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Watchdog {
    fn new(pid: u32, limit: std::time::Duration) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let d = done.clone();
        std::thread::spawn(move || {
            let end = std::time::Instant::now() + limit;
            while std::time::Instant::now() < end {
                if d.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            if !d.load(Ordering::SeqCst) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        });
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `put --lines --root` streams: each line's pointer is printed once its
/// root is durable, while stdin is still open (reading the line back and
/// the root prove it).
#[test]
fn put_lines_streams_each_line_while_stdin_stays_open() {
    use std::io::BufRead;
    let (_t, dir) = space();
    let mut child = bin()
        .args(["put", &dir, "--lines", "--root"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _dog = Watchdog::new(child.id(), std::time::Duration::from_secs(120));
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    for i in 0..3 {
        writeln!(stdin, "line {i}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(
            !line.is_empty(),
            "no pointer for line {i} before stdin closed"
        );
        let p = pointer(&json_lines(line.as_bytes())[0]);
        assert_eq!(ok(&["get", &dir, &p], b""), format!("line {i}").as_bytes());
        let root = json_lines(&ok(&["root", &dir], b""));
        assert_eq!(pointer(&root[0]), p, "line {i} is the durable root");
    }
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(rest.is_empty(), "{rest}");
    assert!(child.wait().unwrap().success());
}

/// SIGKILL in the middle of a stream fed by a pipe that stays open: every
/// pointer printed before the kill names a record that reads back, and the
/// root after restart is the last printed line's record or a later line's.
#[test]
fn put_lines_root_killed_mid_stream_keeps_every_printed_pointer() {
    use std::io::BufRead;
    let (_t, dir) = space();
    let mut child = bin()
        .args(["put", &dir, "--lines", "--root", "--format", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _dog = Watchdog::new(child.id(), std::time::Duration::from_secs(180));
    let mut stdin = child.stdin.take().unwrap();
    // The feeder never closes the pipe: it writes until the process dies.
    let feeder = std::thread::spawn(move || {
        for n in 0u64.. {
            if writeln!(stdin, "{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(200)).is_err() {
                return n;
            }
        }
        unreachable!()
    });
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut printed = Vec::new();
    while printed.len() < 40 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "put ended early");
        printed.push(json_lines(line.as_bytes())[0].clone());
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Lines printed before the kill, still in the pipe.
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    printed.extend(json_lines(rest.as_bytes()));
    let fed = feeder.join().unwrap();
    assert!(fed as usize >= printed.len());
    for (i, p) in printed.iter().enumerate() {
        let atom = json_lines(&ok(&["get", &dir, &pointer(p), "--json"], b""));
        assert_eq!(atom[0]["n"], i as u64, "printed line {i}");
    }
    let root = json_lines(&ok(&["root", &dir], b""));
    let atom = json_lines(&ok(&["get", &dir, &pointer(&root[0]), "--json"], b""));
    let n = atom[0]["n"].as_u64().unwrap();
    assert!(
        n + 1 >= printed.len() as u64,
        "root names line {n}, but {} lines were acknowledged",
        printed.len()
    );
    let v = run(&["verify", &dir], b"");
    assert_eq!(v.status.code(), Some(0), "{}", stdout_of(&v));
}

/// `put --lines` holds a bounded amount of the input in memory.
#[test]
fn put_lines_memory_stays_bounded() {
    let (_t, dir) = space();
    let mut child = bin()
        .args(["put", &dir, "--lines"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _dog = Watchdog::new(child.id(), std::time::Duration::from_secs(300));
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let line = format!("{}\n", "y".repeat(4095));
    let total = 128usize << 20;
    for _ in 0..total / line.len() {
        stdin.write_all(line.as_bytes()).unwrap();
    }
    stdin.flush().unwrap();
    // All but a bounded read-ahead has been consumed: the peak so far.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    // The writer's bound, whatever the disk's speed: 8 MiB of unwritten
    // chunks, 8 MiB written but not yet synced (kept to rewrite after a
    // failed sync), 16 pooled 1 MiB buffers, and the process itself
    // (~12 MiB). A slow disk (the whole suite running) reaches ~43 MiB;
    // memory that followed the input would pass 128 MiB.
    assert!(
        hwm_kib < 48 << 10,
        "peak memory {hwm_kib} KiB for {} MiB of input",
        total >> 20
    );
}

/// `bench`: one baseline column and a `better` column; in-memory cloud rows
/// are marked as no measurement of a real store; `--dir` is left as found.
#[test]
fn bench_table_says_what_is_better_and_cleans_its_dir() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mine"), b"kept").unwrap();
    let out = bin()
        .args([
            "bench",
            "--quick",
            "--rounds",
            "2",
            "--dir",
            dir.to_str().unwrap(),
        ])
        .env_remove("PROTOBASE_BENCH_S3_ENDPOINT")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    let header = text.lines().find(|l| l.starts_with("scenario")).unwrap();
    assert_eq!(header.matches("baseline").count(), 1, "{header}");
    assert!(header.contains("better"), "{header}");
    let row = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {text}"))
    };
    assert!(row("push_small ").contains("higher"));
    assert!(row("tcp_rtt ").contains("lower"));
    assert!(row("cloud_commit (*)").contains("lower"));
    let json: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(json["cloud_commit"]["measurement"], false);
    assert_eq!(json["push_small"]["better"], "higher");
    assert!(json["push_small"].get("measurement").is_none());
    for key in ["value", "unit", "baseline", "ratio"] {
        assert!(json["commit_serial"].get(key).is_some(), "{key}");
    }
    // Two rounds: medians, and each quantity's spread over the rounds.
    for (name, entry) in json.as_object().unwrap() {
        assert_eq!(entry["rounds"], 2, "{name}: {entry}");
        for q in ["value", "baseline", "ratio"] {
            let (min, max) = (
                entry["spread"][q]["min"].as_f64().unwrap(),
                entry["spread"][q]["max"].as_f64().unwrap(),
            );
            let median = entry[q].as_f64().unwrap();
            assert!(min <= median && median <= max, "{name} {q}: {entry}");
        }
    }
    // The concurrent commit keys: rates against a serial baseline.
    for key in [
        "commit_concurrent",
        "cluster_commit_concurrent",
        "cloud_commit_concurrent",
    ] {
        assert_eq!(json[key]["better"], "higher", "{key}");
        assert!(json[key]["value"].as_f64().unwrap() > 0.0, "{key}");
        assert!(json[key]["baseline"].as_f64().unwrap() > 0.0, "{key}");
    }
    // quic_rtt's baseline is the TCP transport's round trip of tcp_rtt.
    assert_eq!(json["quic_rtt"]["baseline"], json["tcp_rtt"]["value"]);
    assert!(
        text.lines().next().unwrap().starts_with("machine: "),
        "{text}"
    );
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("mine")]);
    // A --dir the benchmark created is removed entirely.
    let fresh = t.path().join("fresh");
    let out = bin()
        .args([
            "bench",
            "--quick",
            "--rounds",
            "1",
            "--dir",
            fresh.to_str().unwrap(),
        ])
        .env_remove("PROTOBASE_BENCH_S3_ENDPOINT")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!fresh.exists());
    let zero = bin()
        .args(["bench", "--quick", "--rounds", "0"])
        .output()
        .unwrap();
    assert!(!zero.status.success());
    assert!(stderr_of(&zero).contains("rounds"), "{}", stderr_of(&zero));
}

/// Issue 12, defect 1, as the issue ran it: a store written with 5 MiB
/// slots copied with `--object-size 1048576` is refused (never "complete"
/// with a quarter of the bytes); without the wrong size the copy is
/// complete and verifies without a torn tail.
#[test]
fn copy_of_a_store_with_the_wrong_object_size_is_refused_as_in_the_issue() {
    let t = tempfile::tempdir().unwrap();
    let bucket = t.path().join("bucket");
    let url = format!("file://{}/spaces/big", bucket.display());
    // 12 MiB in 1 MiB lines, default (5 MiB) slots.
    let line = format!("{}\n", "z".repeat((1 << 20) - 1));
    let input = line.repeat(12);
    let out = json_lines(&ok(&["put", &url, "--lines", "--root"], input.as_bytes()));
    assert_eq!(out.len(), 12);
    let restored = t.path().join("restored");
    let restored = restored.to_str().unwrap();
    let r = run(&["copy", &url, restored, "--object-size", "1048576"], b"");
    assert_eq!(r.status.code(), Some(1), "{}", stdout_of(&r));
    assert!(
        stderr_of(&r).contains("written with 5242880-byte slots"),
        "{}",
        stderr_of(&r)
    );
    assert!(!stdout_of(&r).contains("\"complete\":true"));
    let r = run(&["copy", &url, restored], b"");
    assert_eq!(r.status.code(), Some(0), "{}", stderr_of(&r));
    let s = json_lines(&r.stdout);
    assert_eq!(s[0]["complete"], true);
    assert_eq!(s[0]["records"], 12);
    assert_eq!(s[0]["destination_records"], 12);
    assert!(s[0]["bytes"].as_u64().unwrap() > 12 << 20, "{}", s[0]);
    let v = run(&["verify", restored], b"");
    let text = stdout_of(&v);
    assert_eq!(v.status.code(), Some(0), "{text}");
    assert!(
        !text.contains("torn") && text.contains("12 records, 0 problems"),
        "{text}"
    );
    assert_eq!(
        ok(&["get", restored, &pointer(&out[11])], b"").len(),
        (1 << 20) - 1
    );
    // S3 without endpoint or credentials stops at once with "no credentials".
    let r = bin()
        .args(["copy", "s3://bucket/p", restored])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert!(
        stderr_of(&r).contains("no credentials"),
        "{}",
        stderr_of(&r)
    );
}

/// `inspect … | head -1` in a shell: no panic, exit 0 (pipefail).
#[test]
fn inspect_piped_into_head_exits_quietly() {
    let (_t, dir) = space();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Many WALs: more output than `head` reads.
        for _ in 0..40 {
            let s = protobase::Storage::open(&dir).await.unwrap();
            s.push_bytes(b"x").await.unwrap();
            s.close().await.unwrap();
        }
    });
    let out = Command::new("bash")
        .args([
            "-c",
            "set -o pipefail; \"$0\" inspect \"$1\" | head -1",
            env!("CARGO_BIN_EXE_protobase"),
            &dir,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(stderr_of(&out).is_empty(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).lines().count(), 1);
}

/// The record `gc` tests write as the `i`-th: 5,000 bytes.
fn gc_record(i: usize) -> Vec<u8> {
    vec![(i % 251) as u8; 5_000]
}

/// A space in `dir` with `n` records of [`gc_record`], one full WAL each,
/// the last one published.
fn space_of_full_wals(dir: &Path, n: usize) -> Vec<protobase::AtomPointer> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = protobase::StorageBuilder::standalone(dir)
            .max_wal_size(4096)
            .build()
            .await
            .unwrap();
        let mut ptrs = Vec::new();
        for i in 0..n {
            ptrs.push(s.push_bytes(&gc_record(i)).await.unwrap());
        }
        s.set_root(*ptrs.last().unwrap()).await.unwrap();
        s.close().await.unwrap();
        ptrs
    })
}

/// The WAL files of the space in `dir`, sorted.
fn wal_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.parse::<protobase::WalId>().is_ok())
        .collect();
    v.sort();
    v
}

/// `gc`: a dry run removes nothing; the default minimum age keeps WALs
/// written just now; a live set it cannot read, or one naming WALs the
/// space lacks, fails (the first before anything is removed); otherwise
/// exactly the WALs outside the live set (and not the root's) go, and
/// everything live still reads and verifies.
#[test]
fn gc_removes_only_what_nothing_live_reaches() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("space");
    let ptrs = space_of_full_wals(&dir, 3);
    let wal_files = || wal_files(&dir);
    let all = wal_files();
    assert_eq!(all.len(), 3);
    let d = dir.to_str().unwrap();
    let live = t.path().join("live");
    std::fs::write(&live, format!("# reachable\n{}\n", ptrs[1])).unwrap();
    let live_s = live.to_str().unwrap();
    let doomed = ptrs[0].wal_id.to_string();

    let dry = json_lines(&ok(
        &["gc", d, "--live", live_s, "--dry-run", "--min-age", "0"],
        b"",
    ));
    assert_eq!(dry[0]["dry_run"], true);
    assert_eq!(dry[0]["retired"][0]["wal"], doomed.as_str(), "{}", dry[0]);
    assert_eq!(dry[0]["retired"].as_array().unwrap().len(), 1);
    assert_eq!(wal_files(), all, "a dry run removed files");

    let recent = json_lines(&ok(&["gc", d, "--live", live_s], b""));
    assert!(
        recent[0]["retired"].as_array().unwrap().is_empty(),
        "{}",
        recent[0]
    );
    assert!(
        recent[0]["kept"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["wal"] == doomed.as_str() && k["reason"] == "recent"),
        "{}",
        recent[0]
    );

    let bad = t.path().join("bad");
    std::fs::write(&bad, format!("{}\nnot a pointer\n", ptrs[1])).unwrap();
    let r = run(
        &["gc", d, "--live", bad.to_str().unwrap(), "--min-age", "0"],
        b"",
    );
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr_of(&r).contains("line 2"), "{}", stderr_of(&r));
    assert_eq!(wal_files(), all, "removed with an unreadable live set");
    let missing = t.path().join("missing");
    std::fs::write(
        &missing,
        format!("{}\n{}\n", ptrs[1], protobase::WalId::new_random()),
    )
    .unwrap();
    let r = run(
        &[
            "gc",
            d,
            "--live",
            missing.to_str().unwrap(),
            "--dry-run",
            "--min-age",
            "0",
        ],
        b"",
    );
    assert_eq!(r.status.code(), Some(1), "a live WAL the space lacks");
    assert!(stderr_of(&r).contains("missing_live"), "{}", stderr_of(&r));
    let r = run(
        &[
            "gc",
            t.path().join("nowhere").to_str().unwrap(),
            "--live",
            live_s,
        ],
        b"",
    );
    assert_eq!(r.status.code(), Some(1));

    let done = json_lines(&ok(&["gc", d, "--live", live_s, "--min-age", "0"], b""));
    assert_eq!(done[0]["dry_run"], false);
    assert_eq!(done[0]["retired"][0]["wal"], doomed.as_str());
    assert!(done[0]["retired_bytes"].as_u64().unwrap() >= 5_000);
    let left = wal_files();
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&doomed));
    for p in &ptrs[1..] {
        let got = ok(&["get", d, &p.to_string()], b"");
        assert_eq!(got.len(), 5_000);
    }
    let r = run(&["get", d, &ptrs[0].to_string()], b"");
    assert_eq!(r.status.code(), Some(1));
    ok(&["verify", d], b"");
}

/// `gc` killed (SIGKILL) at random moments: every live record still reads
/// back after each kill, and a last full run removes the rest. Seeded
/// (`PROTOBASE_TEST_SEED` replays the kill moments).
#[test]
fn gc_killed_at_any_moment_loses_nothing_live() {
    let seed = std::env::var("PROTOBASE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("seed {seed} (PROTOBASE_TEST_SEED={seed} to replay)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("space");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let record = gc_record;
    let ptrs = space_of_full_wals(&dir, 60);
    let live: Vec<usize> = (0..ptrs.len()).filter(|i| i % 3 == 0 || *i == 59).collect();
    let live_file = t.path().join("live");
    let text: String = live.iter().map(|&i| format!("{}\n", ptrs[i])).collect();
    std::fs::write(&live_file, text).unwrap();
    let d = dir.to_str().unwrap();
    let check = |when: &str| {
        rt.block_on(async {
            let s = protobase::StorageBuilder::standalone(&dir)
                .read_only(true)
                .build()
                .await
                .unwrap();
            for &i in &live {
                let got = s.get_bytes(ptrs[i]).await;
                assert_eq!(
                    got.as_deref().ok(),
                    Some(&record(i)[..]),
                    "seed {seed}, {when}: live record {i}: {got:?}"
                );
            }
            s.close().await.unwrap();
        })
    };
    for round in 0..6 {
        let mut child = bin()
            .args([
                "gc",
                d,
                "--live",
                live_file.to_str().unwrap(),
                "--min-age",
                "0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.u64(0..40)));
        let _ = child.kill();
        child.wait().unwrap();
        check(&format!("after kill {round}"));
        println!("after kill {round}: {} WAL files", wal_files(&dir).len());
    }
    let done = json_lines(&ok(
        &[
            "gc",
            d,
            "--live",
            live_file.to_str().unwrap(),
            "--min-age",
            "0",
        ],
        b"",
    ));
    assert_eq!(done[0]["live"], live.len(), "seed {seed}: {}", done[0]);
    check("after the last run");
    assert_eq!(
        wal_files(&dir).len(),
        live.len(),
        "seed {seed}: only live WALs remain"
    );
    ok(&["verify", d], b"");
}

/// `history`: recent roots newest first as JSON lines, `--limit`, exit 3
/// on a space without a root, 1 on no space.
#[test]
fn history_lists_recent_roots() {
    let (_t, dir) = space();
    for i in 0..3 {
        ok(&["put", &dir, "--root"], format!("r{i}").as_bytes());
    }
    let lines = json_lines(&ok(&["history", &dir], b""));
    assert_eq!(
        lines
            .iter()
            .map(|l| l["sequence"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![3, 2, 1]
    );
    assert!(lines[0]["written_ms"].as_u64().unwrap() > 1_600_000_000_000);
    let root = json_lines(&ok(&["root", &dir], b""));
    assert_eq!(
        lines[0]["pointer"],
        pointer(&root[0]).as_str(),
        "{}",
        root[0]
    );
    assert_eq!(
        json_lines(&ok(&["history", &dir, "--limit", "1"], b"")).len(),
        1
    );
    let empty = tempfile::tempdir().unwrap();
    let r = run(&["history", empty.path().to_str().unwrap()], b"");
    assert_eq!(r.status.code(), Some(3), "{}", stderr_of(&r));
    let r = run(&["history", "/nonexistent/space"], b"");
    assert_eq!(r.status.code(), Some(1));
}

/// `gc` on an object store (a local directory used as one): every `put`
/// process writes a WAL of its own; the ones outside the live set lose
/// their objects, the live ones still read.
#[test]
fn gc_on_an_object_store() {
    let t = tempfile::tempdir().unwrap();
    let url = format!("file://{}/bucket/space", t.path().display());
    let ptrs: Vec<String> = (0..3)
        .map(|i| pointer(&json_lines(&ok(&["put", &url, "--root"], format!("v{i}").as_bytes()))[0]))
        .collect();
    let wal = |p: &str| p.split(':').next().unwrap().to_string();
    let objects_of = |w: &str| {
        let dir = t.path().join("bucket/space/wal").join(w);
        std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
    };
    assert!(ptrs.iter().all(|p| objects_of(&wal(p)) > 0));
    let live = t.path().join("live");
    std::fs::write(&live, format!("{}\n", ptrs[1])).unwrap();
    let out = json_lines(&ok(
        &[
            "gc",
            &url,
            "--live",
            live.to_str().unwrap(),
            "--min-age",
            "0",
        ],
        b"",
    ));
    assert_eq!(out[0]["retired"].as_array().unwrap().len(), 1, "{}", out[0]);
    assert_eq!(out[0]["retired"][0]["wal"], wal(&ptrs[0]).as_str());
    assert_eq!(
        objects_of(&wal(&ptrs[0])),
        0,
        "objects of a retired WAL remain"
    );
    for p in &ptrs[1..] {
        ok(&["get", &url, p], b"");
    }
    assert_eq!(run(&["get", &url, &ptrs[0]], b"").status.code(), Some(1));
}

/// `checkpoint`: pins the current root through `gc` and `prune`; `--list`,
/// `--remove`, a taken name (exit 1), a removed one (exit 3).
#[test]
fn checkpoint_pins_a_root_through_gc_and_prune() {
    let t = tempfile::tempdir().unwrap();
    let url = format!("file://{}/bucket/space", t.path().display());
    let put = |v: &str| pointer(&json_lines(&ok(&["put", &url, "--root"], v.as_bytes()))[0]);
    let first = put("v0");
    let cp = json_lines(&ok(&["checkpoint", &url, "keep"], b""));
    assert_eq!(cp[0]["name"], "keep");
    assert_eq!(cp[0]["pointer"], first.as_str());
    let r = run(&["checkpoint", &url, "keep"], b"");
    assert_eq!(r.status.code(), Some(1), "{}", stderr_of(&r));
    assert!(stderr_of(&r).contains("exists"), "{}", stderr_of(&r));
    let middle = put("v1");
    let last = put("v2");
    let listed = json_lines(&ok(&["checkpoint", &url, "--list"], b""));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["sequence"], 1);
    let live = t.path().join("live");
    std::fs::write(&live, format!("{last}\n")).unwrap();
    let gc = |extra: &[&str]| {
        let mut args = vec![
            "gc",
            &url,
            "--live",
            live.to_str().unwrap(),
            "--min-age",
            "0",
        ];
        args.extend_from_slice(extra);
        run(&args, b"")
    };
    // A live set that forgot the checkpoint: refused, nothing removed.
    let r = gc(&[]);
    assert_eq!(r.status.code(), Some(1), "{}", stderr_of(&r));
    assert!(stderr_of(&r).contains("keep"), "{}", stderr_of(&r));
    ok(&["get", &url, &middle], b"");
    std::fs::write(&live, format!("{last}\n{first}\n")).unwrap();
    let r = gc(&[]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr_of(&r));
    assert!(!run(&["get", &url, &middle], b"").status.success());
    assert_eq!(ok(&["get", &url, &first], b""), b"v0");
    // Pruning keeps the current root, and the checkpoint.
    let pruned = json_lines(&ok(&["prune", &url, "--keep", "1"], b""));
    assert_eq!(
        (pruned[0]["removed"].as_u64(), pruned[0]["kept"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(json_lines(&ok(&["history", &url], b"")).len(), 1);
    assert_eq!(
        json_lines(&ok(&["checkpoint", &url, "--list"], b"")).len(),
        1
    );
    let r = run(&["prune", &url, "--keep", "0"], b"");
    assert_eq!(r.status.code(), Some(1), "{}", stderr_of(&r));
    ok(&["checkpoint", &url, "keep", "--remove"], b"");
    let r = run(&["checkpoint", &url, "keep", "--remove"], b"");
    assert_eq!(r.status.code(), Some(3), "{}", stderr_of(&r));
    assert!(json_lines(&ok(&["checkpoint", &url, "--list"], b"")).is_empty());
    let r = run(&["checkpoint", &url, "bad/name"], b"");
    assert_eq!(r.status.code(), Some(1), "{}", stderr_of(&r));
    let r = run(&["checkpoint", &url], b"");
    assert_eq!(r.status.code(), Some(2), "{}", stderr_of(&r));
}

/// Copies the directory tree `from` to `to`.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// `prune` killed at random moments (SIGKILL) never loses the current root
/// or a kept one; a run to the end leaves exactly what was asked. Each
/// round kills a run on a fresh copy of a 30-root space, at a moment drawn
/// between the process's start-up and the end of an uninterrupted run.
#[test]
fn prune_killed_at_any_moment_loses_nothing_kept() {
    let seed = std::env::var("PROTOBASE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("seed {seed} (PROTOBASE_TEST_SEED={seed} to replay)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let t = tempfile::tempdir().unwrap();
    let pristine = t.path().join("pristine");
    let url_of = |d: &std::path::Path| format!("file://{}/bucket/space", d.display());
    let url = url_of(&pristine);
    // One process per root (`--lines` would group the commits).
    let mut last = String::new();
    for i in 0..30 {
        let put = ok(&["put", &url, "--root"], format!("v{i}").as_bytes());
        last = pointer(&json_lines(&put)[0]);
    }
    let count = |d: &std::path::Path| {
        std::fs::read_dir(d.join("bucket/space/root"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(count(&pristine), 30);
    let check = |url: &str, when: &str| {
        let root = json_lines(&ok(&["root", url], b""));
        assert_eq!(pointer(&root[0]), last, "seed {seed}, {when}");
        let h = json_lines(&ok(&["history", url, "--limit", "100"], b""));
        assert!(h.len() >= 5, "seed {seed}, {when}: {} roots kept", h.len());
        assert_eq!(ok(&["get", url, &last], b""), b"v29");
    };
    // The window: from a bare start-up (`root`) to a whole run's end.
    let timed = |args: &[&str]| {
        let start = std::time::Instant::now();
        ok(args, b"");
        start.elapsed().as_micros() as u64
    };
    let startup = timed(&["root", &url]);
    let probe = t.path().join("probe");
    copy_tree(&pristine, &probe);
    let whole = timed(&["prune", &url_of(&probe), "--keep", "5"]).max(startup + 1);
    for round in 0..8 {
        let copy = t.path().join(format!("round{round}"));
        copy_tree(&pristine, &copy);
        let url = url_of(&copy);
        let mut child = bin()
            .args(["prune", &url, "--keep", "5"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let at = rng.u64(startup / 2..whole + whole / 4);
        std::thread::sleep(std::time::Duration::from_micros(at));
        let _ = child.kill();
        child.wait().unwrap();
        check(&url, &format!("after kill {round} at {at} us"));
        println!("kill {round} at {at} us: {} root objects", count(&copy));
        ok(&["prune", &url, "--keep", "5"], b"");
        check(&url, &format!("after a whole run {round}"));
        assert_eq!(count(&copy), 5, "seed {seed}");
    }
}
