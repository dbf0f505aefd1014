//! Shared test harness: a private redis-server per test, the binary and
//! builders of its commands, and small helpers for files.
#![allow(dead_code)] // each test binary uses a different subset

use std::ffi::OsStr;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use redistribute_transfer::redis::{
    DelayProxy, DelayProxyOptions, LocalCluster, LocalClusterOptions, LocalRedis, LocalRedisOptions,
};

pub mod killer;

/// A redis-server for one test; its log is printed if the test fails.
pub struct Server(pub LocalRedis);

impl Server {
    /// A counter of `channel`'s `meta` hash (`announced`, `finished`...),
    /// as the server says now: 0 while it restarts.
    pub fn meta_counter(&self, channel: &str, field: &str) -> u64 {
        let Ok(mut con) = redis::Client::open(self.url()).and_then(|c| c.get_connection()) else {
            return 0;
        };
        redis::cmd("HGET")
            .arg(format!("rd:{{{channel}}}:meta"))
            .arg(field)
            .query::<Option<u64>>(&mut con)
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    pub fn start() -> Self {
        Self::with(LocalRedisOptions::default())
    }

    pub fn with(options: LocalRedisOptions) -> Self {
        Server(LocalRedis::start(options).expect("redis-server starts (is it installed?)"))
    }

    pub fn url(&self) -> String {
        self.0.url()
    }

    /// A plain connection for inspecting and tampering with keys.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Every key matching `pattern`.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let mut con = self.connection().await;
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut con)
            .await
            .unwrap();
        keys.sort();
        keys
    }

    /// Every (day, member) → visits in the sorted sets `daily:<by>:*`
    /// the aggregation job fills.
    pub fn daily_counts(&self, by: &str) -> std::collections::BTreeMap<(String, String), f64> {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut con = self.connection().await;
            let mut all = std::collections::BTreeMap::new();
            let prefix = format!("daily:{by}:");
            for key in self.keys(&format!("{prefix}*")).await {
                let day = key.trim_start_matches(&prefix).to_owned();
                let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(&mut con)
                    .await
                    .unwrap();
                for (member, score) in members {
                    all.insert((day.clone(), member), score);
                }
            }
            all
        })
    }

    /// The binary, pointed at this server, quiet unless told otherwise.
    pub fn command(&self) -> Command {
        binary(&self.url())
    }

    /// `send --channel CHANNEL` on this server, for the test to go on.
    pub fn send(&self, channel: &str) -> SendCommand {
        SendCommand::new(self.command(), channel)
    }

    /// `receive --channel CHANNEL --id ID` on this server, for the test
    /// to go on.
    pub fn receive(&self, channel: &str, id: impl Display) -> ReceiveCommand {
        ReceiveCommand::new(self.command(), channel, id)
    }

    /// `aggregate --channel CHANNEL --id ID` on this server, for the test
    /// to go on.
    pub fn aggregate(&self, channel: &str, id: impl Display) -> AggregateCommand {
        AggregateCommand::new(self.command(), channel, id)
    }

    /// This server as clients on another host see it: through a proxy
    /// that holds every segment for `delay` in each direction. The
    /// commands built from what this returns go through the proxy; the
    /// harness's own (`keys`, `connection`) still go straight here.
    /// The proxy forwards to the server's port, so it outlives restarts
    /// of the server (`crash`, `start_again`).
    pub fn behind_delay(&self, delay: Duration) -> Remote {
        let options = DelayProxyOptions { delay, rate: None };
        let upstream = ([127, 0, 0, 1], self.0.port()).into();
        let proxy = DelayProxy::start(upstream, options).expect("the delay proxy starts");
        let url = self.url();
        let (host, _port) = url.rsplit_once(':').expect("a URL with a port");
        Remote {
            url: format!("{host}:{}", proxy.port()),
            _proxy: proxy,
        }
    }
}

/// A [`Server`] behind a delay proxy (see [`Server::behind_delay`]); the
/// proxy stops when this is dropped.
pub struct Remote {
    /// The URL clients use: the server's, with the proxy's port.
    url: String,
    _proxy: DelayProxy,
}

