//! The origin Lambda: JSON logs, the origin built once at init, responses streamed.

use std::sync::Arc;

// An instance handles one invocation at a time: a single-threaded runtime serves it and
// starts without spawning a worker per core.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    skyhost_meta::logging::init_lambda();
    let origin = Arc::new(skyhost_origin::Origin::from_env().await?);
    lambda_http::run_with_streaming_response(lambda_http::service_fn(move |req| {
        let origin = origin.clone();
        async move { skyhost_origin::lambda::handle(&origin, req).await }
    }))
    .await
}
