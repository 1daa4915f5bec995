//! A real S3-compatible server for the tests: moto (`moto[server]==5.2.5`).
//!
//! [`server`] returns the endpoint of one server shared by the test binary:
//!
//! 1. `PROTOBASE_TEST_S3_ENDPOINT` (e.g. `http://127.0.0.1:5000`): a server
//!    that is already running;
//! 2. otherwise `moto_server` from `PROTOBASE_MOTO_BIN`, or from
//!    `.ci/venv/bin/moto_server` (created by `.ci/run`, or installed there by
//!    the first S3 test when missing: `python3 -m venv` + pip), started on a free
//!    127.0.0.1 port. It is ready when a signed CreateBucket succeeds
//!    (bounded wait). It is stopped when the test process exits, however it
//!    exits: it runs under a small shell that kills it when its stdin (a pipe
//!    from this process) closes. [`Moto`] also kills it on drop.
//!
//! If neither is available the S3 tests fail with instructions, unless
//! `PROTOBASE_SKIP_S3=1`, in which case they print a loud `SKIPPED` line to
//! stderr and return ([`server`] returns `None`).
//!
//! Buckets are created with [`create_bucket`], a SigV4-signed `PUT /<bucket>`
//! over plain HTTP/1.1 (credentials `test`/`test`, region `us-east-1`).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

pub const ACCESS_KEY: &str = "test";
pub const SECRET_KEY: &str = "test";
pub const REGION: &str = "us-east-1";
/// A bucket created on the server as soon as it is ready, for tests that
/// share one bucket (under prefixes of their own).
pub const TEST_BUCKET: &str = "protobase-tests";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A moto server started by this process; killed on drop.
pub struct Moto {
    pub endpoint: String,
    child: Child,
}

impl Drop for Moto {
    fn drop(&mut self) {
        // Closing stdin makes the wrapper kill moto and exit.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Server {
    External(String),
    Started(Moto),
    Skipped,
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// The endpoint of the shared S3 server, or `None` when S3 tests are
/// disabled by `PROTOBASE_SKIP_S3=1` (after printing a loud message).
/// Panics with instructions when no server can be found or started.
pub fn server() -> Option<String> {
    let s = SERVER.get_or_init(|| {
        if std::env::var("PROTOBASE_SKIP_S3").is_ok_and(|v| v == "1") {
            return Server::Skipped;
        }
        if let Ok(ep) = std::env::var("PROTOBASE_TEST_S3_ENDPOINT") {
            let ep = ep.trim_end_matches('/').to_string();
            wait_ready(&ep, None).unwrap_or_else(|e| {
                panic!("PROTOBASE_TEST_S3_ENDPOINT={ep} is not a working S3 server: {e}")
            });
            return Server::External(ep);
        }
        Server::Started(start().unwrap_or_else(|e| panic!("{e}")))
    });
    match s {
        Server::External(ep) => Some(ep.clone()),
        Server::Started(m) => Some(m.endpoint.clone()),
        Server::Skipped => {
            eprintln!(
                "\n*** SKIPPED: S3 tests disabled by PROTOBASE_SKIP_S3 \
                 (this test did not run on S3) ***\n"
            );
            None
        }
    }
}

/// The pinned moto the tests use.
const MOTO: &str = "moto[server]==5.2.5";

fn moto_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROTOBASE_MOTO_BIN") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/venv");
    let bin = venv.join("bin/moto_server");
    if !bin.exists() {
        // A fresh machine: install moto into the project's venv (PyPI is
        // reachable wherever this project builds), as `.ci/run` does.
        if let Err(e) = install_moto(&venv) {
            eprintln!("installing {MOTO} into {} failed: {e}", venv.display());
        }
    }
    bin.exists().then_some(bin)
}

fn install_moto(venv: &std::path::Path) -> Result<(), String> {
    eprintln!("S3 tests: installing {MOTO} into {} (once)", venv.display());
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    if !venv.join("bin/pip").exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(venv))?;
    }
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        MOTO,
    ]))
}

const HOW_TO: &str = "S3 tests need moto: python3 -m venv .ci/venv && \
     .ci/venv/bin/pip install 'moto[server]==5.2.5' (or set PROTOBASE_MOTO_BIN to a \
     moto_server binary, or PROTOBASE_TEST_S3_ENDPOINT to a running S3-compatible \
     server, or PROTOBASE_SKIP_S3=1 to skip the S3 tests)";

