//! The figures of a run: latency percentiles (every duration kept and
//! sorted: a run of 20 s makes tens of thousands at most, so no histogram
//! is needed), the server's memory from `/proc/PID/status`, and the one
//! `key=value` line the run prints.
//!
//! Memory: `VmRSS` is read when the generator starts (`server_start`),
//! when the load phase starts (`server_load_start`, after setup), every
//! [`RSS_EVERY`] on a thread until the end (`server_max_sampled` over the
//! whole run, `server_load_max` over the load phase only), and at the end
//! (`server_end`); `VmHWM`, the kernel's own high-water mark of the resident
//! set over the process's whole life, at the end (`server_peak`). Setup
//! registers and logs in every client at once, and the server hashes each
//! auth key with Argon2 (19 MiB each), so the whole-run figures include
//! that burst; the load-phase ones are the uploads alone.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;

/// How often the server's `VmRSS` is sampled.
pub const RSS_EVERY: Duration = Duration::from_millis(200);

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&status, field)
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Samples a process's `VmRSS` on a thread, keeping the largest.
#[derive(Debug)]
pub struct RssSampler {
    pid: u32,
    start_kib: u64,
    load_start_kib: u64,
    max_kib: Arc<AtomicU64>,
    load_max_kib: Arc<AtomicU64>,
    in_load: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the sampler saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerMemory {
    /// `VmRSS` when sampling started.
    pub start_kib: u64,
    /// The largest `VmRSS` sampled.
    pub max_sampled_kib: u64,
    /// `VmRSS` when the load phase started.
    pub load_start_kib: u64,
    /// The largest `VmRSS` sampled in the load phase.
    pub load_max_kib: u64,
    /// `VmRSS` at the end.
    pub end_kib: u64,
    /// `VmHWM` at the end.
    pub peak_kib: u64,
}

impl RssSampler {
    /// Starts sampling `pid`.
    ///
    /// # Errors
    ///
    /// When `/proc/PID/status` cannot be read (no such process).
    pub fn start(pid: u32) -> anyhow::Result<Self> {
        let start_kib = proc_status_kib(pid, "VmRSS")
            .with_context(|| format!("cannot read VmRSS from /proc/{pid}/status"))?;
        let max_kib = Arc::new(AtomicU64::new(start_kib));
        let load_max_kib = Arc::new(AtomicU64::new(0));
        let in_load = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (max, load_max, loading, halt) = (
            max_kib.clone(),
            load_max_kib.clone(),
            in_load.clone(),
            stop.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                while !halt.load(Ordering::Relaxed) {
                    if let Some(kib) = proc_status_kib(pid, "VmRSS") {
                        max.fetch_max(kib, Ordering::Relaxed);
                        if loading.load(Ordering::Relaxed) {
                            load_max.fetch_max(kib, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(RSS_EVERY);
                }
            })?;
        Ok(Self {
            pid,
            start_kib,
            load_start_kib: 0,
            max_kib,
            load_max_kib,
            in_load,
            stop,
            thread: Some(thread),
        })
    }

    /// Marks the start of the load phase.
    pub fn load_starts(&mut self) {
        let kib = proc_status_kib(self.pid, "VmRSS").unwrap_or(0);
        self.load_start_kib = kib;
        self.load_max_kib.fetch_max(kib, Ordering::Relaxed);
        self.max_kib.fetch_max(kib, Ordering::Relaxed);
        self.in_load.store(true, Ordering::Relaxed);
    }

    /// Stops sampling and reads the final figures (0 for any the process no
    /// longer has: it exited).
    pub fn finish(mut self) -> ServerMemory {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let end_kib = proc_status_kib(self.pid, "VmRSS").unwrap_or(0);
        ServerMemory {
            start_kib: self.start_kib,
            max_sampled_kib: self.max_kib.load(Ordering::Relaxed).max(end_kib),
            load_start_kib: self.load_start_kib,
            load_max_kib: self.load_max_kib.load(Ordering::Relaxed).max(end_kib),
            end_kib,
            peak_kib: proc_status_kib(self.pid, "VmHWM").unwrap_or(0),
        }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Percentiles of a set of latencies.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    /// How many.
    pub count: usize,
    /// Median, in ms.
    pub p50_ms: f64,
    /// 99th percentile, in ms.
    pub p99_ms: f64,
    /// Largest, in ms.
    pub max_ms: f64,
}

impl Latency {
    /// Sorts `samples` and takes the nearest-rank percentiles.
    pub fn of(samples: &mut [Duration]) -> Self {
        samples.sort_unstable();
        let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
        Self {
            count: samples.len(),
            p50_ms: ms(nearest_rank(samples, 50)),
            p99_ms: ms(nearest_rank(samples, 99)),
            max_ms: ms(samples.last()),
        }
    }
}

/// The `pct`th percentile of sorted `samples` by nearest rank: the smallest
/// sample at or above `pct`% of them.
fn nearest_rank(sorted: &[Duration], pct: usize) -> Option<&Duration> {
    let rank = (sorted.len() * pct).div_ceil(100).max(1);
    sorted.get(rank - 1)
}

/// Everything the final line says.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Simulated clients.
    pub clients: usize,
    /// Requests made in the measured phase.
    pub requests: u64,
    /// Length of the measured phase.
    pub elapsed: Duration,
    /// All requests.
    pub all: Latency,
    /// Failed requests.
    pub errors: u64,
    /// Files completed.
    pub files: u64,
    /// Object bytes uploaded.
    pub uploaded_bytes: u64,
    /// Per step: its name and latencies.
    pub steps: Vec<(&'static str, Latency)>,
    /// The server's memory, with `--server-pid`.
    pub memory: Option<ServerMemory>,
}

impl Summary {
    /// The one line on stdout: the keys scripts/bench.sh reads first, then
    /// the server's memory, then the extras (files, upload throughput, and
    /// each step's p99).
    pub fn line(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut s = format!(
            "clients={} requests={} req_per_s={:.1} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} errors={}",
            self.clients,
            self.requests,
            self.requests as f64 / secs,
            self.all.p50_ms,
            self.all.p99_ms,
            self.all.max_ms,
            self.errors,
        );
        if let Some(m) = &self.memory {
            let _ = write!(
                s,
                " server_peak_rss_kib={} server_start_rss_kib={} server_max_sampled_rss_kib={} \
                 server_load_start_rss_kib={} server_load_max_rss_kib={} server_end_rss_kib={}",
                m.peak_kib,
                m.start_kib,
                m.max_sampled_kib,
                m.load_start_kib,
                m.load_max_kib,
                m.end_kib
            );
        }
        let _ = write!(
            s,
            " files={} files_per_s={:.1} upload_mib_per_s={:.1} seconds={:.1}",
            self.files,
            self.files as f64 / secs,
            self.uploaded_bytes as f64 / secs / f64::from(1u32 << 20),
            secs
        );
        for (name, l) in &self.steps {
            let _ = write!(s, " {name}_p99_ms={:.2}", l.p99_ms);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(ms).collect();
        let l = Latency::of(&mut samples);
        assert_eq!(l.count, 100);
        assert!((l.p50_ms - 50.0).abs() < 1e-9);
        assert!((l.p99_ms - 99.0).abs() < 1e-9);
        assert!((l.max_ms - 100.0).abs() < 1e-9);

        let l = Latency::of(&mut [ms(5)]);
        assert!((l.p50_ms - 5.0).abs() < 1e-9 && (l.p99_ms - 5.0).abs() < 1e-9);
        assert_eq!(Latency::of(&mut []), Latency::default());
    }

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\tvault-server\nVmHWM:\t   51234 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(40960));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(51234));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        // This process has a status file.
        assert!(proc_status_kib(std::process::id(), "VmRSS").is_some_and(|k| k > 0));
    }

    #[test]
    fn the_line_starts_with_the_agreed_keys() {
        let summary = Summary {
            clients: 50,
            requests: 1000,
            elapsed: Duration::from_secs(20),
            all: Latency {
                count: 1000,
                p50_ms: 1.0,
                p99_ms: 9.5,
                max_ms: 20.0,
            },
            errors: 0,
            files: 333,
            uploaded_bytes: 333 << 18,
            steps: vec![("upload", Latency::default())],
            memory: Some(ServerMemory {
                start_kib: 1,
                max_sampled_kib: 3,
                load_start_kib: 2,
                load_max_kib: 3,
                end_kib: 2,
                peak_kib: 4,
            }),
        };
        let line = summary.line();
        assert!(line.starts_with(
            "clients=50 requests=1000 req_per_s=50.0 p50_ms=1.00 p99_ms=9.50 max_ms=20.00 errors=0 \
             server_peak_rss_kib=4 server_start_rss_kib=1 server_max_sampled_rss_kib=3 \
             server_load_start_rss_kib=2 server_load_max_rss_kib=3 server_end_rss_kib=2 files=333"
        ));
        assert!(line.ends_with(" upload_p99_ms=0.00"));
        assert!(!line.contains('\n'));
    }
}