impl Remote {
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The binary, pointed at the proxy.
    pub fn command(&self) -> Command {
        binary(&self.url())
    }

    /// `send --channel CHANNEL` through the proxy, for the test to go on.
    pub fn send(&self, channel: &str) -> SendCommand {
        SendCommand::new(self.command(), channel)
    }

    /// `receive --channel CHANNEL --id ID` through the proxy, for the
    /// test to go on.
    pub fn receive(&self, channel: &str, id: impl Display) -> ReceiveCommand {
        ReceiveCommand::new(self.command(), channel, id)
    }
}

/// A Redis Cluster for one test; the logs of its nodes are printed if the
/// test fails.
pub struct Cluster(pub LocalCluster);

impl Cluster {
    /// Three masters, no replicas.
    pub fn start() -> Self {
        Self::with(LocalClusterOptions::default())
    }

    pub fn with(options: LocalClusterOptions) -> Self {
        Cluster(LocalCluster::start(options).expect("a redis-server cluster starts"))
    }

    pub fn url(&self) -> String {
        self.0.url()
    }

    /// The URL of every node.
    pub fn urls(&self) -> Vec<String> {
        self.0.nodes().iter().map(|n| n.url()).collect()
    }

    /// The binary, pointed at the cluster through its first node.
    pub fn command(&self) -> Command {
        binary(&self.url())
    }

    /// `send --channel CHANNEL` on this cluster, for the test to go on.
    pub fn send(&self, channel: &str) -> SendCommand {
        SendCommand::new(self.command(), channel)
    }

    /// `receive --channel CHANNEL --id ID` on this cluster, for the test
    /// to go on.
    pub fn receive(&self, channel: &str, id: impl Display) -> ReceiveCommand {
        ReceiveCommand::new(self.command(), channel, id)
    }

    /// `aggregate --channel CHANNEL --id ID` on this cluster, for the
    /// test to go on.
    pub fn aggregate(&self, channel: &str, id: impl Display) -> AggregateCommand {
        AggregateCommand::new(self.command(), channel, id)
    }

    /// Every key matching `pattern` on every master, with the port of the
    /// node that holds it.
    pub fn keys(&self, pattern: &str) -> Vec<(u16, String)> {
        let mut found = Vec::new();
        for node in self.0.nodes() {
            let Ok(mut con) = redis::Client::open(node.url()).and_then(|c| c.get_connection())
            else {
                continue;
            };
            let role: String = redis::cmd("ROLE")
                .query::<Vec<redis::Value>>(&mut con)
                .ok()
                .and_then(|r| r.into_iter().next())
                .and_then(|v| redis::from_redis_value(v).ok())
                .unwrap_or_default();
            if role != "master" {
                continue;
            }
            let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(&mut con).unwrap();
            found.extend(keys.into_iter().map(|k| (node.port(), k)));
        }
        found.sort();
        found
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- cluster logs ---\n{}", self.0.log());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- redis-server log ---\n{}", self.0.log());
        }
    }
}

/// A small range table for the job's tests: two IPv4 countries and one
/// IPv6 range.
pub const TABLE: &str =
    "1.0.0.0,1.0.0.255,AU\n2.0.0.0,2.255.255.255,FR\n2001:db8::,2001:db8::ffff,JP\n";

/// Addresses the job's tests log, each with the member it counts under
/// with [`TABLE`].
pub const ADDRESSES: [(&str, &str); 5] = [
    ("1.0.0.7", "AU"),
    ("2.3.4.5", "FR"),
    ("9.9.9.9", "unknown"),
    ("2001:db8::42", "JP"),
    ("1.0.0.200", "AU"),
];

/// Writes `files` book-format logs and returns the expected counts per
/// (day, country), computed here independently of the tool.
pub fn book_logs(
    dir: &Path,
    files: usize,
    lines: usize,
) -> std::collections::BTreeMap<(String, String), f64> {
    let mut expected = std::collections::BTreeMap::new();
    for f in 0..files {
        let mut text = String::new();
        for i in 0..lines {
            let pick = (f * 7 + i * 3) % ADDRESSES.len();
            // Days overlap between neighbouring files.
            let day = format!("2026-11-{:02}", 1 + (f + i % 2) % 3);
            text.push_str(&format!("{} {day} GET /page/{i}\n", ADDRESSES[pick].0));
            *expected
                .entry((day, ADDRESSES[pick].1.to_owned()))
                .or_insert(0.0) += 1.0;
        }
        text.push_str("this line is garbage\n\n");
        write(dir, &format!("log{f:02}.txt"), text.as_bytes());
    }
    expected
}

