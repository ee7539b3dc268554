//! The sites' generation item: one small item, bumped in the same transaction as every
//! site change, that lists the last few changes (site, revision). An origin instance reads
//! it from its region's replica at most once a second and re-reads only the sites whose
//! revision moved, so every instance converges without a notification, at a cost that
//! grows with neither the number of sites nor the number of instances.
//!
//! | item | `pk` | `sk` | other attributes |
//! |---|---|---|---|
//! | generation | `GENERATION` | `GENERATION` | `kind`=`generation`, `revision` (N: the generation), `recent` (list of `{site, revision}`, oldest first) |
//!
//! The generation is kept in `revision` so that the write bumping it is conditional on
//! the value read, exactly as a site's write is.

use super::item::{Item, Key};
use super::StoreError;
use crate::ids::SiteId;
use serde::{Deserialize, Serialize};

/// How many changes the item lists. An instance that missed more than this between two
/// reads re-reads every site record once. 24 entries of at most 63-byte ids keep the item
/// under 4 KB: one eventually consistent read unit.
pub const RECENT: usize = 24;

/// The key of the generation item.
pub fn key() -> Key {
    Key {
        pk: "GENERATION".into(),
        sk: "GENERATION".into(),
    }
}

/// One site change listed by the generation item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    /// The site.
    pub site: SiteId,
    /// Its revision after the change.
    pub revision: u64,
}

/// The generation item's content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generation {
    /// Raised by one with every site change; 0 before the first.
    pub number: u64,
    /// The last changes, oldest first; the last one is generation `number`.
    pub recent: Vec<Changed>,
}

#[derive(Serialize, Deserialize)]
struct GenerationItem {
    pk: String,
    sk: String,
    kind: String,
    revision: u64,
    #[serde(default)]
    recent: Vec<Changed>,
}

/// What an instance must do to catch up from the generation it last saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatchUp {
    /// Nothing changed.
    Current,
    /// Re-read these sites (each the newest revision listed for it, in listing order).
    Sites(Vec<Changed>),
    /// More changed than the item lists: re-read every site.
    Everything,
}

impl Generation {
    /// The generation after `site` changed to `revision`.
    pub fn bumped(&self, site: &SiteId, revision: u64) -> Generation {
        let mut recent = self.recent.clone();
        recent.push(Changed {
            site: site.clone(),
            revision,
        });
        let excess = recent.len().saturating_sub(RECENT);
        recent.drain(..excess);
        Generation {
            number: self.number + 1,
            recent,
        }
    }

    /// What an instance that last saw generation `seen` must re-read. Pure.
    pub fn since(&self, seen: u64) -> CatchUp {
        if seen >= self.number {
            return CatchUp::Current;
        }
        let missed = self.number - seen;
        let listed = u64::try_from(self.recent.len()).unwrap_or(u64::MAX);
        if missed > listed {
            return CatchUp::Everything;
        }
        // `missed` <= `recent.len()`, so the conversion and the slice hold.
        let from = self.recent.len() - usize::try_from(missed).unwrap_or(self.recent.len());
        let mut out: Vec<Changed> = Vec::new();
        for c in &self.recent[from..] {
            match out.iter_mut().find(|o| o.site == c.site) {
                Some(o) => o.revision = o.revision.max(c.revision),
                None => out.push(c.clone()),
            }
        }
        CatchUp::Sites(out)
    }

    /// The listed changes, newest revision per site: what a cold instance checks.
    pub fn listed(&self) -> Vec<Changed> {
        match self.since(self.number.saturating_sub(self.recent.len() as u64)) {
            CatchUp::Sites(v) => v,
            _ => Vec::new(),
        }
    }
}

/// The generation as an item.
pub fn to_item(g: &Generation) -> Item {
    let k = key();
    // Strings and numbers only: serde_dynamo cannot fail on them.
    serde_dynamo::to_item(GenerationItem {
        pk: k.pk,
        sk: k.sk,
        kind: "generation".into(),
        revision: g.number,
        recent: g.recent.clone(),
    })
    .unwrap_or_default()
}

/// The generation from its item (`None`: no site changed yet).
pub fn from_item(item: Option<Item>) -> Result<Generation, StoreError> {
    let Some(item) = item else {
        return Ok(Generation::default());
    };
    let i: GenerationItem = serde_dynamo::from_item(item)
        .map_err(|e| StoreError::Corrupt(format!("generation item: {e}")))?;
    Ok(Generation {
        number: i.revision,
        recent: i.recent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(id: &str) -> SiteId {
        SiteId::parse(id).unwrap()
    }

    fn gen(number: u64, recent: &[(&str, u64)]) -> Generation {
        Generation {
            number,
            recent: recent
                .iter()
                .map(|(site, revision)| Changed {
                    site: s(site),
                    revision: *revision,
                })
                .collect(),
        }
    }

    #[test]
    fn since_table() {
        let g = gen(10, &[("a", 4), ("b", 7), ("a", 5), ("c", 1)]);
        let sites = |v: &[(&str, u64)]| CatchUp::Sites(gen(0, v).recent);
        let cases = [
            (10, CatchUp::Current),
            (12, CatchUp::Current),
            (9, sites(&[("c", 1)])),
            (8, sites(&[("a", 5), ("c", 1)])),
            (6, sites(&[("a", 5), ("b", 7), ("c", 1)])),
            (5, CatchUp::Everything),
            (0, CatchUp::Everything),
        ];
        for (seen, want) in cases {
            assert_eq!(g.since(seen), want, "seen {seen}");
        }
        assert_eq!(gen(0, &[]).since(0), CatchUp::Current);
        assert_eq!(
            g.listed(),
            gen(0, &[("a", 5), ("b", 7), ("c", 1)]).recent,
            "a cold instance checks every listed site once"
        );
    }

    #[test]
    fn bumped_keeps_the_last_changes() {
        let mut g = Generation::default();
        for i in 0..(RECENT as u64 + 5) {
            g = g.bumped(&s("a"), i + 1);
        }
        assert_eq!(g.number, RECENT as u64 + 5);
        assert_eq!(g.recent.len(), RECENT);
        assert_eq!(g.recent.last().unwrap().revision, RECENT as u64 + 5);
        assert_eq!(g.recent[0].revision, 6);
    }

    #[test]
    fn item_round_trip() {
        let g = gen(3, &[("a", 1), ("b", 2)]);
        assert_eq!(from_item(Some(to_item(&g))).unwrap(), g);
        assert_eq!(from_item(None).unwrap(), Generation::default());
        let big = (0..RECENT).fold(Generation::default(), |g, _| {
            g.bumped(&s(&"x".repeat(63)), u64::MAX)
        });
        let size = serde_json::to_vec(&to_item(&big)).unwrap().len();
        assert!(size < 4096, "{size} bytes");
    }
}
