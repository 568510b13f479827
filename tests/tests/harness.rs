//! Self-test of the `runonce-tests` harness against real `redis-server` processes.

use std::time::Duration;

use runonce_tests::{
    find_binary, free_port, require_binary, wait_until, RedisCluster, RedisServer,
};

fn get(server: &RedisServer, key: &str) -> Option<String> {
    server.query(redis::cmd("GET").arg(key))
}

fn set(server: &RedisServer, key: &str, value: &str) {
    let () = server.query(redis::cmd("SET").arg(key).arg(value));
}

fn pid_of(server: &RedisServer) -> u32 {
    let info = server.info("server");
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .expect("INFO server has process_id")
        .trim()
        .parse()
        .expect("numeric pid")
}

#[test]
fn binaries_are_found() {
    let server = require_binary("redis-server");
    assert!(server.is_file(), "{}", server.display());
    assert!(find_binary("redis-cli").is_some());
    assert_eq!(find_binary("runonce-no-such-binary-xyz"), None);
}

#[test]
#[should_panic(expected = "apt-get install -y redis-server")]
fn missing_binary_panics_with_install_hint() {
    require_binary("runonce-no-such-binary-xyz");
}

#[test]
fn binary_override_env_var() {
    // A variable no other test reads, so setting it cannot disturb parallel tests.
    std::env::set_var("RUNONCE_FAKE_TOOL_BIN", require_binary("redis-server"));
    assert_eq!(
        find_binary("runonce-fake-tool"),
        Some(require_binary("redis-server"))
    );
    std::env::set_var("RUNONCE_FAKE_TOOL_BIN", "/nonexistent/redis-server");
    assert_eq!(find_binary("runonce-fake-tool"), None);
    std::env::remove_var("RUNONCE_FAKE_TOOL_BIN");
}

#[test]
fn free_ports_leave_room_for_cluster_bus() {
    let a = free_port();
    let b = free_port();
    assert_ne!(a, b);
    for p in [a, b] {
        assert!(u32::from(p) + 10_000 <= 65_535);
        std::net::TcpListener::bind(("127.0.0.1", p)).expect("port is free");
        std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).expect("bus port is free");
    }
}

#[test]
fn wait_until_returns_when_condition_holds() {
    let mut calls = 0;
    wait_until(Duration::from_secs(5), "third call", || {
        calls += 1;
        calls == 3
    });
    assert_eq!(calls, 3);
}

#[test]
#[should_panic(expected = "waiting for: the impossible")]
fn wait_until_panics_naming_what() {
    wait_until(Duration::from_millis(50), "the impossible", || false);
}

