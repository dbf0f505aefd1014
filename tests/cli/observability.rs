//! What the tool tells people and machines: waits that say what they wait
//! for, JSON logs, Prometheus metrics, colors, progress bars on a terminal
//! (drawn around log lines, moving while a file streams in, one per file),
//! shell completions and the manual page.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    AsCommand, Running, Server, assert_same_tree, noise, run, spawn, succeeded, wait, write,
};
use crate::{T, kill, terminate, wait_for_text};

/// Starts `command` with its stderr going to the file `path`, to be read
/// while it runs, and its stdout thrown away.
fn spawn_saying_to(mut command: impl AsCommand, path: &std::path::Path) -> Child {
    command
        .as_command()
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(path).unwrap())
        .spawn()
        .unwrap()
}

#[test]
fn waits_say_what_they_wait_for_and_who_is_behind() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let data = noise(6 << 20, 9);
    let file = write(work.path(), "big.bin", &data);
    let sender_said = work.path().join("sender.err");
    let mut sender = spawn_saying_to(
        server
            .send("logs")
            .receivers("a,b")
            .limit("2MiB")
            .compress("none")
            .path(&file),
        &sender_said,
    );
    wait_for_text(
        &sender_said,
        "big.bin: the channel holds its limit (2.0 MiB); waiting for a (never connected), b (never connected)",
    );

    let lost_said = work.path().join("lost.err");
    let mut lost = spawn_saying_to(server.receive("lgos", "a").stdout(), &lost_said);
    wait_for_text(
        &lost_said,
        "channel lgos does not exist yet; waiting for a sender (existing channels: logs)",
    );
    kill(&mut lost);

    let receivers: Vec<Running> = ["a", "b"]
        .iter()
        .map(|id| spawn(server.receive("logs", id).out(work.path().join(id))))
        .collect();
    for (receiver, id) in receivers.into_iter().zip(["a", "b"]) {
        succeeded(&wait(receiver, T));
        let got = std::fs::read(work.path().join(id).join("big.bin")).unwrap();
        assert!(got == data, "receiver {id} got other bytes");
    }
    let status = sender.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&sender_said).unwrap()
    );
}

#[test]
fn log_json_writes_one_json_object_a_line_with_a_timestamp_errors_included() {
    let server = Server::start();
    let events = |output: &std::process::Output| -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    };
    let purged = run(
        server
            .command()
            .args(["--log-json", "purge", "--channel", "x"]),
        T,
    );
    succeeded(&purged);
    let purged = events(&purged);
    assert_eq!(purged.len(), 1, "{purged:?}");
    assert_eq!(purged[0]["level"], "INFO");
    assert!(
        purged[0]["timestamp"]
            .as_str()
            .is_some_and(|t| t.starts_with("20"))
    );
    assert!(
        purged[0]["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("purged channel x")
    );

    let missing = run(
        server
            .command()
            .args(["status", "--channel", "nope", "--log-json"]),
        T,
    );
    assert_eq!(missing.status.code(), Some(2));
    let missing = events(&missing);
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(missing[0]["level"], "ERROR");
    assert!(
        missing[0]["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("no channel named")
    );
}

/// The samples of a Prometheus text exposition, by metric name.
fn scrape(address: &str) -> BTreeMap<String, f64> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + T;
    let mut stream = loop {
        match std::net::TcpStream::connect(address) {
            Ok(stream) => break stream,
            // Not listening yet: the process is starting.
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(error) => panic!("nothing serves metrics on {address}: {error}"),
        }
    };
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse().unwrap())
        })
        .collect()
}

