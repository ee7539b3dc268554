//! The replicator Lambda: JSON logs, the replicator built once at init, one call of
//! [`Replicator::handle`] per stream batch, bounded by the invocation's deadline.

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use skyhost_replicator::{instant_of, Replicator};
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_target(false)
        .init();
    let replicator = Arc::new(Replicator::from_env()?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| {
        let replicator = replicator.clone();
        async move {
            let deadline = instant_of(event.context.deadline());
            Ok::<_, Error>(replicator.handle(event.payload, deadline).await)
        }
    }))
    .await
}
