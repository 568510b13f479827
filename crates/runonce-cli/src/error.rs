//! Failures of a command and the exit code each one maps to.

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::Target;

/// Exit code: invalid input (usage, key, TTL, payload JSON, ...). Nothing was
/// written to Redis.
pub(crate) const EXIT_INVALID_INPUT: u8 = 2;
/// Exit code: the key is owned by a run triggered with a different payload.
pub(crate) const EXIT_PAYLOAD_MISMATCH: u8 = 3;
/// Exit code: backend unavailable, or any other failure.
pub(crate) const EXIT_FAILURE: u8 = 1;

/// A failed command: what to print on stderr and the exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    /// The process exit code (1, 2 or 3).
    pub(crate) code: u8,
    /// The message, without the `error: ` prefix.
    pub(crate) message: String,
    /// An optional second line, printed as `hint: …`.
    pub(crate) hint: Option<String>,
}

impl CliError {
    /// Invalid input: exit 2.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_INVALID_INPUT,
            message: message.into(),
            hint: None,
        }
    }

    /// Any other failure: exit 1.
    pub(crate) fn failure(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_FAILURE,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint line.
    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Maps a library error: invalid input → 2, payload mismatch → 3, else 1.
    /// Backend failures get a hint naming where the address came from.
    pub(crate) fn from_lib(e: runonce::Error, redis_url: &str) -> Self {
        Self::from_lib_with_hint(e, || redis_hint(redis_url))
    }

    /// [`CliError::from_lib`] for an error of a call to `target`: the hint
    /// names the target and where it was set.
    pub(crate) fn from_target(e: runonce::Error, target: &Target) -> Self {
        Self::from_lib_with_hint(e, || target_hint(target))
    }

    fn from_lib_with_hint(e: runonce::Error, hint: impl FnOnce() -> String) -> Self {
        let code = if e.is_invalid_input() {
            EXIT_INVALID_INPUT
        } else if matches!(e, runonce::Error::PayloadMismatch { .. }) {
            EXIT_PAYLOAD_MISMATCH
        } else {
            EXIT_FAILURE
        };
        let err = CliError {
            code,
            message: e.to_string(),
            hint: None,
        };
        if matches!(e, runonce::Error::PayloadMismatch { .. }) {
            err.with_hint(
                "on the command line, pass --on-mismatch existing to get the existing run instead",
            )
        } else if e.is_retryable() {
            err.with_hint(hint())
        } else {
            err
        }
    }

    /// The whole command ran out of time talking to Redis.
    pub(crate) fn deadline(target: &Target, after: Duration) -> Self {
        CliError::failure(format!(
            "Redis at {} did not answer within {}; the outcome is unknown; check that \
             redis-server is running and reachable there (and not overloaded), or raise \
             --timeout, then retry (with the same --run-id for a trigger)",
            target.addr(),
            humantime::format_duration(after)
        ))
        .with_hint(target_hint(target))
    }

    /// The exit code as a process [`ExitCode`].
    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

/// Where the Redis URL came from, for hints.
fn redis_hint(redis_url: &str) -> String {
    format!(
        "the Redis URL is {} (set it with --redis URL or REDIS_URL; start a local one with \
         `redis-server`)",
        redacted_url(redis_url)
    )
}

/// Where the target came from, for hints.
pub(crate) fn target_hint(target: &Target) -> String {
    let urls = |urls: &[String]| -> String {
        urls.iter()
            .map(|u| redacted_url(u))
            .collect::<Vec<_>>()
            .join(",")
    };
    match target {
        Target::Single(url) => redis_hint(url),
        Target::Cluster(seeds) => format!(
            "the cluster seeds are {} (set them with --cluster URL,... or RUNONCE_CLUSTER)",
            urls(seeds)
        ),
        Target::Sentinel { urls: u, master } => format!(
            "the sentinels are {} with master {master} (set them with --sentinel URL,... \
             --master NAME, or RUNONCE_SENTINEL and RUNONCE_MASTER)",
            urls(u)
        ),
    }
}

/// `host:port` of a Redis URL, without credentials, for messages.
///
/// ```text
/// redis://:pw@10.0.0.1:7000/2 → 10.0.0.1:7000
/// redis://localhost           → localhost:6379
/// ```
pub(crate) fn redis_addr(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let has_port = if let Some(v6) = hostport.strip_prefix('[') {
        v6.contains("]:")
    } else {
        hostport.contains(':')
    };
    if hostport.is_empty() {
        "127.0.0.1:6379".to_owned()
    } else if has_port {
        hostport.to_owned()
    } else {
        format!("{hostport}:6379")
    }
}

/// The URL with any password replaced by `***`.
pub(crate) fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let shown = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_owned()
            };
            format!("{scheme}://{shown}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_without_credentials() {
        assert_eq!(
            redis_addr("redis://:pw@10.0.0.1:7000/2"),
            "10.0.0.1:7000".to_owned()
        );
        assert_eq!(redis_addr("redis://localhost"), "localhost:6379");
        assert_eq!(redis_addr("rediss://u:p@h:1?x=y"), "h:1");
        assert_eq!(redis_addr("redis://[::1]:6380"), "[::1]:6380");
        assert_eq!(redis_addr("redis://[::1]"), "[::1]:6379");
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redacted_url("redis://user:secret@h:1/0"),
            "redis://user:***@h:1/0"
        );
        assert_eq!(redacted_url("redis://:secret@h:1"), "redis://:***@h:1");
        assert_eq!(redacted_url("redis://h:1"), "redis://h:1");
        assert_eq!(redacted_url("redis://token@h:1"), "redis://***@h:1");
    }
}
