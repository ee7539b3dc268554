//! Hostile deploy folders against local mode's backends (SQLite and folder buckets): what
//! is published, what is refused before anything is written, and that every stored blob
//! is the content its hash names (`common::hostile`; the same cases run on S3 in
//! `deploy_aws.rs`).

mod common;

use common::hostile;
use skyhost_cli::backend::Backend;

fn local() -> (Backend, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let b = Backend::local(&tmp.path().join("state")).unwrap();
    (b, tmp)
}

#[tokio::test]
async fn dotfiles_are_not_published_except_well_known() {
    let (b, tmp) = local();
    hostile::dotfiles(&b, tmp.path()).await;
}

#[tokio::test]
async fn pipes_and_sockets_are_refused_before_anything_is_written() {
    let (b, tmp) = local();
    hostile::special_files(&b, tmp.path()).await;
}

#[tokio::test]
async fn links_out_of_the_folder_are_refused() {
    let (b, tmp) = local();
    hostile::links_out(&b, tmp.path()).await;
}

#[tokio::test]
async fn same_size_edit_mid_deploy_stores_what_was_hashed() {
    let (b, tmp) = local();
    hostile::same_size_edit_mid_deploy(&b, tmp.path()).await;
}

#[tokio::test]
async fn a_same_size_blob_with_other_content_is_not_reused() {
    let (b, tmp) = local();
    hostile::reuse_by_hash_not_size(&b, tmp.path()).await;
}

/// The command line says how many hidden entries it left out.
#[test]
fn deploy_prints_the_hidden_entries_it_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    std::fs::create_dir_all(site.join(".aws")).unwrap();
    std::fs::write(site.join("index.html"), "home").unwrap();
    std::fs::write(site.join(".env"), "SECRET=1").unwrap();
    std::fs::write(site.join(".aws/config"), "[default]").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skyhost"))
        .args(["--local", tmp.path().join("state").to_str().unwrap()])
        .args(["deploy", site.to_str().unwrap(), "--site", "hid"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "2 hidden entries not published (.aws/, .env); --include-hidden publishes them"
        ),
        "{stdout}"
    );
}
