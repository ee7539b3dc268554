//! The `skyhost` command: deploy, promote, rollback, deployments, status, sites, domains,
//! verify, gc, dashboard, and local
//! multi-region mode. Every command runs against AWS or, with `--local DIR`, against the
//! embedded backends of local mode — the same code for both.

pub mod activate;
pub mod backend;
pub mod cli;
pub mod dashboard;
pub mod delete;
pub mod deploy;
pub mod deployments;
pub mod domains;
pub mod gc;
pub mod heal;
pub mod local;
pub mod progress;
pub mod promote;
pub mod rollback;
pub mod status;
pub mod verify;
