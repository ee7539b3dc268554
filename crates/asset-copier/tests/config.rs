//! `Copier::from_env`: the variables `template.yaml` sets, and what a bad value says.
//! One test in its own binary, since it changes the process environment.

use skyhost_asset_copier::{Copier, ENV_VARS};

fn set(vars: &[(&str, &str)]) {
    for v in ENV_VARS {
        std::env::remove_var(v);
    }
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
}

#[tokio::test]
async fn configuration_comes_from_the_template_variables() {
    let good = [
        ("SKYHOST_REGION", "us-west-2"),
        ("SKYHOST_PRIMARY_BUCKET", "skyhost-111122223333-us-west-2"),
        (
            "SKYHOST_REPLICA_BUCKETS",
            "eu-central-1=skyhost-111122223333-eu-central-1,ap-southeast-1=skyhost-111122223333-ap-southeast-1",
        ),
        ("SKYHOST_MULTIPART_THRESHOLD", "104857600"),
    ];
    set(&good);
    let c = Copier::from_env().await.expect("configured");
    let replicas: Vec<(String, String)> = c
        .replicas()
        .map(|(r, s)| (r.to_owned(), s.bucket().to_owned()))
        .collect();
    assert_eq!(
        replicas,
        [
            (
                "eu-central-1".to_owned(),
                "skyhost-111122223333-eu-central-1".to_owned()
            ),
            (
                "ap-southeast-1".to_owned(),
                "skyhost-111122223333-ap-southeast-1".to_owned()
            ),
        ]
    );
    assert!(
        c.replicas().all(|(_, s)| s.as_s3().is_some()),
        "S3 → S3 copies server-side"
    );

    // (variable, bad value or None for unset, text the error must contain)
    let cases: [(&str, Option<&str>, &str); 6] = [
        ("SKYHOST_REGION", None, "SKYHOST_REGION must be set"),
        (
            "SKYHOST_PRIMARY_BUCKET",
            None,
            "SKYHOST_PRIMARY_BUCKET must be set",
        ),
        (
            "SKYHOST_REPLICA_BUCKETS",
            Some("eu-central-1"),
            "expected region=value",
        ),
        (
            "SKYHOST_MULTIPART_THRESHOLD",
            None,
            "SKYHOST_MULTIPART_THRESHOLD must be set",
        ),
        (
            "SKYHOST_MULTIPART_THRESHOLD",
            Some("100MB"),
            "positive number of bytes",
        ),
        (
            "SKYHOST_MULTIPART_THRESHOLD",
            Some("0"),
            "positive number of bytes",
        ),
    ];
    for (var, value, says) in cases {
        set(&good);
        match value {
            Some(v) => std::env::set_var(var, v),
            None => std::env::remove_var(var),
        }
        let err = Copier::from_env().await.err().expect("refused");
        assert!(err.to_string().contains(says), "{var}={value:?}: {err}");
    }
}