#[test]
fn metrics_are_served_in_prometheus_text_format_and_count_what_was_received() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    let sizes = [100_000, 1, 2_500_000];
    for (i, size) in sizes.iter().enumerate() {
        write(&source, &format!("f{i}"), &noise(*size, i as u64));
    }
    let address = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().to_string()
    };
    let receiver = spawn(
        server
            .receive("m", 0)
            .follow()
            .out(work.path().join("out"))
            .metrics(&address),
    );
    // Every sample names the process's channel, role and id.
    let labelled = |name: &str| format!(r#"{name}{{channel="m",role="receiver",id="0"}}"#);
    // Present before anything happened: a rate needs its series.
    let first = scrape(&address);
    assert_eq!(
        first.get(&labelled("redistribute_files_received_total")),
        Some(&0.0),
        "{first:?}"
    );
    succeeded(&run(server.send("m").receivers(1).path(&source), T));
    let deadline = Instant::now() + T;
    let samples = loop {
        let samples = scrape(&address);
        if samples.get(&labelled("redistribute_files_received_total")) == Some(&3.0) {
            break samples;
        }
        assert!(
            Instant::now() < deadline,
            "never counted 3 files: {samples:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let total: usize = sizes.iter().sum();
    assert_eq!(
        samples[&labelled("redistribute_bytes_received_total")],
        total as f64
    );
    assert_eq!(
        samples.get(&labelled("redistribute_files_parked_total")),
        Some(&0.0)
    );
    // The channel's backlog, as `status` has it, read every few seconds.
    let behind =
        r#"redistribute_receiver_files_behind{channel="m",role="receiver",id="0",receiver="0"}"#;
    let samples = loop {
        let samples = scrape(&address);
        if samples.get(behind) == Some(&0.0) {
            break samples;
        }
        assert!(Instant::now() < deadline, "no backlog gauges: {samples:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        samples.get(&labelled("redistribute_channel_bytes_held")),
        Some(&0.0),
        "{samples:?}"
    );
    terminate(&receiver);
    succeeded(&wait(receiver, T));
    assert_same_tree(&source, &work.path().join("out"));
}

#[test]
fn color_follows_the_color_option_and_no_color() {
    let server = Server::start();
    let colored = |extra: &[&str], no_color: bool| {
        let mut command = server.command();
        command.args(["purge", "--channel", "none"]).args(extra);
        if no_color {
            command.env("NO_COLOR", "1");
        }
        let stderr = succeeded(&run(&mut command, T));
        assert!(stderr.contains("purged channel none"), "{stderr}");
        stderr.contains('\u{1b}')
    };
    // Not a terminal: plain unless asked for.
    assert!(!colored(&[], false));
    assert!(colored(&["--color", "always"], false));
    assert!(
        colored(&["--color=always"], true),
        "an explicit choice beats NO_COLOR"
    );
    assert!(!colored(&["--color", "never"], false));
    let usage = run(server.command().args(["--color", "always", "--bogus"]), T);
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains('\u{1b}'));
}

#[test]
fn completions_and_the_manual_page_come_from_the_command_definition() {
    let server = Server::start();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = run(server.command().args(["completions", shell]), T);
        succeeded(&output);
        let script = String::from_utf8_lossy(&output.stdout);
        for word in ["redistribute", "aggregate", "channel"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let output = run(server.command().arg("man"), T);
    succeeded(&output);
    let page = String::from_utf8_lossy(&output.stdout);
    assert!(
        page.contains(".TH redistribute 1") && page.contains("aggregate"),
        "{page}"
    );
    // A page per command, each with examples, environment and exit status;
    // every page the top one points to exists.
    let dir = tempfile::tempdir().unwrap();
    succeeded(&run(
        server.command().arg("man").arg("--dir").arg(dir.path()),
        T,
    ));
    for command in ["send", "receive", "aggregate", "status", "geo-import"] {
        let path = dir.path().join(format!("redistribute-{command}.1"));
        let page = std::fs::read_to_string(&path).unwrap();
        for section in [
            ".SH EXAMPLES",
            ".SH \"ENVIRONMENT\"",
            ".SH \"EXIT STATUS\"",
            "REDIS_URL",
        ] {
            assert!(page.contains(section), "{} lacks {section}", path.display());
        }
    }
    // The exit codes the manual lists are those of docs/operations.md.
    let docs = include_str!("../../docs/operations.md");
    let table = docs
        .split("| exit code | meaning |")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap();
    let mut documented: Vec<&str> = table
        .lines()
        .filter_map(|line| line.strip_prefix("| ")?.split(' ').next())
        .filter(|code| code.chars().all(|c| c.is_ascii_digit()))
        .collect();
    let page = std::fs::read_to_string(dir.path().join("redistribute-send.1")).unwrap();
    let status = page.split(".SH \"EXIT STATUS\"").nth(1).unwrap();
    let mut listed: Vec<&str> = status
        .split(".TP\n\\fB")
        .skip(1)
        .filter_map(|row| row.split('\\').next())
        .collect();
    assert!(
        documented.contains(&"3") && documented.len() >= 5,
        "{documented:?}"
    );
    documented.sort_unstable();
    listed.sort_unstable();
    assert_eq!(
        listed, documented,
        "the manual's exit codes are not the documented ones"
    );
    let top = std::fs::read_to_string(dir.path().join("redistribute.1")).unwrap();
    for named in top.split("redistribute\\-").skip(1) {
        let command: String = named
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '-')
            .collect();
        assert!(
            dir.path()
                .join(format!("redistribute-{command}.1"))
                .exists(),
            "redistribute.1 names redistribute-{command}(1), which was not written"
        );
    }
}

/// `command` run on a terminal: `script` (util-linux, on every Debian)
/// gives it one and records what it drew in `typescript`.
fn on_a_terminal(command: &Command, typescript: &std::path::Path) -> Command {
    let words: Vec<String> = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|word| format!("'{}'", word.to_string_lossy()))
        .collect();
    let mut script = Command::new("script");
    script.args(["-qfec", &words.join(" ")]).arg(typescript);
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => script.env(key, value),
            None => script.env_remove(key),
        };
    }
    script
}

