//! The library's metrics, exported for Prometheus.
//!
//! runonce reports through the `metrics` facade
//! (`runonce_triggers_total{task, outcome}`, `runonce_trigger_seconds`,
//! `runonce_batch_items_total`, ...; see `runonce::telemetry`), so any
//! exporter collects them. This example installs
//! `metrics-exporter-prometheus` (just its recorder: no HTTP stack), serves
//! `PrometheusHandle::render()` on `http://127.0.0.1:<port>/metrics` with a
//! tiny tokio listener, triggers a few tasks, then scrapes its own endpoint
//! and checks the counts.
//!
//! `METRICS_SERVE_SECS=N` (at most 600) keeps serving for N seconds after
//! the check, to point `curl` or a Prometheus at it. `REDIS_URL` sets the
//! Redis (default `redis://127.0.0.1:6379`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{ensure, Context};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use runonce::{MismatchPolicy, TriggerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() -> ExitCode {
    let serve_for = std::env::var("METRICS_SERVE_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        .min(600);
    let serve_for = Duration::from_secs(serve_for);
    runonce_examples::run_for(runonce_examples::DEADLINE + serve_for, story(serve_for))
}

/// Serves `GET /metrics` (any path, really) until the runtime stops.
async fn serve(listener: TcpListener, handle: PrometheusHandle) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            // Read the request head (bounded), then answer.
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            while n < buf.len() {
                match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf[n..])).await
                {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(k)) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            handle.run_upkeep();
            let body = handle.render();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// `GET /metrics` on `addr`: the response body.
async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no HTTP head")?;
    ensure!(head.starts_with("HTTP/1.1 200"), "scrape failed: {head}");
    Ok(body.to_owned())
}

/// The value of the sample `name{labels}` in a Prometheus text body, with
/// every `label="value"` pair of `labels` present (in any order).
fn sample(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let Some(rest) = l.strip_prefix(name) else {
                return false;
            };
            rest.starts_with('{')
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn story(serve_for: Duration) -> anyhow::Result<()> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    runonce::telemetry::describe_metrics();

    // Loopback only, on a free port.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, handle));
    println!("metrics: endpoint http://{addr}/metrics");

    let dedupe = runonce_examples::connect("metrics").await?;
    // 5 keys, each triggered twice: 5 created, 5 cached.
    for round in 0..2 {
        for i in 0..5 {
            dedupe
                .trigger("send-email", TriggerOptions::with_key(format!("user-{i}")))
                .await?;
        }
        println!("metrics: round {round}: triggered send-email for 5 keys");
    }
    // A payload mismatch, answered with the existing run.
    dedupe
        .trigger(
            "charge",
            TriggerOptions::with_key("invoice-1").payload(&serde_json::json!({"cents": 100})),
        )
        .await?;
    let mismatch = dedupe
        .trigger(
            "charge",
            TriggerOptions::with_key("invoice-1").payload(&serde_json::json!({"cents": 200})),
        )
        .await;
    ensure!(mismatch.is_err(), "a changed payload is a mismatch");
    dedupe
        .trigger(
            "charge",
            TriggerOptions::with_key("invoice-1")
                .payload(&serde_json::json!({"cents": 200}))
                .on_mismatch(MismatchPolicy::ReturnExisting),
        )
        .await?;

    let body = scrape(addr).await?;
    for line in body
        .lines()
        .filter(|l| l.starts_with("runonce_triggers_total"))
    {
        println!("  {line}");
    }
    let count = |task, outcome| {
        sample(
            &body,
            "runonce_triggers_total",
            &[("task", task), ("outcome", outcome)],
        )
        .unwrap_or(0.0)
    };
    ensure!(
        count("send-email", "created") == 5.0 && count("send-email", "cached") == 5.0,
        "expected 5 created and 5 cached send-email triggers in:\n{body}"
    );
    ensure!(
        count("charge", "created") == 1.0
            && count("charge", "mismatch") == 1.0
            && count("charge", "cached") == 1.0,
        "expected charge: 1 created, 1 mismatch, 1 cached in:\n{body}"
    );
    ensure!(
        body.contains("runonce_trigger_seconds"),
        "the latency histogram is exported:\n{body}"
    );
    println!(
        "OK: http://{addr}/metrics exported runonce_triggers_total: send-email 5 created + 5 cached; charge 1 created, 1 mismatch, 1 cached"
    );
    if !serve_for.is_zero() {
        println!("metrics: serving for {}s more", serve_for.as_secs());
        tokio::time::sleep(serve_for).await;
    }
    Ok(())
}
