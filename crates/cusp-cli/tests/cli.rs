//! The `cusp` binary driven as a user would: separate processes on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_cusp");

fn cusp() -> Command {
    let mut c = Command::new(BIN);
    c.env("RUST_LOG", "warn");
    c
}

/// A UDP port that was free a moment ago.
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for `child` at most `limit` while collecting its output (a full stdout pipe
/// must not block it).
fn wait(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output().unwrap());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out,
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("process {pid} timed out after {limit:?}");
        }
    }
}

/// Spawns a server process and waits for its first stderr line (it is then listening).
fn spawn_ready(cmd: &mut Command) -> (Child, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn keygen_writes_a_loadable_key_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    let out = cusp().arg("keygen").arg("-o").arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(public.len(), 64, "{public}");
    let key = cusp::keys::load(&path).unwrap();
    assert_eq!(cusp::keys::public_hex(&key), public);

    let info = cusp()
        .args(["info", "--bind", "127.0.0.1:0", "--key"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(info.status.success(), "{}", stderr(&info));
    assert!(String::from_utf8_lossy(&info.stdout).contains(&public));

    let again = cusp().arg("keygen").arg("-o").arg(&path).output().unwrap();
    assert!(!again.status.success());
    assert!(stderr(&again).contains("exists"), "{}", stderr(&again));
    assert_eq!(
        cusp::keys::public_hex(&cusp::keys::load(&path).unwrap()),
        public,
        "the key file was changed"
    );
    let forced = cusp()
        .arg("keygen")
        .arg("--force")
        .arg("-o")
        .arg(&path)
        .output()
        .unwrap();
    assert!(forced.status.success(), "{}", stderr(&forced));
}

#[test]
fn send_recv_small_file() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let file = dir.path().join("data.bin");
    let data = random_bytes(300_000, 7);
    std::fs::write(&file, &data).unwrap();
    // An existing file of the same name must survive.
    std::fs::write(inbox.join("data.bin"), b"old").unwrap();

    let addr = format!("127.0.0.1:{}", free_port());
    let (recv, line) = spawn_ready(
        cusp()
            .arg("recv")
            .arg(&inbox)
            .args(["--listen", &addr, "--once"]),
    );
    assert!(line.contains("receiving into"), "{line}");
    let send = cusp()
        .arg("send")
        .arg(&file)
        .arg(&addr)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(send.status.success(), "{}", stderr(&send));
    assert!(stderr(&send).contains("verified"), "{}", stderr(&send));
    let recv = wait(recv, Duration::from_secs(20));
    assert!(recv.status.success(), "{}", stderr(&recv));
    assert_eq!(std::fs::read(inbox.join("data (1).bin")).unwrap(), data);
    assert_eq!(std::fs::read(inbox.join("data.bin")).unwrap(), b"old");
    // No temporary file left behind.
    assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 2);
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = cusp()
        .args(["send", "/nonexistent/file.bin", "127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cannot open /nonexistent/file.bin"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let dir = tempfile::tempdir().unwrap();
    let out = cusp()
        .arg("recv")
        .arg(dir.path().join("missing"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot use directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn perf_json_reports_goodput() {
    let child = cusp()
        .args(["perf", "--seconds", "1", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait(child, Duration::from_secs(60));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["goodput_gbit_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["bytes"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["delivered"], true, "{v}");
    assert!(
        v["priority_rtt_under_load_ms"]["p99"].as_f64().is_some(),
        "{v}"
    );
}

#[test]
fn cat_bidi_round_trips_against_listen_echo() {
    let addr = format!("127.0.0.1:{}", free_port());
    let (listen, line) =
        spawn_ready(
            cusp()
                .arg("listen")
                .args(["--service", "7", "--echo", "--bind", &addr]),
        );
    assert!(line.contains("echoing"), "{line}");
    let body = random_bytes(100_000, 3);
    let mut cat = cusp()
        .args(["cat", &addr, "--service", "7", "--bidi"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    cat.stdin.take().unwrap().write_all(&body).unwrap();
    let out = wait(cat, Duration::from_secs(20));
    let mut listen = listen;
    let _ = listen.kill();
    let _ = listen.wait();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, body);
}
