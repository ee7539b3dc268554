//! Secrets read at run time, so a rotation takes effect without a redeploy and no value
//! sits in a function's configuration.
//!
//! A secret yields its accepted values, newest first: the comma-separated values of its
//! current version, then those of its previous one (Secrets Manager's `AWSCURRENT` and
//! `AWSPREVIOUS`), so the old value keeps working while a new one spreads. Signers use the
//! first value; verifiers accept any.
//!
//! [`Secret`] caches what its [`SecretSource`] yields: it reads on first use (never at
//! init), again every [`REFRESH`], and again when a verification fails, at most once per
//! [`MIN_REREAD`] so that forged requests cannot turn into a read each.

use crate::config::{ClientCell, SdkConfigCell};
use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use subtle::{Choice, ConstantTimeEq};
use tokio::time::{Duration, Instant};

/// How long values read are used before they are read again.
pub const REFRESH: Duration = Duration::from_secs(300);
/// The least time between two reads asked for by failed verifications (or after a read
/// that failed).
pub const MIN_REREAD: Duration = Duration::from_secs(30);
/// How long one read may take before it counts as failed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A secret's accepted values, newest first.
pub type Values = Arc<Vec<Vec<u8>>>;

/// Why a secret's values could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The source failed (unreachable, access denied, not found, unreadable file).
    #[error("secret {secret} could not be read: {reason}")]
    Unavailable {
        /// The secret's name or path (never a value).
        secret: String,
        /// What went wrong.
        reason: String,
    },
    /// The secret was read but holds no value.
    #[error("secret {0} holds no value (expected comma-separated values, newest first)")]
    Empty(String),
}

/// The secrets port: where a secret's current values are read.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The secret's name, ARN or path, for messages (never a value).
    fn name(&self) -> &str;
    /// The accepted values now, newest first.
    async fn read(&self) -> Result<Vec<Vec<u8>>, SecretError>;
}

/// Comma-separated values, trimmed, empty ones dropped.
pub fn parse_values(raw: &str) -> Vec<Vec<u8>> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.as_bytes().to_vec())
        .collect()
}

/// Whether `presented` equals one of `values`, compared in constant time in the value
/// (every value is compared, whichever matches).
pub fn matches_any(values: &[Vec<u8>], presented: &[u8]) -> bool {
    let found = values.iter().fold(Choice::from(0), |found, v| {
        found | v.as_slice().ct_eq(presented)
    });
    bool::from(found)
}

/// Values given up front (tests, embeddings).
pub struct FixedSource(Vec<Vec<u8>>);

#[async_trait]
impl SecretSource for FixedSource {
    fn name(&self) -> &str {
        "(fixed)"
    }
    async fn read(&self) -> Result<Vec<Vec<u8>>, SecretError> {
        Ok(self.0.clone())
    }
}

/// A file holding comma-separated values, newest first (local mode).
pub struct FileSource {
    path: PathBuf,
    name: String,
}

impl FileSource {
    /// The secret in the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        FileSource {
            name: path.display().to_string(),
            path,
        }
    }
}

#[async_trait]
impl SecretSource for FileSource {
    fn name(&self) -> &str {
        &self.name
    }
    async fn read(&self) -> Result<Vec<Vec<u8>>, SecretError> {
        let raw =
            tokio::fs::read_to_string(&self.path)
                .await
                .map_err(|e| SecretError::Unavailable {
                    secret: self.name.clone(),
                    reason: e.to_string(),
                })?;
        let values = parse_values(&raw);
        if values.is_empty() {
            return Err(SecretError::Empty(self.name.clone()));
        }
        Ok(values)
    }
}

/// A Secrets Manager secret: the values of its `AWSCURRENT` version, then those of its
/// `AWSPREVIOUS` version when there is one. The client is built on first read.
pub struct SecretsManagerSource {
    client: ClientCell<aws_sdk_secretsmanager::Client>,
    id: String,
}

impl SecretsManagerSource {
    /// The secret named (or whose ARN is) `id`, read with a client built from `conf` when
    /// it is first read.
    pub fn deferred(conf: SdkConfigCell, id: impl Into<String>) -> Self {
        SecretsManagerSource {
            client: ClientCell::deferred(conf, crate::config::secretsmanager),
            id: id.into(),
        }
    }

    /// The same over a client built already.
    pub fn new(client: aws_sdk_secretsmanager::Client, id: impl Into<String>) -> Self {
        SecretsManagerSource {
            client: ClientCell::ready(client),
            id: id.into(),
        }
    }

