//! A private Redis Cluster on free ports, for the demo, the tests and the
//! benchmark: masters (and replicas) started as [`LocalRedis`] nodes, slots
//! shared out evenly, joined with `CLUSTER MEET`.

use std::io;
use std::time::{Duration, Instant};

use super::local_server::{LocalRedis, LocalRedisOptions};

/// How a [`LocalCluster`] is laid out.
#[derive(Clone, Debug)]
pub struct LocalClusterOptions {
    /// Masters, each with an equal share of the 16384 slots.
    pub masters: usize,
    /// Replicas per master.
    pub replicas_per_master: usize,
    /// How long a silent master has before its replica takes over.
    pub node_timeout: Duration,
    /// `maxmemory` of each node, if any.
    pub maxmemory: Option<u64>,
    /// Speak only TLS, between nodes too (see [`super::LocalTls`]).
    pub tls: Option<super::LocalTls>,
}

impl Default for LocalClusterOptions {
    fn default() -> Self {
        LocalClusterOptions {
            masters: 3,
            replicas_per_master: 0,
            node_timeout: Duration::from_millis(1500),
            maxmemory: None,
            tls: None,
        }
    }
}

/// A running cluster of `redis-server` processes, killed when dropped.
pub struct LocalCluster {
    /// Masters first, then replicas (replica `i` follows master
    /// `i % masters`).
    nodes: Vec<LocalRedis>,
}

impl LocalCluster {
    /// Starts the nodes, shares out the slots, joins them, and waits until
    /// every node reports `cluster_state:ok` and knows every other node.
    pub fn start(options: LocalClusterOptions) -> io::Result<Self> {
        let node = LocalRedisOptions {
            maxmemory: options.maxmemory,
            cluster_node_timeout: Some(options.node_timeout),
            tls: options.tls.clone(),
            ..LocalRedisOptions::default()
        };
        let count = options.masters * (1 + options.replicas_per_master);
        let nodes = (0..count)
            .map(|_| LocalRedis::start(node.clone()))
            .collect::<io::Result<Vec<_>>>()?;
        let cluster = LocalCluster { nodes };
        cluster.assign_slots(options.masters)?;
        let first = cluster.nodes[0].port();
        for other in &cluster.nodes[1..] {
            command(
                other,
                redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg("127.0.0.1")
                    .arg(first),
            )?;
        }
        cluster.wait(|info, nodes| info.contains("cluster_state:ok") && nodes.len() == count)?;
        cluster.attach_replicas(options.masters)?;
        if options.replicas_per_master > 0 {
            cluster.wait_for_replicas_in_sync(options.masters, options.replicas_per_master)?;
        }
        Ok(cluster)
    }

    /// The slots of `masters`, the first nodes: an even share each, the
    /// last taking what is left.
    fn assign_slots(&self, masters: usize) -> io::Result<()> {
        let per_master = 16384 / masters;
        for (i, master) in self.nodes[..masters].iter().enumerate() {
            let first = i * per_master;
            let last = if i + 1 == masters {
                16383
            } else {
                first + per_master - 1
            };
            let slots: Vec<usize> = (first..=last).collect();
            command(master, redis::cmd("CLUSTER").arg("ADDSLOTS").arg(&slots))?;
        }
        Ok(())
    }

    /// Makes every node after the first `masters` a replica of one of
    /// them, in turn, and waits until the cluster sees them so.
    fn attach_replicas(&self, masters: usize) -> io::Result<()> {
        for (i, replica) in self.nodes[masters..].iter().enumerate() {
            let master = &self.nodes[i % masters];
            let id: String = query(master, redis::cmd("CLUSTER").arg("MYID"))?;
            command(replica, redis::cmd("CLUSTER").arg("REPLICATE").arg(id))?;
        }
        let (count, replicas) = (self.nodes.len(), self.nodes.len() - masters);
        self.wait(|info, nodes| {
            info.contains("cluster_state:ok")
                && nodes.len() == count
                && nodes.iter().filter(|l| l.contains("slave")).count() == replicas
        })
    }

