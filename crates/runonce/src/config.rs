//! Configuration of a whole [`DedupeBuilder`] as data: serde, and from
//! environment variables the way deadpool-redis reads `REDIS__URL`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dedupe::{Dedupe, DedupeBuilder};
use crate::error::Error;
use crate::options::ShortfallPolicy;
use crate::ttl::Ttl;

/// Everything [`Dedupe::builder`] takes, as plain data. Every field is
/// optional; unset fields keep the builder's defaults. Durations are
/// humantime strings (`5s`, `250ms`, `30d`).
///
/// From the environment ([`Config::from_env`]), each field is a variable
/// named `RUNONCE__` + its path in upper case, `__` between levels:
///
/// | variable | field | example |
/// | --- | --- | --- |
/// | `RUNONCE__REDIS__URL` | `redis.url` | `redis://:pw@10.0.0.5:6379` |
/// | `RUNONCE__REDIS__CLUSTER` | `redis.cluster` (comma-separated) | `redis://a:7000,redis://b:7000` |
/// | `RUNONCE__REDIS__SENTINEL__URLS` | `redis.sentinel.urls` (comma-separated) | `redis://s1:26379,redis://s2:26379` |
/// | `RUNONCE__REDIS__SENTINEL__MASTER` | `redis.sentinel.master` | `mymaster` |
/// | `RUNONCE__ENVIRONMENT` | `environment` | `prod` |
/// | `RUNONCE__PREFIX` | `prefix` | `billing` |
/// | `RUNONCE__DEFAULT_TTL` | `default_ttl` | `7d` |
/// | `RUNONCE__TIMEOUT` | `timeout` | `2s` |
/// | `RUNONCE__POOL__MAX_SIZE` | `pool.max_size` | `32` |
/// | `RUNONCE__DURABILITY__MIN_REPLICAS` | `durability.min_replicas` | `1` |
/// | `RUNONCE__DURABILITY__TIMEOUT` | `durability.timeout` | `100ms` |
/// | `RUNONCE__DURABILITY__ON_SHORTFALL` | `durability.on_shortfall` | `error` or `report` |
/// | `RUNONCE__STRICT_EVICTION_CHECK` | `strict_eviction_check` | `true` |
///
/// An unknown `RUNONCE__…` variable or a bad value is an
/// [`Error::Config`] naming the variable.
///
/// ```
/// use runonce::Config;
/// let config = Config::from_vars([
///     ("RUNONCE__REDIS__URL", "redis://127.0.0.1:6379"),
///     ("RUNONCE__ENVIRONMENT", "prod"),
///     ("RUNONCE__TIMEOUT", "2s"),
/// ])?;
/// assert_eq!(config.environment.as_deref(), Some("prod"));
/// let builder = config.builder()?; // then `.build().await?`
///
/// let err = Config::from_vars([("RUNONCE__TIMEOUT", "soon")]).unwrap_err();
/// assert!(err.to_string().contains("RUNONCE__TIMEOUT"));
/// # Ok::<(), runonce::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Where Redis is: one of `url`, `cluster`, `sentinel`.
    pub redis: RedisConfig,
    /// The environment keys are isolated in (default `dev`).
    pub environment: Option<String>,
    /// The key prefix (default `runonce`).
    pub prefix: Option<String>,
    /// The default window, e.g. `30d` (the default).
    pub default_ttl: Option<String>,
    /// The bound on every backend call, e.g. `5s` (the default).
    pub timeout: Option<String>,
    /// Connection pool settings.
    pub pool: PoolConfig,
    /// Durability (`WAIT`) after every claim.
    pub durability: Option<DurabilityConfig>,
    /// Refuse to start unless `maxmemory-policy` is `noeviction`.
    pub strict_eviction_check: Option<bool>,
}

/// Where Redis is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// One server: `redis://` or `rediss://` URL.
    pub url: Option<String>,
    /// A cluster: seed node URLs.
    pub cluster: Option<Vec<String>>,
    /// Sentinel.
    pub sentinel: Option<SentinelConfig>,
}

/// Sentinel endpoints and the master's name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SentinelConfig {
    /// Sentinel URLs.
    pub urls: Vec<String>,
    /// The master name the sentinels monitor.
    pub master: String,
}

