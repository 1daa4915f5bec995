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

    // Cut the last record short: a torn tail, and the root now points at it.
    bytes.truncate(bytes.len() - 2);
    std::fs::write(&wal, &bytes).unwrap();
    let r = run(&["verify", &dir], b"");
    let stdout = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(stdout.contains("torn tail"), "{stdout}");
    assert!(stdout.contains("ROOT"), "{stdout}");
    assert_eq!(r.status.code(), Some(1), "the root is unreadable");
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
