//! The server's CPU time and resident memory, read from `/proc`: of the
//! process given by `--server-pid`, or of this very process when the server
//! runs in it (then the bench's own clients are included, and the report
//! says so).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Error;
use super::report::ServerUsage;

#[derive(Debug)]
pub struct Probe {
    dir: PathBuf,
    /// What the figures cover, in words, for the report.
    pub scope: String,
    ticks_per_second: f64,
}

impl Probe {
    /// The server process `pid`, which must exist and be readable.
    pub fn pid(pid: u32) -> Result<Probe, Error> {
        let probe = Probe::at(format!("/proc/{pid}"), format!("server process {pid}"));
        match probe.cpu_seconds() {
            Some(_) => Ok(probe),
            None => Err(Error::Input(format!("--server-pid {pid}: no such process (cannot read /proc/{pid}/stat)"))),
        }
    }

    /// This process, which runs the server and the clients.
    pub fn this_process() -> Probe {
        Probe::at("/proc/self".into(), "this process: the in-process server and the bench's clients together".into())
    }

    fn at(dir: String, scope: String) -> Probe {
        // SAFETY: sysconf only reads a configuration value.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Probe { dir: dir.into(), scope, ticks_per_second: if ticks > 0 { ticks as f64 } else { 100.0 } }
    }

    /// User plus system CPU time so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.cpu_times().map(CpuTimes::total)
    }

    /// User and system CPU time so far.
    fn cpu_times(&self) -> Option<CpuTimes> {
        let stat = std::fs::read_to_string(self.dir.join("stat")).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of proc(5); the first after ')' is field 3.
        let seconds = |i: usize| Some(fields.get(i)?.parse::<u64>().ok()? as f64 / self.ticks_per_second);
        Some(CpuTimes { user: seconds(11)?, system: seconds(12)? })
    }

    /// Resident set size (`VmRSS`).
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(self.dir.join("status")).ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
        let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    }
}

/// CPU time in user space and in the kernel (on its behalf: system calls,
/// and on loopback the receiving side's TCP work too).
#[derive(Debug, Clone, Copy)]
struct CpuTimes {
    user: f64,
    system: f64,
}

impl CpuTimes {
    fn total(self) -> f64 {
        self.user + self.system
    }
}

/// A run's readings: memory before the clients connect and once they are;
/// CPU time and peak memory from then (the first publish) to the end.
#[derive(Debug)]
pub struct Usage {
    probe: Arc<Probe>,
    rss_before: u64,
    rss_connected: u64,
    cpu_start: Option<CpuTimes>,
    started: Instant,
    /// The highest RSS sampled (every 200 ms), and the sampler.
    peak: Option<(Arc<AtomicU64>, JoinHandle<()>)>,
}

impl Usage {
    pub fn start(probe: Probe) -> Usage {
        let rss_before = probe.rss_bytes().unwrap_or(0);
        let probe = Arc::new(probe);
        Usage { probe, rss_before, rss_connected: rss_before, cpu_start: None, started: Instant::now(), peak: None }
    }

    /// Every client is connected; the load starts.
    pub fn connected(&mut self) {
        self.rss_connected = self.probe.rss_bytes().unwrap_or(0);
        self.cpu_start = self.probe.cpu_times();
        self.started = Instant::now();
        let peak = Arc::new(AtomicU64::new(self.rss_connected));
        let (probe, seen) = (self.probe.clone(), peak.clone());
        let sampler = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Some(rss) = probe.rss_bytes() {
                    seen.fetch_max(rss, Ordering::Relaxed);
                }
            }
        });
        self.peak = Some((peak, sampler));
    }

    /// The figures, or none when the process could not be read (it exited).
    pub fn finish(self, connections: usize) -> Option<ServerUsage> {
        let (end, start) = (self.probe.cpu_times()?, self.cpu_start?);
        let (peak, sampler) = self.peak?;
        sampler.abort();
        Some(ServerUsage {
            scope: self.probe.scope.clone(),
            cpu_seconds: end.total() - start.total(),
            user_seconds: end.user - start.user,
            system_seconds: end.system - start.system,
            wall_seconds: self.started.elapsed().as_secs_f64(),
            connections,
            rss_before_bytes: self.rss_before,
            rss_connected_bytes: self.rss_connected,
            rss_peak_bytes: peak.load(Ordering::Relaxed),
            rss_per_connection_bytes: self.rss_connected.saturating_sub(self.rss_before) as f64
                / connections.max(1) as f64,
            deliveries: 0,
            deliveries_per_cpu_second: None,
            cpu_us_per_delivery: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let probe = Probe::this_process();
        assert!(probe.cpu_seconds().is_some());
        assert!(probe.rss_bytes().unwrap() > 1024 * 1024);
        assert!(matches!(Probe::pid(u32::MAX), Err(Error::Input(_))));
    }
}
