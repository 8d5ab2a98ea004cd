//! Per-route performance figures from recorded API calls (seed 001): requests, requests per
//! minute, error rates (5xx and 4xx apart), and p50 / p95 / p99 latency.
//!
//! Percentiles are nearest-rank: the p-th percentile of n sorted latencies is the one at
//! rank ⌈p/100 · n⌉ (1-based), a value that was actually observed.

use serde::Serialize;

/// The figures of one route over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStats {
    pub route: String,
    pub requests: u64,
    pub requests_per_minute: f64,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
    pub error_rate_4xx: f64,
    pub error_rate_5xx: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// The value at nearest rank ⌈p · n⌉ of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Figures per route from `(status, latency in µs)` of each call, over a window of
/// `window_minutes`; busiest route first.
pub fn summarize(routes: Vec<(String, Vec<(u16, u64)>)>, window_minutes: f64) -> Vec<RouteStats> {
    let mut out: Vec<RouteStats> = routes
        .into_iter()
        .filter(|(_, calls)| !calls.is_empty())
        .map(|(route, calls)| {
            let n = calls.len() as u64;
            let errors_4xx = calls.iter().filter(|(s, _)| (400..500).contains(s)).count() as u64;
            let errors_5xx = calls.iter().filter(|(s, _)| (500..600).contains(s)).count() as u64;
            let mut lat: Vec<u64> = calls.iter().map(|(_, l)| *l).collect();
            lat.sort_unstable();
            let ms = |us: u64| us as f64 / 1000.0;
            RouteStats {
                route,
                requests: n,
                requests_per_minute: if window_minutes > 0.0 {
                    n as f64 / window_minutes
                } else {
                    0.0
                },
                errors_4xx,
                errors_5xx,
                error_rate_4xx: errors_4xx as f64 / n as f64,
                error_rate_5xx: errors_5xx as f64 / n as f64,
                p50_ms: ms(percentile(&lat, 0.50)),
                p95_ms: ms(percentile(&lat, 0.95)),
                p99_ms: ms(percentile(&lat, 0.99)),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then_with(|| a.route.cmp(&b.route))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(
            (
                percentile(&v, 0.5),
                percentile(&v, 0.95),
                percentile(&v, 0.99)
            ),
            (50, 95, 99)
        );
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
        assert_eq!(percentile(&[1, 2, 3], 0.5), 2);
        assert_eq!(percentile(&[1, 2, 3, 4], 0.5), 2);
    }

    #[test]
    fn routes_by_traffic_with_error_rates() {
        let a: Vec<(u16, u64)> = (1..=100)
            .map(|i| {
                (
                    if i % 10 == 0 {
                        503
                    } else if i % 4 == 0 {
                        404
                    } else {
                        200
                    },
                    i * 1000,
                )
            })
            .collect();
        let b = vec![(200, 5_000), (500, 9_000)];
        let s = summarize(
            vec![
                ("GET /b".into(), b),
                ("GET /a".into(), a),
                ("GET /none".into(), vec![]),
            ],
            60.0,
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].route, "GET /a");
        assert_eq!(
            (s[0].requests, s[0].errors_5xx, s[0].errors_4xx),
            (100, 10, 20)
        );
        assert_eq!((s[0].p50_ms, s[0].p95_ms, s[0].p99_ms), (50.0, 95.0, 99.0));
        assert!((s[0].requests_per_minute - 100.0 / 60.0).abs() < 1e-9);
        assert_eq!(
            (s[1].error_rate_5xx, s[1].p50_ms, s[1].p99_ms),
            (0.5, 5.0, 9.0)
        );
    }
}
