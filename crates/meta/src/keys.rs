//! The storage key scheme of the buckets (DESIGN.md, "Storage").

use crate::ids::{BlobHash, DeploymentId, SiteId};
use crate::model::Encoding;

/// `sites/{site}/blobs/{sha256}[.br|.gz]`.
pub fn blob(site: &SiteId, hash: &BlobHash, encoding: Option<Encoding>) -> String {
    // Built by hand: the origin names a blob on every file answer.
    let (site, hash) = (site.as_str(), hash.as_str());
    let suffix = encoding.map(Encoding::suffix).unwrap_or("");
    let mut key = String::with_capacity(13 + site.len() + hash.len() + suffix.len());
    key.push_str("sites/");
    key.push_str(site);
    key.push_str("/blobs/");
    key.push_str(hash);
    key.push_str(suffix);
    key
}

/// `sites/{site}/manifests/{deployment}.json`.
pub fn manifest(site: &SiteId, deployment: &DeploymentId) -> String {
    format!("sites/{site}/manifests/{deployment}.json")
}

/// `sites/{site}/`: every key of a site.
pub fn site_prefix(site: &SiteId) -> String {
    format!("sites/{site}/")
}

/// `sites/{site}/manifests/`: every manifest of a site.
pub fn manifests_prefix(site: &SiteId) -> String {
    format!("sites/{site}/manifests/")
}

/// `sites/{site}/blobs/`: every blob of a site.
pub fn blobs_prefix(site: &SiteId) -> String {
    format!("sites/{site}/blobs/")
}

/// What a bucket key names, parsed back; anything else is not skyhost's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// A blob, possibly a precompressed variant.
    Blob(SiteId, BlobHash, Option<Encoding>),
    /// A manifest.
    Manifest(SiteId, DeploymentId),
}

/// Parses a bucket key of the scheme.
pub fn parse(key: &str) -> Option<KeyKind> {
    let rest = key.strip_prefix("sites/")?;
    let (site, rest) = rest.split_once('/')?;
    let site = SiteId::parse(site).ok()?;
    if let Some(name) = rest.strip_prefix("blobs/") {
        let (hash, enc) = if let Some(h) = name.strip_suffix(".br") {
            (h, Some(Encoding::Br))
        } else if let Some(h) = name.strip_suffix(".gz") {
            (h, Some(Encoding::Gzip))
        } else {
            (name, None)
        };
        return Some(KeyKind::Blob(site, BlobHash::parse(hash).ok()?, enc));
    }
    let id = rest.strip_prefix("manifests/")?.strip_suffix(".json")?;
    Some(KeyKind::Manifest(site, DeploymentId::parse(id).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let s = SiteId::parse("blog").unwrap();
        let h = BlobHash::of(b"x");
        let d = DeploymentId::parse("20261121T230500Z-1a2b3c4d").unwrap();
        let cases = [
            (
                blob(&s, &h, None),
                Some(KeyKind::Blob(s.clone(), h.clone(), None)),
            ),
            (
                blob(&s, &h, Some(Encoding::Br)),
                Some(KeyKind::Blob(s.clone(), h.clone(), Some(Encoding::Br))),
            ),
            (
                blob(&s, &h, Some(Encoding::Gzip)),
                Some(KeyKind::Blob(s.clone(), h.clone(), Some(Encoding::Gzip))),
            ),
            (
                manifest(&s, &d),
                Some(KeyKind::Manifest(s.clone(), d.clone())),
            ),
            ("sites/blog/other/x".into(), None),
            ("sites/Blog/blobs/00".into(), None),
            ("elsewhere/file".into(), None),
        ];
        for (key, want) in cases {
            assert_eq!(parse(&key), want, "{key}");
        }
        assert_eq!(
            manifest(&s, &d),
            "sites/blog/manifests/20261121T230500Z-1a2b3c4d.json"
        );
    }

    #[test]
    fn every_blob_key_is_under_the_blobs_prefix() {
        let s = SiteId::parse("blog").unwrap();
        let h = BlobHash::of(b"x");
        assert_eq!(blobs_prefix(&s), "sites/blog/blobs/");
        for enc in [None, Some(Encoding::Br), Some(Encoding::Gzip)] {
            let key = blob(&s, &h, enc);
            let name = key.strip_prefix(&blobs_prefix(&s));
            assert!(name.is_some_and(|n| n.starts_with(h.as_str())), "{key}");
        }
        // Another site's prefix names none of them.
        let other = SiteId::parse("blog2").unwrap();
        assert!(!blob(&other, &h, None).starts_with(&blobs_prefix(&s)));
    }

    #[test]
    fn prefixes_hold_exactly_their_keys() {
        let s = SiteId::parse("blog").unwrap();
        let other = SiteId::parse("blog2").unwrap();
        let h = BlobHash::of(b"x");
        let d = DeploymentId::parse("20261121T230500Z-1a2b3c4d").unwrap();
        assert_eq!(site_prefix(&s), "sites/blog/");
        assert_eq!(manifests_prefix(&s), "sites/blog/manifests/");
        assert_eq!(blobs_prefix(&s), "sites/blog/blobs/");
        // (key, under the site's prefix, under its manifests', under its blobs')
        let cases = [
            (blob(&s, &h, None), true, false, true),
            (blob(&s, &h, Some(Encoding::Br)), true, false, true),
            (manifest(&s, &d), true, true, false),
            (manifest(&other, &d), false, false, false),
            (blob(&other, &h, None), false, false, false),
        ];
        for (key, site, manifests, blobs) in cases {
            assert_eq!(key.starts_with(&site_prefix(&s)), site, "{key}");
            assert_eq!(key.starts_with(&manifests_prefix(&s)), manifests, "{key}");
            assert_eq!(key.starts_with(&blobs_prefix(&s)), blobs, "{key}");
        }
    }
}
