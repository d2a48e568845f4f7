//! The normalized event types (SPEC 2), extensible from `config.yaml`.

use serde::{Deserialize, Serialize};

use crate::event::filter::Pattern;

pub(crate) const MAX_FILTERS: usize = 64;

/// An event type an operator adds to the catalog in `config.yaml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventTypeDef {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub description: String,
}

/// The built-in catalog: type and meaning.
pub(crate) const BUILTIN: &[(&str, &str)] = &[
    ("outbound.queued", "Accepted, queued for sending"),
    ("outbound.sent", "Handed to the sending MTA (2xx on relay)"),
    ("outbound.delivered", "Accepted by the recipient's server"),
    ("outbound.deferred", "Temporary failure, will retry"),
    (
        "outbound.bounced",
        "Bounced; data.bounce_type is hard or soft",
    ),
    ("outbound.rejected", "Refused by the remote server"),
    (
        "outbound.dropped",
        "Not sent: policy, suppression, or retries exhausted; data.reason",
    ),
    ("outbound.spam", "Flagged as spam before delivery"),
    ("outbound.virus", "Virus detected"),
    ("outbound.failed", "Processing error at the provider"),
    ("outbound.opened", "Tracking pixel loaded"),
    ("outbound.read", "Read for a meaningful time"),
    ("outbound.clicked", "Tracked link clicked"),
    ("outbound.complaint", "Spam complaint (FBL)"),
    ("outbound.unsubscribed", "Unsubscribe link or header used"),
    ("outbound.auto_reply", "Automatic reply (out of office)"),
    (
        "outbound.bounce_reply",
        "Someone replied to the return-path",
    ),
    ("inbound.received", "Inbound message received"),
    ("inbound.delivered", "Inbound message delivered to mailbox"),
    ("inbound.spam", "Inbound message marked spam"),
    ("inbound.blocked", "Inbound message blocked by policy"),
];

/// webhookd's own events about a tenant's endpoints (SPEC 2), matched only by patterns that
/// name the `webhookd` service.
pub(crate) const OPERATIONAL: &[(&str, &str)] = &[
    (
        "webhookd.endpoint.disabled",
        "An endpoint was disabled; data.reason is gone, failing or tenant",
    ),
    (
        "webhookd.endpoint.enabled",
        "A disabled endpoint was enabled again",
    ),
    (
        "webhookd.endpoint.circuit_opened",
        "The endpoint's circuit opened: its deliveries wait for a probe",
    ),
    (
        "webhookd.endpoint.circuit_closed",
        "A probe succeeded; normal delivery resumed",
    ),
    (
        "webhookd.delivery.dead_lettered",
        "A delivery ran out of attempts and went to the dead letters",
    ),
];

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct EventTypeInfo {
    #[serde(rename = "type")]
    pub(crate) event_type: String,
    pub(crate) description: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Catalog {
    types: Vec<EventTypeInfo>,
}

impl Catalog {
    pub(crate) fn new(extra: &[EventTypeDef]) -> Self {
        let mut types: Vec<EventTypeInfo> = BUILTIN
            .iter()
            .chain(OPERATIONAL)
            .map(|(t, d)| EventTypeInfo {
                event_type: t.to_string(),
                description: d.to_string(),
            })
            .collect();
        for def in extra {
            match types.iter_mut().find(|t| t.event_type == def.event_type) {
                Some(t) if !def.description.is_empty() => t.description = def.description.clone(),
                Some(_) => {}
                None => types.push(EventTypeInfo {
                    event_type: def.event_type.clone(),
                    description: def.description.clone(),
                }),
            }
        }
        Catalog { types }
    }

    pub(crate) fn types(&self) -> &[EventTypeInfo] {
        &self.types
    }

    pub(crate) fn contains(&self, event_type: &str) -> bool {
        self.types.iter().any(|t| t.event_type == event_type)
    }

    /// True when the pattern matches at least one catalog type.
    pub(crate) fn covers(&self, pattern: &Pattern) -> bool {
        self.types.iter().any(|t| pattern.matches(&t.event_type))
    }

    /// The catalog type nearest to a pattern that matched none, for a "did you mean" hint.
    pub(crate) fn suggest(&self, pattern: &str) -> Option<&str> {
        self.types
            .iter()
            .map(|t| (levenshtein(pattern, &t.event_type), t.event_type.as_str()))
            .filter(|(d, _)| *d <= 3)
            .min()
            .map(|(_, t)| t)
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Checks filter patterns against the grammar and the catalog.
pub(crate) fn check_filters(filters: &[String], catalog: &Catalog) -> Result<Vec<Pattern>, String> {
    if filters.is_empty() {
        return Err("filters must list at least one pattern".into());
    }
    if filters.len() > MAX_FILTERS {
        return Err(format!("at most {MAX_FILTERS} filters"));
    }
    let mut out = Vec::with_capacity(filters.len());
    for f in filters {
        let p = Pattern::parse(f).map_err(|e| e.to_string())?;
        if !catalog.covers(&p) {
            let hint = catalog
                .suggest(f)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(format!(
                "filter `{f}` matches no event type in the catalog{hint}"
            ));
        }
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_catalog_has_every_spec_type() {
        let c = Catalog::new(&[]);
        assert_eq!(
            c.types().len(),
            21 + 5,
            "SPEC 2's 21 types and its 5 operational ones"
        );
        assert!(c.contains("outbound.bounce_reply") && c.contains("inbound.blocked"));
        assert!(
            c.contains("webhookd.endpoint.circuit_opened")
                && c.contains("webhookd.delivery.dead_lettered")
        );
    }

    #[test]
    fn operators_add_types() {
        let c = Catalog::new(&[EventTypeDef {
            event_type: "billing.invoice_paid".into(),
            description: "Invoice paid".into(),
        }]);
        assert!(c.contains("billing.invoice_paid"));
        assert!(c.covers(&Pattern::parse("billing.*").unwrap()));
    }

    #[test]
    fn near_misses_get_a_hint() {
        let c = Catalog::new(&[]);
        assert_eq!(c.suggest("outbound.bounce"), Some("outbound.bounced"));
        assert_eq!(c.suggest("zzz.qqqqqq"), None);
        assert!(!c.covers(&Pattern::parse("outbound.bounce").unwrap()));
    }

    #[test]
    fn filters_are_checked_against_the_catalog_with_a_hint() {
        let c = Catalog::new(&[]);
        let e = check_filters(&["outbound.bounce".into()], &c).unwrap_err();
        assert!(e.contains("did you mean `outbound.bounced`"), "{e}");
        assert!(check_filters(&[], &c).is_err());
        assert!(check_filters(&["*".into(), "*.delivered".into()], &c).is_ok());
    }
}
