//! The `skyhost` command: deploy, rollback, status, sites, domains, verify, dashboard, and local
//! multi-region mode. Every command runs against AWS or, with `--local DIR`, against the
//! embedded backends of local mode — the same code for both.

pub mod activate;
pub mod backend;
pub mod cli;
pub mod dashboard;
pub mod deploy;
pub mod domains;
pub mod heal;
pub mod local;
pub mod progress;
pub mod rollback;
pub mod status;
pub mod verify;
