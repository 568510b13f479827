//! The private servers a run starts, and the plain commands it sends them.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use runonce_tests::{find_binary, RedisCluster, RedisServer};

/// Fails with installation advice when a Redis binary is missing.
pub(crate) fn check_binaries(cluster: bool) -> anyhow::Result<()> {
    let mut needed = vec!["redis-server", "redis-benchmark"];
    if cluster {
        needed.push("redis-cli");
    }
    for name in needed {
        if find_binary(name).is_none() {
            bail!(
                "`{name}` was not found on PATH: install Redis (Debian/Ubuntu: \
                 apt-get install -y redis-server, which brings redis-benchmark and redis-cli)"
            );
        }
    }
    Ok(())
}

/// A synchronous connection with generous timeouts.
pub(crate) fn connect(url: &str) -> anyhow::Result<redis::Connection> {
    let con = redis::Client::open(url)
        .with_context(|| format!("bad Redis URL {url}"))?
        .get_connection_with_timeout(Duration::from_secs(5))
        .with_context(|| format!("cannot connect to {url}"))?;
    con.set_read_timeout(Some(Duration::from_secs(60)))?;
    Ok(con)
}

/// `FLUSHALL` (synchronous, so freeing the keys is done before the next
/// measurement starts).
pub(crate) fn flushall(url: &str) -> anyhow::Result<()> {
    redis::cmd("FLUSHALL")
        .arg("SYNC")
        .query::<()>(&mut connect(url)?)
        .with_context(|| format!("FLUSHALL on {url}"))
}

/// The text of `INFO <section>`.
pub(crate) fn info(url: &str, section: &str) -> anyhow::Result<String> {
    redis::cmd("INFO")
        .arg(section)
        .query(&mut connect(url)?)
        .with_context(|| format!("INFO {section} on {url}"))
}

/// The server's `EVALSHA` totals (`INFO commandstats`): how long script
/// calls ran on the server, without reading, parsing or answering them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ScriptStats {
    calls: u64,
    usec: u64,
}

impl ScriptStats {
    /// Server µs per `EVALSHA` since `before`; `None` without calls.
    pub(crate) fn us_per_call_since(&self, before: &ScriptStats) -> Option<f64> {
        let calls = self.calls.checked_sub(before.calls)?;
        (calls > 0).then(|| self.usec.saturating_sub(before.usec) as f64 / calls as f64)
    }
}

pub(crate) fn script_stats(url: &str) -> anyhow::Result<ScriptStats> {
    let text = info(url, "commandstats")?;
    let Some(line) = info_field(&text, "cmdstat_evalsha") else {
        return Ok(ScriptStats::default());
    };
    let field = |name: &str| {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| anyhow::anyhow!("no {name} in {line:?}"))
    };
    Ok(ScriptStats {
        calls: field("calls")?,
        usec: field("usec")?,
    })
}

/// One `field:value` line of an `INFO` text.
pub(crate) fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// `used_memory` from `INFO memory`, in bytes.
pub(crate) fn used_memory(url: &str) -> anyhow::Result<u64> {
    let text = info(url, "memory")?;
    info_field(&text, "used_memory")
        .ok_or_else(|| anyhow!("INFO memory has no used_memory"))?
        .parse()
        .context("used_memory is not a number")
}

/// A Redis Cluster on loopback: one cluster-enabled server holding every
/// slot (redis-cli refuses to create a cluster of fewer than 3 primaries),
/// or a `RedisCluster` of three primaries.
pub(crate) struct Cluster {
    _one: Option<RedisServer>,
    _many: Option<RedisCluster>,
    /// Seed URLs for the client.
    pub(crate) seeds: Vec<String>,
    /// URL of every primary, to flush them.
    pub(crate) primaries: Vec<String>,
}

impl Cluster {
    /// A cluster of `primaries` primaries (1, or at least 3), no replicas.
    pub(crate) fn start(primaries: usize) -> anyhow::Result<Cluster> {
        if primaries == 1 {
            let node = RedisServer::builder().cluster_enabled().start();
            let url = node.url();
            let mut con = connect(&url)?;
            let mut add = redis::cmd("CLUSTER");
            add.arg("ADDSLOTS");
            for slot in 0..16384u16 {
                add.arg(slot);
            }
            add.query::<()>(&mut con).context("CLUSTER ADDSLOTS")?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut con)?;
                if info_field(&info, "cluster_state") == Some("ok") {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("the one-node cluster did not reach cluster_state:ok: {info}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            return Ok(Cluster {
                seeds: vec![url.clone()],
                primaries: vec![url],
                _one: Some(node),
                _many: None,
            });
        }
        let cluster = RedisCluster::start(primaries, 0);
        let primaries = cluster.primaries().iter().map(|s| s.url()).collect();
        Ok(Cluster {
            seeds: cluster.seed_urls(),
            primaries,
            _one: None,
            _many: Some(cluster),
        })
    }

    pub(crate) fn flushall(&self) -> anyhow::Result<()> {
        self.primaries.iter().try_for_each(|u| flushall(u))
    }
}

#[cfg(test)]
mod tests {
    use super::info_field;

    #[test]
    fn info_fields() {
        let text = "# Memory\r\nused_memory:1024\r\nused_memory_human:1.00K\r\n";
        assert_eq!(info_field(text, "used_memory"), Some("1024"));
        assert_eq!(info_field(text, "used_memory_human"), Some("1.00K"));
        assert_eq!(info_field(text, "used"), None);
    }
}
