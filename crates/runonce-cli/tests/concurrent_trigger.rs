//! 16 `runonce trigger` processes racing on one key: one run, one creator.

mod common;

use std::process::Stdio;
use std::time::Instant;

use runonce_tests::RedisServer;

#[test]
fn sixteen_processes_one_key_one_run() {
    let server = RedisServer::start();
    let url = server.url();
    for round in 0..3 {
        let key = format!("race-{round}");
        let start = Instant::now();
        let children: Vec<_> = (0..16)
            .map(|_| {
                let mut c = common::runonce();
                c.args(["--redis", &url, "trigger", "--task", "race", "--key", &key])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                c.spawn().expect("spawn runonce")
            })
            .collect();
        let answers: Vec<serde_json::Value> = children
            .into_iter()
            .map(|child| common::wait(child, start).assert_code(0).json())
            .collect();
        let created = answers.iter().filter(|v| v["cached"] == false).count();
        assert_eq!(created, 1, "exactly one cached:false: {answers:#?}");
        let owner = &answers[0]["run_id"];
        assert!(owner.is_string());
        assert!(
            answers
                .iter()
                .all(|v| &v["run_id"] == owner && v["key"] == answers[0]["key"]),
            "all answers name one run: {answers:#?}"
        );
    }
    assert_eq!(server.dbsize(), 3);
}
