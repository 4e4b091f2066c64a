//! The freeze watchdog: a filesystem never stays frozen longer than
//! `freeze_limit`, whatever the host does. Pure: the engine asks it with the
//! current time, so tests use a manual clock.

use std::time::{Duration, Instant};

/// Where the engine gets the time.
pub trait Clock {
    fn now(&self) -> Instant;
}

/// The monotonic system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A deadline armed at freeze time.
#[derive(Debug, Clone)]
pub struct Watchdog {
    limit: Duration,
    deadline: Option<Instant>,
}

impl Watchdog {
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            deadline: None,
        }
    }

    pub fn set_limit(&mut self, limit: Duration) {
        self.limit = limit;
    }

    /// Starts counting from `now` (the moment the freeze completed).
    pub fn arm(&mut self, now: Instant) {
        self.deadline = Some(now + self.limit);
    }

    pub fn disarm(&mut self) {
        self.deadline = None;
    }

    pub fn is_armed(&self) -> bool {
        self.deadline.is_some()
    }

    /// True once the deadline has passed.
    pub fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }

    /// How long the event loop may sleep; `None` when disarmed.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_exactly_at_the_limit() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(Duration::from_secs(60));
        assert!(!w.expired(t0) && w.remaining(t0).is_none());
        w.arm(t0);
        assert_eq!(w.remaining(t0), Some(Duration::from_secs(60)));
        assert!(!w.expired(t0 + Duration::from_millis(59_999)));
        assert!(w.expired(t0 + Duration::from_secs(60)));
        assert_eq!(
            w.remaining(t0 + Duration::from_secs(90)),
            Some(Duration::ZERO)
        );
        w.disarm();
        assert!(!w.expired(t0 + Duration::from_secs(90)));
    }
}
