//! The one-shot commands: `trigger`, `batch`, `lookup`, `complete`,
//! `release`, `reset`.
//!
//! Every command runs in three steps, so bad input never reaches Redis:
//!
//! 1. parse the arguments into library values (key, TTL, payload JSON, scope);
//! 2. rehearse the call on an empty in-process store
//!    ([`Dedupe::in_memory`]), which runs the library's own checks of the
//!    task, group, environment, key and run ID without any I/O;
//! 3. connect and run it against Redis, the whole of it (connecting
//!    included) bounded by `--timeout`.

use std::future::Future;
use std::io::Read;

use runonce::{
    Dedupe, Error, IdempotencyKey, MismatchPolicy, Namespace, Outcome, Record, RunContext, Scope,
    TriggerOptions, Triggered, Ttl,
};
use serde_json::Value;

use crate::cli::{
    BatchArgs, CompleteArgs, Global, KeyArgs, LookupArgs, MismatchArg, OutcomeArg, ReleaseArgs,
    ScopeArg, ScopeArgs, TriggerArgs,
};
use crate::error::CliError;
use crate::output::{BatchItemOut, Changed, Doc, RecordOut, TriggerOut};

/// Extra time past `--timeout` before the command gives up on its own, so
/// the library's more specific timeout errors win when they fire.
const DEADLINE_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// Builds the idempotency key named by `--key` parts and the scope flags.
///
/// `global` (the default) ignores `--parent-run`/`--attempt`; `run` needs
/// `--parent-run` (attempt defaults to 1, and does not change the key);
/// `attempt` needs both.
pub(crate) fn build_key(parts: &[String], scope: &ScopeArgs) -> Result<IdempotencyKey, CliError> {
    let lib = |e: Error| CliError::from_lib(e, "");
    if scope.attempt == Some(0) {
        return Err(CliError::invalid(
            "invalid --attempt 0: attempts count from 1",
        ));
    }
    match scope.scope {
        ScopeArg::Global => IdempotencyKey::create(parts.to_vec(), Scope::Global).map_err(lib),
        ScopeArg::Run => {
            let Some(parent) = &scope.parent_run else {
                return Err(CliError::invalid(
                    "--scope run needs --parent-run ID (the ID of the run the key is scoped to)",
                ));
            };
            let ctx = RunContext::new(parent.clone(), scope.attempt.unwrap_or(1));
            IdempotencyKey::create_in(parts.to_vec(), Scope::Run, &ctx).map_err(lib)
        }
        ScopeArg::Attempt => {
            let (Some(parent), Some(attempt)) = (&scope.parent_run, scope.attempt) else {
                let missing: Vec<&str> = [
                    scope.parent_run.is_none().then_some("--parent-run ID"),
                    scope.attempt.is_none().then_some("--attempt N"),
                ]
                .into_iter()
                .flatten()
                .collect();
                return Err(CliError::invalid(format!(
                    "--scope attempt needs --parent-run ID and --attempt N (missing: {})",
                    missing.join(", ")
                )));
            };
            let ctx = RunContext::new(parent.clone(), attempt);
            IdempotencyKey::create_in(parts.to_vec(), Scope::Attempt, &ctx).map_err(lib)
        }
    }
}

/// Parses `--ttl`.
fn parse_ttl(s: &str) -> Result<Ttl, CliError> {
    s.parse::<Ttl>().map_err(|e| CliError::from_lib(e, ""))
}

/// Parses `--payload`.
fn parse_payload(s: &str) -> Result<Value, CliError> {
    serde_json::from_str(s).map_err(|e| {
        CliError::invalid(format!(
            "invalid payload JSON {:?}: {e}; pass a JSON document, e.g. --payload '{{\"to\":\"a@b.c\"}}'",
            shorten(s)
        ))
    })
}

fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn namespace(task: &str, group: &Option<String>) -> Namespace {
    match group {
        Some(g) => Namespace::group(g.clone()),
        None => Namespace::task(task),
    }
}

/// The in-process store used to rehearse a call: the library's checks,
/// no I/O.
fn rehearsal(g: &Global) -> Dedupe {
    Dedupe::in_memory(g.env.clone())
}

