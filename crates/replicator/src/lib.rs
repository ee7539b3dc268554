//! skyhost replicator: triggered by the sites table's stream, it tells every region that a
//! site changed — a signed notification carrying the whole new record. Each region is
//! delivered on its own: one that does not take a notification directly gets it on its own
//! queue ([`queue`]), and the queue consumer ([`Replicator::handle_queue`]) retries it
//! there until the region is back, so a dead region holds back no other. Without queues
//! the records some region did not take are reported, so Lambda retries from there.
//!
//! Local mode drives the same [`Replicator::handle`] from the embedded store's change feed.

pub mod backoff;
pub mod consumer;
pub mod queue;
pub mod record;

pub use backoff::RetryOptions;
pub use queue::{QueueOptions, Queues};

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::sqs::SqsEvent;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use futures::future::join_all;
use record::Decision;
use skyhost_meta::config::{env_req, parse_pairs, ConfigError, SdkConfigCell};
use skyhost_meta::metrics::{Metric, Metrics, Unit};
use skyhost_meta::notify::{HttpNotifier, Notification, Notifier, NotifyError};
use skyhost_meta::secrets::Secret;
use skyhost_meta::SiteId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The environment variables [`Replicator::from_env`] reads (all set by `template.yaml`).
pub const ENV_VARS: &[&str] = &[
    "SKYHOST_REGION",
    "SKYHOST_REGION_ENDPOINTS",
    "SKYHOST_NOTIFY_SECRET_ID",
    "SKYHOST_REGION_QUEUES",
];

/// Delivers site changes to every region. Built once per process.
pub struct Replicator {
    regions: Vec<(String, String)>,
    notifier: Arc<dyn Notifier>,
    opts: RetryOptions,
    metrics: Metrics,
    queues: Option<Queues>,
}

/// The notifications one batch needs: the last change of each site, by record index.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// (index of the record in the batch, its notification), in batch order.
    pub deliveries: Vec<(usize, Notification)>,
    /// (index, reason) of site records that cannot be decoded.
    pub undecodable: Vec<(usize, String)>,
}

/// Plans a batch. A site's changes arrive in order, and a notification carries the whole
/// record, so only the last change of each site in the batch needs sending: every earlier
/// one leads to the state the last one carries, and regions apply only higher revisions.
pub fn plan(records: &[EventRecord]) -> Plan {
    let mut last: HashMap<SiteId, (usize, Notification)> = HashMap::new();
    let mut undecodable = Vec::new();
    for (i, r) in records.iter().enumerate() {
        match record::decide(r) {
            Decision::Ignore => {}
            Decision::Notify(n) => {
                last.insert(n.site.clone(), (i, n));
            }
            Decision::Undecodable(why) => undecodable.push((i, why)),
        }
    }
    let mut deliveries: Vec<(usize, Notification)> = last.into_values().collect();
    deliveries.sort_by_key(|(i, _)| *i);
    Plan {
        deliveries,
        undecodable,
    }
}

/// The records to report as failed when the record at `first_failed` (the lowest failed
/// index) was not taken by some region.
///
/// Lambda semantics: with ReportBatchItemFailures, Lambda checkpoints the stream just
/// before the *lowest* reported sequence number and retries every record from there on,
/// whether reported or not. So the first failed record and every later one are reported:
/// the answer then says exactly what Lambda will deliver again.
pub fn failures(records: &[EventRecord], first_failed: Option<usize>) -> DynamoDbEventResponse {
    let mut resp = DynamoDbEventResponse::default();
    if let Some(first) = first_failed {
        for r in records.iter().skip(first) {
            let mut f = DynamoDbBatchItemFailure::default();
            f.item_identifier = Some(record::item_identifier(r));
            resp.batch_item_failures.push(f);
        }
    }
    resp
}

/// The instant of a Lambda context's deadline (wall clock) on the monotonic clock.
pub fn instant_of(deadline: SystemTime) -> Instant {
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now() + left
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Checks that the queues name exactly the notified regions, each once.
fn check_queues(
    endpoints: &[(String, String)],
    queues: &[(String, String)],
) -> Result<(), ConfigError> {
    let mut want: Vec<&str> = endpoints.iter().map(|(r, _)| r.as_str()).collect();
    let mut got: Vec<&str> = queues.iter().map(|(r, _)| r.as_str()).collect();
    want.sort_unstable();
    got.sort_unstable();
    if want != got {
        return Err(ConfigError(format!(
            "SKYHOST_REGION_QUEUES must name a queue for each region of SKYHOST_REGION_ENDPOINTS ({}), got {}",
            want.join(", "),
            got.join(", ")
        )));
    }
    Ok(())
}

/// Why one region did not take a notification in the time the invocation had.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("{0}")]
    Refused(NotifyError),
    #[error("gave up after {attempts} attempts, last: {last}")]
    OutOfTime { attempts: u32, last: String },
}

