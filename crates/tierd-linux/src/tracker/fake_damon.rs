//! The DAMON half of [`FakeHost`](super::fake::FakeHost): `mm/damon/sysfs.c`'s file protocol
//! over a temporary directory. See [`FakeHost::with_damon`](super::fake::FakeHost::with_damon).

use std::io;
use std::path::Path;

use super::fake::{FakeRegion, FakeState};
use crate::SysRoot;

fn err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

fn put(path: &Path, text: &str) -> io::Result<()> {
    std::fs::create_dir_all(path.parent().expect("parent"))?;
    std::fs::write(path, text)
}

fn get(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default().trim().to_string()
}

fn num(path: &Path) -> u64 {
    get(path).parse().unwrap_or(0)
}

/// Removes the numbered children of `dir` and creates `0..n` with `make`.
fn recreate(dir: &Path, n: u64, make: impl Fn(&Path) -> io::Result<()>) -> io::Result<()> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().to_str().is_some_and(|s| s.parse::<u64>().is_ok()) {
                std::fs::remove_dir_all(e.path())?;
            }
        }
    }
    for i in 0..n {
        make(&dir.join(i.to_string()))?;
    }
    Ok(())
}

fn kdamond(d: &Path) -> io::Result<()> {
    put(&d.join("state"), "off\n")?;
    put(&d.join("pid"), "-1\n")?;
    put(&d.join("contexts/nr_contexts"), "0\n")
}

fn context(d: &Path) -> io::Result<()> {
    put(&d.join("avail_operations"), "vaddr\nfvaddr\npaddr\n")?;
    put(&d.join("operations"), "vaddr\n")?;
    let a = d.join("monitoring_attrs");
    put(&a.join("intervals/sample_us"), "5000\n")?;
    put(&a.join("intervals/aggr_us"), "100000\n")?;
    put(&a.join("intervals/update_us"), "1000000\n")?;
    put(&a.join("nr_regions/min"), "10\n")?;
    put(&a.join("nr_regions/max"), "1000\n")?;
    put(&d.join("targets/nr_targets"), "0\n")?;
    put(&d.join("schemes/nr_schemes"), "0\n")
}

fn target(d: &Path) -> io::Result<()> {
    put(&d.join("pid_target"), "0\n")?;
    put(&d.join("regions/nr_regions"), "0\n")
}

fn scheme(d: &Path) -> io::Result<()> {
    put(&d.join("action"), "stat\n")?;
    put(&d.join("apply_interval_us"), "0\n")?;
    put(&d.join("target_nid"), "0\n")?;
    for r in ["sz", "nr_accesses", "age"] {
        put(&d.join(format!("access_pattern/{r}/min")), "0\n")?;
        put(&d.join(format!("access_pattern/{r}/max")), "0\n")?;
    }
    for q in [
        "ms",
        "bytes",
        "reset_interval_ms",
        "weights/sz_permil",
        "weights/nr_accesses_permil",
        "weights/age_permil",
    ] {
        put(&d.join(format!("quotas/{q}")), "0\n")?;
    }
    put(&d.join("watermarks/metric"), "none\n")?;
    for w in ["interval_us", "high", "mid", "low"] {
        put(&d.join(format!("watermarks/{w}")), "0\n")?;
    }
    put(&d.join("filters/nr_filters"), "0\n")?;
    for s in ["nr_tried", "sz_tried", "nr_applied", "sz_applied", "qt_exceeds"] {
        put(&d.join(format!("stats/{s}")), "0\n")?;
    }
    put(&d.join("tried_regions/total_bytes"), "0\n")
}

fn filter(d: &Path) -> io::Result<()> {
    put(&d.join("type"), "anon\n")?;
    put(&d.join("matching"), "N\n")?;
    put(&d.join("memcg_path"), "\n")?;
    put(&d.join("addr_start"), "0\n")?;
    put(&d.join("addr_end"), "0\n")?;
    put(&d.join("damon_target_idx"), "0\n")
}

fn running(kdamonds: &Path, n: u64) -> bool {
    (0..n).any(|k| get(&kdamonds.join(format!("{k}/state"))) == "on")
}

/// `damon_sysfs_set_attrs()` and `damon_sysfs_set_targets()`'s checks: one context, valid
/// intervals and region bounds, every target pid alive.
fn validate(root: &SysRoot, kd: &Path) -> io::Result<()> {
    if num(&kd.join("contexts/nr_contexts")) != 1 {
        return Err(err(libc::EINVAL));
    }
    let c = kd.join("contexts/0");
    let a = c.join("monitoring_attrs");
    let (min, max) = (num(&a.join("nr_regions/min")), num(&a.join("nr_regions/max")));
    if min < 3
        || min > max
        || num(&a.join("intervals/sample_us")) > num(&a.join("intervals/aggr_us"))
    {
        return Err(err(libc::EINVAL));
    }
    for t in 0..num(&c.join("targets/nr_targets")) {
        let pid = get(&c.join(format!("targets/{t}/pid_target")));
        if pid == "0" || !root.proc.join(&pid).is_dir() {
            return Err(err(libc::EINVAL));
        }
    }
    Ok(())
}

fn in_range(dir: &Path, v: u64) -> bool {
    num(&dir.join("min")) <= v && v <= num(&dir.join("max"))
}

