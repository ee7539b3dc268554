//! The custom-domain state machine: what the cloud shows → phase and next steps.

use skyhost_domains::state::{
    plan, plan_removal, AttachState as A, CertState as C, Observed, Phase, RemovalStep as R, Step,
    Target,
};

fn region(r: &str) -> Target {
    Target::Region(r.to_string())
}

/// Two regions, regional setup: certificates, attachments, zone, records.
fn seen(certs: [C; 2], attached: [A; 2], zone: bool, records: bool) -> Observed {
    let [c1, c2] = certs;
    let [a1, a2] = attached;
    Observed {
        certificates: vec![("us-west-2".into(), c1), ("eu-central-1".into(), c2)],
        attachments: vec![(region("us-west-2"), a1), (region("eu-central-1"), a2)],
        zone,
        records,
    }
}

#[test]
fn plan_table() {
    use Phase::*;
    let req = |r: &str| Step::RequestCertificate(r.to_string());
    let attach = |r: &str| Step::Attach(region(r));
    let cases: Vec<(Observed, Phase, Vec<Step>)> = vec![
        // Nothing yet: request every certificate.
        (
            seen(
                [C::Missing, C::Missing],
                [A::Missing, A::Missing],
                false,
                false,
            ),
            PendingValidation,
            vec![req("us-west-2"), req("eu-central-1")],
        ),
        // One requested (a run cut short): request only the other.
        (
            seen(
                [C::Pending, C::Missing],
                [A::Missing, A::Missing],
                false,
                false,
            ),
            PendingValidation,
            vec![req("eu-central-1")],
        ),
        // Waiting for the owner's validation records.
        (
            seen(
                [C::Pending, C::Issued],
                [A::Missing, A::Missing],
                true,
                false,
            ),
            PendingValidation,
            vec![],
        ),
        // Issued: attach everywhere.
        (
            seen(
                [C::Issued, C::Issued],
                [A::Missing, A::Missing],
                false,
                false,
            ),
            Issued,
            vec![attach("us-west-2"), attach("eu-central-1")],
        ),
        // Attached in one region (cut short): attach the other only.
        (
            seen([C::Issued, C::Issued], [A::Ready, A::Missing], true, false),
            Issued,
            vec![attach("eu-central-1")],
        ),
        // A disabled attachment (a remove that was taken back) is attached again.
        (
            seen(
                [C::Issued, C::Issued],
                [A::Ready, A::Disabled],
                false,
                false,
            ),
            Issued,
            vec![attach("eu-central-1")],
        ),
        // Attached; Route 53 holds the zone and the records are missing.
        (
            seen([C::Issued, C::Issued], [A::Ready, A::Ready], true, false),
            Attached,
            vec![Step::WriteRecords],
        ),
        // Attached, still deploying: wait.
        (
            seen(
                [C::Issued, C::Issued],
                [A::InProgress, A::Ready],
                false,
                false,
            ),
            Attached,
            vec![],
        ),
        // Serving: with the records in place, or without a zone to write them in.
        (
            seen([C::Issued, C::Issued], [A::Ready, A::Ready], true, true),
            Serving,
            vec![],
        ),
        (
            seen([C::Issued, C::Issued], [A::Ready, A::Ready], false, false),
            Serving,
            vec![],
        ),
    ];
    for (observed, phase, steps) in cases {
        let p = plan(&observed);
        assert_eq!((p.phase, &p.steps), (phase, &steps), "{observed:?}");
        assert_eq!(p.reason, None);
    }
}

#[test]
fn a_failed_certificate_stops_everything_and_says_why() {
    let p = plan(&seen(
        [C::Issued, C::Failed("VALIDATION_TIMED_OUT".into())],
        [A::Ready, A::Missing],
        true,
        false,
    ));
    assert_eq!(p.phase, Phase::Failing);
    assert!(p.steps.is_empty());
    assert_eq!(
        p.reason.as_deref(),
        Some("certificate in eu-central-1: VALIDATION_TIMED_OUT")
    );
}

#[test]
fn removal_table() {
    let detach = |r: &str| R::Detach(region(r));
    let delete = |r: &str| R::DeleteCertificate(r.to_string());
    let cases: Vec<(Observed, Vec<R>)> = vec![
        // Everything up: records, then attachments; certificates wait (still in use).
        (
            seen([C::Issued, C::Issued], [A::Ready, A::Ready], true, true),
            vec![
                R::DeleteRecords,
                detach("us-west-2"),
                detach("eu-central-1"),
            ],
        ),
        // One attachment left (a distribution being disabled).
        (
            seen(
                [C::Issued, C::Issued],
                [A::Missing, A::Disabled],
                false,
                false,
            ),
            vec![detach("eu-central-1")],
        ),
        // Detached everywhere: the certificates go.
        (
            seen(
                [C::Issued, C::Pending],
                [A::Missing, A::Missing],
                true,
                false,
            ),
            vec![delete("us-west-2"), delete("eu-central-1")],
        ),
        // Nothing left.
        (
            seen(
                [C::Missing, C::Missing],
                [A::Missing, A::Missing],
                true,
                false,
            ),
            vec![],
        ),
    ];
    for (observed, steps) in cases {
        assert_eq!(plan_removal(&observed), steps, "{observed:?}");
    }
}
