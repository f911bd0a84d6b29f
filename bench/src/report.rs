//! The machine-readable result line, latencies and peak RSS.

use std::time::Duration;

/// Resets the process's peak RSS, so the next reading covers one workload.
pub(crate) fn reset_peak_rss() {
    // Linux: writing 5 to clear_refs resets VmHWM. Without it the figure is
    // the process's peak so far, still an upper bound.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident set size in MiB, if the OS tells.
pub(crate) fn peak_rss_mb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// The p-th percentile of `latencies` (sorted in place), in microseconds.
pub(crate) fn percentile_us(latencies: &mut [Duration], p: f64) -> u128 {
    if latencies.is_empty() {
        return 0;
    }
    latencies.sort_unstable();
    let rank = ((latencies.len() as f64 - 1.0) * p).round() as usize;
    latencies[rank.min(latencies.len() - 1)].as_micros()
}

/// One workload's figures.
pub(crate) struct Line {
    pub(crate) workload: &'static str,
    pub(crate) backend: &'static str,
    pub(crate) ops: u64,
    pub(crate) secs: f64,
    pub(crate) latencies: Vec<Duration>,
    pub(crate) baseline: &'static str,
    pub(crate) baseline_ops_per_sec: f64,
    /// Extra `key=value` fields.
    pub(crate) extra: Vec<(&'static str, String)>,
}

impl Line {
    pub(crate) fn print(mut self) {
        let ops_per_sec = if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        };
        let p50 = percentile_us(&mut self.latencies, 0.50);
        let p99 = percentile_us(&mut self.latencies, 0.99);
        let ratio = if self.baseline_ops_per_sec > 0.0 {
            ops_per_sec / self.baseline_ops_per_sec
        } else {
            0.0
        };
        let mut line = format!(
            "workload={} backend={} ops={} secs={:.3} ops_per_sec={:.0} p50_us={} p99_us={} baseline={} baseline_ops_per_sec={:.0} ratio={:.2}",
            self.workload,
            self.backend,
            self.ops,
            self.secs,
            ops_per_sec,
            p50,
            p99,
            self.baseline,
            self.baseline_ops_per_sec,
            ratio
        );
        if let Some(rss) = peak_rss_mb() {
            line.push_str(&format!(" peak_rss_mb={rss}"));
        }
        for (k, v) in self.extra {
            line.push_str(&format!(" {k}={v}"));
        }
        println!("{line}");
    }
}
