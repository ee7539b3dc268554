//! The queue consumer: delivers the notifications a region did not take directly, from
//! that region's queue, once per site (the newest revision), with backoff between
//! receives until the region is back.

use crate::queue::{collapse, Key, Queued};
use crate::Replicator;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;
use std::time::{Duration, Instant};

/// A message of the batch that decoded.
struct Item<'a> {
    message: &'a SqsMessage,
    queued: Queued,
}

fn failure(id: &str) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id.to_owned();
    f
}

fn receive_count(m: &SqsMessage) -> u32 {
    m.attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1)
}

impl Replicator {
    /// Handles one batch of a region queue, as Lambda's SQS event source mapping delivers
    /// it: the newest notification of each (region, site) is delivered, older ones of the
    /// batch are dropped, and the messages whose region did not take them are reported,
    /// hidden for a growing backoff, so SQS offers them again later.
    pub async fn handle_queue(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let mut items = Vec::new();
        for m in &event.records {
            match m.body.as_deref().map(Queued::decode) {
                Some(Ok(queued)) => items.push(Item { message: m, queued }),
                // Retrying cannot fix a body that does not decode; `skyhost verify` finds a
                // region left behind.
                Some(Err(why)) => {
                    tracing::error!(message = ?m.message_id, reason = %why, "undecodable queue message dropped")
                }
                None => tracing::error!(message = ?m.message_id, "empty queue message dropped"),
            }
        }
        let keys: Vec<Key> = items
            .iter()
            .map(|it| Key {
                region: &it.queued.region,
                site: it.queued.notification.site.as_str(),
                revision: it.queued.notification.revision,
            })
            .collect();
        let groups = collapse(&keys);
        let failed = join_all(
            groups
                .iter()
                .map(|g| self.deliver_queued(&items[g.newest], deadline)),
        )
        .await;
        let mut resp = SqsBatchResponse::default();
        resp.batch_item_failures = failed
            .into_iter()
            .flatten()
            .map(|id| failure(&id))
            .collect();
        tracing::info!(
            messages = event.records.len(),
            deliveries = groups.len(),
            reported = resp.batch_item_failures.len(),
            "queue batch handled"
        );
        resp
    }

    /// Delivers one queued notification; the message id to report when it failed.
    async fn deliver_queued(&self, item: &Item<'_>, deadline: Instant) -> Option<String> {
        let Item { message, queued } = item;
        let region = queued.region.as_str();
        let Some((_, base)) = self.regions.iter().find(|(r, _)| r == region) else {
            // The region left the deployment: nothing will ever take it.
            tracing::warn!(
                region,
                "queued notification for a region no longer notified dropped"
            );
            return None;
        };
        let budget = self
            .queues
            .as_ref()
            .map(|q| q.opts.consumer_budget)
            .unwrap_or(Duration::from_secs(10));
        let end = deadline.min(Instant::now() + budget + self.opts.reserve);
        if self.deliver(region, base, &queued.notification, end).await {
            return None;
        }
        // SQS offers a failed message again after its visibility timeout; setting it
        // per receive makes the retries back off while the region stays down.
        if let (Some(q), Some(handle)) = (&self.queues, message.receipt_handle.as_deref()) {
            if let Some(url) = q.url(region) {
                let delay = q.opts.backoff(receive_count(message));
                if let Err(e) = q.port().retry_after(url, handle, delay).await {
                    tracing::warn!(region, error = %e, "could not delay the retry");
                }
            }
        }
        Some(message.message_id.clone().unwrap_or_default())
    }
}
