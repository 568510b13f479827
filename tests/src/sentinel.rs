//! A Sentinel-managed primary with replicas, made of [`RedisServer`] processes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::server::{info_field, RedisServer, ServerBuilder};
use crate::wait::POLL_INTERVAL;

/// How long start-up (replication plus Sentinel discovery) may take in total. Sentinels
/// find each other through hello messages sent every 2 s, so this is mostly waiting.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Builder for a [`RedisSentinel`]; obtained from [`RedisSentinel::builder`].
#[derive(Debug, Clone)]
#[must_use = "a SentinelBuilder does nothing until .start() is called"]
pub struct SentinelBuilder {
    master_name: String,
    replicas: usize,
    sentinels: usize,
    quorum: usize,
    down_after: Duration,
    failover_timeout: Duration,
    data_node: ServerBuilder,
}

impl SentinelBuilder {
    /// Number of replicas of the primary (default 1).
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n;
        self
    }

    /// Number of Sentinel processes (default 3) and the quorum that must agree the
    /// primary is down (default 2).
    pub fn sentinels(mut self, n: usize, quorum: usize) -> Self {
        self.sentinels = n;
        self.quorum = quorum;
        self
    }

    /// `sentinel down-after-milliseconds` (default 1 s).
    pub fn down_after(mut self, d: Duration) -> Self {
        self.down_after = d;
        self
    }

    /// `sentinel failover-timeout` (default 5 s).
    pub fn failover_timeout(mut self, d: Duration) -> Self {
        self.failover_timeout = d;
        self
    }

    /// The configuration of every data node (primary and replicas), e.g.
    /// `RedisServer::builder().appendonly(true).arg("min-replicas-to-write", "1")`. The
    /// harness adds `--replicaof` for the replicas itself.
    pub fn data_nodes(mut self, builder: ServerBuilder) -> Self {
        self.data_node = builder;
        self
    }

    /// Starts the primary, its replicas (waiting until the primary reports them online)
    /// and the Sentinels, then waits until every Sentinel names the primary, knows every
    /// replica (`SENTINEL REPLICAS`, none down or disconnected) and every other Sentinel
    /// (`SENTINEL SENTINELS`), so a failover can be asked for at once.
    ///
    /// # Panics
    ///
    /// Panics if `redis-server` is missing, if `replicas` or `sentinels` is 0, if the
    /// quorum is 0 or above the number of Sentinels, or if the deployment is not ready
    /// within ~30 s (with the last problem seen and the processes' log tails).
    pub fn start(self) -> RedisSentinel {
        assert!(self.replicas >= 1, "a Sentinel deployment needs a replica");
        assert!(
            self.sentinels >= 1 && (1..=self.sentinels).contains(&self.quorum),
            "quorum {} of {} sentinels",
            self.quorum,
            self.sentinels
        );
        let started = Instant::now();
        let deadline = started + START_DEADLINE;
        let primary = self.data_node.clone().start();
        let mut servers = vec![primary];
        for _ in 0..self.replicas {
            let replica = self.data_node.clone().replica_of(&servers[0]).start();
            servers.push(replica);
        }
        let mut deployment = RedisSentinel {
            master_name: self.master_name.clone(),
            servers,
            sentinels: Vec::new(),
        };
        // Sentinels learn the replicas from the primary's INFO, which they read at once
        // and then only every 10 s: start them once the replicas are online.
        deployment.wait_for(deadline, "replicas online", |d| {
            let info = d.servers[0]
                .try_query::<String>(redis::cmd("INFO").arg("replication"))
                .map_err(|e| e.to_string())?;
            let online = info
                .lines()
                .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                .count();
            if online == self.replicas {
                Ok(())
            } else {
                Err(format!("{online} of {} replicas online", self.replicas))
            }
        });
        let name = &self.master_name;
        let config = format!(
            "sentinel monitor {name} 127.0.0.1 {port} {quorum}\n\
             sentinel down-after-milliseconds {name} {down}\n\
             sentinel failover-timeout {name} {failover}\n",
            port = deployment.servers[0].port(),
            quorum = self.quorum,
            down = self.down_after.as_millis(),
            failover = self.failover_timeout.as_millis(),
        );
        for _ in 0..self.sentinels {
            let sentinel = RedisServer::builder()
                .sentinel_config(config.clone())
                .start();
            deployment.sentinels.push(sentinel);
        }
        let want_port = deployment.servers[0].port();
        deployment.wait_for(deadline, "sentinels to discover everything", |d| {
            d.check_discovered(want_port)
        });
        deployment
    }
}