/// The binary, pointed at `url`, quiet unless told otherwise.
pub fn binary(url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_redistribute"));
    command.env("REDIS_URL", url).env_remove("REDISTRIBUTE_LOG");
    command
}

/// What [`run`], [`spawn`] and [`spawn_printing_to`] start: a `Command`,
/// or one of the builders below, with or without a `&mut`; `as_command()`
/// is the `Command` underneath.
pub trait AsCommand {
    fn as_command(&mut self) -> &mut Command;
}

impl AsCommand for Command {
    fn as_command(&mut self) -> &mut Command {
        self
    }
}

impl<C: AsCommand + ?Sized> AsCommand for &mut C {
    fn as_command(&mut self) -> &mut Command {
        (**self).as_command()
    }
}

/// What every builder of a command has: arguments passed through as
/// they are, and the `Command` underneath for its environment and
/// standard streams (`.stdin(...)`, `.env(...)` end the chain there).
macro_rules! command_builder {
    ($builder:ident) => {
        impl $builder {
            /// One more argument, as it is.
            pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
                self.0.arg(arg);
                self
            }

            /// More arguments, as they are.
            pub fn args<I, S>(mut self, args: I) -> Self
            where
                I: IntoIterator<Item = S>,
                S: AsRef<OsStr>,
            {
                self.0.args(args);
                self
            }

            /// `--follow`: do not stop at the end of the input.
            pub fn follow(self) -> Self {
                self.arg("--follow")
            }

            /// `--allow-eviction`: work on a Redis that may evict keys.
            pub fn allow_eviction(self) -> Self {
                self.arg("--allow-eviction")
            }

            /// `--metrics ADDRESS`: serve Prometheus metrics there.
            pub fn metrics(self, address: &str) -> Self {
                self.args(["--metrics", address])
            }
        }

        impl std::ops::Deref for $builder {
            type Target = Command;
            fn deref(&self) -> &Command {
                &self.0
            }
        }

        impl std::ops::DerefMut for $builder {
            fn deref_mut(&mut self) -> &mut Command {
                &mut self.0
            }
        }

        impl AsCommand for $builder {
            fn as_command(&mut self) -> &mut Command {
                &mut self.0
            }
        }
    };
}

/// `send --channel CHANNEL`, then one method per option in the order
/// they are called, so the binary gets them in that order.
pub struct SendCommand(Command);

command_builder!(SendCommand);

impl SendCommand {
    /// `command` (the binary pointed at some Redis, with any options that
    /// come before the subcommand, such as TLS files) told to send into
    /// `channel`.
    pub fn new(mut command: Command, channel: &str) -> Self {
        command.args(["send", "--channel", channel]);
        SendCommand(command)
    }

    /// `--receivers WHO`: a count (`3`) or names (`a,b`).
    pub fn receivers(self, who: impl Display) -> Self {
        self.arg("--receivers").arg(who.to_string())
    }

    /// `--workers`: a work queue.
    pub fn workers(self) -> Self {
        self.arg("--workers")
    }

    /// `--chunk-size SIZE`.
    pub fn chunk_size(self, size: &str) -> Self {
        self.args(["--chunk-size", size])
    }

    /// `--limit SIZE`: the channel's memory budget.
    pub fn limit(self, size: &str) -> Self {
        self.args(["--limit", size])
    }

    /// `--compress CODEC`.
    pub fn compress(self, codec: &str) -> Self {
        self.args(["--compress", codec])
    }

    /// `--settle DURATION`, with `--follow`.
    pub fn settle(self, duration: &str) -> Self {
        self.args(["--settle", duration])
    }

    /// `--split SIZE`, with `--workers`.
    pub fn split(self, size: &str) -> Self {
        self.args(["--split", size])
    }