/// Checks the task name (and environment) with the library's own rules.
async fn check_task(g: &Global, task: &str) -> Result<(), CliError> {
    rehearsal(g)
        .trigger(task, TriggerOptions::new())
        .await
        .map(drop)
        .map_err(|e| CliError::from_lib(e, ""))
}

/// Runs `op` against Redis: builds the handle (checking the eviction policy
/// when `check_eviction`), then runs `op`, all within `--timeout`.
async fn with_redis<T, F, Fut>(g: &Global, check_eviction: bool, op: F) -> Result<T, CliError>
where
    F: FnOnce(Dedupe) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let target = g.target();
    let work = async {
        let dedupe = connect(g, check_eviction).await?;
        op(dedupe)
            .await
            .map_err(|e| CliError::from_target(e, &target))
    };
    match tokio::time::timeout(g.timeout + DEADLINE_GRACE, work).await {
        Ok(r) => r,
        Err(_) => Err(CliError::deadline(&target, g.timeout)),
    }
}

/// [`connect`] within `--timeout`.
pub(crate) async fn connect_bounded(g: &Global, check_eviction: bool) -> Result<Dedupe, CliError> {
    match tokio::time::timeout(g.timeout + DEADLINE_GRACE, connect(g, check_eviction)).await {
        Ok(r) => r,
        Err(_) => Err(CliError::deadline(&g.target(), g.timeout)),
    }
}

/// Builds a Redis-backed handle from the global options, warning on stderr
/// when the server may evict records.
pub(crate) async fn connect(g: &Global, check_eviction: bool) -> Result<Dedupe, CliError> {
    let target = g.target();
    let dedupe = target
        .builder()
        .environment(g.env.clone())
        .prefix(g.prefix.clone())
        .timeout(g.timeout)
        .check_eviction(check_eviction)
        .build()
        .await
        .map_err(|e| CliError::from_target(e, &target))?;
    if let Some(policy) = dedupe.eviction_policy() {
        if policy != "noeviction" {
            eprintln!(
                "warning: Redis at {} has maxmemory-policy {policy}: under memory pressure it \
                 can evict dedupe records and allow duplicate runs; set `maxmemory-policy noeviction`",
                target.addr()
            );
        }
    }
    Ok(dedupe)
}

/// `runonce trigger`.
pub(crate) async fn trigger(g: &Global, a: &TriggerArgs) -> Result<Doc, CliError> {
    // 1. Parse.
    let key = if a.key.is_empty() {
        None
    } else {
        Some(build_key(&a.key, &a.scope)?)
    };
    let ttl = a.ttl.as_deref().map(parse_ttl).transpose()?;
    let payload = a.payload.as_deref().map(parse_payload).transpose()?;
    let mut opts = TriggerOptions::new().on_mismatch(match a.on_mismatch {
        MismatchArg::Error => MismatchPolicy::Error,
        MismatchArg::Existing => MismatchPolicy::ReturnExisting,
    });
    if let Some(k) = key {
        opts = opts.key(k);
    }
    if let Some(t) = ttl {
        opts = opts.ttl(t);
    }
    if let Some(p) = &payload {
        opts = opts.payload(p);
    }
    if let Some(gr) = &a.group {
        opts = opts.group(gr.clone());
    }
    if let Some(r) = &a.run_id {
        opts = opts.run_id(r.clone());
    }
    // 2. Rehearse.
    rehearsal(g)
        .trigger(&a.task, opts.clone())
        .await
        .map_err(|e| CliError::from_lib(e, ""))?;
    // 3. Run. Without a key, Redis is not touched (not even to connect).
    let t = with_redis(g, key.is_some(), |d| async move {
        d.trigger(&a.task, opts).await
    })
    .await?;
    Ok(Doc::new(&TriggerOut::from(&t)))
}

/// `runonce lookup`.
pub(crate) async fn lookup(g: &Global, a: &LookupArgs) -> Result<Doc, CliError> {
    let (ns, key) = prepare_key(g, &a.key).await?;
    rehearsal(g)
        .lookup(ns.clone(), key)
        .await
        .map_err(|e| CliError::from_lib(e, ""))?;
    let rec: Option<Record> =
        with_redis(g, true, |d| async move { d.lookup(ns, key).await }).await?;
    Ok(Doc::new(&rec.as_ref().map(RecordOut::from)))
}

