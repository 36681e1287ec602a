//! Runs one access tracker on a real host (or the QEMU guest) and prints what each window saw.
//!
//! ```text
//! track [--tracker auto|damon|idle|softdirty] [--windows N] [--interval-ms MS]
//!       [--runtime-dir DIR] [--sample-us US] [--aggr-us US] [--add PID] [PID...]
//! ```
//!
//! With no PID it tracks itself while a thread keeps writing the first 16 MiB of a 64 MiB
//! buffer: a healthy tracker reports about 16 MiB hot and 48 MiB idle (soft-dirty sees the
//! writes too). Output, one line per window, meant to be grepped by a guest scenario:
//!
//! ```text
//! track: tracker=damon why=damon: /sys/kernel/mm/damon/admin present, kernel 6.12...
//! track: window=1 regions=42 covered_kib=65536 hot_kib=16384 idle_kib=49152 max_accesses=20
//!        absent_pages=0 dropped=0 took_ms=101
//! ```
//!
//! `--add PID` adds a pid to the scope before the second window. With several pids, each
//! window also has one `track: window=N pid=P regions=...
//! covered_kib=... hot_kib=...` line per pid. `tests/vm/scenarios/trackers.sh` is the
//! test-bed scenario that runs it on the 6.12 guest.
//!
//! Exits 2 when no tracker can be opened, with the tracker's error (which says what to do).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tierd_linux::tracker::{self, Pid, TrackerContext, TrackerKind};

const MIB: u64 = 1 << 20;

fn usage() -> ! {
    eprintln!(
        "usage: track [--tracker auto|damon|idle|softdirty] [--windows N] [--interval-ms MS] \
         [--runtime-dir DIR] [--sample-us US] [--aggr-us US] [--add PID] [PID...]"
    );
    std::process::exit(64)
}

fn main() {
    let mut kind = TrackerKind::Auto;
    let mut windows = 5u32;
    let mut interval = Duration::from_secs(1);
    let mut ctx = TrackerContext::system("/run/tierd");
    let mut pids = Vec::new();
    let mut add = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--tracker" => {
                kind = val().parse().unwrap_or_else(|e| {
                    eprintln!("{e}");
                    usage()
                });
            }
            "--windows" => windows = val().parse().unwrap_or_else(|_| usage()),
            "--interval-ms" => {
                interval = Duration::from_millis(val().parse().unwrap_or_else(|_| usage()));
            }
            "--runtime-dir" => ctx.runtime_dir = val().into(),
            "--sample-us" => ctx.damon.sample_us = val().parse().unwrap_or_else(|_| usage()),
            "--aggr-us" => ctx.damon.aggr_us = val().parse().unwrap_or_else(|_| usage()),
            "--add" => add.push(Pid(val().parse().unwrap_or_else(|_| usage()))),
            p => pids.push(Pid(p.parse().unwrap_or_else(|_| usage()))),
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let load = pids.is_empty().then(|| {
        pids.push(Pid(std::process::id()));
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut buf = vec![1u8; usize::try_from(64 * MIB).expect("64 MiB fits")];
            let hot = usize::try_from(16 * MIB).expect("16 MiB fits");
            let mut round = 0u8;
            while !stop.load(Ordering::Relaxed) {
                round = round.wrapping_add(1);
                for b in buf[..hot].iter_mut().step_by(4096) {
                    *b = round;
                }
                std::hint::black_box(&mut buf);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    });
    std::thread::sleep(Duration::from_millis(200)); // let the load fault its buffer in

    let mut t = match tracker::open(kind, &ctx) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("track: {e}");
            std::process::exit(2);
        }
    };
    println!("track: tracker={} why={}", t.name(), t.why());
    if let Err(e) = t.set_pids(&pids) {
        eprintln!("track: {e}");
        std::process::exit(2);
    }
    for w in 1..=windows {
        if w == 2 && !add.is_empty() {
            // The scope grows while the tracker runs (DAMON: a commit with more targets).
            pids.append(&mut add);
            if let Err(e) = t.set_pids(&pids) {
                eprintln!("track: {e}");
                std::process::exit(2);
            }
        }
        std::thread::sleep(interval);
        match t.sample() {
            Ok(s) => report(w, &s, &pids),
            Err(e) => {
                eprintln!("track: {e}");
                break;
            }
        }
    }
    if let Err(e) = t.stop() {
        eprintln!("track: stop: {e}");
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = load {
        let _ = h.join();
    }
}

/// Prints one window: the totals, and per pid when there are several.
fn report(w: u32, s: &tracker::Sample, pids: &[Pid]) {
    let hot: u64 = s.regions.iter().filter(|r| r.accesses > 0).map(tracker::Region::len).sum();
    println!(
        "track: window={w} regions={} covered_kib={} hot_kib={} idle_kib={} \
         max_accesses={} absent_pages={} dropped={} took_ms={}",
        s.regions.len(),
        s.covered_bytes / 1024,
        hot / 1024,
        (s.covered_bytes - hot) / 1024,
        s.max_accesses,
        s.absent_pages,
        s.dropped.len(),
        s.took.as_millis()
    );
    if pids.len() > 1 {
        for &p in pids {
            let mine = s.regions.iter().filter(|r| r.pid == p);
            let (n, cov, hot) = mine.fold((0, 0, 0), |(n, c, h), r| {
                (n + 1, c + r.len(), h + if r.accesses > 0 { r.len() } else { 0 })
            });
            println!(
                "track: window={w} pid={p} regions={n} covered_kib={} hot_kib={}",
                cov / 1024,
                hot / 1024
            );
        }
    }
}
