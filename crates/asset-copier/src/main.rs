//! The asset-copier Lambda: JSON logs, the copier built once at init (the replicas' S3
//! clients on first use, beside the first read of the source),
//! one call of [`Copier::handle_any`] per invocation: S3 events direct or in SQS messages,
//! the sites table's stream (activation checks), or the sweep's schedules.
//! An error fails the invocation, so Lambda retries it and then dead-letters it.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use skyhost_asset_copier::Copier;
use std::sync::Arc;

// An instance handles one invocation at a time: a single-threaded runtime serves it and
// starts without spawning a worker per core.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    skyhost_meta::logging::init_lambda();
    let copier = Arc::new(Copier::from_env().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let copier = copier.clone();
        async move { Ok::<_, Error>(copier.handle_any(event.payload).await?) }
    }))
    .await
}
