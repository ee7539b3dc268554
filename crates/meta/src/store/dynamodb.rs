//! The DynamoDB adapter of the metadata store, and its change feed over the DynamoDB
//! Streams API (the same records Lambda hands the replicator).
//!
//! One table, string keys `pk` and `sk`, billing on demand, stream `NEW_AND_OLD_IMAGES`;
//! the item layout is in [`super::item`].

use super::item::{self, Item, Key};
use super::stream::{self, Change};
use super::{ChangeBatch, ChangeFeed, Condition, MetaStore, StoreError, Write, WriteError};
use crate::config::{ClientCell, SdkConfigCell};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, StreamSpecification, StreamViewType, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use std::collections::{BTreeMap, HashMap};

/// DynamoDB-backed metadata store.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: ClientCell<Client>,
    table: String,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("dynamodb: {e}"))
}

/// A failed single-item write: its condition not holding, or the store failing.
fn write_err<E, R>(
    e: aws_sdk_dynamodb::error::SdkError<E, R>,
    condition_failed: impl Fn(&E) -> bool,
) -> WriteError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match e.as_service_error() {
        Some(s) if condition_failed(s) => WriteError::ConditionFailed(0),
        _ => WriteError::Store(sdk_err(e)),
    }
}

fn sdk_err<E, R>(e: aws_sdk_dynamodb::error::SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::Backend(format!(
        "dynamodb: {}",
        aws_sdk_dynamodb::error::DisplayErrorContext(e)
    ))
}

fn attrs(item: Item) -> HashMap<String, AttributeValue> {
    item.into()
}

fn key_attrs(k: &Key) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(k.pk.clone())),
        ("sk".to_owned(), AttributeValue::S(k.sk.clone())),
    ])
}

/// The condition expression, names and values of a [`Condition`].
type Expr = (
    Option<String>,
    HashMap<String, String>,
    HashMap<String, AttributeValue>,
);

fn expression(c: &Condition) -> Expr {
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let expr = match c {
        Condition::None => None,
        Condition::NotExists => Some("attribute_not_exists(pk)".to_owned()),
        Condition::RevisionIs(n) => {
            names.insert("#rev".into(), "revision".into());
            values.insert(":rev".into(), AttributeValue::N(n.to_string()));
            Some("#rev = :rev".into())
        }
        Condition::RemovedAt(n) => {
            names.insert("#rev".into(), "revision".into());
            names.insert("#removed".into(), "removed".into());
            values.insert(":rev".into(), AttributeValue::N(n.to_string()));
            values.insert(":removed".into(), AttributeValue::Bool(true));
            Some("#rev = :rev AND #removed = :removed".into())
        }
        Condition::SiteIs(s) => {
            names.insert("#site".into(), "site".into());
            values.insert(":site".into(), AttributeValue::S(s.to_string()));
            Some("#site = :site".into())
        }
        Condition::NotExistsOrSiteIs(s) => {
            names.insert("#site".into(), "site".into());
            values.insert(":site".into(), AttributeValue::S(s.to_string()));
            Some("attribute_not_exists(pk) OR #site = :site".into())
        }
    };
    (expr, names, values)
}

fn opt_map<V>(m: HashMap<String, V>) -> Option<HashMap<String, V>> {
    (!m.is_empty()).then_some(m)
}

