//! The floor of a compiled decoder, for `bench/pipeline_floor.py` (not part of sf-sync).
//!
//! Reads a batch of CometD CDC messages (each a little-endian u32 length, then the bytes),
//! parses every message with simd-json and fills the columns a decoder hands on: the header
//! (entity, change type, origin, transaction, sequence, commit time, user, record Ids and
//! changed fields as lists) and one (event, field, value) row per body field, address fields
//! flattened (`BillingAddress.City` -> `BillingCity`; the real decoder also flattens `Name`
//! and custom compounds, which the bench's Account stream does not have). Strings go into
//! contiguous buffers with offsets, as Arrow's builders keep them, so no allocation per value.
//! It keeps every body field where the real decoder keeps only those the event set, and
//! validates nothing beyond what parsing needs: a lower bound for the parse, not a decoder.
//!
//! Prints one JSON line: messages, field rows and the seconds of each round (one thread).

use simd_json::prelude::*;
use simd_json::BorrowedValue;
use std::time::Instant;

/// A string column as Arrow keeps one: the bytes back to back and where each value ends.
#[derive(Default)]
struct Strings {
    bytes: Vec<u8>,
    ends: Vec<u32>,
    valid: Vec<bool>,
}

impl Strings {
    fn push_parts(&mut self, parts: &[&str]) {
        for p in parts {
            self.bytes.extend_from_slice(p.as_bytes());
        }
        self.ends.push(self.bytes.len() as u32);
        self.valid.push(true);
    }
    fn push(&mut self, s: &str) {
        self.push_parts(&[s]);
    }
    fn push_null(&mut self) {
        self.ends.push(self.bytes.len() as u32);
        self.valid.push(false);
    }
    /// A field's value as text: strings as they are, numbers and booleans as JSON writes them.
    fn push_value(&mut self, v: &BorrowedValue) {
        if v.is_null() {
            self.push_null()
        } else if let Some(s) = v.as_str() {
            self.push(s)
        } else {
            self.push(&v.encode())
        }
    }
    fn len(&self) -> usize {
        self.ends.len()
    }
}

/// A list-of-strings column: the values and where each event's list ends.
#[derive(Default)]
struct StringLists {
    values: Strings,
    ends: Vec<u32>,
}

impl StringLists {
    fn push(&mut self, items: Option<&Vec<BorrowedValue>>) {
        for item in items.into_iter().flatten() {
            self.values.push(item.as_str().unwrap_or(""));
        }
        self.ends.push(self.values.len() as u32);
    }
}

#[derive(Default)]
struct Columns {
    entity: Strings,
    change_type: Strings,
    origin: Strings,
    transaction_key: Strings,
    sequence_number: Vec<i64>,
    commit_ms: Vec<i64>,
    commit_user: Strings,
    record_ids: StringLists,
    changed_fields: StringLists,
    nulled_fields: StringLists,
    field_event: Vec<u32>,
    field: Strings,
    value: Strings,
}

impl Columns {
    fn add(&mut self, event: u32, message: &mut [u8], scratch: &mut simd_json::Buffers) -> bool {
        let Ok(doc) = simd_json::to_borrowed_value_with_buffers(message, scratch) else {
            return false;
        };
        let Some(payload) = doc.get("payload").and_then(|p| p.as_object()) else {
            return false;
        };
        let Some(h) = payload.get("ChangeEventHeader") else {
            return false;
        };
        self.entity.push(h.get_str("entityName").unwrap_or(""));
        self.change_type.push(h.get_str("changeType").unwrap_or(""));
        self.origin.push(h.get_str("changeOrigin").unwrap_or(""));
        self.transaction_key.push(h.get_str("transactionKey").unwrap_or(""));
        self.sequence_number.push(h.get_i64("sequenceNumber").unwrap_or(0));
        self.commit_ms.push(h.get_i64("commitTimestamp").unwrap_or(0));
        self.commit_user.push(h.get_str("commitUser").unwrap_or(""));
        self.record_ids.push(h.get_array("recordIds"));
        self.changed_fields.push(h.get_array("changedFields"));
        self.nulled_fields.push(h.get_array("nulledFields"));
        for (name, value) in payload.iter() {
            if name == "ChangeEventHeader" {
                continue;
            }
            if let Some(parts) = value.as_object() {
                let prefix = name.strip_suffix("Address").unwrap_or(name);
                for (part, v) in parts.iter() {
                    self.field_event.push(event);
                    self.field.push_parts(&[prefix, part]);
                    self.value.push_value(v);
                }
            } else {
                self.field_event.push(event);
                self.field.push(name);
                self.value.push_value(value);
            }
        }
        true
    }
}

fn read_batch(path: &str) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).expect("batch file");
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let n = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        out.push(data[at + 4..at + 4 + n].to_vec());
        at += 4 + n;
    }
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: compiled_parse BATCH_FILE [ROUNDS]");
    let rounds: usize = args.next().map_or(5, |r| r.parse().expect("rounds"));
    let batch = read_batch(&path);
    let mut seconds = Vec::new();
    let (mut rows, mut parsed) = (0, 0);
    for _ in 0..rounds {
        // simd-json parses in place: each round gets fresh copies, made outside the clock.
        let mut messages = batch.clone();
        let started = Instant::now();
        let mut columns = Columns::default();
        let mut scratch = simd_json::Buffers::default();
        parsed = 0;
        for (event, message) in messages.iter_mut().enumerate() {
            parsed += columns.add(event as u32, message, &mut scratch) as usize;
        }
        seconds.push(started.elapsed().as_secs_f64());
        rows = columns.field.len();
    }
    let listed: Vec<String> = seconds.iter().map(|s| format!("{s:.4}")).collect();
    println!(
        "{{\"messages\": {}, \"parsed\": {parsed}, \"field_rows\": {rows}, \"seconds\": [{}]}}",
        batch.len(),
        listed.join(", ")
    );
}
