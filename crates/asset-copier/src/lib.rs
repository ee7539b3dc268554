//! skyhost asset-copier: for each object created in the primary bucket (ObjectCreated
//! events, delivered directly or in SQS messages), a copy in every replica bucket.
//!
//! Copies are idempotent (an object the destination already holds with the same size and
//! hash is skipped) and atomic (a copy cut short never leaves a partial object visible),
//! so a failed invocation is simply retried by Lambda and, in the end, dead-lettered.
//! Local mode drives the same [`Copier`] from the embedded buckets' event feed.
//!
//! It also heals what copies missed: the activation check ([`activation`], on the sites
//! table's stream) and the scheduled sweep ([`sweep`]) run the repair code of
//! `skyhost verify` ([`repair`]).

pub mod activation;
pub mod event;
pub mod multipart;
pub mod repair;
pub mod s3copy;
pub mod sweep;

use aws_lambda_events::event::s3::{S3Event, S3EventRecord};
use aws_lambda_events::event::sqs::SqsEvent;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use skyhost_meta::blob::s3::S3BlobStore;
use skyhost_meta::blob::{BlobError, BlobStore, ObjectMeta};
use skyhost_meta::config::{env_req, parse_pairs, ConfigError, SdkConfigCell};
use skyhost_meta::metrics::{Metric, Metrics, Unit};
use skyhost_meta::store::MetaStore;
use std::collections::BTreeMap;
use std::sync::Arc;

pub use event::Ignored;

/// The environment variables [`Copier::from_env`] reads (all set by `template.yaml`).
pub const ENV_VARS: &[&str] = &[
    "SKYHOST_REGION",
    "SKYHOST_PRIMARY_BUCKET",
    "SKYHOST_REPLICA_BUCKETS",
    "SKYHOST_MULTIPART_THRESHOLD",
];

/// How the copier copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOptions {
    /// Objects of at least this many bytes are copied in parts (S3 → S3).
    pub multipart_threshold: u64,
    /// Size of each part of a multipart copy (raised to S3's limits when needed).
    pub part_size: u64,
    /// Objects × replicas copied at once.
    pub concurrency: usize,
    /// Parts of one multipart copy in flight at once.
    pub part_concurrency: usize,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            multipart_threshold: 100 * 1024 * 1024,
            part_size: 64 * 1024 * 1024,
            concurrency: 8,
            part_concurrency: 4,
        }
    }
}

/// How one object reached one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The replica already held it (same size and hash): nothing copied.
    Present,
    /// One server-side CopyObject.
    ServerCopy,
    /// A server-side multipart copy (UploadPartCopy).
    Multipart,
    /// Streamed through the function (stores other than S3 on both ends).
    Stream,
}

/// One object copied to (or found in) one replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transfer {
    /// The object key.
    pub key: String,
    /// The replica's region.
    pub region: String,
    /// The object's size.
    pub bytes: u64,
    /// How it got there.
    pub method: Method,
}

/// What an invocation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// Every (object, replica) handled, copied or already present.
    pub transfers: Vec<Transfer>,
    /// Event records that named nothing to copy.
    pub ignored: Vec<Ignored>,
}

impl CopyReport {
    /// Transfers that copied bytes (not [`Method::Present`]).
    pub fn copied(&self) -> impl Iterator<Item = &Transfer> {
        self.transfers
            .iter()
            .filter(|t| t.method != Method::Present)
    }

    /// Bytes copied.
    pub fn bytes_copied(&self) -> u64 {
        self.copied().map(|t| t.bytes).sum()
    }
}

/// One copy that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The object key (or the SQS message id of a message that is not an S3 event).
    pub key: String,
    /// The replica's region, when the failure concerns one.
    pub region: Option<String>,
    /// What went wrong.
    pub error: String,
}

/// Why an invocation failed; Lambda retries it, then sends it to the dead-letter queue.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Some copies failed; the others are done (and will be skipped by the retry).
    #[error("{} copies failed, first: {}{}: {}",
        .failures.len(),
        .failures.first().map(|f| f.key.as_str()).unwrap_or(""),
        .failures.first().and_then(|f| f.region.as_deref()).map(|r| format!(" to {r}")).unwrap_or_default(),
        .failures.first().map(|f| f.error.as_str()).unwrap_or(""))]
    Failed {
        /// Every failure.
        failures: Vec<Failure>,
        /// What was done nevertheless.
        report: CopyReport,
    },
    /// The payload is neither an S3 event nor an SQS batch of them.
    #[error("not an S3 event or an SQS batch of S3 events: {0}")]
    BadEvent(String),
}