    fn unavailable(&self, reason: impl std::fmt::Display) -> SecretError {
        SecretError::Unavailable {
            secret: self.id.clone(),
            reason: reason.to_string(),
        }
    }

    /// One version's values; `None` when no version has the stage.
    async fn stage(&self, stage: &str) -> Result<Option<Vec<Vec<u8>>>, SecretError> {
        use aws_sdk_secretsmanager::error::{DisplayErrorContext, SdkError};
        use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
        let client = self.client.get().await;
        let out = client
            .get_secret_value()
            .secret_id(&self.id)
            .version_stage(stage)
            .send()
            .await;
        match out {
            Ok(out) => match out.secret_string() {
                Some(s) => Ok(Some(parse_values(s))),
                None => Err(self.unavailable(format!(
                    "its {stage} version holds binary data; skyhost reads a SecretString"
                ))),
            },
            // A secret that was never rotated has no previous version.
            Err(SdkError::ServiceError(e))
                if stage != "AWSCURRENT"
                    && matches!(e.err(), GetSecretValueError::ResourceNotFoundException(_)) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.unavailable(format!(
                "GetSecretValue ({stage}): {}",
                DisplayErrorContext(e)
            ))),
        }
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    fn name(&self) -> &str {
        &self.id
    }
    async fn read(&self) -> Result<Vec<Vec<u8>>, SecretError> {
        let (current, previous) = tokio::join!(self.stage("AWSCURRENT"), self.stage("AWSPREVIOUS"));
        let mut values = current?.unwrap_or_default();
        if values.is_empty() {
            return Err(SecretError::Empty(self.id.clone()));
        }
        for v in previous?.unwrap_or_default() {
            if !values.contains(&v) {
                values.push(v);
            }
        }
        Ok(values)
    }
}

/// A secret's values, cached: clones share the cache.
#[derive(Clone)]
pub struct Secret(Arc<Inner>);

struct Inner {
    source: Box<dyn SecretSource>,
    refresh: Duration,
    min_reread: Duration,
    state: Mutex<State>,
    /// Held by the one caller reading the source.
    reading: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    values: Option<Values>,
    /// When the values were read.
    read_at: Option<Instant>,
    /// When the source was last asked, whatever it answered.
    tried_at: Option<Instant>,
    /// Why the last read failed, while no value was ever read.
    error: Option<SecretError>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The name only: never a value.
        f.debug_tuple("Secret").field(&self.name()).finish()
    }
}

impl Secret {
    /// `source`'s values, re-read every [`REFRESH`] and after failures at most once per
    /// [`MIN_REREAD`].
    pub fn new(source: impl SecretSource + 'static) -> Secret {
        Secret::with_timing(source, REFRESH, MIN_REREAD)
    }

    /// The same with other intervals (tests).
    pub fn with_timing(
        source: impl SecretSource + 'static,
        refresh: Duration,
        min_reread: Duration,
    ) -> Secret {
        Secret(Arc::new(Inner {
            source: Box::new(source),
            refresh,
            min_reread,
            state: Mutex::new(State::default()),
            reading: tokio::sync::Mutex::new(()),
        }))
    }

    /// Values that never change.
    pub fn fixed(values: Vec<Vec<u8>>) -> Secret {
        Secret::new(FixedSource(values))
    }

    /// The comma-separated values of the file at `path`.
    pub fn file(path: impl Into<PathBuf>) -> Secret {
        Secret::new(FileSource::new(path))
    }

    /// The Secrets Manager secret `id` (name or ARN), its client built on first read.
    pub fn secrets_manager(conf: SdkConfigCell, id: impl Into<String>) -> Secret {
        Secret::new(SecretsManagerSource::deferred(conf, id))
    }

