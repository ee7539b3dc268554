//! Custom domains with TLS on AWS: `skyhost domains add` and the scheduled domains
//! function take a domain from nothing to served over HTTPS in every region, and back.
//!
//! - [`state`]: the pure state machine (pending validation → issued → attached → serving,
//!   or failing) and the plan of the next steps for what the cloud shows now;
//! - [`cloud`]: the port over ACM, API Gateway, CloudFront and Route 53;
//! - [`aws`]: its adapter on the AWS SDK;
//! - [`store`]: the domain records in the sites table;
//! - [`flow`]: add, advance, status and remove, each safe to re-run after an interruption;
//! - [`config`] and [`lambda`]: the scheduled domains function.

pub mod aws;
pub mod cloud;
pub mod config;
pub mod flow;
pub mod lambda;
pub mod state;
pub mod store;

pub use cloud::{Cloud, CloudError};
pub use flow::{Flow, FlowError, Setup};
pub use state::{Phase, Platform};
pub use store::DomainRecord;
