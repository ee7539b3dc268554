//! skyhost origin.