/// `runonce inspect`: `lookup` for humans. A key without a record is not
/// an error: it prints `record  none: …` and exits 0, as `lookup` prints
/// `null`.
pub(crate) async fn inspect(g: &Global, a: &LookupArgs) -> Result<Doc, CliError> {
    let (ns, key) = prepare_key(g, &a.key).await?;
    rehearsal(g)
        .lookup(ns.clone(), key)
        .await
        .map_err(|e| CliError::from_lib(e, ""))?;
    let (redis_key, rec) = with_redis(g, true, |d| {
        let ns = ns.clone();
        async move {
            let redis_key = d.storage_key(ns.clone(), &key);
            d.lookup(ns, key).await.map(|r| (redis_key, r))
        }
    })
    .await?;
    Ok(Doc::text(inspect_text(
        &redis_key,
        &key,
        &ns,
        &g.env,
        rec.as_ref(),
    )))
}

/// The report of `runonce inspect`: one `label  value` line each.
fn inspect_text(
    redis_key: &str,
    key: &IdempotencyKey,
    ns: &Namespace,
    env: &str,
    rec: Option<&Record>,
) -> String {
    let mut lines: Vec<(&str, String)> = vec![
        ("key", redis_key.to_owned()),
        ("digest", key.to_hex()),
        match ns {
            Namespace::Group(gr) => ("group", gr.clone()),
            Namespace::Task(t) => ("task", t.clone()),
            _ => ("namespace", format!("{ns:?}")),
        },
        ("environment", env.to_owned()),
    ];
    match rec {
        None => lines.push((
            "record",
            "none: no live record holds this key; the next trigger starts a new run".to_owned(),
        )),
        Some(r) => {
            lines.push(("owner", r.run_id.clone()));
            lines.push(("state", r.state.as_str().to_owned()));
            lines.push(("time left", time_left(r.expires_in_ms)));
            lines.push((
                "created at",
                if r.created_at_ms == 0 {
                    "unknown".to_owned()
                } else {
                    humantime::format_rfc3339_millis(
                        std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.created_at_ms),
                    )
                    .to_string()
                },
            ));
            lines.push((
                "fingerprint",
                r.fingerprint.clone().unwrap_or_else(|| "none".to_owned()),
            ));
        }
    }
    lines
        .iter()
        .map(|(label, value)| format!("{label:<12} {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `59m 58s (3598123 ms)`: whole seconds for humans, and the exact ms.
fn time_left(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let whole = std::time::Duration::from_secs(ms / 1000);
    format!("{} ({ms} ms)", humantime::format_duration(whole))
}

/// `runonce complete`.
pub(crate) async fn complete(g: &Global, a: &CompleteArgs) -> Result<Doc, CliError> {
    let (ns, key) = prepare_key(g, &a.key).await?;
    let outcome = match a.outcome {
        OutcomeArg::Succeeded => Outcome::Succeeded,
        OutcomeArg::Failed => Outcome::Failed,
        OutcomeArg::Canceled => Outcome::Canceled,
    };
    rehearsal(g)
        .complete(ns.clone(), key, &a.run_id, outcome)
        .await
        .map_err(|e| CliError::from_lib(e, ""))?;
    let changed = with_redis(g, true, |d| async move {
        d.complete(ns, key, &a.run_id, outcome).await
    })
    .await?;
    Ok(Doc::new(&Changed { changed }))
}

/// `runonce release`.
pub(crate) async fn release(g: &Global, a: &ReleaseArgs) -> Result<Doc, CliError> {
    let (ns, key) = prepare_key(g, &a.key).await?;
    rehearsal(g)
        .release(ns.clone(), key, &a.run_id)
        .await
        .map_err(|e| CliError::from_lib(e, ""))?;
    let changed = with_redis(
        g,
        true,
        |d| async move { d.release(ns, key, &a.run_id).await },
    )
    .await?;
    Ok(Doc::new(&Changed { changed }))
}

/// `runonce reset`.
pub(crate) async fn reset(g: &Global, a: &KeyArgs) -> Result<Doc, CliError> {
    let (ns, key) = prepare_key(g, a).await?;
    rehearsal(g)
        .reset(ns.clone(), key)
        .await
        .map_err(|e| CliError::from_lib(e, ""))?;
    let changed = with_redis(g, true, |d| async move { d.reset(ns, key).await }).await?;
    Ok(Doc::new(&Changed { changed }))
}

/// Parses and checks the key, task and group of a keyed command.
async fn prepare_key(g: &Global, a: &KeyArgs) -> Result<(Namespace, IdempotencyKey), CliError> {
    let key = build_key(&a.key, &a.scope)?;
    check_task(g, &a.task).await?;
    Ok((namespace(&a.task, &a.group), key))
}

/// One parsed line of `runonce batch` input.
struct BatchItem {
    /// 1-based line number in the input, for messages.
    line: usize,
    /// The options and whether they carry a key, or why the line was
    /// refused (error kind and message).
    parsed: Result<(TriggerOptions, bool), (&'static str, String)>,
}

/// Parses one line of batch input: a JSON object with optional `key`
/// (string or array of strings, Global scope), `ttl` (string) and `payload`
/// (any JSON; `null` means none). Unknown fields are refused, so a typo such
/// as `"kye"` never turns into an unkeyed (always new) run.
///
/// Answers the options and whether they carry a key.
fn parse_batch_line(text: &str) -> Result<(TriggerOptions, bool), (&'static str, String)> {
    let invalid = |m: String| ("invalid_input", m);
    let value: Value = serde_json::from_str(text)
        .map_err(|e| invalid(format!("not valid JSON: {e}: {:?}", shorten(text))))?;
    let Value::Object(fields) = value else {
        return Err(invalid(format!(
            "expected a JSON object like {{\"key\":\"...\",\"ttl\":\"5m\",\"payload\":{{}}}}, got {}",
            shorten(text)
        )));
    };
    let mut opts = TriggerOptions::new();
    let mut has_key = false;
    for (name, v) in fields {
        match (name.as_str(), v) {
            // `null` for a known field means "not given".
            ("key" | "ttl" | "payload", Value::Null) => {}
            ("key", Value::String(s)) => {
                opts = opts.key(global_key(vec![s])?);
                has_key = true;
            }
            ("key", Value::Array(items)) => {
                let parts = items
                    .into_iter()
                    .map(|p| match p {
                        Value::String(s) => Ok(s),
                        other => Err((
                            "invalid_key",
                            format!("key parts must be strings, got {other}"),
                        )),
                    })
                    .collect::<Result<Vec<String>, _>>()?;
                opts = opts.key(global_key(parts)?);
                has_key = true;
            }
            ("key", other) => {
                return Err((
                    "invalid_key",
                    format!("\"key\" must be a string or an array of strings, got {other}"),
                ))
            }
            ("ttl", Value::String(s)) => {
                let ttl = s.parse::<Ttl>().map_err(|e| (e.kind(), e.to_string()))?;
                opts = opts.ttl(ttl);
            }
            ("ttl", other) => {
                return Err((
                    "invalid_ttl",
                    format!("\"ttl\" must be a string such as \"5m\", got {other}"),
                ))
            }
            ("payload", p) => opts = opts.payload(&p),
            (other, _) => return Err(unknown_field(other)),
        }
    }
    Ok((opts, has_key))
}

fn unknown_field(name: &str) -> (&'static str, String) {
    (
        "invalid_input",
        format!("unknown field {name:?}; expected \"key\", \"ttl\" or \"payload\""),
    )
}

fn global_key(parts: Vec<String>) -> Result<IdempotencyKey, (&'static str, String)> {
    IdempotencyKey::create(parts, Scope::Global).map_err(|e| (e.kind(), e.to_string()))
}

/// Reads batch items from `input`: one per non-blank line.
fn read_batch(mut input: impl Read) -> Result<Vec<BatchItem>, CliError> {
    let mut bytes = Vec::new();
    input
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::failure(format!("cannot read stdin: {e}")))?;
    let mut items = Vec::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let parsed = match std::str::from_utf8(raw) {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => parse_batch_line(text),
            Err(e) => Err(("invalid_input", format!("not UTF-8: {e}"))),
        };
        items.push(BatchItem {
            line: i + 1,
            parsed,
        });
    }
    Ok(items)
}

/// `runonce batch`.
pub(crate) async fn batch(g: &Global, a: &BatchArgs, input: impl Read) -> Result<Doc, CliError> {
    let batch_key = a
        .batch_key
        .as_deref()
        .map(|k| IdempotencyKey::create(k, Scope::Global))
        .transpose()
        .map_err(|e| CliError::from_lib(e, ""))?;
    check_task(g, &a.task).await?;
    let items = read_batch(input)?;

    // A refused line keeps its place (and so the index its batch-derived
    // key would use) with options the library refuses without any I/O; its
    // answer is replaced by the parse error below.
    let mut refused: Vec<Option<(&'static str, String)>> = Vec::with_capacity(items.len());
    let mut opts = Vec::with_capacity(items.len());
    let mut any_key = batch_key.is_some();
    for item in items {
        match item.parsed {
            Ok((o, has_key)) => {
                any_key |= has_key;
                refused.push(None);
                opts.push(o);
            }
            Err((kind, msg)) => {
                refused.push(Some((kind, format!("line {}: {msg}", item.line))));
                opts.push(TriggerOptions::with_key(""));
            }
        }
    }

    let answers: Vec<Result<Triggered, Error>> = with_redis(g, any_key, |d| async move {
        match batch_key {
            Some(bk) => d.batch_trigger_with_key(&a.task, bk, opts).await,
            None => d.batch_trigger(&a.task, opts).await,
        }
    })
    .await?;

    let out: Vec<BatchItemOut> = answers
        .iter()
        .zip(refused)
        .map(|(answer, refused)| match (refused, answer) {
            (Some((kind, message)), _) => BatchItemOut::error(kind, &message),
            (None, Ok(t)) => BatchItemOut::Ok(TriggerOut::from(t)),
            (None, Err(e)) => BatchItemOut::error(e.kind(), &e.to_string()),
        })
        .collect();
    Ok(Doc::new(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_report() {
        let key = IdempotencyKey::create("k", Scope::Global).unwrap();
        let none = inspect_text("p:e:t:t:{x}", &key, &Namespace::task("t"), "e", None);
        assert!(none.contains("\nrecord       none: "), "{none}");
        assert!(none.starts_with("key          p:e:t:t:{x}\n"), "{none}");
        let rec = runonce::inspect::parse_record_value(
            // A window of 90,062,500 ms created 1 s before `now`.
            b"HAFXj6kAAAAAAAAAP8a",
            90_061_500,
            1_767_225_601_123,
        )
        .unwrap();
        let text = inspect_text("k", &key, &Namespace::group("g"), "e", Some(&rec));
        for line in [
            "group        g",
            "owner        run_a",
            "state        succeeded",
            "time left    1day 1h 1m 1s (90061500 ms)",
            "created at   2026-01-01T00:00:00.123Z",
            "fingerprint  00000000000000ff",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
        assert_eq!(time_left(5), "5ms");
    }

    #[test]
    fn batch_lines() {
        assert!(parse_batch_line(r#"{"key":"a","ttl":"5m","payload":{"x":1}}"#).is_ok());
        assert!(parse_batch_line(r#"{"key":["a","b"]}"#).is_ok());
        assert!(parse_batch_line(r#"{}"#).is_ok());
        assert!(parse_batch_line(r#"{"key":null,"ttl":null}"#).is_ok());
        assert_eq!(
            parse_batch_line(r#"{"key":""}"#).unwrap_err().0,
            "invalid_key"
        );
        assert_eq!(
            parse_batch_line(r#"{"key":[1]}"#).unwrap_err().0,
            "invalid_key"
        );
        assert_eq!(
            parse_batch_line(r#"{"ttl":"0s"}"#).unwrap_err().0,
            "invalid_ttl"
        );
        assert_eq!(
            parse_batch_line(r#"{"ttl":5}"#).unwrap_err().0,
            "invalid_ttl"
        );
        assert_eq!(
            parse_batch_line(r#"{"kye":"a"}"#).unwrap_err().0,
            "invalid_input"
        );
        assert_eq!(
            parse_batch_line(r#"{"kye":null}"#).unwrap_err().0,
            "invalid_input"
        );
        assert_eq!(parse_batch_line("nope").unwrap_err().0, "invalid_input");
        assert_eq!(parse_batch_line("[1]").unwrap_err().0, "invalid_input");
    }
}
