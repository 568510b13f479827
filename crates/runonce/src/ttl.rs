//! The dedupe window: how long a key keeps pointing at its run.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{shorten, Error};

/// How long an idempotency key keeps pointing at its run.
///
/// Parsed from `60s`, `5m`, `2h`, `3d` and any humantime form such as
/// `1h 30m` or `500ms`, or built from a [`Duration`]. A TTL must be at least
/// 1 ms and at most 365 days; anything else is [`Error::InvalidTtl`] naming the
/// input. Redis enforces it with `PX`, at millisecond precision.
///
/// The default window is 30 days.
///
/// ```
/// use runonce::Ttl;
/// use std::time::Duration;
///
/// let ttl: Ttl = "1h 30m".parse()?;
/// assert_eq!(ttl.as_duration(), Duration::from_secs(90 * 60));
/// assert_eq!(Ttl::default().as_duration(), Duration::from_secs(30 * 86_400));
/// assert!("0s".parse::<Ttl>().is_err());
/// assert!("400d".parse::<Ttl>().is_err());
/// # Ok::<(), runonce::Error>(())
/// ```
///
/// `From<Duration>` cannot fail, so an out-of-range `Duration` is checked
/// when the TTL is used: the call that carries it returns
/// [`Error::InvalidTtl`] and writes nothing. [`Ttl::new`] checks at once.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ttl(Duration);

impl Ttl {
    /// The longest window: 365 days.
    pub const MAX: Duration = Duration::from_secs(365 * 86_400);
    /// The default window: 30 days.
    pub const DEFAULT: Ttl = Ttl(Duration::from_secs(30 * 86_400));

    /// A checked TTL.
    ///
    /// ```
    /// use runonce::Ttl;
    /// use std::time::Duration;
    /// assert!(Ttl::new(Duration::from_secs(60)).is_ok());
    /// assert!(Ttl::new(Duration::ZERO).is_err());
    /// ```
    pub fn new(duration: Duration) -> Result<Ttl, Error> {
        Ttl(duration).validate()
    }

    /// The window as a [`Duration`].
    pub fn as_duration(&self) -> Duration {
        self.0
    }

    /// The window in whole milliseconds, after checking its range.
    ///
    /// ```
    /// use runonce::Ttl;
    /// assert_eq!("2s".parse::<Ttl>()?.as_millis()?, 2000);
    /// # Ok::<(), runonce::Error>(())
    /// ```
    pub fn as_millis(&self) -> Result<u64, Error> {
        self.validate().map(|t| t.0.as_millis() as u64)
    }

    fn validate(self) -> Result<Ttl, Error> {
        let err = |reason: &str| Error::InvalidTtl {
            input: humantime::format_duration(self.0).to_string(),
            reason: reason.to_owned(),
        };
        if self.0.as_millis() == 0 {
            return Err(err("must be at least 1ms"));
        }
        if self.0 > Self::MAX {
            return Err(err("must be at most 365 days"));
        }
        Ok(self)
    }
}

impl Default for Ttl {
    /// 30 days.
    fn default() -> Self {
        Ttl::DEFAULT
    }
}

impl From<Duration> for Ttl {
    fn from(d: Duration) -> Self {
        Ttl(d)
    }
}

impl FromStr for Ttl {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        let err = |reason: &str| Error::InvalidTtl {
            input: shorten(input),
            reason: reason.to_owned(),
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("is empty"));
        }
        if s.starts_with('-') {
            return Err(err("is negative"));
        }
        let d = humantime::parse_duration(s).map_err(|e| err(&e.to_string()))?;
        if d.as_millis() == 0 {
            return Err(err("must be at least 1ms"));
        }
        if d > Self::MAX {
            return Err(err("must be at most 365 days"));
        }
        Ok(Ttl(d))
    }
}

impl fmt::Display for Ttl {
    /// Prints in the humantime form that [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl fmt::Debug for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ttl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_units() {
        for (s, secs) in [("60s", 60), ("5m", 300), ("2h", 7200), ("3d", 3 * 86_400)] {
            assert_eq!(
                s.parse::<Ttl>().unwrap().as_duration(),
                Duration::from_secs(secs)
            );
        }
        assert_eq!("500ms".parse::<Ttl>().unwrap().as_millis().unwrap(), 500);
        assert_eq!("365d".parse::<Ttl>().unwrap().as_duration(), Ttl::MAX);
    }

    #[test]
    fn bad_inputs_name_the_input() {
        for bad in ["0s", "-5m", "5x", "", "400d", "  ", "0ms", "1ns"] {
            let e = bad.parse::<Ttl>().unwrap_err();
            assert!(matches!(e, Error::InvalidTtl { .. }), "{bad}");
            assert!(e.to_string().contains(&format!("{:?}", bad)), "{e}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["60s", "1h 30m", "500ms", "3days", "365d"] {
            let t: Ttl = s.parse().unwrap();
            assert_eq!(t.to_string().parse::<Ttl>().unwrap(), t);
        }
    }
}
