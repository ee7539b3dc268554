//! skyhost's origin: answers every request a region gets — a site's files, its rules,
//! `/_skyhost/health` and `/_skyhost/notify` — for the Lambda main ([`lambda`]) and for
//! local mode's plain HTTP listeners ([`server`]), through the one [`Origin::handle`].
//!
//! Pure decisions have their own modules ([`path`], [`conditional`], [`range`],
//! [`encoding`], [`cache_control`], [`limits`], [`forwarded`], [`geo`]); I/O sits in [`resolve`], [`data`],
//! [`health`],
//! [`notify`], [`auth`], [`proxy`], [`metrics`], [`counters`], [`server`] and [`lambda`].

pub mod answers;
pub mod auth;
pub mod body;
pub mod cache_control;
pub mod conditional;
pub mod config;
pub mod converge;
pub mod counters;
pub mod data;
pub mod encoding;
pub mod forwarded;
pub mod geo;
pub mod handler;
pub mod health;
pub mod lambda;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod notify;
pub mod path;
/// Proxy rules: forward a request to an upstream, SSRF-safe.
pub mod proxy;
pub mod range;
pub mod resolve;
pub mod server;

pub use body::OriginBody;
pub use config::{OriginConfig, ENV_VARS};
pub use data::CacheOutcome;
pub use handler::{Origin, OriginError};
