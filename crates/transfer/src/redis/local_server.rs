//! A private `redis-server` on a free port, for the demo, the tests and the
//! benchmark: nothing here depends on a Redis someone else started.

use std::io;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Ports tried before giving up on starting a server.
const START_ATTEMPTS: u32 = 5;
/// How long a starting server may take to answer: long, since a machine
/// busy with other work (parallel tests, a build) can be slow to start one.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// How a [`LocalRedis`] is configured.
#[derive(Clone, Debug, Default)]
pub struct LocalRedisOptions {
    /// Keep data across restarts (append-only file) instead of none.
    pub persistent: bool,
    /// `maxmemory` in bytes, if any.
    pub maxmemory: Option<u64>,
    /// `maxmemory-policy` with `maxmemory`; `noeviction` unless given.
    pub maxmemory_policy: Option<String>,
    /// Require this password.
    pub password: Option<String>,
    /// Also listen on a unix socket in the server's directory.
    pub unix_socket: bool,
    /// Run as a Redis Cluster node (see [`super::LocalCluster`]), with this
    /// node timeout: how long before a silent master is failed over.
    pub cluster_node_timeout: Option<Duration>,
    /// Speak only TLS, with these PEM files, and ask clients for a
    /// certificate signed by the CA (`tls-auth-clients yes`).
    pub tls: Option<LocalTls>,
}

/// The server side of [`LocalRedisOptions::tls`].
#[derive(Clone, Debug)]
pub struct LocalTls {
    /// The server's certificate; also what the server, and
    /// [`LocalRedis::client`], present as a client (cluster nodes talk to
    /// each other over TLS too).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The CA that signs client certificates.
    pub ca: PathBuf,
}

/// A running `redis-server` child process, killed when dropped.
pub struct LocalRedis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    options: LocalRedisOptions,
}

impl LocalRedis {
    /// Starts `redis-server` from `PATH` on a free loopback port, with its
    /// files in a fresh temporary directory, and waits until it answers.
    pub fn start(options: LocalRedisOptions) -> io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("redistribute-redis-")
            .tempdir()?;
        let mut redis = LocalRedis {
            child: None,
            port: 0,
            dir,
            options,
        };
        // A free port can be taken by another process between our probe
        // and the server's bind (tests run in parallel): try a few.
        let mut attempt = 1;
        loop {
            redis.port = if redis.options.cluster_node_timeout.is_some() {
                free_cluster_port()?
            } else {
                TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()
            };
            match redis.start_again() {
                Ok(()) => return Ok(redis),
                Err(_) if attempt < START_ATTEMPTS => {
                    redis.crash()?;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Starts the server again after [`LocalRedis::stop`], on the same port
    /// and with the same data directory.
    pub fn start_again(&mut self) -> io::Result<()> {
        let mut command = Command::new("redis-server");
        self.listen_on(&mut command);
        command
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg(if self.options.persistent { "yes" } else { "no" })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.limit_and_guard(&mut command);
        self.join_a_cluster(&mut command);
        let child = command.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot start redis-server ({e}); install it with `apt-get install redis-server`"),
            )
        })?;
        self.child = Some(child);
        self.wait_until_ready()
    }

    /// Where the server listens: its port on 127.0.0.1 (with TLS when
    /// asked), and a unix socket when asked.
    fn listen_on(&self, command: &mut Command) {
        match &self.options.tls {
            None => command.arg("--port").arg(self.port.to_string()),
            Some(tls) => command
                .args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca)
                .args(["--tls-auth-clients", "yes"]),
        };
        command.arg("--bind").arg("127.0.0.1");
        if self.options.unix_socket {
            command
                .arg("--unixsocket")
                .arg(self.socket_path())
                .arg("--unixsocketperm")
                .arg("700");
        }
    }

    /// Its `maxmemory` and policy, and its password, when asked.
    fn limit_and_guard(&self, command: &mut Command) {
        if let Some(bytes) = self.options.maxmemory {
            command
                .arg("--maxmemory")
                .arg(bytes.to_string())
                .arg("--maxmemory-policy")
                .arg(
                    self.options
                        .maxmemory_policy
                        .as_deref()
                        .unwrap_or("noeviction"),
                );
        }
        if let Some(password) = &self.options.password {
            command.arg("--requirepass").arg(password);
        }
    }

    /// Cluster mode, for a node of a [`super::LocalCluster`].
    fn join_a_cluster(&self, command: &mut Command) {
        let Some(timeout) = self.options.cluster_node_timeout else {
            return;
        };
        if self.options.tls.is_some() {
            // The cluster bus, and the ports nodes announce, are TLS too.
            command.args(["--tls-cluster", "yes", "--tls-replication", "yes"]);
        }
        command
            .args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(self.dir.path().join("nodes.conf"))
            .arg("--cluster-node-timeout")
            .arg(timeout.as_millis().to_string())
            // A replica takes over however long ago it last heard
            // from its master: tests kill masters on purpose.
            .args(["--cluster-replica-validity-factor", "0"])
            .args(["--repl-diskless-sync-delay", "0"]);
    }

    /// Stops the server gracefully (SIGTERM), so a persistent one writes its
    /// data, and waits for it to exit.
    pub fn stop(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            // SAFETY-free: `kill` sends SIGTERM with the `kill` utility.
            Command::new("kill").arg(child.id().to_string()).status()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Kills the server outright (SIGKILL), as a crash would: a persistent
    /// one loses what it had not written to its append-only file yet (up to
    /// a second with `appendfsync everysec`).
    pub fn crash(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// The URL clients use, with the password when one is set.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match &self.options.password {
            Some(password) => format!("{scheme}://:{password}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// A client for the harness's own commands: over TLS with the server's
    /// certificate as its own when the server speaks TLS.
    pub fn client(&self) -> io::Result<redis::Client> {
        let Some(tls) = &self.options.tls else {
            return redis::Client::open(self.url()).map_err(io::Error::other);
        };
        let text = |path: &PathBuf| path.to_string_lossy().into_owned();
        let certs = super::tls::certificates(
            Some(&text(&tls.ca)),
            Some(&text(&tls.cert)),
            Some(&text(&tls.key)),
        )
        .map_err(io::Error::other)?;
        redis::Client::build_with_tls(self.url(), certs).map_err(io::Error::other)
    }

    /// The unix socket path (listened on when `unix_socket` was set).
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The TCP port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log, to show when a test fails.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn wait_until_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().transpose()) {
                let status = status?;
                return Err(io::Error::other(format!(
                    "redis-server exited with {status} at start:\n{}",
                    self.log()
                )));
            }
            let ready = match self.options.tls {
                None => ping(self.port),
                // Plain text gets no answer on a TLS port: the log says.
                Some(_) => self.log().contains("Ready to accept connections"),
            };
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "redis-server did not answer within {} s:\n{}",
                    READY_WITHIN.as_secs(),
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A free port whose cluster bus port (the port plus 10000, the default
/// on every Redis version) is free too.
fn free_cluster_port() -> io::Result<u16> {
    for _ in 0..100 {
        let port = fastrand::u16(20_000..55_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            return Ok(port);
        }
    }
    Err(io::Error::other("no free port pair for a cluster node"))
}

/// Whether something answers a RESP `PING` on the port (any reply, even an
/// authentication error, shows the server is up).
fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 64];
    stream.write_all(b"PING\r\n").is_ok()
        && matches!(stream.read(&mut reply), Ok(n) if n > 0 && !reply.starts_with(b"-LOADING"))
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