#[test]
fn on_a_terminal_log_lines_are_written_around_the_progress_bar() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("in");
    for i in 0..4 {
        write(&source, &format!("f{i}"), &noise(3 << 20, i));
    }
    let receiver = spawn(server.receive("tty", 0).out(work.path().join("out")));
    let typescript = work.path().join("typescript");
    let send = server
        .send("tty")
        .receivers(1)
        .limit("2MiB")
        .compress("none")
        .chunk_size("256KiB")
        .path(&source);
    succeeded(&run(on_a_terminal(&send, &typescript), T));
    succeeded(&wait(receiver, T));
    let screen = std::fs::read_to_string(&typescript).unwrap();
    assert!(screen.contains("sending"), "no bar was drawn: {screen:?}");
    let lines: Vec<&str> = screen
        .match_indices("INFO")
        .map(|(at, _)| &screen[..at])
        .collect();
    assert!(lines.len() >= 5, "{screen:?}");
    for before in lines {
        // On the terminal line the log line starts on, no bar is left:
        // the bar was wiped first (a carriage return, then clearing).
        let line_start = before.rfind(['\n', '\r']).map_or(0, |at| at + 1);
        assert!(
            !before[line_start..].contains("sending"),
            "a log line drawn over the bar: {:?}",
            &before[before.len().saturating_sub(160)..]
        );
    }
}

#[test]
fn a_receivers_progress_moves_while_a_file_streams_in() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (first, rest) = (noise(300_000, 21), noise(200_000, 22));
    let mut sender = spawn(
        server
            .send("sp")
            .receivers(1)
            .stdin_as("s.log")
            .stdin(Stdio::piped()),
    );
    let mut input = sender.stdin.take().unwrap();
    std::io::Write::write_all(&mut input, &first).unwrap();
    let typescript = work.path().join("typescript");
    let out = work.path().join("out");
    let receive = server.receive("sp", 0).out(&out);
    let receiver = spawn(on_a_terminal(&receive, &typescript));
    // The first part arrives and shows in the bar before the file ends.
    wait_for_text(&typescript, "292.97 KiB");
    std::io::Write::write_all(&mut input, &rest).unwrap();
    drop(input);
    succeeded(&wait(sender, T));
    succeeded(&wait(receiver, T));
    let screen = std::fs::read_to_string(&typescript).unwrap();
    let done = screen
        .find("received s.log")
        .expect("the file was received");
    assert!(screen[..done].contains("292.97 KiB"), "{screen:?}");
    assert_eq!(
        std::fs::read(out.join("s.log")).unwrap(),
        [first, rest].concat()
    );
}

#[test]
fn a_receiver_shows_a_bar_per_file_with_its_size_when_the_sender_knew_it() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let line = [vec![b'y'; 8191], vec![b'\n']].concat();
    let logs = write(
        work.path(),
        "long-name-of-a-daily-access.log",
        &line.repeat(512),
    );
    let sender = spawn(
        server
            .send("bars")
            .receivers(1)
            .limit("1MiB")
            .compress("none")
            .path(&logs),
    );
    let typescript = work.path().join("typescript");
    let receive = server
        .receive("bars", 0)
        .exec("while IFS= read -r line; do sleep 0.004; done");
    let receiver = spawn(on_a_terminal(&receive, &typescript));
    // The file's own bar, named in a shortened form, counts towards its size.
    wait_for_text(&typescript, "/4.00 MiB");
    succeeded(&wait(sender, T));
    succeeded(&wait(receiver, T));
    let screen = std::fs::read_to_string(&typescript).unwrap();
    let done = screen
        .find("received long-name")
        .expect("the file was received");
    let drawn = &screen[..done];
    assert!(drawn.contains("long-name-of…-access.log"), "{screen:?}");
    assert!(drawn.contains("eta "), "{screen:?}");
    assert!(drawn.contains("receiving"), "{screen:?}");
}