impl DynamoStore {
    /// A store over `table`, with a client built once at init.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client: ClientCell::ready(client),
            table: table.into(),
        }
    }

    /// A store over `table`, with a client built from `conf` on first use
    /// ([`ClientCell`]).
    pub fn deferred(conf: SdkConfigCell, table: impl Into<String>) -> Self {
        DynamoStore {
            client: ClientCell::deferred(conf, crate::config::dynamodb),
            table: table.into(),
        }
    }

    /// The client, built now if this is its first use.
    pub async fn client(&self) -> &Client {
        self.client.get().await
    }

    /// Whether the client has been built (a deferred one is built on first use).
    pub fn client_built(&self) -> bool {
        self.client.is_built()
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table as the SAM template does (for emulators and first runs); an
    /// existing table is left as it is.
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        let exists = self
            .client
            .get()
            .await
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .is_ok();
        if exists {
            return Ok(());
        }
        let attr = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(backend)
        };
        let key = |n: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(t)
                .build()
                .map_err(backend)
        };
        self.client
            .get()
            .await
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build()
                    .map_err(backend)?,
            )
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    /// The ARN of the table's stream.
    pub async fn stream_arn(&self) -> Result<String, StoreError> {
        let t = self
            .client
            .get()
            .await
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(sdk_err)?;
        t.table()
            .and_then(|t| t.latest_stream_arn())
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Backend(format!("table {} has no stream", self.table)))
    }

    async fn write_one(&self, w: Write) -> Result<(), WriteError> {
        let (expr, names, values) = expression(&w.condition);
        let res = match w.item {
            Some(it) => self
                .client
                .get()
                .await
                .put_item()
                .table_name(&self.table)
                .set_item(Some(attrs(it)))
                .set_condition_expression(expr)
                .set_expression_attribute_names(opt_map(names))
                .set_expression_attribute_values(opt_map(values))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| write_err(e, PutItemError::is_conditional_check_failed_exception)),
            None => self
                .client
                .get()
                .await
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key_attrs(&w.key)))
                .set_condition_expression(expr)
                .set_expression_attribute_names(opt_map(names))
                .set_expression_attribute_values(opt_map(values))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| write_err(e, DeleteItemError::is_conditional_check_failed_exception)),
        };
        res
    }
}

