//! A Redis Cluster made of [`RedisServer`] nodes.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::binary::require_binary;
use crate::server::{info_field, RedisServer};
use crate::wait::POLL_INTERVAL;

/// How long `redis-cli --cluster create` plus convergence may take in total.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(30);
/// Log written by `redis-cli --cluster create`, in the first node's dir.
const CREATE_LOG: &str = "cluster-create.log";

/// A running Redis Cluster: `primaries` cluster-enabled [`RedisServer`]s with `replicas`
/// replicas each, on loopback. Dropping it kills all nodes.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

/// One node's view of the cluster, normalized so that views of different nodes compare
/// equal when they agree: `(node id, is_primary, primary id, slots)`.
type View = BTreeSet<(String, bool, String, String)>;

impl RedisCluster {
    /// Starts `primaries * (1 + replicas)` cluster-enabled servers, runs
    /// `redis-cli --cluster create 127.0.0.1:p1 ... --cluster-replicas <replicas>
    /// --cluster-yes`, then polls every node until it reports `cluster_state:ok` with all
    /// 16384 slots assigned, every node knows every other node as `connected` (no `fail`
    /// / `handshake` flags), all nodes agree on roles and the slot map, and every replica
    /// has `master_link_status:up`.
    ///
    /// # Panics
    ///
    /// Panics if `primaries < 3` (the minimum `redis-cli` accepts), if `redis-cli` /
    /// `redis-server` are missing, or if the cluster is not healthy within ~30 s; the
    /// message includes the last observed problem and the tails of the nodes' logs.
    pub fn start(primaries: usize, replicas: usize) -> RedisCluster {
        assert!(
            primaries >= 3,
            "a Redis Cluster needs at least 3 primaries, got {primaries}"
        );
        let cli = require_binary("redis-cli");
        let total = primaries * (1 + replicas);
        let started = Instant::now();
        let deadline = started + CLUSTER_DEADLINE;
        let nodes: Vec<RedisServer> = (0..total)
            .map(|_| RedisServer::builder().cluster_enabled().start())
            .collect();
        let cluster = RedisCluster { nodes };

        // redis-cli output goes to a file (not a pipe) so it can never block on a full pipe.
        let log_path = cluster.nodes[0].dir().join(CREATE_LOG);
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot dup {}: {e}", log_path.display()));
        let mut create = Command::new(&cli);
        create.arg("--cluster").arg("create");
        create.args(cluster.nodes.iter().map(RedisServer::addr));
        create
            .arg("--cluster-replicas")
            .arg(replicas.to_string())
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let mut child = create
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", cli.display()));
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for redis-cli") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`redis-cli --cluster create` did not finish within {CLUSTER_DEADLINE:?}\n\
                     --- redis-cli output ---\n{}\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default(),
                    cluster.log_tails()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        };
        let create_output = std::fs::read_to_string(&log_path).unwrap_or_default();
        // redis-cli can exit 0 after printing an error, so check for "[ERR" as well.
        if !status.success() || create_output.contains("[ERR") {
            panic!(
                "`redis-cli --cluster create` failed ({status})\n--- redis-cli output ---\n\
                 {create_output}\n{}",
                cluster.log_tails()
            );
        }

