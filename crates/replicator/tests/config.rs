//! `Replicator::from_env`: the variables `template.yaml` sets, and what a bad value says.
//! One test in its own binary, since it changes the process environment.

use skyhost_replicator::{Replicator, ENV_VARS};

fn set(vars: &[(&str, &str)]) {
    for v in ENV_VARS {
        std::env::remove_var(v);
    }
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
}

#[test]
fn configuration_comes_from_the_template_variables() {
    let good = [
        ("SKYHOST_REGION", "us-west-2"),
        (
            "SKYHOST_REGION_ENDPOINTS",
            "us-west-2=https://us-west-2.origin.example,eu-central-1=https://eu-central-1.origin.example",
        ),
        // Named, not given: read from Secrets Manager when the first notification is signed.
        ("SKYHOST_NOTIFY_SECRET_ID", "skyhost/notify-secrets"),
        // Each region's delivery queue; the SQS client is built on first use.
        (
            "SKYHOST_REGION_QUEUES",
            "us-west-2=https://sqs.us-west-2.amazonaws.com/111122223333/p,eu-central-1=https://sqs.us-west-2.amazonaws.com/111122223333/e",
        ),
    ];
    set(&good);
    let r = Replicator::from_env().expect("configured");
    assert_eq!(
        r.regions(),
        [
            (
                "us-west-2".to_owned(),
                "https://us-west-2.origin.example".to_owned()
            ),
            (
                "eu-central-1".to_owned(),
                "https://eu-central-1.origin.example".to_owned()
            ),
        ]
    );

    // (variable, bad value or None for unset, text the error must contain)
    let cases: [(&str, Option<&str>, &str); 8] = [
        ("SKYHOST_REGION", None, "SKYHOST_REGION must be set"),
        (
            "SKYHOST_REGION_ENDPOINTS",
            None,
            "SKYHOST_REGION_ENDPOINTS must be set",
        ),
        (
            "SKYHOST_REGION_ENDPOINTS",
            Some("eu-central-1"),
            "expected region=value",
        ),
        (
            "SKYHOST_REGION_ENDPOINTS",
            Some("eu-central-1=eu.example"),
            "must be an http(s) URL",
        ),
        (
            "SKYHOST_NOTIFY_SECRET_ID",
            None,
            "SKYHOST_NOTIFY_SECRET_ID must be set",
        ),
        ("SKYHOST_REGION_QUEUES", None, "SKYHOST_REGION_QUEUES must be set"),
        (
            "SKYHOST_REGION_QUEUES",
            Some("us-west-2=https://sqs.example/p"),
            "must name a queue for each region of SKYHOST_REGION_ENDPOINTS",
        ),
        (
            "SKYHOST_REGION_QUEUES",
            Some("us-west-2=https://sqs.example/p,eu-central-1=https://sqs.example/e,sa-east-1=https://sqs.example/s"),
            "must name a queue for each region of SKYHOST_REGION_ENDPOINTS",
        ),
    ];
    for (var, value, says) in cases {
        set(&good);
        match value {
            Some(v) => std::env::set_var(var, v),
            None => std::env::remove_var(var),
        }
        let err = Replicator::from_env().err().expect("refused");
        assert!(err.to_string().contains(says), "{var}={value:?}: {err}");
    }
}
