//! Subscription filter patterns (SPEC 3) and the per-tenant index that matches them.
//!
//! Each tenant's patterns live in a segment trie, so matching walks at most a few branches
//! per type segment: cost does not grow with other tenants' endpoints, nor linearly with
//! the tenant's own.

use std::collections::HashMap;
use std::fmt;

use crate::ids::valid_segment;

/// The service of webhookd's own (operational) events: reserved, and matched only by
/// patterns that name it (SPEC 2, 3).
pub const RESERVED: &str = "webhookd";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Segment {
    Literal(Box<str>),
    Star,
}

/// A parsed filter pattern such as `outbound.*` or `*.delivered`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    segments: Vec<Segment>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter `{pattern}`: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: &'static str,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let err = |reason| PatternError {
            pattern: text.to_string(),
            reason,
        };
        if text.is_empty() {
            return Err(err("empty pattern"));
        }
        if text.len() > 256 {
            return Err(err("longer than 256 characters"));
        }
        let mut segments = Vec::new();
        for seg in text.split('.') {
            if seg == "*" {
                segments.push(Segment::Star);
            } else if valid_segment(seg) {
                segments.push(Segment::Literal(seg.into()));
            } else if seg.is_empty() {
                return Err(err("empty segment"));
            } else {
                return Err(err("each segment must be `*` or lowercase [a-z0-9_]+"));
            }
        }
        Ok(Pattern {
            segments,
            text: text.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the first segment is this literal service.
    fn names(&self, service: &str) -> bool {
        matches!(self.segments.first(), Some(Segment::Literal(l)) if &**l == service)
    }

    /// The plain matcher: `*` last matches one or more segments, elsewhere exactly one; a type
    /// of webhookd's own service only by a pattern that names the service.
    pub fn matches(&self, event_type: &str) -> bool {
        let parts: Vec<&str> = event_type.split('.').collect();
        if parts[0] == RESERVED && !self.names(RESERVED) {
            return false;
        }
        let n = self.segments.len();
        for (i, seg) in self.segments.iter().enumerate() {
            let last = i + 1 == n;
            match seg {
                Segment::Star if last => return parts.len() > i,
                Segment::Star => {
                    if i >= parts.len() {
                        return false;
                    }
                }
                Segment::Literal(l) => {
                    if parts.get(i) != Some(&&**l) {
                        return false;
                    }
                }
            }
        }
        parts.len() == n
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Default, Debug)]
struct Node {
    literal: HashMap<Box<str>, Node>,
    star: Option<Box<Node>>,
    /// Subscribers whose pattern ends exactly here.
    exact: Vec<u32>,
    /// Subscribers whose pattern ends here with a trailing `*` (one or more more segments).
    rest: Vec<u32>,
}

/// One tenant's patterns → subscriber indexes (positions in the tenant's endpoint list).
#[derive(Default, Debug)]
pub struct PatternIndex {
    root: Node,
    subscribers: u32,
}

impl PatternIndex {
    pub fn insert(&mut self, pattern: &Pattern, subscriber: u32) {
        let mut node = &mut self.root;
        let n = pattern.segments.len();
        for (i, seg) in pattern.segments.iter().enumerate() {
            match seg {
                Segment::Star if i + 1 == n => {
                    node.rest.push(subscriber);
                    self.subscribers = self.subscribers.max(subscriber + 1);
                    return;
                }
                Segment::Star => node = node.star.get_or_insert_with(Default::default),
                Segment::Literal(l) => node = node.literal.entry(l.clone()).or_default(),
            }
        }
        node.exact.push(subscriber);
        self.subscribers = self.subscribers.max(subscriber + 1);
    }

    /// Appends each matching subscriber once, in ascending order.
    pub fn matches(&self, event_type: &str, out: &mut Vec<u32>) {
        let start = out.len();
        let mut parts = [""; 16];
        let mut n = 0;
        for p in event_type.split('.') {
            if n == parts.len() {
                return self.matches_slow(event_type, out);
            }
            parts[n] = p;
            n += 1;
        }
        walk_root(&self.root, &parts[..n], out);
        let found = &mut out[start..];
        found.sort_unstable();
        let mut write = start;
        for read in start..out.len() {
            if write == start || out[read] != out[write - 1] {
                out[write] = out[read];
                write += 1;
            }
        }
        out.truncate(write);
    }

    fn matches_slow(&self, event_type: &str, out: &mut Vec<u32>) {
        let parts: Vec<&str> = event_type.split('.').collect();
        let start = out.len();
        walk_root(&self.root, &parts, out);
        let mut found = out.split_off(start);
        found.sort_unstable();
        found.dedup();
        out.extend(found);
    }
}

/// From the root: types of webhookd's own service are reached only through their literal first
/// segment (SPEC 3), so `*` and `*.x` patterns never see them.
fn walk_root(root: &Node, parts: &[&str], out: &mut Vec<u32>) {
    if parts.first() == Some(&RESERVED) {
        if let Some(child) = root.literal.get(RESERVED) {
            walk(child, &parts[1..], out);
        }
        return;
    }
    walk(root, parts, out);
}

fn walk(node: &Node, rest: &[&str], out: &mut Vec<u32>) {
    let Some((head, tail)) = rest.split_first() else {
        out.extend_from_slice(&node.exact);
        return;
    };
    out.extend_from_slice(&node.rest);
    if let Some(child) = node.literal.get(*head) {
        walk(child, tail, out);
    }
    if let Some(star) = &node.star {
        walk(star, tail, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(p: &str, t: &str) -> bool {
        Pattern::parse(p).unwrap().matches(t)
    }

    fn indexed(p: &str, t: &str) -> bool {
        let mut idx = PatternIndex::default();
        idx.insert(&Pattern::parse(p).unwrap(), 0);
        let mut out = Vec::new();
        idx.matches(t, &mut out);
        !out.is_empty()
    }

    #[test]
    fn spec_3_examples() {
        for f in [m, indexed] {
            assert!(f("*", "outbound.delivered") && f("*", "inbound.spam") && f("*", "a.b.c"));
            assert!(f("outbound.*", "outbound.delivered") && f("outbound.*", "outbound.bounced"));
            assert!(!f("outbound.*", "inbound.delivered"));
            assert!(
                f("*.delivered", "outbound.delivered") && f("*.delivered", "inbound.delivered")
            );
            assert!(!f("*.delivered", "outbound.bounced"));
            assert!(f("outbound.bounced", "outbound.bounced"));
            assert!(!f("outbound.bounced", "outbound.delivered"));
            assert!(!f("outbound.*", "outbound") && !f("outbound.*", "outboundx.sent"));
            assert!(!f("outbound.*", "Outbound.sent"), "case-sensitive");
            assert!(
                f("outbound.*", "outbound.a.b"),
                "a trailing * takes one or more"
            );
            assert!(
                !f("*.delivered", "x.outbound.delivered"),
                "an inner * takes exactly one"
            );
            let op = "webhookd.endpoint.disabled";
            assert!(f("webhookd.*", op) && f(op, op) && f("webhookd.*.disabled", op));
            assert!(!f("*", op) && !f("*.endpoint.disabled", op) && !f("*.*.*", op));
        }
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "",
            "outbound.",
            "..",
            "out*bound",
            "Outbound.*",
            ".x",
            "a.**",
            "a b",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn an_endpoint_with_overlapping_patterns_matches_once() {
        let mut idx = PatternIndex::default();
        for p in ["*", "outbound.*", "outbound.bounced"] {
            idx.insert(&Pattern::parse(p).unwrap(), 3);
        }
        idx.insert(&Pattern::parse("inbound.*").unwrap(), 1);
        let mut out = Vec::new();
        idx.matches("outbound.bounced", &mut out);
        assert_eq!(out, vec![3]);
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("c_1".to_string())
        ]
    }

    fn pattern() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![3 => segment(), 1 => Just("*".to_string()), 1 => Just(RESERVED.to_string())],
            1..5,
        )
        .prop_map(|s| s.join("."))
    }

    fn event_type() -> impl Strategy<Value = String> {
        let ours = prop::collection::vec(segment(), 0..4).prop_map(|s| {
            std::iter::once(RESERVED.to_string())
                .chain(s)
                .collect::<Vec<_>>()
                .join(".")
        });
        prop_oneof![
            3 => prop::collection::vec(segment(), 1..6).prop_map(|s| s.join(".")),
            1 => ours,
        ]
    }

    proptest! {
        #[test]
        fn the_index_agrees_with_the_plain_matcher(
            patterns in prop::collection::vec(pattern(), 1..30),
            types in prop::collection::vec(event_type(), 1..30),
        ) {
            let parsed: Vec<Pattern> = patterns.iter().map(|p| Pattern::parse(p).unwrap()).collect();
            let mut idx = PatternIndex::default();
            for (i, p) in parsed.iter().enumerate() {
                idx.insert(p, i as u32);
            }
            for t in &types {
                let mut got = Vec::new();
                idx.matches(t, &mut got);
                let want: Vec<u32> = parsed.iter().enumerate()
                    .filter(|(_, p)| p.matches(t)).map(|(i, _)| i as u32).collect();
                prop_assert_eq!(got, want, "type {}", t);
            }
        }
    }
}
