//! The one writer of metrics in CloudWatch's embedded metric format (EMF), used by the
//! origin, the replicator and the asset-copier: one JSON object per line on
//! stdout, which Lambda's log pipeline turns into metrics of namespace `Skyhost` without
//! an API call. Local mode and tests can discard the lines or keep them in memory.

use serde_json::{json, Map, Value};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// The namespace of every skyhost metric.
pub const NAMESPACE: &str = "Skyhost";

/// A metric's unit, as EMF names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A number of things.
    Count,
    /// A duration.
    Milliseconds,
    /// A size.
    Bytes,
}

impl Unit {
    /// The EMF unit name.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Bytes => "Bytes",
        }
    }
}

/// One metric value of a line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric<'a> {
    /// Metric name.
    pub name: &'a str,
    /// Its unit.
    pub unit: Unit,
    /// Its value.
    pub value: f64,
}

/// Where metric lines go.
#[derive(Clone, Debug, Default)]
enum Sink {
    /// Standard output, one line per record (Lambda).
    #[default]
    Stdout,
    /// Nowhere.
    Discard,
    /// Kept in memory (tests).
    Memory(Arc<Mutex<Vec<Value>>>),
}

/// Emits EMF records. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    sink: Sink,
}

impl Metrics {
    /// Lines to stdout, as Lambda expects.
    pub fn stdout() -> Self {
        Metrics { sink: Sink::Stdout }
    }

    /// No metrics (local mode, where stdout belongs to the user).
    pub fn discard() -> Self {
        Metrics {
            sink: Sink::Discard,
        }
    }

    /// Records kept in memory, returned with the handle that reads them (tests).
    pub fn memory() -> (Self, Arc<Mutex<Vec<Value>>>) {
        let mem = Arc::new(Mutex::new(Vec::new()));
        (
            Metrics {
                sink: Sink::Memory(mem.clone()),
            },
            mem,
        )
    }

    /// Emits one record: `values` under the dimensions `dims` (name, value).
    pub fn emit(&self, dims: &[(&str, &str)], values: &[Metric<'_>]) {
        if values.is_empty() || matches!(self.sink, Sink::Discard) {
            return;
        }
        let record = emf_record(NAMESPACE, now_ms(), dims, values);
        match &self.sink {
            Sink::Stdout => {
                // One write of a whole line so records never interleave with log lines.
                let mut line = record.to_string();
                line.push('\n');
                let _ = std::io::stdout().lock().write_all(line.as_bytes());
            }
            Sink::Discard => {}
            Sink::Memory(m) => m.lock().unwrap_or_else(|p| p.into_inner()).push(record),
        }
    }
}

/// Unix milliseconds now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The EMF record of `values` under dimensions `dims` at `timestamp_ms`.
pub fn emf_record(
    namespace: &str,
    timestamp_ms: i64,
    dims: &[(&str, &str)],
    values: &[Metric<'_>],
) -> Value {
    let mut root = Map::new();
    for (k, v) in dims {
        root.insert((*k).to_owned(), Value::String((*v).to_owned()));
    }
    for v in values {
        root.insert(v.name.to_owned(), json!(v.value));
    }
    let dimension_set: Vec<&str> = dims.iter().map(|(k, _)| *k).collect();
    let defs: Vec<Value> = values
        .iter()
        .map(|v| json!({"Name": v.name, "Unit": v.unit.as_str()}))
        .collect();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [dimension_set],
                "Metrics": defs,
            }],
        }),
    );
    Value::Object(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_follow_the_emf_layout() {
        let r = emf_record(
            NAMESPACE,
            1_700_000_000_123,
            &[("Region", "eu-central-1")],
            &[
                Metric {
                    name: "NotifyLatency",
                    unit: Unit::Milliseconds,
                    value: 230.0,
                },
                Metric {
                    name: "Notifications",
                    unit: Unit::Count,
                    value: 1.0,
                },
            ],
        );
        assert_eq!(
            r,
            json!({
                "_aws": {
                    "Timestamp": 1_700_000_000_123_i64,
                    "CloudWatchMetrics": [{
                        "Namespace": "Skyhost",
                        "Dimensions": [["Region"]],
                        "Metrics": [
                            {"Name": "NotifyLatency", "Unit": "Milliseconds"},
                            {"Name": "Notifications", "Unit": "Count"}
                        ]
                    }]
                },
                "Region": "eu-central-1",
                "NotifyLatency": 230.0,
                "Notifications": 1.0
            })
        );
    }

    #[test]
    fn memory_sink_keeps_records_and_discard_drops_them() {
        let (m, mem) = Metrics::memory();
        let v = [Metric {
            name: "Copies",
            unit: Unit::Count,
            value: 2.0,
        }];
        m.emit(&[("Region", "ap-southeast-1")], &v);
        m.emit(&[("Region", "ap-southeast-1")], &[]);
        Metrics::discard().emit(&[("Region", "x")], &v);
        let got = mem.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["Copies"], json!(2.0));
        assert_eq!(got[0]["Region"], json!("ap-southeast-1"));
    }
}