    /// Waits until the replicas are in sync and streaming (after a
    /// diskless sync a master holds writes back until its replica's first
    /// acknowledgement): a failover before that would lose everything. A
    /// write to each master that `WAIT` sees replicated proves it.
    fn wait_for_replicas_in_sync(&self, masters: usize, replicas_each: usize) -> io::Result<()> {
        let slots_each = 16384 / masters;
        for (i, master) in self.nodes[..masters].iter().enumerate() {
            let probe = (0..)
                .map(|n| format!("harness-probe-{n}"))
                .find(|key| {
                    let slot: usize = query(master, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
                        .unwrap_or(usize::MAX);
                    slot / slots_each == i.min(masters - 1) && slot < 16384
                })
                .expect("some key hashes to every master");
            // One connection: WAIT counts the replicas that have this
            // connection's writes.
            let (_, acked, _): (redis::Value, usize, redis::Value) = redis::pipe()
                .set(&probe, 1)
                .cmd("WAIT")
                .arg(replicas_each)
                .arg(30_000)
                .del(&probe)
                .query(&mut connect(master)?)
                .map_err(io::Error::other)?;
            if acked < replicas_each {
                return Err(io::Error::other(format!(
                    "replicas did not catch up within 30 s:\n{}",
                    self.log()
                )));
            }
        }
        Ok(())
    }

    /// The URL of the first master: any node's URL reaches the cluster.
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// Every node, masters first.
    pub fn nodes(&self) -> &[LocalRedis] {
        &self.nodes
    }

    /// Every node, to stop, crash or restart one.
    pub fn nodes_mut(&mut self) -> &mut [LocalRedis] {
        &mut self.nodes
    }

    /// Moves `slots` with their keys from master `from` to master `to`
    /// (indexes into [`LocalCluster::nodes`]), one slot at a time, the way
    /// `redis-cli --cluster reshard` does: clients meanwhile meet `ASK`
    /// and `TRYAGAIN`, then `MOVED`.
    pub fn move_slots(
        &self,
        slots: std::ops::Range<u16>,
        from: usize,
        to: usize,
    ) -> io::Result<()> {
        let (source, target) = (&self.nodes[from], &self.nodes[to]);
        let source_id: String = query(source, redis::cmd("CLUSTER").arg("MYID"))?;
        let target_id: String = query(target, redis::cmd("CLUSTER").arg("MYID"))?;
        for slot in slots {
            let set = |node: &LocalRedis, state: &str, id: &str| {
                command(
                    node,
                    redis::cmd("CLUSTER")
                        .arg("SETSLOT")
                        .arg(slot)
                        .arg(state)
                        .arg(id),
                )
            };
            set(target, "IMPORTING", &source_id)?;
            set(source, "MIGRATING", &target_id)?;
            loop {
                let keys: Vec<Vec<u8>> = query(
                    source,
                    redis::cmd("CLUSTER")
                        .arg("GETKEYSINSLOT")
                        .arg(slot)
                        .arg(100),
                )?;
                if keys.is_empty() {
                    break;
                }
                let mut migrate = redis::cmd("MIGRATE");
                migrate
                    .arg("127.0.0.1")
                    .arg(target.port())
                    .arg("")
                    .arg(0)
                    .arg(5000)
                    .arg("REPLACE")
                    .arg("KEYS")
                    .arg(&keys);
                command(source, &migrate)?;
            }
            for node in &self.nodes {
                // Replicas learn it from their masters; any error there is harmless.
                let _ = set(node, "NODE", &target_id);
            }
        }
        Ok(())
    }

    /// The logs of every node, to show when a test fails.
    pub fn log(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- node {} ---\n{}", n.port(), n.log()))
            .collect()
    }

    /// Waits until `ready(CLUSTER INFO, lines of CLUSTER NODES)` holds on
    /// every node, counting only nodes past their handshake.
    fn wait(&self, ready: impl Fn(&str, &[&str]) -> bool) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let all = self.nodes.iter().all(|node| {
                let info: String =
                    query(node, redis::cmd("CLUSTER").arg("INFO")).unwrap_or_default();
                let nodes: String =
                    query(node, redis::cmd("CLUSTER").arg("NODES")).unwrap_or_default();
                let known: Vec<&str> = nodes.lines().filter(|l| !l.contains("handshake")).collect();
                ready(&info, &known)
            });
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "the cluster did not form within 30 s:\n{}",
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn connect(node: &LocalRedis) -> io::Result<redis::Connection> {
    node.client()?
        .get_connection_with_timeout(Duration::from_secs(5))
        .map_err(io::Error::other)
}

fn query<T: redis::FromRedisValue>(node: &LocalRedis, command: &redis::Cmd) -> io::Result<T> {
    command.query(&mut connect(node)?).map_err(io::Error::other)
}

fn command(node: &LocalRedis, command: &redis::Cmd) -> io::Result<()> {
    query::<redis::Value>(node, command).map(|_| ())
}
