//! `hv-vss-bench`: hyperv-vss measured against the physical floor (raw
//! FIFREEZE/FITHAW) and a peer (qemu-guest-agent) on the same real
//! loop-mounted filesystems, in one run. A program that prints numbers,
//! never a test that asserts timings. See `bench/README.md`.

mod child;
mod clock;
mod cycle;
mod engine_bench;
mod floor;
mod freebsd;
mod guard;
mod hyperv;
mod jail;
mod probe;
mod procstat;
mod qga;
mod stats;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use hv_vss_sim::loopfs::FsType;

use crate::cycle::Cycle;
use crate::probe::FreezeSpan;
use crate::procstat::{ProcSample, ticks_to_duration};
use crate::stats::{Summary, format_duration, format_ratio};

/// The three systems, in the order of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Floor,
    QemuGa,
    Hyperv,
}

impl System {
    const ALL: [System; 3] = [System::Floor, System::QemuGa, System::Hyperv];

    fn name(self) -> &'static str {
        match self {
            System::Floor => "floor",
            System::QemuGa => "qemu-ga",
            System::Hyperv => "hyperv-vss",
        }
    }
}

#[derive(Debug, Clone)]
struct Options {
    ext4_sizes: Vec<usize>,
    xfs_sizes: Vec<usize>,
    repetitions: usize,
    /// Cycles per system per repetition; `None`: max(8, 48 / N).
    cycles: Option<usize>,
    /// Pause between cycles, not measured: a real host sends one backup's
    /// requests seconds or hours apart, so work a system does after
    /// replying must not be billed to the next request.
    gap: Duration,
    idle: Duration,
    qemu_ga: PathBuf,
    daemon: Option<PathBuf>,
    probe: Option<PathBuf>,
    freebsd_sizes: bool,
    engine_transactions: u64,
}

const USAGE: &str = "\
Usage: hv-vss-bench [options]        (as root: loop devices, FUSE, FIFREEZE)

  --ext4 LIST        ext4 filesystem counts to measure (default 1,8,32)
  --xfs LIST         xfs filesystem counts (default 1,8; empty string: none)
  --reps N           repetitions, systems alternating (default 5)
  --cycles N         freeze/thaw cycles per system per repetition
                     (default max(8, 48/N) for N filesystems)
  --gap-ms MS        unmeasured pause between cycles (default 5)
  --idle SECS        daemon idle measurement length (default 60; 0: skip)
  --freebsd-sizes    cross-build the FreeBSD release binaries with cargo
                     zigbuild and report their sizes
  --engine N         engine micro-benchmark transactions (default 2000000)
  --smoke            seconds-long check that everything still works:
                     ext4 N=1, no xfs, 1 repetition, 2 cycles, 1 s idle,
                     10000 engine transactions
  --qemu-ga PATH     qemu-ga binary (default /usr/sbin/qemu-ga)
  --daemon PATH      hv_vssd binary (default: next to this program)
  --probe PATH       libhv_vss_bench_probe.so (default: next to this program)
  -h, --help         this text

Build first (same profile): cargo build --release -p hv-vssd -p hv-vss-bench-probe
";

fn parse_list(text: &str) -> Result<Vec<usize>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{s:?} is not a positive count"))
        })
        .collect()
}