/// A Sentinel deployment on loopback: one primary, its replicas and the Sentinels
/// (`redis-server <conf> --sentinel`) that monitor it under one master name, each in
/// its own temp dir with a writable `sentinel.conf`. Dropping it kills every process.
///
/// ```no_run
/// use runonce_tests::RedisSentinel;
///
/// let deployment = RedisSentinel::start("mymaster");
/// let before = deployment.primary_port();
/// let after = deployment.failover();
/// assert_ne!(before, after);
/// ```
#[derive(Debug)]
pub struct RedisSentinel {
    master_name: String,
    /// Data nodes; `[0]` started as the primary.
    servers: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
}

impl RedisSentinel {
    /// One primary, one replica and three Sentinels (quorum 2, `down-after-milliseconds
    /// 1000`, `failover-timeout 5000`) monitoring it as `master_name`. See
    /// [`SentinelBuilder::start`].
    pub fn start(master_name: &str) -> RedisSentinel {
        RedisSentinel::builder(master_name).start()
    }

    /// A builder, to change the number of replicas or Sentinels, the timings, or the data
    /// nodes' configuration.
    pub fn builder(master_name: &str) -> SentinelBuilder {
        SentinelBuilder {
            master_name: master_name.to_owned(),
            replicas: 1,
            sentinels: 3,
            quorum: 2,
            down_after: Duration::from_millis(1000),
            failover_timeout: Duration::from_millis(5000),
            data_node: RedisServer::builder(),
        }
    }

    /// The master name the Sentinels monitor.
    pub fn master_name(&self) -> &str {
        &self.master_name
    }

