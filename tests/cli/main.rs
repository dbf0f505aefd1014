//! The binary as users run it: several processes, killed and restarted,
//! against a real redis-server. One test binary, a module per theme; the
//! helpers here are shared by several of them.

#[path = "../common/mod.rs"]
mod common;

mod connections;
mod errors;
mod hostile;
mod observability;
mod parked;
mod restarts;
mod roles;
mod sinks;
mod status;
mod transfer;

use std::process::Child;
use std::time::{Duration, Instant};

use common::{Running, Server, run, spawn};

const T: Duration = Duration::from_secs(60);

/// Polls `status --json` until `check` accepts the channel's state.
fn wait_for_status(
    server: &Server,
    channel: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = Instant::now() + T;
    loop {
        let output = run(
            server
                .command()
                .args(["status", "--json", "--channel", channel]),
            T,
        );
        if output.status.success() {
            let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            if check(&status[0]) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Sends SIGTERM to a process a test started.
fn terminate(process: &Running) {
    let pid = process.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -TERM {pid}");
}

/// Starts a broadcast of `source` to receiver `0` on channel `channel`.
/// Returns once the channel exists, so a receiver started next has no
/// wait to mention.
fn send_to_one(server: &Server, channel: &str, source: &std::path::Path) -> Running {
    let sender = spawn(server.send(channel).receivers(1).path(source));
    wait_for_status(server, channel, "the first announcement", |s| {
        s["files_announced"].as_u64() >= Some(1)
    });
    sender
}

/// Polls a file a process writes its stderr to until it holds `text`.
fn wait_for_text(path: &std::path::Path, text: &str) -> String {
    let deadline = Instant::now() + T;
    loop {
        let written = std::fs::read_to_string(path).unwrap_or_default();
        if written.contains(text) {
            return written;
        }
        assert!(
            Instant::now() < deadline,
            "never said {text:?}; said:\n{written}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
