//! A region's delivery queue: where a notification waits when its region did not take it
//! directly, until the queue consumer ([`crate::Replicator::handle_queue`]) delivers it.
//! One queue per region, so a dead region's backlog holds back no other region.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use skyhost_meta::config::{ClientCell, SdkConfigCell};
use skyhost_meta::notify::Notification;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A queue message: the notification and the region it is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    /// The region that did not take the notification.
    pub region: String,
    /// The notification, whole: the consumer needs nothing else to deliver it.
    pub notification: Notification,
}

impl Queued {
    /// The message body.
    pub fn encode(&self) -> String {
        // A struct of strings, numbers and a record that came from JSON: always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes a message body.
    pub fn decode(body: &str) -> Result<Self, String> {
        serde_json::from_str(body).map_err(|e| format!("not a queued notification: {e}"))
    }
}

/// Why a queue call failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct QueueError(pub String);

/// The queue port: the two calls the replicator makes itself (the event source mapping
/// receives and deletes).
#[async_trait]
pub trait RegionQueue: Send + Sync {
    /// Puts `body` on the queue at `queue_url`.
    async fn send(&self, queue_url: &str, body: String) -> Result<(), QueueError>;
    /// Makes a received message visible again only after `delay` (the retry backoff).
    async fn retry_after(
        &self,
        queue_url: &str,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), QueueError>;
}

/// The SQS adapter, its client built on first use (a batch every region takes never
/// needs it).
pub struct SqsQueues {
    client: ClientCell<aws_sdk_sqs::Client>,
}

impl SqsQueues {
    /// Queues reached with the SDK configuration `conf`.
    pub fn new(conf: SdkConfigCell) -> Self {
        SqsQueues {
            client: ClientCell::deferred(conf, aws_sdk_sqs::Client::new),
        }
    }
}

#[async_trait]
impl RegionQueue for SqsQueues {
    async fn send(&self, queue_url: &str, body: String) -> Result<(), QueueError> {
        self.client
            .get()
            .await
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| QueueError(format!("SendMessage to {queue_url}: {}", sdk_error(&e))))
    }

    async fn retry_after(
        &self,
        queue_url: &str,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .get()
            .await
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(i32::try_from(delay.as_secs()).unwrap_or(i32::MAX))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                QueueError(format!(
                    "ChangeMessageVisibility on {queue_url}: {}",
                    sdk_error(&e)
                ))
            })
    }
}

fn sdk_error<E: std::error::Error>(e: &E) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// Timing of queued delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueOptions {
    /// How long the stream handler tries a region directly before queueing.
    pub direct_budget: Duration,
    /// After a region failed a direct delivery, how long its notifications go straight to
    /// its queue, so a dead region costs later batches no direct attempts.
    pub skip_direct_for: Duration,
    /// How long the consumer tries one queued notification in an invocation.
    pub consumer_budget: Duration,
    /// Hidden time of a message after its first failed receive; doubles per receive.
    pub first_backoff: Duration,
    /// Longest hidden time.
    pub max_backoff: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            direct_budget: Duration::from_secs(2),
            skip_direct_for: Duration::from_secs(10),
            consumer_budget: Duration::from_secs(10),
            first_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(900),
        }
    }
}

impl QueueOptions {
    /// How long a message stays hidden after its `receive_count`th receive failed.
    pub fn backoff(&self, receive_count: u32) -> Duration {
        let exp = receive_count.saturating_sub(1).min(30);
        self.first_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff)
    }
}

/// The regions' queues, as the replicator uses them.
pub struct Queues {
    port: std::sync::Arc<dyn RegionQueue>,
    urls: HashMap<String, String>,
    pub(crate) opts: QueueOptions,
    /// Regions whose last direct delivery failed, and when.
    failed_at: Mutex<HashMap<String, Instant>>,
}

impl Queues {
    /// Queues by region (`region → queue URL`), reached through `port`.
    pub fn new(
        port: std::sync::Arc<dyn RegionQueue>,
        urls: HashMap<String, String>,
        opts: QueueOptions,
    ) -> Self {
        Queues {
            port,
            urls,
            opts,
            failed_at: Mutex::new(HashMap::new()),
        }
    }

    /// The queue URL of `region`, if it has one.
    pub fn url(&self, region: &str) -> Option<&str> {
        self.urls.get(region).map(String::as_str)
    }

