//! The claim script itself, called directly: both of its paths (SET NX GET
//! on Redis 7.0 and later, SET NX then GET on Redis 6.2) answer alike and
//! write alike, with one TTL for all items or one per item.

use redis::Value;
use runonce_tests::RedisServer;

const CLAIM: &str = include_str!("../../lua/claim.lua");
/// The line that picks the path.
const PICK: &str = "local nx_get = redis.REDIS_VERSION_NUM ~= nil";

/// The script with its path forced: `true` SET NX GET, `false` the Redis
/// 6.2 path.
fn script(nx_get: bool) -> String {
    assert!(CLAIM.contains(PICK), "claim.lua no longer has {PICK:?}");
    CLAIM.replace(PICK, &format!("local nx_get = {nx_get}"))
}

/// The reply with the clock fields blanked: `{record, pttl, now}` becomes
/// `{record, "pttl ok", "now"}` after checking `0 < pttl <= max_ttl`.
fn shape(v: Value, max_ttl: i64) -> Value {
    match v {
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| match item {
                    Value::Array(held) => {
                        let [record, Value::Int(pttl), Value::Int(now)] =
                            <[Value; 3]>::try_from(held)
                                .unwrap_or_else(|h| panic!("held item has 3 fields: {h:?}"))
                        else {
                            panic!("held item is {{record, pttl, now}}");
                        };
                        assert!(pttl > 0 && pttl <= max_ttl, "pttl {pttl}");
                        assert!(now > 1_700_000_000_000, "now {now} is ms since the epoch");
                        Value::Array(vec![
                            record,
                            Value::SimpleString("pttl ok".into()),
                            Value::SimpleString("now".into()),
                        ])
                    }
                    other => other,
                })
                .collect(),
        ),
        other => other,
    }
}

/// Runs `script` on keys `<prefix>:<name>` with `argv`.
fn eval(server: &RedisServer, script: &str, prefix: &str, names: &[&str], argv: &[&str]) -> Value {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(names.len());
    for n in names {
        cmd.arg(format!("{prefix}:{n}"));
    }
    cmd.arg(argv);
    server.query(&mut cmd)
}

fn pttl(server: &RedisServer, key: &str) -> i64 {
    server.query(redis::cmd("PTTL").arg(key))
}

fn get(server: &RedisServer, key: &str) -> Option<String> {
    server.query(redis::cmd("GET").arg(key))
}

#[test]
fn both_paths_answer_and_write_alike() {
    let server = RedisServer::start();
    let mut answers = Vec::new();
    for (prefix, nx_get) in [("new", true), ("old", false)] {
        let s = script(nx_get);
        let _: () = server.query(
            redis::cmd("SET")
                .arg(format!("{prefix}:held"))
                .arg("H")
                .arg("PX")
                .arg(50_000),
        );

        // All free, one TTL for all: the integer n.
        let all = eval(&server, &s, prefix, &["a", "b"], &["A", "B", "60000"]);
        // Mixed, one TTL per item.
        let mixed = eval(
            &server,
            &s,
            prefix,
            &["c", "held", "d"],
            &["C", "X", "D", "10000", "20000", "30000"],
        );
        // Durable ("w"): the held record is re-written in place.
        let durable = eval(&server, &s, prefix, &["a", "e"], &["Y", "E", "40000", "w"]);

        let key = |n: &str| format!("{prefix}:{n}");
        let written: Vec<Option<String>> = ["a", "b", "c", "d", "e", "held"]
            .iter()
            .map(|n| get(&server, &key(n)))
            .collect();
        for (n, max, min) in [
            ("a", 60_000, 55_000),
            ("b", 60_000, 55_000),
            ("c", 10_000, 5_000),
            ("d", 30_000, 25_000),
            ("e", 40_000, 35_000),
            ("held", 50_000, 45_000),
        ] {
            let t = pttl(&server, &key(n));
            assert!(
                t > min && t <= max,
                "{prefix}: {n} has {t} ms left, expected ({min}, {max}]"
            );
        }
        answers.push((
            prefix,
            shape(all, 60_000),
            shape(mixed, 50_000),
            shape(durable, 60_000),
            written,
        ));
    }

    let (_, all, mixed, durable, written) = &answers[0];
    assert_eq!(*all, Value::Int(2), "every key free: n");
    assert_eq!(
        *mixed,
        Value::Array(vec![
            Value::Int(1),
            Value::Array(vec![
                Value::BulkString(b"H".to_vec()),
                Value::SimpleString("pttl ok".into()),
                Value::SimpleString("now".into()),
            ]),
            Value::Int(1),
        ])
    );
    assert_eq!(
        *durable,
        Value::Array(vec![
            Value::Array(vec![
                Value::BulkString(b"A".to_vec()),
                Value::SimpleString("pttl ok".into()),
                Value::SimpleString("now".into()),
            ]),
            Value::Int(1),
        ])
    );
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        *written,
        vec![
            some("A"),
            some("B"),
            some("C"),
            some("D"),
            some("E"),
            some("H")
        ],
        "a held key keeps its record"
    );
    let (_, all6, mixed6, durable6, written6) = &answers[1];
    assert_eq!(
        (all6, mixed6, durable6, written6),
        (all, mixed, durable, written),
        "the Redis 6.2 path answers and writes as SET NX GET does"
    );
}