/// Pool settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Connections in the pool (default 16).
    pub max_size: Option<usize>,
}

/// Durability settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DurabilityConfig {
    /// Replica acknowledgements to wait for.
    pub min_replicas: u32,
    /// How long to wait, e.g. `100ms`.
    pub timeout: String,
    /// `error` (default) or `report`.
    #[serde(default)]
    pub on_shortfall: Option<String>,
}

fn bad(var: &str, value: &str, why: impl std::fmt::Display) -> Error {
    Error::Config(format!("{var}={value:?}: {why}"))
}

fn duration(var: &str, value: &str) -> Result<Duration, Error> {
    humantime::parse_duration(value.trim())
        .map_err(|e| bad(var, value, format!("{e}; use e.g. `2s` or `250ms`")))
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Config {
    /// Reads every `RUNONCE__…` variable of the process environment.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), runonce::Error> {
    /// let dedupe = runonce::Config::from_env()?.builder()?.build().await?;
    /// # Ok(()) }
    /// ```
    pub fn from_env() -> Result<Config, Error> {
        Self::from_vars(std::env::vars())
    }

    /// Reads `RUNONCE__…` variables from any list of pairs; other names are
    /// ignored.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Config, Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut c = Config::default();
        let mut sentinel_urls = None;
        let mut sentinel_master = None;
        let mut min_replicas = None;
        let mut d_timeout = None;
        let mut on_shortfall = None;
        for (k, v) in vars {
            let (var, value) = (k.as_ref(), v.as_ref());
            let Some(path) = var.strip_prefix("RUNONCE__") else {
                continue;
            };
            match path {
                "REDIS__URL" => c.redis.url = Some(value.to_owned()),
                "REDIS__CLUSTER" => c.redis.cluster = Some(list(value)),
                "REDIS__SENTINEL__URLS" => sentinel_urls = Some(list(value)),
                "REDIS__SENTINEL__MASTER" => sentinel_master = Some(value.to_owned()),
                "ENVIRONMENT" => c.environment = Some(value.to_owned()),
                "PREFIX" => c.prefix = Some(value.to_owned()),
                "DEFAULT_TTL" => {
                    value.parse::<Ttl>().map_err(|e| bad(var, value, e))?;
                    c.default_ttl = Some(value.to_owned());
                }
                "TIMEOUT" => {
                    duration(var, value)?;
                    c.timeout = Some(value.to_owned());
                }
                "POOL__MAX_SIZE" => {
                    let n: usize = value
                        .trim()
                        .parse()
                        .map_err(|e| bad(var, value, format!("{e}; expected a whole number")))?;
                    c.pool.max_size = Some(n);
                }
                "DURABILITY__MIN_REPLICAS" => {
                    min_replicas =
                        Some(value.trim().parse::<u32>().map_err(|e| {
                            bad(var, value, format!("{e}; expected a whole number"))
                        })?)
                }
                "DURABILITY__TIMEOUT" => {
                    duration(var, value)?;
                    d_timeout = Some(value.to_owned());
                }
                "DURABILITY__ON_SHORTFALL" => {
                    shortfall(value).map_err(|e| bad(var, value, e))?;
                    on_shortfall = Some(value.to_owned());
                }
                "STRICT_EVICTION_CHECK" => {
                    c.strict_eviction_check =
                        Some(match value.trim().to_ascii_lowercase().as_str() {
                            "true" | "1" | "yes" => true,
                            "false" | "0" | "no" => false,
                            _ => return Err(bad(var, value, "expected true or false")),
                        })
                }
                _ => {
                    return Err(Error::Config(format!(
                        "unknown setting {var}; see the runonce::Config docs for the names"
                    )))
                }
            }
        }
        match (sentinel_urls, sentinel_master) {
            (None, None) => {}
            (Some(urls), Some(master)) => c.redis.sentinel = Some(SentinelConfig { urls, master }),
            _ => return Err(Error::Config(
                "RUNONCE__REDIS__SENTINEL__URLS and RUNONCE__REDIS__SENTINEL__MASTER go together"
                    .into(),
            )),
        }
        match (min_replicas, d_timeout) {
            (None, None) if on_shortfall.is_none() => {}
            (Some(min_replicas), Some(timeout)) => {
                c.durability = Some(DurabilityConfig {
                    min_replicas,
                    timeout,
                    on_shortfall,
                })
            }
            _ => {
                return Err(Error::Config(
                    "RUNONCE__DURABILITY__MIN_REPLICAS needs RUNONCE__DURABILITY__TIMEOUT (and the other way round)"
                        .into(),
                ))
            }
        }
        Ok(c)
    }

    /// A builder with every set field applied.
    pub fn builder(&self) -> Result<DedupeBuilder, Error> {
        let mut b = Dedupe::builder();
        if let Some(u) = &self.redis.url {
            b = b.redis_url(u);
        }
        if let Some(seeds) = &self.redis.cluster {
            b = b.cluster(seeds.clone());
        }
        if let Some(s) = &self.redis.sentinel {
            b = b.sentinel(s.urls.clone(), &s.master);
        }
        if let Some(e) = &self.environment {
            b = b.environment(e);
        }
        if let Some(p) = &self.prefix {
            b = b.prefix(p);
        }
        if let Some(t) = &self.default_ttl {
            b = b.default_ttl(t.parse::<Ttl>()?);
        }
        if let Some(t) = &self.timeout {
            b = b.timeout(duration("timeout", t)?);
        }
        if let Some(n) = self.pool.max_size {
            b = b.pool_size(n);
        }
        if let Some(d) = &self.durability {
            b = b.min_replicas(d.min_replicas, duration("durability.timeout", &d.timeout)?);
            if let Some(p) = &d.on_shortfall {
                b = b.on_replica_shortfall(
                    shortfall(p).map_err(|e| bad("durability.on_shortfall", p, e))?,
                );
            }
        }
        if let Some(s) = self.strict_eviction_check {
            b = b.strict_eviction_check(s);
        }
        Ok(b)
    }
}

