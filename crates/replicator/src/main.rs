//! The replicator Lambda: JSON logs, the replicator built once at init, one call of
//! [`Replicator::handle_event`] per stream or region queue batch, bounded by the
//! invocation's deadline.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use skyhost_replicator::{instant_of, Replicator};
use std::sync::Arc;

// An instance handles one invocation at a time: a single-threaded runtime serves it and
// starts without spawning a worker per core.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    skyhost_meta::logging::init_lambda();
    let replicator = Arc::new(Replicator::from_env()?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let replicator = replicator.clone();
        async move {
            let deadline = instant_of(event.context.deadline());
            Ok::<_, Error>(replicator.handle_event(event.payload, deadline).await?)
        }
    }))
    .await
}
