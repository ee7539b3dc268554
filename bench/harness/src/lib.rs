//! The `make bench` harness: each section of BENCHMARKS.md has its module
//! ([`throughput`] with memory, [`handler`], [`coldstart`] with [`first_answer`], [`propagation`], [`deploy`],
//! [`latency`], [`outage`]); [`results`] holds what a run measured and the budgets, [`report`] and
//! [`chart`] write BENCHMARKS.md and its PNG. Parsers and pure decisions are tested by
//! tables; the measurement modules drive the release binaries and are exercised by
//! `make bench` itself. The binary is also the handler benchmark ([`handler_bench`]) and
//! [`init_probe`], run under those names.

pub mod chart;
pub mod coldstart;
pub mod deploy;
pub mod first_answer;
pub mod handler;
pub mod handler_bench;
pub mod http;
pub mod init_probe;
pub mod latency;
pub mod local;
pub mod machine;
pub mod memory;
pub mod nginx;
pub mod outage;
pub mod procs;
pub mod propagation;
pub mod report;
pub mod results;
pub mod runtime;
pub mod site;
pub mod stats;
pub mod throughput;
pub mod wrk;
