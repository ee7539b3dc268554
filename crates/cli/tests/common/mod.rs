//! Shared by the CLI's integration tests.
#![allow(dead_code)]

pub mod hostile;

use std::path::{Path, PathBuf};

/// Copies a folder tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A copy of `examples/site` under `tmp`, free to change.
pub fn example_site(tmp: &Path) -> PathBuf {
    let dir = tmp.join("site");
    copy_dir(&skyhost_testkit::repo_path("examples/site"), &dir);
    dir
}

pub mod local;