impl Replicator {
    /// A replicator notifying each `(region, origin base URL)`, through `notifier`.
    /// Metrics go to stdout (Lambda); see [`Replicator::with_metrics`].
    pub fn new(
        regions: Vec<(String, String)>,
        notifier: Arc<dyn Notifier>,
        opts: RetryOptions,
    ) -> Self {
        Replicator {
            regions,
            notifier,
            opts,
            metrics: Metrics::stdout(),
            queues: None,
        }
    }

    /// The same replicator queueing, per region, the notifications a region did not take
    /// directly, instead of reporting their records as failed.
    pub fn with_queues(mut self, queues: Queues) -> Self {
        self.queues = Some(queues);
        self
    }

    /// The same replicator emitting its metrics to `metrics` (local mode: discard).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The replicator configured by the function's environment (`ENV_VARS`): notifies
    /// every region of `SKYHOST_REGION_ENDPOINTS`, signing with the newest value of the
    /// Secrets Manager secret `SKYHOST_NOTIFY_SECRET_ID`, read when first needed, and
    /// queueing for each region on its queue of `SKYHOST_REGION_QUEUES`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let region = env_req("SKYHOST_REGION")?;
        let endpoints = parse_pairs(
            "SKYHOST_REGION_ENDPOINTS",
            &env_req("SKYHOST_REGION_ENDPOINTS")?,
        )?;
        for (r, url) in &endpoints {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError(format!(
                    "SKYHOST_REGION_ENDPOINTS: the endpoint of {r} must be an http(s) URL, got {url:?}"
                )));
            }
        }
        let queue_urls = parse_pairs("SKYHOST_REGION_QUEUES", &env_req("SKYHOST_REGION_QUEUES")?)?;
        check_queues(&endpoints, &queue_urls)?;
        let queues = Queues::new(
            Arc::new(queue::SqsQueues::new(SdkConfigCell::shared(&region))),
            queue_urls.into_iter().collect(),
            QueueOptions::default(),
        );
        let secret = Secret::secrets_manager(
            SdkConfigCell::shared(&region),
            env_req("SKYHOST_NOTIFY_SECRET_ID")?,
        );
        let opts = RetryOptions::default();
        let client = skyhost_meta::tls::http_client()
            .user_agent("skyhost-replicator")
            .connect_timeout(Duration::from_secs(3))
            .timeout(opts.attempt_timeout)
            .build()
            .map_err(|e| ConfigError(format!("HTTP client: {e}")))?;
        tracing::info!(
            region,
            targets = ?endpoints.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
            "replicator configured"
        );
        Ok(Replicator::new(
            endpoints,
            Arc::new(HttpNotifier::with_secret(client, secret)),
            opts,
        )
        .with_queues(queues))
    }

    /// Handles one Lambda event of either source the function has: a sites table stream
    /// batch, or a region queue batch (told apart by `eventSource`).
    pub async fn handle_event(
        &self,
        payload: serde_json::Value,
        deadline: Instant,
    ) -> Result<serde_json::Value, serde_json::Error> {
        let source = payload
            .pointer("/Records/0/eventSource")
            .and_then(|s| s.as_str())
            .unwrap_or_default();
        if source == "aws:sqs" {
            let event: SqsEvent = serde_json::from_value(payload)?;
            serde_json::to_value(self.handle_queue(event, deadline).await)
        } else {
            let event: Event = serde_json::from_value(payload)?;
            serde_json::to_value(self.handle(event, deadline).await)
        }
    }

    /// The regions notified, with their base URLs.
    pub fn regions(&self) -> &[(String, String)] {
        &self.regions
    }

    /// Handles one batch of stream records, as Lambda delivers it: every site's latest
    /// change goes to every region concurrently, each with retries until `deadline`
    /// (less [`RetryOptions::reserve`]). With queues, a region that does not take it
    /// within [`QueueOptions::direct_budget`] gets it on its queue instead. Records some
    /// region neither took nor got queued are reported.
    pub async fn handle(&self, event: Event, deadline: Instant) -> DynamoDbEventResponse {
        let records = event.records;
        let plan = plan(&records);
        for (i, why) in &plan.undecodable {
            // Retrying cannot fix a record that does not decode; a later change of the
            // site carries its state, and `skyhost verify` finds regions left behind.
            tracing::error!(
                sequence = %record::item_identifier(&records[*i]),
                reason = %why,
                "undecodable site record skipped"
            );
            self.metrics.emit(
                &[("Function", "replicator")],
                &[Metric {
                    name: "UndecodableRecords",
                    unit: Unit::Count,
                    value: 1.0,
                }],
            );
        }
        let outcomes = join_all(
            plan.deliveries
                .iter()
                .map(|(i, n)| async move { (*i, self.deliver_everywhere(n, deadline).await) }),
        )
        .await;
        let first_failed = outcomes.iter().filter(|(_, ok)| !ok).map(|(i, _)| *i).min();
        let resp = failures(&records, first_failed);
        tracing::info!(
            records = records.len(),
            notifications = plan.deliveries.len(),
            reported = resp.batch_item_failures.len(),
            "batch handled"
        );
        resp
    }

    /// Delivers `n` to every region; true when each of them took it or has it queued.
    async fn deliver_everywhere(&self, n: &Notification, deadline: Instant) -> bool {
        let results = join_all(
            self.regions
                .iter()
                .map(|(region, base)| self.deliver_or_queue(region, base, n, deadline)),
        )
        .await;
        results.into_iter().all(|ok| ok)
    }

    /// Delivers `n` to one region directly, or puts it on the region's queue when the
    /// region does not take it within the direct budget (or failed a moment ago).
    async fn deliver_or_queue(
        &self,
        region: &str,
        base: &str,
        n: &Notification,
        deadline: Instant,
    ) -> bool {
        let Some((q, url)) = self
            .queues
            .as_ref()
            .and_then(|q| q.url(region).map(|u| (q, u)))
        else {
            return self.deliver(region, base, n, deadline).await;
        };
        let now = Instant::now();
        if q.try_direct(region, now) {
            let end = deadline.min(now + q.opts.direct_budget + self.opts.reserve);
            let ok = self.deliver(region, base, n, end).await;
            q.direct_outcome(region, ok, Instant::now());
            if ok {
                return true;
            }
        }
        let body = queue::Queued {
            region: region.to_owned(),
            notification: n.clone(),
        }
        .encode();
        match q.port().send(url, body).await {
            Ok(()) => {
                self.metrics.emit(
                    &[("Region", region)],
                    &[Metric {
                        name: "NotificationsQueued",
                        unit: Unit::Count,
                        value: 1.0,
                    }],
                );
                tracing::info!(region, site = %n.site, revision = n.revision, "notification queued for the region");
                true
            }
            Err(e) => {
                tracing::error!(region, site = %n.site, revision = n.revision, error = %e, "could not queue the notification");
                false
            }
        }
    }

    async fn deliver(&self, region: &str, base: &str, n: &Notification, deadline: Instant) -> bool {
        match self.deliver_with_retries(base, n, deadline).await {
            Ok(attempts) => {
                let mut values = vec![Metric {
                    name: "Notifications",
                    unit: Unit::Count,
                    value: 1.0,
                }];
                if n.changed_ms > 0 {
                    values.push(Metric {
                        name: "NotificationLatency",
                        unit: Unit::Milliseconds,
                        value: (now_ms() - n.changed_ms).max(0) as f64,
                    });
                }
                self.metrics.emit(&[("Region", region)], &values);
                tracing::info!(
                    region,
                    site = %n.site,
                    revision = n.revision,
                    attempts,
                    removed = n.record.is_none(),
                    "region notified"
                );
                true
            }
            Err(e) => {
                self.metrics.emit(
                    &[("Region", region)],
                    &[Metric {
                        name: "NotificationFailures",
                        unit: Unit::Count,
                        value: 1.0,
                    }],
                );
                tracing::warn!(
                    region,
                    site = %n.site,
                    revision = n.revision,
                    error = %e,
                    "region did not take the notification"
                );
                false
            }
        }
    }

    /// Attempts until the region takes `n`, refuses it for good, or the budget ends.
    async fn deliver_with_retries(
        &self,
        base: &str,
        n: &Notification,
        deadline: Instant,
    ) -> Result<u32, DeliveryError> {
        let end = self.opts.budget_end(deadline);
        let mut attempts = 0u32;
        let mut last = String::from("no time left to try");
        loop {
            let now = Instant::now();
            if now >= end {
                return Err(DeliveryError::OutOfTime { attempts, last });
            }
            attempts += 1;
            let limit = self.opts.attempt_timeout.min(end - now);
            match tokio::time::timeout(limit, self.notifier.notify(base, n)).await {
                Ok(Ok(())) => return Ok(attempts),
                Ok(Err(e)) if !e.retryable() => return Err(DeliveryError::Refused(e)),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("no answer within {} ms", limit.as_millis()),
            }
            let jitter: f64 = rand::random();
            match backoff::next_retry(&self.opts, attempts, jitter, Instant::now(), end) {
                Some(d) => tokio::time::sleep(d).await,
                None => return Err(DeliveryError::OutOfTime { attempts, last }),
            }
        }
    }
}
