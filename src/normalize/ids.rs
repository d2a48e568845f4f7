//! Stable event ids derived from a provider event's content.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::normalize::types::Provider;

/// `<provider>_` + 32 hex chars of SHA-256 over the item's canonical JSON.
///
/// Derived from content alone (never from `now`), so a provider retrying its webhook or an
/// operator re-running `webhookd ingest` on the same file yields the same id, and the
/// dispatcher's 24 h dedupe (SPEC 1) delivers it once.
pub(super) fn derived_id(provider: Provider, item: &Value) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut canonical = Vec::new();
    write_canonical(item, &mut canonical);
    let digest = Sha256::digest(&canonical);
    let mut id = format!("{}_", provider.name());
    for byte in &digest[..16] {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    id
}

/// Compact JSON with object keys sorted at every level.
///
/// Written by hand rather than `serde_json::to_vec` because Cargo feature unification can
/// turn on serde_json's `preserve_order` (some dependency of the main crate does), and then
/// key order would follow the input and the same event could get two ids.
pub(super) fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(object) => {
            let mut fields: Vec<_> = object.iter().collect();
            fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (name, value)) in fields.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(name.clone()), out);
                out.push(b':');
                write_canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(values) => {
            out.push(b'[');
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(value, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

pub(super) fn write_scalar(scalar: &Value, out: &mut Vec<u8>) {
    serde_json::to_writer(out, scalar).expect("serializing a JSON scalar into a Vec cannot fail");
}
