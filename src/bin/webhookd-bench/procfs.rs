//! CPU time and memory of a process, from /proc (Linux).

/// `/proc/PID/stat` counts in USER_HZ, which is 100 on every Linux ABI we run on.
const USER_HZ: f64 = 100.0;

/// utime + stime of `pid` in seconds (`None` for `self` uses "self").
pub fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0], so utime (14) and stime (15) are fields[11] and [12].
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// A `kB` line of `/proc/PID/status` (`VmHWM`, `VmRSS`) in MiB.
pub fn status_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status_field(&status, field)?
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Context switches of `pid`'s threads alive now, summed: (voluntary, involuntary). A
/// voluntary one is a thread parking (waiting in `epoll_wait` or on a futex), so per delivery
/// it counts wake-ups, which CPU seconds on a noisy machine blur. Threads that already ended
/// are not counted (webhookd's workers live as long as it does).
pub fn context_switches(pid: u32) -> Option<(u64, u64)> {
    let mut sum = (0, 0);
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        if let Some((v, n)) = switches(&status) {
            sum = (sum.0 + v, sum.1 + n);
        }
    }
    Some(sum)
}

/// The two context-switch counts of one `/proc/.../status` text.
fn switches(status: &str) -> Option<(u64, u64)> {
    let count = |name| status_field(status, name)?.parse().ok();
    Some((
        count("voluntary_ctxt_switches")?,
        count("nonvoluntary_ctxt_switches")?,
    ))
}

/// The value of the `field: value` line of a `/proc/.../status` text, trimmed.
fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    Some(line[field.len() + 1..].trim())
}

/// The pid of the only `redis-server` process, if exactly one runs.
pub fn find_redis() -> Option<u32> {
    let mut found = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() == "redis-server" {
            if found.is_some() {
                return None;
            }
            found = Some(pid);
        }
    }
    found
}

/// Raises this process's soft limit of open files to the hard limit (a thousand noisy
/// endpoints × 8 connections need it); the spawned webhookd inherits it. The limit now.
pub(crate) fn raise_nofile() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by reference.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    Some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_its_own_process() {
        assert!(super::cpu_secs(None).is_some());
        assert!(super::status_mib(std::process::id(), "VmHWM").unwrap() > 0.0);
        assert!(super::context_switches(std::process::id()).is_some());
    }

    #[test]
    fn reads_both_context_switch_counts() {
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(super::switches(status), Some((12, 3)));
        assert_eq!(
            super::switches("Name:\tx\nvoluntary_ctxt_switches:\t12\n"),
            None
        );
    }
}
