//! Lock settings, validated once, up front.

use std::fmt;
use std::time::Duration;

/// The clock-drift allowance added to `ttl × drift_factor`, as the Redlock spec prescribes.
pub(crate) const DRIFT_FLOOR: Duration = Duration::from_millis(2);

/// What a caller may tune. Defaults follow the Redlock spec and the habits of the well-known
/// clients (node-redlock, redsync); [`Config::new`] checks them all before any lock is tried.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Settings {
    /// How long each key lives in Redis. Sent as whole milliseconds (`PX`). Default 10 s.
    pub ttl: Duration,
    /// Share of the TTL set aside for clock drift between client and nodes. Default 0.01.
    pub drift_factor: f64,
    /// A lock whose remaining validity would be shorter than this counts as not acquired.
    /// Default 5 ms.
    pub min_validity: Duration,
    /// How long to wait for one node's reply before counting it as a failed vote. `None` derives
    /// it from the TTL (`ttl / 20`, between 5 ms and 200 ms), so a slow node never eats the
    /// validity budget.
    pub request_timeout: Option<Duration>,
    /// What to do when an attempt fails.
    pub retry: Retry,
    /// Most extensions one lock may get (`None`: no limit).
    pub max_extensions: Option<u32>,
    /// Longest total time one lock may be held through extensions (`None`: no limit).
    pub max_hold: Option<Duration>,
}

/// Retry policy between acquire attempts. Attempts stop at whichever limit comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retry {
    /// Attempts after the first one. `0` is a single try. Default 10.
    pub retries: u32,
    /// Pause between attempts. Default 200 ms; never less than 1 ms in effect.
    pub delay: Duration,
    /// Uniform random spread added to or taken from `delay`, so contenders do not retry in
    /// lock-step. Default 100 ms.
    pub jitter: Duration,
    /// No attempt starts later than this after the acquire began (`None`: only `retries` limits).
    pub deadline: Option<Duration>,
}

impl Retry {
    /// One attempt, no retries.
    pub const NONE: Retry = Retry {
        retries: 0,
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        deadline: None,
    };

    /// `retries` more attempts, `delay ± jitter` apart.
    pub fn new(retries: u32, delay: Duration, jitter: Duration) -> Self {
        Self {
            retries,
            delay,
            jitter,
            deadline: None,
        }
    }

    /// Keeps retrying until `deadline` has passed since the acquire began.
    pub fn until(deadline: Duration, delay: Duration, jitter: Duration) -> Self {
        Self {
            retries: u32::MAX,
            delay,
            jitter,
            deadline: Some(deadline),
        }
    }
}

impl Default for Retry {
    fn default() -> Self {
        Self::new(10, Duration::from_millis(200), Duration::from_millis(100))
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            drift_factor: 0.01,
            min_validity: Duration::from_millis(5),
            request_timeout: None,
            retry: Retry::default(),
            max_extensions: None,
            max_hold: None,
        }
    }
}

/// Validated settings for a set of nodes. Cheap to clone; the operations borrow it.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    nodes: usize,
    settings: Settings,
    ttl: Duration,
    drift: Duration,
    request_timeout: Duration,
}

/// Why a [`Settings`] value cannot be used.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No Redis node was given.
    NoNodes,
    /// The TTL rounds down to zero milliseconds.
    ZeroTtl,
    /// The TTL is longer than [`Config::MAX_TTL`].
    TtlTooLong(Duration),
    /// The drift factor is not a finite number in `[0, 1)`.
    InvalidDriftFactor(f64),
    /// The minimum validity is zero.
    ZeroMinValidity,
    /// The TTL leaves no time once drift and the minimum validity are taken off.
    TtlTooShort {
        /// The TTL asked for.
        ttl: Duration,
        /// The drift allowance for that TTL.
        drift: Duration,
        /// The configured minimum validity.
        min_validity: Duration,
    },
    /// The per-request timeout is zero.
    ZeroRequestTimeout,
    /// A node that answers just before the request timeout could never yield a valid lock.
    RequestTimeoutTooLong {
        /// The per-request timeout.
        request_timeout: Duration,
        /// What the TTL leaves after drift and the minimum validity.
        budget: Duration,
    },
}