/// What an invocation did, by its kind.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Handled {
    /// Objects copied on S3 events.
    Copy(CopyReport),
    /// Activations checked.
    Activations(activation::ActivationReport),
    /// A sweep.
    Sweep(sweep::SweepReport),
}

/// Why an invocation failed (Lambda retries it).
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Copies on S3 events.
    #[error(transparent)]
    Copy(#[from] CopyError),
    /// An activation check.
    #[error(transparent)]
    Activation(#[from] activation::ActivationError),
    /// A sweep.
    #[error("sweep: {0}")]
    Sweep(#[from] repair::RepairError),
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Whether a destination object is the source object: same size, and same SHA-256 when
/// both record it (the rule of [`BlobStore::copy_from`]).
pub fn already_there(src: &ObjectMeta, dst: Option<&ObjectMeta>) -> bool {
    let Some(dst) = dst else { return false };
    let same_hash = match (&src.sha256, &dst.sha256) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    src.size == dst.size && same_hash
}

/// Copies new objects of the primary bucket into every replica bucket. Built once per
/// process.
pub struct Copier {
    source: Arc<dyn BlobStore>,
    replicas: Vec<(String, Arc<dyn BlobStore>)>,
    opts: CopyOptions,
    metrics: Metrics,
    /// The primary region's name, in repair reports.
    source_region: String,
    /// The sites table: the sweep lists the sites from it.
    meta: Option<Arc<dyn MetaStore>>,
}

type Outcome = Result<Transfer, Failure>;

impl Copier {
    /// A copier from `source` into each `(region, bucket)` of `replicas`. Metrics go to
    /// stdout (Lambda); see [`Copier::with_metrics`].
    pub fn new(
        source: Arc<dyn BlobStore>,
        replicas: Vec<(String, Arc<dyn BlobStore>)>,
        opts: CopyOptions,
    ) -> Self {
        Copier {
            source,
            replicas,
            opts,
            metrics: Metrics::stdout(),
            source_region: "primary".into(),
            meta: None,
        }
    }

    /// The same copier naming the primary region `region` in its reports.
    pub fn with_source_region(mut self, region: &str) -> Self {
        region.clone_into(&mut self.source_region);
        self
    }

    /// The same copier able to sweep the sites of `meta` ([`Copier::sweep`]).
    pub fn with_meta(mut self, meta: Arc<dyn MetaStore>) -> Self {
        self.meta = Some(meta);
        self
    }

    /// The primary bucket.
    pub fn source(&self) -> &dyn BlobStore {
        self.source.as_ref()
    }

    /// The primary region's name.
    pub fn source_region(&self) -> &str {
        &self.source_region
    }

    /// The metrics sink.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// How many copies run at once.
    pub(crate) fn concurrency(&self) -> usize {
        self.opts.concurrency.max(1)
    }

    /// The same copier emitting its metrics to `metrics` (local mode: discard).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The copier configured by the function's environment (`ENV_VARS`): S3 clients for
    /// the primary region and for each replica's region ([`Copier::s3`]).
    pub async fn from_env() -> Result<Self, ConfigError> {
        let region = env_req("SKYHOST_REGION")?;
        let primary = env_req("SKYHOST_PRIMARY_BUCKET")?;
        let replicas = parse_pairs(
            "SKYHOST_REPLICA_BUCKETS",
            &env_req("SKYHOST_REPLICA_BUCKETS")?,
        )?;
        let raw = env_req("SKYHOST_MULTIPART_THRESHOLD")?;
        let threshold = raw
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| {
                ConfigError(format!(
                    "SKYHOST_MULTIPART_THRESHOLD must be a positive number of bytes, got {raw:?}"
                ))
            })?;
        let conf = skyhost_meta::config::aws(&region).await;
        // The sweep's table client is built on first use: copies never need it.
        let table = skyhost_meta::config::env_opt("SKYHOST_TABLE").map(|t| {
            let cell = SdkConfigCell::ready(conf.clone());
            Arc::new(skyhost_meta::store::dynamodb::DynamoStore::deferred(
                cell, t,
            )) as Arc<dyn MetaStore>
        });
        let mut copier = Copier::s3(
            conf,
            primary.clone(),
            replicas,
            CopyOptions {
                multipart_threshold: threshold,
                ..CopyOptions::default()
            },
        )
        .with_source_region(&region);
        if let Some(t) = table {
            copier = copier.with_meta(t);
        }
        tracing::info!(
            region,
            primary,
            replicas = ?copier.replicas().map(|(r, s)| format!("{r}={}", s.bucket())).collect::<Vec<_>>(),
            threshold,
            "asset-copier configured"
        );
        Ok(copier)
    }

    /// The S3 → S3 copier of a Lambda: the primary bucket's client built now, since every
    /// invocation starts by reading the source; each replica region's client built on
    /// first use, which the first invocation reaches while its first read of the source is
    /// in flight ([`Copier::copy_key`]), so neither the init nor that invocation waits
    /// for them.
    pub fn s3(
        conf: skyhost_meta::config::SdkConfig,
        primary: String,
        replicas: Vec<(String, String)>,
        opts: CopyOptions,
    ) -> Self {
        let source = S3BlobStore::new(skyhost_meta::config::s3(&conf), primary);
        let conf = SdkConfigCell::ready(conf);
        let replicas = replicas
            .into_iter()
            .map(|(r, bucket)| {
                let store = S3BlobStore::deferred(conf.for_region(&r), bucket);
                (r, Arc::new(store) as Arc<dyn BlobStore>)
            })
            .collect();
        Copier::new(Arc::new(source), replicas, opts)
    }

    /// Builds the replicas' deferred S3 clients (nothing once built).
    async fn replica_clients(&self) {
        for (_, r) in &self.replicas {
            if let Some(s3) = r.as_s3() {
                s3.client().await;
            }
        }
    }

    /// The replicas, by region.
    pub fn replicas(&self) -> impl Iterator<Item = (&str, &dyn BlobStore)> {
        self.replicas.iter().map(|(r, s)| (r.as_str(), s.as_ref()))
    }

    /// Handles S3 event records delivered directly.
    pub async fn handle_s3(&self, event: S3Event) -> Result<CopyReport, CopyError> {
        self.copy_records(&event.records, Vec::new()).await
    }

    /// Handles SQS messages whose bodies are S3 events. A body that is not one fails the
    /// invocation (after the others are copied), so it reaches the dead-letter queue.
    pub async fn handle_sqs(&self, event: SqsEvent) -> Result<CopyReport, CopyError> {
        let (records, bad) = event::sqs_records(&event);
        let failures = bad
            .into_iter()
            .map(|b| Failure {
                key: b.id,
                region: None,
                error: b.reason,
            })
            .collect();
        self.copy_records(&records, failures).await
    }

    /// Handles a Lambda payload of either shape (the function's entry point).
    pub async fn handle_json(&self, payload: serde_json::Value) -> Result<CopyReport, CopyError> {
        match event::invocation(payload).map_err(CopyError::BadEvent)? {
            event::Invocation::S3(e) => self.handle_s3(e).await,
            event::Invocation::Sqs(e) => self.handle_sqs(e).await,
            event::Invocation::Test => {
                tracing::info!("S3 test event: nothing to copy");
                Ok(CopyReport::default())
            }
        }
    }

    /// The Lambda's entry point: a sweep (`{"sweep": …}`, from the schedules), a batch of
    /// the sites table's stream (activation checks), or S3 events ([`Copier::handle_json`]).
    pub async fn handle_any(&self, payload: serde_json::Value) -> Result<Handled, HandleError> {
        if let Some(scope) = sweep::scope_of(&payload) {
            let scope = scope.map_err(|e| HandleError::Copy(CopyError::BadEvent(e)))?;
            return Ok(Handled::Sweep(self.sweep(scope, unix_now()).await?));
        }
        if event::records_source(&payload) == Some("aws:dynamodb") {
            let e = serde_json::from_value(payload).map_err(|e| {
                HandleError::Copy(CopyError::BadEvent(format!("stream event: {e}")))
            })?;
            return Ok(Handled::Activations(self.handle_activations(e).await?));
        }
        Ok(Handled::Copy(self.handle_json(payload).await?))
    }

    async fn copy_records(
        &self,
        records: &[S3EventRecord],
        mut failures: Vec<Failure>,
    ) -> Result<CopyReport, CopyError> {
        let objects = event::objects(records, self.source.bucket());
        for i in &objects.ignored {
            tracing::info!(key = %i.key, reason = %i.reason, "event record ignored");
        }
        // Owned keys: a stream over borrowed ones makes the future's Send bound
        // higher-ranked, and callers that spawn `handle_s3` on a multi-threaded runtime
        // could not prove it.
        let outcomes: Vec<Vec<Outcome>> = stream::iter(objects.keys.clone())
            .map(|key| async move { self.copy_key(&key).await })
            .buffer_unordered(self.opts.concurrency.max(1))
            .collect()
            .await;
        let mut report = CopyReport {
            transfers: Vec::new(),
            ignored: objects.ignored,
        };
        for o in outcomes.into_iter().flatten() {
            match o {
                Ok(t) => report.transfers.push(t),
                Err(f) => failures.push(f),
            }
        }
        report
            .transfers
            .sort_by(|a, b| (&a.key, &a.region).cmp(&(&b.key, &b.region)));
        self.emit_metrics(&report, &failures);
        tracing::info!(
            objects = objects.keys.len(),
            copied = report.copied().count(),
            present = report.transfers.len() - report.copied().count(),
            bytes = report.bytes_copied(),
            ignored = report.ignored.len(),
            failed = failures.len(),
            "invocation handled"
        );
        if failures.is_empty() {
            Ok(report)
        } else {
            for f in &failures {
                tracing::error!(key = %f.key, region = f.region.as_deref().unwrap_or("-"), error = %f.error, "copy failed");
            }
            Err(CopyError::Failed { failures, report })
        }
    }

    fn emit_metrics(&self, report: &CopyReport, failures: &[Failure]) {
        // (copies, bytes, present, failures) per replica region.
        let mut per: BTreeMap<&str, (u64, u64, u64, u64)> = self
            .replicas
            .iter()
            .map(|(r, _)| (r.as_str(), (0, 0, 0, 0)))
            .collect();
        for t in &report.transfers {
            let e = per.entry(t.region.as_str()).or_default();
            if t.method == Method::Present {
                e.2 += 1;
            } else {
                e.0 += 1;
                e.1 += t.bytes;
            }
        }
        for f in failures {
            if let Some(r) = &f.region {
                per.entry(r.as_str()).or_default().3 += 1;
            }
        }
        for (region, (copies, bytes, present, failed)) in per {
            if copies + present + failed == 0 {
                continue;
            }
            self.metrics.emit(
                &[("Region", region)],
                &[
                    Metric {
                        name: "Copies",
                        unit: Unit::Count,
                        value: copies as f64,
                    },
                    Metric {
                        name: "CopiedBytes",
                        unit: Unit::Bytes,
                        value: bytes as f64,
                    },
                    Metric {
                        name: "AlreadyPresent",
                        unit: Unit::Count,
                        value: present as f64,
                    },
                    Metric {
                        name: "CopyFailures",
                        unit: Unit::Count,
                        value: failed as f64,
                    },
                ],
            );
        }
    }

    /// Copies one key into every replica, reading the source's metadata once.
    async fn copy_key(&self, key: &str) -> Vec<Outcome> {
        let fail_all = |error: String| -> Vec<Outcome> {
            self.replicas
                .iter()
                .map(|(r, _)| {
                    Err(Failure {
                        key: key.to_owned(),
                        region: Some(r.clone()),
                        error: error.clone(),
                    })
                })
                .collect()
        };
        let head = self.source_head(key);
        // The head is polled first: it goes out (a name lookup on the blocking pool, then
        // the connection) before the replicas' clients, if not built yet, are built.
        let (source, ()) = futures::future::join(head, self.replica_clients()).await;
        let (meta, s3_head) = match source {
            Ok(Some(s)) => s,
            Ok(None) => {
                return fail_all(format!(
                    "{key} is not in the primary bucket {}",
                    self.source.bucket()
                ))
            }
            Err(e) => return fail_all(format!("reading the source: {e}")),
        };
        let copies = self.replicas.iter().map(|(region, dst)| {
            let meta = &meta;
            let s3_head = s3_head.as_ref();
            async move {
                self.copy_one(key, meta, s3_head, dst.as_ref())
                    .await
                    .map(|method| Transfer {
                        key: key.to_owned(),
                        region: region.clone(),
                        bytes: meta.size,
                        method,
                    })
                    .map_err(|e| Failure {
                        key: key.to_owned(),
                        region: Some(region.clone()),
                        error: e.to_string(),
                    })
            }
        });
        futures::future::join_all(copies).await
    }

    /// The source object's metadata (and, from S3, what a server-side copy needs).
    async fn source_head(
        &self,
        key: &str,
    ) -> Result<Option<(ObjectMeta, Option<s3copy::SourceHead>)>, BlobError> {
        match self.source.as_s3() {
            Some(s3) => s3copy::head(s3, key).await.map(|h| {
                h.map(|h| {
                    let meta = ObjectMeta {
                        size: h.size,
                        sha256: h.sha256().map(str::to_owned),
                    };
                    (meta, Some(h))
                })
            }),
            None => self.source.head(key).await.map(|m| m.map(|m| (m, None))),
        }
    }

    /// Copies one key into one replica (server-side between S3 buckets), unless it is
    /// there already: the repair of a gap that anti-entropy found.
    pub(crate) async fn repair_key(
        &self,
        key: &str,
        dst: &dyn BlobStore,
    ) -> Result<Method, BlobError> {
        self.replica_clients().await;
        let Some((meta, s3_head)) = self.source_head(key).await? else {
            return Err(BlobError::Backend {
                bucket: self.source.bucket().to_owned(),
                message: format!("{key} is not in the primary bucket"),
            });
        };
        self.copy_one(key, &meta, s3_head.as_ref(), dst).await
    }

    async fn copy_one(
        &self,
        key: &str,
        meta: &ObjectMeta,
        s3_head: Option<&s3copy::SourceHead>,
        dst: &dyn BlobStore,
    ) -> Result<Method, BlobError> {
        match (self.source.as_s3(), dst.as_s3(), s3_head) {
            (Some(src), Some(dst), Some(head)) => {
                if already_there(meta, dst.head(key).await?.as_ref()) {
                    return Ok(Method::Present);
                }
                let how = s3copy::copy(
                    src,
                    dst,
                    key,
                    head,
                    self.opts.multipart_threshold,
                    self.opts.part_size,
                    self.opts.part_concurrency,
                )
                .await?;
                Ok(match how {
                    s3copy::ServerCopy::Single => Method::ServerCopy,
                    s3copy::ServerCopy::Multipart(_) => Method::Multipart,
                })
            }
            _ => Ok(if dst.copy_from(self.source.as_ref(), key).await? {
                Method::Stream
            } else {
                Method::Present
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_means_same_size_and_hash() {
        let m = |size, sha: Option<&str>| ObjectMeta {
            size,
            sha256: sha.map(str::to_owned),
        };
        // (source, destination, already there?)
        let cases = [
            (m(10, Some("a")), None, false),
            (m(10, Some("a")), Some(m(10, Some("a"))), true),
            (m(10, Some("a")), Some(m(10, Some("b"))), false),
            (m(10, Some("a")), Some(m(9, Some("a"))), false),
            (m(10, None), Some(m(10, None)), true),
            (m(10, Some("a")), Some(m(10, None)), true),
            (m(10, None), Some(m(11, None)), false),
        ];
        for (i, (s, d, want)) in cases.iter().enumerate() {
            assert_eq!(already_there(s, d.as_ref()), *want, "case {i}");
        }
    }

    #[test]
    fn errors_say_what_failed() {
        let e = CopyError::Failed {
            failures: vec![Failure {
                key: "sites/a/blobs/x".into(),
                region: Some("eu-central-1".into()),
                error: "access denied".into(),
            }],
            report: CopyReport::default(),
        };
        assert_eq!(
            e.to_string(),
            "1 copies failed, first: sites/a/blobs/x to eu-central-1: access denied"
        );
    }
}