#[test]
fn basic_server() {
    let server = RedisServer::start();
    assert_eq!(server.addr(), format!("127.0.0.1:{}", server.port()));
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
    assert!(server.dir().join("redis.log").is_file());

    assert_eq!(server.dbsize(), 0);
    assert_eq!(get(&server, "k"), None);
    set(&server, "k", "v");
    assert_eq!(get(&server, "k").as_deref(), Some("v"));
    set(&server, "k2", "v2");
    assert_eq!(server.dbsize(), 2);

    // Default config.
    let policy: Vec<String> = server.query(redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy"));
    assert_eq!(policy, ["maxmemory-policy", "noeviction"]);
    let aof: Vec<String> = server.query(redis::cmd("CONFIG").arg("GET").arg("appendonly"));
    assert_eq!(aof, ["appendonly", "no"]);
    let save: Vec<String> = server.query(redis::cmd("CONFIG").arg("GET").arg("save"));
    assert_eq!(save, ["save", ""]);
    assert!(server.info("replication").contains("role:master"));

    // The url works with a plain client too.
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let v: String = redis::cmd("GET").arg("k2").query(&mut con).unwrap();
    assert_eq!(v, "v2");
}

#[test]
fn extra_args_are_applied() {
    let server = RedisServer::builder()
        .arg("maxmemory-policy", "allkeys-lru")
        .arg("maxmemory", "10mb")
        .start();
    let policy: Vec<String> = server.query(redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy"));
    assert_eq!(policy, ["maxmemory-policy", "allkeys-lru"]);
    let mem: Vec<String> = server.query(redis::cmd("CONFIG").arg("GET").arg("maxmemory"));
    assert_eq!(mem, ["maxmemory", "10485760"]);
}

#[test]
#[should_panic(expected = "failed")]
fn query_panics_with_context() {
    let server = RedisServer::start();
    let _: String = server.query(redis::cmd("NO-SUCH-COMMAND").arg("x"));
}

#[test]
fn command_calls_counts_exactly() {
    let server = RedisServer::start();
    assert_eq!(server.command_calls("set"), 0);
    assert_eq!(server.command_calls("evalsha"), 0);

    let before_set = server.command_calls("set");
    let before_get = server.command_calls("get");
    let mut con = server.connection();
    for i in 0..7 {
        let () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut con)
            .unwrap();
    }
    let _: Option<String> = redis::cmd("GET").arg("k1").query(&mut con).unwrap();
    assert_eq!(server.command_calls("set"), before_set + 7);
    assert_eq!(
        server.command_calls("SET"),
        before_set + 7,
        "case-insensitive"
    );
    assert_eq!(server.command_calls("get"), before_get + 1);

    // query() also counts, exactly once per call.
    set(&server, "x", "y");
    assert_eq!(server.command_calls("set"), before_set + 8);

    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("return 1")
        .query(&mut con)
        .unwrap();
    for _ in 0..2 {
        let one: i64 = redis::cmd("EVALSHA")
            .arg(&sha)
            .arg(0)
            .query(&mut con)
            .unwrap();
        assert_eq!(one, 1);
    }
    assert_eq!(server.command_calls("evalsha"), 2);
    assert_eq!(server.command_calls("script|load"), 1);

    server.reset_stats();
    assert_eq!(server.command_calls("set"), 0);
    assert_eq!(server.command_calls("evalsha"), 0);
    set(&server, "x", "z");
    assert_eq!(server.command_calls("set"), 1);
}

#[test]
fn kill_is_idempotent_and_stops_the_server() {
    let mut server = RedisServer::start();
    set(&server, "k", "v");
    let pid = pid_of(&server);
    assert!(server.is_running());

    server.kill();
    assert!(!server.is_running());
    let err = redis::Client::open(server.url())
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(1));
    assert!(err.is_err(), "connection to a killed server must fail");
    #[cfg(target_os = "linux")]
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "killed process {pid} was not reaped"
    );
    let _ = pid;

    server.kill();
    assert!(!server.is_running());
}

#[test]
fn restart_without_aof_loses_data() {
    let mut server = RedisServer::start();
    let port = server.port();
    set(&server, "k", "v");
    server.kill();
    server.restart();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_eq!(get(&server, "k"), None);
}

#[test]
fn restart_with_aof_keeps_data() {
    let mut server = RedisServer::builder().appendonly(true).start();
    let aof: Vec<String> = server.query(redis::cmd("CONFIG").arg("GET").arg("appendfsync"));
    assert_eq!(aof, ["appendfsync", "always"]);
    let port = server.port();
    let dir = server.dir().to_path_buf();
    let old_pid = pid_of(&server);

    set(&server, "survivor", "yes");
    server.kill();
    assert!(!server.is_running());
    server.restart();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_eq!(server.dir(), dir);
    assert_ne!(pid_of(&server), old_pid);
    assert_eq!(get(&server, "survivor").as_deref(), Some("yes"));

    // Restart while running kills first.
    set(&server, "second", "2");
    server.restart();
    assert_eq!(get(&server, "second").as_deref(), Some("2"));
    assert_eq!(server.dbsize(), 2);
}

#[test]
fn replica_follows_primary() {
    let primary = RedisServer::start();
    let replica = RedisServer::builder().replica_of(&primary).start();
    assert!(replica.info("replication").contains("role:slave"));
    set(&primary, "replicated", "value");
    wait_until(Duration::from_secs(10), "key replicated to replica", || {
        get(&replica, "replicated").as_deref() == Some("value")
    });
    assert_eq!(replica.dbsize(), 1);
}

