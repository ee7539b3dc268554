//! Logging of the Lambda functions: one JSON object per line on stdout, which CloudWatch
//! Logs stores as it is (and timestamps itself), filtered by `RUST_LOG` (default `info`).

/// Installs the JSON subscriber; call once at the start of a Lambda main.
pub fn init_lambda() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .init();
}
