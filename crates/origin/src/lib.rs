//! skyhost's origin: answers every request a region gets — a site's files, its rules,
//! `/_skyhost/health` and `/_skyhost/notify` — for the Lambda main ([`lambda`]) and for
//! local mode's plain HTTP listeners ([`server`]), through the one [`Origin::handle`].
//!
//! [`handler`] keeps routing: the reserved endpoints, host → site → manifest, the kept
//! answers and the request log. A site's paths are served by `site`, each file answered by
//! the pure plan of [`file_response`]; [`responses`] holds the small answers and header
//! names every module shares, and [`aws`] the one place that builds the AWS setup.
//!
//! Pure decisions have their own modules ([`path`], [`file_response`], [`conditional`],
//! [`range`], [`encoding`], [`cache_control`], [`limits`], [`forwarded`], [`geo`]); I/O sits
//! in [`resolve`], [`data`], [`health`], [`notify`], [`auth`], [`proxy`],
//! [`counters`], [`server`] and [`lambda`].

pub mod answers;
pub mod auth;
pub mod aws;
pub mod body;
pub mod cache_control;
pub mod conditional;
pub mod config;
pub mod converge;
pub mod counters;
pub mod data;
pub mod encoding;
pub mod file_response;
pub mod forwarded;
pub mod geo;
pub mod handler;
pub mod health;
pub mod lambda;
pub mod limits;
pub mod listener;
pub mod notify;
pub mod path;
pub mod preview;
/// Proxy rules: forward a request to an upstream, SSRF-safe.
pub mod proxy;
pub mod range;
pub mod resolve;
pub mod responses;
pub mod server;
mod site;

pub use aws::OriginError;
pub use body::OriginBody;
pub use config::{OriginConfig, ENV_VARS};
pub use data::CacheOutcome;
pub use handler::Origin;
