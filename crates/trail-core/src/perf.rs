//! Per-route performance figures from recorded API calls (seed 001): requests, requests per
//! minute, error rates (5xx and 4xx apart), and p50 / p95 / p99 latency.
//!
//! Percentiles are nearest-rank: the p-th percentile of n sorted latencies is the one at
//! rank ⌈p/100 · n⌉ (1-based), a value that was actually observed.

use serde::Serialize;

use crate::Timestamp;

/// The figures of one route over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// One recorded API call: when it happened, its status and its latency in µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Call {
    pub at: Timestamp,
    pub status: u16,
    pub latency_us: u64,
}

/// The least span a rate is taken over: a lone call, or a burst within seconds, is not
/// reported as thousands a minute.
pub const MIN_SPAN_MINUTES: f64 = 1.0;

/// The minutes over which the calls happened: from the first to the last (of every route),
/// at least [`MIN_SPAN_MINUTES`], at most the window asked about. 0 when there is no call.
pub fn span_minutes(routes: &[(String, Vec<Call>)], window_minutes: f64) -> f64 {
    let times = routes
        .iter()
        .flat_map(|(_, calls)| calls.iter().map(|c| c.at));
    let (first, last) = times.fold(
        (None, None),
        |(lo, hi): (Option<Timestamp>, Option<Timestamp>), t| {
            (
                Some(lo.map_or(t, |l| l.min(t))),
                Some(hi.map_or(t, |h| h.max(t))),
            )
        },
    );
    match (first, last) {
        (Some(first), Some(last)) => {
            let span = (last.micros() - first.micros()) as f64 / 60e6;
            span.max(MIN_SPAN_MINUTES).min(window_minutes)
        }
        _ => 0.0,
    }
}