fn shortfall(s: &str) -> Result<ShortfallPolicy, &'static str> {
    match s.trim().to_ascii_lowercase().as_str() {
        "error" => Ok(ShortfallPolicy::Error),
        "report" => Ok(ShortfallPolicy::Report),
        _ => Err("expected `error` or `report`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_maps() {
        let c = Config::from_vars([
            ("RUNONCE__REDIS__SENTINEL__URLS", "redis://a:1, redis://b:2"),
            ("RUNONCE__REDIS__SENTINEL__MASTER", "m"),
            ("RUNONCE__PREFIX", "p"),
            ("RUNONCE__DEFAULT_TTL", "7d"),
            ("RUNONCE__POOL__MAX_SIZE", "4"),
            ("RUNONCE__DURABILITY__MIN_REPLICAS", "1"),
            ("RUNONCE__DURABILITY__TIMEOUT", "100ms"),
            ("RUNONCE__DURABILITY__ON_SHORTFALL", "report"),
            ("RUNONCE__STRICT_EVICTION_CHECK", "true"),
            ("PATH", "/bin"),
        ])
        .unwrap();
        assert_eq!(
            c.redis.sentinel,
            Some(SentinelConfig {
                urls: vec!["redis://a:1".into(), "redis://b:2".into()],
                master: "m".into()
            })
        );
        assert_eq!(c.pool.max_size, Some(4));
        assert_eq!(c.durability.as_ref().unwrap().min_replicas, 1);
        assert_eq!(c.strict_eviction_check, Some(true));
        assert!(c.builder().is_ok());
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("RUNONCE__TIMEOUT", "soon"),
            ("RUNONCE__DEFAULT_TTL", "0s"),
            ("RUNONCE__POOL__MAX_SIZE", "-1"),
            ("RUNONCE__STRICT_EVICTION_CHECK", "maybe"),
            ("RUNONCE__DURABILITY__ON_SHORTFALL", "panic"),
            ("RUNONCE__NOPE", "x"),
        ] {
            let e = Config::from_vars([(var, value)]).unwrap_err();
            assert!(e.to_string().contains(var), "{e}");
        }
    }
}