    /// `redis://127.0.0.1:PORT` of every Sentinel.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::url).collect()
    }

    /// The Sentinel processes (they answer `SENTINEL ...` through
    /// [`RedisServer::query`]).
    pub fn sentinels(&self) -> &[RedisServer] {
        &self.sentinels
    }

    /// Mutable access to the Sentinels, e.g. to kill one.
    pub fn sentinels_mut(&mut self) -> &mut [RedisServer] {
        &mut self.sentinels
    }

    /// The data nodes (primary and replicas); `[0]` started as the primary, but roles
    /// change on failover: use [`primary`](Self::primary).
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// Mutable access to the data nodes, e.g. to [`kill`](RedisServer::kill) the primary.
    pub fn servers_mut(&mut self) -> &mut [RedisServer] {
        &mut self.servers
    }

    /// The port of the primary as the first Sentinel that answers names it
    /// (`SENTINEL GET-MASTER-ADDR-BY-NAME`).
    ///
    /// # Panics
    ///
    /// Panics if no Sentinel answers.
    pub fn primary_port(&self) -> u16 {
        self.sentinels
            .iter()
            .find_map(|s| self.master_port_of(s).ok())
            .expect("no sentinel answers SENTINEL GET-MASTER-ADDR-BY-NAME")
    }

    /// The data node that Sentinel names the primary.
    ///
    /// # Panics
    ///
    /// See [`primary_port`](Self::primary_port); also panics if that port is not one of
    /// this deployment's data nodes.
    pub fn primary(&self) -> &RedisServer {
        let port = self.primary_port();
        self.servers
            .iter()
            .find(|s| s.port() == port)
            .unwrap_or_else(|| panic!("sentinel names port {port}, not a data node"))
    }

    /// Asks a Sentinel for a failover (`SENTINEL FAILOVER <name>`, which needs no
    /// agreement) and waits until every Sentinel names a new primary, that node reports
    /// `role:master`, and every other data node has turned into its replica with the link
    /// up (Sentinel turns a demoted primary into a replica several seconds after the
    /// switch). Returns the new primary's port.
    ///
    /// # Panics
    ///
    /// Panics if Sentinel refuses, or the switch is not complete within ~30 s.
    pub fn failover(&self) -> u16 {
        let old = self.primary_port();
        self.start_failover();
        let new = self.wait_for_new_primary(old, START_DEADLINE);
        self.failover_settled(new)
    }

    /// Sends `SENTINEL FAILOVER <name>` to the first Sentinel and returns at once,
    /// retrying for a few seconds while Sentinel answers that a failover is in progress
    /// or that no replica is suitable yet.
    ///
    /// # Panics
    ///
    /// Panics if Sentinel keeps refusing.
    pub fn start_failover(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r: redis::RedisResult<String> = self.sentinels[0].try_query(
                redis::cmd("SENTINEL")
                    .arg("FAILOVER")
                    .arg(&self.master_name),
            );
            match r {
                Ok(_) => return,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!(
                    "SENTINEL FAILOVER {} refused: {e}\n{}",
                    self.master_name,
                    self.log_tails()
                ),
            }
        }
    }

    /// Waits until every Sentinel names a primary other than the one on `old_port`
    /// and that node reports `role:master`; returns its port. Use it after
    /// [`start_failover`](Self::start_failover) or after killing the primary.
    ///
    /// # Panics
    ///
    /// Panics if that does not happen within `within`.
    pub fn wait_for_new_primary(&self, old_port: u16, within: Duration) -> u16 {
        let mut new = 0;
        self.wait_for(Instant::now() + within, "a new primary", |d| {
            new = d.check_switched(old_port)?;
            Ok(())
        });
        new
    }

    /// Waits until every running data node but the primary on `primary_port` is its
    /// replica with the link up; returns `primary_port`.
    ///
    /// # Panics
    ///
    /// Panics if that does not happen within ~30 s.
    pub fn failover_settled(&self, primary_port: u16) -> u16 {
        self.wait_for(
            Instant::now() + START_DEADLINE,
            "replicas to follow the new primary",
            |d| d.check_replicas_of(primary_port),
        );
        primary_port
    }

    fn master_port_of(&self, sentinel: &RedisServer) -> Result<u16, String> {
        let addr: Option<(String, String)> = sentinel
            .try_query(
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(&self.master_name),
            )
            .map_err(|e| format!("sentinel {}: {e}", sentinel.addr()))?;
        let (_, port) = addr.ok_or_else(|| {
            format!(
                "sentinel {} does not know {}",
                sentinel.addr(),
                self.master_name
            )
        })?;
        port.parse()
            .map_err(|_| format!("sentinel {}: bad port {port:?}", sentinel.addr()))
    }

    fn check_switched(&self, old_port: u16) -> Result<u16, String> {
        let mut named = None;
        for s in &self.sentinels {
            if !s.has_child() {
                continue;
            }
            let port = self.master_port_of(s)?;
            if port == old_port {
                return Err(format!("sentinel {} still names port {port}", s.addr()));
            }
            match named {
                None => named = Some(port),
                Some(p) if p != port => {
                    return Err(format!("sentinels disagree: ports {p} and {port}"))
                }
                Some(_) => {}
            }
        }
        let port = named.ok_or("no sentinel is running")?;
        let node = self
            .servers
            .iter()
            .find(|s| s.port() == port)
            .ok_or_else(|| format!("sentinels name port {port}, not a data node"))?;
        let role = role_of(node)?;
        if role != "master" {
            return Err(format!(
                "{} is named primary but reports role {role}",
                node.addr()
            ));
        }
        Ok(port)
    }

    /// Every running data node but `primary_port` is its replica with the link up.
    fn check_replicas_of(&self, primary_port: u16) -> Result<(), String> {
        for node in self.servers.iter().filter(|s| s.has_child()) {
            if node.port() == primary_port {
                continue;
            }
            let info: String = node
                .try_query(redis::cmd("INFO").arg("replication"))
                .map_err(|e| format!("{}: {e}", node.addr()))?;
            let want = primary_port.to_string();
            if info_field(&info, "role") != Some("slave")
                || info_field(&info, "master_port") != Some(want.as_str())
                || info_field(&info, "master_link_status") != Some("up")
            {
                return Err(format!(
                    "{} is not yet an up-to-date replica of port {primary_port}",
                    node.addr()
                ));
            }
        }
        Ok(())
    }

    fn check_discovered(&self, primary_port: u16) -> Result<(), String> {
        let others = self.sentinels.len() - 1;
        let replicas = self.servers.len() - 1;
        for s in &self.sentinels {
            let port = self.master_port_of(s)?;
            if port != primary_port {
                return Err(format!("sentinel {} names port {port}", s.addr()));
            }
            let known: Vec<HashMap<String, String>> = s
                .try_query(
                    redis::cmd("SENTINEL")
                        .arg("REPLICAS")
                        .arg(&self.master_name),
                )
                .map_err(|e| format!("sentinel {}: {e}", s.addr()))?;
            let healthy = known
                .iter()
                .filter(|fields| {
                    let get = |k: &str| fields.get(k);
                    get("flags").is_some_and(|f| {
                        f.split(',')
                            .all(|flag| !matches!(flag, "s_down" | "o_down" | "disconnected"))
                    }) && get("master-link-status").is_some_and(|l| l == "ok")
                })
                .count();
            if healthy != replicas {
                return Err(format!(
                    "sentinel {} knows {healthy} of {replicas} healthy replicas",
                    s.addr()
                ));
            }
            let peers: Vec<redis::Value> = s
                .try_query(
                    redis::cmd("SENTINEL")
                        .arg("SENTINELS")
                        .arg(&self.master_name),
                )
                .map_err(|e| format!("sentinel {}: {e}", s.addr()))?;
            if peers.len() != others {
                return Err(format!(
                    "sentinel {} knows {} of {others} other sentinels",
                    s.addr(),
                    peers.len()
                ));
            }
        }
        Ok(())
    }

    fn wait_for(
        &self,
        deadline: Instant,
        what: &str,
        mut check: impl FnMut(&Self) -> Result<(), String>,
    ) {
        loop {
            let problem = match check(self) {
                Ok(()) => return,
                Err(p) => p,
            };
            if Instant::now() >= deadline {
                panic!(
                    "sentinel deployment {}: timed out waiting for {what}; last problem: \
                     {problem}\n{}",
                    self.master_name,
                    self.log_tails()
                );
            }
            std::thread::sleep(POLL_INTERVAL * 5);
        }
    }

    fn log_tails(&self) -> String {
        let mut out = String::new();
        for node in &self.servers {
            let _ = writeln!(
                out,
                "=== data node {} ===\n{}",
                node.addr(),
                node.log_tail()
            );
        }
        for node in &self.sentinels {
            let _ = writeln!(out, "=== sentinel {} ===\n{}", node.addr(), node.log_tail());
        }
        out
    }
}

fn role_of(node: &RedisServer) -> Result<String, String> {
    let info: String = node
        .try_query(redis::cmd("INFO").arg("replication"))
        .map_err(|e| format!("{}: {e}", node.addr()))?;
    info_field(&info, "role")
        .map(str::to_owned)
        .ok_or_else(|| format!("{}: INFO replication has no role", node.addr()))
}