/// moto checks `If-None-Match: *` and then stores the object, and its
/// server is threaded: two racing conditional PUTs of one key can both
/// succeed, which S3 never allows (the root compare-and-swap tests then
/// fail at random). This runs moto with its object PUT behind a lock.
const ATOMIC_PUT: &str = r#"import sys, threading
from moto.s3.responses import S3Response
_lock = threading.Lock()
_put = S3Response.put_object
def put_object(self):
    with _lock:
        return _put(self)
S3Response.put_object = put_object
from moto.server import main
main(sys.argv[1:])
"#;

/// Starts moto on a free port and waits until it serves CreateBucket.
pub fn start() -> Result<Moto, String> {
    let bin = moto_bin().ok_or_else(|| format!("no moto_server found. {HOW_TO}"))?;
    if !bin.exists() {
        return Err(format!("{} does not exist. {HOW_TO}", bin.display()));
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    // The wrapper kills moto when our end of its stdin closes (also when
    // this process is killed).
    let script = r#"bin=$1; shift; "$bin" "$@" </dev/null & pid=$!
trap 'kill $pid 2>/dev/null' EXIT HUP INT TERM
cat >/dev/null
kill $pid 2>/dev/null; wait $pid 2>/dev/null"#;
    // moto_server's own python (its venv's), when there, runs it with
    // object PUTs made atomic; else moto_server as it is.
    let python = bin.with_file_name("python3");
    let mut wrapper = Command::new("sh");
    wrapper.arg("-c").arg(script).arg("moto-wrapper");
    if python.exists() {
        wrapper.arg(&python).args(["-c", ATOMIC_PUT]);
    } else {
        wrapper.arg(&bin);
    }
    let child = wrapper
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}. {HOW_TO}", bin.display()))?;
    let mut moto = Moto {
        endpoint: format!("http://127.0.0.1:{port}"),
        child,
    };
    let ep = moto.endpoint.clone();
    wait_ready(&ep, Some(&mut moto.child))
        .map_err(|e| format!("moto ({}) on {ep} did not become ready: {e}", bin.display()))?;
    Ok(moto)
}

/// Retries a signed CreateBucket until it succeeds or [`READY_TIMEOUT`].
fn wait_ready(endpoint: &str, mut child: Option<&mut Child>) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        if let Some(c) = child.as_deref_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            return Err(format!("server exited early ({status})"));
        }
        match create_bucket(endpoint, TEST_BUCKET) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "timeout after {READY_TIMEOUT:?}; last error: {last}"
    ))
}

/// Creates `bucket` (an existing bucket of ours is fine) with a SigV4-signed
/// `PUT /<bucket>`.
pub fn create_bucket(endpoint: &str, bucket: &str) -> Result<(), String> {
    let host = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| format!("endpoint {endpoint} is not http://"))?
        .trim_end_matches('/');
    let path = format!("/{bucket}");
    let (status, body) = signed_request(host, "PUT", &path)?;
    if status == 200 || (status == 409 && body.contains("BucketAlready")) {
        Ok(())
    } else {
        Err(format!("CreateBucket {bucket}: HTTP {status}: {body}"))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha256(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(msg);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&sha256(&inner));
    sha256(&outer)
}

/// `YYYYMMDDTHHMMSSZ` for now (UTC).
fn amz_date() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// One SigV4-signed request with an empty body; returns (status, body).
fn signed_request(host: &str, method: &str, path: &str) -> Result<(u16, String), String> {
    let date = amz_date();
    let day = &date[..8];
    let payload = hex(&sha256(b""));
    let signed_headers = "host;x-amz-content-sha256;x-amz-date";
    let canonical = format!(
        "{method}\n{path}\n\nhost:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{date}\n\n\
         {signed_headers}\n{payload}"
    );
    let scope = format!("{day}/{REGION}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(&sha256(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), day.as_bytes());
    for part in [REGION, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, to_sign.as_bytes()));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nx-amz-content-sha256: {payload}\r\n\
         x-amz-date: {date}\r\nAuthorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, \
         SignedHeaders={signed_headers}, Signature={signature}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    let mut s = TcpStream::connect(host).map_err(|e| format!("connect {host}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .map_err(|e| format!("receive: {e}"))?;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad response: {resp:?}"))?;
    let body = resp.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    Ok((status, body))
}

#[test]
fn amz_date_shape() {
    let d = amz_date();
    assert_eq!(d.len(), 16, "{d}");
    assert!(
        d.starts_with("20") && d.ends_with('Z') && &d[8..9] == "T",
        "{d}"
    );
}

#[test]
fn hmac_sha256_rfc4231_case_2() {
    let mac = hmac(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        hex(&mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