impl Config {
    /// Longest accepted TTL (one year): far beyond any sensible lock, and small enough that
    /// no instant arithmetic on it can overflow.
    pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

    /// Validates `settings` for `nodes` independent Redis primaries.
    pub fn new(nodes: usize, settings: Settings) -> Result<Self, ConfigError> {
        if nodes == 0 {
            return Err(ConfigError::NoNodes);
        }
        let ttl =
            Duration::from_millis(u64::try_from(settings.ttl.as_millis()).unwrap_or(u64::MAX));
        if ttl.is_zero() {
            return Err(ConfigError::ZeroTtl);
        }
        if ttl > Self::MAX_TTL {
            return Err(ConfigError::TtlTooLong(settings.ttl));
        }
        let factor = settings.drift_factor;
        if !factor.is_finite() || !(0.0..1.0).contains(&factor) {
            return Err(ConfigError::InvalidDriftFactor(factor));
        }
        if settings.min_validity.is_zero() {
            return Err(ConfigError::ZeroMinValidity);
        }
        // Finite, non-negative and below one year: the conversion cannot fail.
        let drift = Duration::try_from_secs_f64(ttl.as_secs_f64() * factor)
            .unwrap_or(Duration::MAX)
            .saturating_add(DRIFT_FLOOR);
        let reserved = drift.saturating_add(settings.min_validity);
        if ttl <= reserved {
            return Err(ConfigError::TtlTooShort {
                ttl,
                drift,
                min_validity: settings.min_validity,
            });
        }
        let budget = ttl - reserved;
        let request_timeout = match settings.request_timeout {
            Some(timeout) if timeout.is_zero() => return Err(ConfigError::ZeroRequestTimeout),
            Some(timeout) if timeout >= budget => {
                return Err(ConfigError::RequestTimeoutTooLong {
                    request_timeout: timeout,
                    budget,
                })
            }
            Some(timeout) => timeout,
            None => (ttl / 20)
                .clamp(Duration::from_millis(5), Duration::from_millis(200))
                .min(budget / 2)
                .max(Duration::from_micros(1)),
        };
        Ok(Self {
            nodes,
            settings,
            ttl,
            drift,
            request_timeout,
        })
    }

    /// The same nodes with other settings, validated again (per-call overrides).
    pub fn with_settings(&self, settings: Settings) -> Result<Self, ConfigError> {
        Self::new(self.nodes, settings)
    }

    /// The same settings with another TTL.
    pub fn with_ttl(&self, ttl: Duration) -> Result<Self, ConfigError> {
        let mut settings = self.settings.clone();
        settings.ttl = ttl;
        self.with_settings(settings)
    }