fn parse_options(args: &[String]) -> Result<Option<Options>, String> {
    let mut spec = getopts::Options::new();
    spec.optopt("", "ext4", "", "LIST")
        .optopt("", "xfs", "", "LIST")
        .optopt("", "reps", "", "N")
        .optopt("", "cycles", "", "N")
        .optopt("", "gap-ms", "", "MS")
        .optopt("", "idle", "", "SECS")
        .optflag("", "freebsd-sizes", "")
        .optopt("", "engine", "", "N")
        .optflag("", "smoke", "")
        .optopt("", "qemu-ga", "", "PATH")
        .optopt("", "daemon", "", "PATH")
        .optopt("", "probe", "", "PATH")
        .optflag("h", "help", "");
    let m = spec.parse(args).map_err(|e| e.to_string())?;
    if m.opt_present("h") {
        return Ok(None);
    }
    if let Some(extra) = m.free.first() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    let number = |name: &str, default: u64| -> Result<u64, String> {
        m.opt_str(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("--{name}: {v:?} is not a number"))
        })
    };
    let smoke = m.opt_present("smoke");
    let mut options = Options {
        ext4_sizes: parse_list(&m.opt_str("ext4").unwrap_or_else(|| "1,8,32".to_owned()))?,
        xfs_sizes: parse_list(&m.opt_str("xfs").unwrap_or_else(|| "1,8".to_owned()))?,
        repetitions: usize::try_from(number("reps", 5)?.max(1)).unwrap_or(5),
        cycles: m
            .opt_str("cycles")
            .map(|v| v.parse().map_err(|_| format!("--cycles: {v:?}")))
            .transpose()?,
        gap: Duration::from_millis(number("gap-ms", 5)?),
        idle: Duration::from_secs(number("idle", 60)?),
        qemu_ga: m
            .opt_str("qemu-ga")
            .map_or_else(|| PathBuf::from(qga::DEFAULT_BINARY), PathBuf::from),
        daemon: m.opt_str("daemon").map(PathBuf::from),
        probe: m.opt_str("probe").map(PathBuf::from),
        freebsd_sizes: m.opt_present("freebsd-sizes"),
        engine_transactions: number("engine", 2_000_000)?,
    };
    if smoke {
        options.ext4_sizes = vec![1];
        options.xfs_sizes = vec![];
        options.repetitions = 1;
        options.cycles = Some(2);
        options.idle = Duration::from_secs(1);
        options.engine_transactions = 10_000;
    }
    Ok(Some(options))
}

/// Everything measured for one filesystem type and count.
#[derive(Debug)]
struct ConfigResult {
    fs_type: FsType,
    count: usize,
    /// Per system: every cycle, and the median of each repetition.
    cycles: Vec<(System, Vec<Cycle>)>,
    rep_medians: Vec<(System, Vec<Duration>)>,
    /// Cycles where the probe saw a different number of freezes/thaws than
    /// filesystems (should be none).
    probe_anomalies: Vec<String>,
    /// hyperv-vss cycles taken apart: round trip, [FREEZE, THAW].
    profiles: Vec<(Duration, [probe::PhaseProfile; 2])>,
    /// Extra FITHAW calls per cycle (qemu-ga thaws until "not frozen").
    thaw_calls: Vec<(System, usize)>,
    /// KiB: idle VmRSS, VmRSS while frozen, VmHWM (peak) at the end.
    daemon_rss: (u64, u64, u64),
    qga_rss: Option<(u64, u64, u64)>,
    check_latency: Duration,
}

