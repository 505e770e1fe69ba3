//! Helpers shared by the benches.

/// This process's peak resident set size (`VmHWM`), in KiB; 0 where /proc is missing.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[allow(dead_code)]
/// `cmd` under `/usr/bin/time`: (wall s, peak MiB, stdout).
pub fn timed(cmd: &mut std::process::Command) -> (f64, u64, String) {
    let tf = tempfile::NamedTempFile::new().unwrap();
    let mut full = std::process::Command::new("/usr/bin/time");
    full.arg("-f").arg("%e %M").arg("-o").arg(tf.path());
    full.arg(cmd.get_program()).args(cmd.get_args());
    let out = full.output().expect("run");
    let t = std::fs::read_to_string(tf.path()).unwrap_or_default();
    let mut it = t.split_whitespace();
    let wall = it.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
    let kib: u64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (
        wall,
        kib / 1024,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Every file under `d`, recursively.
#[allow(dead_code)]
pub fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