#[test]
fn password_protected_server() {
    let primary = RedisServer::builder().password("s3cr:t@pw").start();
    assert_eq!(
        primary.url(),
        format!("redis://:s3cr%3At%40pw@127.0.0.1:{}", primary.port())
    );
    set(&primary, "k", "v");
    assert_eq!(primary.dbsize(), 1);

    // The url authenticates.
    let mut con = redis::Client::open(primary.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v, "v");

    // Without the password, commands are refused.
    let mut anon = redis::Client::open(format!("redis://{}", primary.addr()))
        .unwrap()
        .get_connection()
        .unwrap();
    let err = redis::cmd("GET")
        .arg("k")
        .query::<Option<String>>(&mut anon)
        .unwrap_err();
    assert!(err.to_string().contains("NOAUTH"), "{err}");

    // A replica of a password-protected primary authenticates via masterauth.
    let replica = RedisServer::builder().replica_of(&primary).start();
    wait_until(
        Duration::from_secs(10),
        "replica of protected primary syncs",
        || get(&replica, "k").as_deref() == Some("v"),
    );
}

#[test]
fn drop_kills_and_removes_dir() {
    let server = RedisServer::start();
    let pid = pid_of(&server);
    let dir = server.dir().to_path_buf();
    let addr = server.addr();
    drop(server);
    assert!(!dir.exists(), "temp dir {} survived drop", dir.display());
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "{addr} still accepts connections"
    );
    #[cfg(target_os = "linux")]
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} survived drop"
    );
    let _ = pid;
}

fn assert_cluster_ok(cluster: &RedisCluster) {
    for node in cluster.nodes() {
        let info: String = node.query(redis::cmd("CLUSTER").arg("INFO"));
        assert!(info.contains("cluster_state:ok"), "{}: {info}", node.addr());
    }
}

#[test]
fn cluster_three_primaries() {
    let started = std::time::Instant::now();
    let cluster = RedisCluster::start(3, 0);
    eprintln!("3x0 cluster ready after {:.2?}", started.elapsed());
    assert_eq!(cluster.nodes().len(), 3);
    assert_eq!(cluster.primaries().len(), 3);
    assert_eq!(cluster.seed_urls().len(), 3);
    assert!(cluster.seed_urls()[0].starts_with("redis://127.0.0.1:"));
    assert_cluster_ok(&cluster);

    // Every slot is served: a key written on its owner is readable there, and other
    // primaries redirect with MOVED.
    let slot: u16 = cluster.nodes()[0].query(redis::cmd("CLUSTER").arg("KEYSLOT").arg("foo"));
    let mut moved = 0;
    let mut owner = None;
    for node in cluster.primaries() {
        let res: redis::RedisResult<()> = redis::cmd("SET")
            .arg("foo")
            .arg("bar")
            .query(&mut node.connection());
        match res {
            Ok(()) => owner = Some(node),
            Err(e) => {
                assert!(e.to_string().to_lowercase().contains("moved"), "{e}");
                assert!(e.to_string().contains(&slot.to_string()), "{e}");
                moved += 1;
            }
        }
    }
    assert_eq!(moved, 2);
    assert_eq!(
        get(owner.expect("one owner"), "foo").as_deref(),
        Some("bar")
    );
}

#[test]
fn cluster_three_by_one() {
    let started = std::time::Instant::now();
    let mut cluster = RedisCluster::start(3, 1);
    eprintln!("3x1 cluster ready after {:.2?}", started.elapsed());
    assert_eq!(cluster.nodes().len(), 6);
    assert_eq!(cluster.primaries().len(), 3);
    let replicas = cluster
        .nodes()
        .iter()
        .filter(|n| n.info("replication").contains("role:slave"))
        .count();
    assert_eq!(replicas, 3);
    assert_cluster_ok(&cluster);

    // Killing a replica removes nothing from primaries(); killing a primary removes it.
    let replica_idx = cluster
        .nodes()
        .iter()
        .position(|n| n.info("replication").contains("role:slave"))
        .unwrap();
    cluster.nodes_mut()[replica_idx].kill();
    assert_eq!(cluster.primaries().len(), 3);
    let primary_port = cluster.primaries()[0].port();
    let primary_idx = cluster
        .nodes()
        .iter()
        .position(|n| n.port() == primary_port)
        .unwrap();
    cluster.nodes_mut()[primary_idx].kill();
    assert!(cluster.primaries().len() < 3);
}
