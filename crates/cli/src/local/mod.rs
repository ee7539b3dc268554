//! Local mode: the whole multi-region system on one machine with the embedded backends —
//! per region a table replica, a bucket and N origin instances behind one front, the
//! replicator and asset copier driven by the embedded feeds, an edge router playing
//! Route 53, and outage drills.

pub mod drill;
pub mod edge;
pub mod feeds;
pub mod front;
pub mod heal;
pub mod latency;
pub mod layout;
pub mod up;