/// Figures per route from each call, asked about a window of `window_minutes`; busiest route
/// first. Requests per minute are taken over the span in which the calls happened
/// ([`span_minutes`]), not the whole window: a quiet day with one busy minute shows that
/// minute's rate.
pub fn summarize(routes: Vec<(String, Vec<Call>)>, window_minutes: f64) -> Vec<RouteStats> {
    let span = span_minutes(&routes, window_minutes);
    let mut out: Vec<RouteStats> = routes
        .into_iter()
        .filter(|(_, calls)| !calls.is_empty())
        .map(|(route, calls)| {
            let n = calls.len() as u64;
            let errors_4xx = calls
                .iter()
                .filter(|c| (400..500).contains(&c.status))
                .count() as u64;
            let errors_5xx = calls
                .iter()
                .filter(|c| (500..600).contains(&c.status))
                .count() as u64;
            let mut lat: Vec<u64> = calls.iter().map(|c| c.latency_us).collect();
            lat.sort_unstable();
            let ms = |us: u64| us as f64 / 1000.0;
            RouteStats {
                route,
                requests: n,
                requests_per_minute: if span > 0.0 { n as f64 / span } else { 0.0 },
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

/// The figures of one slice of a window, every route given together: how traffic, errors
/// and latency moved over time.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// Where the slice starts.
    pub start: Timestamp,
    pub requests: u64,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
    /// Nearest-rank latency percentiles of the slice's calls, in ms; 0 for no call.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// How long each of `n` equal slices of `[since, until)` is, in µs (at least 1): the last
/// one may end past `until`.
pub fn slice_width(since: Timestamp, until: Timestamp, n: usize) -> i64 {
    let span = (until.micros() - since.micros()).max(1) as u64;
    span.div_ceil(n.max(1) as u64).max(1) as i64
}

/// The calls of every route in `n` equal slices of `[since, until)`, oldest first; calls
/// outside the window are not counted.
pub fn over_time(
    routes: &[(String, Vec<Call>)],
    since: Timestamp,
    until: Timestamp,
    n: usize,
) -> Vec<Slice> {
    let n = n.max(1);
    let width = slice_width(since, until, n);
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); n];
    let mut errors = vec![(0u64, 0u64); n];
    for call in routes.iter().flat_map(|(_, calls)| calls) {
        if call.at < since || call.at >= until {
            continue;
        }
        let i = (((call.at.micros() - since.micros()) / width) as usize).min(n - 1);
        latencies[i].push(call.latency_us);
        match call.status {
            400..=499 => errors[i].0 += 1,
            500..=599 => errors[i].1 += 1,
            _ => {}
        }
    }
    latencies
        .into_iter()
        .zip(errors)
        .enumerate()
        .map(|(i, (mut lat, (errors_4xx, errors_5xx)))| {
            lat.sort_unstable();
            let ms = |p: f64| percentile(&lat, p) as f64 / 1000.0;
            Slice {
                start: Timestamp(since.micros() + i as i64 * width),
                requests: lat.len() as u64,
                errors_4xx,
                errors_5xx,
                p50_ms: ms(0.50),
                p95_ms: ms(0.95),
                p99_ms: ms(0.99),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_fall_in_the_slice_of_their_time() {
        let t0 = 1_700_000_000_000_000;
        let call = |secs: i64, status: u16, ms: u64| Call {
            at: Timestamp(t0 + secs * 1_000_000),
            status,
            latency_us: ms * 1000,
        };
        // An hour in 4 slices of 15 minutes; two routes counted together.
        let routes = vec![
            (
                "GET /a".to_owned(),
                vec![call(0, 200, 10), call(899, 503, 30), call(900, 200, 5)],
            ),
            (
                "GET /b".to_owned(),
                // In the last slice, and one past the window's end (not counted), one before.
                vec![call(3599, 404, 7), call(3600, 200, 1), call(-1, 200, 1)],
            ),
        ];
        let s = over_time(&routes, Timestamp(t0), Timestamp(t0 + 3_600_000_000), 4);
        assert_eq!(s.len(), 4);
        assert_eq!(s[1].start, Timestamp(t0 + 900_000_000));
        let counts: Vec<(u64, u64, u64)> = s
            .iter()
            .map(|x| (x.requests, x.errors_4xx, x.errors_5xx))
            .collect();
        assert_eq!(counts, [(2, 0, 1), (1, 0, 0), (0, 0, 0), (1, 1, 0)]);
        assert_eq!((s[0].p50_ms, s[0].p99_ms), (10.0, 30.0));
        assert_eq!((s[2].p50_ms, s[2].p95_ms), (0.0, 0.0));
        // A window that does not divide evenly: the last slice still holds its end.
        let odd = over_time(&routes, Timestamp(t0), Timestamp(t0 + 3_600_000_000), 7);
        assert_eq!(odd.iter().map(|x| x.requests).sum::<u64>(), 4);
    }

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
        // Calls a second apart: 100 of them span 99 s.
        let at = |i: u64| Timestamp(i as i64 * 1_000_000);
        let call = |i: u64, status: u16, latency_us: u64| Call {
            at: at(i),
            status,
            latency_us,
        };
        let a: Vec<Call> = (1..=100)
            .map(|i| {
                let status = if i % 10 == 0 {
                    503
                } else if i % 4 == 0 {
                    404
                } else {
                    200
                };
                call(i, status, i * 1000)
            })
            .collect();
        let b = vec![call(1, 200, 5_000), call(2, 500, 9_000)];
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
        // Over the 99 s in which the calls happened, not the 60 minutes asked about.
        assert!((s[0].requests_per_minute - 100.0 / (99.0 / 60.0)).abs() < 1e-9);
        assert_eq!(
            (s[1].error_rate_5xx, s[1].p50_ms, s[1].p99_ms),
            (0.5, 5.0, 9.0)
        );
    }

    #[test]
    fn the_rate_is_over_the_span_of_the_calls_not_the_window() {
        let call = |secs: i64| Call {
            at: Timestamp(1_700_000_000_000_000 + secs * 1_000_000),
            status: 200,
            latency_us: 1000,
        };
        let day = 24.0 * 60.0;
        // Two calls within a minute, asked about a day: at least a minute, so 2 a minute
        // (not 2 / 1440 = 0.0014).
        let s = summarize(vec![("GET /a".into(), vec![call(0), call(5)])], day);
        assert_eq!(s[0].requests_per_minute, 2.0);
        // 30 calls over 10 minutes: 3 a minute, whatever the window.
        let calls: Vec<Call> = (0..30).map(|i| call(i * 600 / 29)).collect();
        let routes = vec![("GET /a".to_owned(), calls)];
        assert!((span_minutes(&routes, day) - 10.0).abs() < 1e-9);
        assert!((summarize(routes.clone(), day)[0].requests_per_minute - 3.0).abs() < 1e-9);
        // The span is shared by every route, so their rates compare.
        let both = summarize(
            vec![routes[0].clone(), ("GET /b".into(), vec![call(0)])],
            day,
        );
        assert!((both[1].requests_per_minute - 0.1).abs() < 1e-9);
        // Never longer than the window asked about, and nothing for no call.
        assert_eq!(span_minutes(&routes, 0.5), 0.5);
        assert_eq!(span_minutes(&[], day), 0.0);
    }
}
