//! What a stream record of the sites table means for the regions: a pure decision.

use aws_lambda_events::event::dynamodb::EventRecord;
use skyhost_meta::notify::Notification;
use skyhost_meta::store::item::{self, Item};
use skyhost_meta::SiteRecord;

/// What to do with one stream record.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not a site record (deployment, domain, region items): nothing to tell the regions.
    Ignore,
    /// A site record changed: tell every region.
    Notify(Notification),
    /// A site record that does not decode: it cannot be delivered, whatever the retries.
    Undecodable(String),
}

fn is_site(image: &Item) -> bool {
    item::attr_str(image, "kind") == Some("site")
}

/// Decides what a stream record means. A removal writes a tombstone one revision above
/// the last live record, so its notification carries that revision, which every region
/// accepts, and no record. An item deleted outright (by hand: skyhost never does) is
/// announced as a removal one revision above the deleted one.
pub fn decide(rec: &EventRecord) -> Decision {
    let change = &rec.change;
    let new_is_site = is_site(&change.new_image);
    let old_is_site = is_site(&change.old_image);
    if !new_is_site && !old_is_site {
        return Decision::Ignore;
    }
    let changed_ms = change.approximate_creation_date_time.timestamp_millis();
    let removed = rec.event_name == "REMOVE";
    let image = if removed {
        &change.old_image
    } else {
        &change.new_image
    };
    if removed && !old_is_site {
        return Decision::Undecodable("REMOVE of a site record without its old image".into());
    }
    if !removed && !new_is_site {
        return Decision::Undecodable(format!(
            "{} of a site record without its new image",
            rec.event_name
        ));
    }
    match item::site_record_from_item(image.clone()) {
        Ok(record) => {
            let (site, revision, record) = match (removed, record) {
                (false, SiteRecord::Live(s)) => (s.id.clone(), s.revision, Some(s)),
                (false, SiteRecord::Removed { id, revision, .. }) => (id, revision, None),
                (true, r) => {
                    let id = match &r {
                        SiteRecord::Live(s) => s.id.clone(),
                        SiteRecord::Removed { id, .. } => id.clone(),
                    };
                    (id, r.revision().saturating_add(1), None)
                }
            };
            Decision::Notify(Notification {
                site,
                revision,
                record,
                changed_ms,
            })
        }
        Err(e) => Decision::Undecodable(e.to_string()),
    }
}

/// The identifier Lambda expects for a failed stream record: its sequence number.
pub fn item_identifier(rec: &EventRecord) -> String {
    // Without a sequence number the empty identifier makes Lambda retry the whole batch,
    // which is the safe way to fail.
    rec.change.sequence_number.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn site_image(rev: u64, active: Option<&str>) -> serde_json::Value {
        let mut v = json!({
            "pk": {"S": "SITE#blog"}, "sk": {"S": "SITE"}, "kind": {"S": "site"},
            "site": {"S": "blog"}, "domains": {"L": [{"S": "blog.example"}]},
            "revision": {"N": rev.to_string()}, "suspended": {"BOOL": false},
            "updated": {"N": "1767435072"}
        });
        if let Some(a) = active {
            v["active"] = json!({"S": a});
        }
        v
    }

    fn tombstone(rev: u64) -> serde_json::Value {
        json!({
            "pk": {"S": "SITE#blog"}, "sk": {"S": "SITE"}, "kind": {"S": "site"},
            "site": {"S": "blog"}, "revision": {"N": rev.to_string()},
            "updated": {"N": "1767435072"}, "removed": {"BOOL": true}
        })
    }

    fn record(
        name: &str,
        new: Option<serde_json::Value>,
        old: Option<serde_json::Value>,
    ) -> EventRecord {
        skyhost_testkit::site_stream_record(name, new, old)
    }

    #[test]
    fn decisions() {
        const D1: &str = "20260103T101112Z-4e5f6a7b";
        let deployment = json!({
            "pk": {"S": "SITE#blog"}, "sk": {"S": "DEPLOY#x"}, "kind": {"S": "deployment"}
        });
        let domain = json!({
            "pk": {"S": "DOMAIN#blog.example"}, "sk": {"S": "DOMAIN"}, "kind": {"S": "domain"}
        });
        let broken = json!({
            "pk": {"S": "SITE#blog"}, "sk": {"S": "SITE"}, "kind": {"S": "site"},
            "site": {"S": "Not A Site Id"}, "revision": {"N": "3"}
        });
        // (record, Some((revision, has record, active)) for Notify, or the other outcome)
        type Want = Result<Option<(u64, bool, Option<&'static str>)>, ()>;
        let cases: Vec<(EventRecord, Want)> = vec![
            (
                record("INSERT", Some(site_image(1, None)), None),
                Ok(Some((1, true, None))),
            ),
            (
                record(
                    "MODIFY",
                    Some(site_image(7, Some(D1))),
                    Some(site_image(6, None)),
                ),
                Ok(Some((7, true, Some(D1)))),
            ),
            // A removal leaves a tombstone one above the live record: that revision,
            // no record.
            (
                record("MODIFY", Some(tombstone(8)), Some(site_image(7, Some(D1)))),
                Ok(Some((8, false, None))),
            ),
            // An item deleted outright is a removal above the deleted revision.
            (
                record("REMOVE", None, Some(site_image(7, Some(D1)))),
                Ok(Some((8, false, None))),
            ),
            // A site created again over its tombstone carries on from it.
            (
                record("MODIFY", Some(site_image(9, None)), Some(tombstone(8))),
                Ok(Some((9, true, None))),
            ),
            (record("INSERT", Some(deployment.clone()), None), Ok(None)),
            (record("REMOVE", None, Some(deployment)), Ok(None)),
            (
                record("MODIFY", Some(domain.clone()), Some(domain)),
                Ok(None),
            ),
            (record("INSERT", Some(broken.clone()), None), Err(())),
            (record("REMOVE", None, Some(broken)), Err(())),
            // A removal whose stream lost the old image cannot name a revision.
            (record("REMOVE", Some(site_image(2, None)), None), Err(())),
            (record("INSERT", None, None), Ok(None)),
        ];
        for (i, (rec, want)) in cases.into_iter().enumerate() {
            let got = match decide(&rec) {
                Decision::Ignore => Ok(None),
                Decision::Notify(n) => {
                    assert_eq!(n.site.as_str(), "blog", "case {i}");
                    assert_eq!(n.changed_ms, 1_767_435_072_000, "case {i}");
                    if let Some(r) = &n.record {
                        assert_eq!(r.revision, n.revision, "case {i}");
                    }
                    Ok(Some((
                        n.revision,
                        n.record.is_some(),
                        n.record
                            .as_ref()
                            .and_then(|r| r.active.as_ref())
                            .map(|a| a.as_str().to_owned()),
                    )))
                }
                Decision::Undecodable(_) => Err(()),
            };
            let want = want.map(|o| o.map(|(r, h, a)| (r, h, a.map(str::to_owned))));
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn identifiers_are_sequence_numbers() {
        let r = record("INSERT", Some(site_image(1, None)), None);
        assert_eq!(item_identifier(&r), "100");
    }
}
