//! Start-up eviction check: an evicting `maxmemory-policy` logs a warning;
//! strict mode refuses with a typed error.

use std::io::Write;
use std::sync::{Arc, Mutex};

use runonce::{Dedupe, Error};
use runonce_tests::RedisServer;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn build_capturing_logs(url: String, strict: bool) -> (Result<Dedupe, Error>, String) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let built = Dedupe::builder()
        .redis_url(url)
        .strict_eviction_check(strict)
        .build()
        .await;
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    (built, logs)
}

#[tokio::test]
async fn evicting_policy_warns() {
    let server = RedisServer::builder()
        .arg("maxmemory-policy", "allkeys-lru")
        .start();
    let (built, logs) = build_capturing_logs(server.url(), false).await;
    let d = built.expect("non-strict mode still builds");
    assert_eq!(d.eviction_policy(), Some("allkeys-lru"));
    assert!(logs.contains("WARN"), "{logs}");
    assert!(
        logs.contains("allkeys-lru") && logs.contains("noeviction"),
        "{logs}"
    );
}

#[tokio::test]
async fn strict_mode_refuses() {
    let server = RedisServer::builder()
        .arg("maxmemory-policy", "volatile-ttl")
        .start();
    let (built, _) = build_capturing_logs(server.url(), true).await;
    match built {
        Err(Error::UnsafeEvictionPolicy { policy, addr }) => {
            assert_eq!(policy, "volatile-ttl");
            assert_eq!(addr, server.addr());
        }
        other => panic!("expected UnsafeEvictionPolicy, got {other:?}"),
    }
    assert_eq!(server.dbsize(), 0);
}

#[tokio::test]
async fn noeviction_is_quiet_and_strict_mode_builds() {
    let server = RedisServer::start();
    let (built, logs) = build_capturing_logs(server.url(), true).await;
    let d = built.expect("noeviction passes strict mode");
    assert_eq!(d.eviction_policy(), Some("noeviction"));
    assert!(!logs.contains("WARN"), "{logs}");
}
