//! skyhost replicator.