/// What `update_schemes_tried_regions` leaves: per scheme, the regions of every target that
/// pass its access pattern and filters.
fn update_tried(root: &SysRoot, st: &FakeState, kd: &Path) -> io::Result<()> {
    let c = kd.join("contexts/0");
    let targets: Vec<String> = (0..num(&c.join("targets/nr_targets")))
        .map(|t| get(&c.join(format!("targets/{t}/pid_target"))))
        .collect();
    for s in 0..num(&c.join("schemes/nr_schemes")) {
        let sd = c.join(format!("schemes/{s}"));
        let ap = sd.join("access_pattern");
        let mut tried: Vec<FakeRegion> = Vec::new();
        for (ti, pid) in targets.iter().enumerate() {
            if !root.proc.join(pid).is_dir() {
                continue;
            }
            let filtered = (0..num(&sd.join("filters/nr_filters"))).any(|f| {
                let fd = sd.join(format!("filters/{f}"));
                let hit = match get(&fd.join("type")).as_str() {
                    "target" => num(&fd.join("damon_target_idx")) == ti as u64,
                    _ => false,
                };
                hit == (get(&fd.join("matching")) == "Y")
            });
            if filtered {
                continue;
            }
            let regions = pid.parse().ok().and_then(|p: u32| st.damon_regions.get(&p));
            for r in regions.into_iter().flatten() {
                if in_range(&ap.join("sz"), r.end - r.start)
                    && in_range(&ap.join("nr_accesses"), u64::from(r.nr_accesses))
                    && in_range(&ap.join("age"), u64::from(r.age))
                {
                    tried.push(*r);
                }
            }
        }
        let dir = sd.join("tried_regions");
        recreate(&dir, tried.len() as u64, |_| Ok(()))?;
        for (i, r) in tried.iter().enumerate() {
            let d = dir.join(i.to_string());
            put(&d.join("start"), &format!("{}\n", r.start))?;
            put(&d.join("end"), &format!("{}\n", r.end))?;
            put(&d.join("nr_accesses"), &format!("{}\n", r.nr_accesses))?;
            put(&d.join("age"), &format!("{}\n", r.age))?;
        }
        let total: u64 = tried.iter().map(|r| r.end - r.start).sum();
        put(&dir.join("total_bytes"), &format!("{total}\n"))?;
    }
    Ok(())
}

/// A write under the DAMON admin directory.
pub(crate) fn write(
    root: &SysRoot,
    st: &mut FakeState,
    path: &Path,
    value: &str,
) -> io::Result<()> {
    let admin = super::damon::admin_dir(root);
    let kdamonds = admin.join("kdamonds");
    let rel: Vec<String> = path
        .strip_prefix(&admin)
        .expect("under admin")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let rel: Vec<&str> = rel.iter().map(String::as_str).collect();
    if !path.is_file() {
        return Err(err(libc::ENOENT));
    }
    let v = value.trim();
    let count = || v.parse::<u64>().map_err(|_| err(libc::EINVAL));
    let nr_kd = num(&kdamonds.join("nr_kdamonds"));
    match rel.as_slice() {
        ["kdamonds", "nr_kdamonds"] => {
            let n = count()?;
            if running(&kdamonds, nr_kd) {
                return Err(err(libc::EBUSY));
            }
            recreate(&kdamonds, n, kdamond)?;
        }
        ["kdamonds", k, "contexts", "nr_contexts"] => {
            let n = count()?;
            if n > 1 {
                return Err(err(libc::EINVAL));
            }
            if get(&kdamonds.join(format!("{k}/state"))) == "on" {
                return Err(err(libc::EBUSY));
            }
            recreate(path.parent().expect("contexts"), n, context)?;
        }
        [.., "targets", "nr_targets"] => {
            recreate(path.parent().expect("targets"), count()?, target)?;
        }
        [.., "schemes", "nr_schemes"] => {
            recreate(path.parent().expect("schemes"), count()?, scheme)?;
        }
        [.., "filters", "nr_filters"] => {
            recreate(path.parent().expect("filters"), count()?, filter)?;
        }
        ["kdamonds", _, "state"] => {
            let kd = path.parent().expect("kdamond");
            let on = get(path) == "on";
            match (v, on) {
                ("on", true) => return Err(err(libc::EBUSY)),
                ("on", false) => {
                    validate(root, kd)?;
                    st.next_kthread += 1;
                    put(&kd.join("pid"), &format!("{}\n", st.next_kthread))?;
                    return put(path, "on\n");
                }
                ("off", true) => {
                    put(&kd.join("pid"), "-1\n")?;
                    return put(path, "off\n");
                }
                ("commit", true) => validate(root, kd)?,
                ("update_schemes_tried_regions", true) => update_tried(root, st, kd)?,
                ("clear_schemes_tried_regions", true) => {
                    let c = kd.join("contexts/0");
                    for s in 0..num(&c.join("schemes/nr_schemes")) {
                        let dir = c.join(format!("schemes/{s}/tried_regions"));
                        recreate(&dir, 0, |_| Ok(()))?;
                        put(&dir.join("total_bytes"), "0\n")?;
                    }
                }
                ("update_schemes_stats", true) => {}
                _ => return Err(err(libc::EINVAL)),
            }
            return Ok(());
        }
        _ => {}
    }
    put(path, &format!("{v}\n"))
}

/// DAMON stops a kdamond whose targets have all exited (`kdamond_need_stop()`).
pub(crate) fn reap(root: &SysRoot) {
    let kdamonds = super::damon::admin_dir(root).join("kdamonds");
    for k in 0..num(&kdamonds.join("nr_kdamonds")) {
        let kd = kdamonds.join(k.to_string());
        if get(&kd.join("state")) != "on" {
            continue;
        }
        let c = kd.join("contexts/0/targets");
        let any_alive = (0..num(&c.join("nr_targets")))
            .any(|t| root.proc.join(get(&c.join(format!("{t}/pid_target")))).is_dir());
        if !any_alive {
            let _ = put(&kd.join("state"), "off\n");
            let _ = put(&kd.join("pid"), "-1\n");
        }
    }
}
