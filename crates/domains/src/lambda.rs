//! One scheduled run of the domains function.

use crate::flow::{Flow, FlowError};

/// Advances every custom domain; the answer lists each domain's phase or error. Fails
/// only when the domain records cannot be read.
pub async fn handle(flow: &Flow) -> Result<serde_json::Value, FlowError> {
    let outcomes = flow.advance_all().await?;
    let domains: Vec<serde_json::Value> = outcomes
        .into_iter()
        .map(|(domain, outcome)| match outcome {
            Ok(phase) => serde_json::json!({ "domain": domain, "phase": phase.label() }),
            Err(error) => serde_json::json!({ "domain": domain, "error": error }),
        })
        .collect();
    tracing::info!(count = domains.len(), "custom domains advanced");
    Ok(serde_json::json!({ "domains": domains }))
}
