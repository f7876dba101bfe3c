//! The machine a benchmark ran on, the time it ran, and how much CPU the
//! rest of the machine used meanwhile. Shared by every binary of the
//! harness (`#[path]`-included by `src/bin/*`), so that all their reports
//! describe the machine the same way.

use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The machine and toolchain.
#[derive(Debug, Serialize)]
pub(crate) struct Machine {
    /// Available CPUs (`nproc`).
    pub(crate) nproc: usize,
    /// The CPU model, from /proc/cpuinfo.
    pub(crate) cpu: String,
    /// `rustc --version` at run time.
    pub(crate) rustc: String,
    /// The OS and architecture.
    pub(crate) os: String,
    /// `release` or `debug`, the profile of this binary.
    pub(crate) profile: String,
}

impl Machine {
    /// Looks the machine up; unknown parts read `unknown`.
    pub(crate) fn detect() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned()))
            .arg("--version")
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            rustc,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .to_owned(),
        }
    }
}

/// Now, as `2026-11-22T03:04:05Z`.
pub(crate) fn utc_now() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, time) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Counted in 400-year eras starting on 0000-03-01, so that the leap
    // day falls at the end of each year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// CPU time that the rest of the machine used while one part ran. Other
/// processes competing for the cores make the throughput numbers noisy
/// (the ratios, measured side by side, less so).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Interference {
    /// The part.
    pub(crate) part: String,
    /// Wall time of the part.
    pub(crate) wall_seconds: f64,
    /// CPU seconds (over all CPUs) of every other process: the busy time
    /// of /proc/stat less this process's own (and its server's).
    pub(crate) other_cpu_seconds: f64,
    /// CPU seconds the hypervisor stole.
    pub(crate) steal_seconds: f64,
}

/// The CPU counters of /proc/stat and /proc/PID/stat at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuSnapshot {
    at: Instant,
    busy: u64,
    steal: u64,
    /// This process's ticks, and those of the server it started.
    own: u64,
    server: Option<u32>,
}

/// Ticks per second of the /proc counters (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// The user and system ticks of process `pid` (or `self`).
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, from field 3 (state) on.
    let fields: Vec<u64> = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15.
    Some(fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0))
}

impl CpuSnapshot {
    /// Reads the counters; `None` off Linux. `server` is the pid of a
    /// server this run started, whose time is not the rest of the
    /// machine's either.
    pub(crate) fn take(server: Option<u32>) -> Option<CpuSnapshot> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let ticks: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .map(|field| field.parse().unwrap_or(0))
            .collect();
        let tick = |i: usize| ticks.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal: busy is all but
        // idle, iowait and steal.
        let busy = tick(0) + tick(1) + tick(2) + tick(5) + tick(6);
        let own = process_ticks("self")?
            + server.map_or(0, |pid| process_ticks(&pid.to_string()).unwrap_or(0));
        Some(CpuSnapshot {
            at: Instant::now(),
            busy,
            steal: tick(7),
            own,
            server,
        })
    }

    /// What the rest of the machine did from this snapshot until now.
    pub(crate) fn interference(self, part: &str) -> Option<Interference> {
        let now = CpuSnapshot::take(self.server)?;
        let busy = now.busy.saturating_sub(self.busy);
        let own = now.own.saturating_sub(self.own);
        Some(Interference {
            part: part.to_owned(),
            wall_seconds: now.at.duration_since(self.at).as_secs_f64(),
            other_cpu_seconds: busy.saturating_sub(own) as f64 / TICKS_PER_SECOND,
            steal_seconds: now.steal.saturating_sub(self.steal) as f64 / TICKS_PER_SECOND,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_819), (2027, 1, 1));
    }
}
