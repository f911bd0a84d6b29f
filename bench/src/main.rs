//! The benchmark harness of BENCHMARKS.md.
//!
//! `cargo run --release -p interlock-bench -- <W1..W8|all> [--backend memory|sqlite|postgres|mongodb|redis|nats|kafka] [--quick]`
//!
//! Prints one line per workload: the framework's figures, the same work
//! done without the framework in the same process and run (the baseline),
//! and their ratio; plus p50/p99 latency and peak RSS. `--quick` runs a
//! tenth of the operations (a smoke run; it asserts nothing about speed).
//! PostgreSQL comes from `INTERLOCK_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), each run in a fresh schema
//! that is dropped afterwards.

mod constraints;
mod domain;
mod mongo;
mod redis;
mod report;
mod w1;
mod w10;
mod w12;
mod w8;
mod workloads;

use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Memory,
    Sqlite,
    Postgres,
    Mongodb,
    Redis,
    Nats,
    Kafka,
}

pub(crate) struct Options {
    pub(crate) quick: bool,
    pub(crate) backend: Option<Backend>,
    /// An exact operation count (`--ops N`), for instruction counts.
    pub(crate) ops: Option<u64>,
}

impl Options {
    /// `full` operations, a tenth with `--quick`, or exactly `--ops N`.
    pub(crate) fn ops(&self, full: u64) -> u64 {
        match self.ops {
            Some(n) => n,
            None if self.quick => (full / 10).max(1),
            None => full,
        }
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: interlock-bench <W1..W8|W1-DISPATCH|W1-MEMORY|W3-CATEGORY|W10|W12|all> [--backend memory|sqlite|postgres|mongodb|redis|nats|kafka] [--quick] [--ops N]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One instance of W12's application, started by W12 itself.
    if args.first().map(String::as_str) == Some("W12-INSTANCE") {
        return match runtime.block_on(w12::instance(&args[1..])) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("W12 instance: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut workload = None;
    let mut options = Options {
        quick: false,
        backend: None,
        ops: None,
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--ops" => match iter.next().and_then(|n| n.parse().ok()) {
                Some(n) => options.ops = Some(n),
                None => return usage(),
            },
            "--backend" => {
                options.backend = match iter.next().map(String::as_str) {
                    Some("memory") => Some(Backend::Memory),
                    Some("sqlite") => Some(Backend::Sqlite),
                    Some("postgres") => Some(Backend::Postgres),
                    Some("mongodb") => Some(Backend::Mongodb),
                    Some("redis") => Some(Backend::Redis),
                    Some("nats") => Some(Backend::Nats),
                    Some("kafka") => Some(Backend::Kafka),
                    _ => return usage(),
                }
            }
            w if workload.is_none() => workload = Some(w.to_uppercase()),
            _ => return usage(),
        }
    }
    let Some(workload) = workload else { return usage() };
    let selected: Vec<&str> = match workload.as_str() {
        "ALL" => vec!["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8"],
        w @ ("W1" | "W1-DISPATCH" | "W1-MEMORY" | "W2" | "W3" | "W3-CATEGORY" | "W4" | "W5" | "W6" | "W7" | "W8"
        | "W10" | "W12") => {
            vec![w]
        }
        _ => return usage(),
    };
    let mut failed = false;
    for w in selected {
        let result = runtime.block_on(workloads::run(w, &options));
        if let Err(e) = result {
            eprintln!("workload={w} error={e}");
            failed = true;
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
