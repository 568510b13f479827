//! Shared fixture of the conformance suite: every behaviour test runs once
//! against a real `redis-server` and once against the in-memory store.
#![allow(dead_code)]

use std::sync::Arc;

use runonce::store::memory::MemoryStore;
use runonce::Dedupe;
use runonce_tests::RedisServer;

/// One backend under test.
pub struct Fixture {
    /// A handle with environment `test` and the default prefix.
    pub dedupe: Dedupe,
    /// The server, for Redis-backed runs.
    pub server: Option<RedisServer>,
    memory: Option<Arc<MemoryStore>>,
}

impl Fixture {
    /// A fresh `redis-server` on a free port.
    pub async fn redis() -> Fixture {
        let server = RedisServer::start();
        let dedupe = Dedupe::builder()
            .redis_url(server.url())
            .environment("test")
            .build()
            .await
            .expect("connect to the test redis-server");
        Fixture {
            dedupe,
            server: Some(server),
            memory: None,
        }
    }

    /// A fresh in-memory store.
    pub async fn memory() -> Fixture {
        let store = Arc::new(MemoryStore::new());
        let dedupe = Dedupe::builder()
            .store(store.clone())
            .environment("test")
            .build()
            .await
            .expect("in-memory handle");
        Fixture {
            dedupe,
            server: None,
            memory: Some(store),
        }
    }

    /// Another handle on the same backend with its own environment and
    /// prefix.
    pub async fn handle(&self, environment: &str, prefix: &str) -> Dedupe {
        let b = Dedupe::builder().environment(environment).prefix(prefix);
        let b = match (&self.server, &self.memory) {
            (Some(s), _) => b.redis_url(s.url()),
            (None, Some(m)) => b.store(m.clone()),
            (None, None) => unreachable!("a fixture has a backend"),
        };
        b.build().await.expect("second handle")
    }

    /// Number of records the backend holds (`DBSIZE` on Redis).
    pub fn dbsize(&self) -> u64 {
        match (&self.server, &self.memory) {
            (Some(s), _) => s.dbsize(),
            (None, Some(m)) => m.len() as u64,
            (None, None) => unreachable!(),
        }
    }

    /// Name of the backend, for assertion messages.
    pub fn name(&self) -> &'static str {
        if self.server.is_some() {
            "redis"
        } else {
            "memory"
        }
    }
}

/// Declares each listed `async fn name(f: Fixture)` as two tests,
/// `name::redis` and `name::memory`.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn redis() {
                super::$name(super::common::Fixture::redis().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn memory() {
                super::$name(super::common::Fixture::memory().await).await
            }
        }
    )*};
}

/// Polls `f` every 10 ms until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: std::time::Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