#[async_trait]
impl MetaStore for DynamoStore {
    async fn get_item(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get()
            .await
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_attrs(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(out.item.map(Item::from))
    }

    async fn query_items(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        let mut pages = self
            .client
            .get()
            .await
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
            .expression_attribute_values(":p", AttributeValue::S(sk_prefix.to_owned()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(i) = pages.next().await {
            out.push(Item::from(i.map_err(sdk_err)?));
        }
        Ok(out)
    }

    async fn scan_kind(&self, kind: &str) -> Result<Vec<Item>, StoreError> {
        let mut pages = self
            .client
            .get()
            .await
            .scan()
            .table_name(&self.table)
            .filter_expression("#k = :k")
            .expression_attribute_names("#k", "kind")
            .expression_attribute_values(":k", AttributeValue::S(kind.to_owned()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(i) = pages.next().await {
            out.push(Item::from(i.map_err(sdk_err)?));
        }
        Ok(out)
    }

    async fn write(&self, mut writes: Vec<Write>) -> Result<(), WriteError> {
        if writes.len() == 1 {
            if let Some(w) = writes.pop() {
                return self.write_one(w).await;
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        let mut items = Vec::with_capacity(writes.len());
        for w in writes {
            let (expr, names, values) = expression(&w.condition);
            let twi = match w.item {
                Some(it) => TransactWriteItem::builder().put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(attrs(it)))
                        .set_condition_expression(expr)
                        .set_expression_attribute_names(opt_map(names))
                        .set_expression_attribute_values(opt_map(values))
                        .build()
                        .map_err(backend)?,
                ),
                None => TransactWriteItem::builder().delete(
                    Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(key_attrs(&w.key)))
                        .set_condition_expression(expr)
                        .set_expression_attribute_names(opt_map(names))
                        .set_expression_attribute_values(opt_map(values))
                        .build()
                        .map_err(backend)?,
                ),
            };
            items.push(twi.build());
        }
        match self
            .client
            .get()
            .await
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Some(
                    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(t),
                ) = e.as_service_error()
                {
                    if let Some(i) = t
                        .cancellation_reasons()
                        .iter()
                        .position(|r| r.code() == Some("ConditionalCheckFailed"))
                    {
                        return Err(WriteError::ConditionFailed(i));
                    }
                }
                Err(WriteError::Store(sdk_err(e)))
            }
        }
    }
}

/// The change feed of a DynamoDB table, read through the DynamoDB Streams API
/// (DescribeStream, GetShardIterator, GetRecords) as Lambda's poller does.
#[derive(Clone, Debug)]
pub struct DynamoStreamFeed {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    region: String,
}

fn stream_err<E, R>(e: aws_sdk_dynamodbstreams::error::SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::Backend(format!(
        "dynamodb streams: {}",
        aws_sdk_dynamodbstreams::error::DisplayErrorContext(e)
    ))
}

impl DynamoStreamFeed {
    /// A feed over the stream `stream_arn` of a table in `region`.
    pub fn new(
        client: aws_sdk_dynamodbstreams::Client,
        stream_arn: impl Into<String>,
        region: impl Into<String>,
    ) -> Self {
        DynamoStreamFeed {
            client,
            stream_arn: stream_arn.into(),
            region: region.into(),
        }
    }
}

#[async_trait]
impl ChangeFeed for DynamoStreamFeed {
    /// The cursor is a JSON object: shard id → last sequence number read.
    async fn read(&self, cursor: Option<&str>, limit: usize) -> Result<ChangeBatch, StoreError> {
        use aws_sdk_dynamodbstreams::types::ShardIteratorType;
        let mut pos: BTreeMap<String, String> = match cursor {
            Some(c) => serde_json::from_str(c)
                .map_err(|_| StoreError::Invalid(format!("bad change-feed cursor {c:?}")))?,
            None => BTreeMap::new(),
        };
        let mut shards = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let d = self
                .client
                .describe_stream()
                .stream_arn(&self.stream_arn)
                .set_exclusive_start_shard_id(start.clone())
                .send()
                .await
                .map_err(stream_err)?;
            let Some(desc) = d.stream_description else {
                break;
            };
            for s in desc.shards() {
                if let Some(id) = s.shard_id() {
                    shards.push((id.to_owned(), s.parent_shard_id().map(str::to_owned)));
                }
            }
            match desc.last_evaluated_shard_id {
                Some(l) => start = Some(l),
                None => break,
            }
        }
        // Parents before children, so a key's changes stay in order across a split.
        let ids: Vec<String> = shards.iter().map(|(i, _)| i.clone()).collect();
        shards.sort_by_key(|(id, parent)| {
            (
                parent.as_ref().is_some_and(|p| ids.contains(p)) as u8,
                id.clone(),
            )
        });
        let mut records = Vec::new();
        'shards: for (shard, _) in shards {
            let mut req = self
                .client
                .get_shard_iterator()
                .stream_arn(&self.stream_arn)
                .shard_id(&shard);
            req = match pos.get(&shard) {
                Some(seq) => req
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .sequence_number(seq),
                None => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
            };
            let mut iter = req.send().await.map_err(stream_err)?.shard_iterator;
            while let Some(it) = iter.take() {
                let want = limit.saturating_sub(records.len()).clamp(1, 1000);
                let out = self
                    .client
                    .get_records()
                    .shard_iterator(it)
                    .limit(i32::try_from(want).unwrap_or(1000))
                    .send()
                    .await
                    .map_err(stream_err)?;
                if out.records().is_empty() {
                    break;
                }
                for r in out.records() {
                    let Some(sr) = r.dynamodb() else { continue };
                    let seq = sr.sequence_number().unwrap_or_default().to_owned();
                    let keys = sr.keys().cloned().map(Item::from).unwrap_or_default();
                    let key = item::key_of(&keys)
                        .ok_or_else(|| StoreError::Corrupt("stream record without pk/sk".into()))?;
                    let new = sr.new_image().cloned().map(Item::from);
                    let old = sr.old_image().cloned().map(Item::from);
                    let created = sr
                        .approximate_creation_date_time()
                        .map(|t| t.as_secs_f64())
                        .unwrap_or(0.0);
                    let name = r
                        .event_name()
                        .map(|n| n.as_str().to_owned())
                        .unwrap_or_default();
                    records.push(stream::record(&Change {
                        sequence: &seq,
                        event_name: &name,
                        key: &key,
                        new_image: new.as_ref(),
                        old_image: old.as_ref(),
                        created,
                        region: &self.region,
                        stream_arn: &self.stream_arn,
                    })?);
                    pos.insert(shard.clone(), seq);
                    if records.len() >= limit {
                        break 'shards;
                    }
                }
                iter = out.next_shard_iterator;
            }
        }
        let cursor = if pos.is_empty() {
            cursor.map(str::to_owned)
        } else {
            Some(serde_json::to_string(&pos).map_err(backend)?)
        };
        Ok(ChangeBatch { records, cursor })
    }
}
