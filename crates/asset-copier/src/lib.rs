//! skyhost asset-copier.
