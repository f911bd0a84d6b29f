//! W1: the in-memory hot path, and its dispatch loop alone for instruction
//! counts.

use std::time::{Duration, Instant};

use interlock::Application;
use interlock::store::MemoryEventStore;

use crate::Options;
use crate::domain::{Account, Deposit, MoneyDeposited};
use crate::report::Line;
use crate::workloads::{Error, open_accounts};

/// W1's dispatch loop alone (no latency recording, no baseline), for
/// instruction counts: run it under `valgrind --tool=callgrind` with two
/// `--ops` values; the difference over the difference in ops is the cost of
/// one command.
pub(crate) async fn w1_dispatch_only(options: &Options) -> Result<(), Error> {
    let ops = options.ops(200_000);
    let app = Application::builder()
        .aggregate::<Account>()
        .event_store(MemoryEventStore::with_capacity(ops as usize + 200))
        .build()
        .await?;
    open_accounts(&app, 100).await?;
    for i in 0..ops {
        app.dispatch(Deposit {
            account: i % 100,
            amount: 1,
        })
        .await?;
    }
    println!("workload=W1-DISPATCH ops={ops}");
    // Not dropped: freeing every stored event at the end is about 300
    // instructions an event (measured with callgrind), a cost of the
    // teardown rather than of a command.
    std::mem::forget(app);
    Ok(())
}

/// `ops` deposits of 1 from one task over accounts 0-99: the seconds
/// they took and each one's latency.
pub(crate) async fn one_task_deposits(app: &Application, ops: u64) -> Result<(f64, Vec<Duration>), Error> {
    let mut latencies = Vec::with_capacity(ops as usize);
    let started = Instant::now();
    for i in 0..ops {
        let began = Instant::now();
        app.dispatch(Deposit {
            account: i % 100,
            amount: 1,
        })
        .await?;
        latencies.push(began.elapsed());
    }
    Ok((started.elapsed().as_secs_f64(), latencies))
}

/// W1: in-memory store, 1 task, 100 accounts, 200 000 deposits.
pub(crate) async fn w1(options: &Options) -> Result<(), Error> {
    let ops = options.ops(200_000);
    let app = Application::builder()
        .aggregate::<Account>()
        .event_store(MemoryEventStore::with_capacity(ops as usize + 200))
        .build()
        .await?;
    open_accounts(&app, 100).await?;
    let (secs, latencies) = one_task_deposits(&app, ops).await?;
    // Baseline: encode the event with serde_json and push it into a
    // pre-sized Vec behind the same kind of lock.
    let log = parking_lot::RwLock::new(Vec::<Vec<u8>>::with_capacity(ops as usize));
    let began = Instant::now();
    for _ in 0..ops {
        let bytes = serde_json::to_vec(&MoneyDeposited { amount: 1 })?;
        log.write().push(bytes);
    }
    let baseline = ops as f64 / began.elapsed().as_secs_f64();
    Line {
        workload: "W1",
        backend: "memory",
        ops,
        secs,
        latencies,
        baseline: "serde-vec",
        baseline_ops_per_sec: baseline,
        extra: Vec::new(),
    }
    .print();
    Ok(())
}

/// The process's resident set size now, in bytes (Linux).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// W1-MEMORY: 1 000 000 deposits dispatched through the application into
/// the in-memory store (1 000 accounts); peak RSS and bytes per event held
/// (BENCHMARKS.md: ≤ 300 MB). The baseline holds each event's JSON payload
/// alone in a `Vec`, the least an in-memory log can keep.
pub(crate) async fn w1_memory(options: &Options) -> Result<(), Error> {
    let ops = options.ops(1_000_000);
    let before = rss_bytes().unwrap_or(0);
    let app = Application::builder()
        .aggregate::<Account>()
        .event_store(MemoryEventStore::new())
        .build()
        .await?;
    open_accounts(&app, 1000).await?;
    let started = Instant::now();
    for i in 0..ops {
        app.dispatch(Deposit {
            account: i % 1000,
            amount: 1,
        })
        .await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let held = rss_bytes().unwrap_or(0).saturating_sub(before);
    let peak_mb = crate::report::peak_rss_mb().unwrap_or(0);
    drop(app);
    let before_baseline = rss_bytes().unwrap_or(0);
    let began = Instant::now();
    let mut log = Vec::<Vec<u8>>::new();
    for _ in 0..ops {
        log.push(serde_json::to_vec(&MoneyDeposited { amount: 1 })?);
    }
    let baseline = ops as f64 / began.elapsed().as_secs_f64();
    let baseline_held = rss_bytes().unwrap_or(0).saturating_sub(before_baseline);
    drop(log);
    Line {
        workload: "W1-MEMORY",
        backend: "memory",
        ops,
        secs,
        latencies: Vec::new(),
        baseline: "json-vec",
        baseline_ops_per_sec: baseline,
        extra: vec![
            ("held_mb", (held / (1024 * 1024)).to_string()),
            ("bytes_per_event", (held / ops.max(1)).to_string()),
            ("baseline_bytes_per_event", (baseline_held / ops.max(1)).to_string()),
            ("peak_during_dispatch_mb", peak_mb.to_string()),
        ],
    }
    .print();
    Ok(())
}
