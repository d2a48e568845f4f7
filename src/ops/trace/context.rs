//! Where a span sits in a trace, in the W3C `traceparent` form producers hand us (in an
//! event's `data.traceparent`), that retry jobs carry between replicas, and that attempts send.

use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::support::hex::decode;

/// The `sampled` bit of the trace flags.
const SAMPLED: u8 = 0x01;

/// A span's trace id, span id and trace flags: a W3C `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`, lowercase, neither id all
    /// zeros. A later version's header is read by its first four fields, as the W3C
    /// recommendation asks; version `ff` is never valid.
    pub fn parse(text: &str) -> Option<TraceParent> {
        let text = text.trim();
        let fields = text.get(..55)?;
        let rest = &text[55..];
        let mut parts = fields.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let version = decode::<1>(version)?[0];
        let valid_tail = match version {
            0xff => false,
            0x00 => rest.is_empty(),
            _ => rest.is_empty() || rest.starts_with('-'),
        };
        let parsed = TraceParent {
            trace_id: decode(trace)?,
            span_id: decode(span)?,
            flags: decode::<1>(flags)?[0],
        };
        let zero = parsed.trace_id == [0; 16] || parsed.span_id == [0; 8];
        (valid_tail && !zero).then_some(parsed)
    }

    /// A span opening a trace of its own, recorded.
    pub(crate) fn root() -> TraceParent {
        TraceParent {
            trace_id: nonzero(rand::random),
            span_id: nonzero(rand::random),
            flags: SAMPLED,
        }
    }

    /// A new span of the same trace, under the same sampling decision.
    pub(crate) fn child(&self) -> TraceParent {
        TraceParent {
            span_id: nonzero(rand::random),
            ..*self
        }
    }

    /// Whether its trace is recorded: spans of a trace its producer left unsampled are not
    /// exported, so a backend never shows a trace with holes in it.
    pub(crate) fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("00-")?;
        for b in self.trace_id {
            write!(f, "{b:02x}")?;
        }
        f.write_str("-")?;
        for b in self.span_id {
            write!(f, "{b:02x}")?;
        }
        write!(f, "-{:02x}", self.flags)
    }
}

/// The producer's span an event names in `data.traceparent`, if it holds a valid one. Reads
/// an envelope or a delivered body alike (both keep `data` at the top).
pub(crate) fn producer_of(event: &[u8]) -> Option<TraceParent> {
    #[derive(Deserialize)]
    struct WithData<'a> {
        #[serde(borrow)]
        data: Option<Data<'a>>,
    }
    #[derive(Deserialize)]
    struct Data<'a> {
        #[serde(borrow)]
        traceparent: Option<&'a RawValue>,
    }
    let raw = serde_json::from_slice::<WithData>(event)
        .ok()?
        .data?
        .traceparent?;
    TraceParent::parse(serde_json::from_str::<&str>(raw.get()).ok()?)
}

/// An id that is not all zeros (W3C reserves that for "none").
fn nonzero<const N: usize>(mut draw: impl FnMut() -> [u8; N]) -> [u8; N] {
    loop {
        let id = draw();
        if id != [0; N] {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_round_trips() {
        let tp = TraceParent::parse(TP).unwrap();
        assert_eq!(tp.trace_id[0], 0x4b);
        assert_eq!(tp.span_id[7], 0xb7);
        assert!(tp.sampled());
        assert_eq!(tp.to_string(), TP);
    }

    #[test]
    fn malformed_or_all_zero_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1x",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        let later = format!("01{}-more", &TP[2..]);
        assert!(TraceParent::parse(&later).is_some(), "a later version");
    }

    #[test]
    fn children_keep_the_trace_and_its_sampling_and_roots_are_fresh() {
        let tp = TraceParent::parse(TP).unwrap();
        let child = tp.child();
        assert_eq!((child.trace_id, child.flags), (tp.trace_id, tp.flags));
        assert_ne!(child.span_id, tp.span_id);
        let (a, b) = (TraceParent::root(), TraceParent::root());
        assert_ne!(a.trace_id, b.trace_id);
        assert!(a.sampled() && a.trace_id != [0; 16] && a.span_id != [0; 8]);
    }

    #[test]
    fn the_producers_span_is_read_from_data_traceparent() {
        let body = format!(r#"{{"id":"e","data":{{"uid":"m","traceparent":"{TP}"}}}}"#);
        assert_eq!(producer_of(body.as_bytes()), TraceParent::parse(TP));
        for none in [
            r#"{"id":"e","data":{"uid":"m"}}"#,
            r#"{"id":"e","data":{"traceparent":7}}"#,
            r#"{"id":"e","data":{"traceparent":"00-xyz"}}"#,
            r#"{"id":"e"}"#,
            "not json",
        ] {
            assert_eq!(producer_of(none.as_bytes()), None, "{none}");
        }
    }
}