    /// The same settings with another retry policy.
    pub fn with_retry(&self, retry: Retry) -> Self {
        let mut config = self.clone();
        config.settings.retry = retry;
        config
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Votes needed for a decision: a strict majority, `N/2 + 1`.
    pub fn quorum(&self) -> usize {
        quorum_of(self.nodes)
    }

    /// The settings as given.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The TTL in whole milliseconds, as sent to Redis.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// `ttl × drift_factor + 2 ms`.
    pub fn drift(&self) -> Duration {
        self.drift
    }

    /// The per-request deadline in effect (given or derived).
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The retry policy.
    pub fn retry(&self) -> &Retry {
        &self.settings.retry
    }

    /// The minimum validity for a lock to count as acquired.
    pub fn min_validity(&self) -> Duration {
        self.settings.min_validity
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoNodes => f.write_str("no Redis nodes were given"),
            Self::ZeroTtl => f.write_str("the lock TTL must be at least 1 ms"),
            Self::TtlTooLong(ttl) => write!(
                f,
                "the lock TTL {ttl:?} is longer than the maximum {:?}",
                Config::MAX_TTL
            ),
            Self::InvalidDriftFactor(factor) => {
                write!(f, "the drift factor {factor} is not a number in [0, 1)")
            }
            Self::ZeroMinValidity => f.write_str("the minimum validity must be above zero"),
            Self::TtlTooShort {
                ttl,
                drift,
                min_validity,
            } => write!(
                f,
                "the lock TTL {ttl:?} is not longer than the drift allowance {drift:?} plus the minimum validity {min_validity:?}"
            ),
            Self::ZeroRequestTimeout => f.write_str("the request timeout must be above zero"),
            Self::RequestTimeoutTooLong {
                request_timeout,
                budget,
            } => write!(
                f,
                "the request timeout {request_timeout:?} does not fit in the {budget:?} the TTL leaves after drift and minimum validity"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The strict majority of `nodes`: the one quorum rule, for whatever knows only a node count.
pub(crate) fn quorum_of(nodes: usize) -> usize {
    nodes / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(ttl_ms: u64) -> Settings {
        Settings {
            ttl: Duration::from_millis(ttl_ms),
            ..Settings::default()
        }
    }

    #[test]
    fn quorum_is_a_strict_majority() {
        for (nodes, quorum) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)] {
            assert_eq!(
                Config::new(nodes, Settings::default()).unwrap().quorum(),
                quorum
            );
        }
    }

    #[test]
    fn drift_is_one_percent_plus_two_ms() {
        let config = Config::new(3, settings(10_000)).unwrap();
        assert_eq!(config.drift(), Duration::from_millis(102));
        assert_eq!(config.request_timeout(), Duration::from_millis(200));
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        assert_eq!(
            Config::new(0, Settings::default()),
            Err(ConfigError::NoNodes)
        );
        assert_eq!(Config::new(3, settings(0)), Err(ConfigError::ZeroTtl));
        let sub_ms = Settings {
            ttl: Duration::from_micros(900),
            ..Settings::default()
        };
        assert_eq!(Config::new(3, sub_ms), Err(ConfigError::ZeroTtl));
        assert!(matches!(
            Config::new(3, settings(7)),
            Err(ConfigError::TtlTooShort { .. })
        ));
        let huge = Settings {
            ttl: Duration::MAX,
            ..Settings::default()
        };
        assert!(matches!(
            Config::new(3, huge),
            Err(ConfigError::TtlTooLong(_))
        ));
        for factor in [f64::NAN, -0.1, 1.0, f64::INFINITY] {
            let s = Settings {
                drift_factor: factor,
                ..Settings::default()
            };
            assert!(matches!(
                Config::new(3, s),
                Err(ConfigError::InvalidDriftFactor(_))
            ));
        }
        let no_min = Settings {
            min_validity: Duration::ZERO,
            ..Settings::default()
        };
        assert_eq!(Config::new(3, no_min), Err(ConfigError::ZeroMinValidity));
        let slow = Settings {
            request_timeout: Some(Duration::from_secs(10)),
            ..Settings::default()
        };
        assert!(matches!(
            Config::new(3, slow),
            Err(ConfigError::RequestTimeoutTooLong { .. })
        ));
        let zero = Settings {
            request_timeout: Some(Duration::ZERO),
            ..Settings::default()
        };
        assert_eq!(Config::new(3, zero), Err(ConfigError::ZeroRequestTimeout));
    }

    #[test]
    fn derived_request_timeout_fits_small_ttls() {
        let config = Config::new(3, settings(20)).unwrap();
        let budget = config.ttl() - config.drift() - config.min_validity();
        assert!(config.request_timeout() < budget);
        assert!(!config.request_timeout().is_zero());
    }
}
