//! Order statistics over measured durations: median and spread, never means
//! (one slow outlier from a shared machine must not move the headline).

use std::time::Duration;

/// Summary of one series of measurements.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Summary {
    pub(crate) median: Duration,
    pub(crate) p10: Duration,
    pub(crate) p90: Duration,
}

impl Summary {
    /// `None` for an empty series.
    pub(crate) fn of(samples: &[Duration]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Some(Summary {
            median: quantile(&sorted, 0.5),
            p10: quantile(&sorted, 0.1),
            p90: quantile(&sorted, 0.9),
        })
    }
}

/// Nearest-rank quantile of a sorted, non-empty slice (the median of an
/// even count is the mean of the two middle values).
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let n = sorted.len();
    if (q - 0.5).abs() < f64::EPSILON && n % 2 == 0 {
        return (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

/// A duration for a table cell: µs below 10 ms, ms above.
pub(crate) fn format_duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 10_000.0 {
        format!("{micros:.0} µs")
    } else {
        format!("{:.1} ms", micros / 1000.0)
    }
}

/// `a / b` as a ratio cell ("1.23×"), or "–" when `b` is zero.
pub(crate) fn format_ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        "–".to_owned()
    } else {
        format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().copied().map(Duration::from_millis).collect()
    }

    #[test]
    fn median_of_odd_and_even_series() {
        let odd = Summary::of(&ms(&[5, 1, 3])).expect("non-empty");
        assert_eq!(odd.median, Duration::from_millis(3));
        let even = Summary::of(&ms(&[4, 1, 3, 2])).expect("non-empty");
        assert_eq!(even.median, Duration::from_micros(2500));
    }

    #[test]
    fn deciles_use_nearest_rank() {
        let s = Summary::of(&ms(&[10, 1, 2, 3, 4, 5, 6, 7, 8, 9])).expect("non-empty");
        assert_eq!(s.p10, Duration::from_millis(1));
        assert_eq!(s.p90, Duration::from_millis(9));
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn formats_cells() {
        assert_eq!(format_duration(Duration::from_micros(850)), "850 µs");
        assert_eq!(format_duration(Duration::from_millis(42)), "42.0 ms");
        assert_eq!(
            format_ratio(Duration::from_millis(3), Duration::from_millis(2)),
            "1.50×"
        );
        assert_eq!(format_ratio(Duration::from_millis(3), Duration::ZERO), "–");
    }
}
