//! Local mode: the whole multi-region system on one machine with the embedded backends —
//! one origin listener per region, the replicator and asset copier driven by the embedded
//! feeds, and an edge router playing Route 53.

pub mod edge;
pub mod feeds;
pub mod heal;
pub mod latency;
pub mod layout;
pub mod up;