    /// `--name NAME -`: what comes on stdin, sent as the file `name`.
    pub fn stdin_as(self, name: &str) -> Self {
        self.args(["--name", name, "-"])
    }

    /// A file or directory to send.
    pub fn path(self, path: impl AsRef<OsStr>) -> Self {
        self.arg(path)
    }
}

/// `receive --channel CHANNEL --id ID`, then one method per option in
/// the order they are called, so the binary gets them in that order.
pub struct ReceiveCommand(Command);

command_builder!(ReceiveCommand);

impl ReceiveCommand {
    /// `command` (the binary pointed at some Redis, with any options that
    /// come before the subcommand) told to receive from `channel` as
    /// receiver or worker `id`.
    pub fn new(mut command: Command, channel: &str, id: impl Display) -> Self {
        command
            .args(["receive", "--channel", channel, "--id"])
            .arg(id.to_string());
        ReceiveCommand(command)
    }

    /// `--out DIR`: copies under `dir`.
    pub fn out(self, dir: impl AsRef<OsStr>) -> Self {
        self.arg("--out").arg(dir)
    }

    /// `--stdout`: every file printed. (`Command::stdout`, for where the
    /// process's own output goes, is behind `as_command()`.)
    pub fn stdout(self) -> Self {
        self.arg("--stdout")
    }

    /// `--exec COMMAND`: each file piped into `sh -c COMMAND`.
    pub fn exec(self, command: &str) -> Self {
        self.args(["--exec", command])
    }

    /// `--claim-after DURATION`: a silent worker's file goes to another
    /// after this long.
    pub fn claim_after(self, duration: &str) -> Self {
        self.args(["--claim-after", duration])
    }
}

/// `aggregate --channel CHANNEL --id ID`, then one method per option in
/// the order they are called, so the binary gets them in that order.
pub struct AggregateCommand(Command);

command_builder!(AggregateCommand);

impl AggregateCommand {
    /// `command` (the binary pointed at some Redis, with any options that
    /// come before the subcommand) told to count the logs of `channel` as
    /// worker `id`.
    pub fn new(mut command: Command, channel: &str, id: impl Display) -> Self {
        command
            .args(["aggregate", "--channel", channel, "--id"])
            .arg(id.to_string());
        AggregateCommand(command)
    }

    /// `--table FILE`: the location table, read from a file.
    pub fn table(self, file: impl AsRef<OsStr>) -> Self {
        self.arg("--table").arg(file)
    }

    /// `--log-format FORMAT`.
    pub fn log_format(self, format: &str) -> Self {
        self.args(["--log-format", format])
    }

    /// `--by DIMENSIONS`: what to count (`country,region,city`).
    pub fn by(self, dimensions: &str) -> Self {
        self.args(["--by", dimensions])
    }

    /// `--claim-after DURATION`: a silent worker's file goes to another
    /// after this long.
    pub fn claim_after(self, duration: &str) -> Self {
        self.args(["--claim-after", duration])
    }
}

/// Starts a command in the background with its output captured.
pub fn spawn(mut command: impl AsCommand) -> Running {
    Running(Some(
        command
            .as_command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ))
}

/// Starts a command in the background with its stdout going to the file
/// `path` and its stderr captured.
pub fn spawn_printing_to(mut command: impl AsCommand, path: &Path) -> Running {
    let file = std::fs::File::create(path).unwrap();
    Running(Some(
        command
            .as_command()
            .stdout(file)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ))
}

/// A process a test started: killed when dropped unless it was waited
/// for, so a failing test leaves nothing running behind it.
pub struct Running(Option<Child>);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("not waited for yet")
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("not waited for yet")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs a command to completion with a timeout, returning its output.
pub fn run(mut command: impl AsCommand, timeout: Duration) -> Output {
    let child = command
        .as_command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(child, timeout)
}

/// Waits for a spawned process with a timeout (killing it when exceeded),
/// draining its pipes meanwhile so a chatty child cannot block on them.
pub fn wait(mut running: Running, timeout: Duration) -> Output {
    wait_for(running.0.take().expect("waited for once"), timeout)
}