        loop {
            let last_problem = match cluster.check_converged(primaries, replicas) {
                Ok(()) => return cluster,
                Err(problem) => problem,
            };
            if Instant::now() >= deadline {
                panic!(
                    "cluster of {primaries} primaries x {replicas} replicas not healthy after \
                     {:.1?}; last problem: {last_problem}\n--- redis-cli output ---\n\
                     {create_output}\n{}",
                    started.elapsed(),
                    cluster.log_tails()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// All nodes, in the order they were passed to `redis-cli --cluster create` (with
    /// replicas, `redis-cli` usually makes the first `primaries` nodes the primaries, but
    /// use [`primaries`](Self::primaries) to know the actual roles).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Mutable access to the nodes, e.g. to [`kill`](RedisServer::kill) or
    /// [`restart`](RedisServer::restart) one of them.
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// `redis://127.0.0.1:PORT` for every node, usable as cluster client seeds.
    pub fn seed_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes that are currently primaries according to their own
    /// `INFO replication` (`role:master`). Killed or unreachable nodes are left out.
    pub fn primaries(&self) -> Vec<&RedisServer> {
        self.nodes
            .iter()
            .filter(|node| {
                node.has_child()
                    && node
                        .try_query::<String>(redis::cmd("INFO").arg("replication"))
                        .is_ok_and(|info| info_field(&info, "role") == Some("master"))
            })
            .collect()
    }

    fn check_converged(&self, primaries: usize, replicas: usize) -> Result<(), String> {
        let total = self.nodes.len();
        let mut first_view: Option<(String, View)> = None;
        for node in &self.nodes {
            let addr = node.addr();
            let info: String = node
                .try_query(redis::cmd("CLUSTER").arg("INFO"))
                .map_err(|e| format!("{addr}: CLUSTER INFO failed: {e}"))?;
            for (field, want) in [
                ("cluster_state", "ok".to_owned()),
                ("cluster_slots_assigned", "16384".to_owned()),
                ("cluster_known_nodes", total.to_string()),
                ("cluster_size", primaries.to_string()),
            ] {
                let got = info_field(&info, field);
                if got != Some(want.as_str()) {
                    return Err(format!("{addr}: {field} is {got:?}, want {want}"));
                }
            }

            let nodes_text: String = node
                .try_query(redis::cmd("CLUSTER").arg("NODES"))
                .map_err(|e| format!("{addr}: CLUSTER NODES failed: {e}"))?;
            let view = parse_view(&nodes_text)
                .map_err(|e| format!("{addr}: {e}\nCLUSTER NODES:\n{nodes_text}"))?;
            let n_primaries = view.iter().filter(|(_, primary, _, _)| *primary).count();
            if view.len() != total || n_primaries != primaries {
                return Err(format!(
                    "{addr}: sees {} nodes / {n_primaries} primaries, want {total} / \
                     {primaries}\nCLUSTER NODES:\n{nodes_text}",
                    view.len()
                ));
            }
            match &first_view {
                None => first_view = Some((addr.clone(), view)),
                Some((first_addr, first)) if *first != view => {
                    return Err(format!(
                        "{addr} and {first_addr} disagree on the cluster layout\n\
                         {addr} CLUSTER NODES:\n{nodes_text}"
                    ));
                }
                Some(_) => {}
            }

            let repl: String = node
                .try_query(redis::cmd("INFO").arg("replication"))
                .map_err(|e| format!("{addr}: INFO replication failed: {e}"))?;
            if info_field(&repl, "role") == Some("slave")
                && info_field(&repl, "master_link_status") != Some("up")
            {
                return Err(format!("{addr}: replica link to its primary is not up yet"));
            }
        }
        if replicas > 0 {
            let n_replicas = first_view
                .as_ref()
                .map_or(0, |(_, v)| v.iter().filter(|(_, p, _, _)| !*p).count());
            if n_replicas != primaries * replicas {
                return Err(format!(
                    "{n_replicas} replicas, want {}",
                    primaries * replicas
                ));
            }
        }
        Ok(())
    }

    fn log_tails(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let _ = writeln!(out, "=== node {} ===\n{}", node.addr(), node.log_tail());
        }
        out
    }
}

/// Parses `CLUSTER NODES` into a [`View`], rejecting unhealthy links and flags.
fn parse_view(nodes_text: &str) -> Result<View, String> {
    let mut view = View::new();
    for line in nodes_text.lines().filter(|l| !l.trim().is_empty()) {
        // <id> <ip:port@cport> <flags> <master> <ping-sent> <pong-recv> <config-epoch>
        // <link-state> <slot> <slot> ... <slot>
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return Err(format!("malformed CLUSTER NODES line: {line}"));
        }
        let flags: Vec<&str> = fields[2].split(',').collect();
        if let Some(bad) = flags.iter().find(|f| {
            matches!(
                **f,
                "fail" | "fail?" | "handshake" | "noaddr" | "nofailover"
            )
        }) {
            return Err(format!("node {} has flag {bad}", fields[1]));
        }
        if fields[7] != "connected" {
            return Err(format!("node {} link is {}", fields[1], fields[7]));
        }
        let is_primary = flags.contains(&"master");
        if !is_primary && !flags.contains(&"slave") {
            return Err(format!(
                "node {} has no role yet ({})",
                fields[1], fields[2]
            ));
        }
        view.insert((
            fields[0].to_owned(),
            is_primary,
            fields[3].to_owned(),
            fields[8..].join(" "),
        ));
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::parse_view;

    #[test]
    fn parses_cluster_nodes() {
        let text = "\
a 127.0.0.1:1@11 myself,master - 0 0 1 connected 0-8191\n\
b 127.0.0.1:2@12 master - 0 1 2 connected 8192-16383\n\
c 127.0.0.1:3@13 slave a 0 1 2 connected\n";
        let view = parse_view(text).unwrap();
        assert_eq!(view.len(), 3);
        assert!(view.contains(&("a".into(), true, "-".into(), "0-8191".into())));
        assert!(view.contains(&("c".into(), false, "a".into(), String::new())));
        assert!(parse_view(&text.replace("slave a", "slave,fail? a")).is_err());
        assert!(parse_view(&text.replace("2 connected\n", "2 disconnected\n")).is_err());
    }
}