    pub(crate) fn port(&self) -> &dyn RegionQueue {
        self.port.as_ref()
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        // Entries are whole instants: a poisoned map is still a good map.
        self.failed_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether to try `region` directly at `now`.
    pub(crate) fn try_direct(&self, region: &str, now: Instant) -> bool {
        direct_first(
            self.failures().get(region).copied(),
            now,
            self.opts.skip_direct_for,
        )
    }

    /// Records the outcome of a direct delivery to `region`.
    pub(crate) fn direct_outcome(&self, region: &str, ok: bool, now: Instant) {
        let mut f = self.failures();
        if ok {
            f.remove(region);
        } else {
            f.insert(region.to_owned(), now);
        }
    }
}

/// Whether a region whose last direct delivery failed at `failed_at` is tried directly at
/// `now`: yes unless that failure is younger than `skip_for`.
pub fn direct_first(failed_at: Option<Instant>, now: Instant, skip_for: Duration) -> bool {
    match failed_at {
        None => true,
        Some(t) => now.saturating_duration_since(t) >= skip_for,
    }
}

/// A queued notification of a batch, for [`collapse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key<'a> {
    /// Its region.
    pub region: &'a str,
    /// Its site.
    pub site: &'a str,
    /// Its revision.
    pub revision: u64,
}

/// One delivery of a queue batch: the newest message of a region's site, and the older
/// ones it makes pointless (they are deleted whatever the outcome, since the newest stays
/// queued until it is delivered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Index of the newest message.
    pub newest: usize,
    /// Indexes of the older messages of the same region and site.
    pub superseded: Vec<usize>,
}

/// Collapses a batch: per (region, site), only the highest revision is delivered. A
/// notification carries the whole record and regions apply only higher revisions, so an
/// older one can only be refused. Groups come in order of their newest message.
pub fn collapse(keys: &[Key<'_>]) -> Vec<Group> {
    let mut by: HashMap<(&str, &str), Group> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        match by.entry((k.region, k.site)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Group {
                    newest: i,
                    superseded: Vec::new(),
                });
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let g = o.get_mut();
                if k.revision > keys[g.newest].revision {
                    g.superseded.push(g.newest);
                    g.newest = i;
                } else {
                    g.superseded.push(i);
                }
            }
        }
    }
    let mut groups: Vec<Group> = by.into_values().collect();
    for g in &mut groups {
        g.superseded.sort_unstable();
    }
    groups.sort_by_key(|g| g.newest);
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k<'a>(region: &'a str, site: &'a str, revision: u64) -> Key<'a> {
        Key {
            region,
            site,
            revision,
        }
    }

    #[test]
    fn collapse_keeps_the_newest_per_region_and_site() {
        // (batch, expected (newest, superseded) groups)
        // (newest, superseded) of each group.
        type Groups = Vec<(usize, Vec<usize>)>;
        let cases: Vec<(Vec<Key>, Groups)> = vec![
            (vec![], vec![]),
            (vec![k("eu", "a", 1)], vec![(0, vec![])]),
            // An older revision after a newer one is superseded, whatever the order.
            (vec![k("eu", "a", 5), k("eu", "a", 3)], vec![(0, vec![1])]),
            (vec![k("eu", "a", 3), k("eu", "a", 5)], vec![(1, vec![0])]),
            // The same revision twice (a duplicate delivery): one send.
            (vec![k("eu", "a", 4), k("eu", "a", 4)], vec![(0, vec![1])]),
            // Other sites and other regions are separate deliveries.
            (
                vec![k("eu", "a", 2), k("eu", "b", 1), k("ap", "a", 1)],
                vec![(0, vec![]), (1, vec![]), (2, vec![])],
            ),
            (
                vec![
                    k("eu", "a", 2),
                    k("ap", "a", 9),
                    k("eu", "a", 7),
                    k("eu", "a", 1),
                ],
                vec![(1, vec![]), (2, vec![0, 3])],
            ),
        ];
        for (keys, want) in cases {
            let got: Groups = collapse(&keys)
                .into_iter()
                .map(|g| (g.newest, g.superseded))
                .collect();
            assert_eq!(got, want, "{keys:?}");
        }
    }

    #[test]
    fn backoff_doubles_per_receive_up_to_the_cap() {
        let o = QueueOptions::default();
        // (receive count, seconds hidden)
        let cases = [
            (0, 30),
            (1, 30),
            (2, 60),
            (3, 120),
            (5, 480),
            (6, 900),
            (40, 900),
        ];
        for (n, want) in cases {
            assert_eq!(o.backoff(n).as_secs(), want, "receive {n}");
        }
    }

    #[test]
    fn a_region_that_just_failed_goes_straight_to_its_queue() {
        let now = Instant::now();
        let skip = Duration::from_secs(10);
        // (seconds since the failure, or none; direct?)
        let cases = [
            (None, true),
            (Some(0), false),
            (Some(9), false),
            (Some(10), true),
        ];
        for (ago, want) in cases {
            let failed = ago.map(|s| now - Duration::from_secs(s));
            assert_eq!(direct_first(failed, now, skip), want, "{ago:?}");
        }
    }

    #[test]
    fn a_queued_notification_survives_its_message_body() {
        let q = Queued {
            region: "eu-central-1".into(),
            notification: Notification {
                site: skyhost_meta::SiteId::parse("blog").unwrap(),
                revision: 7,
                record: None,
                changed_ms: 12,
            },
        };
        assert_eq!(Queued::decode(&q.encode()).unwrap(), q);
        assert!(Queued::decode("{}").is_err());
        assert!(Queued::decode("not json").is_err());
    }
}
