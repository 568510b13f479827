//! Bytes per live record: the `used_memory` delta over many records.

use anyhow::{bail, Context as _};
use runonce::TriggerOptions;

use crate::baseline::{bare_key, RUN_ID, TTL_MS};
use crate::measure::on_runtime;
use crate::servers::{flushall, used_memory};
use crate::workloads::{connect, Target, TASK};

/// What fills the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fill {
    /// runonce records from `trigger` without a payload.
    Runonce,
    /// runonce records from `trigger` with a payload (so with a payload
    /// fingerprint).
    RunonceWithPayload,
    /// `SET runonce:<64-hex> <25-char run id> PX <30 days>`.
    BareSet,
}

const CHUNK: u64 = 1000;

/// Flushes the server, writes `records` records the `fill` way and answers
/// the `used_memory` delta per record.
pub(crate) fn bytes_per_record(url: &str, fill: Fill, records: u64) -> anyhow::Result<f64> {
    flushall(url)?;
    let before = used_memory(url)?;
    match fill {
        Fill::BareSet => {
            let mut con = crate::servers::connect(url)?;
            let mut n = 0;
            while n < records {
                let mut pipe = redis::pipe();
                for i in n..(n + CHUNK).min(records) {
                    pipe.cmd("SET")
                        .arg(bare_key(i))
                        .arg(RUN_ID)
                        .arg("PX")
                        .arg(TTL_MS)
                        .ignore();
                }
                pipe.query::<()>(&mut con).context("bare SET pipeline")?;
                n += CHUNK;
            }
        }
        Fill::Runonce | Fill::RunonceWithPayload => {
            let url = url.to_owned();
            on_runtime(0, move || async move {
                let d = connect(&Target::Url(url)).await?;
                let mut n = 0;
                while n < records {
                    let items = (n..(n + CHUNK).min(records))
                        .map(|i| {
                            let o = TriggerOptions::with_key(format!("mem-{i}"));
                            if fill == Fill::RunonceWithPayload {
                                o.payload(&serde_json::json!({ "order": i, "kind": "receipt" }))
                            } else {
                                o
                            }
                        })
                        .collect();
                    for r in d.batch_trigger(TASK, items).await? {
                        if r?.cached {
                            bail!("a fresh key answered cached");
                        }
                    }
                    n += CHUNK;
                }
                Ok(())
            })?;
        }
    }
    let after = used_memory(url)?;
    let keys: u64 = redis::cmd("DBSIZE").query(&mut crate::servers::connect(url)?)?;
    if keys != records {
        bail!("{fill:?}: expected {records} keys, the server holds {keys}");
    }
    Ok(after.saturating_sub(before) as f64 / records as f64)
}
