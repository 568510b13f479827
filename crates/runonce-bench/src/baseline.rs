//! The baselines that do not go through runonce: `redis-benchmark` on a
//! minimal claim script, and raw redis-rs `SET NX PX`.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use runonce_tests::find_binary;

use crate::measure::{closed_loop, Figures, Sample};

/// The minimal claim script: `SET NX PX`, and `GET` on conflict.
pub(crate) const CLAIM_ONE: &str =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end\n\
     return redis.call('GET', KEYS[1])";

/// The TTL of every baseline record: 30 days, runonce's default window.
pub(crate) const TTL_MS: u64 = 30 * 86_400 * 1000;

/// A 25-character value, as long as a run ID runonce mints.
pub(crate) const RUN_ID: &str = "run_01jbx7c9qz8m4k2v6w3d5";

/// The bare record's key: `runonce:<64 hex>`.
pub(crate) fn bare_key(n: u64) -> String {
    format!("runonce:{n:064x}")
}

/// runonce's claim script, as the library sends it.
pub(crate) const CLAIM_LUA: &str = include_str!("../../../lua/claim.lua");

/// Loads `script` and answers its SHA1.
pub(crate) fn load_script(url: &str, script: &str) -> anyhow::Result<String> {
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(script)
        .query(&mut crate::servers::connect(url)?)
        .context("SCRIPT LOAD")
}

/// What `redis-benchmark` sends. Keys are fresh: `__rand_int__` is a random
/// 12-digit number out of 10^9, drawn anew for every occurrence.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RbCommand<'a> {
    /// `EVALSHA <sha of CLAIM_ONE> 1 runonce:<52 zeros><12 digits> <run id>
    /// <ttl>`: 72-byte keys like a bare `<prefix>:<64-hex>` record.
    ClaimOne { sha: &'a str },
    /// `EVALSHA <sha of claim.lua> <keys> k1..kn v1..vn <ttl>`: runonce's
    /// own script with runonce-shaped keys (65 bytes), as a coalesced call
    /// carries them.
    ClaimLua { sha: &'a str, keys: usize },
    /// `SET runonce:<...> <record> NX PX <ttl> GET`: a native claim, no Lua.
    SetNxGet,
}

/// `redis-benchmark -c <clients> -P <pipeline> -n <requests> <command>`.
/// Figures are per request (a multi-key request counts once).
pub(crate) fn redis_benchmark(
    port: u16,
    clients: usize,
    pipeline: usize,
    requests: u64,
    command: RbCommand<'_>,
) -> anyhow::Result<Figures> {
    let bin = find_binary("redis-benchmark").ok_or_else(|| anyhow!("redis-benchmark not found"))?;
    let bare_key = format!("runonce:{}__rand_int__", "0".repeat(52));
    let runonce_key = format!("runonce:dev:t:bench:{{{}__rand_int__}}", "A".repeat(31));
    let ttl = TTL_MS.to_string();
    // What runonce sends and stores for a minted run ID without a payload
    // and a 30-day window (see the record layout in the library's store
    // module).
    let record = format!("CCafsgA{}", &RUN_ID[4..]);
    let nkeys = match command {
        RbCommand::ClaimLua { keys, .. } => keys.to_string(),
        _ => String::new(),
    };
    let argv: Vec<&str> = match command {
        RbCommand::ClaimOne { sha } => vec!["EVALSHA", sha, "1", &bare_key, RUN_ID, &ttl],
        RbCommand::ClaimLua { sha, keys } => {
            let mut v = vec!["EVALSHA", sha, &nkeys];
            v.extend(std::iter::repeat_n(runonce_key.as_str(), keys));
            v.extend(std::iter::repeat_n(record.as_str(), keys));
            v.push(&ttl);
            v
        }
        RbCommand::SetNxGet => vec!["SET", &bare_key, &record, "NX", "PX", &ttl, "GET"],
    };
    let out = Command::new(&bin)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &clients.to_string(), "-P", &pipeline.to_string()])
        .args(["-n", &requests.to_string(), "-r", "1000000000", "--csv"])
        .args(&argv)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "redis-benchmark failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let figures = parse_csv(&String::from_utf8_lossy(&out.stdout))?;
    // redis-benchmark counts error replies as answers: check that the
    // records were written (the server was flushed before the run; random
    // keys repeat now and then).
    let expected = match command {
        RbCommand::ClaimLua { keys, .. } => requests * keys as u64,
        _ => requests,
    };
    let url = format!("redis://127.0.0.1:{port}");
    let keys: u64 = redis::cmd("DBSIZE").query(&mut crate::servers::connect(&url)?)?;
    if (keys as f64) < 0.95 * expected as f64 {
        bail!(
            "redis-benchmark wrote {keys} keys, expected about {expected}: did the command fail?"
        );
    }
    Ok(figures)
}

/// Parses `redis-benchmark --csv`: a header line naming the columns, then
/// one line per test.
fn parse_csv(text: &str) -> anyhow::Result<Figures> {
    let rows: Vec<Vec<String>> = text
        .lines()
        .filter(|l| l.starts_with('"'))
        .map(|l| {
            l.trim()
                .trim_matches('"')
                .split("\",\"")
                .map(str::to_owned)
                .collect()
        })
        .collect();
    let [header, data, ..] = rows.as_slice() else {
        bail!("unexpected redis-benchmark output: {text:?}");
    };
    let col = |name: &str| -> anyhow::Result<f64> {
        let i = header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow!("redis-benchmark output has no {name} column: {text:?}"))?;
        data.get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("bad {name} in redis-benchmark output: {text:?}"))
    };
    let figures = Figures {
        ops_per_sec: col("rps")?,
        p50_us: col("p50_latency_ms")? * 1000.0,
        p99_us: col("p99_latency_ms")? * 1000.0,
    };
    if figures.ops_per_sec <= 0.0 {
        bail!("redis-benchmark reported no throughput: {text:?}");
    }
    Ok(figures)
}

/// Raw redis-rs `SET <key> <run id> NX PX <ttl>` with fresh keys from
/// `concurrency` tasks sharing one multiplexed connection (as runonce
/// does).
pub(crate) async fn raw_set(
    url: String,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Sample> {
    let conn = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    closed_loop(concurrency, warmup, duration, move |n| {
        let mut conn = conn.clone();
        async move {
            let set: Option<String> = redis::cmd("SET")
                .arg(bare_key(n))
                .arg(RUN_ID)
                .arg("NX")
                .arg("PX")
                .arg(TTL_MS)
                .query_async(&mut conn)
                .await?;
            if set.is_none() {
                bail!("SET NX found a fresh key taken");
            }
            Ok(1)
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_benchmark_csv() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                    \"EVALSHA abc 1 k v 1\",\"81433.22\",\"0.379\",\"0.112\",\"0.287\",\"0.687\",\"0.887\",\"4.911\"\n";
        let f = parse_csv(text).unwrap();
        assert_eq!(f.ops_per_sec, 81433.22);
        assert!((f.p50_us - 287.0).abs() < 1e-9);
        assert!((f.p99_us - 887.0).abs() < 1e-9);
        assert!(parse_csv("garbage").is_err());
    }

    #[test]
    fn bare_keys_are_72_bytes() {
        assert_eq!(bare_key(7).len(), "runonce:".len() + 64);
        assert_eq!(RUN_ID.len(), runonce::mint_run_id().len());
    }
}
