//! Change records in the shape Lambda hands a DynamoDB stream trigger, built from JSON
//! because the event structs are `#[non_exhaustive]`.

use super::item::{Item, Key};
use super::StoreError;
use aws_lambda_events::event::dynamodb::EventRecord;

/// One change: what a stream record says.
pub struct Change<'a> {
    /// Position in the stream (increasing).
    pub sequence: &'a str,
    /// `INSERT`, `MODIFY` or `REMOVE`.
    pub event_name: &'a str,
    /// The item's key.
    pub key: &'a Key,
    /// The item after the change (`None` on REMOVE).
    pub new_image: Option<&'a Item>,
    /// The item before the change (`None` on INSERT).
    pub old_image: Option<&'a Item>,
    /// Unix seconds of the change.
    pub created: f64,
    /// The region of the table.
    pub region: &'a str,
    /// The stream's ARN.
    pub stream_arn: &'a str,
}

/// The stream record of a change.
pub fn record(c: &Change<'_>) -> Result<EventRecord, StoreError> {
    let mut dynamodb = serde_json::json!({
        "ApproximateCreationDateTime": c.created,
        "Keys": super::item::key_item(c.key),
        "SequenceNumber": c.sequence,
        "SizeBytes": 0,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    });
    let size = serde_json::to_vec(&(c.new_image, c.old_image))
        .map(|v| v.len())
        .unwrap_or(0);
    dynamodb["SizeBytes"] = size.into();
    if let Some(n) = c.new_image {
        dynamodb["NewImage"] =
            serde_json::to_value(n).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    }
    if let Some(o) = c.old_image {
        dynamodb["OldImage"] =
            serde_json::to_value(o).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    }
    let v = serde_json::json!({
        "eventID": c.sequence,
        "eventName": c.event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": c.region,
        "eventSourceARN": c.stream_arn,
        "dynamodb": dynamodb,
    });
    serde_json::from_value(v).map_err(|e| StoreError::Corrupt(format!("stream record: {e}")))
}
