//! Test harness for the `runonce` workspace.
//!
//! The harness starts **real** `redis-server` processes (no Docker, no mocks) on free
//! loopback ports, each in its own temporary directory, waits until they answer `PING`,
//! and kills them (SIGKILL) when the handle is dropped.
//!
//! * [`RedisServer`] / [`ServerBuilder`]: a single server, optionally with AOF,
//!   a password, as a replica of another server, or cluster-enabled.
//! * [`RedisCluster`]: an N-primary / M-replicas-per-primary Redis Cluster created with
//!   `redis-cli --cluster create`, returned only once every node agrees on the slot map.
//! * [`RedisSentinel`] / [`SentinelBuilder`]: a primary with replicas and three Sentinels
//!   (`redis-server <conf> --sentinel`, each with a writable config file in its temp dir)
//!   monitoring it under one master name, returned only once every Sentinel knows the
//!   replicas and the other Sentinels; [`RedisSentinel::failover`] switches the primary.
//! * [`require_binary`] / [`find_binary`]: locate `redis-server` / `redis-cli` on `PATH`
//!   (overridable with `REDIS_SERVER_BIN` / `REDIS_CLI_BIN`). A missing binary is a hard
//!   failure with installation instructions, never a silent skip.
//! * [`proxy::FaultProxy`]: a TCP proxy that cuts connections and delays replies, for
//!   fault-injection storms.
//! * [`free_port`] and [`wait_until`]: small helpers used by the above and by tests.
//!
//! ```no_run
//! use runonce_tests::RedisServer;
//!
//! let server = RedisServer::start();
//! let _: () = server.query(redis::cmd("SET").arg("k").arg("v"));
//! let v: String = server.query(redis::cmd("GET").arg("k"));
//! assert_eq!(v, "v");
//! assert_eq!(server.command_calls("set"), 1);
//! ```
#![warn(missing_docs)]

mod binary;
mod cluster;
mod port;
pub mod proxy;
mod sentinel;
mod server;
mod wait;

pub use binary::{find_binary, require_binary};
pub use cluster::RedisCluster;
pub use port::free_port;
pub use sentinel::{RedisSentinel, SentinelBuilder};
pub use server::{RedisServer, ServerBuilder};
pub use wait::wait_until;