    /// The secret's name or path.
    pub fn name(&self) -> &str {
        self.0.source.name()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written (each
        // write is a plain assignment), so a poisoned lock is still good.
        self.0
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn recently_tried(&self, state: &State, now: Instant) -> bool {
        state
            .tried_at
            .is_some_and(|t| now.saturating_duration_since(t) < self.0.min_reread)
    }

    /// Reads the source now (the caller holds `reading`) and keeps what it yields.
    async fn read_now(&self) -> Result<Values, SecretError> {
        let result = tokio::time::timeout(READ_TIMEOUT, self.0.source.read())
            .await
            .unwrap_or_else(|_| {
                Err(SecretError::Unavailable {
                    secret: self.name().to_owned(),
                    reason: format!("no answer within {READ_TIMEOUT:?}"),
                })
            });
        let now = Instant::now();
        let mut state = self.state();
        state.tried_at = Some(now);
        match result {
            Ok(values) => {
                // The same values keep their Arc: a new one means new values.
                let values = match state.values.take() {
                    Some(old) if *old == values => old,
                    _ => Arc::new(values),
                };
                state.values = Some(values.clone());
                state.read_at = Some(now);
                state.error = None;
                Ok(values)
            }
            Err(e) => {
                tracing::error!(secret = self.name(), error = %e, "secret read failed");
                if state.values.is_none() {
                    state.error = Some(e.clone());
                }
                Err(e)
            }
        }
    }

    /// The accepted values, newest first: read on first use and when older than the
    /// refresh interval. A failed re-read keeps the values read before.
    pub async fn values(&self) -> Result<Values, SecretError> {
        let now = Instant::now();
        let cached = {
            let state = self.state();
            let fresh = state
                .read_at
                .is_some_and(|t| now.saturating_duration_since(t) < self.0.refresh);
            match &state.values {
                Some(v) if fresh || self.recently_tried(&state, now) => return Ok(v.clone()),
                v => v.clone(),
            }
        };
        match cached {
            // Stale: one caller re-reads, the others go on with what they have.
            Some(old) => {
                let Ok(_reading) = self.0.reading.try_lock() else {
                    return Ok(old);
                };
                // Another caller may have read them just before.
                if let Some(v) = self
                    .state()
                    .values
                    .as_ref()
                    .filter(|v| !Arc::ptr_eq(v, &old))
                {
                    return Ok(v.clone());
                }
                Ok(self.read_now().await.unwrap_or(old))
            }
            None => {
                let _reading = self.0.reading.lock().await;
                {
                    let state = self.state();
                    if let Some(v) = &state.values {
                        return Ok(v.clone());
                    }
                    if self.recently_tried(&state, Instant::now()) {
                        if let Some(e) = &state.error {
                            return Err(e.clone());
                        }
                    }
                }
                self.read_now().await
            }
        }
    }

    /// After a verification against `seen` failed: the values, if they are not `seen`
    /// any more (read again now unless that was done less than the minimum interval
    /// ago). `None` when nothing new can be had, or while another caller is reading:
    /// failures never queue behind a read.
    pub async fn reread_after_failure(&self, seen: &Values) -> Option<Values> {
        let Ok(_reading) = self.0.reading.try_lock() else {
            return None;
        };
        {
            let state = self.state();
            // Another caller read new ones meanwhile.
            if let Some(v) = state.values.as_ref().filter(|v| !Arc::ptr_eq(v, seen)) {
                return Some(v.clone());
            }
            if self.recently_tried(&state, Instant::now()) {
                return None;
            }
        }
        let values = self.read_now().await.ok()?;
        (!Arc::ptr_eq(&values, seen)).then_some(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A source answering what `next` holds, counting reads.
    #[derive(Clone)]
    struct Scripted {
        next: Arc<Mutex<Result<Vec<Vec<u8>>, SecretError>>>,
        reads: Arc<AtomicUsize>,
    }

    impl Default for Scripted {
        fn default() -> Self {
            Scripted {
                next: Arc::new(Mutex::new(Ok(Vec::new()))),
                reads: Arc::default(),
            }
        }
    }

    impl Scripted {
        fn set(&self, v: &str) {
            *self.next.lock().unwrap() = Ok(parse_values(v));
        }
        fn fail(&self) {
            *self.next.lock().unwrap() = Err(SecretError::Unavailable {
                secret: "s".into(),
                reason: "down".into(),
            });
        }
        fn reads(&self) -> usize {
            self.reads.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl SecretSource for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        async fn read(&self) -> Result<Vec<Vec<u8>>, SecretError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.next.lock().unwrap().clone()
        }
    }

    fn vals(v: &Values) -> Vec<String> {
        v.iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn values_parse_and_match() {
        assert_eq!(
            parse_values(" new, ,old ,"),
            vec![b"new".to_vec(), b"old".to_vec()]
        );
        assert!(parse_values(" , ").is_empty());
        let values = parse_values("new,old");
        // (presented, accepted)
        let cases: [(&[u8], bool); 6] = [
            (b"new", true),
            (b"old", true),
            (b"ne", false),
            (b"new,old", false),
            (b"", false),
            (b"NEW", false),
        ];
        for (presented, want) in cases {
            assert_eq!(matches_any(&values, presented), want, "{presented:?}");
        }
        assert!(!matches_any(&[], b""));
    }

    #[tokio::test(start_paused = true)]
    async fn values_are_cached_and_read_again_after_the_refresh_interval() {
        let src = Scripted::default();
        src.set("one");
        let s = Secret::with_timing(
            src.clone(),
            Duration::from_secs(300),
            Duration::from_secs(30),
        );
        assert_eq!(src.reads(), 0, "nothing is read before first use");
        assert_eq!(vals(&s.values().await.unwrap()), ["one"]);
        src.set("two,one");
        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(vals(&s.clone().values().await.unwrap()), ["one"]);
        assert_eq!(src.reads(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(vals(&s.values().await.unwrap()), ["two", "one"]);
        assert_eq!(src.reads(), 2);
        // A failed re-read keeps the values, and is not repeated on every call.
        src.fail();
        tokio::time::advance(Duration::from_secs(301)).await;
        assert_eq!(vals(&s.values().await.unwrap()), ["two", "one"]);
        assert_eq!(vals(&s.values().await.unwrap()), ["two", "one"]);
        assert_eq!(src.reads(), 3);
        tokio::time::advance(Duration::from_secs(31)).await;
        src.set("three");
        assert_eq!(vals(&s.values().await.unwrap()), ["three"]);
        assert_eq!(src.reads(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_read_that_fails_is_an_error_retried_after_the_minimum_interval() {
        let src = Scripted::default();
        src.fail();
        let s = Secret::with_timing(
            src.clone(),
            Duration::from_secs(300),
            Duration::from_secs(30),
        );
        assert!(matches!(
            s.values().await,
            Err(SecretError::Unavailable { .. })
        ));
        assert!(s.values().await.is_err());
        assert_eq!(src.reads(), 1, "failures are not re-read on every call");
        src.set("back");
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(vals(&s.values().await.unwrap()), ["back"]);
        assert_eq!(src.reads(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_verifications_read_again_at_most_once_per_interval() {
        let src = Scripted::default();
        src.set("old");
        let s = Secret::with_timing(
            src.clone(),
            Duration::from_secs(300),
            Duration::from_secs(30),
        );
        let seen = s.values().await.unwrap();
        // Just read: a failure does not read again.
        assert!(s.reread_after_failure(&seen).await.is_none());
        assert_eq!(src.reads(), 1);
        tokio::time::advance(Duration::from_secs(30)).await;
        // Nothing changed: read once, no new values, and no second read for a while.
        assert!(s.reread_after_failure(&seen).await.is_none());
        for _ in 0..100 {
            assert!(s.reread_after_failure(&seen).await.is_none());
        }
        assert_eq!(src.reads(), 2);
        // Rotated: the next allowed re-read yields the new values.
        src.set("new,old");
        tokio::time::advance(Duration::from_secs(30)).await;
        let new = s.reread_after_failure(&seen).await.expect("new values");
        assert_eq!(vals(&new), ["new", "old"]);
        assert_eq!(vals(&s.values().await.unwrap()), ["new", "old"]);
        // A caller still holding the old values gets the new ones without a read.
        assert_eq!(
            vals(&s.reread_after_failure(&seen).await.expect("new values")),
            ["new", "old"]
        );
        assert_eq!(src.reads(), 3);
    }

    /// A source that never answers.
    struct Hung;

    #[async_trait]
    impl SecretSource for Hung {
        fn name(&self) -> &str {
            "hung"
        }
        async fn read(&self) -> Result<Vec<Vec<u8>>, SecretError> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_that_hangs_fails_after_the_timeout() {
        let s = Secret::new(Hung);
        let started = Instant::now();
        let err = s.values().await.unwrap_err();
        assert_eq!(started.elapsed(), READ_TIMEOUT);
        assert!(err.to_string().contains("hung"), "{err}");
    }

    #[tokio::test]
    async fn a_file_holds_comma_separated_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let s = Secret::file(&path);
        let err = s.values().await.unwrap_err();
        assert!(err.to_string().contains("secret"), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        std::fs::write(&path, " \n").unwrap();
        assert_eq!(
            FileSource::new(&path).read().await,
            Err(SecretError::Empty(path.display().to_string()))
        );
        std::fs::write(&path, "new, old\n").unwrap();
        assert_eq!(
            vals(&Secret::file(&path).values().await.unwrap()),
            ["new", "old"]
        );
        assert!(!format!("{:?}", Secret::fixed(vec![b"hunter2".to_vec()])).contains("hunter2"));
    }
}
