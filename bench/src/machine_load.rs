//! The machine and its load around each benchmark section: load averages, CPU samples (how
//! much of the machine other processes took), the machine's description.

use std::time::{Duration, Instant};

use crate::Opts;

pub(crate) fn loadavg() -> [f64; 3] {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = s.split_whitespace().map(|v| v.parse().unwrap_or(f64::NAN));
    [
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
    ]
}

pub(crate) fn wait_for_load(opts: &Opts, section: &str) -> [f64; 3] {
    if let Some(max) = opts.max_load {
        let t0 = Instant::now();
        while loadavg()[0] >= max && t0.elapsed() < Duration::from_secs(opts.load_wait) {
            eprintln!(
                "{section}: waiting for load < {max} (now {:.2}, waited {} s)",
                loadavg()[0],
                t0.elapsed().as_secs()
            );
            std::thread::sleep(Duration::from_secs(15));
        }
    }
    let l = loadavg();
    eprintln!("{section}: load {:.2} {:.2} {:.2}", l[0], l[1], l[2]);
    l
}

/// CPU time counters: the machine's (from `/proc/stat`) and this process's with its waited-for
/// children (from `/proc/self/stat`), in clock ticks.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CpuSample {
    pub(crate) busy: u64,
    pub(crate) steal: u64,
    pub(crate) all: u64,
    pub(crate) mine: u64,
}

pub(crate) fn cpu_sample() -> CpuSample {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let g = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let busy = g(0) + g(1) + g(2) + g(5) + g(6);
    CpuSample {
        busy,
        steal: g(7),
        all: busy + g(3) + g(4) + g(7),
        // utime, stime and the waited-for children's cutime, cstime
        mine: stat_ticks("/proc/self/stat", 4),
    }
}

/// CPU time (user + system, its exited threads included) of process `pid`, or of this process,
/// in seconds (`/proc/<pid>/stat`, in USER_HZ ticks: 100 per second on Linux).
pub(crate) fn process_cpu_secs(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    stat_ticks(&path, 2) as f64 / 100.0
}

/// The sum of the first `n` CPU-time fields (utime, stime, cutime, cstime) of a `/proc/…/stat`
/// file, in clock ticks: fields 14.. counted after the `)` that ends the command name, which may
/// hold spaces.
fn stat_ticks(path: &str, n: usize) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .skip(11)
        .take(n)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

/// The load a section ran under.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct SectionLoad {
    pub(crate) section: String,
    /// 1, 5, 15-minute load averages at the start (the benchmark adds about 1 to them while it
    /// runs, so the start is the figure that tells about other work).
    pub(crate) load_start: [f64; 3],
    /// The same at the end.
    pub(crate) load_end: [f64; 3],
    /// Cores busy with other processes on average during the section (machine busy time minus
    /// this benchmark's own, its child processes included).
    pub(crate) other_cores: f64,
    /// Cores stolen by the hypervisor on average.
    pub(crate) steal_cores: f64,
    /// Section length, seconds.
    pub(crate) secs: f64,
}

pub(crate) struct SectionTimer {
    pub(crate) name: String,
    pub(crate) load: [f64; 3],
    pub(crate) cpu: CpuSample,
    pub(crate) t0: Instant,
}

impl SectionTimer {
    pub(crate) fn start(opts: &Opts, name: &str) -> SectionTimer {
        let load = wait_for_load(opts, name);
        SectionTimer {
            name: name.to_string(),
            load,
            cpu: cpu_sample(),
            t0: Instant::now(),
        }
    }

    pub(crate) fn end(self) -> SectionLoad {
        let c = cpu_sample();
        let all = c.all.saturating_sub(self.cpu.all).max(1) as f64;
        let nproc = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let other = c
            .busy
            .saturating_sub(self.cpu.busy)
            .saturating_sub(c.mine.saturating_sub(self.cpu.mine));
        let s = SectionLoad {
            section: self.name,
            load_start: self.load,
            load_end: loadavg(),
            other_cores: other as f64 / all * nproc,
            steal_cores: c.steal.saturating_sub(self.cpu.steal) as f64 / all * nproc,
            secs: self.t0.elapsed().as_secs_f64(),
        };
        eprintln!(
            "{}: done in {:.1} s; load {:.2} → {:.2}; other processes used {:.2} cores, steal {:.2}",
            s.section, s.secs, s.load_start[0], s.load_end[0], s.other_cores, s.steal_cores
        );
        s
    }
}

/// The machine the figures come from.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct MachineInfo {
    pub(crate) nproc: usize,
    pub(crate) cpu: String,
    pub(crate) kernel: String,
    pub(crate) rustc: String,
}

pub(crate) fn machine_info() -> MachineInfo {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| "unknown".to_string(), |s| s.trim().to_string());
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    MachineInfo {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        rustc,
    }
}
