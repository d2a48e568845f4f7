//! `webhookd ingest`'s input: a file of JSON or JSON lines, to payloads.

use serde_json::Value;

use crate::normalize::table::json_kind;
use crate::normalize::types::NormalizeError;

/// CLI input text: one JSON value (object or array) or JSON lines (one value per non-empty
/// line).
///
/// Top-level arrays are flattened, so the result is a list of payload objects and
/// `normalize(provider, &Value::Array(values), now)` handles a whole file at once,
/// all-or-nothing. Empty input gives an empty list.
pub fn parse_input(text: &str) -> Result<Vec<Value>, NormalizeError> {
    // A stream deserializer reads one pretty-printed document and JSON lines alike, and its
    // errors carry the line and column in the whole text, not in one line of it.
    let mut values = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let start = stream.byte_offset();
        let Some(next) = stream.next() else { break };
        let value = next.map_err(|e| NormalizeError::Malformed(format!("invalid JSON: {e}")))?;
        match value {
            Value::Array(items) => values.extend(items),
            Value::Object(_) => values.push(value),
            other => {
                let line = line_of(text, start);
                return Err(NormalizeError::Malformed(format!(
                    "line {line}: expected a JSON object or array, found {}",
                    json_kind(&other)
                )));
            }
        }
    }
    Ok(values)
}

/// The 1-based line of the first non-whitespace byte at or after `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    let rest = &text[offset..];
    let value_at = offset + (rest.len() - rest.trim_start().len());
    1 + text[..value_at].matches('\n').count()
}
