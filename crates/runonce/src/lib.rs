#![doc = include_str!("../../../README.md")]
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod config;
mod context;
mod dedupe;
mod error;
pub mod inspect;
mod key;
mod options;
pub mod store;
pub mod telemetry;
mod ttl;

pub use config::{Config, DurabilityConfig, PoolConfig, RedisConfig, SentinelConfig};
pub use context::RunContext;
pub use dedupe::{mint_run_id, Dedupe, DedupeBuilder};
pub use error::Error;
pub use key::{IdempotencyKey, KeyParts, KeySpec, Scope, MAX_KEY_BYTES};
pub use options::{
    FailurePolicy, MismatchPolicy, Namespace, Outcome, Record, RecordState, ShortfallPolicy,
    TriggerOptions, Triggered,
};
pub use ttl::Ttl;