fn cycles_for(options: &Options, count: usize) -> usize {
    options.cycles.unwrap_or_else(|| (48 / count).max(8)).max(1)
}

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error(transparent)]
    Interrupted(#[from] guard::Interrupted),
    #[error("hyperv-vss: {0}")]
    Hyperv(#[from] hyperv::HypervError),
    #[error("qemu-ga: {0}")]
    Qga(#[from] qga::QgaError),
    #[error("floor: {0}")]
    Floor(#[from] floor::FloorError),
    #[error("engine: {0}")]
    Engine(#[from] engine_bench::EngineBenchError),
    #[error("{0}")]
    Other(String),
}

fn check_span(system: System, span: &FreezeSpan, count: usize, anomalies: &mut Vec<String>) {
    if span.froze != count || span.thawed != count {
        anomalies.push(format!(
            "{}: probe saw {} freezes and {} thaws for {count} filesystems",
            system.name(),
            span.froze,
            span.thawed
        ));
    }
}

fn measure_config(
    options: &Options,
    probe_library: &Path,
    fs_type: FsType,
    count: usize,
) -> Result<ConfigResult, BenchError> {
    eprintln!("== {fs_type} × {count}: creating filesystems, starting hv_vssd and qemu-ga");
    let mut hyperv =
        hyperv::Hyperv::start(fs_type, count, options.daemon.as_deref(), probe_library)?;
    guard::check()?;
    let mount_points: Vec<PathBuf> = hyperv
        .mount_points()
        .iter()
        .map(|p| p.to_path_buf())
        .collect();
    let mount_refs: Vec<&Path> = mount_points.iter().map(PathBuf::as_path).collect();
    let floor = floor::Floor::open(mount_refs.iter().copied())?;
    let qga_dir = hyperv.sim.scratch_dir().join("qga");
    std::fs::create_dir_all(&qga_dir).map_err(|e| BenchError::Other(format!("{e}")))?;
    // Declared after `hyperv`: dropped first, so its mount namespace (which
    // holds our mounts) is gone before the filesystems are unmounted.
    let mut qga = qga::QemuGa::start(&options.qemu_ga, probe_library, &qga_dir, &mount_refs)?;

    // Warm-up: one cycle each (page cache, first-use allocations), and the
    // CHECK Hyper-V sends before every backup.
    let check_latency = hyperv.check()?;
    floor.cycle()?;
    qga.cycle()?;
    hyperv.cycle()?;

    let cycles = cycles_for(options, count);
    let mut all: Vec<(System, Vec<Cycle>)> = System::ALL.iter().map(|&s| (s, Vec::new())).collect();
    let mut rep_medians: Vec<(System, Vec<Duration>)> =
        System::ALL.iter().map(|&s| (s, Vec::new())).collect();
    let mut anomalies = Vec::new();
    let mut profiles = Vec::new();
    let mut thaw_calls = vec![(System::QemuGa, 0usize), (System::Hyperv, 0usize)];
    for rep in 0..options.repetitions {
        // Alternate: each repetition starts with a different system, so a
        // slow phase of the machine does not always hit the same one.
        for k in 0..System::ALL.len() {
            let system = System::ALL[(rep + k) % System::ALL.len()];
            let mut this_rep = Vec::with_capacity(cycles);
            for _ in 0..cycles {
                guard::check()?;
                let cycle = match system {
                    System::Floor => floor.cycle()?,
                    System::QemuGa => {
                        let (cycle, span) = qga.cycle()?;
                        check_span(system, &span, count, &mut anomalies);
                        thaw_calls[0].1 = span.thaw_calls;
                        cycle
                    }
                    System::Hyperv => {
                        let (cycle, span, profile) = hyperv.cycle()?;
                        profiles.extend(profile.map(|p| (cycle.round_trip(), p)));
                        check_span(system, &span, count, &mut anomalies);
                        thaw_calls[1].1 = span.thaw_calls;
                        cycle
                    }
                };
                this_rep.push(cycle);
                std::thread::sleep(options.gap);
            }
            let durations: Vec<Duration> = this_rep.iter().map(Cycle::round_trip).collect();
            if let Some(s) = Summary::of(&durations) {
                rep_medians[k_index(system)].1.push(s.median);
            }
            all[k_index(system)].1.extend(this_rep);
        }
        eprintln!("   repetition {}/{} done", rep + 1, options.repetitions);
    }

    // Memory: idle, then while all filesystems are frozen.
    let daemon_pid = hyperv.daemon_pid().unwrap_or(0);
    let idle_rss = ProcSample::read(daemon_pid).map_or(0, |s| s.rss_kib);
    let frozen_rss =
        hyperv.while_frozen(|| ProcSample::read(daemon_pid).map_or(0, |s| s.rss_kib))?;
    let daemon_peak = ProcSample::read(daemon_pid).map_or(0, |s| s.hwm_kib);
    let qga_rss = match qga.pid() {
        Some(pid) => {
            let idle = ProcSample::read(pid).map_or(0, |s| s.rss_kib);
            let frozen = qga.while_frozen(|| ProcSample::read(pid).map_or(0, |s| s.rss_kib))?;
            let peak = ProcSample::read(pid).map_or(0, |s| s.hwm_kib);
            Some((idle, frozen, peak))
        }
        None => None,
    };
    let problems = hyperv.unanswered();
    if !problems.is_empty() {
        return Err(BenchError::Other(format!(
            "host requests not answered exactly once: {problems:?}"
        )));
    }
    drop(qga);
    drop(floor);
    drop(hyperv);
    Ok(ConfigResult {
        fs_type,
        count,
        cycles: all,
        rep_medians,
        probe_anomalies: anomalies,
        profiles,
        thaw_calls,
        daemon_rss: (idle_rss, frozen_rss, daemon_peak),
        qga_rss,
        check_latency,
    })
}

fn k_index(system: System) -> usize {
    match system {
        System::Floor => 0,
        System::QemuGa => 1,
        System::Hyperv => 2,
    }
}

/// Idle cost of both agents over `period` with no requests.
#[derive(Debug)]
struct IdleResult {
    period: Duration,
    daemon: (u64, u64, Duration),
    qga: (u64, u64, Duration),
}

fn measure_idle(options: &Options, probe_library: &Path) -> Result<IdleResult, BenchError> {
    eprintln!(
        "== idle: hv_vssd and qemu-ga with no requests for {:?}",
        options.idle
    );
    let mut hyperv =
        hyperv::Hyperv::start(FsType::Ext4, 1, options.daemon.as_deref(), probe_library)?;
    let mount_points: Vec<PathBuf> = hyperv
        .mount_points()
        .iter()
        .map(|p| p.to_path_buf())
        .collect();
    let mount_refs: Vec<&Path> = mount_points.iter().map(PathBuf::as_path).collect();
    let qga_dir = hyperv.sim.scratch_dir().join("qga");
    std::fs::create_dir_all(&qga_dir).map_err(|e| BenchError::Other(format!("{e}")))?;
    let mut qga = qga::QemuGa::start(&options.qemu_ga, probe_library, &qga_dir, &mount_refs)?;
    // Both have served a transaction: idle means "after work", not "fresh".
    hyperv.cycle()?;
    qga.cycle()?;
    std::thread::sleep(Duration::from_millis(500));
    let pids = (hyperv.daemon_pid().unwrap_or(0), qga.pid().unwrap_or(0));
    let read =
        |pid| ProcSample::read(pid).map_err(|e| BenchError::Other(format!("/proc/{pid}: {e}")));
    let before = (read(pids.0)?, read(pids.1)?);
    let started = std::time::Instant::now();
    while started.elapsed() < options.idle {
        guard::check()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = (read(pids.0)?, read(pids.1)?);
    let delta = |a: &ProcSample, b: &ProcSample| {
        (
            b.voluntary_switches - a.voluntary_switches,
            b.involuntary_switches - a.involuntary_switches,
            ticks_to_duration(b.cpu_ticks - a.cpu_ticks),
        )
    };
    Ok(IdleResult {
        period: started.elapsed(),
        daemon: delta(&before.0, &after.0),
        qga: delta(&before.1, &after.1),
    })
}

fn summary_cell(samples: &[Duration]) -> String {
    Summary::of(samples).map_or_else(
        || "–".to_owned(),
        |s| {
            format!(
                "{} [{}–{}]",
                format_duration(s.median),
                format_duration(s.p10),
                format_duration(s.p90)
            )
        },
    )
}

fn median(samples: &[Duration]) -> Duration {
    Summary::of(samples).map_or(Duration::ZERO, |s| s.median)
}

fn machine_description() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        })
        .map_or_else(|| "unknown".to_owned(), |kib| format!("{} MiB", kib / 1024));
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{cpus} CPUs ({model}), {memory} RAM, Linux {kernel}")
}

/// The first three fields of /proc/loadavg: a busy machine makes noisy numbers.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

fn tool_version(program: &Path) -> String {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown version".to_owned())
}

#[allow(clippy::too_many_lines)]
fn report(
    options: &Options,
    load_at_start: &str,
    results: &[ConfigResult],
    idle: Option<&IdleResult>,
    engine: Option<&engine_bench::EngineCost>,
    sizes: Option<&Result<Vec<(String, u64)>, String>>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## hv-vss-bench results\n");
    let _ = writeln!(out, "Machine: {}", machine_description());
    let _ = writeln!(out, "Peer: {}", tool_version(&options.qemu_ga));
    let _ = writeln!(
        out,
        "Command: hv-vss-bench {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let _ = writeln!(
        out,
        "Daemon: {}",
        options.daemon.as_deref().map_or_else(
            || "hv_vssd next to hv-vss-bench".to_owned(),
            |p| p.display().to_string()
        )
    );
    let _ = writeln!(
        out,
        "Load average (1/5/15 min) at the start: {}; at the end: {}",
        load_at_start,
        load_average()
    );
    let _ = writeln!(
        out,
        "Cycles: FREEZE→reply→THAW→reply as the host sees it (THAW sent as soon as the \
         FREEZE reply arrives); median [p10–p90] over {} repetitions × cycles, systems \
         alternating, {} ms unmeasured pause between cycles.\n",
        options.repetitions,
        options.gap.as_millis()
    );
    let _ = writeln!(
        out,
        "| fs | N | cycles | floor | qemu-ga | hyperv-vss | hv/floor | hv/qemu-ga |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|---|---|---:|---:|");
    for r in results {
        let series = |s: System| -> Vec<Duration> {
            r.cycles[k_index(s)]
                .1
                .iter()
                .map(Cycle::round_trip)
                .collect()
        };
        let (f, q, h) = (
            series(System::Floor),
            series(System::QemuGa),
            series(System::Hyperv),
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.fs_type,
            r.count,
            h.len(),
            summary_cell(&f),
            summary_cell(&q),
            summary_cell(&h),
            format_ratio(median(&h), median(&f)),
            format_ratio(median(&h), median(&q)),
        );
    }
    let _ = writeln!(
        out,
        "\nFreeze window (time any filesystem is frozen beyond the host's need: \
         (FREEZE reply − first FIFREEZE call) + (last FITHAW return − THAW sent)), median [p10–p90]:\n"
    );
    let _ = writeln!(out, "| fs | N | floor | qemu-ga | hyperv-vss |");
    let _ = writeln!(out, "|---|---:|---|---|---|");
    for r in results {
        let windows = |s: System| -> Vec<Duration> {
            r.cycles[k_index(s)]
                .1
                .iter()
                .filter_map(Cycle::freeze_window)
                .collect()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.fs_type,
            r.count,
            summary_cell(&windows(System::Floor)),
            summary_cell(&windows(System::QemuGa)),
            summary_cell(&windows(System::Hyperv)),
        );
    }
    let _ = writeln!(
        out,
        "\nBreakdown (medians): FREEZE latency / THAW latency per system; hyperv-vss CHECK \
         latency; repetition medians' spread (max−min)/median; FITHAW calls per thaw:\n"
    );
    let _ = writeln!(
        out,
        "| fs | N | floor fr/th | qemu-ga fr/th | hyperv-vss fr/th | CHECK | rep spread f/q/h | FITHAW calls q/h |"
    );
    let _ = writeln!(out, "|---|---:|---|---|---|---|---|---|");
    for r in results {
        let pair = |s: System| {
            let c = &r.cycles[k_index(s)].1;
            let fr: Vec<Duration> = c.iter().map(Cycle::freeze_latency).collect();
            let th: Vec<Duration> = c.iter().map(Cycle::thaw_latency).collect();
            format!(
                "{} / {}",
                format_duration(median(&fr)),
                format_duration(median(&th))
            )
        };
        let spread = |s: System| {
            let reps = &r.rep_medians[k_index(s)].1;
            match (reps.iter().min(), reps.iter().max()) {
                (Some(lo), Some(hi)) if !median(reps).is_zero() => format!(
                    "{:.0}%",
                    hi.saturating_sub(*lo).as_secs_f64() / median(reps).as_secs_f64() * 100.0
                ),
                _ => "–".to_owned(),
            }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {}/{}/{} | {}/{} |",
            r.fs_type,
            r.count,
            pair(System::Floor),
            pair(System::QemuGa),
            pair(System::Hyperv),
            format_duration(r.check_latency),
            spread(System::Floor),
            spread(System::QemuGa),
            spread(System::Hyperv),
            r.thaw_calls[0].1,
            r.thaw_calls[1].1,
        );
    }
    let _ = writeln!(
        out,
        "\nWhere hyperv-vss spends a request (medians, µs; from the probe's READ/WRITE/FIFREEZE/\
         FITHAW timestamps): deliver = host send → daemon's READ returns (engine, device \
         wakeup); before/after = daemon work around the freeze/thaw calls; work = the \
         FIFREEZE/FITHAW calls; reply = daemon's WRITE → host has the reply. \
         transport = deliver + reply of both requests (the simulator's FUSE device and \
         channel, which a FreeBSD cdev replaces; an upper bound, as it includes the \
         daemon's wakeup from poll); hv − transport estimates the round trip without it:\n"
    );
    let _ = writeln!(
        out,
        "| fs | N | FREEZE deliver | before | work | after | reply | THAW deliver | before | work | after | reply | transport | hv − transport | ÷ floor |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in results {
        let mut row = format!("| {} | {} |", r.fs_type, r.count);
        for phase in 0..2 {
            let parts: [fn(&probe::PhaseProfile) -> u64; 5] = [
                |p| p.deliver,
                |p| p.before,
                |p| p.work,
                |p| p.after,
                |p| p.reply,
            ];
            for part in parts {
                let values: Vec<Duration> = r
                    .profiles
                    .iter()
                    .map(|(_, p)| Duration::from_nanos(part(&p[phase])))
                    .collect();
                let _ = write!(row, " {} |", median(&values).as_micros());
            }
        }
        let transport = |p: &[probe::PhaseProfile; 2]| {
            Duration::from_nanos(p.iter().map(|p| p.deliver + p.reply).sum())
        };
        let transports: Vec<Duration> = r.profiles.iter().map(|(_, p)| transport(p)).collect();
        let without: Vec<Duration> = r
            .profiles
            .iter()
            .map(|(round_trip, p)| round_trip.saturating_sub(transport(p)))
            .collect();
        let floor: Vec<Duration> = r.cycles[k_index(System::Floor)]
            .1
            .iter()
            .map(Cycle::round_trip)
            .collect();
        let _ = writeln!(
            out,
            "{row} {} | {} | {} |",
            median(&transports).as_micros(),
            median(&without).as_micros(),
            format_ratio(median(&without), median(&floor))
        );
    }
    let _ = writeln!(
        out,
        "\nResident memory: VmRSS idle → VmRSS while N filesystems are frozen (VmHWM, the \
         peak over the whole run):\n"
    );
    let _ = writeln!(out, "| fs | N | hv_vssd | qemu-ga |");
    let _ = writeln!(out, "|---|---:|---|---|");
    for r in results {
        let qga = r.qga_rss.map_or_else(
            || "–".to_owned(),
            |(i, f, p)| format!("{i} KiB → {f} KiB (peak {p} KiB)"),
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} KiB → {} KiB (peak {} KiB) | {qga} |",
            r.fs_type, r.count, r.daemon_rss.0, r.daemon_rss.1, r.daemon_rss.2
        );
    }
    let anomalies: Vec<&String> = results.iter().flat_map(|r| &r.probe_anomalies).collect();
    if !anomalies.is_empty() {
        let _ = writeln!(out, "\nProbe anomalies ({}):", anomalies.len());
        for a in anomalies.iter().take(10) {
            let _ = writeln!(out, "- {a}");
        }
    }
    if let Some(idle) = idle {
        let _ = writeln!(
            out,
            "\nIdle cost over {:.1} s with no requests (context switches voluntary + \
             involuntary, CPU user+system):\n",
            idle.period.as_secs_f64()
        );
        let _ = writeln!(out, "| process | wakeups | CPU |");
        let _ = writeln!(out, "|---|---:|---:|");
        for (name, (vol, invol, cpu)) in [("hv_vssd", idle.daemon), ("qemu-ga", idle.qga)] {
            let _ = writeln!(
                out,
                "| {name} | {} ({vol} + {invol}) | {} ms |",
                vol + invol,
                cpu.as_millis()
            );
        }
    }
    if let Some(engine) = engine {
        let _ = writeln!(
            out,
            "\nKernel engine (hv-vss-kmod, called directly): {} ns per FREEZE+THAW transaction \
             (median of 10 batches, {} transactions).",
            engine.per_transaction.as_nanos(),
            engine.transactions
        );
    }
    if let Some(sizes) = sizes {
        match sizes {
            Ok(sizes) => {
                let _ = writeln!(
                    out,
                    "\nFreeBSD release binaries ({}, stripped):\n",
                    freebsd::TARGET
                );
                let _ = writeln!(out, "| binary | bytes | KiB |");
                let _ = writeln!(out, "|---|---:|---:|");
                for (file, bytes) in sizes {
                    let _ = writeln!(out, "| {file} | {bytes} | {} |", bytes.div_ceil(1024));
                }
            }
            Err(e) => {
                let _ = writeln!(out, "\nFreeBSD binary sizes: not measured: {e}");
            }
        }
    }
    out
}

fn run(options: &Options) -> Result<(), BenchError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(BenchError::Other(
            "must run as root: loop devices, FUSE devices and FIFREEZE need CAP_SYS_ADMIN"
                .to_owned(),
        ));
    }
    let probe_library = probe::find_library(options.probe.as_deref()).map_err(BenchError::Other)?;
    if !options.qemu_ga.is_file() {
        return Err(qga::QgaError::Missing(options.qemu_ga.clone()).into());
    }
    let load_at_start = load_average();
    let engine = engine_bench::run(options.engine_transactions, 10)?;
    eprintln!(
        "== engine: {} ns per transaction",
        engine.per_transaction.as_nanos()
    );
    let mut results = Vec::new();
    let configs = options
        .ext4_sizes
        .iter()
        .map(|&n| (FsType::Ext4, n))
        .chain(options.xfs_sizes.iter().map(|&n| (FsType::Xfs, n)));
    for (fs_type, count) in configs {
        results.push(measure_config(options, &probe_library, fs_type, count)?);
        guard::check()?;
    }
    let idle = if options.idle.is_zero() {
        None
    } else {
        Some(measure_idle(options, &probe_library)?)
    };
    let sizes = options.freebsd_sizes.then(|| {
        eprintln!("== FreeBSD release binaries: cargo zigbuild (minutes on a cold cache)");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace.join("target"), PathBuf::from)
            .join("bench-freebsd");
        freebsd::build_and_measure(&workspace, &target)
    });
    print!(
        "{}",
        report(
            options,
            &load_at_start,
            &results,
            idle.as_ref(),
            Some(&engine),
            sizes.as_ref()
        )
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    // The jail helper execs qemu-ga; it must run before any thread exists.
    if args.first().and_then(|a| a.to_str()) == Some(jail::SUBCOMMAND) {
        return match jail::run(&args[1..]) {
            Ok(never) => match never {},
            Err(e) => {
                eprintln!("hv-vss-bench jail: {e}");
                ExitCode::from(71)
            }
        };
    }
    let args: Vec<String> = match args.into_iter().map(OsString::into_string).collect() {
        Ok(args) => args,
        Err(bad) => {
            eprintln!("hv-vss-bench: argument {bad:?} is not UTF-8");
            return ExitCode::from(64);
        }
    };
    let options = match parse_options(&args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("hv-vss-bench: {e}\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    guard::install_panic_hook();
    if let Err(e) = guard::install_signal_handlers() {
        eprintln!("hv-vss-bench: cannot install signal handlers: {e}");
        return ExitCode::from(71);
    }
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hv-vss-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
