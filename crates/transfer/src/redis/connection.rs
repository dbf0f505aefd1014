//! One connection to a single Redis server or to a Redis Cluster, behind
//! one type: every command, script and pipeline goes through the same calls
//! either way.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, RedisError, RedisFuture,
    RedisResult, TlsCertificates, Value,
};

/// How to open connections: to one server, or to a cluster through any of
/// its nodes.
#[derive(Clone)]
pub(crate) enum Connector {
    Single(Box<redis::Client>),
    Cluster(Box<ClusterClient>),
}

/// Timeouts a connection is opened with.
#[derive(Clone, Copy)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
}

impl Connector {
    /// A connector for `nodes`: a cluster when there are several, or when
    /// `cluster` says the one server is a cluster node. `certs` are the
    /// TLS certificates the nodes' addresses carry, which a cluster also
    /// needs for the nodes it discovers.
    pub(crate) fn new(
        nodes: &[ConnectionInfo],
        cluster: bool,
        certs: Option<&TlsCertificates>,
        timeouts: Timeouts,
    ) -> RedisResult<Self> {
        if cluster || nodes.len() > 1 {
            Self::cluster(nodes.to_vec(), certs, timeouts)
        } else {
            Ok(Connector::Single(Box::new(redis::Client::open(
                nodes[0].clone(),
            )?)))
        }
    }

    fn cluster(
        nodes: Vec<ConnectionInfo>,
        certs: Option<&TlsCertificates>,
        timeouts: Timeouts,
    ) -> RedisResult<Self> {
        // Few retries inside the client: ours (on a fresh connection,
        // with backoff and a give-up time) drive recovery instead.
        let mut builder = ClusterClient::builder(nodes)
            .connection_timeout(timeouts.connect)
            .response_timeout(timeouts.response)
            .retries(2);
        if let Some(certs) = certs {
            builder = builder.certs(certs.clone());
        }
        Ok(Connector::Cluster(Box::new(builder.build()?)))
    }

    /// A cluster connector that knows every node `connection` reaches,
    /// with the credentials and TLS settings of `url`: a fresh connection
    /// can then start from any node that is up, not only from the one the
    /// user named, which may be the master that just failed.
    pub(crate) async fn every_node(
        named: &ConnectionInfo,
        connection: &mut Connection,
        certs: Option<&TlsCertificates>,
        timeouts: Timeouts,
    ) -> RedisResult<Self> {
        let Connection::Cluster(con) = connection else {
            return Self::cluster(vec![named.clone()], certs, timeouts);
        };
        let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(con).await?;
        let tls = matches!(named.addr(), ConnectionAddr::TcpTls { .. });
        let mut infos = vec![named.clone()];
        for (host, port) in parse_nodes(&nodes, false) {
            let addr = if tls {
                let ConnectionAddr::TcpTls {
                    insecure,
                    tls_params,
                    ..
                } = named.addr().clone()
                else {
                    unreachable!("checked above")
                };
                ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure,
                    tls_params,
                }
            } else {
                ConnectionAddr::Tcp(host, port)
            };
            infos.push(named.clone().set_addr(addr));
        }
        Self::cluster(infos, certs, timeouts)
    }

    /// Opens a connection whose answers may take up to `response`.
    pub(crate) async fn open(&self, timeouts: Timeouts) -> RedisResult<Connection> {
        let opening = async {
            match self {
                Connector::Single(client) => {
                    let config = AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(timeouts.connect))
                        .set_response_timeout(Some(timeouts.response));
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map(Connection::Single)
                }
                Connector::Cluster(client) => {
                    let config = redis::cluster::ClusterConfig::new()
                        .set_connection_timeout(timeouts.connect)
                        .set_response_timeout(timeouts.response);
                    client
                        .get_async_connection_with_config(config)
                        .await
                        .map(Connection::Cluster)
                }
            }
        };
        // Our own bound: a handshake that stalls must not hang the caller.
        match tokio::time::timeout(timeouts.connect + Duration::from_secs(2), opening).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting took too long",
            ))),
        }
    }
}

/// A connection to one server or to a cluster.
#[derive(Clone)]
pub enum Connection {
    /// One server.
    Single(MultiplexedConnection),
    /// A cluster: commands go to the node owning their keys' slot, and
    /// redirections (MOVED, ASK) are followed.
    Cluster(ClusterConnection),
}

impl Connection {
    /// Runs `command` on the server at `host:port` (a cluster's primary),
    /// or on the one server.
    pub(crate) async fn on_node(
        &mut self,
        command: &Cmd,
        node: &(String, u16),
    ) -> RedisResult<Value> {
        match self {
            Connection::Single(con) => command.query_async(con).await,
            Connection::Cluster(con) => {
                let (host, port) = node.clone();
                con.route_command(
                    command.clone(),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port }),
                )
                .await
            }
        }
    }

    /// The primaries of a cluster (`host`, `port`), from `CLUSTER NODES`;
    /// for one server, itself (an empty host).
    pub(crate) async fn primaries(&mut self) -> RedisResult<Vec<(String, u16)>> {
        match self {
            Connection::Single(_) => Ok(vec![(String::new(), 0)]),
            Connection::Cluster(con) => {
                let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(con).await?;
                Ok(parse_nodes(&nodes, true))
            }
        }
    }
}

/// The addresses of the nodes that are up in a `CLUSTER NODES` answer
/// (`<id> <ip:port@bus[,host]> <flags> <master> <ping> <pong> <epoch>
/// <link> <slots>...`, flags without `fail` or `noaddr`); when
/// `primaries`, only masters that serve slots.
fn parse_nodes(nodes: &str, primaries: bool) -> Vec<(String, u16)> {
    let mut found: Vec<(String, u16)> = nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let address = fields.get(1)?;
            let flags: Vec<&str> = fields.get(2)?.split(',').collect();
            let up = !flags.iter().any(|f| *f == "fail" || *f == "noaddr");
            let serves = flags.contains(&"master") && fields.len() > 8;
            if !up || (primaries && !serves) {
                return None;
            }
            let address = address.split(['@', ',']).next()?;
            let (host, port) = address.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect();
    found.sort();
    found
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(con) => con.req_packed_command(cmd),
            Connection::Cluster(con) => con.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(con) => con.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(con) => con.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(con) => con.get_db(),
            Connection::Cluster(con) => con.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_nodes;

    #[test]
    fn nodes_and_primaries_are_those_that_are_up() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002,host-b master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7003@17003 master,fail - 0 0 3 connected 10923-16383
d4 127.0.0.1:7004@17004 slave a1 0 0 1 connected
e5 127.0.0.1:7005@17005 master - 0 0 0 connected
";
        let node = |port| ("127.0.0.1".to_owned(), port);
        assert_eq!(parse_nodes(nodes, true), vec![node(7001), node(7002)]);
        assert_eq!(
            parse_nodes(nodes, false),
            vec![node(7001), node(7002), node(7004), node(7005)]
        );
    }
}