fn wait_for(child: Child, timeout: Duration) -> Output {
    let pid = child.id();
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match outcome.recv_timeout(timeout) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            let output = outcome.recv().unwrap().unwrap();
            panic!(
                "timed out after {timeout:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// Waits for every receiver, then the sender, and returns their outputs
/// in that order. A receiver that never ends may be waiting on the
/// sender: the sender is then stopped and what it said is shown.
pub fn wait_for_all(
    receivers: Vec<Running>,
    sender: Running,
    timeout: Duration,
) -> (Vec<Output>, Output) {
    let mut sender = Some(sender);
    let mut outputs = Vec::new();
    for receiver in receivers {
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wait(receiver, timeout)));
        outputs.push(outcome.unwrap_or_else(|panic| {
            let mut running = sender.take().expect("one sender");
            running.kill().unwrap();
            let said = wait(running, timeout);
            eprintln!(
                "the sender said:\n{}",
                String::from_utf8_lossy(&said.stderr)
            );
            std::panic::resume_unwind(panic)
        }));
    }
    let sent = wait(sender.expect("still running"), timeout);
    (outputs, sent)
}

/// [`wait_for_all`], asserting that every process succeeded; returns
/// what each receiver said (stderr), in order.
pub fn all_succeeded(receivers: Vec<Running>, sender: Running, timeout: Duration) -> Vec<String> {
    let (received, sent) = wait_for_all(receivers, sender, timeout);
    succeeded(&sent);
    received.iter().map(succeeded).collect()
}

/// The error line a failed run ended with (after its progress log).
pub fn last_line_of_failure(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "unexpectedly succeeded: {stderr}");
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("redistribute: "), "{stderr}");
    last
}

/// Asserts success and returns stderr, showing both streams on failure.
pub fn succeeded(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {stderr}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    stderr
}

/// Asserts failure with exactly one line on stderr and returns that line.
pub fn failed_with_one_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "unexpectedly succeeded; stderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{stderr}");
    assert!(lines[0].starts_with("redistribute: "), "{}", lines[0]);
    lines[0].to_owned()
}

/// Writes `bytes` to `dir/name`, creating parent directories.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Deterministic pseudo-random bytes (incompressible, unlike repeated text).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// `len` bytes of access-log-like text, which compresses several times.
pub fn log_text(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::with_capacity(len + 128);
    while out.len() < len {
        let line = format!(
            "{}.{}.{}.{} - - [0{}/Nov/2026:12:00:00 +0000] \"GET /item/{} HTTP/1.1\" 200 {}\n",
            rng.u8(1..224),
            rng.u8(..),
            rng.u8(..),
            rng.u8(..),
            rng.u8(1..10),
            rng.u32(..500),
            rng.u32(..90_000)
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
    out
}

/// Relative path → contents of every file under `dir`.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let name = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// Asserts two directory trees hold the same files with the same bytes.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let (expected, actual) = (tree(expected), tree(actual));
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        actual.keys().collect::<Vec<_>>(),
        "different file lists"
    );
    for (name, bytes) in &expected {
        assert!(
            actual[name] == *bytes,
            "{name} differs ({} vs {} bytes)",
            bytes.len(),
            actual[name].len()
        );
    }
}

/// PEM files for a private CA, a server certificate for 127.0.0.1 and a
/// client certificate, all signed by the CA, written under `dir`.
pub fn certificates(dir: &std::path::Path) -> [std::path::PathBuf; 5] {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Names of their own: a leaf named like its issuer looks self-signed.
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "redistribute test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let signed = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, &names[0]);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server, server_key) = signed(vec!["127.0.0.1".into(), "localhost".into()]);
    let (client, client_key) = signed(vec!["client".into()]);
    let files = [
        ("ca.pem", ca.pem()),
        ("server.pem", server),
        ("server.key", server_key),
        ("client.pem", client),
        ("client.key", client_key),
    ];
    files.map(|(name, text)| write(dir, name, text.as_bytes()))
}

/// `command` with a client's TLS files: the CA that signed the server's
/// certificate, and the client's own certificate and key.
pub fn with_tls<'c>(
    command: &'c mut Command,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> &'c mut Command {
    command
        .arg("--tls-ca-cert")
        .arg(ca)
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
}
